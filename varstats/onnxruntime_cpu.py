r"""ONNX Runtime CPU moments, emulated bit for bit.

Kernels registered in :mod:`varstats.algorithms`:

``"ort_cpu_instance_norm"``
    ``InstanceNorm<float>::Compute`` (``onnxruntime/core/providers/cpu/nn/
    instance_norm.cc``): per row ``Xi.mean()`` and ``(Xi - mean).squaredNorm()``,
    Eigen reductions compiled for SSE (see :func:`eigen_sse_sum`). The mean's
    reduction starts at the first 16-byte aligned element, so the result depends
    on the address of the input buffer: ``offset`` (elements past a 16-byte
    boundary, default 0) says where it starts.
``"ort_cpu_layer_norm"``
    LayerNormalization, below.

``ort_cpu_layer_norm`` follows the two paths of ORT 1.31's LayerNormalization
(``layer_norm_impl.cc``): float rows of 8 or more values on an AVX2 machine go to
``MlasLayerNormKernelAvx2`` (``onnxruntime/core/mlas/lib/layernorm_kernel_avx2.cpp``),
a centered two-pass kernel: the mean from a double sum in four lanes, then
:math:`\sum (x - \mu)^2` in eight float lanes with FMA. Shorter float rows and
double rows take the scalar Welford loop of ``ComputeJob``. The one-pass
:math:`E[x^2] - E[x]^2` of earlier releases, which returned NaN on onnxruntime
issues 28463 and 21935, is gone.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from varstats.framework_stats import moments_from_mean_var
from varstats.moments import Moments
from varstats.rounding import fma

__all__ = [
    "eigen_sse_sum",
    "ort_cpu_instance_norm",
    "ort_cpu_layer_norm",
    "ort_cpu_layer_norm_mean_var",
]

Array = npt.NDArray[Any]

_SSE_BYTES: Final = 16  # ORT's Eigen is built for the x86-64 baseline: SSE packets


def eigen_sse_sum(a: Array, /, *, start: Array | int = 0) -> Array:
    """Eigen's ``redux`` sum of each row (last axis) as compiled for SSE.

    ``redux_impl<..., LinearVectorizedTraversal, NoUnrolling>`` (``Redux.h``):
    from ``start`` (the first aligned element of a row, per row) two packet
    accumulators take alternate packets of ``16 / itemsize`` values; they are
    added, one more whole packet is added if there is one, the packet is summed
    by halves (``predux``: ``(p0 + p2) + (p1 + p3)`` for floats), and the
    ``start`` leading and the trailing values follow one by one. A row with no
    whole packet after ``start`` is summed left to right.
    """
    n = a.shape[-1]
    lanes = max(1, _SSE_BYTES // a.dtype.itemsize)
    flat = a.reshape(-1, n)
    starts = np.broadcast_to(np.asarray(start, dtype=np.int64).reshape(-1), (flat.shape[0],))
    out = np.empty(flat.shape[0], a.dtype)
    for i, row in enumerate(flat):  # rows differ in their aligned start
        out[i] = _redux_row(row, int(starts[i]), lanes)
    return out.reshape(a.shape[:-1])


def _redux_row(row: Array, start: int, lanes: int) -> Any:
    n = row.shape[0]
    whole = (n - start) // lanes * lanes if n > start else 0
    if whole == 0:
        return np.add.accumulate(row)[-1]
    end2 = start + (n - start) // (2 * lanes) * (2 * lanes)
    end = start + whole
    p0 = row[start : start + lanes].copy()
    if whole > lanes:
        p1 = row[start + lanes : start + 2 * lanes].copy()
        for i in range(start + 2 * lanes, end2, 2 * lanes):
            p0 = p0 + row[i : i + lanes]
            p1 = p1 + row[i + lanes : i + 2 * lanes]
        p0 = p0 + p1
        if end > end2:
            p0 = p0 + row[end2 : end2 + lanes]
    while p0.shape[0] > 1:  # predux: halves
        half = p0.shape[0] // 2
        p0 = p0[:half] + p0[half:]
    total = p0[0]
    for v in row[:start]:
        total = total + v
    for v in row[end:]:
        total = total + v
    return total


def ort_cpu_instance_norm(x: Array, /, *, acc: np.dtype[Any], offset: int = 0) -> Moments:
    r"""ONNX Runtime's CPU InstanceNormalization moments (float).

    .. math::
        \mu = \operatorname{fl}(S_a(x) / W),\quad
        \sigma^2 = \operatorname{fl}(S_0((x - \mu)^2) / W)

    with :math:`S_a` :func:`eigen_sse_sum` started at the row's first 16-byte
    aligned element and :math:`S_0` started at the first element (the squared
    deviations are an expression without direct access, so Eigen does not align
    them). Row ``i`` of the flattened batch starts ``offset + i * W`` elements
    past a 16-byte boundary, as in ORT's contiguous (N, C, W) buffer.
    """
    acc = np.dtype(acc)
    xa = np.asarray(x).astype(acc)
    w = xa.shape[-1]
    rows = int(np.prod(xa.shape[:-1], dtype=np.int64))
    lanes = max(1, _SSE_BYTES // acc.itemsize)
    first = offset + np.arange(rows, dtype=np.int64) * w
    starts = (-first) % lanes
    with np.errstate(all="ignore"):
        mean = eigen_sse_sum(xa, start=starts.reshape(xa.shape[:-1])) / acc.type(w)
        dev = xa - mean[..., None]
        var = eigen_sse_sum(dev * dev) / acc.type(w)  # squared_norm / W
    return moments_from_mean_var(mean, var, w, acc=acc)


_MLAS_MIN_ROW: Final = 8  # MlasLayerNormF32 declines rows shorter than 8 on x86


def _welford_rows(xa: Array, acc: np.dtype[Any]) -> tuple[Array, Array]:
    # ComputeJob's scalar loop: delta = x - mean; mean += delta / (h + 1);
    # m2 += delta * (x - mean); variance = m2 / n
    mean = np.zeros(xa.shape[:-1], acc)
    m2 = np.zeros(xa.shape[:-1], acc)
    for h in range(xa.shape[-1]):
        xh = xa[..., h]
        delta = xh - mean
        mean = mean + delta / acc.type(h + 1)
        m2 = m2 + delta * (xh - mean)
    return mean, m2 / acc.type(xa.shape[-1])


def _mlas_avx2_rows(xa: Array) -> tuple[Array, Array]:
    f32 = np.dtype(np.float32)
    n = xa.shape[-1]
    # pass 1: four double lanes over whole groups of 4, lanes added (l0 + l2) + (l1 + l3),
    # then the tail one by one in double; the mean is rounded once to float
    head4 = n // 4 * 4
    lanes = np.zeros((*xa.shape[:-1], 4), np.float64)
    for i in range(0, head4, 4):
        lanes = lanes + xa[..., i : i + 4].astype(np.float64)
    total = (lanes[..., 0] + lanes[..., 2]) + (lanes[..., 1] + lanes[..., 3])
    for i in range(head4, n):
        total = total + xa[..., i].astype(np.float64)
    mean = (total / n).astype(f32)
    # pass 2: eight float lanes of fma(d, d, acc), the 256-bit register folded in halves,
    # then the tail (the file is built with -mfma: d * d + s contracts to an FMA)
    head8 = n // 8 * 8
    acc8 = np.zeros((*xa.shape[:-1], 8), f32)
    for i in range(0, head8, 8):
        d = xa[..., i : i + 8] - mean[..., None]
        acc8 = fma(d, d, acc8, f32)
    while acc8.shape[-1] > 1:
        half = acc8.shape[-1] // 2
        acc8 = acc8[..., :half] + acc8[..., half:]
    s = acc8[..., 0]
    for i in range(head8, n):
        d = xa[..., i] - mean
        s = fma(d, d, s, f32)
    return mean, s / f32.type(n)


def ort_cpu_layer_norm_mean_var(x: Array, /, *, acc: np.dtype[Any]) -> tuple[Array, Array]:
    """ORT 1.31 CPU LayerNormalization's ``(mean, variance)`` before ``+ epsilon``, in ``acc``."""
    acc = np.dtype(acc)
    xa = np.asarray(x).astype(acc)
    with np.errstate(all="ignore"):
        if acc == np.float32 and xa.shape[-1] >= _MLAS_MIN_ROW:
            mean, var = _mlas_avx2_rows(xa)
        else:
            mean, var = _welford_rows(xa, acc)
    return np.asarray(mean, acc), np.asarray(var, acc)


def ort_cpu_layer_norm(x: Array, /, *, acc: np.dtype[Any]) -> Moments:
    r"""ONNX Runtime 1.31's CPU LayerNormalization moments.

    Float rows of 8 or more (AVX2): :math:`\mu = \operatorname{fl}_{32}(S_{64}(x)/n)`,
    :math:`\sigma^2 = \operatorname{fl}(S^{\text{fma}}_{32}((x-\mu)^2)/n)`, a
    centered two-pass whose relative error stays near :math:`n u` (Chan, Golub &
    LeVeque 1983); otherwise Welford's update (Welford 1962) in the row's type.
    """
    mean, var = ort_cpu_layer_norm_mean_var(x, acc=acc)
    return moments_from_mean_var(mean, var, np.asarray(x).shape[-1], acc=np.dtype(acc))
