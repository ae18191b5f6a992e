"""Exact rational arithmetic for the tests: the one ground truth they share.

Every value of every binary floating-point format is a rational number, so
``fractions.Fraction`` computes sums, means and variances with no rounding at all.
The tests compare the package's results with these, never with its own earlier
output. (The package's own oracle, :mod:`varstats.oracle`, is tested against this
module too, so it cannot be its own referee.)
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from varstats.precision import round_to

__all__ = ["exact", "exact_kappa", "exact_m2", "exact_mean", "exact_var", "rel_error", "rounded"]


def exact(values: Any) -> list[Fraction]:
    """Every value (any float dtype, bfloat16 included, any shape) as an exact Fraction."""
    return [Fraction(float(v)) for v in np.asarray(values, dtype=np.float64).ravel()]


def exact_mean(values: Any) -> Fraction:
    q = exact(values)
    return sum(q, Fraction(0)) / len(q)


def exact_m2(values: Any) -> Fraction:
    r""":math:`M_2 = \sum (x_i - \bar x)^2`, exactly."""
    q = exact(values)
    mean = sum(q, Fraction(0)) / len(q)
    return sum(((v - mean) ** 2 for v in q), Fraction(0))


def exact_var(values: Any, correction: int = 0) -> Fraction:
    return exact_m2(values) / (len(exact(values)) - correction)


def exact_kappa(values: Any) -> float:
    r"""Condition number :math:`\kappa = \sqrt{1 + n\bar x^2 / M_2}` (inf for constant data)."""
    q = exact(values)
    m2 = exact_m2(values)
    if m2 == 0:
        return math.inf
    return math.sqrt(float(1 + len(q) * exact_mean(values) ** 2 / m2))


def rel_error(got: Any, truth: Fraction) -> float:
    """``|got - truth| / |truth|`` computed exactly, then rounded once to a float."""
    g = Fraction(float(got))
    if truth == 0:
        return 0.0 if g == 0 else math.inf
    return float(abs(g - truth) / abs(truth))


def rounded(q: Fraction | int, dtype: Any) -> Any:
    """``q`` rounded to ``dtype`` (through binary64, innocuous for p <= 24: 53 >= 2p + 2)."""
    return round_to(np.float64(float(Fraction(q))), dtype)[()]
