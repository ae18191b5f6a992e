r"""The variance algorithms, each written once for every array library.

A kernel is called as ``kernel(x, /, *, acc, **options)``: ``x`` holds the data with
the reduced axes flattened into the *last* axis, stored in the storage dtype, and
``acc`` is the accumulator dtype of ``x``'s namespace. It rounds every operation in
``acc`` in an order it controls and returns a :class:`~varstats.moments.Moments`
with the last axis reduced. Sequential kernels loop over the reduction length; each
step is one vector operation across all other (batch) axes.

Every kernel here asks :func:`~varstats.array_api.array_namespace` for ``xp`` and
computes with ``xp.`` calls and operators only, as scipy's ``_xp_var`` does; the few
things libraries do differently (in-place updates, memory layout, a sequential sum,
host counts) are calls into :mod:`varstats.array_api`. NumPy arrays, torch tensors,
``array_api_strict`` arrays and Dask chunks therefore run the same lines. Summation
orders are in :mod:`varstats.summation`; names are given to kernels in
:mod:`varstats.algorithms`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from varstats import half, jit
from varstats.array_api import (
    array_namespace,
    binary_op,
    own,
    round_host,
    scratch_like,
    steps_first,
)
from varstats.moments import Moments, merge_along
from varstats.summation import (
    PAIRWISE_BLOCK,
    compensated_sum,
    deviation_sums,
    lane_matrix,
    lane_squares,
    row_sum,
    split,
    squared_deviation_total,
    total,
)
from varstats.validation import positive_int

__all__ = [
    "chan",
    "compensated",
    "corrected_two_pass",
    "naive",
    "pairwise",
    "shifted",
    "two_pass",
    "welford",
]


def _to_accumulator(xp: Any, x: Any, acc: Any) -> Any:
    """``xp.astype(x, acc, copy=False)``: float16 NumPy data are widened by a compiled loop.

    The same values (widening is exact); NumPy's own float16 cast costs more than the
    variance of float32 data (:func:`varstats.half.widen_half`).
    """
    if (
        isinstance(x, np.ndarray)
        and x.dtype == np.float16
        and acc in (np.float32, np.float64)
        and half.compiled() is not None
    ):
        return half.widen_half(x, dtype=acc)
    return xp.astype(x, acc, copy=False)


def _count(n: Any, like: Any) -> Any:
    # The count as the accumulator (the dtype of `like`) holds it: exact up to 2**p,
    # rounded beyond, inf past the format's range (float16 cannot hold n > 65504).
    return round_host(np.asarray(n, dtype=np.float64), like=like)


def naive(x: Any, /, *, acc: Any, summation: str = "pairwise") -> Moments:
    r"""Textbook one-pass formula: sum and sum of squares.

    .. math::
        \bar x = \frac{1}{n}\sum x_i,\qquad M_2 = \sum x_i^2 - \Big(\sum x_i\Big)\,\bar x

    Cancels catastrophically when :math:`|\bar x| \gg \sigma`: the relative error
    of :math:`M_2` is bounded by about :math:`n\kappa^2 u` (sequential) and can
    be negative. Used by Flax's ``use_fast_variance`` and many fused kernels as
    :math:`E[x^2] - E[x]^2`.

    References
    ----------
    .. [1] T. F. Chan, G. H. Golub, R. J. LeVeque, The American Statistician 37(3),
           1983, eq. (1.2).
    """
    xp = array_namespace(x)
    p = split(_to_accumulator(xp, x, acc), summation)
    n = x.shape[-1]
    s1 = total(p)
    # the sum of squares as squared deviations from 0: x - 0 is x for every x (-0.0,
    # inf and NaN included), so the same bits, without an input-sized array of squares
    s2 = squared_deviation_total(p, xp.zeros_like(s1))
    mean = s1 / _count(n, s1)
    return Moments._unchecked(n, mean, s2 - s1 * mean)


def shifted(x: Any, /, *, acc: Any, summation: str = "pairwise") -> Moments:
    r"""One-pass formula on data shifted by its first value :math:`K = x_1`.

    .. math::
        d_i = x_i - K,\quad \bar x = K + \frac{1}{n}\sum d_i,\quad
        M_2 = \sum d_i^2 - \Big(\sum d_i\Big)\frac{1}{n}\sum d_i

    The condition number becomes that of the shifted data, small when :math:`K`
    is close to the mean; one pass, can still go negative. TensorFlow's
    ``tf.nn.sufficient_statistics``/``normalize_moments`` take such a shift.

    References
    ----------
    .. [1] Chan, Golub & LeVeque 1983, section 3 ("shifted data").
    """
    xp = array_namespace(x)
    xa = _to_accumulator(xp, x, acc)
    shift = xa[..., 0]
    # the sums of d = x - shift and of d*d, without an input-sized array of d
    s1, s2 = deviation_sums(split(xa, summation), shift)
    dm = s1 / _count(x.shape[-1], s1)
    return Moments._unchecked(x.shape[-1], shift + dm, s2 - s1 * dm)


def two_pass(x: Any, /, *, acc: Any, summation: str = "pairwise") -> Moments:
    r"""Two-pass algorithm: the mean first, then the squared deviations.

    .. math::
        \bar x = \frac{1}{n}\sum x_i,\qquad M_2 = \sum (x_i - \bar x)^2

    Never negative. The error in :math:`\bar x` enters :math:`M_2` squared,
    giving the bound :math:`n u + n^2\kappa^2u^2` (sequential). This is what
    ``np.var`` and most framework BatchNorm kernels compute.

    References
    ----------
    .. [1] Chan, Golub & LeVeque 1983, eq. (1.3).
    """
    xp = array_namespace(x)
    p = split(_to_accumulator(xp, x, acc), summation)
    s = total(p)
    mean = s / _count(x.shape[-1], s)
    return Moments._unchecked(x.shape[-1], mean, squared_deviation_total(p, mean))


def _corrected(x: Any, acc: Any, summation: str, compensated: bool) -> Moments:
    """Björck's corrected two-pass with every sum compensated or not.

    Every sum is :func:`~varstats.summation.total` for ``corrected_two_pass`` and
    :func:`~varstats.summation.compensated_sum` for ``compensated``: the two
    algorithms differ in how they add, not in what.
    """
    xp = array_namespace(x)
    p = split(_to_accumulator(xp, x, acc), summation)
    s = compensated_sum(p) if compensated else total(p)
    n = _count(x.shape[-1], s)
    mean = s / n
    # the sums of d = x - mean and of d*d; sd is the rounding error of the mean, to
    # first order (zero in exact arithmetic)
    sd, ssq = deviation_sums(p, mean, compensated=compensated)
    m2 = ssq - (sd * sd) / n
    return Moments._unchecked(x.shape[-1], mean + sd / n, m2)


def corrected_two_pass(x: Any, /, *, acc: Any, summation: str = "pairwise") -> Moments:
    r"""Corrected two-pass algorithm (Björck): subtract the squared sum of deviations.

    .. math::
        d_i = x_i - \bar x,\qquad M_2 = \sum d_i^2 - \frac{1}{n}\Big(\sum d_i\Big)^2,
        \qquad \bar x' = \bar x + \frac{1}{n}\sum d_i

    In exact arithmetic :math:`\sum d_i = 0`; in floating point it captures the
    error of :math:`\bar x` to first order, which brings the bound to
    :math:`n u + n^3\kappa^2u^3`. The corrected mean :math:`\bar x'` is returned.
    Chan, Golub & LeVeque's recommendation for two-pass data; none of the framework
    kernels modelled in :mod:`varstats.conventions` uses it.
    On ``[1e16, 1e16 + 2]`` (whose mean is not a double) it gives the exact 1,
    where every uncorrected two-pass gives 2.

    References
    ----------
    .. [1] Chan, Golub & LeVeque 1983, eq. (1.7).
    .. [2] Å. Björck, *Numerical Methods for Least Squares Problems*, SIAM 1996.
    """
    return _corrected(x, acc, summation, compensated=False)


def welford(x: Any, /, *, acc: Any, lanes: int = 1) -> Moments:
    r"""Welford's running update, one element at a time along the last axis.

    .. math::
        \delta = x_k - \bar x_{k-1},\quad
        \bar x_k = \bar x_{k-1} + \delta / k,\quad
        M_{2,k} = M_{2,k-1} + \delta\,(x_k - \bar x_k)

    Every operation rounds in ``acc``, the count :math:`k` included (float16
    cannot hold :math:`k > 65504`). Never negative: :math:`\bar x_k` lies between
    :math:`\bar x_{k-1}` and :math:`x_k`, so both factors share a sign. Relative
    error of :math:`M_2` is bounded by about :math:`n \kappa u`.

    ``lanes > 1`` splits the data round-robin into independent running updates
    (element :math:`k` to lane :math:`k \bmod L`), as vectorized CPU kernels do
    (PyTorch's LayerNorm uses 8 lanes), then merges the lanes pairwise with
    :meth:`Moments.merge`. It is also how a long 1-D reduction runs at vector speed.

    References
    ----------
    .. [1] B. P. Welford, "Note on a method for calculating corrected sums of squares
           and products", Technometrics 4(3), 1962.
    .. [2] D. E. Knuth, *TAOCP* vol. 2, 3rd ed., section 4.2.2.
    """
    xp = array_namespace(x)
    n = x.shape[-1]
    width = min(positive_int(lanes, name="lanes"), n)
    full = n - n % width
    compiled = isinstance(x, np.ndarray) and np.dtype(acc).itemsize >= 4
    if compiled and _welford_kernel() is not None:
        state = _welford_compiled(x, np.dtype(acc), width)
    elif (half_state := half.welford_lanes(x, acc, width)) is not None:  # float16, compiled
        count = np.full(tuple(half_state[0].shape), n // width, dtype=np.int64)
        count[..., : n % width] += 1
        state = Moments(count, *half_state)
    else:
        state = _welford_steps(xp, x, acc, width, full)
    if width == 1:
        return Moments._unchecked(state.count[..., 0], state.mean[..., 0], state.m2[..., 0])
    return merge_along(state, axis=-1, order="pairwise")


def _welford_steps(xp: Any, x: Any, acc: Any, width: int, full: int) -> Moments:
    """Welford's update on each of ``width`` lanes, one vector operation per step."""
    n = x.shape[-1]
    xa = _to_accumulator(xp, x, acc)
    # (steps, batch..., lanes): each step is one vector operation across the batch
    steps = steps_first(xp.reshape(xa[..., :full], (*x.shape[:-1], full // width, width)))
    counts = _count(np.arange(1, steps.shape[0] + 2), steps)  # k as acc holds it
    subtract, divide, add, multiply = (
        binary_op(xp, name) for name in ("subtract", "divide", "add", "multiply")
    )
    mean = xp.zeros_like(steps[0, ...])
    m2 = xp.zeros_like(mean)

    def update(xk: Any, k: int, mean: Any, m2: Any, delta: Any, tmp: Any) -> tuple[Any, ...]:
        # in place into mean, m2 and the scratch buffers where the namespace allows it
        delta = subtract(xk, mean, out=delta)
        tmp = divide(delta, counts[k - 1], out=tmp)
        mean = add(mean, tmp, out=mean)
        tmp = subtract(xk, mean, out=tmp)
        tmp = multiply(delta, tmp, out=tmp)
        m2 = add(m2, tmp, out=m2)
        return mean, m2, delta, tmp

    delta, tmp = scratch_like(mean), scratch_like(mean)
    for k in range(steps.shape[0]):
        mean, m2, delta, tmp = update(steps[k, ...], k + 1, mean, m2, delta, tmp)
    count = np.full(tuple(mean.shape), steps.shape[0], dtype=np.int64)
    if full < n:  # the first n % width lanes take one more element
        r = n - full
        head = (own(mean[..., :r]), own(m2[..., :r]))
        mean_r, m2_r, _, _ = update(xa[..., full:], steps.shape[0] + 1, *head, None, None)
        mean = xp.concat([mean_r, mean[..., r:]], axis=-1)
        m2 = xp.concat([m2_r, m2[..., r:]], axis=-1)
        count[..., :r] += 1
    return Moments._unchecked(count, mean, m2)


def _welford_lanes_py(x: Any, width: int, zero: Any, mean: Any, m2: Any) -> None:
    # the lane-by-lane loop of _welford_steps, with the same scalar operations; the
    # count k is rounded to the accumulator as _count does (int64 -> float is one
    # correct rounding, as int64 -> float64 -> float32 is for k < 2**53)
    n = x.shape[1]
    for b in range(x.shape[0]):
        for lane in range(width):
            mu = zero
            s = zero
            for k in range(1, (n - lane + width - 1) // width + 1):
                xk = x[b, lane + (k - 1) * width]
                delta = xk - mu
                mu = mu + delta / x.dtype.type(k)
                s = s + delta * (xk - mu)
            mean[b, lane] = mu
            m2[b, lane] = s


#: Whether the sequential kernels may run compiled by numba (the ``jit`` extra), which
#: gives the same bits as the NumPy loop (``tests/test_algorithms.py`` compares both).
_USE_JIT = True


def _welford_kernel() -> Any:
    """The compiled :func:`_welford_lanes_py`, or None (see :mod:`varstats.jit`)."""
    if not _USE_JIT:
        return None
    return jit.build(
        "kernels.welford",
        lambda numba: numba.njit(cache=True, error_model="numpy")(_welford_lanes_py),
    )


def _welford_compiled(x: Any, acc: np.dtype[Any], width: int) -> Moments:
    """:func:`_welford_steps` for NumPy data in float32 or float64, compiled."""
    n = x.shape[-1]
    batch = tuple(x.shape[:-1])
    flat = np.ascontiguousarray(_to_accumulator(np, x.reshape(-1, n), acc))
    mean = np.empty((flat.shape[0], width), dtype=acc)
    m2 = np.empty_like(mean)
    _welford_kernel()(flat, width, np.zeros((), dtype=acc)[()], mean, m2)
    count = np.full((*batch, width), n // width, dtype=np.int64)
    count[..., : n % width] += 1
    return Moments._unchecked(count, mean.reshape(*batch, width), m2.reshape(*batch, width))


def _blocks(a: Any, block: int) -> tuple[Any, Any | None]:
    """Consecutive blocks ``(..., m, block)`` and the shorter tail ``(..., r)`` (or None)."""
    xp = array_namespace(a)
    n = a.shape[-1]
    full = n - n % block
    head = xp.reshape(a[..., :full], (*a.shape[:-1], full // block, block))
    return head, (a[..., full:] if full < n else None)


def _blockwise_two_pass(head: Any, acc: Any) -> tuple[Any, Any]:
    """Sequential two-pass mean and M2 of each row of ``(..., blocks, size)``.

    Rows are independent, so NumPy data are taken a few rows at a time: the same
    results, with temporaries of a chunk instead of the whole input.
    """
    rows = head.shape[-2]
    chunk = max(1, _CHUNK // max(math.prod(head.shape[:-1]) // rows * head.shape[-1], 1))
    if not isinstance(head, np.ndarray) or chunk >= rows:
        m = two_pass(head, acc=acc, summation="sequential")
        return m.mean, m.m2
    parts = [
        two_pass(head[..., r : r + chunk, :], acc=acc, summation="sequential")
        for r in range(0, rows, chunk)
    ]
    return (
        np.concatenate([np.asarray(p.mean) for p in parts], axis=-1),
        np.concatenate([np.asarray(p.m2) for p in parts], axis=-1),
    )


#: Elements per chunk of :func:`_blockwise_two_pass`.
_CHUNK = 2**16


def _leaf_moments(head: Any, tail: Any | None, acc: Any, rows: bool) -> Moments:
    """Two-pass moments (sequential sums) of each leaf, leaves along the last axis.

    Leaves are the lanes (columns) of ``head`` when ``rows`` is true, its
    consecutive blocks (rows) otherwise; ``tail`` is one more, shorter leaf.
    """
    xp = array_namespace(head)
    counts, means, m2s = [], [], []
    if head.shape[-1] and head.shape[-2]:
        if rows:
            size = head.shape[-2]
            h = _to_accumulator(xp, head, acc)
            s = row_sum(h)
            mean = s / _count(size, s)
            m2 = lane_squares(h, mean)
        else:
            size = head.shape[-1]
            mean, m2 = _blockwise_two_pass(head, acc)
        counts.append(np.full(tuple(mean.shape), size, dtype=np.int64))
        means.append(mean)
        m2s.append(m2)
    if tail is not None:
        t = two_pass(tail, acc=acc, summation="sequential")
        counts.append(np.full((*t.shape, 1), tail.shape[-1], dtype=np.int64))
        means.append(t.mean[..., None])
        m2s.append(t.m2[..., None])
    return Moments._unchecked(
        np.concatenate(counts, axis=-1), xp.concat(means, axis=-1), xp.concat(m2s, axis=-1)
    )


def pairwise(x: Any, /, *, acc: Any, block: int = PAIRWISE_BLOCK) -> Moments:
    r"""Pairwise (tree) algorithm of Chan, Golub & LeVeque.

    With :math:`n = b\,m + r`, the data are viewed as a :math:`b \times m`
    row-major matrix plus a tail of :math:`r` values. Each column (a leaf of
    :math:`b` values :math:`x_j, x_{j+m}, \dots`) and the tail are reduced by a
    two-pass; the leaves are then merged in a balanced binary tree with the
    Chan update (:meth:`Moments.merge`). With ``block=1`` every value is a leaf:
    the paper's pairwise algorithm exactly. Never negative. Relative error of
    :math:`M_2` is bounded by about :math:`(b + \log_2(n/b))\,\kappa u`. Parallel
    reductions combine per-thread Welford states this way (e.g. PyTorch's
    ``WelfordOps`` in ``SharedReduceOps.h``).

    References
    ----------
    .. [1] T. F. Chan, G. H. Golub, R. J. LeVeque, "Updating formulae and a pairwise
           algorithm for computing sample variances", Stanford CS report
           STAN-CS-79-773, 1979; The American Statistician 37(3), 1983, section 2.
    """
    leaves = _leaf_moments(*lane_matrix(x, positive_int(block, name="block")), acc, rows=True)
    return merge_along(leaves, axis=-1, order="pairwise")


def chan(x: Any, /, *, acc: Any, block: int = 1024) -> Moments:
    r"""Blocked Chan-Golub-LeVeque merge: block moments combined left to right.

    Each block of ``block`` values is reduced by a two-pass; the running state
    is then updated block by block with the Chan merge, as a streaming
    reduction over chunks (Dask, mini-batches, per-device shards) does.

    .. math::
        \bar x \leftarrow \bar x + \delta\,\frac{n_b}{n},\qquad
        M_2 \leftarrow M_2 + M_{2,b} + \delta^2\,\frac{n_a n_b}{n}

    Never negative. Relative error of :math:`M_2` is bounded by about
    :math:`(b + n/b)\,\kappa u`.

    References
    ----------
    .. [1] Chan, Golub & LeVeque 1983, eq. (2.1).
    """
    leaves = _leaf_moments(*_blocks(x, positive_int(block, name="block")), acc, rows=False)
    return merge_along(leaves, axis=-1, order="sequential")


def compensated(x: Any, /, *, acc: Any, summation: str = "pairwise") -> Moments:
    r"""Corrected two-pass with compensated (Kahan-Babuška-Neumaier) sums.

    Every sum :math:`\sum a_i` is carried as :math:`s + c`, where :math:`c`
    accumulates the exact rounding error of each addition (computed with
    Knuth's TwoSum, which yields the same error terms as Neumaier's branch).

    .. math::
        \bar x = \frac{1}{n}\,\widehat{\sum} x_i,\quad d_i = x_i - \bar x,\quad
        M_2 = \widehat{\sum} d_i^2 - \frac{1}{n}\Big(\widehat{\sum} d_i\Big)^2

    The sums are Ogita, Rump & Oishi's *Sum2*, accurate to :math:`u + (Lu)^2`
    (:math:`L` the summation length), so the mean is nearly correctly rounded and
    the error of :math:`M_2` is dominated by the rounding of each :math:`d_i` and
    :math:`d_i^2`. No framework's normalization kernel compensates its sums.

    References
    ----------
    .. [1] A. Neumaier, "Rundungsfehleranalyse einiger Verfahren zur Summation
           endlicher Summen", ZAMM 54, 1974.
    .. [2] W. Kahan, "Further remarks on reducing truncation errors", CACM 8(1), 1965.
    .. [3] N. J. Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
           SIAM 2002, section 4.3.
    """
    return _corrected(x, acc, summation, compensated=True)
