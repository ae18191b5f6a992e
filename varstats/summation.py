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

from varstats import half
from varstats.array_api import (
    array_namespace,
    as_array,
    binary_op,
    lane_major_like,
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


def row_sum(head: Any, /) -> Any:
    """Sequential sum down the rows of ``(..., rows, m)``: one sum per lane."""
    if (sums := half.lane_sums(head)) is not None:  # float16, compiled: the same bits
        return sums
    if rows_reducible(head):
        return np.add.reduce(head, axis=-2)
    add = binary_op(array_namespace(head), "add")
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
    head = p.head
    batch, m = head.shape[:-2], head.shape[-1]
    width = max(8, _LANE_BLOCK // max(math.prod(batch), 1))
    c = center[..., None]
    sums = half.lane_squares(head, c)  # float16, compiled: the same bits (else None)
    if sums is None and width >= m:  # one block: whole-array operations are the fewest calls
        d = np.subtract(head, c[..., None])
        sums = row_sum(np.multiply(d, d, out=d))
    elif sums is None:
        sums = _blocked_squares(head, c, width)
    leaves = [sums]
    if p.tail is not None:
        d = p.tail - c
        leaves.append(sequential_sum(d * d)[..., None])
    return _tree_sum(np.concatenate(leaves, axis=-1))


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
    width = max(8, _LANE_BLOCK // max(math.prod(head.shape[:-2]), 1))
    if width >= head.shape[-1]:
        d = np.subtract(head, center[..., None, :])
        return row_sum(np.multiply(d, d, out=d))
    return _blocked_squares(head, center, width, per_lane=True)


def _blocked_squares(head: Any, c: Any, width: int, *, per_lane: bool = False) -> Any:
    """Row sums of ``(head - c)**2``, ``width`` lanes at a time (``c`` per lane or per slice)."""
    batch, m = head.shape[:-2], head.shape[-1]
    sums = np.empty((*batch, m), dtype=head.dtype)
    for j0 in range(0, m, width):
        j1 = min(j0 + width, m)
        out = sums[..., j0:j1]
        cj = c[..., j0:j1] if per_lane else c
        np.subtract(head[..., 0, j0:j1], cj, out=out)
        np.multiply(out, out, out=out)
        d = np.empty_like(out)
        for k in range(1, head.shape[-2]):
            np.subtract(head[..., k, j0:j1], cj, out=d)
            np.multiply(d, d, out=d)
            np.add(out, d, out=out)
    return sums


#: Lanes per block of :func:`squared_deviation_total` (a row of them stays in cache).
_LANE_BLOCK: Final = 2**14


def _leaves(p: Split, lane_sum: Any) -> list[Any]:
    """Per-lane partial results of ``lane_sum`` over the head, then over the tail as one lane."""
    out = [] if p.head is None else [lane_sum(p.head)]
    if p.tail is not None:
        out.append(lane_sum(p.tail[..., None]))
    return out


def total(p: Split, /) -> Any:
    """Lane sums and the tail's sequential sum, added in a balanced tree."""
    leaves = [] if p.head is None else [row_sum(p.head)]
    if p.tail is not None:
        leaves.append(sequential_sum(p.tail)[..., None])
    xp = array_namespace(leaves[0])
    sums = xp.concat(leaves, axis=-1)
    if isinstance(sums, np.ndarray):
        return _tree_sum(sums)
    (result,) = tree_reduce((sums,), lambda a, b: (a + b,))
    return result


def _tree_sum(a: Any) -> Any:
    """:func:`~varstats.moments.tree_reduce` with ``+`` on a NumPy array, in fewer calls."""
    while a.shape[-1] > 1:
        m = a.shape[-1]
        even = m - m % 2
        pairs = a[..., 0:even:2] + a[..., 1:even:2]
        a = np.concatenate([pairs, a[..., -1:]], axis=-1) if m % 2 else pairs
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

    def combine(s1: Any, c1: Any, s2: Any, c2: Any) -> tuple[Any, Any]:
        t, e = two_sum(s1, s2)
        return t, (c1 + c2) + e

    s, c = tree_reduce(
        (xp.concat([s for s, _ in parts], axis=-1), xp.concat([c for _, c in parts], axis=-1)),
        combine,
    )
    return as_array(s + c)
