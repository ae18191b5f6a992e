"""varstats: how accurate are the variance algorithms inside normalization layers?

Exact ground truth (:mod:`varstats.oracle`), every classic variance algorithm under
an explicit storage/accumulator precision (:mod:`varstats.algorithms`), the
normalization layers built on them (:mod:`varstats.norms`) and the study that
compares them (``python -m varstats.sweep``).
"""

from varstats.moments import Moments, merge_along
from varstats.precision import DTYPES, FloatInfo, Precision, as_dtype, finfo, round_to

__all__ = [
    "DTYPES",
    "FloatInfo",
    "Moments",
    "Precision",
    "as_dtype",
    "finfo",
    "merge_along",
    "round_to",
]
