r"""Summation orders: the order in which the sum-based kernels add their terms.

Every function here works on an array of any Array API namespace (see
:mod:`varstats.array_api`), sums over the *last* axis and rounds every partial sum in
the array's own dtype.

``"sequential"``
    :math:`s_k = s_{k-1} + a_k`, left to right (NumPy: ``np.add.accumulate``, which,
    unlike ``np.sum``, rounds every partial sum in the array's own dtype, float16 and
    bfloat16 included; the tests pin this against a scalar loop).
``"pairwise"``
    With :math:`n = b\,m + r` and :math:`b` = :data:`PAIRWISE_BLOCK`, the values
    are viewed as a :math:`b \times m` row-major matrix plus a tail of :math:`r`.
    Each column (a lane: :math:`x_j, x_{j+m}, \dots`) is summed sequentially by
    adding whole rows, the tail is summed sequentially, and these :math:`m` (+1)
    partial sums are added in a balanced binary tree, neighbours first, an odd
    one carried up a level unchanged. NumPy's scheme is the same idea with 8
    lanes inside 128-element blocks. The error bound grows like
    :math:`(b + \log_2(n/b))\,u` instead of :math:`n u` (Higham 2002, section 4.2).

NumPy's own ``np.sum`` is never used on emulated data: it accumulates float16 in
float32, bfloat16 in bfloat16, and sums a non-contiguous axis sequentially but a
contiguous one pairwise with 8 interleaved lanes.

References
----------
.. [1] N. J. Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
       SIAM 2002, chapter 4.
"""

from __future__ import annotations

import math
from typing import Any, Final, NamedTuple

import numpy as np

from varstats import half, jit
from varstats.array_api import (
    array_namespace,
    as_array,
    binary_op,
    lane_major_like,
    neumaier_sum,
    own,
    sequential_sum,
)
from varstats.moments import tree_reduce
from varstats.rounding import two_sum

__all__ = [
    "PAIRWISE_BLOCK",
    "SUMMATIONS",
    "Split",
    "compensated_sum",
    "deviation_sums",
    "deviations",
    "lane_matrix",
    "lane_squares",
    "row_sum",
    "rows_reducible",
    "split",
    "squared_deviation_total",
    "squares",
    "total",
]

#: Length of the sequentially summed base block of the ``"pairwise"`` summation.
PAIRWISE_BLOCK: Final = 32
#: Summation orders accepted by the sum-based kernels.
SUMMATIONS: Final = ("pairwise", "sequential")


def lane_matrix(a: Any, rows: int, /) -> tuple[Any, Any | None]:
    """View the last axis as a ``rows x m`` row-major matrix, plus the tail.

    With ``n = rows * m + r``, column ``j`` (a *lane*) holds elements
    ``j, j + m, j + 2m, ...``; the last ``r`` elements form the tail (or None).
    Adding whole rows is one contiguous vector operation, which is what lets the
    pairwise kernels run at ``np.var`` speed.
    """
    xp = array_namespace(a)
    n = a.shape[-1]
    m = n // rows
    head = xp.reshape(a[..., : rows * m], (*a.shape[:-1], rows, m))
    return head, (a[..., rows * m :] if rows * m < n else None)


def row_sum(head: Any, /, *, out: Any = None) -> Any:
    """Sequential sum down the rows of ``(..., rows, m)``: one sum per lane.

    ``out`` (NumPy only) is a ``(..., m)`` array the sums are written into.
    """
    if (sums := half.lane_sums(head)) is not None:  # float16, compiled: the same bits
        if out is None:
            return sums
        np.copyto(out, sums)
        return out
    if rows_reducible(head):
        return np.add.reduce(head, axis=-2, out=out)
    add = binary_op(array_namespace(head), "add")
    if out is None and isinstance(head, np.ndarray):
        out = _lane_buffer(head.shape[:-2], head.shape[-1], head.dtype, _lane_major(head))
    if out is not None:
        np.copyto(out, head[..., 0, :])
        s = out
    else:
        s = own(head[..., 0, :])
    for k in range(1, head.shape[-2]):
        s = add(s, head[..., k, :], out=s)  # in place where possible, rounded in s.dtype
    return s


def rows_reducible(head: Any) -> bool:
    """Whether ``np.add.reduce(head, axis=-2)`` adds each lane row by row, as the loop does.

    It does when every row is contiguous and longer than one SIMD register: NumPy's
    iterator then keeps the lanes as its inner loop and adds whole rows, rounding each
    sum in the array's dtype. With one lane, or rows that are not contiguous, the
    reduced axis can become the inner loop, which NumPy sums pairwise (float16 in
    float32): a different order. ``tests/test_algorithms.py`` pins the two against
    each other.
    """
    if not isinstance(head, np.ndarray) or head.ndim < 2:
        return False
    item = head.dtype.itemsize
    m = head.shape[-1]
    return bool(m >= 8 and head.strides[-1] == item and head.strides[-2] == m * item)


class Split(NamedTuple):
    """Values laid out in summation order.

    ``head`` (``(..., rows, m)`` or None) holds the lanes of a pairwise sum, each
    summed down its rows; ``tail`` (``(..., r)`` or None) is summed left to
    right. A sequential sum is all tail.
    """

    head: Any | None
    tail: Any | None


def split(a: Any, summation: str, /) -> Split:
    """``a`` laid out for the ``summation`` order (one of :data:`SUMMATIONS`)."""
    if summation == "pairwise":
        head, tail = lane_matrix(a, PAIRWISE_BLOCK)
        return Split(head if head.shape[-1] else None, tail)
    if summation == "sequential":
        return Split(None, a)
    raise ValueError(f"summation: expected one of {SUMMATIONS}, got {summation!r}")


def deviations(p: Split, center: Any, /) -> Split:
    """``x - center`` (one value per slice), rounded in the data's dtype, in new arrays."""
    # float16 NumPy data: compiled, the same bits (None otherwise)
    head = None if p.head is None else half.deviations(p.head, center)
    if head is None and p.head is not None:
        subtract = binary_op(array_namespace(p.head), "subtract")
        head = subtract(p.head, center[..., None, None], out=lane_major_like(p.head))
    tail = None if p.tail is None else half.deviations(p.tail, center)
    if tail is None and p.tail is not None:
        tail = p.tail - center[..., None]
    return Split(head, tail)


def squares(p: Split, /, *, in_place: bool = False) -> Split:
    """Every value squared, rounded in the data's dtype (``in_place`` may reuse ``p``'s arrays)."""
    # float16 NumPy data: compiled, the same bits (None otherwise)
    head = None if p.head is None else half.squares(p.head)
    if head is None and p.head is not None:
        multiply = binary_op(array_namespace(p.head), "multiply")
        head = multiply(p.head, p.head, out=p.head if in_place else lane_major_like(p.head))
    tail = None if p.tail is None else half.squares(p.tail)
    if tail is None and p.tail is not None:
        multiply = binary_op(array_namespace(p.tail), "multiply")
        tail = multiply(p.tail, p.tail, out=p.tail if in_place else None)
    return Split(head, tail)


def squared_deviation_total(p: Split, center: Any, /) -> Any:
    """``total(squares(deviations(p, center)))``, the same roundings in the same order.

    For NumPy lanes it works a cache-sized block of lanes at a time, so the deviations
    are never written out as an input-sized array: one read of the data instead of a
    write and two more passes.
    """
    if not isinstance(p.head, np.ndarray):
        return total(squares(deviations(p, center), in_place=True))
    compiled = _compiled_total(p, center)
    if compiled is not None:
        return compiled
    head = p.head
    batch, m = head.shape[:-2], head.shape[-1]
    c = center[..., None]
    leaves = _leaf_buffer(batch, m + (p.tail is not None), head.dtype, _lane_major(head))
    sums = half.lane_squares(head, c)  # float16, compiled: the same bits (else None)
    if sums is not None:
        leaves[..., :m] = sums
    elif math.prod(batch) * m <= _LANE_BLOCK:  # one block: whole-array operations
        d = np.subtract(head, c[..., None])
        row_sum(np.multiply(d, d, out=d), out=leaves[..., :m])
    else:
        _blocked_squares(head, c, out=leaves[..., :m])
    if p.tail is not None:
        d = p.tail - c
        leaves[..., m] = sequential_sum(d * d)
    return _tree_sum(leaves)


def lane_squares(head: Any, center: Any, /) -> Any:
    """``row_sum((head - center[..., None, :])**2)``: each lane about its own center.

    The same roundings in the same order; NumPy lanes are taken a cache-sized block at
    a time, so no input-sized array of deviations is written.
    """
    if not isinstance(head, np.ndarray):
        subtract, multiply = (binary_op(array_namespace(head), f) for f in ("subtract", "multiply"))
        d = subtract(head, center[..., None, :], out=lane_major_like(head))
        return row_sum(multiply(d, d, out=d))
    if (sums := half.lane_squares(head, center)) is not None:  # float16, compiled
        return sums
    if math.prod(head.shape[:-2]) * head.shape[-1] <= _LANE_BLOCK:
        d = np.subtract(head, center[..., None, :])
        return row_sum(np.multiply(d, d, out=d))
    return _blocked_squares(head, center, per_lane=True)


def _blocked_squares(head: Any, c: Any, *, per_lane: bool = False, out: Any = None) -> Any:
    """Row sums of ``(head - c)**2``, a block of :func:`_blocks` at a time.

    ``c`` is one center per lane (``per_lane``) or per slice; the sums are written
    into ``out`` (``(..., m)``) if given.
    """
    batch, m = head.shape[:-2], head.shape[-1]
    major = _lane_major(head)
    sums = _lane_buffer(batch, m, head.dtype, major) if out is None else out
    for b, lanes in _blocks(batch, m, major):
        out = sums[(*b, ..., lanes)]
        cj = c[(*b, ..., lanes)] if per_lane else c[b]
        np.subtract(head[(*b, ..., 0, lanes)], cj, out=out)
        np.multiply(out, out, out=out)
        d = np.empty_like(out)
        for k in range(1, head.shape[-2]):
            np.subtract(head[(*b, ..., k, lanes)], cj, out=d)
            np.multiply(d, d, out=d)
            np.add(out, d, out=out)
    return sums


#: Lane sums per vector operation of the blocked NumPy loops (a row of them stays in cache).
_LANE_BLOCK: Final = 2**14


def _blocks(
    batch: tuple[int, ...], m: int, lane_major: bool = False
) -> list[tuple[tuple[Any, ...], slice]]:
    """Blocks of the lanes ``(*batch, m)`` of about :data:`_LANE_BLOCK` each, as indices.

    Each is ``(b, lanes)``: ``b`` slices the first batch axis (or is ``()``), ``lanes``
    the lanes. Whole slices are taken where one fits, so that many short slices are
    not cut into strided slivers; a long one is cut along its lanes. ``lane_major``
    data (see :func:`_lane_major`) are cut along the lanes only: each lane's batch is
    one contiguous run.
    """
    inner = math.prod(batch[1:]) * m
    if batch and inner <= _LANE_BLOCK and not lane_major:
        step = _LANE_BLOCK // inner
        return [((slice(i, i + step),), slice(0, m)) for i in range(0, batch[0], step)]
    width = max(8, _LANE_BLOCK // max(math.prod(batch), 1))
    return [((), slice(j, min(j + width, m))) for j in range(0, m, width)]


def _leaves(p: Split, lane_sum: Any) -> list[Any]:
    """Per-lane partial results of ``lane_sum`` over the head, then over the tail as one lane."""
    out = [] if p.head is None else [lane_sum(p.head)]
    if p.tail is not None:
        out.append(lane_sum(p.tail[..., None]))
    return out


def total(p: Split, /) -> Any:
    """Lane sums and the tail's sequential sum, added in a balanced tree."""
    compiled = _compiled_total(p, None)
    if compiled is not None:
        return compiled
    head, tail = p
    if isinstance(tail, np.ndarray):
        m = 0 if head is None else head.shape[-1]
        major = head is not None and _lane_major(head)
        leaves = _leaf_buffer(tail.shape[:-1], m + 1, tail.dtype, major)
        if head is not None:
            row_sum(head, out=leaves[..., :m])
        leaves[..., m] = sequential_sum(tail)
        return _tree_sum(leaves)
    if isinstance(head, np.ndarray):
        leaves = _leaf_buffer(head.shape[:-2], head.shape[-1], head.dtype, _lane_major(head))
        row_sum(head, out=leaves[..., : head.shape[-1]])
        return _tree_sum(leaves)
    parts = [] if p.head is None else [row_sum(p.head)]
    if p.tail is not None:
        parts.append(sequential_sum(p.tail)[..., None])
    xp = array_namespace(parts[0])
    (result,) = tree_reduce((xp.concat(parts, axis=-1),), lambda a, b: (a + b,))
    return result


# --- the same sums, compiled ---------------------------------------------------------
# With numba (the "jit" extra), total() and squared_deviation_total() of float32 and
# float64 NumPy lanes run as one compiled loop per slice: the data are read once, the
# lane sums stay in cache, and the tree costs no vector operation per level. Every
# scalar operation is the NumPy path's, in the same order and dtype, with no fast-math
# (no contraction to FMA, no reassociation), so the bits are the same
# (tests/test_summation.py switches _USE_JIT off and compares). The NumPy path is kept
# for float16/bfloat16 (which numba does not compute in), other libraries' arrays,
# more than one batch axis, lanes that are not one C-contiguous block (strided or
# transposed data: there NumPy's blocked loops are faster than an unvectorized compiled
# one), and a machine without numba (imported on first use).
_USE_JIT = True
_JIT_DTYPES: Final = (np.dtype(np.float32), np.dtype(np.float64))


def _pairwise_py(head: Any, tail: Any, center: Any, square: bool, out: Any) -> None:
    # total() of each slice b of head (B, rows, m) and tail (B, r), r >= 0: lanes summed
    # down their rows, the tail left to right, the m (+1) leaves padded with -0.0 to a
    # power of two and added in a tree; with square, every value v is (v - center)**2
    batch, rows, m = head.shape
    r = tail.shape[1]
    leaves = m + (1 if r > 0 else 0)
    width = 1
    while width < leaves:
        width *= 2
    buf = np.empty(width, dtype=out.dtype)
    for b in range(batch):
        c = center[b]
        for j in range(m):
            v = head[b, 0, j]
            if square:
                v = v - c
                v = v * v
            buf[j] = v
        for k in range(1, rows):
            for j in range(m):
                v = head[b, k, j]
                if square:
                    v = v - c
                    v = v * v
                buf[j] = buf[j] + v
        if r > 0:
            s = tail[b, 0]
            if square:
                s = s - c
                s = s * s
            for i in range(1, r):
                v = tail[b, i]
                if square:
                    v = v - c
                    v = v * v
                s = s + v
            buf[m] = s
        for j in range(leaves, width):
            buf[j] = -0.0
        w = width
        while w > 1:
            w //= 2
            for i in range(w):
                buf[i] = buf[2 * i] + buf[2 * i + 1]
        out[b] = buf[0]


def _pairwise_kernel() -> Any:
    """The compiled :func:`_pairwise_py`, or None (numba missing or switched off)."""
    if not _USE_JIT:
        return None
    return jit.build(
        "summation.pairwise", lambda numba: numba.njit(cache=True, nogil=True)(_pairwise_py)
    )


def _compiled_total(p: Split, center: Any | None) -> Any | None:
    """``total(p)`` (``center`` None) or ``squared_deviation_total(p, center)``, compiled.

    None where the compiled loop does not apply (see the note above).
    """
    head, tail = p
    if not isinstance(head, np.ndarray) or head.dtype not in _JIT_DTYPES or head.ndim > 3:
        return None
    if not head.flags.c_contiguous:  # strided lanes: the compiled loop would not vectorize
        return None
    if center is not None and (
        not isinstance(center, np.ndarray | np.generic) or center.dtype != head.dtype
    ):
        return None
    kernel = _pairwise_kernel()
    if kernel is None:
        return None
    h = head if head.ndim == 3 else head[None]
    batch = h.shape[0]
    # the short arrays contiguous too, so that numba compiles one loop per dtype
    t = np.empty((batch, 0), dtype=head.dtype) if tail is None else tail.reshape(batch, -1)
    t = np.ascontiguousarray(t)
    out = np.empty(batch, dtype=head.dtype)
    c = out if center is None else np.ascontiguousarray(np.reshape(center, batch))  # out: unread
    kernel(h, t, c, center is not None, out)
    return out if head.ndim == 3 else out[0]


def _leaf_buffer(batch: tuple[int, ...], leaves: int, dtype: Any, lane_major: bool) -> Any:
    """A NumPy ``(*batch, 2**k)`` buffer for ``leaves`` partial sums, ``2**k >= leaves``.

    The first ``leaves`` slots are for the caller to fill; every slot past them holds
    ``-0.0`` (see :func:`_tree_sum`). Laid out as :func:`_lane_buffer`.
    """
    width = 1 << max(leaves - 1, 0).bit_length()
    buf = _lane_buffer(batch, width, dtype, lane_major)
    buf[..., leaves:] = -0.0
    return buf


def _lane_major(head: Any) -> bool:
    """Whether the batch of NumPy lanes ``(..., rows, m)`` lies inside its lanes in memory.

    So it does when a leading axis is reduced: each lane is then a strided column
    whose batch values are adjacent, and sums are best stored lane-major, with the
    batch contiguous, so that every vector operation runs along the batch.
    """
    return bool(head.ndim >= 3 and abs(head.strides[-3]) < abs(head.strides[-1]))


def _lane_buffer(batch: tuple[int, ...], m: int, dtype: Any, lane_major: bool) -> Any:
    """An uninitialised ``(*batch, m)`` NumPy array, stored lane-major if asked."""
    if not lane_major:
        return np.empty((*batch, m), dtype=dtype)
    return np.moveaxis(np.empty((m, *batch), dtype=dtype), 0, -1)


def _tree_sum(a: Any) -> Any:
    """:func:`~varstats.moments.tree_reduce` with ``+`` on a NumPy array padded by
    :func:`_leaf_buffer`, one vector addition per level.

    Padded with ``-0.0`` to a power of two, every level adds neighbours: where the
    unpadded tree carries an odd element up a level unchanged, it is added to
    ``-0.0`` here, and ``v + (-0.0)`` is ``v`` for every ``v`` (``+0.0``, infinities
    and NaN included), so the two trees round alike (``tests/test_summation.py``).
    """
    while a.shape[-1] > 1:
        a = a[..., 0::2] + a[..., 1::2]
    return a[..., 0]


def _neumaier_rows(head: Any) -> tuple[Any, Any]:
    """Neumaier's sequential compensated sum down the rows of ``(..., rows, m)``."""
    if (compiled := half.neumaier_rows(head)) is not None:  # float16: the same bits
        return compiled
    if isinstance(head, np.ndarray) and head.shape[-1] == 1:
        return _neumaier_sequential(head[..., 0])
    xp = array_namespace(head)
    add = binary_op(xp, "add")
    s = own(head[..., 0, :])
    c = xp.zeros_like(s)
    for k in range(1, head.shape[-2]):
        s, e = two_sum(s, head[..., k, :])
        c = add(c, e, out=c)
    return s, c


def _neumaier_sequential(a: Any) -> tuple[Any, Any]:
    """:func:`_neumaier_rows` of one lane (NumPy), without a Python step per element.

    The running sums ``s_k`` are ``np.add.accumulate`` (left to right, rounded in
    ``a.dtype``); TwoSum's error of each step then follows from whole-array
    operations, and ``c`` is their left-to-right sum starting from ``+0``, as in the
    loop.
    """
    compiled = neumaier_sum(a)
    if compiled is not None:
        return compiled[0][..., None], compiled[1][..., None]
    partial = np.add.accumulate(a, axis=-1)
    prev, t = partial[..., :-1], partial[..., 1:]
    z = t - prev
    e = prev - (t - z)
    np.subtract(a[..., 1:], z, out=z)
    e += z
    errors = np.concatenate([np.zeros_like(a[..., :1]), e], axis=-1)
    c = np.add.accumulate(errors, axis=-1)[..., -1:]
    return partial[..., -1:], c


def compensated_sum(p: Split, /) -> Any:
    """Kahan-Babuska-Neumaier sum: ``s + c`` with ``c`` the running sum of exact rounding errors.

    The same order as :func:`total`; tree nodes add their ``s`` with TwoSum and
    their ``c`` plainly.
    """
    parts = _leaves(p, _neumaier_rows)  # the tail is a single lane
    xp = array_namespace(parts[0][0])
    s = xp.concat([s for s, _ in parts], axis=-1)
    return _compensated_tree(s, xp.concat([c for _, c in parts], axis=-1))


def _compensated_tree(s: Any, c: Any) -> Any:
    """``s + c`` of the leaves' sums ``s`` and errors ``c`` (last axis), added in a tree."""

    def combine(s1: Any, c1: Any, s2: Any, c2: Any) -> tuple[Any, Any]:
        t, e = two_sum(s1, s2)
        return t, (c1 + c2) + e

    s, c = tree_reduce((s, c), combine)
    return as_array(s + c)


def deviation_sums(p: Split, center: Any, /, *, compensated: bool = False) -> tuple[Any, Any]:
    """``add_up(d)`` and ``add_up(squares(d))`` for ``d = deviations(p, center)``.

    ``add_up`` is :func:`compensated_sum` if ``compensated``, else :func:`total`; the
    same roundings in the same order. NumPy lanes are taken a cache-sized block at a
    time, each row's deviations formed as the row is added, so no input-sized array
    of deviations is written: the corrected two-pass kernels need no more memory than
    their lane sums.
    """
    add_up = compensated_sum if compensated else total
    head = p.head
    if not isinstance(head, np.ndarray) or half.handles(head):
        d = deviations(p, center)
        return add_up(d), add_up(squares(d, in_place=True))
    batch, rows, m = head.shape[:-2], head.shape[-2], head.shape[-1]
    leaves = m + (p.tail is not None)
    major = _lane_major(head)
    if compensated:  # sums of d and d*d, then the running sums of their TwoSum errors
        sums = [_lane_buffer(batch, leaves, head.dtype, major) for _ in range(4)]
    else:  # sums of d and d*d, laid out for _tree_sum
        sums = [_leaf_buffer(batch, leaves, head.dtype, major) for _ in range(2)]
    c = center[..., None]
    for b, lanes in _blocks(batch, m, major):
        lane = [a[(*b, ..., lanes)] for a in sums]
        cb = c[b]
        d = np.subtract(head[(*b, ..., 0, lanes)], cb)
        np.multiply(d, d, out=lane[1])
        lane[0][...] = d
        if compensated:
            lane[2][...] = 0
            lane[3][...] = 0
        for k in range(1, rows):
            d = np.subtract(head[(*b, ..., k, lanes)], cb)
            _add_row(lane, d, compensated)  # sum of d (its error in lane[2])
            _add_row(lane[1:], np.multiply(d, d, out=d), compensated)  # of d*d (lane[3])
    if p.tail is not None:
        d = p.tail - c
        for i, term in enumerate((d, d * d)):
            if compensated:
                sums[i][..., m:], sums[i + 2][..., m:] = _neumaier_rows(term[..., None])
            else:
                sums[i][..., m] = sequential_sum(term)
    if compensated:
        return _compensated_tree(sums[0], sums[2]), _compensated_tree(sums[1], sums[3])
    return _tree_sum(sums[0]), _tree_sum(sums[1])


def _add_row(lane: list[Any], term: Any, compensated: bool) -> None:
    """``lane[0] += term`` in place; compensated, with TwoSum's error added to ``lane[2]``."""
    if compensated:
        t, e = two_sum(lane[0], term)
        lane[0][...] = t
        np.add(lane[2], e, out=lane[2])
    else:
        np.add(lane[0], term, out=lane[0])
