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

from varstats import jit
from varstats.precision import as_dtype, finfo

__all__ = ["compiled_fma", "fma", "split_factor", "two_product", "two_sum"]

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


def split_factor(dtype: Any) -> float:
    """Veltkamp's splitting constant :math:`2^{\\lceil p/2\rceil} + 1` of a format."""
    return float(2.0 ** ((finfo(dtype).mant + 1) // 2) + 1.0)


def two_product(a: Array, b: Array) -> tuple[Array, Array]:
    r"""Dekker's TwoProduct in the dtype of ``a``: ``p + e == a * b`` exactly.

    Veltkamp's split with :func:`split_factor` of the format, so it works in every
    format of :data:`~varstats.precision.DTYPES`. Exact barring overflow (:math:`|a|`
    near ``max / factor``) and underflow of ``e``.
    """
    p = a * b
    factor = np.asarray(split_factor(a.dtype)).astype(a.dtype)
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


# --- the hardware FMA, compiled -----------------------------------------------------
# With numba (the "jit" extra), float32 FMAs run as LLVM's llvm.fma: the exactly rounded
# ab + c by the intrinsic's definition (the FMA instruction where the CPU has one, the C
# library's fma otherwise), so the same bits as the emulation below, which
# tests/test_rounding.py checks (a NaN's payload may differ; it is still a NaN). float64
# stays emulated: the Dekker split overflows for |a| above about 1e300 and a product
# beyond float64's range gives the plain a*b + c there, where llvm.fma would differ. No
# fast-math: nothing else is contracted or reordered. Whether fma may use it (tests switch
# it off); numba is imported on first use.
_USE_JIT = True


def compiled_fma() -> Any:
    """numba's ``llvm.fma`` as an intrinsic for compiled kernels, or None without numba.

    Called inside a function compiled by numba, ``compiled_fma()(a, b, c)`` is one
    rounding of :math:`ab + c` for float32 or float64 operands of one type
    (:func:`varstats.jit.hardware_fma`).
    """
    return jit.hardware_fma()


# bound to compiled_fma() before _fused_fma is compiled; a module global rather than a
# closure variable, which would enter the key of numba's on-disk cache (a new key, and
# a new compilation, in every process)
_jit_fma: Any = None


def _fused_fma(a: Any, b: Any, c: Any) -> Any:
    return _jit_fma(a, b, c)


def _compiled_fma_ufunc() -> Any:
    """:func:`compiled_fma` as a float32 ufunc (broadcasting), or None without numba."""
    return jit.build("rounding.fma_ufunc", _make_fma_ufunc)


def _make_fma_ufunc(numba: Any) -> Any:
    global _jit_fma
    _jit_fma = compiled_fma()
    return numba.vectorize(["float32(float32, float32, float32)"], cache=True)(_fused_fma)


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
        ufunc = _compiled_fma_ufunc() if _USE_JIT else None
        # compiled only when every operand is float32 already (a float64 array passed
        # for float32 would be rounded by the ufunc's cast first)
        if ufunc is not None and all(np.asarray(v).dtype == dt for v in (a, b, c)):
            with np.errstate(all="ignore"):
                return np.asarray(ufunc(a, b, c))
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
