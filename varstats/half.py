r"""float16 accumulation compiled: float16 arithmetic in float32 registers.

NumPy adds, subtracts, multiplies and divides float16 arrays by widening each element
to float32, operating, and rounding the result back to float16 (the ``HALF_@kind@``
loops of ``numpy/_core/src/umath/loops.c.src``, converting with ``npy_half_to_float``
and ``npy_float_to_half`` of ``numpy/_core/src/npymath/halffloat.cpp``); since float32
carries ``24 >= 2 * 11 + 2`` bits, that single operation is correctly rounded
(innocuous double rounding: Figueroa 1995). The two conversions per element, not the
arithmetic, are what makes it slow: several times ``np.var``'s cost per element.

With numba (the ``jit`` extra) the float16 loops of :mod:`varstats.summation` (lane
sums, squared deviations, Neumaier sums), of :func:`varstats.array_api.sequential_sum`
and of Welford's update run here as compiled float32 loops instead: each float16
operand is widened with integer operations, each operation is done in float32 and its
result is rounded to the float16 grid *in float32* (:func:`_round_half`), so values stay
float32 in registers and only results are converted back. Every step rounds exactly as
NumPy's float16 loops do: ties to even, subnormals, overflow to ``inf``, and NaNs
included, down to which of two NaN operands is returned (:func:`_add`).
``tests/test_half.py`` compares the rounding with NumPy's casts on every float16 value
and tie and on hypothesis-drawn float32 values, and each kernel with the NumPy path it
replaces. Without numba, or with :data:`_USE_JIT` off, every function returns None (and
:func:`widen_half` uses NumPy's cast), so the NumPy path runs.
:func:`widen_half` also serves float16 data with a float32 or float64 accumulator:
NumPy's own float16 cast costs more than the variance that follows.

References
----------
.. [1] S. A. Figueroa, "When is double rounding innocuous?", ACM SIGNUM Newsletter
       30(3), 1995.
.. [2] IEEE 754-2019, section 4.3.1 (round to nearest, ties to even).
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from varstats import jit

__all__ = [
    "compiled",
    "deviations",
    "handles",
    "lane_squares",
    "lane_sums",
    "neumaier_rows",
    "round_half",
    "sequential_sum",
    "squares",
    "welford_lanes",
    "widen_half",
]

Array = npt.NDArray[Any]

# float32 bit patterns (IEEE binary32: 1 sign, 8 exponent, 23 fraction bits)
_SIGN: Final = np.uint32(0x80000000)
_ABS: Final = np.uint32(0x7FFFFFFF)
_EXPONENT: Final = np.uint32(0x7F800000)
_HALF_PAYLOAD: Final = np.uint32(0x7FFFE000)  # exponent and the top 10 fraction bits
_HALF_NAN: Final = np.uint32(0x7F802000)  # the NaN with the smallest float16 payload
# 65520 = 65504 + half an ulp: from here on a float16 rounds to inf (the tie goes to
# the even 65536, which is past the largest finite float16)
_HALF_OVERFLOW: Final = np.uint32(0x477FF000)
_HALF_TINY: Final = np.uint32(0x38800000)  # 2**-14, the smallest normal float16
_SHIFT_13: Final = np.uint32(13 << 23)  # multiplies a power of two by 2**13
# float16 bit patterns (binary16: 1 sign, 5 exponent, 10 fraction bits)
_H_SIGN: Final = np.uint32(0x8000)
_H_ABS: Final = np.uint32(0x7FFF)
_H_EXPONENT: Final = np.uint32(0x7C00)
_REBIAS: Final = np.float32(2.0**112)  # 2**(127 - 15): float16 to float32 exponent bias
_H_REBIAS: Final = np.uint32(112 << 10)  # the same shift in the float16 exponent field
_H_PAYLOAD: Final = np.uint32(0x03FF)
_HALF: Final = np.float32(0.5)
_HALF_BITS: Final = np.uint32(0x3F000000)


def _round_half(v: np.float32) -> np.float32:
    """The float16 value nearest to ``v`` (ties to even), as a float32.

    For finite ``|v| < 65520``: ``M = 2**(e + 13)``, with ``2**e`` the binade of ``|v|``
    but at least ``2**-14``, is a float32 whose ulp is ``2**(e - 10)``, the spacing of
    the float16 values in that binade (``2**-24`` below it, the subnormals). So
    ``|v| + M`` rounds ``|v|`` to the float16 grid, ties to even (the last bit of
    ``M + k ulp`` is the last bit of ``k``), and subtracting ``M`` again is exact.
    From 65520 on the result is inf; a NaN keeps its sign and the top ten payload bits,
    made nonzero as NumPy's conversion does. The special cases are selects, not
    branches, so that the compiled loops vectorize.
    """
    u = np.float32(v).view(np.uint32)
    a = np.uint32(u & _ABS)
    magic = np.uint32(np.uint32(max(np.uint32(a & _EXPONENT), _HALF_TINY)) + _SHIFT_13)
    m = np.uint32(magic).view(np.float32)
    # two float32 roundings, never contracted or reassociated (numba runs without fast-math)
    r = (np.uint32(a).view(np.float32) + m) - m
    bits = np.float32(r).view(np.uint32)
    bits = _EXPONENT if a >= _HALF_OVERFLOW else bits
    bits = np.uint32(max(np.uint32(a & _HALF_PAYLOAD), _HALF_NAN)) if a > _EXPONENT else bits
    return np.uint32(bits | np.uint32(u & _SIGN)).view(np.float32)


def _widen(h: np.uint16) -> np.float32:
    """The float16 with bit pattern ``h`` as a float32 (exact)."""
    em = np.uint32(np.uint32(h) & _H_ABS)
    sign = np.uint32(np.uint32(np.uint32(h) & _H_SIGN) << np.uint32(16))
    shifted = np.uint32(em << np.uint32(13))
    # the float16 bits shifted into place read as 2**-112 times the value (subnormals
    # included); one exact product puts the exponent bias right
    v = np.uint32(shifted).view(np.float32) * _REBIAS
    bits = np.float32(v).view(np.uint32)
    # inf and NaN: all exponent bits, the payload shifted up
    bits = np.uint32(_EXPONENT | shifted) if em >= _H_EXPONENT else bits
    return np.uint32(bits | sign).view(np.float32)


def _widen64(h: np.uint16) -> np.float64:
    """The float16 with bit pattern ``h`` as a float64 (exact, NaN payloads kept).

    A float32 -> float64 conversion would quiet a signaling NaN; NumPy's float16 ->
    float64 cast does not, so NaNs are built from their bits.
    """
    em = np.uint64(np.uint64(h) & np.uint64(0x7FFF))
    nan = np.uint64(
        np.uint64(np.uint64(np.uint64(h) & np.uint64(0x8000)) << np.uint64(48))
        | np.uint64(0x7FF0000000000000)
        | np.uint64(np.uint64(em & np.uint64(0x3FF)) << np.uint64(42))
    )
    v = np.float64(_widen(h))
    return np.uint64(nan).view(np.float64) if em > np.uint64(0x7C00) else v


def _add(a: np.float32, b: np.float32) -> np.float32:
    """``a + b`` in float32, returning NumPy's NaN when both are NaN.

    Which NaN a hardware addition returns when both operands are NaN depends on the
    operand order the compiler picked; NumPy's float16 ``add`` and ``multiply`` loops
    return the second operand's (quieted) and ``subtract`` and ``divide`` the first's
    (``tests/test_half.py`` pins all four), so the commutative two are fixed here.
    """
    r = a + b
    return b + b if (a != a) and (b != b) else r  # b + b: b quieted


def _mul(a: np.float32, b: np.float32) -> np.float32:
    """``a * b`` in float32, returning NumPy's NaN when both are NaN (see :func:`_add`)."""
    r = a * b
    return b + b if (a != a) and (b != b) else r


def _narrow(v: np.float32) -> np.uint16:
    """The float16 bit pattern of ``v``, a float32 that holds a float16 value (exact)."""
    u = np.float32(v).view(np.uint32)
    a = np.uint32(u & _ABS)
    # normal: drop 13 fraction bits (all zero) and rebias the exponent from 127 to 15
    bits = np.uint32(np.uint32(a >> np.uint32(13)) - _H_REBIAS)
    # subnormal (below 2**-14): 0.5 + |v| has ulp 2**-24, so its last bits count the
    # float16 subnormal steps of |v| exactly
    steps = np.uint32(
        np.float32(np.uint32(a).view(np.float32) + _HALF).view(np.uint32) - _HALF_BITS
    )
    bits = steps if a < _HALF_TINY else bits
    # inf and NaN: all exponent bits and the top ten payload bits
    bits = (
        np.uint32(_H_EXPONENT | np.uint32(np.uint32(a >> np.uint32(13)) & _H_PAYLOAD))
        if a >= _EXPONENT
        else bits
    )
    return np.uint16(bits | np.uint32(np.uint32(u >> np.uint32(16)) & _H_SIGN))


# The compiled loops take one row of lanes at a time as 1-D arrays: indices counted from
# zero let LLVM drop the negative-index checks and vectorize each row (AVX-512: 16 lanes).


def _round_half_row(v: Array, out: Array) -> None:
    for i in range(v.shape[0]):
        out[i] = _round_half(v[i])


def _widen_row(h: Array, out: Array) -> None:
    for i in range(h.shape[0]):
        out[i] = _widen(h[i])


def _widen64_row(h: Array, out: Array) -> None:
    for i in range(h.shape[0]):
        out[i] = _widen64(h[i])


def _add_row(s: Array, h: Array) -> None:
    # s += h, rounded to float16
    for i in range(s.shape[0]):
        s[i] = _round_half(_add(s[i], _widen(h[i])))


def _square_row(s: Array, h: Array, c: Array) -> None:
    # s = (h - c)**2, each operation rounded to float16
    for i in range(s.shape[0]):
        d = _round_half(_widen(h[i]) - c[i])
        s[i] = _round_half(_mul(d, d))


def _add_square_row(s: Array, h: Array, c: Array) -> None:
    # s += (h - c)**2, each operation rounded to float16
    for i in range(s.shape[0]):
        d = _round_half(_widen(h[i]) - c[i])
        s[i] = _round_half(_add(s[i], _round_half(_mul(d, d))))


def _subtract_row(h: Array, c: np.float32, out: Array) -> None:
    for i in range(h.shape[0]):
        out[i] = _narrow(_round_half(_widen(h[i]) - c))


def _square_row_bits(h: Array, out: Array) -> None:
    for i in range(h.shape[0]):
        w = _widen(h[i])
        out[i] = _narrow(_round_half(_mul(w, w)))


def _widen_column(h: Array, out: Array) -> None:
    for i in range(h.shape[0]):
        out[i] = _widen(h[i])


def _add_row_f32(s: Array, v: Array) -> None:
    # s += v (float32 holding float16 values), rounded to float16
    for i in range(s.shape[0]):
        s[i] = _round_half(_add(s[i], v[i]))


def _two_sum_row(s: Array, c: Array, h: Array) -> None:
    # Knuth's TwoSum of s and h, then c += its error: the steps of
    # varstats.rounding.two_sum in its order, each rounded to float16
    for i in range(s.shape[0]):
        x = _widen(h[i])
        t = _round_half(_add(s[i], x))
        z = _round_half(t - s[i])
        e = _round_half(_add(_round_half(s[i] - _round_half(t - z)), _round_half(x - z)))
        c[i] = _round_half(_add(c[i], e))
        s[i] = t


#: Lanes per block of the compiled loops: a block's running sums stay in L1.
_BLOCK: Final = 1024
#: Slices per block of the compiled sequential sums.
_SLICES: Final = 64
#: Elements of each slice per block of the compiled sequential sums.
_STEPS: Final = 256


def _lane_sums_kernel(h: Array, out: Array) -> None:
    # h: float16 bits (batch, rows, lanes); out: float32 (batch, lanes)
    for b in range(h.shape[0]):
        for j0 in range(0, h.shape[2], _BLOCK):
            j1 = min(j0 + _BLOCK, h.shape[2])
            s = out[b, j0:j1]
            _widen_row(h[b, 0, j0:j1], s)
            for k in range(1, h.shape[1]):
                _add_row(s, h[b, k, j0:j1])


def _lane_squares_kernel(h: Array, c: Array, out: Array) -> None:
    # h: float16 bits (batch, rows, lanes); c: float32 (batch, lanes); out like c
    for b in range(h.shape[0]):
        for j0 in range(0, h.shape[2], _BLOCK):
            j1 = min(j0 + _BLOCK, h.shape[2])
            s, cb = out[b, j0:j1], c[b, j0:j1]
            _square_row(s, h[b, 0, j0:j1], cb)
            for k in range(1, h.shape[1]):
                _add_square_row(s, h[b, k, j0:j1], cb)


def _subtract_kernel(h: Array, c: Array, out: Array) -> None:
    # h, out: float16 bits (batch, rows, lanes); c: float32 (batch,)
    for b in range(h.shape[0]):
        for k in range(h.shape[1]):
            _subtract_row(h[b, k], c[b], out[b, k])


def _square_kernel(h: Array, out: Array) -> None:
    # h, out: float16 bits (batch, rows, lanes)
    for b in range(h.shape[0]):
        for k in range(h.shape[1]):
            _square_row_bits(h[b, k], out[b, k])


def _sequential_kernel(h: Array, out: Array) -> None:
    # h: float16 bits (batch, n), n >= 1; out: float32 (batch,). Each slice left to
    # right. A block of slices advances one element at a time, so the loop over the
    # block vectorizes (the sums of one slice depend on each other); _STEPS elements
    # of each slice are first widened into a buffer whose columns are the slices, so
    # that loop reads it contiguously.
    batch, n = h.shape
    buf = np.empty((_STEPS, _SLICES), dtype=np.float32)
    for b0 in range(0, batch, _SLICES):
        width = min(_SLICES, batch - b0)
        s = out[b0 : b0 + width]
        for i in range(width):
            s[i] = _widen(h[b0 + i, 0])
        for k0 in range(1, n, _STEPS):
            steps = min(_STEPS, n - k0)
            for i in range(width):
                _widen_column(h[b0 + i, k0 : k0 + steps], buf[:steps, i])
            for k in range(steps):
                _add_row_f32(s, buf[k, :width])


def _neumaier_kernel(h: Array, s_out: Array, c_out: Array) -> None:
    # h: float16 bits (batch, rows, lanes); s_out, c_out: float32 (batch, lanes)
    for b in range(h.shape[0]):
        for j0 in range(0, h.shape[2], _BLOCK):
            j1 = min(j0 + _BLOCK, h.shape[2])
            s, c = s_out[b, j0:j1], c_out[b, j0:j1]
            _widen_row(h[b, 0, j0:j1], s)
            c[:] = 0.0
            for k in range(1, h.shape[1]):
                _two_sum_row(s, c, h[b, k, j0:j1])


def _welford_kernel(h: Array, width: int, mean: Array, m2: Array) -> None:
    # h: float16 bits (batch, n); element k of a slice goes to lane k % width; mean
    # and m2: float32 (batch, width). The steps of varstats.kernels._welford_steps, in
    # its order, each rounded to float16; the count k too, as that kernel rounds it.
    n = h.shape[1]
    for b in range(h.shape[0]):
        for lane in range(width):
            mu = np.float32(0.0)
            s = np.float32(0.0)
            for k in range(1, (n - lane + width - 1) // width + 1):
                xk = _widen(h[b, lane + (k - 1) * width])
                delta = _round_half(xk - mu)
                mu = _round_half(_add(mu, _round_half(delta / _round_half(np.float32(k)))))
                s = _round_half(_add(s, _round_half(_mul(delta, _round_half(xk - mu)))))
            mean[b, lane] = mu
            m2[b, lane] = s


#: Whether float16 lane loops may run compiled (tests switch it off to compare).
_USE_JIT = True


def compiled() -> dict[str, Any] | None:
    """The compiled kernels by name, or None without numba or with :data:`_USE_JIT` off."""
    if not _USE_JIT:
        return None
    kernels: dict[str, Any] | None = jit.build("half.kernels", _build_kernels)
    return kernels


def _build_kernels(numba: Any) -> dict[str, Any]:
    from numba.extending import register_jitable

    # the scalar steps and row loops become callable from compiled code (they stay
    # plain Python functions too)
    steps: tuple[Any, ...] = (
        _round_half,
        _widen,
        _widen64,
        _narrow,
        _add,
        _mul,
        _widen_row,
        _add_row,
    )
    rows: tuple[Any, ...] = (
        _square_row,
        _add_square_row,
        _subtract_row,
        _square_row_bits,
        _widen_column,
        _add_row_f32,
        _two_sum_row,
    )
    for f in steps + rows:
        register_jitable(f)
    # no fast-math: every float32 operation rounds where it is written
    compile_ = numba.njit(cache=True, nogil=True)
    return {
        "round_half": compile_(_round_half_row),
        "widen": compile_(_widen_row),
        "widen64": compile_(_widen64_row),
        "lane_sums": compile_(_lane_sums_kernel),
        "lane_squares": compile_(_lane_squares_kernel),
        "subtract": compile_(_subtract_kernel),
        "square": compile_(_square_kernel),
        "welford": compile_(_welford_kernel),
        "sequential": compile_(_sequential_kernel),
        "neumaier": compile_(_neumaier_kernel),
    }


def round_half(v: npt.ArrayLike, /) -> Array:
    """float32 values rounded to the nearest float16 values, kept as float32.

    The same bits as ``v.astype(np.float16).astype(np.float32)``, computed in float32
    with the compiled kernel when numba is installed (NumPy's casts otherwise).
    """
    a = np.ascontiguousarray(v, dtype=np.float32)
    kernels = compiled()
    if kernels is None:
        with np.errstate(over="ignore"):
            return a.astype(np.float16).astype(np.float32)
    out = np.empty_like(a)
    kernels["round_half"](a.reshape(-1), out.reshape(-1))
    return out


def widen_half(h: npt.ArrayLike, /, *, dtype: Any = np.float32) -> Array:
    """float16 values as float32 or float64 (exact): ``h.astype(dtype)``, compiled when possible.

    NumPy's float16 cast takes about twice as long as ``np.var`` of the same number of
    float64 values; the compiled loop a tenth of it. The result is C-contiguous.
    """
    a = np.ascontiguousarray(h, dtype=np.float16)
    target = np.dtype(dtype)
    if target not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype: expected float32 or float64, got {target}")
    kernels = compiled()
    if kernels is None:
        return a.astype(target)
    out = np.empty(a.shape, dtype=target)
    kernel = kernels["widen" if target == np.float32 else "widen64"]
    kernel(a.reshape(-1).view(np.uint16), out.reshape(-1))
    return out


def _as_3d(head: Array) -> Array:
    # (batch..., rows, lanes) -> (batch, rows, lanes); a view whenever the layout allows
    return head.reshape(-1, *head.shape[-2:])


def _applies(head: Any) -> bool:
    return isinstance(head, np.ndarray) and head.dtype == np.float16 and head.ndim >= 2


def lane_sums(head: Any, /) -> Array | None:
    """Sequential sums down the rows of float16 ``(..., rows, m)``, each rounded to float16.

    The bits of ``np.add.reduce(head, axis=-2)`` on rows NumPy reduces row by row
    (:func:`varstats.summation.row_sum`); None when not compiled or ``head`` is not a
    float16 NumPy array.
    """
    kernels = compiled()
    if kernels is None or not _applies(head) or head.shape[-2] == 0:
        return None
    h = _as_3d(head)
    out = np.empty((h.shape[0], h.shape[2]), dtype=np.float32)
    kernels["lane_sums"](h.view(np.uint16), out)
    # every lane sum is a float16 value already: the cast is exact
    return out.astype(np.float16).reshape(*head.shape[:-2], head.shape[-1])


def lane_squares(head: Any, center: Any, /) -> Array | None:
    """Row sums of ``(head - center)**2`` for float16 ``head``, each step rounded to float16.

    ``center`` holds one float16 value per lane or per slice, broadcast against
    ``(..., m)``. The same roundings in the same order as
    :func:`varstats.summation.lane_squares`; None when that path should run instead.
    """
    kernels = compiled()
    if kernels is None or not _applies(head) or head.shape[-2] == 0:
        return None
    h = _as_3d(head)
    lanes = (*head.shape[:-2], head.shape[-1])
    if not isinstance(center, np.ndarray | np.generic):
        return None
    c = np.asarray(center)
    if c.dtype != np.float16:
        return None
    c32 = np.ascontiguousarray(np.broadcast_to(c, lanes), dtype=np.float32).reshape(h.shape[0], -1)
    out = np.empty_like(c32)
    kernels["lane_squares"](h.view(np.uint16), c32, out)
    return out.astype(np.float16).reshape(lanes)


def _as_rows(a: Array, batch_ndim: int) -> Array:
    # (batch..., [rows,] lanes) -> (batch, rows, lanes), a view whenever the layout allows
    return a.reshape(math.prod(a.shape[:batch_ndim]), -1, a.shape[-1])


def deviations(a: Any, center: Any, /) -> Array | None:
    """``a - center`` for float16 ``a``, one center per slice of the leading axes.

    ``center`` has the shape of ``a``'s leading axes (``a`` is ``(..., L)`` or
    ``(..., rows, m)``); the bits of ``np.subtract`` broadcasting it over the rest, in a
    new C-contiguous array. None when not compiled or not float16.
    """
    kernels = compiled()
    if (
        kernels is None
        or not _applies_elementwise(a)
        or not isinstance(center, np.ndarray | np.generic)
    ):
        return None
    c = np.asarray(center)
    if c.dtype != np.float16:
        return None
    if a.ndim - c.ndim not in (1, 2) or a.shape[: c.ndim] != c.shape or a.size == 0:
        return None
    h = _as_rows(a, c.ndim)
    out = np.empty(h.shape, dtype=np.float16)
    kernels["subtract"](h.view(np.uint16), c.reshape(-1).astype(np.float32), out.view(np.uint16))
    return out.reshape(a.shape)


def squares(a: Any, /) -> Array | None:
    """``a * a`` for float16 ``a``: the bits of ``np.multiply``, in a new C-contiguous array."""
    kernels = compiled()
    if kernels is None or not _applies_elementwise(a) or a.size == 0:
        return None
    h = _as_rows(a, a.ndim - 1) if a.ndim >= 1 else a.reshape(1, 1, 1)
    out = np.empty(h.shape, dtype=np.float16)
    kernels["square"](h.view(np.uint16), out.view(np.uint16))
    return out.reshape(a.shape)


def _applies_elementwise(a: Any) -> bool:
    return isinstance(a, np.ndarray) and a.dtype == np.float16 and a.ndim >= 1


def handles(a: Any, /) -> bool:
    """Whether the compiled float16 loops here take ``a``: float16 NumPy data, numba present.

    For callers that would otherwise run a NumPy loop of their own on ``a`` (one
    vector operation per row) instead of the steps these functions replace.
    """
    return _applies_elementwise(a) and compiled() is not None


def welford_lanes(x: Any, acc: Any, width: int, /) -> tuple[Array, Array] | None:
    """Welford's running mean and ``M2`` of float16 ``x`` (``(..., n)``) in ``width`` lanes.

    Element ``k`` of a slice goes to lane ``k % width``; every step rounds to float16
    as :func:`varstats.kernels.welford` does with a float16 accumulator ``acc``, so
    the bits are the same. Returns ``(mean, m2)``, each ``(..., width)``, or None when
    not compiled or not float16.
    """
    kernels = compiled()
    if kernels is None or not _applies_elementwise(x) or acc != np.float16 or x.shape[-1] < 1:
        return None
    n = x.shape[-1]
    flat = np.ascontiguousarray(x.reshape(-1, n))
    mean = np.empty((flat.shape[0], width), dtype=np.float32)
    m2 = np.empty_like(mean)
    kernels["welford"](flat.view(np.uint16), width, mean, m2)
    shape = (*x.shape[:-1], width)
    return mean.astype(np.float16).reshape(shape), m2.astype(np.float16).reshape(shape)


def sequential_sum(a: Any, /) -> Array | None:
    """Left-to-right sum over the last axis of float16 ``a``, every partial sum rounded.

    The bits of ``np.add.accumulate(a, axis=-1)[..., -1]``
    (:func:`varstats.array_api.sequential_sum`); None when not compiled or not float16.
    """
    kernels = compiled()
    if kernels is None or not _applies_elementwise(a) or a.shape[-1] < 1:
        return None
    h = a.reshape(-1, a.shape[-1])
    out = np.empty(h.shape[0], dtype=np.float32)
    kernels["sequential"](h.view(np.uint16), out)
    return out.astype(np.float16).reshape(a.shape[:-1])


def neumaier_rows(head: Any, /) -> tuple[Array, Array] | None:
    """Neumaier's compensated sum down the rows of float16 ``(..., rows, m)``.

    ``(s, c)``, each ``(..., m)``: the running sums and the running sums of TwoSum's
    errors, every operation rounded to float16 in the order of
    :func:`varstats.summation.compensated_sum`'s NumPy path, so the same bits. None
    when not compiled or not float16.
    """
    kernels = compiled()
    if kernels is None or not _applies(head) or head.shape[-2] == 0:
        return None
    h = _as_3d(head)
    s = np.empty((h.shape[0], h.shape[2]), dtype=np.float32)
    c = np.empty_like(s)
    kernels["neumaier"](h.view(np.uint16), s, c)
    shape = (*head.shape[:-2], head.shape[-1])
    return s.astype(np.float16).reshape(shape), c.astype(np.float16).reshape(shape)
