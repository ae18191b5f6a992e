"""Summation orders: the fast NumPy paths add in the same order as the plain loops."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import varstats as vs
from varstats import array_api
from varstats.precision import as_dtype, finfo
from varstats.summation import _neumaier_sequential, compensated_sum, row_sum, split


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
