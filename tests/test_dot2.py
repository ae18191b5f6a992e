"""dot2's two implementations of its lane passes give the same bits.

The NumPy path reads the lanes in cache-sized blocks; with numba (the ``jit`` extra)
the same scalar operations run compiled, in blocks of ``_jit_lanes`` lanes whose lane
trees are joined as the blocks arrive. Both are checked against the exact oracle by
``tests/test_recommendation.py``; here they are checked against each other, bit for
bit, on shapes that exercise the padding of the last lanes, several blocks (whole and
partial), batch axes and data on both sides of the fused-square bound, of the scaling
range and of the normal range.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import varstats as vs
from varstats import dot2
from varstats.precision import as_dtype, round_to

# elements in one whole block of compiled lanes (float32: two blocks of float64)
_LANES = 32 * dot2._jit_lanes(np.dtype(np.float32))
SHAPES = [
    *[(1,), (2,), (31,), (33,), (64,), (1000,), (3, 7), (4, 33), (2, 3, 129), (100_003,)],
    *[(2 * _LANES,), (3 * _LANES + 17,), (2, _LANES + 1), (7 * _LANES - 5,), (33, 2049)],
]
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


def _hard_cases(acc: str) -> dict[str, np.ndarray]:
    """Data at the edges of the compiled path's conditions, from the format's constants."""
    fi = vs.finfo(acc)
    rng = np.random.default_rng(7)
    v = round_to(rng.standard_normal(1001), acc)
    bound = dot2._fused_square_bound(as_dtype(acc))
    low, high = dot2._scale_bounds(2001, as_dtype(acc))
    steps = 1.0 + np.arange(1999) * fi.eps
    tiny = np.sqrt(fi.tiny) * 2.0**-10 * np.arange(1, 6)  # squares below the normal range
    cases = {
        # mu = 0: the squares' errors come from Veltkamp's split (no fma)
        "zero_mean": np.concatenate([v, -v]),
        "zero_mean_subnormal_squares": np.concatenate([v, -v, tiny]),
        # the largest values +-1 cancel; mu is about the rest's value
        "mean_at_fused_bound": np.concatenate([[1.0, -1.0], bound * steps]),
        "mean_below_fused_bound": np.concatenate([[1.0, -1.0], bound / 2 * steps]),
        "largest_at_upper_scaling_bound": high * np.concatenate([[1.0], v[:2000] / 8]),
        "largest_above_upper_scaling_bound": 2 * high * np.concatenate([[1.0], v[:2000] / 8]),
        "largest_at_lower_scaling_bound": low * np.concatenate([[1.0], v[:2000] / 8]),
        "largest_below_lower_scaling_bound": low / 2 * np.concatenate([[1.0], v[:2000] / 8]),
        "constant": np.full(37, 3.0),
        "one_value": np.array([5.0]),
        "nan": np.array([1.0, np.nan, 3.0]),
        "inf": np.array([1.0, np.inf, 3.0] * 20),
        "sum_overflows": np.full(64, fi.max / 2),
    }
    return {name: round_to(x, acc) for name, x in cases.items()}


@pytest.mark.parametrize("acc", ["float32", "float64"])
@pytest.mark.parametrize("case", sorted(_hard_cases("float64")))
def test_compiled_passes_give_the_numpy_bits_at_the_edges(
    acc: str, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("numba")
    x = _hard_cases(acc)[case]
    for data in (x, np.stack([x, x[::-1], -x])):  # and as a batch
        plain, compiled = _both(data, acc, monkeypatch)
        for field in FIELDS:
            a, b = np.asarray(getattr(plain, field)), np.asarray(getattr(compiled, field))
            assert a.dtype == b.dtype
            assert a.tobytes() == b.tobytes(), (case, field)


@pytest.mark.parametrize("acc", ["float32", "float64"])
def test_compiled_path_runs_on_finite_unscaled_data_only(
    acc: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the comparisons above would pass vacuously if the NumPy path ran both times
    pytest.importorskip("numba")
    cases = _hard_cases(acc)
    numpy_sums = dot2._numpy_sums
    calls: list[int] = []

    def counted(*args: object) -> object:
        calls.append(1)
        return numpy_sums(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(dot2, "_numpy_sums", counted)
    for name in ("zero_mean", "mean_at_fused_bound", "largest_at_upper_scaling_bound"):
        dot2.dot2_two_pass(cases[name], acc=as_dtype(acc))
        assert not calls, name
    for name in ("nan", "largest_above_upper_scaling_bound", "largest_below_lower_scaling_bound"):
        with np.errstate(all="ignore"):
            dot2.dot2_two_pass(cases[name], acc=as_dtype(acc))
        assert calls, name
        calls.clear()


def test_empty_slices_raise_as_without_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    # (vs.var answers NaN for them before calling the kernel)
    for jit in (False, True):
        monkeypatch.setattr(dot2, "_USE_JIT", jit)
        with pytest.raises(ValueError, match="zero-size"):
            dot2.dot2_two_pass(np.zeros((3, 0)), acc=np.dtype(np.float64))
        assert dot2.dot2_two_pass(np.zeros((0, 5)), acc=np.dtype(np.float64)).var().shape == (0,)


@settings(max_examples=200, deadline=None)
@given(
    acc=st.sampled_from(["float32", "float64"]),
    above=st.integers(0, 40),
    x_offset=st.integers(-(2**30), 2**30),
    x_scale=st.integers(-60, 0),
)
def test_split_square_is_exact_above_the_fused_bound(
    acc: str, above: int, x_offset: int, x_scale: int
) -> None:
    # _fused_square_bound's claim: for |mu| >= bound, every d = fl(x - mu) has a
    # Veltkamp error of d**2 that is exact, so fma(d, d, -d*d) (exact whenever the exact
    # error is a float) gives the same bits; checked in rational arithmetic
    dt = as_dtype(acc)
    bound = dot2._fused_square_bound(dt)
    mu = round_to(np.array([bound * 2.0**above * (1 + 1 / 3)]), acc)
    # x near mu (a few ulps to far) or much smaller than mu
    ulp = float(np.spacing(mu[0]))
    near = float(mu[0]) + x_offset * ulp * 2.0**x_scale
    x = round_to(np.array([near, float(mu[0]) * 2.0**x_scale]), acc)
    d = (x - mu).astype(dt)
    p, e = dot2._square(d, dt.type(dot2._format(dt)[3]))
    for di, pi, ei in zip(d, p, e, strict=True):
        exact = Fraction(float(di)) ** 2
        assert Fraction(float(pi)) + Fraction(float(ei)) == exact, (float(di), float(ei))


def test_split_square_can_be_inexact_below_the_fused_bound() -> None:
    # the bound is needed: a deviation near 2**-500 has a square error below the
    # subnormal quantum, so Veltkamp's split (and fma) round it
    d = np.array([2.0**-500 * (1 + 2.0**-52)])
    p, e = dot2._square(d, np.float64(dot2._format(np.dtype(np.float64))[3]))
    assert Fraction(float(p[0])) + Fraction(float(e[0])) != Fraction(float(d[0])) ** 2


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


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("n", "correction"), [(2, 2), (2, 3), (1, 1), (4, 5.5)])
def test_no_degrees_of_freedom_is_nan_with_one_warning(
    jit: bool, dtype: str, n: int, correction: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the double-word division by n - c <= 0 gives inf, NaN or a negative number (it
    # gave -0.5 for [1, 2] with correction 3): the Array API's NaN must win, as for
    # every other algorithm
    monkeypatch.setattr(dot2, "_USE_JIT", jit)
    x = np.arange(1, 2 * n + 1, dtype=as_dtype(dtype)).reshape(2, n)
    with pytest.warns(RuntimeWarning, match="correction") as record:
        v = vs.var(x, axis=1, correction=correction, algorithm="dot2")
    assert len(record) == 1
    assert v.dtype == as_dtype(dtype)
    assert np.isnan(v).all()
    m = dot2.dot2_two_pass(x, acc=as_dtype(dtype))
    with pytest.warns(RuntimeWarning, match="correction"):
        assert np.isnan(m.var(correction)).all()
