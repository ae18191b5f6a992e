"""Tests for varstats.cases: seeded generators and the public reproduction cases.

Stored values are checked bit for bit against exact rational construction
(`fractions.Fraction` rounded once to the target format), never against numbers
the code produced earlier.
"""

from __future__ import annotations

import inspect
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

import varstats.cases as cases_module
from varstats.cases import (
    DISTRIBUTIONS,
    LAYOUTS,
    ORDERS,
    PUBLIC_CASES,
    generate,
    kappa,
    max_offset_ratio,
    offset_ratios,
    scale_range,
)
from varstats.precision import DTYPES, as_dtype, finfo

EXPECTED_CASES = {
    "ort_28463",
    "ort_21935",
    "trtllm_outlier",
    "torch_51102",
    "torch_40302",
    "tf_118179",
    "tf_117318",
    "daft_7468",
    "comet_6044",
    "pg_15307",
    "overflow_sq",
}

_UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def nearest(q: Fraction, dtype: Any) -> float:
    """The value of ``dtype`` nearest to the rational ``q``, ties to even (by brute force)."""
    dt = as_dtype(dtype)
    guess = np.asarray(float(q)).astype(dt)  # within one ulp of the answer
    uint = _UINT[dt.itemsize]
    bits = int(guess.view(uint))
    top = np.iinfo(uint).max
    candidates = [
        np.asarray(b, dtype=uint).view(dt) for b in (bits - 1, bits, bits + 1) if 0 <= b <= top
    ]

    def key(c: np.ndarray) -> tuple[Fraction, int]:
        even = int(c.view(_UINT[dt.itemsize])) & 1
        return (abs(Fraction(float(c)) - q), even)

    return float(min((c for c in candidates if np.isfinite(c)), key=key))


def exact_m2(row: np.ndarray) -> Fraction:
    values = [Fraction(float(v)) for v in row]
    mean = sum(values, Fraction(0)) / len(values)
    return sum(((v - mean) ** 2 for v in values), Fraction(0))


# ------------------------------------------------------------------ public cases


def test_public_cases_are_exactly_the_eleven_of_design() -> None:
    assert set(PUBLIC_CASES) == EXPECTED_CASES
    for name, case in PUBLIC_CASES.items():
        assert case.name == name


@pytest.mark.parametrize("name", sorted(EXPECTED_CASES))
def test_public_case_is_well_formed(name: str) -> None:
    case = PUBLIC_CASES[name]
    assert case.x.ndim == 2, "rows along axis 0, reduction along the last axis"
    assert case.x.dtype in {as_dtype(d) for d in DTYPES}
    assert not case.x.flags.writeable, "shared case data must be read-only"
    assert np.all(np.isfinite(case.x))
    assert case.op in {"var", "layer_norm", "batch_norm"}
    assert case.correction in (0, 1)
    assert case.url.startswith("https://")
    assert case.source
    assert case.failure
    if case.op != "var":
        assert case.eps is not None
        assert case.eps > 0


@pytest.mark.parametrize(
    ("name", "dtype", "rows", "correction"),
    [
        ("ort_28463", "float32", [["40000", "40001", "40002", "40003"]], 0),
        ("tf_118179", "float32", [["7.5e10"] * 3], 0),
        ("tf_117318", "float32", [["1e15"] * 3], 0),
        ("daft_7468", "float64", [["1000000001", "1000000002", "1000000003"]], 1),
        ("comet_6044", "float64", [["10000000000000000", "10000000000000002"]], 0),
        ("pg_15307", "float64", [["1000000.01", "999999.99"]], 1),
        (
            "overflow_sq",
            "float64",
            [["1e154", "2e154", "3e154"], ["1.4e154", "1.5e154", "1.6e154"]],
            0,
        ),
    ],
)
def test_literal_cases_store_the_nearest_binary_value(
    name: str, dtype: str, rows: list[list[str]], correction: int
) -> None:
    case = PUBLIC_CASES[name]
    assert case.dtype == dtype
    assert case.correction == correction
    expected = [[nearest(Fraction(s), dtype) for s in row] for row in rows]
    assert case.x.shape == (len(rows), len(rows[0]))
    assert case.x.astype(np.float64).tolist() == expected


def test_decimal_cases_are_not_their_decimals() -> None:
    # the stored binary values, not the decimal literals, are the ground truth
    assert float(PUBLIC_CASES["tf_118179"].x[0, 0]) == 74999996416.0
    assert float(PUBLIC_CASES["tf_117318"].x[0, 0]) == 999999986991104.0
    assert Fraction(float(PUBLIC_CASES["pg_15307"].x[0, 0])) != Fraction("1000000.01")


def test_constant_and_outlier_cases() -> None:
    x = PUBLIC_CASES["ort_21935"].x
    assert (x.dtype, x.shape) == (np.float32, (1, 256))
    assert np.all(x == 1234.0)
    x = PUBLIC_CASES["trtllm_outlier"].x
    assert (x.dtype, x.shape) == (np.float32, (1, 10240))
    assert np.count_nonzero(x == 256.0) == 10239
    assert x[0, -1] == 255.0


def test_torch_51102_is_float32_normal_plus_2000() -> None:
    x = PUBLIC_CASES["torch_51102"].x
    assert (x.dtype, x.shape) == (np.float32, (5, 4))
    z = np.random.default_rng(51102).standard_normal((5, 4))
    for xi, zi in zip(x.ravel(), z.ravel(), strict=True):
        z32 = nearest(Fraction(float(zi)), "float32")
        assert float(xi) == nearest(Fraction(z32) + 2000, "float32")


def test_torch_40302_is_float32_normal_times_001_plus_100() -> None:
    x = PUBLIC_CASES["torch_40302"].x
    assert x.dtype == np.float32
    assert x.shape[1] == 32768
    z = np.random.default_rng(40302).standard_normal(x.shape)
    c = Fraction(nearest(Fraction("0.01"), "float32"))
    for i, j in [(0, 0), (0, 1), (1, 777), (2, 32767), (3, 12345)]:
        z32 = Fraction(nearest(Fraction(float(z[i, j])), "float32"))
        scaled = Fraction(nearest(z32 * c, "float32"))
        assert float(x[i, j]) == nearest(scaled + 100, "float32")
    # the report's regime: mean 100, standard deviation 0.01
    assert abs(float(x.astype(np.float64).mean()) - 100.0) < 1e-3
    assert 0.009 < float(x.astype(np.float64).std()) < 0.011


def test_overflow_sq_has_a_finite_variance_but_overflowing_intermediates() -> None:
    x = PUBLIC_CASES["overflow_sq"].x
    big = Fraction(finfo("float64").max)
    m2_first = exact_m2(x[0])
    assert m2_first > big, "row 0: the sum of squared deviations overflows"
    assert m2_first / 3 < big, "row 0: the variance itself is finite"
    assert all(Fraction(float(v)) ** 2 > big for v in x[1]), "row 1: every square overflows"
    assert exact_m2(x[1]) < big


@pytest.mark.parametrize(
    ("name", "expected_var"),
    [
        ("ort_28463", Fraction(5, 4)),
        ("daft_7468", Fraction(1)),  # sample variance of [1, 2, 3]
        ("comet_6044", Fraction(1)),  # population variance of [0, 2]
        ("tf_118179", Fraction(0)),
        ("ort_21935", Fraction(0)),
    ],
)
def test_exact_variance_of_case_matches_the_report(name: str, expected_var: Fraction) -> None:
    case = PUBLIC_CASES[name]
    row = case.x[0]
    assert exact_m2(row) / (len(row) - case.correction) == expected_var


# -------------------------------------------------------------------- generators


@pytest.mark.parametrize("storage", DTYPES)
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_generate_is_deterministic_and_stored_in_storage(
    storage: str, distribution: str, layout: str
) -> None:
    kwargs: dict[str, Any] = {
        "storage": storage,
        "distribution": distribution,
        "offset": 3.0,
        "layout": layout,
        "batch": 3,
        "seed": 7,
    }
    x = generate(50, **kwargs)
    assert x.dtype == as_dtype(storage)
    assert x.shape == (3, 50)
    assert np.all(np.isfinite(x))
    again = generate(50, **kwargs)
    assert np.ascontiguousarray(x).tobytes() == np.ascontiguousarray(again).tobytes()
    if distribution != "constant":
        other = generate(50, **{**kwargs, "seed": 8})
        assert not np.array_equal(x, other)


@pytest.mark.parametrize("storage", DTYPES)
@pytest.mark.parametrize("batch", [1, 4])
def test_strided_layout_is_non_contiguous_on_the_reduced_axis(storage: str, batch: int) -> None:
    x = generate(33, storage=storage, layout="strided", batch=batch, seed=3)
    c = generate(33, storage=storage, layout="contiguous", batch=batch, seed=3)
    assert x.shape == c.shape == (batch, 33)
    assert abs(x.strides[-1]) > x.itemsize
    assert not x.flags.c_contiguous
    assert c.flags.c_contiguous
    assert c.strides[-1] == c.itemsize
    assert np.array_equal(x, c), "layout changes memory order, never values"


@pytest.mark.parametrize("storage", DTYPES)
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_near_overflow_scale_gives_finite_data(storage: str, distribution: str) -> None:
    _, hi = scale_range(storage)
    for offset in (0.0, hi, finfo(storage).max / 2):
        x = generate(
            2000, storage=storage, distribution=distribution, scale=hi, offset=offset, seed=1
        )
        assert np.all(np.isfinite(x))
    # far beyond the range: values saturate at max, never inf
    x = generate(100, storage=storage, scale=finfo(storage).max, seed=1)
    assert np.all(np.isfinite(x))
    assert np.max(np.abs(x.astype(np.float64))) == finfo(storage).max


@pytest.mark.parametrize("storage", DTYPES)
def test_near_underflow_scale_reaches_the_subnormal_range(storage: str) -> None:
    lo, hi = scale_range(storage)
    fi = finfo(storage)
    assert lo == fi.tiny
    assert hi < fi.max
    x = generate(1000, storage=storage, scale=lo, seed=2).astype(np.float64)
    assert np.all(np.isfinite(x))
    assert np.any(x != 0)
    assert np.any((x != 0) & (np.abs(x) < fi.tiny)), "some values are subnormal"


@pytest.mark.parametrize("distribution", ["normal", "uniform", "lognormal", "one_outlier"])
def test_unit_spread_sets_mean_and_std(distribution: str) -> None:
    x = generate(20000, storage="float64", distribution=distribution, offset=5.0, scale=2.0)
    assert abs(x.mean() - 5.0) < 0.1
    assert abs(x.std() - 2.0) < 0.1


def test_constant_and_one_outlier_shapes() -> None:
    x = generate(10, storage="float32", distribution="constant", offset=256.0, scale=1.0, batch=2)
    assert np.all(x == np.float32(257.0))
    x = generate(10, storage="float64", distribution="one_outlier", batch=5, seed=4)
    for row in x:
        values, counts = np.unique(row, return_counts=True)
        assert sorted(counts.tolist()) == [1, 9]
        assert values[counts == 1][0] > values[counts == 9][0]


@pytest.mark.parametrize("storage", DTYPES)
def test_max_offset_ratio_is_where_the_grid_swallows_the_spread(storage: str) -> None:
    r = max_offset_ratio(storage)
    assert r == 1 / finfo(storage).unit_roundoff
    assert offset_ratios(storage)[0] == 1.0
    assert offset_ratios(storage)[-1] <= r
    assert 10 * offset_ratios(storage)[-1] > r
    at_limit = generate(4000, storage=storage, offset=r, seed=5)
    beyond = generate(4000, storage=storage, offset=16 * r, seed=5)
    assert len(np.unique(at_limit)) >= 5, "at the limit the spread is still resolved"
    assert len(np.unique(beyond)) <= 3, "beyond it the data collapse onto the offset"


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"storage": "float8"}, "storage"),
        ({"storage": "float32", "distribution": "cauchy"}, "distribution"),
        ({"storage": "float32", "layout": "fortran"}, "layout"),
        ({"storage": "float32", "batch": 0}, "batch"),
        ({"storage": "float32", "scale": -1.0}, "scale"),
        ({"storage": "float32", "offset": float("inf")}, "offset"),
        ({"storage": "float32", "order": "random"}, "order"),
    ],
)
def test_generate_rejects_bad_arguments_by_name(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        generate(10, **kwargs)
    with pytest.raises(ValueError, match="n"):
        generate(0, storage="float32")


# ------------------------------------------------------------------------- orders


@pytest.mark.parametrize("storage", DTYPES)
@pytest.mark.parametrize("order", ORDERS)
def test_every_order_holds_the_drawn_values(storage: str, order: str) -> None:
    kw: dict[str, Any] = {"storage": storage, "offset": 10.0, "batch": 3, "seed": 11}
    for distribution in ("normal", "one_outlier"):
        drawn = generate(50, distribution=distribution, **kw)
        x = generate(50, distribution=distribution, order=order, **kw)
        assert x.dtype == drawn.dtype
        assert x.flags.c_contiguous
        # the same values, so the same exact variance: only the reduction order differs
        np.testing.assert_array_equal(np.sort(x, axis=-1), np.sort(drawn, axis=-1))
        np.testing.assert_array_equal(x, generate(50, distribution=distribution, order=order, **kw))
        x64 = x.astype(np.float64)
        if order == "ascending":
            assert np.all(np.diff(x64, axis=-1) >= 0)
        elif order == "descending":
            assert np.all(np.diff(x64, axis=-1) <= 0)
        elif order == "outlier_first":
            rows = [[Fraction(float(v)) for v in row] for row in x64]
            for row in rows:
                mean = sum(row, Fraction(0)) / len(row)
                assert abs(row[0] - mean) == max(abs(v - mean) for v in row)
        elif order == "drawn":
            np.testing.assert_array_equal(x, drawn)


def test_outlier_first_puts_the_one_outlier_in_front() -> None:
    x = generate(1000, storage="float32", distribution="one_outlier", offset=100.0, batch=4)
    y = generate(
        1000,
        storage="float32",
        distribution="one_outlier",
        offset=100.0,
        batch=4,
        order="outlier_first",
    )
    assert np.all(y[:, 0] == x.max(axis=-1))
    assert np.all(y[:, 1:] == y[:, 1:2])


# ------------------------------------------------------------------------- kappa


def test_kappa_against_hand_values() -> None:
    # x = [1, 2, 3]: mean 2, S = 2, kappa = ||x|| / sqrt(S) = sqrt(14 / 2)
    assert kappa(3, 2.0, 2.0) == pytest.approx(np.sqrt(7.0), rel=1e-15)
    assert kappa(3, 0.0, 2.0) == 1.0
    assert kappa(5, 1.0, 0.0) == np.inf, "constant nonzero data"
    assert kappa(5, 0.0, 0.0) == 1.0, "all-zero data"
    assert np.isnan(kappa(5, np.nan, 1.0))
    # depends on S only through S / n: the population-variance form avoids overflow
    row = PUBLIC_CASES["overflow_sq"].x[0]
    var = float(exact_m2(row) / 3)
    assert kappa(1, 2e154, var) == pytest.approx(np.sqrt(1 + 3 * 4 / 2), rel=1e-15)
    assert kappa([3, 3], [2.0, 0.0], [2.0, 2.0]).shape == (2,)


def test_all_is_complete() -> None:
    public = {
        name
        for name, obj in vars(cases_module).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == cases_module.__name__
    }
    assert public <= set(cases_module.__all__)
    assert all(hasattr(cases_module, name) for name in cases_module.__all__)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"offset": 10**400}, ValueError, "offset"),
        ({"scale": 10**400}, ValueError, "scale"),
        ({"offset": "1"}, TypeError, "offset"),
        ({"scale": None}, TypeError, "scale"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": 1.5}, TypeError, "seed"),
        ({"seed": True}, TypeError, "seed"),
    ],
)
def test_generate_names_a_bad_argument(kwargs: dict[str, Any], error: type, name: str) -> None:
    with pytest.raises(error, match=name):
        generate(3, storage="float32", **kwargs)


def _exp_rounded_to_float32(z: float) -> np.float32:
    import mpmath

    with mpmath.workprec(200):
        e = mpmath.exp(mpmath.mpf(z))
    with mpmath.workprec(24):
        return np.float32(float(+e))


def test_lognormal_exp_is_correctly_rounded_to_float32() -> None:
    # the lognormal data must not depend on the CPU's SIMD exp: exp is rounded once to float32
    from varstats.cases import _exp_float32

    rng = np.random.default_rng(11)
    z = rng.standard_normal(2000)
    # plus arguments whose exp lies within float64 ulps of a float32 rounding boundary
    mids = 1.0 + (2 * np.arange(1, 200) + 1) * 2.0**-24
    z = np.concatenate([z, np.log(mids)])
    got = _exp_float32(z)
    want = np.array([_exp_rounded_to_float32(float(v)) for v in z], dtype=np.float32)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
