"""Compiled float16 accumulation: every step rounds as NumPy's float16 arithmetic does.

The ground truth is NumPy's own conversions (float32 -> float16 is one correct rounding,
ties to even) and its float16 ufuncs (an operation in float32, then that rounding); the
compiled kernels must give the same bits, and every path that uses them must give the
bits of the NumPy path with the JIT switched off.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import varstats as vs
from varstats import half
from varstats.summation import lane_squares, row_sum, split, squared_deviation_total

pytestmark = pytest.mark.skipif(half.compiled() is None, reason="numba is not installed")

F16 = np.finfo(np.float16)


@pytest.fixture
def no_jit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(half, "_USE_JIT", False)


def _bits(a: Any) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def _numpy_round(v: Any) -> Any:
    with np.errstate(over="ignore"):
        return np.asarray(v, dtype=np.float32).astype(np.float16).astype(np.float32)


def test_widen_is_numpys_cast_for_every_float16() -> None:
    h = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    assert _bits(half.widen_half(h)) == _bits(h.astype(np.float32))


def _edge_values() -> Any:
    # every float16 value, the float32 midpoints between neighbours (the ties), their
    # float32 neighbours, the overflow threshold 65520 and around, NaN payloads
    h = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    values = h[np.isfinite(h)].astype(np.float32)
    values = np.sort(values)
    mid = (values[:-1].astype(np.float64) + values[1:]) / 2  # exact in float32 (p = 24)
    mid32 = mid.astype(np.float32)
    assert np.array_equal(mid32.astype(np.float64), mid)
    top = np.float32(F16.max) + np.float32(F16.eps * 2.0**15 / 2)  # 65520
    beyond = np.array([top, np.float32(2**16), np.float32(1e30), np.inf], dtype=np.float32)
    finite = np.concatenate([values, mid32, beyond])
    finite = np.concatenate([finite, -finite])
    around = np.concatenate(
        [np.nextafter(finite, np.float32(np.inf)), np.nextafter(finite, np.float32(-np.inf))]
    )
    nan_bits = np.array(
        [0x7F800001, 0x7F801FFF, 0x7F802000, 0x7FC00000, 0x7FBFFFFF, 0xFFC00001, 0xFF800001],
        dtype=np.uint32,
    )
    return np.concatenate([finite, around, nan_bits.view(np.float32)])


def test_round_half_is_numpys_cast_on_every_edge() -> None:
    v = _edge_values()
    assert _bits(half.round_half(v)) == _bits(_numpy_round(v))


def test_round_half_ties_go_to_even() -> None:
    # 1 + 2**-11 lies halfway between 1 and 1 + 2**-10: the even one is 1
    assert half.round_half(np.float32(1 + 2**-11))[()] == 1.0
    assert half.round_half(np.float32(1 + 3 * 2**-11))[()] == 1 + 2 * 2**-10
    # half the smallest subnormal is a tie with zero, which is even
    tiny = F16.smallest_subnormal.astype(np.float32)
    assert half.round_half(tiny / 2)[()] == 0.0
    assert half.round_half(tiny * np.float32(1.5))[()] == 2 * tiny
    # 65520 ties between 65504 (odd) and 65536 (even, past the range): inf
    assert half.round_half(np.float32(65520))[()] == np.inf
    assert half.round_half(np.nextafter(np.float32(65520), np.float32(0)))[()] == F16.max


def test_round_half_is_the_correct_rounding_of_the_exact_value() -> None:
    # a float32 is exact in float64, and NumPy's float64 -> float16 cast is a separate
    # single correct rounding (npy_doublebits_to_halfbits), not the float32 one
    v = _edge_values()
    with np.errstate(all="ignore"):
        want = v.astype(np.float64).astype(np.float16).astype(np.float32)
    got = half.round_half(v)
    nan = np.isnan(v)
    assert _bits(got[~nan]) == _bits(want[~nan])
    assert np.isnan(got[nan]).all()


def test_round_half_is_numpys_cast_on_a_sweep_of_all_bit_patterns() -> None:
    # every 4093rd float32 bit pattern (a million, both signs, every exponent, NaNs,
    # the prime stride varying the low bits); all 2**32 were compared once, too slow
    # for the suite
    bits = np.arange(0, 2**32, 4093, dtype=np.uint64).astype(np.uint32)
    v = bits.view(np.float32)
    assert _bits(half.round_half(v)) == _bits(_numpy_round(v))


@given(hnp.arrays(np.float32, st.integers(1, 300), elements=st.floats(width=32)))
def test_round_half_is_numpys_cast_on_any_float32(v: Any) -> None:
    assert _bits(half.round_half(v)) == _bits(_numpy_round(v))


@given(hnp.arrays(np.uint32, st.integers(1, 300)))
def test_round_half_is_numpys_cast_on_any_bit_pattern(bits: Any) -> None:
    v = bits.view(np.float32)
    assert _bits(half.round_half(v)) == _bits(_numpy_round(v))


def test_round_half_without_the_jit_is_the_cast(no_jit: None) -> None:
    v = _edge_values()
    assert _bits(half.round_half(v)) == _bits(_numpy_round(v))


# Lane loops: float16 bit patterns of every kind (subnormals, inf, NaN, both zeros)
_half_bits = hnp.arrays(
    np.uint16,
    st.tuples(st.integers(1, 3), st.integers(1, 40), st.integers(1, 40)),
)


def _loop_sums(head: Any) -> Any:
    # the definition with NumPy's float16 ufuncs: each lane down its rows
    s = head[..., 0, :].copy()
    for k in range(1, head.shape[-2]):
        s = np.add(s, head[..., k, :])
    return s


def _loop_squares(head: Any, c: Any) -> Any:
    d = np.subtract(head[..., 0, :], c)
    s = np.multiply(d, d)
    for k in range(1, head.shape[-2]):
        d = np.subtract(head[..., k, :], c)
        s = np.add(s, np.multiply(d, d))
    return s


@given(_half_bits)
def test_lane_sums_round_each_step_like_numpys_float16_add(bits: Any) -> None:
    head = bits.view(np.float16)
    with np.errstate(all="ignore"):
        got, want = half.lane_sums(head), _loop_sums(head)
    assert got is not None
    assert got.dtype == np.float16
    assert _bits(got) == _bits(want)


@given(_half_bits, st.data())
def test_lane_squares_round_each_step_like_numpys_float16_ops(bits: Any, data: Any) -> None:
    head = bits.view(np.float16)
    per_lane = data.draw(st.booleans())
    shape = (head.shape[0], head.shape[2]) if per_lane else (head.shape[0], 1)
    c = data.draw(hnp.arrays(np.uint16, shape)).view(np.float16)
    with np.errstate(all="ignore"):
        got, want = half.lane_squares(head, c), _loop_squares(head, c)
    assert got is not None
    assert got.dtype == np.float16
    assert _bits(got) == _bits(want)


@given(_half_bits, st.data())
def test_deviations_and_squares_round_like_numpys_float16_ufuncs(bits: Any, data: Any) -> None:
    a = bits.view(np.float16)
    lead = data.draw(st.integers(a.ndim - 2, a.ndim - 1))  # (..., rows, m) or (..., L)
    c = data.draw(hnp.arrays(np.uint16, a.shape[:lead])).view(np.float16)
    with np.errstate(all="ignore"):
        d, want_d = half.deviations(a, c), a - c.reshape(c.shape + (1,) * (a.ndim - lead))
        sq, want_sq = half.squares(a), a * a
    assert d is not None
    assert sq is not None
    assert _bits(d) == _bits(want_d)
    assert _bits(sq) == _bits(want_sq)


def _loop_neumaier(head: Any) -> tuple[Any, Any]:
    # the definition: TwoSum down each lane with NumPy's float16 ufuncs, errors added
    # to c from +0
    s = head[..., 0, :].copy()
    c = np.zeros_like(s)
    for k in range(1, head.shape[-2]):
        x = head[..., k, :]
        t = s + x
        z = t - s
        e = (s - (t - z)) + (x - z)
        s, c = t, c + e
    return s, c


@given(_half_bits)
def test_neumaier_rows_round_each_step_like_numpys_float16_ufuncs(bits: Any) -> None:
    head = bits.view(np.float16)
    with np.errstate(all="ignore"):
        got, want = half.neumaier_rows(head), _loop_neumaier(head)
    assert got is not None
    assert _bits(got[0]) == _bits(want[0])
    assert _bits(got[1]) == _bits(want[1])


@given(hnp.arrays(np.uint16, st.tuples(st.integers(1, 200), st.integers(1, 300))))
def test_sequential_sum_is_numpys_accumulate(bits: Any) -> None:
    a = bits.view(np.float16)
    with np.errstate(all="ignore"):
        got, want = half.sequential_sum(a), np.add.accumulate(a, axis=-1)[..., -1]
    assert got is not None
    assert _bits(got) == _bits(want)


def test_lane_loops_take_any_layout() -> None:
    rng = np.random.default_rng(1)
    base = (rng.standard_normal((4, 32, 70)) * 300).astype(np.float16)
    for head in (base[:, :, ::3], np.asfortranarray(base), base[::2], np.moveaxis(base, 0, 1)):
        c = head[..., 0, :1]
        with np.errstate(all="ignore"):
            assert _bits(half.lane_sums(head)) == _bits(_loop_sums(head))
            assert _bits(half.lane_squares(head, c)) == _bits(_loop_squares(head, c))
            assert _bits(half.deviations(head, c[..., 0])) == _bits(head - c[..., None])
            assert _bits(half.squares(head)) == _bits(head * head)
            assert _bits(half.neumaier_rows(head)) == _bits(np.stack(_loop_neumaier(head)))
            assert _bits(half.sequential_sum(head)) == _bits(
                np.add.accumulate(head, axis=-1)[..., -1]
            )


def test_lane_loops_leave_other_dtypes_to_numpy() -> None:
    head = np.ones((2, 32, 8), dtype=np.float32)
    assert not half.handles(head)
    assert half.handles(head.astype(np.float16))
    assert half.lane_sums(head) is None
    assert half.lane_squares(head, head[..., 0, :]) is None
    assert half.lane_sums(head.astype(ml_dtypes.bfloat16)) is None
    assert half.deviations(head, head[:, 0, 0]) is None
    assert half.squares(head) is None
    assert half.neumaier_rows(head) is None
    assert half.sequential_sum(head) is None


def test_lane_loops_are_off_without_the_jit(no_jit: None) -> None:
    head = np.ones((2, 32, 8), dtype=np.float16)
    assert half.compiled() is None
    assert not half.handles(head)
    assert half.lane_sums(head) is None
    assert half.lane_squares(head, head[..., 0, :]) is None
    assert half.deviations(head, head[:, 0, 0]) is None
    assert half.squares(head) is None
    assert half.neumaier_rows(head) is None
    assert half.sequential_sum(head) is None


def _data(shape: tuple[int, ...], *, special: bool) -> Any:
    rng = np.random.default_rng(len(shape))
    values = rng.standard_normal(shape) * 10.0 ** rng.uniform(-6, 1, size=shape) + 3.0
    if special:  # magnitudes up to the float16 range, and one of each special value
        values *= 10.0 ** rng.uniform(0, 4, size=shape)
    with np.errstate(over="ignore"):  # the largest magnitudes become inf on purpose
        x = values.astype(np.float16)
    flat = x.reshape(-1)
    if special:
        flat[3], flat[10], flat[17] = np.inf, F16.smallest_subnormal, -F16.max
        flat[25] = np.nan
    return x


# every precision with float16 storage: float16 accumulators run the compiled lane
# loops, wider ones the compiled widening of the data
HALF_STORED = [str(p) for p in vs.PRECISIONS if p.storage == "float16"] + ["float16:float64"]


@pytest.mark.parametrize("precision", HALF_STORED)
@pytest.mark.parametrize("algorithm", vs.ALGORITHMS)
@pytest.mark.parametrize(
    "shape", [(1000,), (4, 333), (3, 2, 64), (5, 40), (2, 32 * (half._BLOCK + 3) + 5)]
)
@pytest.mark.parametrize("special", [False, True])
def test_var_of_float16_data_gives_the_numpy_bits(
    precision: str,
    algorithm: str,
    shape: tuple[int, ...],
    special: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x = _data(shape, special=special)
    with np.errstate(all="ignore"):
        compiled = vs.mean_var(x, axis=-1, precision=precision, algorithm=algorithm)
        monkeypatch.setattr(half, "_USE_JIT", False)
        plain = vs.mean_var(x, axis=-1, precision=precision, algorithm=algorithm)
    for a, b in zip(compiled, plain, strict=True):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        assert _bits(a) == _bits(b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_widen_half_is_numpys_cast_in_any_layout(dtype: str) -> None:
    h = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16).reshape(256, 256)
    for view in (h, h.T, h[::3, 1::2]):
        got = half.widen_half(view, dtype=dtype)
        assert got.flags.c_contiguous
        assert _bits(got) == _bits(view.astype(dtype))
    with pytest.raises(ValueError, match="dtype"):
        half.widen_half(h, dtype=np.float16)


def test_summation_paths_use_the_compiled_loops(monkeypatch: pytest.MonkeyPatch) -> None:
    # the three call sites in varstats.summation: same bits with the JIT on and off
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((3, 32 * 40 + 5)) * 50).astype(np.float16)
    p = split(x, "pairwise")
    assert p.head is not None
    assert half.lane_sums(p.head) is not None  # the compiled path runs
    c = p.head[..., 0, :] - np.float16(1)
    mean = x[..., 0]
    with np.errstate(all="ignore"):
        on = (row_sum(p.head), lane_squares(p.head, c), squared_deviation_total(p, mean))
        monkeypatch.setattr(half, "_USE_JIT", False)
        off = (row_sum(p.head), lane_squares(p.head, c), squared_deviation_total(p, mean))
    for a, b in zip(on, off, strict=True):
        assert _bits(a) == _bits(b)


def _not_called(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("the NumPy loop ran although the compiled one applies")


@pytest.mark.parametrize("lanes", [1, 3, 8, 64])
@pytest.mark.parametrize("shape", [(5,), (1000,), (3, 1001), (2, 2, 77)])
@pytest.mark.parametrize("special", [False, True])
def test_welford_with_float16_accumulators_gives_the_numpy_bits(
    lanes: int, shape: tuple[int, ...], special: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from varstats import kernels

    x = _data(shape, special=special and shape[-1] > 40)
    acc = np.dtype(np.float16)
    with np.errstate(all="ignore"):
        assert half.welford_lanes(x, acc, min(lanes, shape[-1])) is not None
        with pytest.MonkeyPatch.context() as patch:  # README: compiled, no Python loop
            patch.setattr(kernels, "_welford_steps", _not_called)
            compiled = kernels.welford(x, acc=acc, lanes=lanes)
        monkeypatch.setattr(half, "_USE_JIT", False)
        plain = kernels.welford(x, acc=acc, lanes=lanes)
    for field in ("count", "mean", "m2"):
        assert _bits(getattr(compiled, field)) == _bits(getattr(plain, field)), field


def test_welford_counts_past_the_float16_range_like_the_numpy_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # k rounds to float16 each step: 2049 -> 2048, and inf past 65504 (delta / inf = 0)
    from varstats import kernels

    x = (np.random.default_rng(2).standard_normal(70_000) + 4).astype(np.float16)
    acc = np.dtype(np.float16)
    with np.errstate(all="ignore"):
        compiled = kernels.welford(x, acc=acc)
        monkeypatch.setattr(half, "_USE_JIT", False)
        plain = kernels.welford(x, acc=acc)
    assert np.isfinite(np.asarray(plain.m2))
    assert _bits(compiled.mean) == _bits(plain.mean)
    assert _bits(compiled.m2) == _bits(plain.m2)


def test_numpys_float16_ufuncs_pick_a_nan_by_operand_order() -> None:
    # the fact the compiled kernels reproduce: with two NaNs, add and multiply return
    # the second operand's, subtract and divide the first's
    pos, neg = np.array([0x7E00], np.uint16).view(np.float16), np.array([0xFE00], np.uint16)
    neg16 = neg.view(np.float16)
    with np.errstate(all="ignore"):
        assert _bits(pos + neg16) == _bits(neg16)
        assert _bits(pos * neg16) == _bits(neg16)
        assert _bits(pos - neg16) == _bits(pos)
        assert _bits(pos / neg16) == _bits(pos)


@pytest.mark.parametrize("first", [0x7E00, 0xFE00, 0x7C01, 0xFD55])
@pytest.mark.parametrize("second", [0x7E00, 0xFE00, 0x7C01, 0xFD55])
def test_compiled_paths_pick_numpys_nan(
    first: int, second: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from varstats import kernels

    head = np.array([[first] * 20, [second] * 20, [0x3C00] * 20], np.uint16).view(np.float16)
    c = np.array([second], np.uint16).view(np.float16)
    x = np.array([first, 0x3C00, second, 0x4000, 0x3C00], np.uint16).view(np.float16)
    acc = np.dtype(np.float16)
    with np.errstate(all="ignore"):
        assert _bits(half.lane_sums(head)) == _bits(_loop_sums(head))
        assert _bits(half.lane_squares(head, c)) == _bits(_loop_squares(head, c))
        assert _bits(half.deviations(head, c[0])) == _bits(head - c[0])
        compiled = kernels.welford(x, acc=acc)
        monkeypatch.setattr(half, "_USE_JIT", False)
        plain = kernels.welford(x, acc=acc)
    assert _bits(compiled.mean) == _bits(plain.mean)
    assert _bits(compiled.m2) == _bits(plain.m2)
