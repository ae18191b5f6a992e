r"""Two-pass variance in doubled working precision: the kernel behind the recommendation.

The two-pass formula loses accuracy in three places: the mean is rounded, every
deviation :math:`x_i - \bar x` is rounded, and every square and partial sum is
rounded. ``dot2`` removes all three with error-free transformations in the
accumulator format, as Ogita, Rump & Oishi's *Sum2* and *Dot2* do for sums and dot
products:

1. :math:`\mu` = the compensated (Sum2) mean. Any :math:`\mu` near :math:`\bar x`
   will do, because step 3 uses the exact identity
   :math:`M_2 = \sum (x_i - \mu)^2 - \tfrac1n\bigl(\sum (x_i - \mu)\bigr)^2`.
2. :math:`d_i = x_i - \mu` exactly, as the pair :math:`d_i = d^h_i + d^l_i` (TwoSum).
3. :math:`T = \sum d_i` and :math:`Q = \sum d_i^2` as unevaluated sums
   :math:`s + c` (Sum2, with :math:`(d^h_i)^2` split exactly by TwoProduct and
   :math:`2d^h_id^l_i + (d^l_i)^2` added to the compensation), then
   :math:`M_2 = Q - T^2/n` and :math:`M_2/(n - c)` in double-word arithmetic, rounded
   once at the very end.

A slice whose largest magnitude lies outside :math:`[\sqrt{\text{tiny}}/u^2,
\sqrt{\max/(8nf)}]` (:math:`f = 2^{\lceil p/2\rceil} + 1` the split factor of
TwoProduct) is first scaled by the power of two that puts it just below the upper end
(exact, and undone at the end), so that no square, sum or TwoProduct split overflows
and no error term of a square underflows.

What is guaranteed
------------------
With :math:`L` the length of the longest summation chain (:math:`L \le 31 + \lceil\log_2
\lceil n/32\rceil\rceil`: 32 rows summed down each lane, then a balanced tree over the
lanes), each unevaluated Sum2 result is within :math:`\gamma_L^2\sum|p_i|` of the exact
sum (Ogita, Rump & Oishi 2005, proof of proposition 4.5, :math:`\gamma_L = Lu/(1 - Lu)`),
so the double-word :math:`M_2` has relative error at most about
:math:`4(Lu)^2(1 + (u\kappa)^2)` (the :math:`(u\kappa)^2` because
:math:`|\bar x - \mu| \lesssim 2u|\bar x|` makes :math:`T^2/n \lesssim 4u^2\kappa^2 M_2`).
The final double-word division adds :math:`2u` of :math:`\operatorname{ulp}` before the
one rounding. While :math:`4(Lu)^2(1 + (u\kappa)^2) + 2u^2 < u/2`, i.e. for
:math:`n < 2^p` and :math:`\kappa \lesssim u^{-3/2}/L`, the result is therefore
*faithful*: one of the two floats around the exact variance, so within one ulp of
the correctly rounded one (in the accumulator format, the format of the returned
value). Exceptions: a variance beyond the format's range is ``inf``; one below the
normal range is rounded twice (once in the scaled range, once to the subnormal grid)
and is within one unit of the subnormal quantum. Data whose values are all equal give
exactly 0. The constant factors above are first-order estimates, not a machine-checked
proof; the tests measure the result against the exact oracle.

Cost: about 50 floating-point operations per element in the accumulator, against 4
for the plain two-pass (TwoSum 6, a Sum2 step 7 or 8, Veltkamp's split of a square 3
and its error term 7; with a hardware FMA the error term of a square is one
operation). All of them are vector operations over the row; no framework
normalization kernel does this.

References
----------
.. [1] T. Ogita, S. M. Rump, S. Oishi, "Accurate sum and dot product", SIAM J. Sci.
       Comput. 26(6), 1955-1988, 2005 (Sum2: algorithm 4.4, proposition 4.5; Dot2:
       algorithm 5.3).
.. [2] T. J. Dekker, "A floating-point technique for extending the available
       precision", Numer. Math. 18, 224-242, 1971 (TwoProduct, double-word division).
.. [3] T. F. Chan, G. H. Golub, R. J. LeVeque, "Algorithms for computing the sample
       variance: analysis and recommendations", The American Statistician 37(3),
       242-247, 1983 (the corrected two-pass identity, eq. 1.7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from varstats import summation
from varstats.moments import Moments, tree_reduce
from varstats.precision import finfo, round_to
from varstats.rounding import two_sum

__all__ = ["DOT2_ROWS", "DoubleWordMoments", "dot2_two_pass", "two_product"]

Array = npt.NDArray[Any]

#: Values summed down each lane before the lanes are added in a tree (as the
#: ``"pairwise"`` summation of :mod:`varstats.algorithms` does).
DOT2_ROWS: Final = 32


def two_product(a: Array, b: Array) -> tuple[Array, Array]:
    r"""Dekker's TwoProduct in the dtype of ``a``: ``p + e == a * b`` exactly.

    Veltkamp's split with the factor :math:`2^{\lceil p/2\rceil} + 1` of the format, so
    it works in every format of :data:`~varstats.precision.DTYPES` (``rounding.two_product``
    is the float64 one). Exact barring overflow (:math:`|a|` near ``max / factor``) and
    underflow of ``e``.
    """
    p = a * b
    factor = np.asarray(_split_factor(a.dtype)).astype(a.dtype)
    ca, cb = factor * a, factor * b
    ah = ca - (ca - a)
    bh = cb - (cb - b)
    al, bl = a - ah, b - bh
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def _lane_sum2(head: Array, low: Array | None, s: Array, c: Array) -> None:
    """Sum2 of each lane of ``(..., DOT2_ROWS, w)`` blocks into ``s + c`` (written in place).

    Each lane is summed down its rows with TwoSum (:func:`varstats.rounding.two_sum`),
    the exact errors are added to ``c`` in plain arithmetic, left to right from 0, and
    then the rows of ``low`` (if any). The running sums are one ``np.add.accumulate``
    (sequential by definition), so every TwoSum error follows from whole-block
    operations, and the errors and ``low`` are added by one row-by-row reduction.
    """
    rows = head.shape[-2]
    partial = np.empty_like(head)  # s_k = s_{k-1} + x_k, rounded
    np.copyto(partial[..., 0, :], head[..., 0, :])
    for k in range(1, rows):  # (np.add.accumulate along rows is 20x slower)
        np.add(partial[..., k - 1, :], head[..., k, :], out=partial[..., k, :])
    prev, t, xk = partial[..., :-1, :], partial[..., 1:, :], head[..., 1:, :]
    extra = 0 if low is None else low.shape[-2]
    errors = np.empty((*head.shape[:-2], rows - 1 + extra, head.shape[-1]), dtype=head.dtype)
    e = errors[..., : rows - 1, :]
    z = t - prev  # z = t - s
    np.subtract(t, z, out=e)
    np.subtract(prev, e, out=e)  # s - (t - z)
    np.subtract(xk, z, out=z)  # x - z
    e += z
    if low is not None:
        # the low parts are second order: one plain sum per lane suffices
        errors[..., rows - 1 :, :] = low
    np.copyto(s, partial[..., -1, :])
    np.copyto(c, _sum_rows_from_zero(errors))


def _sum_rows_from_zero(a: Array) -> Array:
    """``((0 + a_0) + a_1) + ...`` down the rows of ``(..., rows, w)``, each sum rounded."""
    if summation.rows_reducible(a):
        return np.asarray(np.add.reduce(a, axis=-2, initial=0))
    c = np.zeros_like(a[..., 0, :])
    for k in range(a.shape[-2]):
        c += a[..., k, :]
    return c


def _lane_tree(s: Array, c: Array) -> tuple[Array, Array]:
    """The lanes' ``s + c`` added in a balanced tree, TwoSum on ``s``, plainly on ``c``."""

    def combine(s1: Array, c1: Array, s2: Array, c2: Array) -> tuple[Array, Array]:
        t, e = two_sum(s1, s2)
        return t, (c1 + c2) + e

    s, c = tree_reduce((s, c), combine)
    return s, c


class _Lanes:
    """The data laid out as ``DOT2_ROWS x m`` lanes (zero-padded), read in blocks of lanes.

    Lane ``j`` holds elements ``j, j + m, j + 2m, ...``; the padding zeros add exactly.
    :meth:`block` copies lanes ``j0:j1`` into a ``(..., DOT2_ROWS, w)`` buffer in the
    accumulator, scaled by ``2**-k`` where ``k`` is nonzero: every value goes through
    the same operations as in a whole-array computation, only a cache-sized block at a
    time, so the extra memory is the lane sums (``4 / DOT2_ROWS`` of the input) and
    the block buffers.
    """

    def __init__(self, x: Array, acc: np.dtype[Any], k: Array) -> None:
        self.x, self.acc, self.k = x, acc, k
        n = x.shape[-1]
        self.m = m = -(-n // DOT2_ROWS)
        self.full = n // m  # rows wholly inside the data
        self.rest = n - self.full * m  # elements of the one partial row
        self.head = x[..., : self.full * m].reshape(*x.shape[:-1], self.full, m)
        batch = math.prod(x.shape[:-1])
        self.width = max(8, _BLOCK // (DOT2_ROWS * max(batch, 1)))

    def spans(self) -> list[tuple[int, int]]:
        return [(j, min(j + self.width, self.m)) for j in range(0, self.m, self.width)]

    def block(self, j0: int, j1: int) -> Array:
        out = np.zeros((*self.x.shape[:-1], DOT2_ROWS, j1 - j0), dtype=self.acc)
        out[..., : self.full, :] = self.head[..., j0:j1]  # exact: acc holds every value
        if j0 < self.rest:
            stop = min(j1, self.rest)
            start = self.full * self.m
            out[..., self.full, : stop - j0] = self.x[..., start + j0 : start + stop]
        if np.any(self.k):
            # a power of two: exact, except for values pushed below the normal range
            # when the largest one is scaled down (they are then negligible against it)
            scaled = np.ldexp(out.astype(np.float64), -self.k[..., None, None])
            out = round_to(scaled, self.acc)
        return out

    def clear_padding(self, a: Array, j0: int, j1: int) -> None:
        """Zero the padded positions of block ``j0:j1`` of ``a``."""
        if self.full < DOT2_ROWS:
            a[..., self.full + 1 :, :] = 0
            a[..., self.full, max(self.rest - j0, 0) :] = 0


#: Elements per block of lanes: the block and its temporaries stay in cache.
_BLOCK: Final = 2**16


def _dw_div(h: Array, lo: Array, d: Array) -> tuple[Array, Array]:
    """``(h + lo) / d`` as ``q1 + q2``: the remainder ``h - q1 d`` is exact (Dekker 1971)."""
    q1 = h / d
    p, pe = two_product(q1, d)
    # h - p is exact (Sterbenz: p is within an ulp of h), and so is (h - p) - pe,
    # the remainder of a correctly rounded quotient
    r = ((h - p) - pe) + lo
    return q1, r / d


@dataclass(frozen=True, eq=False)
class DoubleWordMoments(Moments):
    r"""Moments whose :math:`M_2` is also kept as an unevaluated double word.

    ``m2`` is :math:`M_2` rounded once to the accumulator (``inf`` where it
    overflows although the variance does not); :meth:`var` divides the exact-ish
    :math:`M_2 = (\text{m2\_head} + \text{m2\_tail})\,4^{\text{exponent}}` by
    :math:`n - c` in double-word arithmetic and rounds once, so the variance is not
    rounded twice. Merging (:meth:`Moments.merge`) uses the rounded fields and
    returns plain :class:`Moments`.
    """

    m2_head: Any = None
    m2_tail: Any = None
    exponent: Any = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        # defaults: the double word is m2 itself, unscaled
        head = self.m2 if self.m2_head is None else self.m2_head
        tail = np.zeros_like(self.m2) if self.m2_tail is None else self.m2_tail
        for name, part in (("m2_head", head), ("m2_tail", tail)):
            part = np.broadcast_to(np.asarray(part), self.shape)
            if part.dtype != self.dtype:
                raise ValueError(f"{name}: dtype {part.dtype} differs from {self.dtype}")
            object.__setattr__(self, name, part)
        exponent = np.broadcast_to(np.asarray(self.exponent, dtype=np.int64), self.shape)
        object.__setattr__(self, "exponent", exponent)

    def var(self, correction: float = 0) -> Array:
        r"""Variance :math:`M_2/(n - c)` from the double word, rounded once."""
        super().var(correction)  # validates the correction
        acc = self.dtype
        with np.errstate(all="ignore"):
            d = round_to(self.count.astype(np.float64) - float(correction), acc)
            q1, q2 = _dw_div(self.m2_head, self.m2_tail, d)
            scaled = (q1 + q2).astype(np.float64)
            # undo the scaling: exact in float64, then one rounding into acc (only
            # a result below acc's normal range is rounded a second time here)
            return np.asarray(round_to(np.ldexp(scaled, 2 * self.exponent), acc))


def _split_factor(dtype: Any) -> float:
    # Veltkamp's splitting constant 2**ceil(p/2) + 1
    return float(2.0 ** ((finfo(dtype).mant + 1) // 2) + 1.0)


def _scale_exponents(amax: Array, n: int, acc: np.dtype[Any]) -> Array:
    """Per-slice k: 0 when ``max|x|`` lies in ``[L, T]``, else ``max|x| * 2**-k`` in ``[T/2, T)``.

    ``T <= sqrt(max / (8 n f))`` with ``f`` the TwoProduct split factor: no sum of
    ``n`` squared deviations (each at most ``4 max|x|**2``), and no split of one,
    overflows. ``L = sqrt(tiny) / u**2``: the error terms of the squares of deviations
    down to ``u max|x|`` (offset/std up to ``1/u``) stay in the normal range.
    ``amax`` is the largest magnitude of each slice, in float64.
    """
    fi = finfo(acc)
    high = np.sqrt(fi.max / (8.0 * n * _split_factor(acc)))
    low = np.sqrt(fi.tiny) / fi.unit_roundoff**2
    top = np.frexp(high)[1] - 1
    scale = np.isfinite(amax) & (amax > 0) & ((amax > high) | (amax < low))
    return np.asarray(np.where(scale, np.frexp(amax)[1] - top, 0), dtype=np.int64)


def _two_square(a: Array) -> tuple[Array, Array]:
    """TwoProduct of ``a`` with itself (one split instead of two): ``p + e == a * a``.

    The same operations as :func:`two_product`, written in place: on long rows the
    fresh temporaries, not the flops, dominate the time.
    """
    shape = np.shape(a)
    a = np.asarray(a).reshape(-1)  # in-place operations need arrays, not 0-d scalars
    p = a * a
    ah = np.multiply(a, np.asarray(_split_factor(a.dtype)).astype(a.dtype))
    al = ah - a
    np.subtract(ah, al, out=ah)  # ah = c - (c - a): the high half
    np.subtract(a, ah, out=al)  # al = a - ah: the low half
    e = ah * ah
    e -= p
    ah += ah
    ah *= al
    e += ah  # (ah*ah - p) + 2*ah*al
    al *= al
    e += al  # ... + al*al
    return p.reshape(shape), e.reshape(shape)


def _deviations(xs: Array, mu: Array) -> tuple[Array, Array]:
    """``x - mu`` exactly as ``dh + dl``: Knuth's TwoSum of ``x`` and ``-mu``, in place."""
    b = -mu[..., None]
    dh = xs + b
    z = dh - xs
    dl = dh - z
    np.subtract(xs, dl, out=dl)  # x - (dh - z)
    np.subtract(b, z, out=z)  # -mu - z
    dl += z
    return dh, dl


# --- the same operations, compiled -------------------------------------------------
# With numba (the "jit" extra), the two passes over the lanes run as one compiled loop
# per pass: the data are read once per pass and every double-word step stays in
# registers. Every scalar operation is the NumPy one, in the same order and dtype, with
# no fast-math (no contraction to FMA, no reassociation), so the bits are the same;
# tests/test_recommendation.py compares the two paths. The NumPy path is kept for
# float16/bfloat16 storage (converted block by block), scaled slices, and without numba.
# Whether dot2_two_pass may use the compiled passes (tests switch it off); numba is
# imported on first use.
_USE_JIT = True
_COMPILED: dict[str, Any] = {}


def _compiled_passes() -> Any:
    """``(pass1, pass2)`` compiled by numba, or None without it."""
    if not _USE_JIT:
        return None
    if "passes" not in _COMPILED:
        try:
            import numba
        except ImportError:  # pragma: no cover - the jit extra is optional
            _COMPILED["passes"] = None
        else:
            jit = numba.njit(cache=True, nogil=True)
            _COMPILED["passes"] = (jit(_pass1_py), jit(_pass2_py))
    return _COMPILED["passes"]


_JIT_LANES = 256  # lanes per block: the block's running sums stay in L1


def _pass1_py(x: Array, m: int, zero: Array, s_out: Array, c_out: Array) -> None:
    # Sum2 down each lane (element k*m + j of lane j, zero past the end)
    n = x.shape[1]
    for b in range(x.shape[0]):
        for j0 in range(0, m, _JIT_LANES):
            j1 = min(j0 + _JIT_LANES, m)
            for j in range(j0, j1):
                s_out[b, j] = x[b, j]
                c_out[b, j] = zero[0]
            for k in range(1, DOT2_ROWS):
                base = k * m
                for j in range(j0, j1):
                    xk = x[b, base + j] if base + j < n else zero[0]
                    s = s_out[b, j]
                    t = s + xk
                    z = t - s
                    e = (s - (t - z)) + (xk - z)
                    c_out[b, j] = c_out[b, j] + e
                    s_out[b, j] = t


def _pass2_py(x: Array, mu: Array, m: int, consts: Array, out: Array) -> None:
    # deviations, their squares and both Sum2 chains, fused; out[0:4] = t, tc, q, qc
    n = x.shape[1]
    zero, factor = consts[0], consts[1]
    w = _JIT_LANES
    dls = np.empty((DOT2_ROWS, w), dtype=x.dtype)
    pls = np.empty((DOT2_ROWS, w), dtype=x.dtype)
    for b in range(x.shape[0]):
        nb = -mu[b]
        for j0 in range(0, m, w):
            j1 = min(j0 + w, m)
            for k in range(DOT2_ROWS):
                base = k * m
                for j in range(j0, j1):
                    if base + j < n:
                        xk = x[b, base + j]
                        dh = xk + nb
                        z = dh - xk
                        dl = dh - z
                        dl = xk - dl
                        z = nb - z
                        dl = dl + z
                    else:  # padding: zero deviations
                        dh = zero
                        dl = zero
                    # TwoProduct of dh with itself (_two_square), then the low part
                    ph = dh * dh
                    ah = dh * factor
                    al = ah - dh
                    ah = ah - al
                    al = dh - ah
                    pl = ah * ah
                    pl = pl - ph
                    ah = ah + ah
                    ah = ah * al
                    pl = pl + ah
                    al = al * al
                    pl = pl + al
                    cross = dl + dl
                    cross = cross * dh
                    pl = pl + cross
                    cross = dl * dl
                    pl = pl + cross
                    dls[k, j - j0] = dl
                    pls[k, j - j0] = pl
                    if k == 0:
                        out[0, b, j] = dh
                        out[1, b, j] = zero
                        out[2, b, j] = ph
                        out[3, b, j] = zero
                    else:
                        s = out[0, b, j]
                        t = s + dh
                        z = t - s
                        out[1, b, j] = out[1, b, j] + ((s - (t - z)) + (dh - z))
                        out[0, b, j] = t
                        s = out[2, b, j]
                        t = s + ph
                        z = t - s
                        out[3, b, j] = out[3, b, j] + ((s - (t - z)) + (ph - z))
                        out[2, b, j] = t
            for k in range(DOT2_ROWS):  # the low parts, after the errors
                for j in range(j0, j1):
                    out[1, b, j] = out[1, b, j] + dls[k, j - j0]
                    out[3, b, j] = out[3, b, j] + pls[k, j - j0]


def _numpy_sums(lanes: _Lanes, count: Array) -> tuple[list[Array], Array, Array]:
    """The four lane sums of the second pass (Sum2 of the deviations and of their
    squares), the compensated mean ``mu`` and the first (scaled) value, a block of
    lanes at a time."""
    x, acc, m = lanes.x, lanes.acc, lanes.m
    lane_sums = [np.empty((*x.shape[:-1], m), dtype=acc) for _ in range(2)]
    first = None
    for j0, j1 in lanes.spans():
        xs = lanes.block(j0, j1)
        first = xs[..., 0, 0] if first is None else first
        _lane_sum2(xs, None, lane_sums[0][..., j0:j1], lane_sums[1][..., j0:j1])
    s, c = _lane_tree(*lane_sums)
    del lane_sums  # freed before the second pass: extra memory 4/32 of the input
    mu = (s + c) / count
    sums = [np.empty((*x.shape[:-1], m), dtype=acc) for _ in range(4)]
    for j0, j1 in lanes.spans():
        xs = lanes.block(j0, j1)
        dh, dl = _deviations(xs, mu[..., None])  # x - mu exactly
        lanes.clear_padding(dh, j0, j1)
        lanes.clear_padding(dl, j0, j1)
        _lane_sum2(dh, dl, sums[0][..., j0:j1], sums[1][..., j0:j1])
        ph, pl = _two_square(dh)
        # the low part of d**2 = (dh + dl)**2: pl + 2 dh dl + dl**2, second order
        cross = dl + dl
        cross *= dh
        pl += cross
        np.multiply(dl, dl, out=cross)
        pl += cross
        _lane_sum2(ph, pl, sums[2][..., j0:j1], sums[3][..., j0:j1])
    assert first is not None
    return sums, mu, first


def _jit_sums(x: Array, acc: np.dtype[Any], m: int, count: Array) -> tuple[list[Array], Array]:
    """:func:`_numpy_sums` by the compiled passes (``x`` already in ``acc``, unscaled)."""
    n = x.shape[-1]
    batch = x.shape[:-1]
    flat = np.ascontiguousarray(x.reshape(-1, n))
    consts = np.array([0.0, _split_factor(acc)], dtype=acc)
    lane_sums = np.empty((2, flat.shape[0], m), dtype=acc)
    pass1, pass2 = _compiled_passes()
    pass1(flat, m, consts[:1], lane_sums[0], lane_sums[1])
    s, c = _lane_tree(lane_sums[0].reshape(*batch, m), lane_sums[1].reshape(*batch, m))
    del lane_sums  # freed before the second pass
    mu = np.asarray((s + c) / count)
    second = np.empty((4, flat.shape[0], m), dtype=acc)
    pass2(flat, np.ascontiguousarray(mu.reshape(-1)), m, consts, second)
    return [a.reshape(*batch, m) for a in second], mu


def dot2_two_pass(x: Array, /, *, acc: np.dtype[Any]) -> DoubleWordMoments:
    r"""Corrected two-pass with exact deviations and squares, in double-word arithmetic.

    .. math::
        \mu \approx \bar x,\quad d_i = x_i - \mu \text{ (exact)},\quad
        M_2 = \sum d_i^2 - \frac1n\Big(\sum d_i\Big)^2,\quad
        \bar x = \mu + \frac1n\sum d_i

    with every sum an unevaluated Sum2 pair and :math:`d_i^2` split exactly by
    TwoProduct. The returned :class:`DoubleWordMoments` divides :math:`M_2` by
    :math:`n - c` without rounding it first. See the module docstring for the bound
    (faithful for :math:`n < 2^p` and :math:`\kappa \lesssim u^{-3/2}/L`) and
    :func:`varstats.recommendation.recommended` for the accumulator to use.

    References
    ----------
    .. [1] T. Ogita, S. M. Rump, S. Oishi, "Accurate sum and dot product", SIAM J.
           Sci. Comput. 26(6), 2005.
    """
    n = x.shape[-1]
    with np.errstate(invalid="ignore"):
        top = np.max(x, axis=-1)
        bottom = np.min(x, axis=-1)
        amax = np.maximum(top.astype(np.float64), -bottom.astype(np.float64))
    k = _scale_exponents(amax, n, acc)
    lanes = _Lanes(x, acc, k)
    count = round_to(np.float64(n), acc)
    plain = x.dtype == acc and acc.itemsize >= 4 and np.all(np.isfinite(amax) & (k == 0))
    if plain and _compiled_passes() is not None:
        sums, mu = _jit_sums(x, acc, lanes.m, count)
        first = x[..., 0]
    else:
        sums, mu, first = _numpy_sums(lanes, count)
    t, tc = _lane_tree(sums[0], sums[1])
    del sums[:2]
    q, qc = _lane_tree(sums[0], sums[1])
    # C = T^2 / n in double word, with T = t + tc
    a, ae = _two_square(t)
    ch, cl = _dw_div(a, ae + t * (tc + tc) + tc * tc, count)
    h, e = two_sum(q, -ch)
    h, lo = two_sum(h, (qc - cl) + e)
    mean = mu + (t + tc) / count
    # all values equal (max == min): the variance is exactly 0 and the mean the value
    # (scaling by a power of two keeps the largest value exact, so it keeps equality)
    const = top == bottom
    h = np.where(const, np.zeros_like(h), h)
    lo = np.where(const, np.zeros_like(lo), lo)
    mean = np.asarray(np.where(const, first, mean))
    with np.errstate(all="ignore"):
        m2 = round_to(np.ldexp(h.astype(np.float64), 2 * k), acc)
        mean = round_to(np.ldexp(mean.astype(np.float64), k), acc)
    return DoubleWordMoments(np.asarray(n), mean, m2, m2_head=h, m2_tail=lo, exponent=k)
