r"""PyTorch CPU kernels, emulated bit for bit.

PyTorch's CPU kernels are emulated bit for bit (see ``tests/test_norms.py``)
by two kernels, registered in :mod:`varstats.algorithms` under their names:

``"torch_cpu_welford"``
    ``RowwiseMoments`` of ``aten/src/ATen/native/cpu/moments_utils.h``: Welford
    per SIMD lane with FMA, chunks of 16 vectors merged in a binary cascade, a
    scalar Welford tail, then the lanes merged into the tail one by one. Used by
    LayerNorm and GroupNorm.
``"torch_cpu_two_pass"``
    ``batch_norm_cpu_collect_stats_contiguous_impl`` of
    ``aten/src/ATen/native/cpu/batch_norm_kernel.cpp``: a sequential sum in
    ``acc_type`` (double for float), the mean rounded back to the storage
    format, squared deviations formed in the storage format and summed
    sequentially in the accumulator. Used by BatchNorm and InstanceNorm.

Fused multiply-add is emulated by :func:`fma`: one rounding of the exact
:math:`ab + c`.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from varstats.moments import Moments
from varstats.rounding import fma

__all__ = ["torch_cpu_two_pass", "torch_cpu_welford"]

Array = npt.NDArray[Any]

_CHUNK: Final = 16  # kChunkSize in moments_utils.h


def _avx2_lanes(acc: np.dtype[Any]) -> int:
    # Vectorized<T>::size() of the AVX2 build: 256 bits (8 floats, 4 doubles).
    # torch 2.13's AVX512 build also uses 8 float lanes for these kernels.
    return max(1, 32 // acc.itemsize)


def _ceil_log2(m: int) -> int:
    # utils::CeilLog2 in aten/src/ATen/native/cpu/utils.h: 1 for m <= 2
    return 1 if m <= 2 else int(m - 1).bit_length()


def _add_moments_vec(
    add: tuple[int, Array, Array], into: tuple[int, Array, Array], acc: np.dtype[Any]
) -> tuple[int, Array, Array]:
    # AddMomentsVec (moments_utils.h): the only FMA is the M2 update.
    m0_add, m1_add, m2_add = add
    m0, m1, m2 = into
    n = m0 + m0_add
    c = acc.type(m0_add) / acc.type(n) if n else acc.type(0)
    delta = m1_add - m1
    m2_tmp = m2 + m2_add
    c_delta = c * delta
    m0_delta = delta * acc.type(m0)
    return n, m1 + c_delta, fma(m0_delta, c_delta, m2_tmp, acc)


def torch_cpu_welford(x: Array, /, *, acc: np.dtype[Any], lanes: int | None = None) -> Moments:
    r"""PyTorch's CPU ``RowwiseMoments``: lane-wise Welford with FMA and a cascade.

    Models ``aten/src/ATen/native/cpu/moments_utils.h`` (torch 2.13) as compiled
    for AVX2 with GCC's default floating-point contraction:

    1. The row is read as ``n = N // lanes`` vectors. Chunks of 16 vectors run
       Welford per lane from zero, with :math:`c_j = \operatorname{fl}(1/(j+1))`:

       .. math::
           \delta = x - \bar x,\quad \bar x = \operatorname{fma}(c_j, \delta, \bar x),\quad
           M_2 = \operatorname{fma}(\delta, x - \bar x, M_2)

    2. Each chunk is merged into level 0 of a stack; level :math:`j-1` is merged
       into level :math:`j` while the chunk counter's low bits are zero (a binary
       cascade of depth :math:`\lceil\log_2 m\rceil`); at the end every level is
       merged into level 0 (``AddMomentsVec``: one FMA in the :math:`M_2` update).
    3. The ``N mod lanes`` tail elements run scalar Welford (no FMA), and the
       lanes are merged into the tail one at a time (``AddMoments``, contracted
       by the compiler into :math:`\bar x = \operatorname{fma}(c, \delta, \bar x)`
       and :math:`M_2 = M_2 + \operatorname{fma}(\delta^2 c, m_0, M_{2,\text{add}})`).

    Matches ``torch.native_layer_norm``'s mean and rstd bit for bit on float32
    and float64 rows. Float16/bfloat16 storage is accepted but torch's
    reduced-precision path (two float vectors per 16-lane load) is not modelled.
    """
    acc = np.dtype(acc)
    xa = np.asarray(x).astype(acc)
    batch, big_n = xa.shape[:-1], xa.shape[-1]
    flat = xa.reshape(-1, big_n)
    rows = flat.shape[0]
    v = lanes if lanes is not None else _avx2_lanes(acc)
    n = big_n // v
    m = -(-n // _CHUNK)
    depth = _ceil_log2(m)
    vec = flat[:, : n * v].reshape(rows, n, v)
    c_vecs = [acc.type(1) / acc.type(j + 1) for j in range(_CHUNK)]

    def zero() -> tuple[int, Array, Array]:
        return 0, np.zeros((rows, v), acc), np.zeros((rows, v), acc)

    stack = [zero() for _ in range(depth)]
    with np.errstate(all="ignore"):
        for i in range(m):
            m0 = min(_CHUNK, n - i * _CHUNK)
            m1 = np.zeros((rows, v), acc)
            m2 = np.zeros((rows, v), acc)
            for j in range(m0):
                xj = vec[:, i * _CHUNK + j, :]
                delta = xj - m1
                m1 = fma(c_vecs[j], delta, m1, acc)
                m2 = fma(delta, xj - m1, m2, acc)
            stack[0] = _add_moments_vec((m0, m1, m2), stack[0], acc)
            mask, level = i + 1, 1
            while level < depth and (mask & 1) == 0:
                stack[level] = _add_moments_vec(stack[level - 1], stack[level], acc)
                stack[level - 1] = zero()
                mask >>= 1
                level += 1
        for level in range(1, depth):
            stack[0] = _add_moments_vec(stack[level], stack[0], acc)
        lane_m1, lane_m2 = stack[0][1], stack[0][2]

        count = 0
        mean = np.zeros(rows, acc)
        m2s = np.zeros(rows, acc)
        for k in range(n * v, big_n):  # scalar tail: plain Welford, no FMA
            xk = flat[:, k]
            delta = xk - mean
            count += 1
            mean = mean + delta / acc.type(count)
            m2s = m2s + delta * (xk - mean)
        for lane in range(v):  # AddMoments, lanes into the tail
            total = count + n
            c = acc.type(n) / acc.type(total) if total else acc.type(0)
            delta = lane_m1[:, lane] - mean
            mean = fma(c, delta, mean, acc)
            m2s = m2s + fma((delta * delta) * c, acc.type(count), lane_m2[:, lane], acc)
            count = total
    return Moments(
        np.full(batch, big_n, dtype=np.int64),
        mean.reshape(batch).astype(acc),
        m2s.reshape(batch).astype(acc),
    )


def torch_cpu_two_pass(x: Array, /, *, acc: np.dtype[Any], channels_last: bool = False) -> Moments:
    r"""PyTorch's CPU BatchNorm statistics: sequential two-pass, deviations in storage.

    Models ``batch_norm_cpu_collect_stats_contiguous_impl``
    (``aten/src/ATen/native/cpu/batch_norm_kernel.cpp``):

    .. math::
        s = \sum_i x_i \ \text{(sequential, in acc)},\quad
        \bar x = \operatorname{fl}_{\text{storage}}(s / n),\quad
        M_2 = \operatorname{fl}_{\text{storage}}\Big(\sum_i
              \operatorname{fl}_{\text{storage}}\big((x_i - \bar x)^2\big)\Big)

    torch uses ``acc_type<float, false> = double`` as the accumulator, so the
    preset precision is ``float32:float64``. The mean and :math:`M_2` are
    rounded to the storage format (torch stores them in float tensors) and
    returned in ``acc``. ``channels_last=True`` models the kernel torch uses for
    ``(N, C)`` inputs and channels-last layouts when run on one thread.
    """
    acc = np.dtype(acc)
    storage = np.asarray(x).dtype
    xs = np.asarray(x)
    n = xs.shape[-1]
    if channels_last:
        return _torch_cpu_two_pass_channels_last(xs, acc)
    with np.errstate(all="ignore"):
        total = np.add.accumulate(xs.astype(acc), axis=-1)[..., -1]  # strictly left to right
        mean = (total / acc.type(n)).astype(storage)
        dev = xs - mean[..., None]
        sq = (dev * dev).astype(storage)
        m2 = np.add.accumulate(sq.astype(acc), axis=-1)[..., -1].astype(storage)
    return Moments(np.full(mean.shape, n, dtype=np.int64), mean.astype(acc), m2.astype(acc))


def _torch_cpu_two_pass_channels_last(xs: Array, acc: np.dtype[Any]) -> Moments:
    # batch_norm_cpu_collect_stats_channels_last_impl with one thread (and the (N, C)
    # inputs, image_size == 1, that take this path): the per-thread buffer sums in the
    # storage format, sequentially over rows, with y + (x - mean)^2 contracted to an
    # FMA; the one buffer row is then added in acc. Other thread counts split the rows.
    storage = xs.dtype
    n = xs.shape[-1]
    with np.errstate(all="ignore"):
        total = np.add.accumulate(xs, axis=-1)[..., -1]
        mean = (total.astype(acc) / acc.type(n)).astype(storage)
        m2 = np.zeros(xs.shape[:-1], storage)
        for i in range(n):
            dev = xs[..., i] - mean
            m2 = fma(dev, dev, m2, storage)
    return Moments(np.full(mean.shape, n, dtype=np.int64), mean.astype(acc), m2.astype(acc))
