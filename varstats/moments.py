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

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from varstats.precision import as_dtype, round_to

__all__ = ["Moments", "merge_along"]

Array = npt.NDArray[Any]


def _weight(numerator: Array, denominator: Array, acc: np.dtype[Any]) -> Array:
    # Count ratios are exact rationals; round them once into the accumulator.
    # float64 division of integers < 2**53 rounds once; the second rounding to a
    # narrower accumulator is innocuous (53 >= 2p + 2 for p <= 24).
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.asarray(numerator, dtype=np.float64) / np.asarray(denominator, dtype=np.float64)
    return round_to(ratio, acc)


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
        n = na + nb
        acc = self.dtype
        with np.errstate(all="ignore"):
            delta = other.mean - self.mean
            mean = self.mean + delta * _weight(nb, n, acc)
            m2 = (self.m2 + other.m2) + (delta * delta) * _weight(na * nb, n, acc)
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
    ax = axis % max(len(m.shape), 1)
    count, mean, m2 = (np.moveaxis(np.asarray(a), ax, 0) for a in (m.count, m.mean, m.m2))
    if count.shape[0] == 0:
        return Moments.empty(count.shape[1:], m.dtype)
    if order == "sequential":
        state = Moments(count[0], mean[0], m2[0])
        for k in range(1, count.shape[0]):
            state = state.merge(Moments(count[k], mean[k], m2[k]))
        return state
    while count.shape[0] > 1:
        half = count.shape[0] // 2
        a = Moments(count[0 : 2 * half : 2], mean[0 : 2 * half : 2], m2[0 : 2 * half : 2])
        b = Moments(count[1 : 2 * half : 2], mean[1 : 2 * half : 2], m2[1 : 2 * half : 2])
        merged = a.merge(b)
        if count.shape[0] % 2:
            count = np.concatenate([merged.count, count[-1:]])
            mean = np.concatenate([merged.mean, mean[-1:]])
            m2 = np.concatenate([merged.m2, m2[-1:]])
        else:
            count, mean, m2 = merged.count, merged.mean, merged.m2
    return Moments(count[0], mean[0], m2[0])
