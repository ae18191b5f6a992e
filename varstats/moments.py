r"""The moments state every algorithm produces: ``(count, mean, m2)``.

:math:`M_2 = \sum_i (x_i - \bar x)^2` is the sum of squared deviations; the
variance with correction :math:`c` is :math:`M_2 / (n - c)`. Two states merge
with the update of Chan, Golub & LeVeque (1979, 1983):

.. math::
    n = n_a + n_b,\quad \delta = \bar x_b - \bar x_a,\quad
    \bar x = \bar x_a + \delta\,\frac{n_b}{n},\quad
    M_2 = M_{2,a} + M_{2,b} + \delta^2\,\frac{n_a n_b}{n}

This is how blocked, pairwise, distributed (SyncBatchNorm) and out-of-core
reductions combine partial results.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from varstats.array_api import (
    array_namespace,
    as_array,
    device,
    dtype_name,
    from_host,
    is_foreign_array,
    round_host,
    to_host,
    unstack_last,
)
from varstats.precision import as_dtype, round_to
from varstats.validation import check_correction, normalize_axes, warn_no_degrees_of_freedom

__all__ = ["Moments", "chan_update", "empty_like", "merge_along", "tree_reduce", "variance"]

Array = npt.NDArray[Any]


def _weight(numerator: Any, denominator: Any, like: Any) -> Any:
    # Count ratios are exact rationals; round them once into the accumulator.
    # float64 division of integers < 2**53 rounds once; the second rounding to a
    # narrower accumulator is innocuous (53 >= 2p + 2 for p <= 24).
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.divide(numerator, denominator, dtype=np.float64)
    return round_host(ratio, like=like)


def chan_update(
    na: Any, mean_a: Any, m2_a: Any, nb: Any, mean_b: Any, m2_b: Any
) -> tuple[Any, Any, Any]:
    r"""One Chan-Golub-LeVeque merge on raw arrays (both sides non-empty).

    .. math::
        \delta = \bar x_b - \bar x_a,\quad
        \bar x = \bar x_a + \delta\,\frac{n_b}{n},\quad
        M_2 = (M_{2,a} + M_{2,b}) + \delta^2\,\frac{n_a n_b}{n}

    Every operation rounds in the dtype of ``mean_a`` (an array of any namespace);
    the counts ``na`` and ``nb`` are host integers. This is the kernel behind
    :meth:`Moments.merge`, :func:`merge_along` and the blocked algorithms.
    """
    n = na + nb
    delta = mean_b - mean_a
    mean = mean_a + delta * _weight(nb, n, mean_a)
    m2 = (m2_a + m2_b) + (delta * delta) * _weight(np.multiply(na, nb, dtype=np.float64), n, mean_a)
    return n, mean, m2


def _chan_update_skipping_empty(
    na: Any, mean_a: Any, m2_a: Any, nb: Any, mean_b: Any, m2_b: Any
) -> tuple[Any, Any, Any]:
    """:func:`chan_update` where an empty side (count 0) contributes nothing.

    An empty state's mean and m2 are ignored, whatever they hold.
    """
    xp = array_namespace(mean_a)
    with np.errstate(all="ignore"):
        n, mean, m2 = chan_update(na, mean_a, m2_a, nb, mean_b, m2_b)
    a_empty = from_host(np.asarray(na) == 0, like=mean_a)
    b_empty = from_host(np.asarray(nb) == 0, like=mean_a)
    mean = xp.where(a_empty, mean_b, xp.where(b_empty, mean_a, mean))
    m2 = xp.where(a_empty, m2_b, xp.where(b_empty, m2_a, m2))
    return n, mean, m2


def tree_reduce(parts: tuple[Any, ...], combine: Callable[..., tuple[Any, ...]]) -> tuple[Any, ...]:
    """Reduce the last axis of ``parts`` by a balanced tree of ``combine`` calls.

    ``combine(*left, *right)`` takes the left and right halves of every part.
    Neighbours are combined first; with an odd count the last element is carried
    up one level unchanged. Parts may belong to different namespaces (host counts
    beside device means).
    """
    spaces = [array_namespace(p) for p in parts]
    while parts[0].shape[-1] > 1:
        m = parts[0].shape[-1]
        even = m - m % 2
        left = [p[..., 0:even:2] for p in parts]
        merged = combine(*left, *(p[..., 1:even:2] for p in parts))
        if m % 2:
            # the odd one out is carried up a level unchanged
            merged = tuple(
                xp.concat([_broadcast(c, q.shape, xp), p[..., -1:]], axis=-1)
                for c, q, p, xp in zip(merged, left, parts, spaces, strict=True)
            )
        parts = tuple(merged) if all(map(_is_array, merged)) else tuple(map(as_array, merged))
    return tuple(p[..., 0] for p in parts)


def _is_array(a: Any) -> bool:
    # NumPy arrays (the common case) need no as_array round trip
    return isinstance(a, np.ndarray)


def _broadcast(c: Any, shape: tuple[int, ...], xp: Any) -> Any:
    # combine may return a scalar count; broadcast only when the shape differs
    c = as_array(c)
    return c if tuple(c.shape) == tuple(shape) else xp.broadcast_to(c, shape)


@dataclass(frozen=True, eq=False)
class Moments:
    r"""Count, mean and sum of squared deviations of independent slices.

    Parameters
    ----------
    count : array_like of int
        Number of values in each slice (broadcastable against ``mean``), a NumPy
        array: counts are known from the shapes, whatever library holds the data.
    mean : array
        Mean of each slice, in the accumulator dtype: a NumPy array, or an array of
        another Array API library (a ``torch.Tensor``, ...) on its own device.
    m2 : array
        :math:`M_2 = \sum (x_i - \bar x)^2` of each slice, same namespace, dtype and
        shape as ``mean``.

    Notes
    -----
    A state with ``count == 0`` is empty; merging with it is the identity.
    ``mean`` and ``m2`` of an empty state are ignored.
    """

    count: Array
    mean: Any
    m2: Any

    def __post_init__(self) -> None:
        foreign = is_foreign_array(self.mean)
        for name, value in (("mean", self.mean), ("m2", self.m2)):
            if isinstance(value, np.ma.MaskedArray):
                raise TypeError(f"{name}: a masked array; varstats does not honour masks")
            if is_foreign_array(value) != foreign:  # np.asarray of a tensor may fail or copy
                raise TypeError(f"{name}: mean and m2 must be arrays of the same library")
        mean = self.mean if foreign else np.asarray(self.mean)
        m2 = self.m2 if foreign else np.asarray(self.m2)
        if foreign:
            if dtype_name(array_namespace(mean), mean.dtype) is None:
                raise ValueError(f"mean: unsupported dtype {mean.dtype}")
        else:
            as_dtype(mean.dtype, name="mean")
        if m2.dtype != mean.dtype or tuple(m2.shape) != tuple(mean.shape):
            raise ValueError(
                f"m2: dtype/shape {m2.dtype}{tuple(m2.shape)} differ from mean's "
                f"{mean.dtype}{tuple(mean.shape)}"
            )
        count = np.asarray(self.count)
        if count.dtype.kind not in "iu":
            raise TypeError(f"count: expected integers, got {count.dtype}")
        if np.any(count < 0) or (count.dtype.kind == "u" and np.any(count > 2**63 - 1)):
            # (the upper check keeps a uint64 count from wrapping to a negative int64)
            raise ValueError("count: must be non-negative and fit in int64")
        shape = tuple(mean.shape)
        try:
            count = np.broadcast_to(count.astype(np.int64), shape)
        except ValueError:
            raise ValueError(
                f"count: shape {count.shape} does not broadcast to mean's shape {shape}"
            ) from None
        object.__setattr__(self, "count", count)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "m2", m2)

    @classmethod
    def _unchecked(cls, count: Any, mean: Any, m2: Any) -> Self:
        """Moments a kernel of this package built, without :meth:`__post_init__`'s checks.

        Those checks are for a caller's input; the kernels guarantee what they test
        (``mean`` and ``m2`` arrays of one supported dtype and shape, ``count`` a
        non-negative int or int64 array broadcastable to them), and the checks cost
        more than the arithmetic on short inputs. ``count`` is broadcast read-only, as
        :meth:`__post_init__` does.
        """
        mean = as_array(mean)
        m = object.__new__(cls)
        object.__setattr__(m, "count", _counts(count, tuple(mean.shape)))
        object.__setattr__(m, "mean", mean)
        object.__setattr__(m, "m2", as_array(m2))
        return m

    @property
    def dtype(self) -> Any:
        """The accumulator dtype ``mean`` and ``m2`` are rounded in (the namespace's dtype)."""
        return self.mean.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.mean.shape)

    @classmethod
    def empty(cls, shape: tuple[int, ...], dtype: Any) -> Moments:
        """The identity of :meth:`merge`: ``count == 0`` everywhere (NumPy arrays)."""
        dt = as_dtype(dtype)
        zeros = np.zeros(shape, dtype=dt)
        return cls(np.zeros(shape, dtype=np.int64), zeros, zeros.copy())

    def merge(self, other: Moments, /) -> Moments:
        r"""Combine with the moments of disjoint data (Chan, Golub & LeVeque).

        .. math::
            \bar x = \bar x_a + \delta\,\frac{n_b}{n},\qquad
            M_2 = (M_{2,a} + M_{2,b}) + \delta^2 \cdot \frac{n_a n_b}{n}

        Every operation rounds in the accumulator dtype; the count ratios
        :math:`n_b/n` and :math:`n_a n_b / n` are exact rationals rounded once.
        The merged :math:`M_2` is a sum of non-negative terms, so merging never
        creates a negative variance.

        References
        ----------
        .. [1] T. F. Chan, G. H. Golub, R. J. LeVeque, "Algorithms for computing the
               sample variance: analysis and recommendations", The American
               Statistician 37(3), 1983, eq. (2.1).
        """
        if not isinstance(other, Moments):
            raise TypeError(f"other: expected Moments, got {type(other).__name__}")
        if other.dtype != self.dtype:
            raise ValueError(f"other: accumulator {other.dtype} differs from {self.dtype}")
        xp = array_namespace(self.mean)
        shape = tuple(np.broadcast_shapes(self.shape, other.shape))
        n, mean, m2 = _chan_update_skipping_empty(
            self.count, self.mean, self.m2, other.count, other.mean, other.m2
        )
        return Moments(
            np.broadcast_to(n, shape),
            xp.astype(xp.broadcast_to(mean, shape), self.dtype),
            xp.astype(xp.broadcast_to(m2, shape), self.dtype),
        )

    def var(self, correction: float = 0) -> Any:
        r"""Variance :math:`M_2 / (n - c)`, rounded in the accumulator dtype.

        Parameters
        ----------
        correction : float
            Degrees-of-freedom correction :math:`c` (``ddof``); 1 is Bessel's.
            Where :math:`n - c \le 0` (an empty state included) the variance is NaN,
            with one ``RuntimeWarning``, as the Array API standard specifies.

        Returns
        -------
        array
            Of the namespace of ``m2``, on its device.
        """
        return _variance(self, check_correction(correction), correction)

    def to_numpy(self) -> Moments:
        """The same moments as NumPy arrays, bit for bit (bfloat16 via ``ml_dtypes``)."""
        return Moments(self.count, to_host(self.mean), to_host(self.m2))


def _counts(count: Any, shape: tuple[int, ...]) -> Array:
    """``count`` (an int or an int64 array) as a read-only int64 array of ``shape``."""
    if isinstance(count, np.ndarray) and count.shape == shape:
        return count
    if isinstance(count, np.ndarray) and count.ndim:
        return np.broadcast_to(count, shape)
    # one count for every slice: a zero-stride view of a single value, as broadcast_to
    # gives, built directly (broadcast_to's Python checks cost more than the kernel)
    one = np.array([count], dtype=np.int64)
    one.flags.writeable = False
    return np.ndarray(shape, np.int64, one, 0, (0,) * len(shape))


def variance(m: Moments, c: float, correction: Any, /) -> Any:
    r""":meth:`Moments.var` with the correction already checked: ``c`` is
    :func:`~varstats.validation.check_correction` of ``correction`` (named in the warning).

    The public reductions check their arguments once, on entry, and call this.
    """
    if type(m).var is not Moments.var:  # a subclass divides its own way (dot2's double word)
        return m.var(correction)
    return _variance(m, c, correction)


def _variance(m: Moments, c: float, correction: Any) -> Any:
    # Moments.var's arithmetic, whatever the type of m
    count = m.count
    if count.size and not any(count.strides):  # one count for every slice: one divisor
        n = int(count[(0,) * count.ndim])
        if n - c >= 1:
            m2 = m.m2
            divisor = _divisor(n, c, dtype_name(array_namespace(m2), m2.dtype))
            # M2 / d with d >= 1 cannot overflow or divide by zero: no warning to silence
            # (an underflow is not one NumPy reports by default)
            return as_array(m2 / from_host(divisor, like=m2))
    undefined = warn_no_degrees_of_freedom(correction, count)
    return _divide_m2(m, c, undefined)


@functools.lru_cache(maxsize=64)
def _divisor(n: int, c: float, name: str | None) -> Any:
    # n - c rounded once into the accumulator: the same few values, call after call
    return round_to(np.float64(n) - c, name)


def _divide_m2(m: Moments, c: float, undefined: bool) -> Any:
    # M2 / (n - c) with n - c rounded once into the accumulator; NaN where n - c <= 0
    xp = array_namespace(m.m2)
    name = dtype_name(xp, m.dtype)
    with np.errstate(all="ignore"):
        divisor = round_to(m.count.astype(np.float64) - c, name)
        variance = as_array(m.m2 / from_host(divisor, like=m.m2))
        if undefined:
            nan = from_host(round_to(np.full(variance.shape, np.nan), name), like=variance)
            variance = xp.where(from_host(m.count - c <= 0, like=variance), nan, variance)
    return variance


def empty_like(x: Any, shape: tuple[int, ...], dtype: Any, /) -> Moments:
    """The identity of :meth:`Moments.merge` (``count == 0``) in ``x``'s namespace and device.

    ``dtype`` is a dtype of that namespace. :meth:`Moments.var` of it is NaN.
    """
    xp = array_namespace(x)
    zeros = xp.zeros(shape, dtype=dtype, device=device(x))
    return Moments._unchecked(np.zeros(shape, dtype=np.int64), zeros, xp.zeros_like(zeros))


def merge_along(m: Moments, /, axis: int = -1, *, order: str = "pairwise") -> Moments:
    """Merge the moments of a batch of parts along ``axis`` into one state.

    ``order="pairwise"`` merges neighbours in a balanced tree (an odd part is
    carried up a level unchanged); ``order="sequential"`` merges left to right,
    like a streaming update over mini-batches. Empty parts (count 0) are skipped
    without changing the order of the others.
    """
    if not isinstance(m, Moments):
        raise TypeError(f"m: expected Moments, got {type(m).__name__}")
    if order not in ("pairwise", "sequential"):
        raise ValueError(f"order: expected 'pairwise' or 'sequential', got {order!r}")
    if not m.shape:
        raise ValueError("m: needs at least one axis of parts to merge")
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer):
        raise TypeError(f"axis: expected one int, got {axis!r}")
    (ax,) = normalize_axes(axis, len(m.shape))
    xp = array_namespace(m.mean)
    count = np.moveaxis(m.count, ax, -1)
    mean, m2 = (xp.moveaxis(a, ax, -1) for a in (m.mean, m.m2))
    if count.shape[-1] == 0:
        return empty_like(m.mean, tuple(count.shape[:-1]), m.dtype)
    # rare: a part without values must be skipped, not merged (its mean is arbitrary)
    update = chan_update if np.all(count) else _chan_update_skipping_empty
    with np.errstate(all="ignore"):
        if order == "pairwise":
            n, mu, s = tree_reduce((count, mean, m2), update)
        elif update is chan_update:
            # chan_update step by step, with every count ratio computed up front:
            # they depend on the counts alone, which leaves six flops a step
            total = np.cumsum(count, axis=-1)
            w_b = _weight(count, total, mean)
            w_ab = _weight(np.multiply(total - count, count, dtype=np.float64), total, mean)
            means, m2s, wb, wab = (unstack_last(a) for a in (mean, m2, w_b, w_ab))
            mu, s = means[0], m2s[0]
            for k in range(1, count.shape[-1]):
                delta = means[k] - mu
                mu = mu + delta * wb[k]
                s = (s + m2s[k]) + (delta * delta) * wab[k]
            n = total[..., -1]
        else:
            n, mu, s = count[..., 0], mean[..., 0], m2[..., 0]
            for k in range(1, count.shape[-1]):
                n, mu, s = update(n, mu, s, count[..., k], mean[..., k], m2[..., k])
    return Moments._unchecked(n, mu, s)
