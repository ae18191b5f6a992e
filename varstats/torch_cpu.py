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
    sequentially in the accumulator (the channels-last kernel, split by thread
    count, with ``channels_last=True``; torch's float16/bfloat16 kernels for those
    formats). Used by BatchNorm and InstanceNorm.

and, for LRN, torch's ``pow(tensor, scalar)``:

:func:`torch_cpu_pow`
    ``pow_tensor_scalar_kernel`` of ``aten/src/ATen/native/cpu/PowKernel.cpp``:
    :func:`sleef_pow` (Sleef's vectorized u10 ``pow``, emulated operation for
    operation) on whole vector blocks, the C library's ``pow`` on the rest.

Fused multiply-add is emulated by :func:`fma`: one rounding of the exact
:math:`ab + c`. Every emulation computes what torch computes, operation for
operation; independent operations run in whatever order NumPy vectorizes best.
With numba (the ``jit`` extra) the Welford kernel with a float32 accumulator, the
BatchNorm statistics of float32 data (of float64 data too, but for an odd image
size) and the float32 FMA chains of the other BatchNorm kernels run compiled, their
FMAs as LLVM's ``llvm.fma``; the NumPy code is the fallback, with the same bits.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from varstats import jit
from varstats.moments import Moments
from varstats.rounding import compiled_fma, fma

_F32_LOW: Final = np.uint64((1 << 29) - 1)  # float64 significand bits below float32's
_F32_HALF: Final = np.uint64(1 << 28)  # ... that make a float32 midpoint
_F32_TINY: Final = float(np.finfo(np.float32).tiny)

__all__ = [
    "sleef_pow",
    "torch_cpu_pow",
    "torch_cpu_sum_rows",
    "torch_cpu_two_pass",
    "torch_cpu_welford",
]

Array = npt.NDArray[Any]

_CHUNK: Final = 16  # kChunkSize in moments_utils.h


def _avx2_lanes(acc: np.dtype[Any]) -> int:
    # Vectorized<T>::size() of the AVX2 build: 256 bits (8 floats, 4 doubles).
    # torch 2.13's AVX512 build also uses 8 float lanes for these kernels.
    return max(1, 32 // acc.itemsize)


def _ceil_log2(m: int) -> int:
    # utils::CeilLog2 in aten/src/ATen/native/cpu/utils.h: 1 for m <= 2
    return 1 if m <= 2 else int(m - 1).bit_length()


_Stats = tuple[Array, Array, Array]  # (count, m1, m2): counts broadcast against m1


def _add_moments_vec(add: _Stats, into: _Stats, acc: np.dtype[Any]) -> _Stats:
    # AddMomentsVec (moments_utils.h): the only FMA is the M2 update. Vectorized over
    # any leading axes: `add` and `into` are whole arrays of independent merges.
    m0_add, m1_add, m2_add = add
    m0, m1, m2 = into
    n = m0 + m0_add
    c = np.where(n > 0, m0_add.astype(acc) / np.maximum(n, 1).astype(acc), acc.type(0))
    delta = m1_add - m1
    m2_tmp = m2 + m2_add
    c_delta = c * delta
    m0_delta = delta * m0.astype(acc)
    return n, m1 + c_delta, fma(m0_delta, c_delta, m2_tmp, acc)


def _lift(item: _Stats, acc: np.dtype[Any]) -> _Stats:
    """An item merged into an empty stack level (zeros), with the real arithmetic."""
    zeros = np.zeros_like(item[1])
    return _add_moments_vec(item, (np.zeros_like(item[0]), zeros, zeros), acc)


def _take(item: _Stats, index: Any) -> _Stats:
    return item[0][:, index], item[1][:, index], item[2][:, index]


def _cascade(chunks: _Stats, acc: np.dtype[Any], per_chunk: int = 1) -> _Stats:
    """The chunk stack of ``RowwiseMomentsImpl``, one tree level at a time.

    torch pushes chunk i onto level 0 of a stack of depth ``ceil_log2(m)`` and, while
    the low bits of ``i + 1`` are zero, merges level j - 1 into level j (below the top
    level). Level j therefore holds ``(0 + L[2k]) + L[2k + 1]`` of the items L of the
    level below, pairs merged left into right's slot; an odd item left over stays on
    its level as ``0 + L[-1]``; the top level merges all its items in order. At the end
    every level is merged into level 0, lowest first. Axis 1 indexes the items.

    ``per_chunk = 2`` is the float16/bfloat16 kernel, which pushes each chunk as two
    float vectors, one after the other: level 0 then folds 4 items per pair of chunks.
    """
    count = chunks[1].shape[1]
    m = count // per_chunk
    depth = _ceil_log2(m)
    items = chunks
    group = per_chunk
    levels: list[_Stats] = []
    for j in range(depth):
        if j == depth - 1:  # top level: merged in order, never cascaded further
            levels.append(_fold_all(items, acc))
            break
        whole = (count // (2 * group)) * 2 * group
        merged = _fold_groups(items, whole, 2 * group, acc)
        if count > whole:
            levels.append(_fold_all(_take(items, slice(whole, count)), acc))
        else:
            empty = _take(items, slice(0, 1))
            zeros = np.zeros_like(empty[1])
            levels.append((np.zeros_like(empty[0]), zeros, zeros))
        items, count, group = merged, whole // (2 * group), 1
    total = levels[0]
    for level in levels[1:]:
        total = _add_moments_vec(level, total, acc)
    return total


def _fold_all(items: _Stats, acc: np.dtype[Any]) -> _Stats:
    total = _lift(_take(items, slice(0, 1)), acc)
    for k in range(1, items[1].shape[1]):
        total = _add_moments_vec(_take(items, slice(k, k + 1)), total, acc)
    return total


def _fold_groups(items: _Stats, whole: int, size: int, acc: np.dtype[Any]) -> _Stats:
    # every group of `size` consecutive items folded in order, all groups at once
    total = _lift(_take(items, slice(0, whole, size)), acc)
    for k in range(1, size):
        total = _add_moments_vec(_take(items, slice(k, whole, size)), total, acc)
    return total


# --- the same operations, compiled -------------------------------------------------
# With numba (the "jit" extra) and a float32 accumulator, RowwiseMoments runs as one
# compiled loop per row, in torch's own order (the chunk stack itself rather than one
# tree level at a time, which gives the same merges). Every operation is the NumPy
# path's, in the same order and format, with no fast-math (nothing contracted or
# reordered), and the FMAs are LLVM's exactly rounded llvm.fma
# (varstats.rounding.compiled_fma), so the bits are the same; tests/test_torch_cpu.py
# compares the two paths. float64 accumulators stay on the NumPy path (its emulated
# float64 FMA is not llvm.fma at the extremes of the range; see varstats.rounding).
# Whether the kernels may run compiled (tests switch it off); numba is imported on first use.
_USE_JIT = True


def _compiled(name: str) -> Any:
    """The compiled kernel ``name`` (a key of :func:`_build_kernels`), or None without numba."""
    if not _USE_JIT:
        return None
    kernels = jit.build("torch_cpu.kernels", lambda numba: _build_kernels(compiled_fma()))
    return None if kernels is None else kernels[name]


# The kernels' sources are module-level functions that call each other (and llvm.fma)
# through the module globals below, which _build_kernels binds to compiled versions
# before compiling: numba reads globals when it compiles, and a global (unlike a
# closure's contents) is not part of the key of its on-disk cache, so a new process
# loads the compiled kernels instead of compiling them again. Never called uncompiled.
_jit_fma: Any = None


def _build_kernels(hardware_fma: Any) -> dict[str, Any]:
    import numba

    global _jit_fma, _jit_add_moments_vec, _jit_welford_step, _jit_transpose_row
    global _jit_welford_steps
    jit = numba.njit(cache=True, nogil=True)
    # the helpers are inlined into their callers (a call costs more than a small step)
    helper = numba.njit(cache=True, nogil=True, inline="always")
    _jit_fma = hardware_fma
    _jit_add_moments_vec = helper(_jit_add_moments_vec)
    _jit_welford_step = helper(_jit_welford_step)
    _jit_transpose_row = helper(_jit_transpose_row)
    _jit_welford_steps = helper(_jit_welford_steps)
    return {
        "welford": jit(_jit_welford),
        "two_pass": jit(_jit_two_pass),
        "two_pass_channels_last": jit(_jit_two_pass_channels_last),
        "fma_square_chain": jit(_jit_fma_square_chain),
    }


def _jit_add_moments_vec(
    m0_add: int,
    m1_add: Array,
    m2_add: Array,
    at: int,
    m0: Array,
    m1: Array,
    m2: Array,
    level: int,
    v: int,
) -> None:
    # _add_moments_vec of the v lanes at m1_add[at:], m2_add[at:] into stack level
    # `level` (lanes level * v ...), in place; flat arrays and offsets, no views
    t = m1.dtype.type
    n = m0[level] + m0_add
    c = t(m0_add) / t(n) if n > 0 else t(0)
    w = t(m0[level])
    base = level * v
    for lane in range(v):
        delta = m1_add[at + lane] - m1[base + lane]
        m2_tmp = m2[base + lane] + m2_add[at + lane]
        c_delta = c * delta
        m0_delta = delta * w
        m1[base + lane] = m1[base + lane] + c_delta
        m2[base + lane] = _jit_fma(m0_delta, c_delta, m2_tmp)
    m0[level] = n


def _jit_welford_step(
    xr: Array, c1: Array, c2: Array, cj: Any, j: int, chunks: int, w: int
) -> None:
    # Welford step j (vector j of each chunk) of the first `chunks` chunks of a row
    for i in range(chunks):
        src = (i * 16 + j) * w
        at = i * w
        for lane in range(w):
            xv = xr[src + lane]
            delta = xv - c1[at + lane]
            new_m1 = _jit_fma(cj, delta, c1[at + lane])
            c2[at + lane] = _jit_fma(delta, xv - new_m1, c2[at + lane])
            c1[at + lane] = new_m1


def _jit_transpose_row(xr: Array, xt: Array, m: int, n: int, w: int) -> None:
    # the n vectors of a row into xt as (vector j, chunk i, lane): xt[(j*m + i)*w + l]
    for i in range(m):
        for j in range(min(16, n - i * 16)):
            src = (i * 16 + j) * w
            dst = (j * m + i) * w
            for lane in range(w):
                xt[dst + lane] = xr[src + lane]


def _jit_welford_steps(xj: Array, c1: Array, c2: Array, cj: Any, count: int) -> None:
    # Welford step j of every chunk, lanes side by side: xj[k] is lane k of the
    # chunk statistics c1[k], c2[k]; indices from 0 up, so the loop vectorizes
    for k in range(count):
        xv = xj[k]
        delta = xv - c1[k]
        new_m1 = _jit_fma(cj, delta, c1[k])
        c2[k] = _jit_fma(delta, xv - new_m1, c2[k])
        c1[k] = new_m1


def _jit_welford(
    x: Array, v: int, per_load: int, c_vecs: Array, mean_out: Array, m2_out: Array
) -> None:
    t = x.dtype.type
    rows, big_n = x.shape
    w = v * per_load  # values per load
    n = big_n // w
    m = -(-n // 16)
    depth = 1  # _ceil_log2(m)
    while m > 2 and (1 << depth) < m:
        depth += 1
    s0 = np.zeros(depth, np.int64)  # the chunk stack, level-major
    s1 = np.zeros(depth * v, x.dtype)
    s2 = np.zeros(depth * v, x.dtype)
    c1 = np.zeros(m * w, x.dtype)  # chunk statistics of one row, chunk-major
    c2 = np.zeros(m * w, x.dtype)
    xt = np.zeros(16 * m * w if m >= 4 else 0, x.dtype)  # a row, step-major
    xt_pairs = xt.view(np.uint64)  # 16 m w values: a whole number of pairs
    last = n - (m - 1) * 16  # vectors in the last chunk
    for r in range(rows):
        xr = x[r]
        for k in range(depth):  # explicit loops: a slice assignment costs a call
            s0[k] = 0
        for k in range(depth * v):
            s1[k] = 0
            s2[k] = 0
        for k in range(m * w):
            c1[k] = 0
            c2[k] = 0
        # step j of every chunk's Welford, then step j + 1: the chunks are
        # independent, so their steps overlap. With several chunks the row is first
        # laid out as (vector j, chunk, lane), so that step j of all chunks is one
        # contiguous loop the compiler vectorizes (a lane count of 8 is shorter
        # than the 16-float vectors it picks)
        if m >= 4:
            if w == 8 and x.itemsize == 4:
                # the float32 lane count: copied as 4 pairs of floats (their bits)
                _jit_transpose_row(x[r, : n * 8].view(np.uint64), xt_pairs, m, n, 4)
            else:
                _jit_transpose_row(xr, xt, m, n, w)
            for j in range(16):
                steps = (m if j < last else m - 1) * w
                _jit_welford_steps(xt[j * m * w : j * m * w + steps], c1, c2, c_vecs[j], steps)
        else:
            for j in range(16 if m > 1 else last):  # one chunk: only `last` steps
                _jit_welford_step(xr, c1, c2, c_vecs[j], j, m if j < last else m - 1, w)
        for i in range(m):
            m0 = min(16, n - i * 16)
            for h in range(per_load):  # a float16 load is two float vectors
                _jit_add_moments_vec(m0, c1, c2, i * w + h * v, s0, s1, s2, 0, v)
            mask = i + 1
            j = 1
            while j < depth and (mask & 1) == 0:
                _jit_add_moments_vec(s0[j - 1], s1, s2, (j - 1) * v, s0, s1, s2, j, v)
                s0[j - 1] = 0
                for lane in range((j - 1) * v, j * v):
                    s1[lane] = 0
                    s2[lane] = 0
                mask >>= 1
                j += 1
        for j in range(1, depth):
            _jit_add_moments_vec(s0[j], s1, s2, j * v, s0, s1, s2, 0, v)
        # the scalar tail: plain Welford, no FMA
        count = 0
        mean = t(0)
        m2s = t(0)
        for k in range(n * w, big_n):
            xk = xr[k]
            delta = xk - mean
            count += 1
            mean = mean + delta / t(count)
            m2s = m2s + delta * (xk - mean)
        lane_count = s0[0]
        for lane in range(v):  # AddMoments, lanes into the tail
            total = count + lane_count
            c = t(lane_count) / t(total) if total else t(0)
            delta = s1[lane] - mean
            mean = _jit_fma(c, delta, mean)
            m2s = m2s + _jit_fma((delta * delta) * c, t(count), s2[lane])
            count = total
        mean_out[r] = mean
        m2_out[r] = m2s


def _jit_two_pass(x: Array, acc_zero: Array, mean_out: Array, m2_out: Array) -> None:
    # the contiguous batch_norm_cpu_collect_stats: sums in acc, mean and squares in
    # storage; each sum starts from its first term, as np.add.accumulate does
    # (0 + -0.0 would be +0.0)
    s = x.dtype.type
    a = acc_zero.dtype.type
    rows, n = x.shape
    for r in range(rows):
        total = a(x[r, 0])
        for i in range(1, n):
            total = total + a(x[r, i])
        mean = s(total / a(n))
        d = x[r, 0] - mean
        m2 = a(d * d)
        for i in range(1, n):
            d = x[r, i] - mean
            m2 = m2 + a(d * d)
        mean_out[r] = mean
        m2_out[r] = s(m2)


def _jit_two_pass_channels_last(
    x: Array, chunk: int, acc_zero: Array, mean_out: Array, m2_out: Array
) -> None:
    # _two_pass_channels_last (float32 storage): chunk sums in storage, each from its
    # first term (np.add.accumulate), added to a zero in acc; the squares one FMA each
    s = x.dtype.type
    a = acc_zero.dtype.type
    rows, n = x.shape
    for r in range(rows):
        total = a(0)
        for lo in range(0, n, chunk):
            part = x[r, lo]
            for i in range(lo + 1, min(n, lo + chunk)):
                part = part + x[r, i]
            total = total + a(part)
        mean = s(total / a(n))
        m2 = a(0)
        for lo in range(0, n, chunk):
            y = s(0)
            for i in range(lo, min(n, lo + chunk)):
                d = x[r, i] - mean
                y = _jit_fma(d, d, y)
            m2 = m2 + a(y)
        mean_out[r] = mean
        m2_out[r] = s(m2)


def _jit_fma_square_chain(dev: Array, out: Array) -> None:
    # _fma_square_chain of each row of dev (float32), into out (zeros)
    for r in range(dev.shape[0]):
        y = out[r]
        for i in range(dev.shape[1]):
            y = _jit_fma(dev[r, i], dev[r, i], y)
        out[r] = y


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
    and float64 rows. Float16/bfloat16 storage with a float32 accumulator takes the
    reduced-precision ``UpdateMomentsVec``: each load of 16 values becomes two float
    vectors, run side by side and pushed onto the stack one after the other.

    The arithmetic is torch's, operation for operation; only the order in which
    independent operations run differs: every chunk of every row runs its Welford
    steps at once, and the cascade runs one tree level at a time (compiled, with a
    float32 accumulator and numba: row by row, the chunk stack as torch keeps it).
    """
    acc = np.dtype(acc)
    storage = np.asarray(x).dtype
    xa = np.asarray(x).astype(acc, copy=False)
    batch, big_n = xa.shape[:-1], xa.shape[-1]
    flat = xa.reshape(-1, big_n)
    rows = flat.shape[0]
    v = lanes if lanes is not None else _avx2_lanes(acc)
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"lanes: expected a positive integer, got {lanes!r}")
    # float16/bfloat16 into float: each load of 2v values is two float vectors
    per_load = 2 if storage.itemsize < acc.itemsize and acc == np.float32 else 1
    n = big_n // (v * per_load)
    m = -(-n // _CHUNK)
    kernel = _compiled("welford") if acc == np.float32 else None
    if kernel is not None:
        mean_out = np.empty(rows, acc)
        m2_out = np.empty(rows, acc)
        c_vecs = np.array([acc.type(1) / acc.type(j + 1) for j in range(_CHUNK)], acc)
        kernel(np.ascontiguousarray(flat), int(v), per_load, c_vecs, mean_out, m2_out)
        return Moments(
            np.full(batch, big_n, dtype=np.int64), mean_out.reshape(batch), m2_out.reshape(batch)
        )
    with np.errstate(all="ignore"):
        if m:
            body = flat[:, : n * v * per_load]
            lane_count, lane_m1, lane_m2 = _lane_moments(body, n, m, v, acc, per_load)
        else:
            lane_count = 0
            lane_m1 = lane_m2 = np.zeros((rows, v), acc)
        count = 0
        mean = np.zeros(rows, acc)
        m2s = np.zeros(rows, acc)
        for k in range(n * v * per_load, big_n):  # scalar tail: plain Welford, no FMA
            xk = flat[:, k]
            delta = xk - mean
            count += 1
            mean = mean + delta / acc.type(count)
            m2s = m2s + delta * (xk - mean)
        for lane in range(v):  # AddMoments, lanes into the tail
            total = count + lane_count
            c = acc.type(lane_count) / acc.type(total) if total else acc.type(0)
            delta = lane_m1[:, lane] - mean
            mean = fma(c, delta, mean, acc)
            m2s = m2s + fma((delta * delta) * c, acc.type(count), lane_m2[:, lane], acc)
            count = total
    return Moments(
        np.full(batch, big_n, dtype=np.int64),
        mean.reshape(batch).astype(acc),
        m2s.reshape(batch).astype(acc),
    )


def _lane_moments(
    body: Array, n: int, m: int, v: int, acc: np.dtype[Any], per_load: int = 1
) -> tuple[int, Array, Array]:
    # Steps 1-2 for all rows: (count, m1, m2) per lane after the cascade. With
    # per_load = 2 each load's two float vectors run side by side (axis 2 of the
    # chunk statistics) and are pushed as two items, the first half first.
    rows = body.shape[0]
    padded = np.zeros((rows, m * _CHUNK, per_load * v), acc)
    padded[:, :n] = body.reshape(rows, n, per_load * v)
    vec = padded.reshape(rows, m, _CHUNK, per_load * v)
    last = n - (m - 1) * _CHUNK  # vectors in the last chunk (1..16)
    m1 = np.zeros((rows, m, per_load * v), acc)
    m2 = np.zeros((rows, m, per_load * v), acc)
    for j in range(_CHUNK):
        c_j = acc.type(1) / acc.type(j + 1)
        xj = vec[:, :, j, :]
        delta = xj - m1
        new_m1 = fma(c_j, delta, m1, acc)
        new_m2 = fma(delta, xj - new_m1, m2, acc)
        if j < last:
            m1, m2 = new_m1, new_m2
        else:  # the last chunk has stopped: only the full chunks take step j
            m1[:, :-1], m2[:, :-1] = new_m1[:, :-1], new_m2[:, :-1]
    counts = np.full((1, m, per_load, 1), _CHUNK, dtype=np.int64)
    counts[0, -1] = last
    items = (
        counts.reshape(1, m * per_load, 1),
        m1.reshape(rows, m * per_load, v),
        m2.reshape(rows, m * per_load, v),
    )
    total = _cascade(items, acc, per_load)
    return int(total[0].reshape(-1)[0]), total[1][:, 0, :], total[2][:, 0, :]


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

    Float16/bfloat16 storage with a float32 accumulator models torch's
    reduced-precision kernels (``batch_norm_cpu_collect_stats_contiguous_internal`` and
    ``..._channels_last_internal``): values converted to float and summed in float,
    the contiguous kernel in 16 float lanes (two lanes per 32-value load, merged by
    ``vec_reduce_all``'s butterfly) with a scalar tail, the deviations squared with
    FMA. The mean and :math:`M_2` are returned unrounded, in float32; the layer rounds
    them as torch stores them.
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
        if acc != np.float32:
            return _two_pass_in_acc(xs, acc)
        if channels_last:
            return _two_pass_reduced_channels_last(xs, int(threads))
        return _two_pass_reduced(xs, int(image_size))
    if channels_last:
        return _two_pass_channels_last(xs, acc, int(threads))
    fused_ends = storage == np.float64 and image_size % 2
    kernel = _compiled("two_pass") if acc.itemsize >= 4 and n and not fused_ends else None
    if kernel is not None:
        rows = xs.reshape(-1, n)
        mean_s = np.empty(rows.shape[0], storage)
        m2_s = np.empty(rows.shape[0], storage)
        kernel(np.ascontiguousarray(rows), np.zeros(1, acc), mean_s, m2_s)
        batch = xs.shape[:-1]
        return Moments(
            np.full(batch, n, dtype=np.int64),
            mean_s.reshape(batch).astype(acc),
            m2_s.reshape(batch).astype(acc),
        )
    with np.errstate(all="ignore"):
        # strictly left to right; the ufunc casts to acc as it goes
        total = np.add.accumulate(xs, axis=-1, dtype=acc)[..., -1]
        mean = (total / acc.type(n)).astype(storage)
        dev = xs - mean[..., None]
        sq = (dev * dev).astype(storage)
        if storage == np.float64 and image_size % 2:
            m2 = _sum_with_fused_block_ends(sq, dev, int(image_size))
        else:
            m2 = np.add.accumulate(sq, axis=-1, dtype=acc)[..., -1].astype(storage)
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
    kernel = _compiled("two_pass_channels_last") if storage == np.float32 and n else None
    if kernel is not None and acc.itemsize >= 4:
        rows = xs.reshape(-1, n)
        mean_s = np.empty(rows.shape[0], storage)
        m2_s = np.empty(rows.shape[0], storage)
        kernel(np.ascontiguousarray(rows), chunk, np.zeros(1, acc), mean_s, m2_s)
        batch = xs.shape[:-1]
        return Moments(
            np.full(batch, n, dtype=np.int64),
            mean_s.reshape(batch).astype(acc),
            m2_s.reshape(batch).astype(acc),
        )
    bounds = [(a, min(n, a + chunk)) for a in range(0, n, chunk)]
    with np.errstate(all="ignore"):
        total = np.zeros(xs.shape[:-1], acc)
        for a, b in bounds:
            total = total + np.add.accumulate(xs[..., a:b], axis=-1)[..., -1].astype(acc)
        mean = (total / acc.type(n)).astype(storage)
        m2 = np.zeros(xs.shape[:-1], acc)
        dev = xs - mean[..., None]
        for a, b in bounds:
            m2 = m2 + _fma_square_chain(dev[..., a:b]).astype(acc)
        m2 = m2.astype(storage)
    return Moments(np.full(mean.shape, n, dtype=np.int64), mean.astype(acc), m2.astype(acc))


def _fma_square_chain(dev: Array) -> Array:
    """``y = fma(d_i, d_i, y)`` over the last axis, in order, in ``dev.dtype``."""
    dt = dev.dtype
    y = np.zeros(dev.shape[:-1], dt)
    if dt != np.float32:
        for i in range(dev.shape[-1]):
            y = fma(dev[..., i], dev[..., i], y, dt)
        return y
    kernel = _compiled("fma_square_chain")
    if kernel is not None:  # llvm.fma: the same single rounding (tests/test_torch_cpu.py)
        kernel(np.ascontiguousarray(dev).reshape(-1, dev.shape[-1]), y.reshape(-1))
        return y
    # float32: d*d is exact in float64, so each step is one float64 addition and one
    # rounding to float32, which is the FMA's single rounding except where the float64
    # sum is a float32 midpoint or tiny (see rounding.fma): those elements alone are
    # rounded again, exactly.
    d64 = np.ascontiguousarray(np.moveaxis(dev.astype(np.float64), -1, 0))
    p = d64 * d64
    y64 = np.zeros(dev.shape[:-1], np.float64)
    for i in range(p.shape[0]):
        s = p[i] + y64
        bits = s.view(np.uint64)
        suspect = ((bits & _F32_LOW) == _F32_HALF) | (np.abs(s) < _F32_TINY)
        rounded = s.astype(np.float32)
        if suspect.any():
            rounded[suspect] = fma(
                dev[..., i][suspect], dev[..., i][suspect], y64[suspect].astype(np.float32), dt
            )
        y64 = rounded.astype(np.float64)
    return y64.astype(np.float32)


_LANES_F32: Final = 16  # Vectorized<float>::size() in the AVX512 build


def _butterfly(v: Array) -> Array:
    """``vec_reduce_all`` of 16 float lanes (AVX512): lanes i and i + h added, h = 8, 4, 2, 1."""
    h = v.shape[-1] // 2
    while h:
        v = v[..., :h] + v[..., h : 2 * h]
        h //= 2
    return np.asarray(v[..., 0])


def _two_pass_reduced(xs: Array, image_size: int) -> Moments:
    f32 = np.dtype(np.float32)
    rows, n = xs.shape[0] if xs.ndim > 1 else 1, xs.shape[-1]
    batch = xs.shape[:-1]
    x = xs.reshape(-1, n // image_size, image_size).astype(f32)
    rows = x.shape[0]
    body = image_size - image_size % (2 * _LANES_F32)  # whole 32-value loads
    # lane l adds values d + l and d + 16 + l of every load, in load order
    vec = x[:, :, :body].reshape(rows, -1, _LANES_F32)
    tail = x[:, :, body:].reshape(rows, -1)
    with np.errstate(all="ignore"):
        lanes = np.add.accumulate(vec, axis=1)[:, -1] if vec.shape[1] else np.zeros((rows, 16), f32)
        scalar = np.add.accumulate(tail, axis=1)[:, -1] if tail.shape[1] else np.zeros(rows, f32)
        total = scalar + _butterfly(lanes)
        mean = total / f32.type(n)  # float / int64: the count converted to float
        dv = (vec - mean[:, None, None]).transpose(0, 2, 1)
        dt_ = tail - mean[:, None]
        lane_m2 = _fma_square_chain(dv) if dv.shape[-1] else np.zeros((rows, 16), f32)
        scalar_m2 = _fma_square_chain(dt_) if dt_.shape[-1] else np.zeros(rows, f32)
        m2 = scalar_m2 + _butterfly(lane_m2)
    return Moments(np.full(batch, n, dtype=np.int64), mean.reshape(batch), m2.reshape(batch))


def _two_pass_reduced_channels_last(xs: Array, threads: int) -> Moments:
    # Per-thread float buffers, chunk sums added in float.
    f32 = np.dtype(np.float32)
    storage = xs.dtype
    n = xs.shape[-1]
    x = xs.astype(f32)
    chunk = -(-n // threads) if n > threads else n
    bounds = [(a, min(n, a + chunk)) for a in range(0, n, chunk)]
    with np.errstate(all="ignore"):
        total = np.zeros(xs.shape[:-1], f32)
        for a, b in bounds:
            total = total + np.add.accumulate(x[..., a:b], axis=-1)[..., -1]
        mean = total / f32.type(n)
        # the mean read back for the deviations: float16 keeps it in a float tensor,
        # bfloat16 in a bfloat16 one (measured on torch 2.13)
        mean_read = mean if storage == np.float16 else mean.astype(storage).astype(f32)
        dev = x - mean_read[..., None]
        m2 = np.zeros(xs.shape[:-1], f32)
        for a, b in bounds:
            m2 = m2 + _fma_square_chain(dev[..., a:b])
    return Moments(np.full(mean.shape, n, dtype=np.int64), mean, m2)


def _two_pass_in_acc(xs: Array, acc: np.dtype[Any]) -> Moments:
    n = xs.shape[-1]
    with np.errstate(all="ignore"):
        xa = xs.astype(acc)
        mean = np.add.accumulate(xa, axis=-1)[..., -1] / acc.type(n)
        dev = xa - mean[..., None]
        m2 = np.add.accumulate(dev * dev, axis=-1)[..., -1]
    return Moments(np.full(mean.shape, n, dtype=np.int64), mean.astype(acc), m2.astype(acc))


# --------------------------------------------------------------------------- pow (Sleef)
#
# torch.pow(tensor, scalar) on CPU (aten/src/ATen/native/cpu/PowKernel.cpp,
# pow_tensor_scalar_optimized_kernel) runs cpu_kernel_vec: whole blocks of two
# vectors go through Vectorized<T>::pow, which is Sleef's u10 pow (Sleef_powf16_u10 /
# Sleef_powd8_u10 in the AVX512 build), and the remainder of each range through the
# scalar std::pow(base, double(exp)). Sleef's pow is exp(y log x) in double-T
# arithmetic ("df"/"dd" pairs, FMA build, compiled with -ffp-contract=off), rewritten
# below operation for operation from sleefsimdsp.c / sleefsimddp.c and common/df.h,
# dd.h of Sleef 3.6-3.9 (logk/logkf, expk/expkf, xpow/xpowf; the functions are
# identical in those releases).

_Pair = tuple[Array, Array]


class _Sleef:
    """Double-T arithmetic of Sleef's FMA build, every operation rounded in ``dt``."""

    def __init__(self, dt: np.dtype[Any]) -> None:
        self.dt = dt

    def c(self, v: float) -> Any:
        return self.dt.type(v)

    def fma(self, a: Any, b: Any, c: Any) -> Array:
        return fma(a, b, c, self.dt)

    def mul_pn(self, a: Any, b: Any, s: Any) -> Array:  # vfmapn: a*b - s, one rounding
        return fma(a, b, -s, self.dt)

    def mul_np(self, a: Any, b: Any, s: Any) -> Array:  # vfmanp: -(a*b) + s
        return fma(-a, b, s, self.dt)

    def add2_ss(self, x: Any, y: Any) -> _Pair:
        s = x + y
        v = s - x
        return s, (x - (s - v)) + (y - v)

    def add2_ps(self, x: _Pair, y: Any) -> _Pair:
        s = x[0] + y
        v = s - x[0]
        return s, ((x[0] - (s - v)) + (y - v)) + x[1]

    def add2_pp(self, x: _Pair, y: _Pair) -> _Pair:
        s = x[0] + y[0]
        v = s - x[0]
        return s, ((x[0] - (s - v)) + (y[0] - v)) + (x[1] + y[1])

    def add_pp(self, x: _Pair, y: _Pair) -> _Pair:  # |x| >= |y|
        s = x[0] + y[0]
        return s, (((x[0] - s) + y[0]) + x[1]) + y[1]

    def add_sp(self, x: Any, y: _Pair) -> _Pair:
        s = x + y[0]
        return s, ((x - s) + y[0]) + y[1]

    def mul_ps(self, x: _Pair, y: Any) -> _Pair:
        s = x[0] * y
        return s, self.fma(x[1], y, self.mul_pn(x[0], y, s))

    def mul_pp(self, x: _Pair, y: _Pair) -> _Pair:
        s = x[0] * y[0]
        return s, self.fma(x[0], y[1], self.fma(x[1], y[0], self.mul_pn(x[0], y[0], s)))

    def squ(self, x: _Pair) -> _Pair:
        s = x[0] * x[0]
        return s, self.fma(x[0] + x[0], x[1], self.mul_pn(x[0], x[0], s))

    def div(self, n: _Pair, d: _Pair) -> _Pair:
        t = self.c(1) / d[0]
        s = n[0] * t
        u = self.mul_pn(t, n[0], s)
        v = self.mul_np(d[1], t, self.mul_np(d[0], t, self.c(1)))
        return s, self.fma(s, v, self.fma(n[1], t, u))

    def normalize(self, t: _Pair) -> _Pair:
        s = t[0] + t[1]
        return s, (t[0] - s) + t[1]

    def poly(self, x: Any, coefficients: tuple[float, ...]) -> Any:
        # Horner with FMA (vmla), highest coefficient first
        u = self.c(coefficients[0])
        for k in coefficients[1:]:
            u = self.fma(u, x, self.c(k))
        return u

    def estrin4(self, x: Any, x2: Any, c: tuple[float, ...]) -> Array:
        # estrin.h POLY4(x, x2, c3, c2, c1, c0)
        f = self.fma
        return f(x2, f(x, self.c(c[0]), self.c(c[1])), f(x, self.c(c[2]), self.c(c[3])))

    def estrin8(self, x: Any, x2: Any, x4: Any, c: tuple[float, ...]) -> Array:
        return self.fma(x4, self.estrin4(x, x2, c[:4]), self.estrin4(x, x2, c[4:]))


def _getexp(v: Array, dt: np.dtype[Any]) -> Array:
    # vgetexp (_mm512_getexp): floor(log2|v|) as a float
    return (np.frexp(v.astype(np.float64))[1] - 1).astype(dt)


def _getmant(v: Array, dt: np.dtype[Any]) -> Array:
    # vgetmant with _MM_MANT_NORM_p75_1p5: the significand scaled into [0.75, 1.5)
    m = np.frexp(v.astype(np.float64))[0] * 2.0
    return np.where(m >= 1.5, m / 2.0, m).astype(dt)


def _sleef_logk(a: Array, k: _Sleef) -> _Pair:
    dt = k.dt
    e = _getexp(a * k.c(1.0 / 0.75), dt)  # the product is rounded, as in Sleef
    m = _getmant(a, dt)
    x = k.div(k.add2_ss(k.c(-1), m), k.add2_ss(k.c(1), m))
    x2 = k.squ(x)
    if dt == np.float32:
        t = k.poly(
            x2[0],
            (0.240320354700088500976562, 0.285112679004669189453125, 0.400007992982864379882812),
        )
        c = (k.c(0.66666662693023681640625), k.c(3.69183861259614332084311e-09))
        s = k.mul_ps((k.c(0.69314718246459960938), k.c(-1.904654323148236017e-09)), e)
        s = k.add_pp(s, (x[0] * k.c(2), x[1] * k.c(2)))
        return k.add_pp(s, k.mul_pp(k.mul_pp(x2, x), k.add2_pp(k.mul_ps(x2, t), c)))
    x4 = x2[0] * x2[0]
    x8 = x4 * x4
    x16 = x8 * x8
    t = k.fma(
        x16,
        k.c(0.116255524079935043668677),
        k.estrin8(
            x2[0],
            x4,
            x8,
            (
                0.103239680901072952701192,
                0.117754809412463995466069,
                0.13332981086846273921509,
                0.153846227114512262845736,
                0.181818180850050775676507,
                0.222222222230083560345903,
                0.285714285714249172087875,
                0.400000000000000077715612,
            ),
        ),
    )
    c = (k.c(0.666666666666666629659233), k.c(3.80554962542412056336616e-17))
    s = k.mul_ps((k.c(0.693147180559945286226764), k.c(2.319046813846299558417771e-17)), e)
    s = k.add_pp(s, (x[0] * k.c(2), x[1] * k.c(2)))
    x = k.mul_pp(x2, x)
    s = k.add_pp(s, k.mul_pp(x, c))
    x = k.mul_pp(x2, x)
    return k.add_pp(s, k.mul_ps(x, t))


def _sleef_expk(d: _Pair, k: _Sleef) -> Array:
    dt = k.dt
    single = dt == np.float32
    r_ln2 = k.c(1.442695040888963407359924681001892137426645954152985934135449406931)
    l2u = k.c(0.693145751953125 if single else 0.69314718055966295651160180568695068359375)
    l2l = k.c(
        1.428606765330187045e-06
        if single
        else 0.28235290563031577122588448175013436025525412068e-12
    )
    q = np.rint((d[0] + d[1]) * r_ln2)
    s = k.add2_ps(d, q * -l2u)
    s = k.add2_ps(s, q * -l2l)
    s = k.normalize(s)
    if single:
        u = k.poly(
            s[0],
            (
                0.00136324646882712841033936,
                0.00836596917361021041870117,
                0.0416710823774337768554688,
                0.166665524244308471679688,
                0.499999850988388061523438,
            ),
        )
        t = k.add_pp(s, k.mul_ps(k.squ(s), u))
        t = k.add_sp(k.c(1), t)
        floor = -104.0
    else:
        s2 = s[0] * s[0]
        s4 = s2 * s2
        s8 = s4 * s4
        high = k.fma(s[0], k.c(2.51069683420950419527139e-08), k.c(2.76286166770270649116855e-07))
        u = k.fma(
            s8,
            high,
            k.estrin8(
                s[0],
                s2,
                s4,
                (
                    2.75572496725023574143864e-06,
                    2.48014973989819794114153e-05,
                    0.000198412698809069797676111,
                    0.0013888888939977128960529,
                    0.00833333333332371417601081,
                    0.0416666666665409524128449,
                    0.166666666666666740681535,
                    0.500000000000000999200722,
                ),
            ),
        )
        t = k.add_sp(k.c(1), s)
        t = k.add_pp(t, k.mul_ps(k.squ(s), u))
        floor = -1000.0
    # vldexp: exact for the normal results these kernels produce
    out = np.ldexp(t[0] + t[1], q.astype(np.int32)).astype(dt)
    return np.asarray(np.where(d[0] < floor, dt.type(0), out))


def sleef_pow(x: npt.ArrayLike, exponent: float, /) -> Array:
    r"""Sleef's vectorized u10 ``pow`` (FMA build) for a scalar exponent, emulated in NumPy.

    :math:`x^y = \exp(y \log x)` with the logarithm and the exponential carried in
    pairs of ``x.dtype`` values (float32 or float64), as ``xpowf``/``xpow`` of Sleef
    3.6-3.9 compute it (the library PyTorch's ``Vectorized<T>::pow`` calls). The result
    is within 1 ulp of :math:`x^y` but not always its correct rounding: for float32 at
    :math:`y = 0.75` it differs from the correctly rounded power on about 2% of inputs.
    Modelled for finite positive ``x`` (results in the normal range), ``x == 1`` and
    ``y == 0``; other special values follow IEEE ``pow``.
    """
    xa = np.asarray(x)
    dt = xa.dtype
    if dt not in (np.float32, np.float64):
        raise TypeError(f"x: expected float32 or float64, got {dt}")
    k = _Sleef(np.dtype(dt))
    y = dt.type(exponent)
    with np.errstate(all="ignore"):
        ax = np.abs(xa)
        result = _sleef_expk(k.mul_ps(_sleef_logk(ax, k), y), k)
        logmax = 709.782712893384 if dt == np.float64 else np.inf
        plain = np.power(xa, y)
        ok = np.isfinite(xa) & (xa > 0) & np.isfinite(result) & (result != 0)
        out = np.where(ok, result, plain)
        out = np.where((xa == 1) | (y == 0), dt.type(1), out)
        if dt == np.float64:
            out = np.where(ok & (np.abs(np.log(np.where(ok, ax, 1.0)) * y) > logmax), plain, out)
    return np.asarray(out, dtype=dt)


def _libm_pow(v: float, e: float) -> float:
    try:
        return math.pow(v, e)
    except (ValueError, OverflowError):  # NaN and inf, as C's pow returns them
        return float(np.power(v, e))


_GRAIN_SIZE: Final = 32768  # at::internal::GRAIN_SIZE


def torch_cpu_pow(x: npt.ArrayLike, exponent: float, /, *, threads: int = 1) -> Array:
    r"""``torch.pow(x, exponent)`` on a contiguous CPU tensor, emulated bit for bit.

    Models ``pow_tensor_scalar_kernel`` (``aten/src/ATen/native/cpu/PowKernel.cpp``)
    in torch 2.13's AVX512 build: exponents 0.5, -0.5, -1, 2, 3 and -2 take the
    dedicated kernels (sqrt, 1/sqrt, 1/x, x*x, x*x*x, 1/(x*x)); any other exponent runs
    ``cpu_kernel_vec``. TensorIterator splits the ``n`` elements into
    ``min(threads, ceil(n / 32768))`` equal ranges; in each range, whole blocks of two
    vectors (32 float32 or 16 float64 values) take :func:`sleef_pow` and the remainder
    ``std::pow(x, double(exponent))``, the correctly rounded power in practice.
    """
    xa = np.asarray(x)
    dt = xa.dtype
    if dt not in (np.float32, np.float64):
        raise TypeError(f"x: expected float32 or float64, got {dt}")
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads: expected a positive integer, got {threads!r}")
    e = float(exponent)
    flat = xa.reshape(-1)
    one = dt.type(1)
    with np.errstate(all="ignore"):
        special = {
            0.5: lambda v: np.sqrt(v),
            -0.5: lambda v: one / np.sqrt(v),
            -1.0: lambda v: one / v,
            2.0: lambda v: v * v,
            3.0: lambda v: v * v * v,
            -2.0: lambda v: one / (v * v),
        }
        if e in special:
            return np.asarray(special[e](xa), dtype=dt)
        n = flat.size
        used = max(1, min(int(threads), -(-n // _GRAIN_SIZE)))
        chunk = -(-n // used) if n else 0
        block = 2 * (64 // dt.itemsize)  # two AVX512 vectors
        vector = np.zeros(n, dtype=bool)
        for start in range(0, n, max(chunk, 1)):
            length = min(chunk, n - start)
            vector[start : start + (length // block) * block] = True
        out = np.empty_like(flat)
        out[vector] = sleef_pow(flat[vector], e)
        # std::pow(float, double) is the C library's double pow, rounded once to
        # float; math.pow calls the same libm (NumPy's own float64 power may differ)
        tail = flat[~vector].astype(np.float64)
        out[~vector] = np.array([_libm_pow(v, e) for v in tail.tolist()], np.float64).astype(dt)
    return out.reshape(xa.shape)


# --------------------------------------------------------------------------- sum over dim 0


def _multi_row_sum(rows: Array) -> Array:
    # multi_row_sum (aten/src/ATen/native/cpu/SumKernel.cpp): rows added in order into
    # level 0; every `step` rows level j - 1 is added into level j (4 levels, a
    # cascade), the levels summed into level 0 at the end.
    dt = rows.dtype
    size = rows.shape[0]
    power = max(4, _ceil_log2(size) // 4)
    step = 1 << power
    mask = step - 1
    acc = [np.zeros(rows.shape[1:], dt) for _ in range(4)]
    i = 0
    while i + step <= size:
        for _ in range(step):
            acc[0] = acc[0] + rows[i]
            i += 1
        for j in range(1, 4):
            acc[j] = acc[j] + acc[j - 1]
            acc[j - 1] = np.zeros_like(acc[j - 1])
            if i & (mask << (j * power)):
                break
    while i < size:
        acc[0] = acc[0] + rows[i]
        i += 1
    for j in range(1, 4):
        acc[0] = acc[0] + acc[j]
    return acc[0]


def _row_sum(rows: Array) -> Array:
    # row_sum: the rows read as (-1, 4); four partial cascades, the left-over rows
    # added to the first, then the partials added in order
    n4 = rows.shape[0] // 4
    parts = [
        _multi_row_sum(rows[k : 4 * n4 : 4]) if n4 else np.zeros(rows.shape[1:], rows.dtype)
        for k in range(4)
    ]
    total = parts[0]
    for i in range(4 * n4, rows.shape[0]):
        total = total + rows[i]
    for k in range(1, 4):
        total = total + parts[k]
    return total


def torch_cpu_sum_rows(a: npt.ArrayLike, /) -> Array:
    """``torch.sum(a, 0)`` of a contiguous 2-D float32/float64 CPU tensor, emulated bit for bit.

    Models ``cascade_sum`` (``aten/src/ATen/native/cpu/SumKernel.cpp``) with the
    8-lane float (4-lane double) vectors torch 2.13 uses here: one column is a
    contiguous inner reduction (8+ values: lanes summed by ``row_sum``, then the tail
    and the lanes added in order); 8 or more columns a vectorized outer reduction
    (blocks of 32 columns by ``multi_row_sum``, the rest by ``row_sum``); 2 to 7
    columns a scalar outer reduction (groups of 4 by ``multi_row_sum``). Sums run in
    the array's format. Single-threaded: torch splits reductions of more than 32768
    elements across threads, which is not modelled.
    """
    x = np.asarray(a)
    if x.ndim != 2 or x.dtype not in (np.float32, np.float64):
        raise TypeError(f"a: expected a 2-D float32 or float64 array, got {x.dtype}{x.shape}")
    lanes = 32 // x.dtype.itemsize
    n, c = x.shape
    out = np.zeros(c, x.dtype)
    with np.errstate(all="ignore"):
        if c == 1:
            if n >= lanes:
                nv = n // lanes
                partials = _row_sum(x[: nv * lanes, 0].reshape(nv, lanes))
                total = x.dtype.type(0)
                for v in x[nv * lanes :, 0]:
                    total = total + v
                for k in range(lanes):
                    total = total + partials[k]
                out[0] = total
            else:
                out[:] = _row_sum(x)
            return out
        block = 4 if c < lanes else 4 * lanes
        j = 0
        while j + block <= c:
            out[j : j + block] = _multi_row_sum(x[:, j : j + block])
            j += block
        if j < c:
            out[j:] = _row_sum(x[:, j:])
    return out
