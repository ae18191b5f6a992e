r"""JAX/XLA CPU reductions as Flax's normalization layers run them, emulated.

Flax (``flax/linen/normalization.py``, ``_compute_stats``) computes the moments
with ``jnp.mean``; XLA's CPU compiler (jaxlib 0.10.2) turns them into:

* ``mean = fl(sum * fl(1/n))``: the algebraic simplifier replaces the division by
  the constant ``n`` by a multiplication with its rounded reciprocal.
* the sum over **one** axis of more than 32 values is rewritten by the tree
  reduction pass into a ``reduce-window`` of size and stride 32, the input padded
  with zeros on both sides (``pad // 2`` low, the rest high), each window summed
  left to right, then the at most 32 window sums summed left to right. Sums over
  several axes (BatchNorm over N, H, W; GroupNorm) stay one loop, left to right
  in row-major order. Both rules are read off ``jax.jit(...).lower(x).compile()
  .as_text()`` and hold bit for bit for inputs of fewer than 4096 elements; from
  4096 on XLA hands the reduction to a YNNPACK fusion, and a reduction whose minor
  axis is reduced together with others (Flax's GroupNorm) is vectorized; both
  orders are not modelled (see ``docs/frameworks.md`` for the measured differences).

Registered kernels (see :mod:`varstats.algorithms`):

``"xla_cpu_naive"`` / ``"xla_cpu_naive_loop"``
    ``use_fast_variance=True`` (Flax's default):
    :math:`\mu = \operatorname{mean}(x)`,
    :math:`\sigma^2 = \operatorname{mean}(x^2) - \mu^2` (not clamped here: the
    preset clamps), with the windowed (one axis) or loop (several axes) sum.
``"xla_cpu_two_pass"`` / ``"xla_cpu_two_pass_loop"``
    ``use_fast_variance=False``: :math:`\sigma^2 = \operatorname{mean}((x-\mu)^2)`.

The returned :class:`~varstats.moments.Moments` carry the rounded variance (see
:func:`varstats.framework_stats.moments_from_mean_var`).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from varstats.framework_stats import moments_from_mean_var
from varstats.moments import Moments

__all__ = [
    "xla_cpu_naive",
    "xla_cpu_naive_loop",
    "xla_cpu_sum",
    "xla_cpu_two_pass",
    "xla_cpu_two_pass_loop",
]

Array = npt.NDArray[Any]

_WINDOW: Final = 32  # TreeReductionRewriter's reduce-window size on CPU


def _sequential(a: Array) -> Array:
    if a.shape[-1] == 0:
        return np.zeros(a.shape[:-1], a.dtype)
    return np.asarray(np.add.accumulate(a, axis=-1)[..., -1])  # strictly left to right


def xla_cpu_sum(a: Array, /, *, windowed: bool = True) -> Array:
    """XLA CPU's sum over the last axis, rounded in ``a.dtype``.

    ``windowed=True``: the reduction of one axis (windows of 32, padded on both
    sides, recursively); ``False``: a reduction over several axes (one loop).
    """
    n = a.shape[-1]
    if not windowed or n <= _WINDOW:
        return _sequential(a)
    k = -(-n // _WINDOW)
    pad = k * _WINDOW - n
    low = pad // 2  # the rewriter pads symmetrically, the odd zero at the high end

    def zeros(m: int) -> Array:
        return np.zeros((*a.shape[:-1], m), a.dtype)

    padded = np.concatenate([zeros(low), a, zeros(pad - low)], axis=-1)
    return xla_cpu_sum(_sequential(padded.reshape(*a.shape[:-1], k, _WINDOW)), windowed=True)


def _mean(a: Array, n: int, windowed: bool) -> Array:
    # x / n with a constant n becomes x * (1/n): XLA's algebraic simplifier
    return np.asarray(xla_cpu_sum(a, windowed=windowed) * (a.dtype.type(1) / a.dtype.type(n)))


def _fast_variance(x: Array, acc: np.dtype[Any], windowed: bool) -> Moments:
    xa = np.asarray(x).astype(acc)
    n = xa.shape[-1]
    with np.errstate(all="ignore"):
        mu = _mean(xa, n, windowed)
        mu2 = _mean(xa * xa, n, windowed)
        var = mu2 - mu * mu  # _compute_stats: mu2 - _abs_sq(mu); clamped by the layer
    return moments_from_mean_var(mu, var, n, acc=acc)


def _two_pass(x: Array, acc: np.dtype[Any], windowed: bool) -> Moments:
    xa = np.asarray(x).astype(acc)
    n = xa.shape[-1]
    with np.errstate(all="ignore"):
        mu = _mean(xa, n, windowed)
        dev = xa - mu[..., None]
        var = _mean(dev * dev, n, windowed)
    return moments_from_mean_var(mu, var, n, acc=acc)


def xla_cpu_naive(x: Array, /, *, acc: np.dtype[Any]) -> Moments:
    r"""Flax ``use_fast_variance=True`` over one axis (LayerNorm): :math:`E[x^2] - E[x]^2`.

    .. math::
        \mu = \operatorname{fl}(S(x)\,\operatorname{fl}(1/n)),\quad
        \sigma^2 = \operatorname{fl}(\operatorname{fl}(S(x^2)\,\operatorname{fl}(1/n))
                   - \operatorname{fl}(\mu^2))

    with :math:`S` :func:`xla_cpu_sum` (windowed). The subtraction cancels once
    :math:`|\mu| \gg \sigma` (relative error about :math:`u\,\mu^2/\sigma^2`).

    References
    ----------
    .. [1] T. F. Chan, G. H. Golub, R. J. LeVeque, "Algorithms for computing the
           sample variance: analysis and recommendations", Am. Stat. 37(3), 1983.
    """
    return _fast_variance(x, np.dtype(acc), windowed=True)


def xla_cpu_naive_loop(x: Array, /, *, acc: np.dtype[Any]) -> Moments:
    """:func:`xla_cpu_naive` for a reduction over several axes (BatchNorm, GroupNorm): one loop."""
    return _fast_variance(x, np.dtype(acc), windowed=False)


def xla_cpu_two_pass(x: Array, /, *, acc: np.dtype[Any]) -> Moments:
    r"""Flax ``use_fast_variance=False`` over one axis: :math:`\operatorname{mean}((x-\mu)^2)`."""
    return _two_pass(x, np.dtype(acc), windowed=True)


def xla_cpu_two_pass_loop(x: Array, /, *, acc: np.dtype[Any]) -> Moments:
    """:func:`xla_cpu_two_pass` for a reduction over several axes: one loop."""
    return _two_pass(x, np.dtype(acc), windowed=False)
