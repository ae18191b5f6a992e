r"""Variance algorithms under an explicit precision, and the public reductions.

Every kernel receives the data with the reduced axes flattened into the *last*
axis, stored in the storage dtype, and the accumulator dtype ``acc``. It rounds
every operation in ``acc`` in an order it controls and returns a
:class:`~varstats.moments.Moments`. Sequential kernels loop over the reduction
length; each step is one vector operation across all other (batch) axes.

Summation orders (the ``summation`` option of the sum-based kernels):

``"sequential"``
    :math:`s_k = s_{k-1} + a_k`, left to right. Implemented with
    ``np.add.accumulate``, which (unlike ``np.sum``) rounds every partial sum in
    the array's own dtype, float16 and bfloat16 included; the tests pin this
    against a scalar loop.
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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt
from numpy.lib.array_utils import normalize_axis_tuple

from varstats.dot2 import dot2_two_pass
from varstats.jax_cpu import (
    xla_cpu_naive,
    xla_cpu_naive_loop,
    xla_cpu_two_pass,
    xla_cpu_two_pass_loop,
)
from varstats.moments import Moments, _check_correction, merge_along, tree_reduce
from varstats.onnxruntime_cpu import (
    ort_cpu_instance_norm,
    ort_cpu_layer_norm,
)
from varstats.precision import (
    Precision,
    as_dtype,
    dtype_name,
    finfo,
    resolve_precision,
    round_to,
)
from varstats.rounding import two_sum as _two_sum
from varstats.tensorflow_cpu import eigen_cpu_fused_batch_norm, eigen_cpu_moments
from varstats.torch_cpu import torch_cpu_two_pass, torch_cpu_welford

__all__ = [
    "ALGORITHMS",
    "PAIRWISE_BLOCK",
    "SUMMATIONS",
    "Kernel",
    "get_algorithm",
    "mean_var",
    "moments",
    "register_algorithm",
    "rescale_exponents",
    "var",
]

Array = npt.NDArray[Any]

#: Length of the sequentially summed base block of the ``"pairwise"`` summation.
PAIRWISE_BLOCK: Final = 32
#: Summation orders accepted by the sum-based kernels.
SUMMATIONS: Final = ("pairwise", "sequential")

#: ``kernel(x, /, *, acc, **options) -> Moments`` over the last axis of ``x``.
Kernel = Callable[..., Moments]


# --------------------------------------------------------------------------- helpers


def _count(n: int | Array, acc: np.dtype[Any]) -> Array:
    # The count as the accumulator holds it: exact up to 2**p, rounded beyond,
    # inf past the format's range (float16 cannot hold n > 65504).
    return round_to(np.asarray(n, dtype=np.float64), acc)


def _sequential_sum(a: Array) -> Array:
    """Left-to-right sum over the last axis, every partial sum rounded in ``a.dtype``."""
    if a.shape[-1] == 1:
        return a[..., 0].copy()
    return np.add.accumulate(a, axis=-1)[..., -1]


def _lanes(a: Array, rows: int) -> tuple[Array, Array | None]:
    """View the last axis as a ``rows x m`` row-major matrix, plus the tail.

    With ``n = rows * m + r``, column ``j`` (a *lane*) holds elements
    ``j, j + m, j + 2m, ...``; the last ``r`` elements form the tail (or None).
    Adding whole rows is one contiguous vector operation, which is what lets the
    pairwise kernels run at ``np.var`` speed.
    """
    n = a.shape[-1]
    m = n // rows
    head = a[..., : rows * m].reshape(*a.shape[:-1], rows, m)
    return head, (a[..., rows * m :] if rows * m < n else None)


def _row_sum(head: Array) -> Array:
    """Sequential sum down the rows of ``(..., rows, m)``: one sum per lane."""
    s = head[..., 0, :].copy()
    for k in range(1, head.shape[-2]):
        s += head[..., k, :]  # in place, rounded in s.dtype like any other add
    return s


class _Split(NamedTuple):
    """Values laid out in summation order.

    ``head`` (``(..., rows, m)`` or None) holds the lanes of a pairwise sum, each
    summed down its rows; ``tail`` (``(..., r)`` or None) is summed left to
    right. A sequential sum is all tail.
    """

    head: Array | None
    tail: Array | None


def _split(a: Array, summation: str) -> _Split:
    if summation == "pairwise":
        head, tail = _lanes(a, PAIRWISE_BLOCK)
        return _Split(head if head.shape[-1] else None, tail)
    if summation == "sequential":
        return _Split(None, a)
    raise ValueError(f"summation: expected one of {SUMMATIONS}, got {summation!r}")


def _lane_major(head: Array) -> Array:
    # A (..., rows, m) buffer whose rows are contiguous across the batch axes, so
    # that each row step of the sums below is one contiguous vector add.
    buf = np.empty((head.shape[-2], *head.shape[:-2], head.shape[-1]), dtype=head.dtype)
    return np.moveaxis(buf, 0, -2)


def _deviations(p: _Split, center: Array) -> _Split:
    """``x - center`` (one value per slice), rounded in the data's dtype, in new arrays."""
    head = None
    if p.head is not None:
        head = np.subtract(p.head, center[..., None, None], out=_lane_major(p.head))
    return _Split(head, None if p.tail is None else p.tail - center[..., None])


def _squares(p: _Split, *, in_place: bool = False) -> _Split:
    """Every value squared, rounded in the data's dtype (``in_place`` reuses ``p``'s arrays)."""
    head = None
    if p.head is not None:
        head = np.multiply(p.head, p.head, out=p.head if in_place else _lane_major(p.head))
    tail = None
    if p.tail is not None:
        tail = np.multiply(p.tail, p.tail, out=p.tail if in_place else None)
    return _Split(head, tail)


def _sum(p: _Split) -> Array:
    """Lane sums and the tail's sequential sum, added in a balanced tree."""
    leaves = [] if p.head is None else [_row_sum(p.head)]
    if p.tail is not None:
        leaves.append(_sequential_sum(p.tail)[..., None])
    (total,) = tree_reduce((np.concatenate(leaves, axis=-1),), lambda a, b: (a + b,))
    return total


def _neumaier_rows(head: Array) -> tuple[Array, Array]:
    """Neumaier's sequential compensated sum down the rows of ``(..., rows, m)``."""
    s = head[..., 0, :].copy()
    c = np.zeros_like(s)
    for k in range(1, head.shape[-2]):
        s, e = _two_sum(s, head[..., k, :])
        c += e
    return s, c


def _compensated_sum(p: _Split) -> Array:
    """Kahan-Babuska-Neumaier sum: ``s + c`` with ``c`` the running sum of exact rounding errors.

    The same order as :func:`_sum`; tree nodes add their ``s`` with TwoSum and
    their ``c`` plainly.
    """
    ss, cs = [], []
    if p.head is not None:
        s0, c0 = _neumaier_rows(p.head)
        ss.append(s0)
        cs.append(c0)
    if p.tail is not None:
        s1, c1 = _neumaier_rows(p.tail[..., None])  # a single lane down the tail
        ss.append(s1)
        cs.append(c1)

    def combine(s1: Array, c1: Array, s2: Array, c2: Array) -> tuple[Array, Array]:
        t, e = _two_sum(s1, s2)
        return t, (c1 + c2) + e

    s, c = tree_reduce((np.concatenate(ss, axis=-1), np.concatenate(cs, axis=-1)), combine)
    return np.asarray(s + c)


def _check_block(block: Any) -> int:
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"block: expected a positive integer, got {block!r}")
    return int(block)


# --------------------------------------------------------------------------- kernels


def _naive(x: Array, /, *, acc: np.dtype[Any], summation: str = "pairwise") -> Moments:
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
    p = _split(x.astype(acc, copy=False), summation)
    n = _count(x.shape[-1], acc)
    s1 = _sum(p)
    s2 = _sum(_squares(p))
    mean = s1 / n
    return Moments(np.asarray(x.shape[-1]), mean, s2 - s1 * mean)


def _shifted(x: Array, /, *, acc: np.dtype[Any], summation: str = "pairwise") -> Moments:
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
    xa = x.astype(acc, copy=False)
    shift = xa[..., 0]
    d = _deviations(_split(xa, summation), shift)
    n = _count(x.shape[-1], acc)
    s1 = _sum(d)
    s2 = _sum(_squares(d, in_place=True))
    dm = s1 / n
    return Moments(np.asarray(x.shape[-1]), shift + dm, s2 - s1 * dm)


def _two_pass(x: Array, /, *, acc: np.dtype[Any], summation: str = "pairwise") -> Moments:
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
    p = _split(x.astype(acc, copy=False), summation)
    mean = _sum(p) / _count(x.shape[-1], acc)
    d = _deviations(p, mean)
    return Moments(np.asarray(x.shape[-1]), mean, _sum(_squares(d, in_place=True)))


def _corrected_two_pass(x: Array, /, *, acc: np.dtype[Any], summation: str = "pairwise") -> Moments:
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
    p = _split(x.astype(acc, copy=False), summation)
    n = _count(x.shape[-1], acc)
    mean = _sum(p) / n
    d = _deviations(p, mean)
    sd = _sum(d)
    m2 = _sum(_squares(d, in_place=True)) - (sd * sd) / n
    return Moments(np.asarray(x.shape[-1]), mean + sd / n, m2)


def _welford(x: Array, /, *, acc: np.dtype[Any], lanes: int = 1) -> Moments:
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
    lanes = _check_block(lanes)
    n = x.shape[-1]
    lanes = min(lanes, n)
    full = n - n % lanes
    xa = x.astype(acc, copy=False)
    # (steps, batch..., lanes): each step is one contiguous vector operation
    steps = np.moveaxis(xa[..., :full].reshape(*x.shape[:-1], full // lanes, lanes), -2, 0)
    steps = np.ascontiguousarray(steps)
    mean = np.zeros(steps.shape[1:], dtype=acc)
    m2 = np.zeros_like(mean)
    delta = np.empty_like(mean)
    tmp = np.empty_like(mean)

    def update(xk: Array, k: int, mean: Array, m2: Array, delta: Array, tmp: Array) -> None:
        np.subtract(xk, mean, out=delta)
        np.divide(delta, _count(k, acc), out=tmp)
        np.add(mean, tmp, out=mean)
        np.subtract(xk, mean, out=tmp)
        np.multiply(delta, tmp, out=tmp)
        np.add(m2, tmp, out=m2)

    for k in range(steps.shape[0]):
        update(steps[k], k + 1, mean, m2, delta, tmp)
    count = np.full(mean.shape, steps.shape[0], dtype=np.int64)
    if full < n:  # the first n % lanes lanes take one more element
        r = n - full
        sub = (..., slice(0, r))
        mean_r, m2_r = mean[sub].copy(), m2[sub].copy()
        update(xa[..., full:], steps.shape[0] + 1, mean_r, m2_r, delta[sub].copy(), tmp[sub].copy())
        mean[sub], m2[sub] = mean_r, m2_r
        count[sub] += 1
    if lanes == 1:
        return Moments(count[..., 0], mean[..., 0], m2[..., 0])
    return merge_along(Moments(count, mean, m2), axis=-1, order="pairwise")


def _blocks(a: Array, block: int) -> tuple[Array, Array | None]:
    """Consecutive blocks ``(..., m, block)`` and the shorter tail ``(..., r)`` (or None)."""
    n = a.shape[-1]
    full = n - n % block
    head = a[..., :full].reshape(*a.shape[:-1], full // block, block)
    return head, (a[..., full:] if full < n else None)


def _leaf_moments(head: Array, tail: Array | None, acc: np.dtype[Any], rows: bool) -> Moments:
    """Two-pass moments (sequential sums) of each leaf, leaves along the last axis.

    Leaves are the lanes (columns) of ``head`` when ``rows`` is true, its
    consecutive blocks (rows) otherwise; ``tail`` is one more, shorter leaf.
    """
    counts, means, m2s = [], [], []
    if head.size:
        if rows:
            size = head.shape[-2]
            h = head.astype(acc, copy=False)
            mean = _row_sum(h) / _count(size, acc)
            d = np.subtract(h, mean[..., None, :], out=_lane_major(h))
            m2 = _row_sum(np.multiply(d, d, out=d))
        else:
            size = head.shape[-1]
            blockwise = _two_pass(head, acc=acc, summation="sequential")
            mean, m2 = blockwise.mean, blockwise.m2
        counts.append(np.full(mean.shape, size, dtype=np.int64))
        means.append(mean)
        m2s.append(m2)
    if tail is not None:
        t = _two_pass(tail, acc=acc, summation="sequential")
        counts.append(np.full((*t.shape, 1), tail.shape[-1], dtype=np.int64))
        means.append(t.mean[..., None])
        m2s.append(t.m2[..., None])
    cat = np.concatenate
    return Moments(cat(counts, axis=-1), cat(means, axis=-1), cat(m2s, axis=-1))


def _pairwise(x: Array, /, *, acc: np.dtype[Any], block: int = PAIRWISE_BLOCK) -> Moments:
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
    block = _check_block(block)
    leaves = _leaf_moments(*_lanes(x, block), acc, rows=True)
    return merge_along(leaves, axis=-1, order="pairwise")


def _chan(x: Array, /, *, acc: np.dtype[Any], block: int = 1024) -> Moments:
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
    block = _check_block(block)
    leaves = _leaf_moments(*_blocks(x, block), acc, rows=False)
    return merge_along(leaves, axis=-1, order="sequential")


def _compensated(x: Array, /, *, acc: np.dtype[Any], summation: str = "pairwise") -> Moments:
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
    p = _split(x.astype(acc, copy=False), summation)
    n = _count(x.shape[-1], acc)
    mean = _compensated_sum(p) / n
    d = _deviations(p, mean)
    sd = _compensated_sum(d)
    m2 = _compensated_sum(_squares(d, in_place=True)) - (sd * sd) / n
    return Moments(np.asarray(x.shape[-1]), mean + sd / n, m2)


_BUILTINS: Final[dict[str, Kernel]] = {
    "naive": _naive,
    "shifted": _shifted,
    "two_pass": _two_pass,
    "corrected_two_pass": _corrected_two_pass,
    "welford": _welford,
    "pairwise": _pairwise,
    "chan": _chan,
    "compensated": _compensated,
}

#: Names of the built-in algorithms, in the order tables list them.
ALGORITHMS: Final = tuple(_BUILTINS)

# Framework kernel emulations are named here, where the registry is built, so
# that importing a module never changes what a name means.
_FRAMEWORK_KERNELS: Final[dict[str, Kernel]] = {
    "torch_cpu_welford": torch_cpu_welford,
    "torch_cpu_two_pass": torch_cpu_two_pass,
    "eigen_cpu_fused_batch_norm": eigen_cpu_fused_batch_norm,
    "eigen_cpu_moments": eigen_cpu_moments,
    "ort_cpu_instance_norm": ort_cpu_instance_norm,
    "ort_cpu_layer_norm": ort_cpu_layer_norm,
    "xla_cpu_naive": xla_cpu_naive,
    "xla_cpu_naive_loop": xla_cpu_naive_loop,
    "xla_cpu_two_pass": xla_cpu_two_pass,
    "xla_cpu_two_pass_loop": xla_cpu_two_pass_loop,
}

# dot2 (the recommended kernel) is registered by name but is not one of ALGORITHMS
_REGISTRY: dict[str, Kernel] = {**_BUILTINS, **_FRAMEWORK_KERNELS, "dot2": dot2_two_pass}


def register_algorithm(name: str, kernel: Kernel, /, *, overwrite: bool = False) -> None:
    """Make ``kernel`` available as ``algorithm=name`` everywhere.

    A kernel is called as ``kernel(x, /, *, acc, **options)`` with the reduced
    axes flattened into the last axis of ``x`` (stored in the storage dtype) and
    must return :class:`Moments` in ``acc`` with that axis removed.
    """
    if not isinstance(name, str) or not name:
        raise TypeError("name: expected a non-empty string")
    if not callable(kernel):
        raise TypeError(f"kernel: {kernel!r} is not callable")
    if name in _BUILTINS or name in _FRAMEWORK_KERNELS or (name in _REGISTRY and not overwrite):
        raise ValueError(f"name: algorithm {name!r} is already registered")
    _REGISTRY[name] = kernel


def get_algorithm(algorithm: str | Kernel, /) -> Kernel:
    """The kernel for a registered name, or ``algorithm`` itself if it is callable."""
    if isinstance(algorithm, str):
        try:
            return _REGISTRY[algorithm]
        except KeyError:
            raise ValueError(
                f"algorithm: unknown {algorithm!r}; "
                f"expected one of {sorted(_REGISTRY)} or a callable"
            ) from None
    if callable(algorithm):
        return algorithm
    raise TypeError(f"algorithm: expected a name or a callable, got {type(algorithm).__name__}")


# --------------------------------------------------------------------------- public


def _as_float_array(x: Any) -> Array:
    a = np.asarray(x)
    if a.dtype.kind in "biu":
        raise TypeError(
            f"x: {a.dtype} input; varstats does not pick a float format for you. "
            "Store the data first, e.g. varstats.round_to(x, 'float32')"
        )
    try:
        as_dtype(a.dtype, name="x")
    except (ValueError, TypeError):
        raise TypeError(
            f"x: unsupported dtype {a.dtype}; expected float16, bfloat16, float32 or float64"
        ) from None
    return a


def _prepare(
    x: Any, axis: int | Sequence[int] | None, precision: Precision | str | None
) -> tuple[Array, Precision, tuple[int, ...], tuple[int, ...]]:
    """Validate, and return x with the reduced axes flattened last, plus shapes."""
    a = _as_float_array(x)
    prec = resolve_precision(precision, a)
    axes = tuple(range(a.ndim)) if axis is None else _axes_or_raise(axis, a.ndim)
    keep = tuple(i for i in range(a.ndim) if i not in axes)
    batch_shape = tuple(a.shape[i] for i in keep)
    n = int(np.prod([a.shape[i] for i in axes], dtype=np.int64))
    if n == 0:
        raise ValueError(f"x: the reduction over axis={axis!r} is empty (shape {a.shape})")
    moved = np.transpose(a, keep + axes).reshape(*batch_shape, n)
    return moved, prec, axes, batch_shape


def moments(
    x: npt.ArrayLike,
    /,
    *,
    axis: int | Sequence[int] | None = None,
    algorithm: str | Kernel = "two_pass",
    precision: Precision | str | None = None,
    **options: Any,
) -> Moments:
    r"""Count, mean and :math:`M_2 = \sum (x_i - \bar x)^2` of ``x`` over ``axis``.

    Parameters
    ----------
    x : array_like
        Data stored in float16, bfloat16, float32 or float64.
    axis : None, int or tuple of ints
        Axes to reduce; ``None`` reduces all.
    algorithm : str or callable
        One of :data:`ALGORITHMS`, a name given to :func:`register_algorithm`, or
        a kernel ``kernel(x, /, *, acc, **options) -> Moments``.
    precision : Precision, str or None
        Storage and accumulator formats. ``None``: both are ``x.dtype``.
    **options
        Passed to the kernel: ``summation`` ("pairwise" or "sequential") for
        naive, shifted, two_pass, corrected_two_pass and compensated; ``block``
        for pairwise and chan; ``lanes`` for welford.

    Returns
    -------
    Moments
        ``mean`` and ``m2`` in the accumulator dtype, shaped like ``x`` without
        the reduced axes.
    """
    from varstats import array_api  # lazy: it imports this module

    if array_api.is_foreign_array(x):  # torch, array_api_strict, ...: their own operations
        return array_api.moments(x, axis=axis, algorithm=algorithm, precision=precision, **options)
    xm, prec, _, batch_shape = _prepare(x, axis, precision)
    kernel = get_algorithm(algorithm)
    acc = prec.accumulator_dtype
    with np.errstate(all="ignore"):  # overflow and NaN are results here, not accidents
        result = kernel(xm, acc=acc, **options)
    if not isinstance(result, Moments):
        raise TypeError(f"algorithm: kernel returned {type(result).__name__}, expected Moments")
    if result.dtype != acc or result.shape != batch_shape:
        raise ValueError(
            f"algorithm: kernel returned moments of {dtype_name(result.dtype)}{result.shape}, "
            f"expected {dtype_name(acc)}{batch_shape}"
        )
    return result


def _finish(value: Array, axes: tuple[int, ...], keepdims: bool) -> Any:
    # the kernels keep the non-reduced axes in order, so keepdims is expand_dims
    if keepdims:
        value = np.expand_dims(value, axes)
    return value[()] if value.ndim == 0 else value


def _rescale_exponents(x: Array, acc: np.dtype[Any]) -> Array:
    """Per-slice power-of-two exponent k that keeps squares and sums in range (last axis)."""
    with np.errstate(invalid="ignore"):
        mag = np.abs(x.astype(np.float64))
    amax = np.max(np.where(np.isfinite(mag), mag, 0.0), axis=-1)
    return rescale_exponents(amax, x.shape[-1], acc)


def rescale_exponents(amax: npt.ArrayLike, n: int, acc: Any) -> Array:
    """Power-of-two exponents ``k`` for slices of ``n`` values with largest magnitude ``amax``.

    Slices whose largest finite magnitude lies in ``[L, T]`` get ``k = 0`` (no
    scaling at all), with ``T = sqrt(max / n) / 2`` (no sum of ``n`` squares can
    overflow) and ``L = sqrt(tiny) / u`` (squared deviations at the rounding level
    of the data stay normal). Others are scaled by ``2**-k`` so their magnitude
    falls just below ``T``. Used by ``rescale=True`` here and in :mod:`varstats.dask`.
    """
    fi = finfo(acc)
    a = np.asarray(amax, dtype=np.float64)
    high = np.sqrt(fi.max / n) / 2
    low = np.sqrt(fi.tiny) / fi.unit_roundoff
    need = (a > 0) & ((a > high) | (a < low))
    k = np.frexp(a)[1] - np.frexp(high)[1] + 1
    return np.asarray(np.where(need, k, 0).astype(np.int64))


def mean_var(
    x: npt.ArrayLike,
    /,
    *,
    axis: int | Sequence[int] | None = None,
    correction: float = 0,
    algorithm: str | Kernel = "two_pass",
    precision: Precision | str | None = None,
    keepdims: bool = False,
    rescale: bool = False,
    **options: Any,
) -> tuple[Any, Any]:
    r"""Mean and variance :math:`M_2/(n - c)` in one call; see :func:`var`.

    Both results are in the accumulator dtype.
    """
    from varstats import array_api  # lazy: it imports this module

    if array_api.is_foreign_array(x):  # torch, array_api_strict, ...: their own operations
        return array_api.mean_var(
            x,
            axis=axis,
            correction=correction,
            algorithm=algorithm,
            precision=precision,
            keepdims=keepdims,
            rescale=rescale,
            **options,
        )
    a = _as_float_array(x)
    axes = tuple(range(a.ndim)) if axis is None else _axes_or_raise(axis, a.ndim)
    n = int(np.prod([a.shape[i] for i in axes], dtype=np.int64))
    if n:
        _check_correction(correction, np.asarray([n]))
    if not rescale:
        m = moments(a, axis=axis, algorithm=algorithm, precision=precision, **options)
        mean, variance = np.asarray(m.mean), m.var(correction)
    else:
        # Scale each slice by 2**-k in the accumulator (exact: the rule above only
        # moves values away from overflow and underflow), reduce, and scale back
        # with one rounding each.
        xm, prec, _, _ = _prepare(a, axis, precision)
        acc = prec.accumulator_dtype
        k = _rescale_exponents(xm, acc)
        scaled = round_to(np.ldexp(xm.astype(np.float64), -k[..., None]), acc)
        m = moments(
            scaled, axis=-1, algorithm=algorithm, precision=Precision(prec.accumulator), **options
        )
        with np.errstate(all="ignore"):
            mean = round_to(np.ldexp(m.mean.astype(np.float64), k), acc)
            variance = round_to(np.ldexp(m.var(correction).astype(np.float64), 2 * k), acc)
    return _finish(mean, axes, keepdims), _finish(variance, axes, keepdims)


def _axes_or_raise(axis: Any, ndim: int) -> tuple[int, ...]:
    if isinstance(axis, (bool, float)) or not isinstance(axis, (int, np.integer, tuple, list)):
        raise TypeError(f"axis: expected None, an int or a tuple of ints, got {axis!r}")
    return tuple(normalize_axis_tuple(axis, ndim, argname="axis"))  # type: ignore[arg-type]


def var(
    x: npt.ArrayLike,
    /,
    *,
    axis: int | Sequence[int] | None = None,
    correction: float = 0,
    algorithm: str | Kernel = "two_pass",
    precision: Precision | str | None = None,
    keepdims: bool = False,
    rescale: bool = False,
    **options: Any,
) -> Any:
    r"""Variance of ``x`` over ``axis`` by the chosen algorithm and precision.

    .. math::
        \operatorname{var}(x) = \frac{1}{n - c}\sum_{i=1}^{n} (x_i - \bar x)^2

    Parameters
    ----------
    x : array_like
        Data stored in float16, bfloat16, float32 or float64. Integer, boolean,
        complex and object input is a ``TypeError``.
    axis : None, int or tuple of ints
    correction : float
        :math:`c`, the Array API name for ``ddof``: 0 is the biased (population)
        variance, 1 Bessel's correction. Must be smaller than :math:`n`.
    algorithm : str or callable
        See :data:`ALGORITHMS` and :func:`moments`.
    precision : Precision, str or None
        ``None`` computes in ``x.dtype`` throughout.
    keepdims : bool
    rescale : bool
        Scale each slice by a power of two before reducing when its largest
        magnitude is so large that squares could overflow, or so small that
        squared deviations would underflow, and scale the results back. The
        scaling is exact, so it never changes a result that was in range; it
        turns ``inf`` or ``0`` into the right answer, e.g. for
        ``[1e154, 2e154, 3e154]``, whose :math:`M_2 = 2\cdot 10^{308}` overflows
        although the variance does not.
    **options
        Kernel options (``summation``, ``block``, ``lanes``).

    Returns
    -------
    ndarray or scalar
        In the accumulator dtype. NaN and inf in the data propagate as IEEE
        arithmetic makes them; a negative result (possible for ``naive`` and
        ``shifted``) is returned as computed, never clamped.

    Examples
    --------
    >>> import numpy as np, varstats as vs
    >>> x = np.array([40000, 40001, 40002, 40003], dtype=np.float32)
    >>> float(vs.var(x, algorithm="two_pass"))
    1.25
    >>> float(vs.var(x, algorithm="naive", summation="sequential"))
    -128.0
    """
    return mean_var(
        x,
        axis=axis,
        correction=correction,
        algorithm=algorithm,
        precision=precision,
        keepdims=keepdims,
        rescale=rescale,
        **options,
    )[1]
