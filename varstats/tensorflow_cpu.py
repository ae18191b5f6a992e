r"""TensorFlow CPU moments (Eigen kernels), emulated bit for bit.

Two kernels, registered in :mod:`varstats.algorithms`:

``"eigen_cpu_fused_batch_norm"``
    ``FusedBatchNorm<CPUDevice, T, U, true>`` of
    ``tensorflow/core/kernels/fused_batch_norm_op.cc``: the input viewed as
    ``(rest_size, depth)``, each channel summed over the rows left to right in
    ``U`` (float), ``mean = sum * rest_size_inv`` with
    ``rest_size_inv = fl(1/n)``, then
    ``variance = sum((x - mean)^2) * rest_size_inv``.
``"eigen_cpu_moments"``
    ``tf.nn.moments`` (``tensorflow/python/ops/nn_impl.py``): ``reduce_mean``
    (Eigen's ``MeanReducer``: a left-to-right sum divided by ``n``) of ``x``, then
    of ``squared_difference(x, mean)``. Used by Keras 3 (TensorFlow backend,
    ``keras/src/backend/tensorflow/nn.py``, ``moments``).

Both hold for the Eigen kernels that run with ``TF_ENABLE_ONEDNN_OPTS=0``; with
oneDNN on (the x86 default), ``FusedBatchNormV3`` runs oneDNN's batch norm and
Eigen reductions over more channels than one SIMD register holds are vectorized
in another order (measured differences in ``docs/frameworks.md``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from varstats.framework_stats import moments_from_mean_var
from varstats.moments import Moments

__all__ = [
    "eigen_cpu_fused_batch_norm",
    "eigen_cpu_fused_batch_norm_mean_var",
    "eigen_cpu_moments",
    "eigen_cpu_moments_mean_var",
]

Array = npt.NDArray[Any]


def _sequential(a: Array) -> Array:
    return np.asarray(np.add.accumulate(a, axis=-1)[..., -1])  # strictly left to right


def eigen_cpu_fused_batch_norm_mean_var(x: Array, /, *, acc: np.dtype[Any]) -> tuple[Array, Array]:
    """FusedBatchNorm's ``(batch_mean, batch_variance)`` (biased), rounded in ``acc``."""
    acc = np.dtype(acc)
    xa = np.asarray(x).astype(acc)
    n = xa.shape[-1]
    with np.errstate(all="ignore"):
        # U rest_size_inv = static_cast<U>(1.0f / static_cast<U>(rest_size))
        inv = acc.type(np.float32(1.0) / np.float32(n))
        mean = _sequential(xa) * inv
        dev = xa - mean[..., None]
        var = _sequential(dev * dev) * inv
    return np.asarray(mean, acc), np.asarray(var, acc)


def eigen_cpu_moments_mean_var(x: Array, /, *, acc: np.dtype[Any]) -> tuple[Array, Array]:
    """``tf.nn.moments``' ``(mean, variance)``, rounded in ``acc``."""
    acc = np.dtype(acc)
    xa = np.asarray(x).astype(acc)
    n = acc.type(xa.shape[-1])
    with np.errstate(all="ignore"):
        mean = _sequential(xa) / n  # MeanReducer: sum, then one division by the count
        dev = xa - mean[..., None]
        var = _sequential(dev * dev) / n
    return np.asarray(mean, acc), np.asarray(var, acc)


def eigen_cpu_fused_batch_norm(x: Array, /, *, acc: np.dtype[Any]) -> Moments:
    r"""TensorFlow's CPU ``FusedBatchNorm`` statistics: sequential two-pass, times ``fl(1/n)``.

    .. math::
        \bar x = \operatorname{fl}\big(S(x)\cdot\operatorname{fl}(1/n)\big),\quad
        \sigma^2 = \operatorname{fl}\big(S((x - \bar x)^2)\cdot\operatorname{fl}(1/n)\big)

    with :math:`S` a left-to-right sum in ``acc``. The two-pass error bound holds
    (Chan, Golub & LeVeque 1983): relative error of :math:`\sigma^2` about
    :math:`n u + n^2\kappa^2 u^2`.
    """
    mean, var = eigen_cpu_fused_batch_norm_mean_var(x, acc=acc)
    return moments_from_mean_var(mean, var, np.asarray(x).shape[-1], acc=np.dtype(acc))


def eigen_cpu_moments(x: Array, /, *, acc: np.dtype[Any]) -> Moments:
    r"""``tf.nn.moments`` on CPU: sequential two-pass, each mean a sum divided by :math:`n`."""
    mean, var = eigen_cpu_moments_mean_var(x, acc=acc)
    return moments_from_mean_var(mean, var, np.asarray(x).shape[-1], acc=np.dtype(acc))
