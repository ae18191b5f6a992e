"""varstats: how accurate are the variance algorithms inside normalization layers?

Exact ground truth (:mod:`varstats.oracle`), every classic variance algorithm under
an explicit storage/accumulator precision (:mod:`varstats.reductions`), the
normalization layers built on them (:mod:`varstats.norms`) and the study that
compares them (``python -m varstats.sweep``).
"""

from importlib.metadata import PackageNotFoundError, version

from varstats import cases, conventions, metrics, norms, oracle
from varstats.algorithms import (
    ALGORITHMS,
    SUMMATIONS,
    get_algorithm,
    register_algorithm,
)
from varstats.moments import Moments, merge_along
from varstats.precision import (
    DTYPES,
    PRECISIONS,
    FloatInfo,
    Precision,
    as_dtype,
    finfo,
    round_to,
)
from varstats.recommendation import RECOMMENDED, recommended
from varstats.reductions import mean_var, moments, var

try:  # the one definition is pyproject.toml's; an installed package carries it
    __version__ = version("varstats")
except PackageNotFoundError:  # a source tree used without installing it
    __version__ = "0+unknown"
del PackageNotFoundError, version

__all__ = [
    "ALGORITHMS",
    "DTYPES",
    "PRECISIONS",
    "RECOMMENDED",
    "SUMMATIONS",
    "FloatInfo",
    "Moments",
    "Precision",
    "as_dtype",
    "cases",
    "conventions",
    "finfo",
    "get_algorithm",
    "mean_var",
    "merge_along",
    "metrics",
    "moments",
    "norms",
    "oracle",
    "recommended",
    "register_algorithm",
    "round_to",
    "var",
]
