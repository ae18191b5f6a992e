r"""How wrong is a computed variance: relative error, ULPs, correct digits, bounds.

Every metric compares a computed ``value`` with the correctly rounded float64
``exact`` from :mod:`varstats.oracle`, elementwise, in float64 (every value of
the four :data:`~varstats.precision.DTYPES` is exact in float64).

- :func:`rel_err`: :math:`|\hat v - v| / |v|`.
- :func:`ulps`: :math:`|\hat v - v| / \operatorname{ulp}(v)` in the result's format.
- :func:`lre`: log relative error, the number of correct significant decimal
  digits (McCullough 1998), capped at the format's precision.
- :func:`bound`: the first-order bound on the relative error of
  :math:`S = \sum (x_i - \bar x)^2` for each algorithm (Chan, Golub & LeVeque 1983).
- :func:`failure_counts`: negative and non-finite results.

Bounds
------
With :math:`u` the unit roundoff of the accumulator and
:math:`\kappa = \sqrt{1 + n\bar x^2/S}`, Chan, Golub & LeVeque (1983, table 1)
give, to first order and without constant factors, the relative error of
:math:`S`:

=======================  ============================  =========================================
algorithm                sequential sums               pairwise sums
=======================  ============================  =========================================
textbook one-pass        :math:`n\kappa^2 u`           :math:`\kappa^2 u\log_2 n`
two-pass                 :math:`nu + n^2\kappa^2u^2`   :math:`u\log_2 n + (\kappa u\log_2 n)^2`
corrected two-pass       :math:`nu + n^3\kappa^2u^3`   :math:`u\log_2 n + \kappa^2u^3\log_2^3 n`
updating (Welford/West)  :math:`n\kappa u`             :math:`\kappa u\log_2 n` (pairwise)
=======================  ============================  =========================================

All of these have the same shape: a summation of :math:`n` terms has first-order
relative error :math:`\varepsilon = Lu` with :math:`L = n` (sequential) or
:math:`L = \log_2 n` (pairwise) (Higham 2002, ch. 4), and

- one-pass: :math:`\varepsilon\kappa^2` (the sum of squares carries
  :math:`\varepsilon\sum x_i^2 = \varepsilon\kappa^2 S` of absolute error),
- two-pass: :math:`\varepsilon + (\varepsilon\kappa)^2` (a mean off by
  :math:`e` adds :math:`ne^2` to :math:`S`, and :math:`ne^2/S \approx \varepsilon^2\kappa^2`),
- corrected two-pass: :math:`\varepsilon + \varepsilon^3\kappa^2` (the correction
  term removes the first order of that mean error),
- updating: :math:`\varepsilon\kappa`.

:func:`bound` uses this structure to state the rows the paper does not tabulate,
for the kernels of :mod:`varstats.algorithms`:

- ``shifted`` (one-pass on :math:`x_i - d`): the one-pass bound with
  :math:`\kappa` replaced by the shifted condition number
  :math:`\kappa_d = \sqrt{1 + n(\bar x - d)^2/S}` (CGL 1983, section 3). Pass it as
  ``shifted_kappa`` (``varstats.cases.kappa(n, mean - d, m2)``). Without it the
  bound uses :math:`\kappa_d^2 \le 1 + n`, which holds whenever ``d`` is one of the
  data (the kernel shifts by :math:`x_1`), because :math:`S \ge (x_j - \bar x)^2`
  for every :math:`j`.
- ``compensated`` (corrected two-pass whose sums are Kahan-Babuška-Neumaier
  compensated): the corrected two-pass form :math:`\varepsilon + \varepsilon^3\kappa^2`
  with :math:`\varepsilon = 3u + (Lu)^2`. The kernel's sums add exact TwoSum errors
  in plain arithmetic, which is Ogita, Rump & Oishi's *Sum2* (2005, prop. 4.5:
  :math:`|\hat s - s| \le u|s| + \gamma_{n-1}^2\sum|x_i|`, with :math:`\gamma_L \approx Lu`
  and :math:`L` the length of the summation order); the :math:`3u` is the rounding of
  each :math:`d_i = x_i - \bar x` (doubled by squaring) and of each :math:`d_i^2`,
  which no compensation of the sum removes. In a narrow accumulator (bfloat16,
  :math:`n \gtrsim u^{-1/2}`) the :math:`(Lu)^2` term dominates: Higham 2002's
  :math:`2u + O(nu^2)` for Kahan's method hides exactly this constant.
- ``pairwise`` (two-pass leaves of :math:`b` values merged in a binary tree with
  the Chan update, CGL 1979): with :math:`b' = \min(b, n)` and :math:`\ell = b' - 1`
  the additions of a leaf's sequential sums, the leaf's two-pass bound
  :math:`\ell u + (\ell\kappa u)^2` plus :math:`\log_2(n/b')\,\kappa u` for the
  merge levels; with :math:`b = 1` the paper's :math:`\kappa u \log_2 n`.
  Heuristic: each merge level adds about :math:`\kappa u`.
- ``chan`` (two-pass blocks of :math:`b` values merged left to right): the same
  leaf bound plus :math:`(n/b' - 1)\,\kappa u` for the sequential merges, the
  updating bound over :math:`n/b'` blocks (Welford's :math:`(n - 1)\kappa u` at
  :math:`b = 1`). A leaf is a two-pass, so its error is quadratic in
  :math:`\kappa`; with :math:`n < b` there is one leaf of :math:`n` values and no
  merge. Heuristic in the same way.
- ``dot2`` (:mod:`varstats.dot2`: exact deviations and squares, Sum2 sums kept as
  double words): :math:`4(Lu)^2(1 + (u\kappa)^2)` with :math:`L = \min(n, 32) - 1 +
  \lceil\log_2\lceil n/32\rceil\rceil`, the length of its summation chains; the
  summation argument is ignored. The variance adds one rounding, which the
  ``+ 2u`` of the sweep's check covers.
- ``welford`` with :math:`\ell` round-robin lanes merged pairwise:
  :math:`(n/\ell + \log_2\ell)\,\kappa u` (:math:`n\kappa u` for one lane).

For ``summation="pairwise"`` of the sum-based algorithms (naive, shifted,
two_pass, corrected_two_pass), a tree whose leaves are sequential runs of
:math:`b` terms has :math:`L = b - 1 + \log_2(n/b)` (:math:`L = n - 1` when
:math:`n \le b`), the paper's :math:`\log_2 n` at :math:`b = 1`. ``block`` and
``lanes`` default to the kernels' own defaults (read from their signatures and
:data:`varstats.algorithms.PAIRWISE_BLOCK`), so the bound describes the kernel
that actually ran; pass ``block=1`` for the paper's pure tree.

Notes
-----
These are first-order worst-case bounds with the constant factors dropped, as in the
paper. Rigorous first-order constants are small: Higham (2002, section 1.9) bounds the
textbook one-pass formula by :math:`\gamma_{n+3}\kappa^2 \approx (n+3)\kappa^2u`, and
leaves the two-pass bound :math:`(n+3)u + O(u^2)` to problem 1.10, where the
:math:`O(u^2)` hides CGL's :math:`n^2\kappa^2u^2`. A measured error a few times above
:func:`bound` on adversarial data is therefore possible; an error orders of magnitude
above it is a bug. The bounds are on :math:`S` in the accumulator: a variance
:math:`S/(n-c)` written to a narrower output format carries one more rounding, so
compare a measured error with ``bound(...) + u_out``. They also assume that nothing
overflows or underflows (a float16 sum of 1000 values near 100 is ``inf``, whatever the
bound says). Rounding errors usually partly cancel, so typical errors are far below the
bound (about :math:`\sqrt n u` instead of :math:`nu` for sequential sums).

References
----------
.. [1] T. F. Chan, G. H. Golub and R. J. LeVeque, "Algorithms for computing the
       sample variance: analysis and recommendations", The American Statistician
       37(3), 242-247, 1983.
.. [2] T. F. Chan, G. H. Golub and R. J. LeVeque, "Updating formulae and a pairwise
       algorithm for computing sample variances", Stanford report STAN-CS-79-773, 1979.
.. [3] N. J. Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed.,
       SIAM, 2002, section 1.9 and chapter 4.
.. [4] B. D. McCullough, "Assessing the reliability of statistical software:
       Part I", The American Statistician 52(4), 358-366, 1998.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from varstats.algorithms import PAIRWISE_BLOCK, get_algorithm
from varstats.array_api import is_foreign_array, to_host
from varstats.precision import as_dtype, finfo

__all__ = [
    "BOUND_ALGORITHMS",
    "SUMMATIONS",
    "FailureCounts",
    "bound",
    "correct_digits",
    "failure_counts",
    "lre",
    "rel_err",
    "ulp",
    "ulps",
]

F64 = npt.NDArray[np.float64]

#: Algorithm names :func:`bound` knows (the registry names of DESIGN.md).
BOUND_ALGORITHMS: Final = (
    "naive",
    "shifted",
    "two_pass",
    "corrected_two_pass",
    "welford",
    "pairwise",
    "chan",
    "compensated",
    "dot2",
)

#: Summation orders :func:`bound` knows.
SUMMATIONS: Final = ("pairwise", "sequential")


def _f64(a: npt.ArrayLike, name: str) -> F64:
    if isinstance(a, np.ma.MaskedArray):
        # np.asarray would drop the mask and score the masked values too
        raise TypeError(f"{name}: a masked array; pass the unmasked values")
    # a torch tensor that requires grad: its values only
    arr = to_host(a) if is_foreign_array(a) else np.asarray(a)
    if arr.dtype.kind not in "biufO" and arr.dtype != as_dtype("bfloat16"):
        # complex would lose its imaginary part (with a warning), strings would be parsed
        raise TypeError(f"{name}: expected real numbers, got {arr.dtype}")
    # every DTYPES value (bfloat16 included) converts to float64 exactly
    try:
        return np.asarray(arr.astype(np.float64))
    except OverflowError:  # a Python int beyond float64's range
        raise ValueError(f"{name}: an integer beyond float64's range") from None
    except (TypeError, ValueError) as exc:  # an object array holding something else
        raise TypeError(f"{name}: expected real numbers ({exc})") from None


def _pair(value: npt.ArrayLike, exact: npt.ArrayLike) -> tuple[F64, F64]:
    """``value`` and ``exact`` in float64, checked to broadcast against each other."""
    v, e = _f64(value, "value"), _f64(exact, "exact")
    try:
        np.broadcast_shapes(v.shape, e.shape)
    except ValueError:
        raise ValueError(
            f"exact: shape {e.shape} does not broadcast against value's shape {v.shape}"
        ) from None
    return v, e


# ------------------------------------------------------------------------ errors


def rel_err(value: npt.ArrayLike, exact: npt.ArrayLike) -> F64:
    r"""Relative error :math:`|\hat v - v| / |v|`, elementwise in float64.

    Parameters
    ----------
    value : array_like
        Computed results, in any of the :data:`~varstats.precision.DTYPES`.
    exact : array_like
        Exact results (float64), broadcastable against ``value``.

    Returns
    -------
    ndarray of float64
        - ``exact == 0``: 0 if ``value == 0`` (either sign), else ``inf``.
        - ``value`` NaN or ``exact`` NaN: NaN (count these with
          :func:`failure_counts`; they are never hidden as a number).
        - ``value`` infinite, ``exact`` finite: ``inf``.
        - ``exact`` infinite: 0 if ``value`` equals it, else ``inf``.

    Notes
    -----
    Where :math:`|\hat v - v|` overflows float64 (values of opposite sign near
    the format's max), :math:`|\hat v/v - 1|` is used instead.

    Examples
    --------
    >>> float(rel_err(1.5, 1.0)), float(rel_err(0.0, 0.0)), float(rel_err(1e-300, 0.0))
    (0.5, 0.0, inf)
    """
    v, e = _pair(value, exact)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        diff = np.abs(v - e)
        out = diff / np.abs(e)
        overflowed = np.isinf(diff) & np.isfinite(v) & np.isfinite(e)
        out = np.where(overflowed, np.abs(v / e - 1.0), out)
        # exact zero (and exact infinite) results: right or infinitely wrong
        special = (e == 0) | np.isinf(e)
        out = np.where(special, np.where(v == e, 0.0, np.inf), out)
        out = np.where(np.isnan(v) | np.isnan(e), np.nan, out)
    return np.asarray(out, dtype=np.float64)


def ulp(x: npt.ArrayLike, dtype: Any) -> F64:
    r"""Unit in the last place of ``dtype`` at the real numbers ``x``.

    .. math::
        \operatorname{ulp}(x) = 2^{\max(e, e_{\min}) - p + 1},
        \qquad 2^e \le |x| < 2^{e+1}

    the spacing of the ``dtype`` grid just above :math:`|x|`, with :math:`p` the
    precision and :math:`2^{e_{\min}}` the smallest normal number; in the
    subnormal range (and at 0) it is the smallest subnormal. ``x`` need not be
    representable in ``dtype`` (a float64 exact value is the usual argument);
    above the format's max the formula continues with the same exponent rule.
    NaN and infinite ``x`` give NaN.
    """
    fi = finfo(dtype)
    a = np.abs(_f64(x, "x"))
    _, e = np.frexp(a)  # a = m 2**e, m in [0.5, 1): the binade is [2**(e-1), 2**e)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ldexp(1.0, e - fi.mant)
    out = np.where(a < fi.tiny, fi.smallest_subnormal, out)
    return np.asarray(np.where(np.isfinite(a), out, np.nan), dtype=np.float64)


def ulps(value: npt.ArrayLike, exact: npt.ArrayLike, dtype: Any) -> F64:
    r"""Distance from ``exact`` in units in the last place of ``dtype``.

    .. math::
        \frac{|\hat v - v|}{\operatorname{ulp}_{\text{dtype}}(v)}

    ``dtype`` is the format of the result (the storage format when a kernel
    writes its output there, else the accumulator); ``exact`` is the float64
    oracle value. A correctly rounded result is within 0.5 ulp; the float
    just above 1.0 is 1 ulp from 1.0 and the float just below is 0.5 ulp
    (the spacing halves below a power of two).

    Returns NaN where either input is NaN, ``inf`` for an infinite ``value``
    with finite ``exact``, and 0 or ``inf`` for an infinite ``exact``.
    """
    v, e = _pair(value, exact)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.abs(v - e) / ulp(e, dtype)
        out = np.where(np.isinf(e), np.where(v == e, 0.0, np.inf), out)
        out = np.where(np.isnan(v) | np.isnan(e), np.nan, out)
    return np.asarray(out, dtype=np.float64)


# Logarithms from IEEE-754 operations only. libm's log10/log2 and NumPy's SIMD versions
# differ in the last bit between builds and CPUs (1,557 rows of errors.csv did); frexp is
# exact and +, -, *, / are correctly rounded everywhere, so these give the same bits on
# every machine, within a few ulps of the true logarithm. Float literals are parsed with
# correct rounding, so the constants are the nearest doubles to the true ones.
_LOG10_2: Final = 0.30102999566398119521
_LOG10_E: Final = 0.43429448190325182765
_LOG2_E: Final = 1.4426950408889634074
_SQRT_HALF: Final = 0.70710678118654752440
# 1/(2j + 1) for the atanh series; s**2 <= 0.0295 makes the 13th term < 2**-60
_ATANH: Final = tuple(1.0 / (2 * j + 1) for j in range(13))


def _log_parts(x: F64) -> tuple[F64, F64]:
    r"""``(e, ln m)`` with :math:`x = m\,2^e`, :math:`m \in [\sqrt{1/2}, \sqrt 2)`.

    .. math::
        \ln m = 2\,\mathrm{atanh}\,s = 2\sum_j \frac{s^{2j+1}}{2j+1},
        \qquad s = \frac{m - 1}{m + 1},\ |s| \le 0.172

    For positive finite ``x``; ``m - 1`` is exact (Sterbenz), the rest rounds a few
    times, so :math:`\ln m` is within about 2 ulps.
    """
    m, e = np.frexp(x)  # exact: x = m 2**e, m in [0.5, 1)
    low = m < _SQRT_HALF
    m = np.where(low, 2.0 * m, m)
    e = e - low
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = np.full_like(s, _ATANH[-1])
    for c in _ATANH[-2::-1]:  # Horner, one rounding per step, no fused multiply-add
        p = p * s2 + c
    return e.astype(np.float64), 2.0 * s * p


def _log10(x: F64) -> F64:
    """log10 of positive finite ``x``, the same bits on every machine (see above)."""
    e, ln_m = _log_parts(x)
    return np.asarray(e * _LOG10_2 + ln_m * _LOG10_E, dtype=np.float64)


def _log2(x: F64) -> F64:
    """log2 of positive finite ``x``, the same bits on every machine; exact at powers of 2."""
    e, ln_m = _log_parts(x)
    return np.asarray(e + ln_m * _LOG2_E, dtype=np.float64)


def correct_digits(rel: npt.ArrayLike, dtype: Any) -> F64:
    r"""Correct decimal digits of a result with relative error ``rel``, capped for ``dtype``.

    .. math::
        \min\bigl(d,\ \max(0,\ -\log_{10} r)\bigr), \qquad d = p\log_{10} 2

    :func:`lre` is this of :func:`rel_err`; a normwise error (the sweep's norm-layer
    outputs) passes its own ``rel``. ``d`` for ``rel == 0``, 0 for ``rel >= 1``, NaN or
    infinite. The logarithm is evaluated from IEEE-754 operations only, so the same
    ``rel`` gives the same bits on every machine (libm's ``log10`` does not).

    Examples
    --------
    >>> float(correct_digits(1e-3, "float64")), float(correct_digits(0.0, "float16"))
    (3.0, 3.3113299523037933)
    """
    digits = finfo(dtype).digits
    r = _f64(rel, "rel")
    ok = np.isfinite(r) & (r > 0)
    with np.errstate(invalid="ignore"):
        logs = _log10(np.where(ok, r, 1.0))
    out = np.where(ok, -logs, np.where(r == 0, np.inf, -np.inf))
    # r == 0 gives +inf, clipped to the cap; + 0.0 turns the -0.0 of r == 1 into 0.0
    out = np.clip(out, 0.0, digits) + 0.0
    return np.asarray(np.where(np.isnan(r), 0.0, out), dtype=np.float64)


def lre(value: npt.ArrayLike, exact: npt.ArrayLike, dtype: Any) -> F64:
    r"""Log relative error: the number of correct significant decimal digits.

    .. math::
        \mathrm{LRE} = \min\Bigl(d,\ \max\bigl(0,\ -\log_{10}\tfrac{|\hat v - v|}{|v|}\bigr)\Bigr),
        \qquad d = p\log_{10} 2

    as in McCullough's (1998) accuracy studies of statistical software, capped at
    the decimal digits :math:`d` that ``dtype`` carries (``finfo(dtype).digits``:
    3.3 for float16, 2.4 for bfloat16, 7.2 for float32, 16.0 for float64).

    Returns
    -------
    ndarray of float64
        ``d`` for an exact result; 0 when the result is wrong by 100% or more
        (this includes a wrong sign), NaN or infinite. Where ``exact == 0`` the
        result is ``d`` if ``value == 0`` and 0 otherwise.

    Notes
    -----
    McCullough switches to the log *absolute* error when the certified value is
    0. Here an exact variance of 0 (constant data) scores 0 digits for any nonzero
    result: an absolute error has no scale, and a nonzero variance of constant data
    is the failure (NaN or huge outputs after rsqrt) the reproduction cases report.

    The logarithm is evaluated from IEEE-754 additions, multiplications and divisions
    (:func:`correct_digits`), never libm's ``log10``: the same inputs give the same bits
    on every machine, within a few ulps of the true value.
    """
    return correct_digits(rel_err(value, exact), dtype)


# ------------------------------------------------------------------------ bounds


def _summation_length(n: F64, summation: str, block: F64) -> F64:
    """L with first-order summation error L*u (Higham 2002, ch. 4)."""
    if summation == "sequential":
        return n
    # pairwise tree whose leaves are sequential runs of `block` terms
    leaves = np.minimum(n, block) - 1.0
    levels = _log2(np.maximum(n / block, 1.0))  # libm-free: the bound is written to CSV
    return np.asarray(leaves + levels, dtype=np.float64)


def _kernel_default(algorithm: str, option: str) -> float:
    """The default of ``option`` in the signature of the registered kernel."""
    kernel = get_algorithm(algorithm)
    return float(inspect.signature(kernel).parameters[option].default)


def bound(
    algorithm: str,
    n: npt.ArrayLike,
    kappa: npt.ArrayLike,
    u: npt.ArrayLike,
    summation: str = "pairwise",
    *,
    block: npt.ArrayLike | None = None,
    lanes: npt.ArrayLike | None = None,
    shifted_kappa: npt.ArrayLike | None = None,
) -> F64:
    r"""First-order bound on the relative error of :math:`S` (Chan, Golub & LeVeque 1983).

    With :math:`L = n` for sequential sums and :math:`L = b - 1 + \log_2(n/b)`
    for pairwise sums whose leaves are sequential runs of :math:`b` terms
    (:math:`\log_2 n` for :math:`b = 1`):

    .. math::
        \begin{aligned}
        \text{naive}              &: L\kappa^2 u \\
        \text{shifted}            &: L\kappa_d^2 u \\
        \text{two\_pass}          &: Lu + (L\kappa u)^2 \\
        \text{corrected\_two\_pass} &: Lu + L^3\kappa^2u^3 \\
        \text{compensated}        &: \varepsilon + \varepsilon^3\kappa^2,
                                      \quad \varepsilon = 3u + (Lu)^2 \\
        \text{welford}            &: (n/\ell + \log_2\ell)\,\kappa u \\
        \text{pairwise}           &: \ell u + (\ell\kappa u)^2 + \log_2(n/b')\,\kappa u \\
        \text{chan}               &: \ell u + (\ell\kappa u)^2 + (n/b' - 1)\,\kappa u \\
        \text{dot2}               &: 4(Lu)^2(1 + (u\kappa)^2)
        \end{aligned}

    with :math:`b' = \min(b, n)` and :math:`\ell = b' - 1` for the two-pass leaves
    of pairwise and chan, and :math:`L` the chain length of :mod:`varstats.dot2`.

    The first four rows (at :math:`b = \ell = 1`) are CGL's table 1; see the module
    docstring for how the others follow and which are heuristic.

    Parameters
    ----------
    algorithm : str
        One of :data:`BOUND_ALGORITHMS`.
    n : array_like of int
        Number of values reduced, at least 1.
    kappa : array_like
        Condition number of the data, :func:`varstats.cases.kappa` from exact moments.
    u : array_like
        Unit roundoff of the accumulator, ``finfo(accumulator).unit_roundoff``.
    summation : {"pairwise", "sequential"}
        Order of the sums of the sum-based algorithms (naive, shifted, two_pass,
        corrected_two_pass, compensated). For welford, pairwise and chan (no sums)
        it is checked but unused.
    block : array_like of int, optional
        :math:`b`: leaf length of a pairwise sum, leaf length of the ``pairwise``
        algorithm, block length of ``chan``. Default: the kernel's default.
    lanes : array_like of int, optional
        :math:`\ell`: lanes of ``welford``. Default: the kernel's default.
    shifted_kappa : array_like, optional
        For ``shifted``: :math:`\kappa_d = \sqrt{1 + n(\bar x - d)^2/S}` for the
        shift :math:`d` the kernel used. Default: :math:`\sqrt{1 + n}`, the worst
        case over shifts taken from the data.

    Returns
    -------
    ndarray of float64
        Broadcast over every array argument. ``inf`` where ``kappa`` is infinite
        (constant data, where any nonzero result is infinitely wrong).

    Examples
    --------
    >>> float(bound("naive", 1024, 10.0, 2.0**-24, "sequential")) == 1024 * 100 * 2.0**-24
    True
    >>> u = 2.0**-24
    >>> float(bound("two_pass", 1024, 1.0, u, block=1)) == 10 * u + (10 * u) ** 2
    True
    """
    if algorithm not in BOUND_ALGORITHMS:
        raise ValueError(
            f"algorithm: no bound for {algorithm!r}; expected one of {BOUND_ALGORITHMS}"
        )
    if summation not in SUMMATIONS:
        raise ValueError(f"summation: unknown {summation!r}; expected one of {SUMMATIONS}")
    n_ = _f64(n, "n")
    if np.any(n_ < 1):
        raise ValueError("n: must be at least 1")
    if block is None:
        tree = algorithm in ("pairwise", "chan")
        block = _kernel_default(algorithm, "block") if tree else float(PAIRWISE_BLOCK)
    b = _f64(block, "block")
    if np.any(b < 1):
        raise ValueError("block: must be at least 1")
    ell = _f64(_kernel_default("welford", "lanes") if lanes is None else lanes, "lanes")
    if np.any(ell < 1):
        raise ValueError("lanes: must be at least 1")
    k = _f64(kappa, "kappa")
    u_ = _f64(u, "u")
    length = _summation_length(n_, summation, b)
    with np.errstate(over="ignore", invalid="ignore"):
        if algorithm == "naive":
            out = length * k**2 * u_
        elif algorithm == "shifted":
            kd = (
                np.sqrt(1.0 + n_) if shifted_kappa is None else _f64(shifted_kappa, "shifted_kappa")
            )
            out = length * kd**2 * u_
        elif algorithm == "two_pass":
            out = length * u_ + (length * k * u_) ** 2
        elif algorithm == "corrected_two_pass":
            out = length * u_ + length**3 * k**2 * u_**3
        elif algorithm == "compensated":
            eps = 3.0 * u_ + (length * u_) ** 2
            out = eps + eps**3 * k**2
        elif algorithm == "welford":
            out = (n_ / ell + _log2(ell)) * k * u_
        elif algorithm == "dot2":
            chain = np.minimum(n_, 32.0) - 1.0 + np.ceil(_log2(np.ceil(n_ / 32.0)))
            out = 4.0 * (chain * u_) ** 2 * (1.0 + (u_ * k) ** 2)
        else:
            # pairwise and chan: two-pass leaves of b' values (sequential sums, so
            # quadratic in kappa), then merges that each add about kappa u
            leaf_len = np.minimum(b, n_)
            ell = leaf_len - 1.0
            leaf = ell * u_ + (ell * k * u_) ** 2
            # pairwise: one merge level per halving; chan: blocks merged left to right
            merges = _log2(n_ / leaf_len) if algorithm == "pairwise" else n_ / leaf_len - 1.0
            # no merge at all (n <= b) adds nothing, also at kappa = inf
            out = leaf + np.where(merges > 0, merges * k * u_, 0.0)
    # every argument broadcasts, also those a row's formula does not use
    shape = np.broadcast_shapes(n_.shape, k.shape, u_.shape, b.shape, ell.shape, np.shape(out))
    return np.array(np.broadcast_to(out, shape), dtype=np.float64)


# ---------------------------------------------------------------------- failures


@dataclass(frozen=True)
class FailureCounts:
    """How many results are negative or non-finite.

    Attributes
    ----------
    total : int
        Number of results inspected.
    negative : int
        Finite results below zero (``-0.0`` is not negative; ``-inf`` is counted
        in ``neginf`` only, so the four failure kinds are disjoint).
    nan : int
    posinf : int
    neginf : int
    """

    total: int
    negative: int
    nan: int
    posinf: int
    neginf: int

    @property
    def nonfinite(self) -> int:
        """NaN and infinite results together."""
        return self.nan + self.posinf + self.neginf


def failure_counts(values: npt.ArrayLike) -> FailureCounts:
    """Count the negative, NaN and infinite entries of computed variances.

    A variance is never negative and, for finite data whose variance fits the
    format, never infinite or NaN; each such entry is a failure the study reports
    (and, after ``rsqrt``, a NaN norm-layer output).

    Examples
    --------
    >>> failure_counts([1.0, -0.5, float("nan"), float("inf"), -0.0])
    FailureCounts(total=5, negative=1, nan=1, posinf=1, neginf=0)
    """
    v = _f64(values, "values")
    return FailureCounts(
        total=int(v.size),
        negative=int(np.count_nonzero(np.isfinite(v) & (v < 0))),
        nan=int(np.count_nonzero(np.isnan(v))),
        posinf=int(np.count_nonzero(v == np.inf)),
        neginf=int(np.count_nonzero(v == -np.inf)),
    )
