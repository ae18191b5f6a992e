r"""Array API inputs: the same algorithms run with the caller's array library.

:func:`varstats.moments`, :func:`varstats.mean_var` and :func:`varstats.var` hand any
non-NumPy Array API array (a ``torch.Tensor``, an ``array_api_strict`` array, a JAX or
CuPy array, ...) to this module, which runs the algorithm with that library's own
operations, through :mod:`array_api_compat`: a torch tensor in, a torch tensor out,
on the same device.

Design
------
The kernels here are the NumPy kernels of :mod:`varstats.algorithms` transcribed
operation by operation into the Array API: the same reshapes into lanes and blocks,
the same sequential loops (one vector operation per step across the batch axes), the
same balanced trees and the same Chan merges. Nothing is reduced with the library's
own ``sum``/``mean``/``var`` (whose order and internal precision are the library's
business: ``torch.sum`` of float16 accumulates in float32, ``torch.cumsum`` of
float32 in float64 on CPU). Every step is an elementwise ``+ - * /``, which IEEE
754 and the Array API specify as correctly rounded, so on the same data the result
equals the NumPy path bit for bit. The tests check this for float32 and float64
with ``array_api_strict`` and torch, and for torch's float16 and bfloat16 (whose
elementwise CPU operations compute in float32 and round once, as NumPy's and
ml_dtypes' do).

Why not convert to NumPy at the boundary? Conversion would be exact too (DLPack is
a copy of the bits) but it would leave the caller's device, break autograd and lazy
graphs, and it would not be what the user asked for: the study's claim is that the
*algorithm*, not NumPy, decides the accuracy. NumPy stays the reference; this module
is a second implementation held to it.

What stays NumPy-only
    * Formats the library lacks: ``array_api_strict`` and most libraries have no
      bfloat16 or float16. Such an accumulator is a ``TypeError`` naming
      ``precision``; convert the data with ``np.asarray``/``np.from_dlpack`` to
      emulate it.
    * User kernels (callables or names given to
      :func:`~varstats.algorithms.register_algorithm`): they are NumPy code. Only the
      built-in algorithms in :data:`GENERIC_ALGORITHMS` run here.
    * Counts and count ratios: they are metadata known from the shapes, so they are
      formed on the host with NumPy and rounded once into the accumulator exactly as
      :meth:`varstats.Moments.merge` does; ``ArrayMoments.count`` is a NumPy array.

With ``rescale=True`` the per-slice power-of-two exponents are chosen on the host
from the slice maxima (a small transfer) and applied as multiplications in float64
(exact) followed by one cast into the accumulator, so results equal the NumPy path
except where a scaled value lands in the accumulator's subnormal range (where a
library's float64-to-narrow cast may round twice).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final

import numpy as np

from varstats.algorithms import (
    PAIRWISE_BLOCK,
    SUMMATIONS,
    _axes_or_raise,
    get_algorithm,
    rescale_exponents,
)
from varstats.moments import Moments, _check_correction
from varstats.precision import DTYPES, Precision, round_to
from varstats.rounding import two_sum as _two_sum

__all__ = [
    "GENERIC_ALGORITHMS",
    "ArrayMoments",
    "is_foreign_array",
    "mean_var",
    "moments",
]

XArray = Any  # an array of some Array API namespace
Part = tuple[Any, ...]


# --------------------------------------------------------------------------- dispatch


def is_foreign_array(x: Any, /) -> bool:
    """Whether ``x`` is an Array API array of a library other than NumPy.

    NumPy arrays, scalars, lists and anything without ``shape`` and ``dtype`` are
    not (they take the NumPy path). Needs :mod:`array_api_compat` only when ``x``
    looks like an array of another library; without it such an ``x`` raises
    ``ImportError`` (install the ``interop`` extra).
    """
    if isinstance(x, np.ndarray | np.generic) or not (hasattr(x, "shape") and hasattr(x, "dtype")):
        return False
    try:
        import array_api_compat
    except ImportError:  # pragma: no cover - exercised only without the extra
        if hasattr(x, "__array_namespace__") or type(x).__module__.startswith("torch"):
            raise ImportError(
                f"x: a {type(x).__module__}.{type(x).__name__} needs array-api-compat; "
                "install varstats[interop] or pass np.asarray(x)"
            ) from None
        return False
    return bool(array_api_compat.is_array_api_obj(x) and not array_api_compat.is_numpy_array(x))


# --------------------------------------------------------------------------- context


@dataclass(frozen=True)
class _Ctx:
    """The namespace, device and accumulator dtype a kernel computes with."""

    xp: ModuleType
    device: Any
    acc: Any  # the namespace's dtype object
    acc_name: str  # its varstats name, one of DTYPES

    def const(self, values: Any) -> XArray:
        """Host values, already representable in the accumulator, as an ``acc`` array.

        Passes through float32 (or float64 for a float64 accumulator), which holds
        every float16, bfloat16 and float32 value exactly, so no rounding happens.
        """
        wide = "float64" if self.acc_name == "float64" else "float32"
        host = np.asarray(values, dtype=np.float64).astype(wide)
        arr = self.xp.asarray(host, dtype=getattr(self.xp, wide), device=self.device)
        return self.xp.astype(arr, self.acc)

    def count(self, n: Any) -> XArray:
        # the count as the accumulator holds it (float16 cannot hold n > 65504)
        return self.const(round_to(np.asarray(n, dtype=np.float64), self.acc_name))

    def weight(self, numerator: Any, denominator: Any) -> XArray:
        # count ratios: exact rationals rounded once, as in varstats.moments._weight
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.divide(numerator, denominator, dtype=np.float64)
        return self.const(round_to(ratio, self.acc_name))


def _namespace_dtype(xp: ModuleType, name: str, /, *, argname: str, device: Any = None) -> Any:
    """The namespace's dtype called ``name``, if it has one on ``device``."""
    dt = getattr(xp, name, None)
    if dt is not None and name in ("float32", "float64") and device is not None:
        # the Array API's inspection: some devices lack float64 (e.g. Apple MPS)
        info = getattr(xp, "__array_namespace_info__", None)
        if info is not None and name not in info().dtypes(device=device, kind="real floating"):
            dt = None
    if dt is None:
        where = f"{xp.__name__}" + (f" on device {device}" if device is not None else "")
        raise TypeError(
            f"{argname}: {where} has no {name}; precision emulation in {name} is "
            "NumPy-only here. Pass np.asarray(x) (or np.from_dlpack(x)) to emulate it"
        )
    return dt


def _dtype_name(xp: ModuleType, dtype: Any, /) -> str:
    for name in DTYPES:
        candidate = getattr(xp, name, None)
        if candidate is not None and dtype == candidate:
            return name
    if xp.isdtype(dtype, ("bool", "integral")):
        raise TypeError(
            f"x: {dtype} input; varstats does not pick a float format for you. "
            "Cast it to a float dtype first"
        )
    raise TypeError(f"x: unsupported dtype {dtype}; expected float16, bfloat16, float32 or float64")


def _resolve(xp: ModuleType, x: XArray, precision: Precision | str | None) -> Precision:
    storage = _dtype_name(xp, x.dtype)
    if precision is None:
        return Precision(storage)
    if isinstance(precision, str):
        precision = Precision.parse(precision)
    if not isinstance(precision, Precision):
        kind = type(precision).__name__
        raise TypeError(f"precision: expected Precision, str or None, got {kind}")
    if precision.storage != storage:
        raise ValueError(
            f"precision: x is stored as {storage} but precision.storage is "
            f"{precision.storage}; cast it first"
        )
    return precision


# --------------------------------------------------------------------------- sums


def _sequential_sum(c: _Ctx, a: XArray) -> XArray:
    """Left to right over the last axis, every partial sum rounded in ``a.dtype``."""
    s = a[..., 0]
    for k in range(1, a.shape[-1]):
        s = s + a[..., k]
    return s


def _lanes(c: _Ctx, a: XArray, rows: int) -> tuple[XArray, XArray | None]:
    """``(..., rows, m)`` row-major view of the first ``rows * m`` values, plus the tail."""
    n = a.shape[-1]
    m = n // rows
    head = c.xp.reshape(a[..., : rows * m], (*a.shape[:-1], rows, m))
    return head, (a[..., rows * m :] if rows * m < n else None)


def _row_sum(c: _Ctx, head: XArray) -> XArray:
    s = head[..., 0, :]
    for k in range(1, head.shape[-2]):
        s = s + head[..., k, :]
    return s


def _tree(c: _Ctx, parts: Part, combine: Callable[..., Part]) -> Part:
    """Balanced tree over the last axis, as :func:`varstats.moments.tree_reduce`."""
    xp = c.xp
    while parts[0].shape[-1] > 1:
        m = parts[0].shape[-1]
        even = m - m % 2
        merged = combine(*(p[..., 0:even:2] for p in parts), *(p[..., 1:even:2] for p in parts))
        if m % 2:  # the odd one is carried up a level unchanged
            merged = tuple(
                xp.concat([q, p[..., m - 1 :]], axis=-1) for q, p in zip(merged, parts, strict=True)
            )
        parts = merged
    return tuple(p[..., 0] for p in parts)


def _pairwise_sum(c: _Ctx, a: XArray) -> XArray:
    head, tail = _lanes(c, a, PAIRWISE_BLOCK)
    leaves = [_row_sum(c, head)] if head.shape[-1] else []
    if tail is not None:
        leaves.append(_sequential_sum(c, tail)[..., None])
    (total,) = _tree(c, (c.xp.concat(leaves, axis=-1),), lambda p, q: (p + q,))
    return total


def _sum(c: _Ctx, a: XArray, summation: str) -> XArray:
    if summation == "pairwise":
        return _pairwise_sum(c, a)
    if summation == "sequential":
        return _sequential_sum(c, a)
    raise ValueError(f"summation: expected one of {SUMMATIONS}, got {summation!r}")


def _neumaier_rows(c: _Ctx, head: XArray) -> tuple[XArray, XArray]:
    s = head[..., 0, :]
    comp = c.xp.zeros_like(s)
    for k in range(1, head.shape[-2]):
        s, e = _two_sum(s, head[..., k, :])
        comp = comp + e
    return s, comp


def _compensated_sum(c: _Ctx, a: XArray, summation: str) -> XArray:
    xp = c.xp
    if summation == "sequential":
        s, comp = _neumaier_rows(c, a[..., None])
        return s[..., 0] + comp[..., 0]
    if summation != "pairwise":
        raise ValueError(f"summation: expected one of {SUMMATIONS}, got {summation!r}")
    head, tail = _lanes(c, a, PAIRWISE_BLOCK)
    ss, cs = [], []
    if head.shape[-1]:
        s0, c0 = _neumaier_rows(c, head)
        ss.append(s0)
        cs.append(c0)
    if tail is not None:
        s1, c1 = _neumaier_rows(c, tail[..., None])
        ss.append(s1)
        cs.append(c1)

    def combine(s1: XArray, c1: XArray, s2: XArray, c2: XArray) -> Part:
        t, e = _two_sum(s1, s2)
        return t, (c1 + c2) + e

    s, comp = _tree(c, (xp.concat(ss, axis=-1), xp.concat(cs, axis=-1)), combine)
    return s + comp


# --------------------------------------------------------------------------- merges


def _chan_update(c: _Ctx, na: Any, ma: XArray, sa: XArray, nb: Any, mb: XArray, sb: XArray) -> Part:
    # varstats.moments.chan_update, operation for operation
    n = na + nb
    delta = mb - ma
    mean = ma + delta * c.weight(nb, n)
    m2 = (sa + sb) + (delta * delta) * c.weight(np.multiply(na, nb, dtype=np.float64), n)
    return n, mean, m2


def _merge_along_last(c: _Ctx, count: Any, mean: XArray, m2: XArray, order: str) -> Part:
    """Merge parts along the last axis (``count`` is a host array of the same shape)."""
    count = np.asarray(count, dtype=np.int64)
    if order == "sequential":
        n, mu, s = count[..., 0], mean[..., 0], m2[..., 0]
        for k in range(1, count.shape[-1]):
            n, mu, s = _chan_update(c, n, mu, s, count[..., k], mean[..., k], m2[..., k])
        return n, mu, s
    xp = c.xp
    while mean.shape[-1] > 1:
        m = mean.shape[-1]
        even = m - m % 2
        n, mu, s = _chan_update(
            c,
            count[..., 0:even:2],
            mean[..., 0:even:2],
            m2[..., 0:even:2],
            count[..., 1:even:2],
            mean[..., 1:even:2],
            m2[..., 1:even:2],
        )
        if m % 2:
            n = np.concatenate([n, count[..., -1:]], axis=-1)
            mu = xp.concat([mu, mean[..., m - 1 :]], axis=-1)
            s = xp.concat([s, m2[..., m - 1 :]], axis=-1)
        count, mean, m2 = n, mu, s
    return count[..., 0], mean[..., 0], m2[..., 0]


# --------------------------------------------------------------------------- kernels
# Each is the Array API transcription of the kernel of the same name in
# varstats.algorithms (see there for the mathematics and references). They return
# (count, mean, m2) with count a host integer array.


def _naive(c: _Ctx, x: XArray, /, *, summation: str = "pairwise") -> Part:
    xa = c.xp.astype(x, c.acc)
    n = x.shape[-1]
    s1 = _sum(c, xa, summation)
    s2 = _sum(c, xa * xa, summation)
    mean = s1 / c.count(n)
    return np.asarray(n), mean, s2 - s1 * mean


def _shifted(c: _Ctx, x: XArray, /, *, summation: str = "pairwise") -> Part:
    xa = c.xp.astype(x, c.acc)
    shift = xa[..., :1]
    d = xa - shift
    s1 = _sum(c, d, summation)
    s2 = _sum(c, d * d, summation)
    dm = s1 / c.count(x.shape[-1])
    return np.asarray(x.shape[-1]), shift[..., 0] + dm, s2 - s1 * dm


def _two_pass(c: _Ctx, x: XArray, /, *, summation: str = "pairwise") -> Part:
    xa = c.xp.astype(x, c.acc)
    mean = _sum(c, xa, summation) / c.count(x.shape[-1])
    d = xa - mean[..., None]
    return np.asarray(x.shape[-1]), mean, _sum(c, d * d, summation)


def _corrected_two_pass(c: _Ctx, x: XArray, /, *, summation: str = "pairwise") -> Part:
    xa = c.xp.astype(x, c.acc)
    n = c.count(x.shape[-1])
    mean = _sum(c, xa, summation) / n
    d = xa - mean[..., None]
    sd = _sum(c, d, summation)
    m2 = _sum(c, d * d, summation) - (sd * sd) / n
    return np.asarray(x.shape[-1]), mean + sd / n, m2


def _compensated(c: _Ctx, x: XArray, /, *, summation: str = "pairwise") -> Part:
    xa = c.xp.astype(x, c.acc)
    n = c.count(x.shape[-1])
    mean = _compensated_sum(c, xa, summation) / n
    d = xa - mean[..., None]
    sd = _compensated_sum(c, d, summation)
    m2 = _compensated_sum(c, d * d, summation) - (sd * sd) / n
    return np.asarray(x.shape[-1]), mean + sd / n, m2


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _welford(c: _Ctx, x: XArray, /, *, lanes: int = 1) -> Part:
    xp = c.xp
    n = x.shape[-1]
    lanes = min(_positive_int(lanes, "lanes"), n)
    full = n - n % lanes
    xa = xp.astype(x, c.acc)
    batch = tuple(x.shape[:-1])
    steps = xp.reshape(xa[..., :full], (*batch, full // lanes, lanes))
    mean = xp.zeros((*batch, lanes), dtype=c.acc, device=c.device)
    m2 = xp.zeros_like(mean)

    def update(xk: XArray, k: int, mean: XArray, m2: XArray) -> tuple[XArray, XArray]:
        delta = xk - mean
        mean = mean + delta / c.count(k)
        return mean, m2 + delta * (xk - mean)

    for k in range(full // lanes):
        mean, m2 = update(steps[..., k, :], k + 1, mean, m2)
    count = np.full((*batch, lanes), full // lanes, dtype=np.int64)
    if full < n:  # the first n % lanes lanes take one more element
        r = n - full
        mean_r, m2_r = update(xa[..., full:], full // lanes + 1, mean[..., :r], m2[..., :r])
        mean = xp.concat([mean_r, mean[..., r:]], axis=-1)
        m2 = xp.concat([m2_r, m2[..., r:]], axis=-1)
        count[..., :r] += 1
    if lanes == 1:
        return count[..., 0], mean[..., 0], m2[..., 0]
    return _merge_along_last(c, count, mean, m2, "pairwise")


def _leaf_moments(
    c: _Ctx, head: XArray, tail: XArray | None, rows: bool
) -> tuple[Any, XArray, XArray]:
    """Sequential two-pass moments of the lanes (``rows``) or blocks of ``head``, and the tail."""
    xp = c.xp
    counts, means, m2s = [], [], []
    if head.shape[-1] and head.shape[-2]:
        if rows:
            size = head.shape[-2]
            h = xp.astype(head, c.acc)
            mean = _row_sum(c, h) / c.count(size)
            d = h - mean[..., None, :]
            m2 = _row_sum(c, d * d)
        else:
            size = head.shape[-1]
            _, mean, m2 = _two_pass(c, head, summation="sequential")
        counts.append(np.full(tuple(mean.shape), size, dtype=np.int64))
        means.append(mean)
        m2s.append(m2)
    if tail is not None:
        _, tm, ts = _two_pass(c, tail, summation="sequential")
        counts.append(np.full((*tm.shape, 1), tail.shape[-1], dtype=np.int64))
        means.append(tm[..., None])
        m2s.append(ts[..., None])
    return np.concatenate(counts, axis=-1), xp.concat(means, axis=-1), xp.concat(m2s, axis=-1)


def _pairwise(c: _Ctx, x: XArray, /, *, block: int = PAIRWISE_BLOCK) -> Part:
    leaves = _leaf_moments(c, *_lanes(c, x, _positive_int(block, "block")), rows=True)
    return _merge_along_last(c, *leaves, "pairwise")


def _chan(c: _Ctx, x: XArray, /, *, block: int = 1024) -> Part:
    block = _positive_int(block, "block")
    n = x.shape[-1]
    full = n - n % block
    head = c.xp.reshape(x[..., :full], (*x.shape[:-1], full // block, block))
    leaves = _leaf_moments(c, head, x[..., full:] if full < n else None, rows=False)
    return _merge_along_last(c, *leaves, "sequential")


_KERNELS: Final[dict[str, Callable[..., Part]]] = {
    "naive": _naive,
    "shifted": _shifted,
    "two_pass": _two_pass,
    "corrected_two_pass": _corrected_two_pass,
    "welford": _welford,
    "pairwise": _pairwise,
    "chan": _chan,
    "compensated": _compensated,
}

#: The algorithms that run with another library's operations (every built-in one).
GENERIC_ALGORITHMS: Final = tuple(_KERNELS)


# --------------------------------------------------------------------------- moments


@dataclass(frozen=True, eq=False)
class ArrayMoments(Moments):
    """:class:`~varstats.Moments` whose ``mean`` and ``m2`` are arrays of another library.

    ``count`` is a NumPy ``int64`` array (it is known from the shapes); ``mean``
    and ``m2`` keep the caller's namespace, dtype and device. :meth:`merge` and
    :meth:`var` round exactly as :class:`~varstats.Moments` does;
    :meth:`to_numpy` converts to a plain :class:`~varstats.Moments`.
    """

    def __post_init__(self) -> None:
        import array_api_compat

        xp = array_api_compat.array_namespace(self.mean, self.m2)
        _dtype_name(xp, self.mean.dtype)
        if self.m2.dtype != self.mean.dtype or tuple(self.m2.shape) != tuple(self.mean.shape):
            raise ValueError(
                f"m2: dtype/shape {self.m2.dtype}{tuple(self.m2.shape)} differ from mean's "
                f"{self.mean.dtype}{tuple(self.mean.shape)}"
            )
        count = np.asarray(self.count)
        if count.dtype.kind not in "iu":
            raise TypeError(f"count: expected integers, got {count.dtype}")
        if np.any(count < 0):
            raise ValueError("count: must be non-negative")
        shape = tuple(self.mean.shape)
        object.__setattr__(self, "count", np.broadcast_to(count.astype(np.int64), shape))

    @property
    def dtype(self) -> Any:
        """The accumulator dtype, as the array library names it."""
        return self.mean.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.mean.shape)

    @property
    def namespace(self) -> ModuleType:
        """The (:mod:`array_api_compat`-wrapped) namespace of ``mean`` and ``m2``."""
        import array_api_compat

        xp: ModuleType = array_api_compat.array_namespace(self.mean)
        return xp

    def _ctx(self) -> _Ctx:
        import array_api_compat

        xp = self.namespace
        name = _dtype_name(xp, self.dtype)
        return _Ctx(xp, array_api_compat.device(self.mean), self.dtype, name)

    def merge(self, other: Moments, /) -> ArrayMoments:
        """Chan merge with the moments of disjoint data; see :meth:`varstats.Moments.merge`."""
        if not isinstance(other, ArrayMoments):
            raise TypeError(f"other: expected ArrayMoments, got {type(other).__name__}")
        if other.dtype != self.dtype:
            raise ValueError(f"other: accumulator {other.dtype} differs from {self.dtype}")
        c = self._ctx()
        xp = c.xp
        shape = tuple(np.broadcast_shapes(self.shape, other.shape))
        na, nb = self.count, other.count
        n, mean, m2 = _chan_update(c, na, self.mean, self.m2, nb, other.mean, other.m2)
        # an empty side contributes nothing, whatever its mean and m2 hold
        a_empty = xp.asarray(na == 0, device=c.device)
        b_empty = xp.asarray(nb == 0, device=c.device)
        mean = xp.where(a_empty, other.mean, xp.where(b_empty, self.mean, mean))
        m2 = xp.where(a_empty, other.m2, xp.where(b_empty, self.m2, m2))
        return ArrayMoments(
            np.broadcast_to(n, shape),
            xp.broadcast_to(mean, shape),
            xp.broadcast_to(m2, shape),
        )

    def var(self, correction: float = 0) -> Any:
        r"""Variance :math:`M_2 / (n - c)` in the accumulator, as an array of the namespace."""
        corr = _check_correction(correction, self.count)
        c = self._ctx()
        divisor = c.const(round_to(self.count.astype(np.float64) - corr, c.acc_name))
        return self.m2 / divisor

    def to_numpy(self) -> Moments:
        """The same moments as NumPy arrays (bit for bit; bfloat16 via ``ml_dtypes``)."""
        name = _dtype_name(self.namespace, self.dtype)
        return Moments(self.count, _to_numpy(self.mean, name), _to_numpy(self.m2, name))


def _to_numpy(a: XArray, name: str) -> Any:
    import array_api_compat

    xp = array_api_compat.array_namespace(a)
    if array_api_compat.is_torch_array(a):
        a = a.detach()  # values only; the autograd graph stays with the caller
    if name in ("float32", "float64"):
        try:  # a copy of the bits, from any device that can hand them to the host
            return np.from_dlpack(a, device="cpu")
        except (TypeError, ValueError, RuntimeError, BufferError):
            return np.asarray(a)
    # float16/bfloat16: through float32 (exact), since DLPack and NumPy may lack the type
    wide = np.asarray(_to_numpy(xp.astype(a, xp.float32), "float32"))
    return round_to(wide, name)


def _prepare(
    x: XArray, axis: int | Sequence[int] | None, precision: Precision | str | None
) -> tuple[_Ctx, XArray, Precision, tuple[int, ...]]:
    import array_api_compat

    xp = array_api_compat.array_namespace(x)
    prec = _resolve(xp, x, precision)
    device = array_api_compat.device(x)
    acc = _namespace_dtype(xp, prec.accumulator, argname="precision", device=device)
    c = _Ctx(xp, device, acc, prec.accumulator)
    ndim = len(x.shape)
    axes = tuple(range(ndim)) if axis is None else _axes_or_raise(axis, ndim)
    keep = tuple(i for i in range(ndim) if i not in axes)
    batch_shape = tuple(x.shape[i] for i in keep)
    n = int(np.prod([x.shape[i] for i in axes], dtype=np.int64))
    if n == 0:
        raise ValueError(f"x: the reduction over axis={axis!r} is empty (shape {tuple(x.shape)})")
    moved = xp.reshape(xp.permute_dims(x, keep + axes), (*batch_shape, n))
    return c, moved, prec, axes


def _kernel(algorithm: Any) -> Callable[..., Part]:
    if isinstance(algorithm, str) and algorithm in _KERNELS:
        return _KERNELS[algorithm]
    get_algorithm(algorithm)  # unknown names and non-callables: the usual error
    raise ValueError(
        f"algorithm: {algorithm!r} is a NumPy kernel; only {GENERIC_ALGORITHMS} run with "
        "another array library's operations. Pass np.asarray(x) to use it"
    )


def _dask_redirect(x: Any, what: str) -> bool:
    import array_api_compat

    if array_api_compat.is_dask_array(x):
        if what == "moments":
            raise TypeError("x: a dask array; use varstats.dask.moments (a lazy reduction)")
        return True
    return False


def moments(
    x: Any,
    /,
    *,
    axis: int | Sequence[int] | None = None,
    algorithm: Any = "two_pass",
    precision: Precision | str | None = None,
    **options: Any,
) -> ArrayMoments:
    """:func:`varstats.moments` for an array of another Array API library.

    Returns
    -------
    ArrayMoments
        ``mean`` and ``m2`` in the accumulator dtype of ``x``'s namespace, on its device.
    """
    _dask_redirect(x, "moments")
    kernel = _kernel(algorithm)
    c, xm, _, _ = _prepare(x, axis, precision)
    count, mean, m2 = kernel(c, xm, **options)
    return ArrayMoments(np.asarray(count, dtype=np.int64), mean, m2)


def _scale(c: _Ctx, a: XArray, k: Any) -> XArray:
    """``a * 2**k`` per slice (k broadcast against ``a``), rounded once into the accumulator."""
    xp = c.xp
    f64 = _namespace_dtype(xp, "float64", argname="rescale", device=c.device)
    # two exact power-of-two factors, so that each stays a normal float64
    k1 = np.clip(k, -1000, 1000)
    factors = [np.ldexp(1.0, k1), np.ldexp(1.0, k - k1)]
    out = xp.astype(a, f64)
    for f in factors:
        out = out * xp.asarray(f, dtype=f64, device=c.device)
    return xp.astype(out, c.acc)


def mean_var(
    x: Any,
    /,
    *,
    axis: int | Sequence[int] | None = None,
    correction: float = 0,
    algorithm: Any = "two_pass",
    precision: Precision | str | None = None,
    keepdims: bool = False,
    rescale: bool = False,
    **options: Any,
) -> tuple[Any, Any]:
    """:func:`varstats.mean_var` for an array of another Array API library.

    Both results are arrays of ``x``'s namespace, in the accumulator dtype, on
    ``x``'s device (0-d arrays for a full reduction, as the Array API returns).
    """
    if _dask_redirect(x, "mean_var"):
        from varstats.dask import mean_var as dask_mean_var

        if rescale:
            raise ValueError("rescale: not supported for dask arrays (it needs a second pass)")
        return dask_mean_var(
            x,
            axis=axis,
            correction=correction,
            algorithm=algorithm,
            precision=precision,
            keepdims=keepdims,
            **options,
        )
    kernel = _kernel(algorithm)
    c, xm, _, axes = _prepare(x, axis, precision)
    n = xm.shape[-1]
    _check_correction(correction, np.asarray([n]))
    xp = c.xp
    if not rescale:
        m = ArrayMoments(*kernel(c, xm, **options))
        mean, variance = m.mean, m.var(correction)
    else:
        # The rule of the NumPy path: exponents from the slice maxima (exact, on the host)
        mag = xp.abs(xm)
        finite = xp.where(xp.isfinite(mag), mag, xp.zeros_like(mag))
        # the maxima are exact in float32 unless the data are float64
        wide = "float64" if xm.dtype == getattr(xp, "float64", None) else "float32"
        amax = _to_numpy(xp.astype(xp.max(finite, axis=-1), getattr(xp, wide)), wide)
        k = rescale_exponents(np.asarray(amax, dtype=np.float64), n, c.acc_name)
        scaled = _scale(c, xm, -k[..., None])
        m = ArrayMoments(*kernel(c, scaled, **options))
        mean = _scale(c, m.mean, k)
        variance = _scale(c, m.var(correction), 2 * k)
    return _finish(xp, mean, axes, keepdims), _finish(xp, variance, axes, keepdims)


def _finish(xp: ModuleType, value: XArray, axes: tuple[int, ...], keepdims: bool) -> XArray:
    if keepdims:
        for ax in sorted(axes):
            value = xp.expand_dims(value, axis=ax)
    return value
