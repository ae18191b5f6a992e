r"""Error-free transformations and emulated fused multiply-add.

The building blocks that let a kernel round exactly as a compiled framework
does: Knuth's TwoSum (:math:`s + e = a + b` exactly), Dekker's TwoProduct and a
fused multiply-add :math:`\operatorname{fl}(ab + c)` with one rounding. They sit
beside :mod:`varstats.precision` at the bottom of the package: they import
nothing from it but the dtype lookup.

References
----------
.. [1] D. E. Knuth, *The Art of Computer Programming*, vol. 2, 3rd ed., 1998, 4.2.2.
.. [2] T. J. Dekker, "A floating-point technique for extending the available
       precision", Numer. Math. 18, 1971.
.. [3] S. Boldo, G. Melquiond, "Emulation of a FMA and correctly rounded sums:
       proved algorithms using rounding to odd", IEEE Trans. Computers 57(4), 2008.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from varstats.precision import as_dtype

__all__ = ["fma", "two_product", "two_sum"]

Array = npt.NDArray[Any]


def two_sum(s: Any, x: Any) -> tuple[Any, Any]:
    """Knuth's TwoSum: ``t + e == s + x`` exactly; works on any array namespace."""
    # Knuth's TwoSum: t + e == s + x exactly, in any binary format with
    # correct rounding (no branch on |s| >= |x| as in Fast2Sum).
    t = s + x
    z = t - s
    e = (s - (t - z)) + (x - z)
    return t, e


def _add_round_to_odd(a: Array, b: Array) -> Array:
    """``a + b`` in float64 rounded to odd: an inexact sum gets an odd last bit.

    Rounding to odd in 53 bits followed by rounding to nearest in p <= 51 bits
    is a correct rounding of the exact sum (Boldo & Melquiond 2008).
    """
    s, e = two_sum(a, b)
    inexact = (e != 0) & np.isfinite(s)
    even = (s.view(np.uint64) & np.uint64(1)) == 0
    toward = np.where(e > 0, np.inf, -np.inf)
    return np.asarray(np.where(inexact & even, np.nextafter(s, toward), s))


def two_product(a: Array, b: Array) -> tuple[Array, Array]:
    """Dekker's TwoProduct in float64: ``p + e == a * b`` exactly."""
    # Dekker/Veltkamp: p + e == a * b exactly (barring overflow/underflow).
    p = a * b
    factor = 134217729.0  # 2**27 + 1
    ca, cb = factor * a, factor * b
    ah = ca - (ca - a)
    bh = cb - (cb - b)
    al, bl = a - ah, b - bh
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


_F32_LOW: Final = np.uint64((1 << 29) - 1)  # float64 significand bits below float32's
_F32_HALF: Final = np.uint64(1 << 28)  # ... that make a float32 midpoint
_F32_TINY: Final = float(np.finfo(np.float32).tiny)


def _fma_float32(a: npt.ArrayLike, b: npt.ArrayLike, c: npt.ArrayLike) -> Array:
    # The product of two float32 values is exact in float64, so s = fl64(ab + c) is
    # one rounding away from the exact sum, and rounding s to float32 is correct
    # unless s is a float32 midpoint (the one case where double rounding can go the
    # wrong way) or lies in float32's subnormal range (a coarser grid). Only those
    # few elements take the round-to-odd path; the result is the same bits. The
    # ufuncs cast the (float32 or narrower) operands to float64 as they go.
    p = np.multiply(a, b, dtype=np.float64)
    c64 = np.asarray(c, dtype=np.float64)
    s = np.asarray(np.add(p, c64))
    bits = s.view(np.uint64)
    suspect = ((bits & _F32_LOW) == _F32_HALF) | (np.abs(s) < _F32_TINY)
    out = s.astype(np.float32)
    if suspect.any():
        pb = np.broadcast_to(p, s.shape)[suspect]
        cb = np.broadcast_to(c64, s.shape)[suspect]
        fixed = _add_round_to_odd(pb, cb)
        fixed = np.where(np.isfinite(fixed), fixed, pb + cb)
        out[suspect] = fixed.astype(np.float32)
    return np.asarray(out)


def fma(a: npt.ArrayLike, b: npt.ArrayLike, c: npt.ArrayLike, /, dtype: Any) -> Array:
    r"""Fused multiply-add :math:`\operatorname{fl}(ab + c)`: one rounding to ``dtype``.

    For float16, bfloat16 and float32 the product of two values is exact in
    float64, the sum is rounded to odd in float64 and then to nearest in
    ``dtype``, which is a correct single rounding (Boldo & Melquiond 2008). For
    float64 the product is split exactly (Dekker) and the three-term sum is
    rounded correctly by the same round-to-odd device (Boldo & Melquiond 2008,
    algorithm 5.4). Inputs must already be values of ``dtype``.

    References
    ----------
    .. [1] S. Boldo, G. Melquiond, "Emulation of a FMA and correctly rounded sums:
           proved algorithms using rounding to odd", IEEE Trans. Computers 57(4), 2008.
    """
    dt = as_dtype(dtype)
    if dt == np.float32:
        with np.errstate(all="ignore"):
            return _fma_float32(a, b, c)
    a64, b64, c64 = (np.asarray(v).astype(np.float64) for v in (a, b, c))
    with np.errstate(all="ignore"):
        if dt != np.float64:
            # float32 * float32 is exact in float64 (24 + 24 <= 53 bits)
            out = _add_round_to_odd(a64 * b64, c64)
            out = np.where(np.isfinite(out), out, a64 * b64 + c64)
            return np.asarray(out.astype(dt))
        p, pe = two_product(a64, b64)
        uh, ul = two_sum(c64, pe)
        th, tl = two_sum(p, uh)
        v = _add_round_to_odd(tl, ul)
        out = th + v
        # non-finite products or sums: IEEE semantics of the plain expression
        plain = a64 * b64 + c64
        return np.asarray(np.where(np.isfinite(out) & np.isfinite(p), out, plain))
