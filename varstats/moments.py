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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from varstats.precision import as_dtype, round_to

__all__ = ["Moments", "chan_update", "merge_along", "tree_reduce"]

Array = npt.NDArray[Any]


def _weight(numerator: Any, denominator: Any, acc: np.dtype[Any]) -> Array:
    # Count ratios are exact rationals; round them once into the accumulator.
    # float64 division of integers < 2**53 rounds once; the second rounding to a
    # narrower accumulator is innocuous (53 >= 2p + 2 for p <= 24).
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.divide(numerator, denominator, dtype=np.float64)
    return ratio if acc == np.float64 else round_to(ratio, acc)


def chan_update(
    na: Any, mean_a: Array, m2_a: Array, nb: Any, mean_b: Array, m2_b: Array
) -> tuple[Any, Array, Array]:
    r"""One Chan-Golub-LeVeque merge on raw arrays (both sides non-empty).

    .. math::
        \delta = \bar x_b - \bar x_a,\quad
        \bar x = \bar x_a + \delta\,\frac{n_b}{n},\quad
        M_2 = (M_{2,a} + M_{2,b}) + \delta^2\,\frac{n_a n_b}{n}

    Every operation rounds in the dtype of ``mean_a``. This is the kernel behind
    :meth:`Moments.merge`, :func:`merge_along` and the blocked algorithms.
    """
    acc = mean_a.dtype
    n = na + nb
    delta = mean_b - mean_a
    mean = mean_a + delta * _weight(nb, n, acc)
    m2 = (m2_a + m2_b) + (delta * delta) * _weight(np.multiply(na, nb, dtype=np.float64), n, acc)
    return n, mean, m2


def tree_reduce(
    parts: tuple[Array, ...], combine: Callable[..., tuple[Array, ...]]
) -> tuple[Array, ...]:
    """Reduce the last axis of ``parts`` by a balanced tree of ``combine`` calls.

    ``combine(*left, *right)`` takes the left and right halves of every part.
    Neighbours are combined first; with an odd count the last element is carried
    up one level unchanged.
    """
    while parts[0].shape[-1] > 1:
        m = parts[0].shape[-1]
        even = m - m % 2
        merged = combine(*(p[..., 0:even:2] for p in parts), *(p[..., 1:even:2] for p in parts))
        if m % 2:
            merged = tuple(
                np.concatenate([np.broadcast_to(c, p[..., 0:even:2].shape), p[..., -1:]], axis=-1)
                for c, p in zip(merged, parts, strict=True)
            )
        parts = tuple(np.asarray(c) for c in merged)
    return tuple(p[..., 0] for p in parts)


@dataclass(frozen=True, eq=False)
class Moments:
    r"""Count, mean and sum of squared deviations of independent slices.

    Parameters
    ----------
    count : array_like of int
        Number of values in each slice (broadcastable against ``mean``).
    mean : ndarray
        Mean of each slice, in the accumulator dtype.
    m2 : ndarray
        :math:`M_2 = \sum (x_i - \bar x)^2` of each slice, same dtype and shape as ``mean``.

    Notes
    -----
    A state with ``count == 0`` is empty; merging with it is the identity.
    ``mean`` and ``m2`` of an empty state are ignored.
    """

    count: Array
    mean: Array
    m2: Array

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean)
        m2 = np.asarray(self.m2)
        as_dtype(mean.dtype, name="mean")
        if m2.dtype != mean.dtype or m2.shape != mean.shape:
            raise ValueError(
                f"m2: dtype/shape {m2.dtype}{m2.shape} differ from mean's {mean.dtype}{mean.shape}"
            )
        count = np.asarray(self.count)
        if count.dtype.kind not in "iu":
            raise TypeError(f"count: expected integers, got {count.dtype}")
        if np.any(count < 0):
            raise ValueError("count: must be non-negative")
        object.__setattr__(self, "count", np.broadcast_to(count.astype(np.int64), mean.shape))
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "m2", m2)

    @property
    def dtype(self) -> np.dtype[Any]:
        """The accumulator dtype ``mean`` and ``m2`` are rounded in."""
        return self.mean.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.mean.shape)

    @classmethod
    def empty(cls, shape: tuple[int, ...], dtype: Any) -> Moments:
        """The identity of :meth:`merge`: ``count == 0`` everywhere."""
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
        shape = np.broadcast_shapes(self.shape, other.shape)
        na, nb = self.count, other.count
        acc = self.dtype
        with np.errstate(all="ignore"):
            n, mean, m2 = chan_update(na, self.mean, self.m2, nb, other.mean, other.m2)
        # An empty side contributes nothing, whatever its mean and m2 hold.
        mean = np.where(na == 0, other.mean, np.where(nb == 0, self.mean, mean))
        m2 = np.where(na == 0, other.m2, np.where(nb == 0, self.m2, m2))
        return Moments(
            np.broadcast_to(n, shape),
            np.broadcast_to(mean, shape).astype(acc),
            np.broadcast_to(m2, shape).astype(acc),
        )

    def var(self, correction: float = 0) -> Array:
        r"""Variance :math:`M_2 / (n - c)`, rounded in the accumulator dtype.

        Parameters
        ----------
        correction : float
            Degrees-of-freedom correction :math:`c` (``ddof``); 1 is Bessel's.
            Must be smaller than every ``count``.
        """
        c = _check_correction(correction, self.count)
        with np.errstate(all="ignore"):
            divisor = round_to(self.count.astype(np.float64) - c, self.dtype)
            return np.asarray(self.m2 / divisor)


def _check_correction(correction: Any, count: Array) -> float:
    real = (int, float, np.integer, np.floating)
    if isinstance(correction, bool) or not isinstance(correction, real):
        raise TypeError(f"correction: expected a real number, got {type(correction).__name__}")
    c = float(correction)
    if not np.isfinite(c) or c < 0:
        raise ValueError(f"correction: must be a finite number >= 0, got {correction!r}")
    if np.size(count) and c >= np.min(count):
        raise ValueError(
            f"correction: {correction!r} >= the number of values reduced ({int(np.min(count))}); "
            "the variance is undefined"
        )
    return c


def merge_along(m: Moments, /, axis: int = -1, *, order: str = "pairwise") -> Moments:
    """Merge the moments of a batch of parts along ``axis`` into one state.

    ``order="pairwise"`` merges neighbours in a balanced tree (an odd part is
    carried up a level unchanged); ``order="sequential"`` merges left to right,
    like a streaming update over mini-batches.
    """
    if order not in ("pairwise", "sequential"):
        raise ValueError(f"order: expected 'pairwise' or 'sequential', got {order!r}")
    if not m.shape:
        raise ValueError("m: needs at least one axis of parts to merge")
    ax = axis % len(m.shape)
    count, mean, m2 = (np.moveaxis(np.asarray(a), ax, -1) for a in (m.count, m.mean, m.m2))
    if count.shape[-1] == 0:
        return Moments.empty(count.shape[:-1], m.dtype)
    if np.any(count == 0):  # rare: let Moments.merge skip the empty parts
        parts = [Moments(count[..., k], mean[..., k], m2[..., k]) for k in range(count.shape[-1])]
        state = parts[0]
        for part in parts[1:]:
            state = state.merge(part)
        return state
    with np.errstate(all="ignore"):
        if order == "sequential":
            # chan_update step by step, with every count ratio computed up front:
            # they depend on the counts alone, which leaves six flops a step
            total = np.cumsum(count, axis=-1)
            w_b = _weight(count, total, m.dtype)
            w_ab = _weight(np.multiply(total - count, count, dtype=np.float64), total, m.dtype)
            steps: list[Any] = [np.moveaxis(a, -1, 0) for a in (mean, m2, w_b, w_ab)]
            if count.ndim == 1 and m.dtype == np.float64:
                # one slice: Python floats round exactly as binary64 does, and cost a
                # tenth of a NumPy scalar operation
                steps = [a.tolist() for a in steps]
            means, m2s, wb, wab = steps
            mu, s = means[0], m2s[0]
            for k in range(1, count.shape[-1]):
                delta = means[k] - mu
                mu = mu + delta * wb[k]
                s = (s + m2s[k]) + (delta * delta) * wab[k]
            n = total[..., -1]
        else:
            n, mu, s = tree_reduce((count, mean, m2), chan_update)
    return Moments(n, np.asarray(mu, dtype=m.dtype), np.asarray(s, dtype=m.dtype))
