"""Summation orders: the fast NumPy paths add in the same order as the plain loops."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import varstats as vs
from varstats.precision import as_dtype
from varstats.summation import compensated_sum, row_sum, split


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
