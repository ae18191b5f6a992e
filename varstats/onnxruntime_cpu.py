r"""ONNX Runtime CPU moments, emulated bit for bit.

``"ort_cpu_layer_norm"`` (registered in :mod:`varstats.algorithms`) is the
``ComputeJob`` of ``onnxruntime/core/providers/cpu/nn/layer_norm_impl.cc``
(LayerNormalization, CPU execution provider), for float and double rows:

.. math::
    s = \sum_h x_h,\quad q = \sum_h x_h x_h \ \text{(one loop, left to right, in T)},\quad
    \mu = s / n,\quad \sigma^2 = q / n - \mu\,\mu

the textbook one-pass formula, unclamped: the kernel then takes
``sqrt(sigma^2 + epsilon)``, which is NaN once cancellation makes
:math:`\sigma^2 < -\epsilon` (onnxruntime issues 28463 and 21935). The output is
``(x - mean) / std * scale + bias`` (a division, not a product with
:math:`1/\sigma`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from varstats.framework_stats import moments_from_mean_var
from varstats.moments import Moments

__all__ = ["ort_cpu_layer_norm", "ort_cpu_layer_norm_mean_var"]

Array = npt.NDArray[Any]


def ort_cpu_layer_norm_mean_var(x: Array, /, *, acc: np.dtype[Any]) -> tuple[Array, Array]:
    """ORT CPU LayerNormalization's ``(mean, variance)`` before ``+ epsilon``, in ``acc``."""
    acc = np.dtype(acc)
    xa = np.asarray(x).astype(acc)
    n = acc.type(xa.shape[-1])
    with np.errstate(all="ignore"):
        s = np.add.accumulate(xa, axis=-1)[..., -1]  # mean += p_input[h]
        q = np.add.accumulate(xa * xa, axis=-1)[..., -1]  # mean_square += x * x (no FMA)
        mean = s / n
        var = q / n - mean * mean
    return np.asarray(mean, acc), np.asarray(var, acc)


def ort_cpu_layer_norm(x: Array, /, *, acc: np.dtype[Any]) -> Moments:
    r"""ONNX Runtime's CPU LayerNormalization moments: one pass, :math:`E[x^2] - E[x]^2`.

    Relative error of :math:`\sigma^2` about :math:`n\,u\,\mu^2/\sigma^2` (Chan,
    Golub & LeVeque 1983); negative results are not clamped.
    """
    mean, var = ort_cpu_layer_norm_mean_var(x, acc=acc)
    return moments_from_mean_var(mean, var, np.asarray(x).shape[-1], acc=np.dtype(acc))
