"""dot2's two implementations of its lane passes give the same bits.

The NumPy path reads the lanes in cache-sized blocks; with numba (the ``jit`` extra)
the same scalar operations run compiled. Both are checked against the exact oracle by
``tests/test_recommendation.py``; here they are checked against each other, bit for
bit, on shapes that exercise the padding of the last lanes and several blocks.
"""

from __future__ import annotations

import numpy as np
import pytest

import varstats as vs
from varstats import dot2
from varstats.precision import as_dtype, round_to

SHAPES = [(1,), (2,), (31,), (33,), (64,), (1000,), (3, 7), (4, 33), (2, 3, 129), (100_003,)]
FIELDS = ("mean", "m2", "m2_head", "m2_tail", "exponent")


def _both(x: np.ndarray, acc: str, monkeypatch: pytest.MonkeyPatch) -> list[dot2.DoubleWordMoments]:
    out = []
    for jit in (False, True):
        monkeypatch.setattr(dot2, "_USE_JIT", jit)
        with np.errstate(all="ignore"):
            out.append(dot2.dot2_two_pass(x, acc=as_dtype(acc)))
    return out


@pytest.mark.parametrize("acc", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("offset", [0.0, 1e3, -1e-20, 1e30])
def test_compiled_passes_give_the_numpy_bits(
    acc: str, shape: tuple[int, ...], offset: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("numba")
    rng = np.random.default_rng(shape[-1])
    x = round_to(rng.standard_normal(shape) * 10.0 ** rng.uniform(-2, 2) + offset, acc)
    plain, compiled = _both(x, acc, monkeypatch)
    for field in FIELDS:
        a, b = np.asarray(getattr(plain, field)), np.asarray(getattr(compiled, field))
        assert a.dtype == b.dtype
        assert a.shape == b.shape
        assert a.tobytes() == b.tobytes(), field


@pytest.mark.parametrize("storage", vs.DTYPES)
def test_blocks_of_lanes_cover_every_value(storage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # many blocks of few lanes: the variance still matches the exact one within 1 ulp
    monkeypatch.setattr(dot2, "_BLOCK", 8 * dot2.DOT2_ROWS)
    monkeypatch.setattr(dot2, "_USE_JIT", False)
    x = round_to(np.random.default_rng(3).standard_normal(5003) + 7.0, storage)
    acc = vs.recommended(storage)["precision"].accumulator
    got = dot2.dot2_two_pass(x, acc=as_dtype(acc)).var()
    exact = vs.oracle.exact_var(x)
    assert vs.metrics.ulps(got, exact, acc) <= 1
