r"""TensorFlow CPU moments (Eigen kernels), emulated bit for bit.

Two kernels, registered in :mod:`varstats.algorithms`:

``"eigen_cpu_fused_batch_norm"``
    ``FusedBatchNorm<CPUDevice, T, U, true>`` of
    ``tensorflow/core/kernels/fused_batch_norm_op.cc``: the input viewed as
    ``(rest_size, depth)``, each channel summed over the rows in ``U`` (float) by
    :func:`eigen_cpu_column_sum`, ``mean = sum * rest_size_inv`` with
    ``rest_size_inv = fl(1/n)``, then
    ``variance = sum((x - mean)^2) * rest_size_inv``.
``"eigen_cpu_moments"``
    ``tf.nn.moments`` (``tensorflow/python/ops/nn_impl.py``): ``reduce_mean``
    (Eigen's ``MeanReducer``: :func:`eigen_cpu_column_sum` divided by ``n``) of
    ``x``, then of ``squared_difference(x, mean)``, over the leading axes of an
    NHWC tensor (the reduced axes outermost, as for BatchNorm). Used by Keras 3 (TensorFlow backend,
    ``keras/src/backend/tensorflow/nn.py``, ``moments``).

Both hold for the Eigen kernels that run with ``TF_ENABLE_ONEDNN_OPTS=0`` when
the reduced axes are the outer ones (NHWC BatchNorm statistics); with oneDNN on
(the x86 default) ``FusedBatchNormV3`` runs oneDNN's batch norm instead, and a
reduction over the innermost axis (LayerNorm) takes Eigen's tree reducer; both
orders are not modelled (measured differences in ``docs/frameworks.md``).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from varstats.framework_stats import moments_from_mean_var
from varstats.moments import Moments

__all__ = [
    "eigen_cpu_column_sum",
    "eigen_cpu_fused_batch_norm",
    "eigen_cpu_fused_batch_norm_mean_var",
    "eigen_cpu_moments",
    "eigen_cpu_moments_mean_var",
]

Array = npt.NDArray[Any]


_UNROLL: Final = 4  # accumulators of InnerMostDimPreserver<0, ..., true>
_UNROLL_FROM: Final = 16  # ... used once the reduced size reaches 16


def _sequential(a: Array) -> Array:
    return np.asarray(np.add.accumulate(a, axis=-1)[..., -1])  # strictly left to right


def eigen_cpu_column_sum(a: Array, /) -> Array:
    """Eigen's CPU sum over the outer dimension of a row-major ``(n, depth)`` tensor.

    ``a`` holds the ``depth`` preserved values first and the ``n`` reduced ones
    last (``a.shape == (..., n)``; the leading axes, flattened, are ``depth``).
    Channels that fill whole AVX packets (8 floats, 4 doubles) are reduced by
    ``InnerMostDimPreserver<0, Self, Op, true>`` (``TensorReduction.h``): for
    ``n >= 16`` four accumulators take rows ``4j, 4j+1, 4j+2, 4j+3``, are added as
    ``((a0 + a1) + a2) + a3``, and the ``n mod 4`` last rows follow one by one;
    for ``n < 16`` one accumulator. The remaining ``depth mod lanes`` channels take
    the scalar path: one left-to-right sum.
    """
    batch, n = a.shape[:-1], a.shape[-1]
    flat = a.reshape(-1, n)
    depth = flat.shape[0]
    lanes = max(1, 32 // a.dtype.itemsize)
    vec = depth // lanes * lanes
    out = _sequential(flat)
    if vec and n >= _UNROLL_FROM:
        head = n // _UNROLL * _UNROLL
        block = flat[:vec]
        parts = [_sequential(block[:, k:head:_UNROLL]) for k in range(_UNROLL)]
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        for j in range(head, n):
            total = total + block[:, j]
        out[:vec] = total
    return out.reshape(batch)


def eigen_cpu_fused_batch_norm_mean_var(x: Array, /, *, acc: np.dtype[Any]) -> tuple[Array, Array]:
    """FusedBatchNorm's ``(batch_mean, batch_variance)`` (biased), rounded in ``acc``."""
    acc = np.dtype(acc)
    xa = np.asarray(x).astype(acc)
    n = xa.shape[-1]
    with np.errstate(all="ignore"):
        # U rest_size_inv = static_cast<U>(1.0f / static_cast<U>(rest_size))
        inv = acc.type(np.float32(1.0) / np.float32(n))
        mean = eigen_cpu_column_sum(xa) * inv
        dev = xa - mean[..., None]
        var = eigen_cpu_column_sum(dev * dev) * inv
    return np.asarray(mean, acc), np.asarray(var, acc)


def eigen_cpu_moments_mean_var(x: Array, /, *, acc: np.dtype[Any]) -> tuple[Array, Array]:
    """``tf.nn.moments``' ``(mean, variance)``, rounded in ``acc``."""
    acc = np.dtype(acc)
    xa = np.asarray(x).astype(acc)
    n = acc.type(xa.shape[-1])
    with np.errstate(all="ignore"):
        mean = eigen_cpu_column_sum(xa) / n  # MeanReducer: sum, then one division by n
        dev = xa - mean[..., None]
        var = eigen_cpu_column_sum(dev * dev) / n
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
