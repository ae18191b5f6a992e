"""Summation orders: the fast NumPy paths add in the same order as the plain loops."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import varstats as vs
from varstats import array_api, summation
from varstats.moments import tree_reduce
from varstats.precision import as_dtype, finfo
from varstats.summation import (
    _neumaier_sequential,
    compensated_sum,
    deviation_sums,
    deviations,
    row_sum,
    split,
    squared_deviation_total,
    squares,
    total,
)


def _row_loop(head: Any) -> Any:
    # the definition: each lane summed down its rows, every sum rounded in head.dtype
    s = head[..., 0, :].copy()
    for k in range(1, head.shape[-2]):
        s = np.add(s, head[..., k, :], out=s)
    return s


SHAPES = [(32, 1), (32, 2), (32, 8), (32, 9), (32, 100), (3, 32, 8), (5, 32, 20), (2, 3, 32, 33)]


@pytest.mark.parametrize("dtype", vs.DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", ["c", "fortran", "moved", "strided"])
def test_row_sum_adds_row_by_row(dtype: str, shape: tuple[int, ...], layout: str) -> None:
    rng = np.random.default_rng(len(shape) * 100 + shape[-1])
    values = rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 3, size=shape) + 1e3
    head = values.astype(as_dtype(dtype))
    if layout == "fortran":
        head = np.asfortranarray(head)
    elif layout == "moved":
        head = np.moveaxis(np.ascontiguousarray(np.moveaxis(head, 0, -1)), -1, 0)
    elif layout == "strided":
        head = head[..., ::2]
    got, want = row_sum(head), _row_loop(head)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got.astype(np.float64), want.astype(np.float64))


def _neumaier_loop(a: Any) -> tuple[Any, Any]:
    # the definition: TwoSum step by step, errors added to c from +0, left to right
    s = a[..., 0].copy()
    c = np.zeros_like(s)
    for k in range(1, a.shape[-1]):
        t = s + a[..., k]
        z = t - s
        e = (s - (t - z)) + (a[..., k] - z)
        s, c = t, c + e
    return s, c


@pytest.mark.parametrize("dtype", vs.DTYPES)
@pytest.mark.parametrize("shape", [(1,), (2,), (3,), (50,), (4, 33), (2, 3, 200)])
def test_sequential_compensated_sum_steps_like_the_loop(dtype: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(shape[-1])
    values = rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 3, size=shape) + 17.0
    values[..., 0] = -0.0  # signed zeros: c starts from +0
    a = values.astype(as_dtype(dtype))
    total, (s, c) = compensated_sum(split(a, "sequential")), _neumaier_loop(a)
    assert np.asarray(total).tobytes() == np.asarray(s + c).tobytes()


@pytest.mark.parametrize("dtype", vs.DTYPES)
@pytest.mark.parametrize("leaves", [1, 2, 3, 5, 7, 8, 9, 13, 31, 33, 100])
def test_padded_tree_adds_like_the_tree_that_carries_odd_elements(dtype: str, leaves: int) -> None:
    # total() pads its leaves with -0.0 to a power of two and adds neighbours level by
    # level; the definition (tree_reduce) carries an odd element up a level unchanged.
    # v + (-0.0) is v for every v, so the two agree bit for bit: signed zeros,
    # infinities and NaN included, in every format.
    fi = vs.finfo(dtype)
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, fi.max, -fi.max, fi.smallest_subnormal, 1.0]
    rng = np.random.default_rng(leaves)
    for trial in range(20):
        values = rng.standard_normal((3, leaves)) * 10.0 ** rng.uniform(-3, 3, (3, leaves))
        if trial % 2:  # every other trial: each leaf a special value with probability 1/2
            picks = rng.choice(specials, size=values.shape)
            values = np.where(rng.random(values.shape) < 0.5, picks, values)
        if trial == 2:
            values[:] = -0.0  # an all-negative-zero sum stays -0.0
        a = values.astype(as_dtype(dtype))
        # leaves as one-row lanes: row_sum is the identity, so total() is the tree alone
        with np.errstate(all="ignore"):  # inf - inf and overflow are part of the test
            got = total(split(a, "pairwise")._replace(head=a[..., None, :], tail=None))
            (want,) = tree_reduce((a,), lambda p, q: (p + q,))
        assert np.asarray(got).tobytes() == np.asarray(want).tobytes(), (dtype, leaves, trial)


@pytest.mark.parametrize("dtype", vs.DTYPES)
@pytest.mark.parametrize("compensated", [False, True])
@pytest.mark.parametrize(
    "shape",
    [(40,), (32 * 45 + 7,), (3, 32 * 20), (2, 3, 32 * 9 + 31), (40, 32 * 3 + 1), (7, 5, 64)],
)
@pytest.mark.parametrize("leading", [False, True])
def test_deviation_sums_in_lane_blocks_equal_the_sums_of_the_written_deviations(
    dtype: str,
    compensated: bool,
    shape: tuple[int, ...],
    leading: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a tiny lane block, so that every shape is taken several blocks at a time
    monkeypatch.setattr(summation, "_LANE_BLOCK", 16)
    rng = np.random.default_rng(shape[-1])
    values = rng.standard_normal(shape) * 10.0 ** rng.uniform(-2, 2, size=shape) + 1e2
    a = values.astype(as_dtype(dtype))
    if leading:  # the reduced axis stored first: strided lanes, sums stored lane-major
        a = np.moveaxis(np.ascontiguousarray(np.moveaxis(a, -1, 0)), 0, -1)
    p = split(a, "pairwise")
    with np.errstate(all="ignore"):
        center = total(p) / a.dtype.type(shape[-1])
    add_up = compensated_sum if compensated else total
    with np.errstate(all="ignore"):  # float16 squares overflow: part of the comparison
        d = deviations(p, center)
        want = add_up(d), add_up(squares(d, in_place=True))
        got = deviation_sums(p, center, compensated=compensated)
        if not compensated:  # two_pass's sum of squares, blocked the same way
            want = (*want, want[1])
            got = (*got, squared_deviation_total(p, center))
    for g, w in zip(got, want, strict=True):
        assert np.asarray(g).tobytes() == np.asarray(w).tobytes(), (dtype, compensated, shape)


@pytest.mark.parametrize("dtype", vs.DTYPES)
@pytest.mark.parametrize("summation_order", vs.SUMMATIONS)
@pytest.mark.parametrize(
    "shape", [(5,), (32,), (33,), (32 * 7,), (32 * 40 + 31,), (4, 32 * 3 + 5), (2, 3, 100)]
)
@pytest.mark.parametrize("layout", ["c", "strided", "transposed"])
def test_compiled_sums_give_the_numpy_bits(
    dtype: str,
    summation_order: str,
    shape: tuple[int, ...],
    layout: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # with numba (the jit extra) total() and squared_deviation_total() of float32 and
    # float64 lanes run compiled; without it, in NumPy vector operations: the two must
    # agree bit for bit, signed zeros, inf and NaN included
    pytest.importorskip("numba")
    rng = np.random.default_rng(shape[-1])
    values = rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 3, size=shape) + 1e2
    if shape[-1] > 40:
        values[..., 7] = -0.0
        values[..., -1] = np.inf
        values[(0,) * (len(shape) - 1) + (20,)] = np.nan  # one NaN, in the first slice
    if shape[-1] == 32 * 7:  # 7 leaves: one slot of -0.0 padding in the tree
        values[...] = -0.0  # a sum of negative zeros is -0.0, in the tree's padding too
    a = values.astype(as_dtype(dtype))
    if layout == "strided":
        a = np.repeat(a, 2, axis=-1)[..., ::2]
    elif layout == "transposed":
        a = np.ascontiguousarray(np.moveaxis(a, -1, 0))
        a = np.moveaxis(a, 0, -1)
    p = split(a, summation_order)
    results = []
    for jit in (True, False):
        monkeypatch.setattr(summation, "_USE_JIT", jit)
        with np.errstate(all="ignore"):
            s = total(p)
            center = s / a.dtype.type(shape[-1])
            results.append((s, squared_deviation_total(p, center)))
    for compiled, plain in zip(*results, strict=True):
        assert np.asarray(compiled).dtype == np.asarray(plain).dtype
        assert np.asarray(compiled).tobytes() == np.asarray(plain).tobytes()


def _sequential_loop(a: Any) -> Any:
    # the definition: s_1 = a_1, s_k = s_{k-1} + a_k, every sum rounded in a.dtype
    s = a[..., 0].copy()
    for k in range(1, a.shape[-1]):
        s = np.add(s, a[..., k])
    return s


def _awkward(shape: tuple[int, ...], dtype: str, seed: int) -> Any:
    # wide magnitudes, signed zeros, an overflow to inf and a NaN in some slices
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(shape) * 10.0 ** rng.uniform(-8, 8, size=shape)
    values[..., 0] = -0.0
    if shape[-1] > 4:
        values[..., 1] = float(finfo(dtype).max)
        values[..., 2] = float(finfo(dtype).max)  # s overflows to inf
    if len(shape) > 1 and shape[-1] > 6:
        values[(0,) * (len(shape) - 1) + (5,)] = np.nan
    with np.errstate(over="ignore"):  # float16: the widest values become inf
        return values.astype(as_dtype(dtype))


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("dtype", vs.DTYPES)
@pytest.mark.parametrize("shape", [(1,), (2,), (7,), (3, 50), (2, 3, 200), (10**4,)])
def test_sequential_sum_steps_like_the_loop(
    jit: bool, dtype: str, shape: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    # with numba (the jit extra) float32/float64 run a compiled loop, otherwise
    # np.add.accumulate: both must be the left-to-right loop, bit for bit
    monkeypatch.setattr(array_api, "_USE_JIT", jit)
    a = _awkward(shape, dtype, shape[-1])
    with np.errstate(all="ignore"):
        got, want = array_api.sequential_sum(a), _sequential_loop(a)
    assert np.shape(got) == np.shape(want)
    assert np.asarray(got).dtype == want.dtype
    assert np.asarray(got).tobytes() == want.tobytes()
    strided = np.asarray(a)[..., ::2]  # a non-contiguous slice takes the same path
    with np.errstate(all="ignore"):
        assert (
            np.asarray(array_api.sequential_sum(strided)).tobytes()
            == _sequential_loop(strided).tobytes()
        )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(1,), (2,), (9,), (4, 33), (2, 3, 200)])
def test_compiled_neumaier_gives_the_vectorized_bits(
    dtype: str, shape: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    if array_api.neumaier_sum(np.zeros(2)) is None:
        pytest.skip("numba is not installed")
    a = _awkward(shape, dtype, 7 * shape[-1])
    with np.errstate(all="ignore"):
        compiled = _neumaier_sequential(a)
        monkeypatch.setattr(array_api, "_USE_JIT", False)
        plain = _neumaier_sequential(a)
        loop = _neumaier_loop(a)
    for got, want in zip(compiled, plain, strict=True):
        assert got.shape == want.shape
        assert got.tobytes() == want.tobytes()
    assert compiled[0][..., 0].tobytes() == np.asarray(loop[0]).tobytes()
