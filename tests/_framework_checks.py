"""Distances between a real framework's output and varstats' emulation of it.

Shared by ``tests/test_frameworks_*.py``; the frameworks themselves are imported
there, once per test module.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]

# VARSTATS_RECORD_ULPS=file: every measured distance is appended to ``file`` with the
# test that measured it, to collect the numbers docs/frameworks.md states
_RECORD = os.environ.get("VARSTATS_RECORD_ULPS")


def _record(kind: str, value: float) -> None:
    if _RECORD:
        test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
        with open(_RECORD, "a") as f:
            f.write(json.dumps({"test": test, "kind": kind, "value": value}) + "\n")


def ulps(actual: npt.ArrayLike, expected: npt.ArrayLike) -> int:
    """Largest distance in units in the last place, counted on the integer line of floats."""
    a, e = np.asarray(actual), np.asarray(expected)
    assert a.dtype == e.dtype, (a.dtype, e.dtype)
    assert a.shape == e.shape, (a.shape, e.shape)
    if a.size == 0:
        return 0
    itype = {2: np.int16, 4: np.int32, 8: np.int64}[a.dtype.itemsize]

    def line(v: Array) -> Array:
        i = v.view(itype).astype(np.int64)
        # negative floats count down from -0, so the line is monotone through zero
        return np.where(i < 0, np.int64(np.iinfo(itype).min) - i, i)

    both_nan = np.isnan(a) & np.isnan(e)
    d = np.abs(line(a) - line(e))
    result = int(np.max(np.where(both_nan, 0, d)))
    _record("ulps", result)
    return result


def scale_ulps(actual: npt.ArrayLike, expected: npt.ArrayLike, scale: float | None = None) -> float:
    """Largest difference in ulps of the output's scale, ``max|a - e| / spacing(scale)``.

    ``scale`` defaults to ``max|e|``. The measure for outputs that cancel, where an
    element's own ulp exaggerates a rounding difference in one of the terms; for the
    folded form ``x * a + (b - mean * a)`` pass the size of the terms, ``max|x a|``.
    """
    a = np.asarray(actual).astype(np.float64)
    e = np.asarray(expected)
    size = np.max(np.abs(e)) if scale is None else e.dtype.type(scale)
    scale = float(np.spacing(size))
    result = float(np.max(np.abs(a - e.astype(np.float64))) / scale)
    _record("scale_ulps", result)
    return result


def folded_term_size(x: Array, weight: Array, var: Array, eps: float) -> float:
    """``max|x| * max|weight| / sqrt(min var + eps)``: the size of ``x * a`` in a folded form."""
    inv = 1.0 / np.sqrt(np.min(np.asarray(var, dtype=np.float64)) + eps)
    return float(np.max(np.abs(x)) * np.max(np.abs(weight)) * inv)


def nhwc(x: Array) -> Array:
    """Channels-first ``(N, C, ...)`` data in the frameworks' channels-last layout."""
    return np.ascontiguousarray(np.moveaxis(x, 1, -1))


def nchw(y: Array) -> Array:
    """Channels-last output back to channels-first."""
    return np.moveaxis(np.asarray(y), -1, 1)


def layer_data(
    shape: tuple[int, ...], dtype: Any, seed: int, offset: float = 3.0
) -> tuple[Array, Array, Array, Array, Array]:
    """Seeded ``(x, weight, bias, running_mean, running_var)`` for ``shape`` (N, C, ...)."""
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = rng.normal(offset, 1.0, size=shape).astype(dtype)
    w, b = rng.normal(1, 0.1, c).astype(dtype), rng.normal(0, 0.1, c).astype(dtype)
    rm, rv = rng.normal(3, 0.1, c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)
    return x, w, b, rm, rv
