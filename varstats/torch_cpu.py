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


def torch_cpu_two_pass(
    x: Array,
    /,
    *,
    acc: np.dtype[Any],
    channels_last: bool = False,
    image_size: int | None = None,
    threads: int = 1,
) -> Moments:
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
    returned in ``acc``.

    For float64 data the compiler vectorizes the squares in pairs and contracts
    the scalar remainder: when ``image_size`` (the length of each contiguous
    (n, c) block of the row; ``None``: the whole row) is odd, the last element
    of every block is accumulated as :math:`M_2 = \operatorname{fma}(d, d, M_2)`.

    ``channels_last=True`` models ``batch_norm_cpu_collect_stats_channels_last_impl``,
    which torch takes for channels-last layouts and whenever the spatial size is 1
    ((N, C) and (N, C, 1, ...) inputs). With ``n > threads`` the row is cut as
    ``at::parallel_for(0, n, 1, ...)`` cuts it under OpenMP (``threads`` chunks of
    :math:`\lceil n/T\rceil`), each chunk summed sequentially in the storage format
    (:math:`M_2` with one FMA per element), then the chunk sums added in ``acc``; with
    ``n <= threads`` one sequential sum in ``acc``. The result depends on the thread
    count, which torch reports as ``torch.get_num_threads()``.

    Float16/bfloat16 storage is accepted, but torch's reduced-precision kernels
    (``..._internal`` with float vectors) are not modelled: the sums here run in
    ``acc`` (float32), which bounds the result like torch's without matching its bits.
    """
    acc = np.dtype(acc)
    xs = np.asarray(x)
    storage = xs.dtype
    n = xs.shape[-1]
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads: expected a positive integer, got {threads!r}")
    if image_size is None:
        image_size = n
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, (int, np.integer))
        or image_size < 1
        or n % image_size
    ):
        raise ValueError(f"image_size: expected a positive divisor of {n}, got {image_size!r}")
    if storage.itemsize < 4:
        # float16/bfloat16: not torch's reduced-precision kernel; sum in acc (float32)
        # so that the statistics stay finite where torch's are.
        return _two_pass_in_acc(xs, acc)
    if channels_last:
        return _two_pass_channels_last(xs, acc, int(threads))
    with np.errstate(all="ignore"):
        total = np.add.accumulate(xs.astype(acc), axis=-1)[..., -1]  # strictly left to right
        mean = (total / acc.type(n)).astype(storage)
        dev = xs - mean[..., None]
        sq = (dev * dev).astype(storage)
        if storage == np.float64 and image_size % 2:
            m2 = _sum_with_fused_block_ends(sq, dev, int(image_size))
        else:
            m2 = np.add.accumulate(sq.astype(acc), axis=-1)[..., -1].astype(storage)
    return Moments(np.full(mean.shape, n, dtype=np.int64), mean.astype(acc), m2.astype(acc))


def _sum_with_fused_block_ends(sq: Array, dev: Array, block: int) -> Array:
    # float64 `_var_sum += (x - mean) * (x - mean)`: GCC computes the squares two at a
    # time and adds them in order; the odd element left at the end of each block of
    # `block` values is the scalar epilogue, contracted to one FMA.
    rows = sq.shape[:-1]
    total = np.zeros(rows, sq.dtype)
    for start in range(0, sq.shape[-1], block):
        body = sq[..., start : start + block - 1]
        if body.shape[-1]:
            total = np.add.accumulate(np.concatenate([total[..., None], body], axis=-1), axis=-1)[
                ..., -1
            ]
        last = dev[..., start + block - 1]
        total = fma(last, last, total, sq.dtype)
    return total


def _two_pass_channels_last(xs: Array, acc: np.dtype[Any], threads: int) -> Moments:
    # Per-thread buffer rows in the storage format: y + x, then y + (x - mean)^2
    # contracted to an FMA; the buffer rows are then added in acc. Measured against
    # torch 2.13: with n <= threads the whole row is one chunk.
    storage = xs.dtype
    n = xs.shape[-1]
    chunk = -(-n // threads) if n > threads else n
    bounds = [(a, min(n, a + chunk)) for a in range(0, n, chunk)]
    with np.errstate(all="ignore"):
        total = np.zeros(xs.shape[:-1], acc)
        for a, b in bounds:
            total = total + np.add.accumulate(xs[..., a:b], axis=-1)[..., -1].astype(acc)
        mean = (total / acc.type(n)).astype(storage)
        m2 = np.zeros(xs.shape[:-1], acc)
        for a, b in bounds:
            y = np.zeros(xs.shape[:-1], storage)
            for i in range(a, b):
                d = xs[..., i] - mean
                y = fma(d, d, y, storage)
            m2 = m2 + y.astype(acc)
        m2 = m2.astype(storage)
    return Moments(np.full(mean.shape, n, dtype=np.int64), mean.astype(acc), m2.astype(acc))


def _two_pass_in_acc(xs: Array, acc: np.dtype[Any]) -> Moments:
    n = xs.shape[-1]
    with np.errstate(all="ignore"):
        xa = xs.astype(acc)
        mean = np.add.accumulate(xa, axis=-1)[..., -1] / acc.type(n)
        dev = xa - mean[..., None]
        m2 = np.add.accumulate(dev * dev, axis=-1)[..., -1]
    return Moments(np.full(mean.shape, n, dtype=np.int64), mean.astype(acc), m2.astype(acc))
