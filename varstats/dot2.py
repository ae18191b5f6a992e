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
normalization kernel does this. With numba (the ``jit`` extra) both passes run
compiled and vectorized, reading the data once each, and the error of a square comes
from the fused multiply-add wherever that is provably the same number
(:func:`_fused_square_bound`); the result is the same bits either way.

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

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from varstats import jit, summation
from varstats.moments import Moments, tree_reduce
from varstats.precision import finfo, round_to
from varstats.rounding import split_factor, two_sum
from varstats.validation import check_correction, warn_no_degrees_of_freedom

__all__ = ["DOT2_ROWS", "DoubleWordMoments", "dot2_two_pass"]

Array = npt.NDArray[Any]

#: Values summed down each lane before the lanes are added in a tree (as the
#: ``"pairwise"`` summation of :mod:`varstats.algorithms` does).
DOT2_ROWS: Final = 32


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


def _dw_div(h: Any, lo: Any, d: Any, factor: Any) -> tuple[Any, Any]:
    """``(h + lo) / d`` as ``q1 + q2``: the remainder ``h - q1 d`` is exact (Dekker 1971).

    Operators only, so the same lines run on NumPy arrays and compiled on scalars;
    ``q1 d`` is split exactly by TwoProduct (as :func:`varstats.rounding.two_product`).
    """
    q1 = h / d
    p = q1 * d
    ca = factor * q1
    cb = factor * d
    ah = ca - (ca - q1)
    bh = cb - (cb - d)
    al = q1 - ah
    bl = d - bh
    pe = (((ah * bh) - p) + (ah * bl) + (al * bh)) + (al * bl)
    # h - p is exact (Sterbenz: p is within an ulp of h), and so is (h - p) - pe,
    # the remainder of a correctly rounded quotient
    r = ((h - p) - pe) + lo
    return q1, r / d


def _square(a: Any, factor: Any) -> tuple[Any, Any]:
    """TwoProduct of ``a`` with itself (one Veltkamp split): ``p + e == a * a`` exactly."""
    p = a * a
    ah = a * factor
    al = ah - a
    ah = ah - al  # c - (c - a): the high half
    al = a - ah  # the low half
    return p, (((ah * ah) - p) + ((ah + ah) * al)) + (al * al)


def _finish(t: Any, tc: Any, q: Any, qc: Any, mu: Any, count: Any, factor: Any) -> tuple[Any, ...]:
    """``(h, lo, mean)``: :math:`M_2 = Q - T^2/n` as the double word ``h + lo``, and the mean.

    ``T = t + tc`` and ``Q = q + qc`` are the Sum2 results; operators only (see
    :func:`_dw_div`).
    """
    a, ae = _square(t, factor)
    # C = T^2 / n in double word
    ch, cl = _dw_div(a, ae + t * (tc + tc) + tc * tc, count, factor)
    h, e = two_sum(q, -ch)
    h, lo = two_sum(h, (qc - cl) + e)
    return h, lo, mu + (t + tc) / count


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
            part = self._shaped(np.asarray(part))
            if part.dtype != self.dtype:
                raise ValueError(f"{name}: dtype {part.dtype} differs from {self.dtype}")
            object.__setattr__(self, name, part)
        exponent = self._shaped(np.asarray(self.exponent, dtype=np.int64))
        object.__setattr__(self, "exponent", exponent)

    @classmethod
    def _unscaled(cls, n: int, mean: Array, head: Array, tail: Array) -> DoubleWordMoments:
        """What :func:`dot2_two_pass` computed without scaling, without the input checks
        of ``__post_init__`` (arrays of one accumulator dtype and shape by construction)."""
        m = cls._unchecked(n, mean, head)
        object.__setattr__(m, "m2_head", head)
        object.__setattr__(m, "m2_tail", tail)
        object.__setattr__(m, "exponent", np.broadcast_to(np.int64(0), m.shape))
        return m

    def _shaped(self, part: Array) -> Array:
        # broadcast only where needed: a call on small slices is mostly overhead
        return part if part.shape == self.shape else np.broadcast_to(part, self.shape)

    def var(self, correction: float = 0) -> Array:
        r"""Variance :math:`M_2/(n - c)` from the double word, rounded once.

        NaN where :math:`n - c \le 0`, with one ``RuntimeWarning``, as :meth:`Moments.var`.
        """
        c = check_correction(correction)
        undefined = warn_no_degrees_of_freedom(correction, self.count)
        acc = self.dtype
        with np.errstate(all="ignore"):
            d = round_to(self.count.astype(np.float64) - c, acc)
            q1, q2 = _dw_div(self.m2_head, self.m2_tail, d, acc.type(_format(acc)[3]))
            if self.exponent.any():
                scaled = (q1 + q2).astype(np.float64)
                # undo the scaling: exact in float64, then one rounding into acc (only
                # a result below acc's normal range is rounded a second time here)
                v = np.asarray(round_to(np.ldexp(scaled, 2 * self.exponent), acc))
            else:  # (the float64 round trip and ldexp by 0 would change nothing)
                v = np.asarray(q1 + q2)
        if undefined:  # the division by n - c <= 0 gave inf, NaN or a negative number
            v = np.asarray(np.where(self.count - c <= 0, acc.type(np.nan), v))
        return v


@functools.cache
def _format(acc: np.dtype[Any]) -> tuple[float, float, float, float]:
    """``(max, tiny, unit roundoff, split factor)`` of ``acc``: looked up once per format."""
    fi = finfo(acc)
    return fi.max, fi.tiny, fi.unit_roundoff, split_factor(acc)


def _scale_bounds(n: int, acc: np.dtype[Any]) -> tuple[float, float]:
    """The range ``[L, T]`` of :func:`_scale_exponents` for slices of ``n`` values."""
    big, tiny, u, factor = _format(acc)
    return float(np.sqrt(tiny) / u**2), float(np.sqrt(big / (8.0 * n * factor)))


def _scale_exponents(amax: Array, n: int, acc: np.dtype[Any]) -> Array:
    """Per-slice k: 0 when ``max|x|`` lies in ``[L, T]``, else ``max|x| * 2**-k`` in ``[T/2, T)``.

    ``T <= sqrt(max / (8 n f))`` with ``f`` the TwoProduct split factor: no sum of
    ``n`` squared deviations (each at most ``4 max|x|**2``), and no split of one,
    overflows. ``L = sqrt(tiny) / u**2``: the error terms of the squares of deviations
    down to ``u max|x|`` (offset/std up to ``1/u``) stay in the normal range.
    ``amax`` is the largest magnitude of each slice, in float64.
    """
    low, high = _scale_bounds(n, acc)
    top = np.frexp(high)[1] - 1
    scale = np.isfinite(amax) & (amax > 0) & ((amax > high) | (amax < low))
    return np.asarray(np.where(scale, np.frexp(amax)[1] - top, 0), dtype=np.int64)


def _two_square(a: Array) -> tuple[Array, Array]:
    """TwoProduct of ``a`` with itself (one split instead of two): ``p + e == a * a``.

    The operations of :func:`_square`, written in place: on long rows the fresh
    temporaries, not the flops, dominate the time.
    """
    shape = np.shape(a)
    a = np.asarray(a).reshape(-1)  # in-place operations need arrays, not 0-d scalars
    p = a * a
    ah = np.multiply(a, np.asarray(_format(a.dtype)[3]).astype(a.dtype))
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
# With numba (the "jit" extra), each pass runs as one compiled loop over blocks of
# _jit_lanes lanes: the lane sums of a block stay in cache, and each block's lanes are
# added in their part of the balanced lane tree right away, so no lane-sized array is
# kept (the tree over all lanes is the tree of moments.tree_reduce: see _push_block).
# Within a block, groups of _GROUP lanes go down four rows per load and store of their
# state, in a buffer of a constant shape allocated by the compiled function itself (so
# LLVM knows it aliases no data): the innermost loops have no branch and a constant
# length, and are vectorized by LLVM.
# Every scalar operation is the NumPy one, in the same order and dtype, with no
# fast-math (no contraction to FMA, no reassociation), so the bits are the same;
# tests/test_dot2.py compares the two paths. The one exception is the error of a
# square, which the compiled pass takes from a hardware fused multiply-add where that
# is provably equal to Veltkamp's split (see _fused_square_bound). The NumPy path is
# kept for float16/bfloat16 storage, data that need scaling or are not finite, and
# without numba. Whether dot2_two_pass may use the compiled passes (tests switch it
# off); numba is imported on first use.
_USE_JIT = True

#: Bytes of the low parts of the deviations and their squares of one block of lanes
#: (2 x DOT2_ROWS x lanes values) in the compiled passes, where the lanes past the last
#: whole group keep them: 256 KiB stay in L2 (measured before the groups: 512 lanes in
#: float64 and 1024 in float32 beat twice and half as many).
_JIT_BLOCK_BYTES: Final = 2**18


def _jit_lanes(acc: np.dtype[Any]) -> int:
    """Lanes per block of the compiled passes: a power of two (see :func:`_push_block`)."""
    return _JIT_BLOCK_BYTES // (2 * DOT2_ROWS * acc.itemsize)


def _compiled_passes() -> Any:
    """:func:`_moments_py` compiled by numba, or None without it."""
    if not _USE_JIT:
        return None
    return jit.build("dot2.passes", _compile)


def _compile(numba: Any) -> Any:
    """:func:`_moments_py` and the helpers it calls, compiled (cached on disk)."""
    from numba import extending

    hardware_fma = jit.hardware_fma()

    @extending.overload(_fma)
    def overload_fma(a: Any, b: Any, c: Any) -> Any:
        def fused(a: Any, b: Any, c: Any) -> Any:
            return hardware_fma(a, b, c)

        return fused

    helpers: tuple[Callable[..., Any], ...] = (
        *(_sum2_step, _combine, _deviation_square, _block_pass1, _block_pass2, _group_pass2),
        *(_full_groups_pass2, _tree_level, _group_pass1, _full_groups_pass1, _full_groups),
        *(_block_tree, _push_block, _fold_blocks, _row_pass1, _row_pass2),
        *(_square, _dw_div, two_sum, _finish),
    )
    for helper in helpers:  # callable from compiled code; still plain Python functions
        extending.register_jitable(helper)
    return numba.njit(cache=True, nogil=True)(_moments_py)


def _fma(a: Any, b: Any, c: Any) -> Any:
    """``a * b + c`` rounded once: the hardware instruction, in compiled code only."""
    raise NotImplementedError("_fma is compiled by numba; NumPy code emulates it")


def _sum2_step(s: Any, c: Any, v: Any, one: Any, minus_one: Any) -> tuple[Any, Any]:
    # one step of Sum2: TwoSum of s and v, its error added to the compensation c.
    # fma(a, 1, b) is a + b rounded once, the same number as the addition (a * 1 is
    # exact, zeros keep their signs), but it runs on the multiply units: the loops are
    # bound by the adders. one and minus_one come from memory, so LLVM cannot turn them
    # back into additions.
    t = s + v
    z = _fma(s, minus_one, t)  # t - s
    e = _fma(z, minus_one, v)  # v - z
    return t, _fma(c, one, (s - (t - z)) + e)  # c + (...)


def _combine(s1: Any, c1: Any, s2: Any, c2: Any) -> tuple[Any, Any]:
    # two lanes' s + c added (as _lane_tree's combine does)
    t = s1 + s2
    z = t - s1
    return t, (c1 + c2) + ((s1 - (t - z)) + (s2 - z))


def _deviation_square(xk: Any, nb: Any, factor: Any, fused: bool) -> tuple[Any, Any, Any, Any]:
    # (_deviations) x - mu = dh + dl exactly, by TwoSum of x and -mu
    dh = xk + nb
    z = dh - xk
    dl = xk - (dh - z)
    dl = dl + (nb - z)
    # (_two_square) dh**2 = ph + e exactly
    ph = dh * dh
    if fused:
        pl = _fma(dh, dh, -ph)
    else:
        ah = dh * factor
        al = ah - dh
        ah = ah - al
        al = dh - ah
        pl = (((ah * ah) - ph) + ((ah + ah) * al)) + (al * al)
    # the low part of (dh + dl)**2: e + 2 dh dl + dl**2
    pl = pl + ((dl + dl) * dh)
    return dh, dl, ph, pl + (dl * dl)


def _block_pass1(row: Array, m: int, j0: int, w: int, consts: Array, acc: Array) -> None:
    # Sum2 down lanes j0:j0+w (element k*m + j of lane j, zero past the end) into
    # acc[0] + acc[1], and their largest and smallest values into acc[2], acc[3]: whole
    # groups of _GROUP lanes by _full_groups_pass1, the rest by _group_pass1
    full = _full_groups(row.shape[0], m, j0, w)
    if full:
        _full_groups_pass1(row, m, j0, full, consts, acc)
    if full * _GROUP < w:
        g = full * _GROUP
        _group_pass1(row, m, j0 + g, w - g, g, consts, acc)


def _full_groups(n: int, m: int, j0: int, w: int) -> int:
    # how many groups of _GROUP lanes from lane j0 on are whole and have no padding
    # (the last row of the group inside the data)
    return min(w // _GROUP, max(n - (DOT2_ROWS - 1) * m - j0, 0) // _GROUP)


def _full_groups_pass1(row: Array, m: int, j0: int, full: int, consts: Array, acc: Array) -> None:
    # _group_pass1 of the first `full` whole groups, four rows per load and store of the
    # state, which has a buffer of its own (see _full_groups_pass2)
    one, minus_one = consts[3], consts[4]
    st = np.empty((4, _GROUP), dtype=row.dtype)
    s, c, hi, lo = st[0], st[1], st[2], st[3]
    for g in range(0, full * _GROUP, _GROUP):
        x0, x1 = row[j0 + g : j0 + g + _GROUP], row[m + j0 + g : m + j0 + g + _GROUP]
        x2 = row[2 * m + j0 + g : 2 * m + j0 + g + _GROUP]
        x3 = row[3 * m + j0 + g : 3 * m + j0 + g + _GROUP]
        for j in range(_GROUP):
            v = x0[j]
            a, ac, h, el = v, consts[0], v, v
            for v in (x1[j], x2[j], x3[j]):
                a, ac = _sum2_step(a, ac, v, one, minus_one)
                h = v if v > h else h
                el = v if v < el else el
            s[j], c[j], hi[j], lo[j] = a, ac, h, el
        for k in range(4, DOT2_ROWS, 4):
            start = k * m + j0 + g
            x0, x1 = row[start : start + _GROUP], row[start + m : start + m + _GROUP]
            x2 = row[start + 2 * m : start + 2 * m + _GROUP]
            x3 = row[start + 3 * m : start + 3 * m + _GROUP]
            for j in range(_GROUP):
                a, ac, h, el = s[j], c[j], hi[j], lo[j]
                for v in (x0[j], x1[j], x2[j], x3[j]):
                    a, ac = _sum2_step(a, ac, v, one, minus_one)
                    h = v if v > h else h
                    el = v if v < el else el
                s[j], c[j], hi[j], lo[j] = a, ac, h, el
        acc[:4, g : g + _GROUP] = st


def _group_pass1(row: Array, m: int, j0: int, w: int, g: int, consts: Array, acc: Array) -> None:
    # lanes j0:j0+w into columns g:g+w of acc[:4]
    s, c, hi, lo = acc[0, g : g + w], acc[1, g : g + w], acc[2, g : g + w], acc[3, g : g + w]
    zero, one, minus_one = consts[0], consts[3], consts[4]
    n = row.shape[0]
    x0 = row[j0 : j0 + w]  # row 0 is always whole (n >= m)
    for j in range(w):
        s[j] = x0[j]
        c[j] = zero
        hi[j] = x0[j]
        lo[j] = x0[j]
    for k in range(1, DOT2_ROWS):
        start = k * m + j0
        have = min(max(n - start, 0), w)
        xk = row[start : start + have]
        for j in range(have):
            v = xk[j]
            s[j], c[j] = _sum2_step(s[j], c[j], v, one, minus_one)
            hi[j] = v if v > hi[j] else hi[j]
            lo[j] = v if v < lo[j] else lo[j]
        for j in range(have, w):  # the padding zeros
            s[j], c[j] = _sum2_step(s[j], c[j], zero, one, minus_one)


def _block_pass2(
    row: Array, nb: Any, m: int, j0: int, w: int, consts: Array, fused: bool, acc: Array
) -> None:
    # Sum2 of the deviations into acc[0] + acc[1] and of their squares into acc[2] + acc[3]
    # for lanes j0:j0+w, a group of _GROUP lanes at a time (the whole groups by
    # _full_groups_pass2, the rest by _group_pass2): a group's low parts and state stay
    # near L1 instead of a whole block's going through L2. Each lane gets the same
    # operations in the same order (lanes are independent), so the bits are the same.
    full = _full_groups(row.shape[0], m, j0, w)
    if full:
        _full_groups_pass2(row, nb, m, j0, full, consts, fused, acc)
    if full * _GROUP < w:
        g = full * _GROUP
        _group_pass2(row, nb, m, j0 + g, w - g, g, consts, fused, acc)


def _full_groups_pass2(
    row: Array, nb: Any, m: int, j0: int, full: int, consts: Array, fused: bool, acc: Array
) -> None:
    # _group_pass2 of the first `full` whole groups (no padding): loops of a constant
    # length, four rows per load and store of the state (each lane still takes its rows
    # in order). The state and the low parts share one buffer of a constant shape,
    # allocated here: LLVM then knows it aliases no row of x, and vectorizes
    zero, factor, one, minus_one = consts[0], consts[1], consts[3], consts[4]
    buf = np.empty((4 + 2 * DOT2_ROWS, _GROUP), dtype=row.dtype)
    t, tc, q, qc = buf[0], buf[1], buf[2], buf[3]
    for g in range(0, full * _GROUP, _GROUP):
        for k in range(0, DOT2_ROWS, 4):
            start = k * m + j0 + g
            x0, x1 = row[start : start + _GROUP], row[start + m : start + m + _GROUP]
            x2 = row[start + 2 * m : start + 2 * m + _GROUP]
            x3 = row[start + 3 * m : start + 3 * m + _GROUP]
            d0, d1, d2, d3 = buf[4 + k], buf[5 + k], buf[6 + k], buf[7 + k]
            p0, p1 = buf[4 + DOT2_ROWS + k], buf[5 + DOT2_ROWS + k]
            p2, p3 = buf[6 + DOT2_ROWS + k], buf[7 + DOT2_ROWS + k]
            for j in range(_GROUP):
                dh, d0[j], ph, p0[j] = _deviation_square(x0[j], nb, factor, fused)
                if k == 0:  # row 0 starts the chains (a branch LLVM takes out of the loop)
                    a, ac, b, bc = dh, zero, ph, zero
                else:
                    a, ac = _sum2_step(t[j], tc[j], dh, one, minus_one)
                    b, bc = _sum2_step(q[j], qc[j], ph, one, minus_one)
                dh, d1[j], ph, p1[j] = _deviation_square(x1[j], nb, factor, fused)
                a, ac = _sum2_step(a, ac, dh, one, minus_one)
                b, bc = _sum2_step(b, bc, ph, one, minus_one)
                dh, d2[j], ph, p2[j] = _deviation_square(x2[j], nb, factor, fused)
                a, ac = _sum2_step(a, ac, dh, one, minus_one)
                b, bc = _sum2_step(b, bc, ph, one, minus_one)
                dh, d3[j], ph, p3[j] = _deviation_square(x3[j], nb, factor, fused)
                a, ac = _sum2_step(a, ac, dh, one, minus_one)
                b, bc = _sum2_step(b, bc, ph, one, minus_one)
                t[j], tc[j], q[j], qc[j] = a, ac, b, bc
        for k in range(DOT2_ROWS):
            dk, pk = buf[4 + k], buf[4 + DOT2_ROWS + k]
            for j in range(_GROUP):
                tc[j] = tc[j] + dk[j]
                qc[j] = qc[j] + pk[j]
        acc[:4, g : g + _GROUP] = buf[:4]


def _group_pass2(
    row: Array, nb: Any, m: int, j0: int, w: int, g: int, consts: Array, fused: bool, acc: Array
) -> None:
    # lanes j0:j0+w into columns g:g+w of acc[:4]: the rounding errors first, then the
    # low parts in row order
    zero, factor, one, minus_one = consts[0], consts[1], consts[3], consts[4]
    t, tc, q, qc = acc[0, g : g + w], acc[1, g : g + w], acc[2, g : g + w], acc[3, g : g + w]
    n = row.shape[0]
    low_d, low_p = acc[4 : 4 + DOT2_ROWS], acc[4 + DOT2_ROWS :]
    x0, dl0, pl0 = row[j0 : j0 + w], low_d[0], low_p[0]
    for j in range(w):
        dh, dl0[j], ph, pl0[j] = _deviation_square(x0[j], nb, factor, fused)
        t[j], tc[j], q[j], qc[j] = dh, zero, ph, zero
    for k in range(1, DOT2_ROWS):
        start = k * m + j0
        have = min(max(n - start, 0), w)
        xk, dlk, plk = row[start : start + have], low_d[k], low_p[k]
        for j in range(have):
            dh, dlk[j], ph, plk[j] = _deviation_square(xk[j], nb, factor, fused)
            t[j], tc[j] = _sum2_step(t[j], tc[j], dh, one, minus_one)
            q[j], qc[j] = _sum2_step(q[j], qc[j], ph, one, minus_one)
        for j in range(have, w):  # the padding: zero deviations, zero squares
            dlk[j] = zero
            plk[j] = zero
            t[j], tc[j] = _sum2_step(t[j], tc[j], zero, one, minus_one)
            q[j], qc[j] = _sum2_step(q[j], qc[j], zero, one, minus_one)
    for k in range(DOT2_ROWS):
        dlk, plk = low_d[k], low_p[k]
        for j in range(w):
            tc[j] = tc[j] + dlk[j]
            qc[j] = qc[j] + plk[j]


#: Lanes that the compiled passes take through all rows at once (a divisor of
#: _jit_lanes; in float64 measured against 32, 64 and 256).
_GROUP: Final = 128


def _block_tree(s: Array, c: Array, w: int, s2: Array, c2: Array) -> tuple[Any, Any]:
    # the balanced tree of tree_reduce over s[:w] + c[:w]: neighbours first, an odd
    # last one carried up a level unchanged. Long levels go from (s, c) into the
    # scratch (s2, c2) and back, a loop LLVM vectorizes; the short ones run in place.
    while w >= 64:
        half = w // 2
        _tree_level(s, c, s2, c2, half)
        if w % 2:
            s2[half] = s[w - 1]
            c2[half] = c[w - 1]
        w -= half
        s, c, s2, c2 = s2, c2, s, c
    while w > 1:
        half = w // 2
        for i in range(half):  # in place: i <= 2i, so no pair is read after it is written
            s[i], c[i] = _combine(s[2 * i], c[2 * i], s[2 * i + 1], c[2 * i + 1])
        if w % 2:
            s[half] = s[w - 1]
            c[half] = c[w - 1]
        w -= half
    return s[0], c[0]


def _tree_level(s: Array, c: Array, s2: Array, c2: Array, half: int) -> None:
    # one level of the lane tree: pairs (2i, 2i + 1) of (s, c) into (s2, c2)[i]
    for i in range(half):
        s2[i], c2[i] = _combine(s[2 * i], c[2 * i], s[2 * i + 1], c[2 * i + 1])


def _push_block(stack: Array, sizes: Array, depth: int, s: Any, c: Any, size: int) -> int:
    # tree_reduce's node at level h, index i covers lanes [i 2**h, min((i + 1) 2**h, m)):
    # the tree of whole blocks (_jit_lanes, a power of two, lanes each) is built as the
    # blocks arrive, like a binary counter, merging equal sizes (left operand first)
    while depth > 0 and sizes[depth - 1] == size:
        depth -= 1
        s, c = _combine(stack[0, depth], stack[1, depth], s, c)
        size *= 2
    stack[0, depth] = s
    stack[1, depth] = c
    sizes[depth] = size
    return depth + 1


def _fold_blocks(stack: Array, depth: int) -> tuple[Any, Any]:
    # the pending subtrees, largest first: the right edge of the tree, added right to left
    s, c = stack[0, depth - 1], stack[1, depth - 1]
    for i in range(depth - 2, -1, -1):
        s, c = _combine(stack[0, i], stack[1, i], s, c)
    return s, c


def _row_pass1(
    row: Array, m: int, lanes: int, consts: Array, acc: Array, stack: Array, sizes: Array
) -> tuple[Any, Any, Any, Any]:
    # the first pass over one slice: Sum2 of the lanes (s + c), and the largest and
    # smallest values
    depth = 0
    hi, lo = row[0], row[0]
    for j0 in range(0, m, lanes):
        w = min(lanes, m - j0)
        _block_pass1(row, m, j0, w, consts, acc)
        for j in range(w):
            hi = acc[2, j] if acc[2, j] > hi else hi
            lo = acc[3, j] if acc[3, j] < lo else lo
        s, c = _block_tree(acc[0], acc[1], w, acc[2], acc[3])  # max, min: done
        depth = _push_block(stack, sizes[0], depth, s, c, w)
    s, c = _fold_blocks(stack, depth)
    return s, c, hi, lo


def _row_pass2(
    row: Array,
    nb: Any,
    m: int,
    lanes: int,
    consts: Array,
    fused: bool,
    acc: Array,
    stack: Array,
    sizes: Array,
) -> tuple[Any, Any, Any, Any]:
    # the second pass over one slice: Sum2 of x - mu (t + tc) and of (x - mu)**2 (q + qc)
    depth = 0
    for j0 in range(0, m, lanes):
        w = min(lanes, m - j0)
        _block_pass2(row, nb, m, j0, w, consts, fused, acc)
        # the rows of low parts, added already, are the trees' scratch
        t, tc = _block_tree(acc[0], acc[1], w, acc[4], acc[5])
        q, qc = _block_tree(acc[2], acc[3], w, acc[6], acc[7])
        _push_block(stack[2:], sizes[1], depth, q, qc, w)  # the same sizes as t's
        depth = _push_block(stack, sizes[0], depth, t, tc, w)
    t, tc = _fold_blocks(stack, depth)
    q, qc = _fold_blocks(stack[2:], depth)
    return t, tc, q, qc


def _moments_py(x: Array, m: int, lanes: int, consts: Array, bounds: Array, out: Array) -> bool:
    # dot2_two_pass on each row of x, into out[:, row] = (h, lo, mean); False (and
    # out unfinished) as soon as a row is not finite or needs scaling. consts holds
    # 0, the split factor, n, 1 and -1 in the accumulator; bounds the scaling range
    # [low, high] and the fused-square bound, in float64
    zero, factor, count = consts[0], consts[1], consts[2]
    low, high, fused_from = bounds[0], bounds[1], bounds[2]
    w_max = min(lanes, m)
    acc = np.empty((4 + 2 * DOT2_ROWS, w_max), dtype=x.dtype)
    stack = np.empty((4, 64), dtype=x.dtype)
    sizes = np.zeros((2, 64), dtype=np.int64)  # of the blocks on the stacks
    for b in range(x.shape[0]):
        row = x[b]
        s, c, hi, lo = _row_pass1(row, m, lanes, consts, acc, stack, sizes)
        amax = max(np.float64(hi), -np.float64(lo))
        # an inf or nan in the data makes c nan; _scale_exponents is 0 only in [low, high]
        if not (np.isfinite(c) and (amax == 0 or (low <= amax <= high))):
            return False
        mu = (s + c) / count
        fused = abs(np.float64(mu)) >= fused_from  # _fused_square_bound
        t, tc, q, qc = _row_pass2(row, -mu, m, lanes, consts, fused, acc, stack, sizes)
        if hi == lo:  # all values equal: the variance is exactly 0, the mean the value
            out[0, b], out[1, b], out[2, b] = zero, zero, row[0]
        else:
            out[0, b], out[1, b], out[2, b] = _finish(t, tc, q, qc, mu, count, factor)
    return True


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


@functools.cache
def _fused_square_bound(acc: np.dtype[Any]) -> float:
    r"""The :math:`|\mu|` from which ``fma(d, d, -d*d)`` is Veltkamp's error of every :math:`d^2`.

    Here ``d = x - mu`` for every ``x`` of the slice.

    Both are the exact error :math:`d^2 - \operatorname{fl}(d^2)` when the products of
    the split are exact. With :math:`p` the precision and :math:`e_{min}` the smallest
    normal exponent, :math:`d` is a multiple of :math:`2^{e - p + 1}`
    (:math:`e = \lfloor\log_2|d|\rfloor`), and so are both halves of its split; their
    products are multiples of :math:`2^{2(e - p + 1)}`, which are floats down to the
    subnormal quantum :math:`2^{e_{min} - p + 1}` whenever
    :math:`e \ge (e_{min} + p - 1)/2` (-485 in float64, -51 in float32): then Dekker's
    proof holds with gradual underflow too (no overflow: ``|x|`` is at most the scaling
    bound :math:`T`). And if :math:`|\mu| \ge 2^{e_\mu}`, every nonzero
    :math:`\operatorname{fl}(x - \mu)` is at least :math:`2^{e_\mu - p}`: ``x`` and
    ``mu`` are multiples of :math:`2^{e_\mu - p}` when :math:`|x| \ge 2^{e_\mu - 1}`,
    and :math:`|x - \mu| > 2^{e_\mu - 1}` otherwise. A zero ``d`` gives +0 both ways.
    So the fused error is exact for every row with
    :math:`|\mu| \ge 2^{p + \lceil (e_{min} + p - 1)/2 \rceil}`
    (:math:`2^{-432}` in float64, :math:`2^{-27}` in float32).
    """
    fi = finfo(acc)
    p, e_min = fi.mant, int(np.log2(fi.tiny))  # mant counts the implicit bit
    return 2.0 ** (p + -(-(e_min + p - 1) // 2))  # 2**(p + ceil((e_min + p - 1) / 2))


def _jit_moments(
    x: Array, acc: np.dtype[Any], count: Array, compiled: Any
) -> tuple[Array, ...] | None:
    """``(h, lo, mean)`` by the compiled passes (``x`` already in ``acc``), or None
    where a slice is not finite or needs scaling (the NumPy path then runs)."""
    n = x.shape[-1]
    flat = np.ascontiguousarray(x.reshape(-1, n))
    consts = np.array([0.0, _format(acc)[3], count, 1.0, -1.0], dtype=acc)
    bounds = np.array([*_scale_bounds(n, acc), _fused_square_bound(acc)])
    out = np.empty((3, flat.shape[0]), dtype=acc)
    if not compiled(flat, -(-n // DOT2_ROWS), _jit_lanes(acc), consts, bounds, out):
        return None
    return tuple(a.reshape(x.shape[:-1]) for a in out)


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
    count = round_to(np.float64(n), acc)
    # (an empty slice goes the NumPy way, which raises as np.max does)
    jit_able = x.dtype == acc and acc.itemsize >= 4 and n > 0
    compiled = _compiled_passes() if jit_able else None
    done = None if compiled is None else _jit_moments(x, acc, count, compiled)
    if done is not None:
        h, lo, mean = done
        return DoubleWordMoments._unscaled(n, mean, h, lo)
    with np.errstate(invalid="ignore"):
        top = np.max(x, axis=-1)
        bottom = np.min(x, axis=-1)
        amax = np.maximum(top.astype(np.float64), -bottom.astype(np.float64))
    k = _scale_exponents(amax, n, acc)
    sums, mu, first = _numpy_sums(_Lanes(x, acc, k), count)  # first: scaled
    t, tc = _lane_tree(sums[0], sums[1])
    del sums[:2]
    q, qc = _lane_tree(sums[0], sums[1])
    del sums
    h, lo, mean = _finish(t, tc, q, qc, mu, count, acc.type(_format(acc)[3]))
    # all values equal (max == min): the variance is exactly 0 and the mean the value
    # (scaling by a power of two keeps the largest value exact, so it keeps equality)
    const = top == bottom
    h = np.where(const, np.zeros_like(h), h)
    lo = np.where(const, np.zeros_like(lo), lo)
    mean = np.asarray(np.where(const, first, mean))
    if not np.any(k):  # nothing was scaled: h and mean are already in acc
        return DoubleWordMoments(np.asarray(n), mean, h, m2_head=h, m2_tail=lo, exponent=k)
    with np.errstate(all="ignore"):
        m2 = round_to(np.ldexp(h.astype(np.float64), 2 * k), acc)
        mean = round_to(np.ldexp(mean.astype(np.float64), k), acc)
    return DoubleWordMoments(np.asarray(n), mean, m2, m2_head=h, m2_tail=lo, exponent=k)
