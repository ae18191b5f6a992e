"""Tests of varstats.oracle: the exact ground truth.

The ground truth here is always exact arithmetic: ``fractions.Fraction`` (whose
conversion to float is correctly rounded by CPython) or mpmath at very high precision.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.exceptions import AxisError

import varstats as vs
from varstats import oracle
from varstats.oracle import (
    exact_mean,
    exact_moments,
    exact_normalize,
    exact_var,
    round_ratio,
)
from varstats.precision import DTYPES, as_dtype, finfo, round_to

# ------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------


def frac_float(q: Fraction) -> float:
    """Correctly rounded float64 of an exact rational (CPython's int/int), inf on overflow."""
    try:
        return float(q)
    except OverflowError:
        return math.inf if q > 0 else -math.inf


def fraction_var(values: Any, correction: int = 0) -> Fraction:
    xs = [Fraction(v) for v in np.asarray(values, dtype=np.float64).ravel().tolist()]
    mean = sum(xs, Fraction(0)) / len(xs)
    return sum(((v - mean) ** 2 for v in xs), Fraction(0)) / (len(xs) - correction)


def assert_same_bits(actual: Any, expected: Any, what: str) -> None:
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    assert a.shape == b.shape, what
    both_nan = np.isnan(a) & np.isnan(b)
    same = (a.view(np.uint64) == b.view(np.uint64)) | both_nan
    assert same.all(), f"{what}: {a[~same]} != {b[~same]}"


def bits_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    return np.dtype({2: np.uint16, 4: np.uint32, 8: np.uint64}[dtype.itemsize])


# ------------------------------------------------------------------------------------
# generated arrays: many per hypothesis example (numpy RNG seeded by hypothesis)
# ------------------------------------------------------------------------------------

ARRAYS_PER_EXAMPLE = 26
EXAMPLES = 100  # 4 dtypes x 100 examples x 26 arrays = 10,400 arrays


def _random_finite_bits(rng: np.random.Generator, dtype: np.dtype[Any], shape: Any) -> Any:
    # uniform bit patterns: every binade from subnormals to the largest finite value
    ud = bits_dtype(dtype)
    raw = rng.integers(0, np.iinfo(ud).max, size=shape, dtype=ud, endpoint=True)
    x = raw.view(dtype)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(x.astype(np.float64))
    x[bad] = dtype.type(0)
    return x


def _generate(rng: np.random.Generator, dtype: np.dtype[Any]) -> tuple[Any, Any]:
    fi = finfo(dtype)
    ndim = int(rng.integers(1, 4))
    shape = tuple(int(s) for s in rng.integers(1, 6 if ndim > 1 else 40, size=ndim))
    kind = int(rng.integers(0, 9))
    if kind == 0:
        x = _random_finite_bits(rng, dtype, shape)
    elif kind == 1:  # offset + noise: the ill-conditioned cases
        offset = 10.0 ** rng.uniform(0, math.log10(fi.max) * 0.6)
        scale = 2.0 ** rng.integers(-8, 8)
        x = round_to(offset + scale * rng.standard_normal(shape), dtype)
    elif kind == 2:  # constant
        x = np.full(shape, round_to(rng.standard_normal() * 2.0 ** rng.integers(-20, 20), dtype))
    elif kind == 3:  # single outlier
        base = round_to(rng.uniform(1, 1000), dtype)
        x = np.full(shape, base)
        x.reshape(-1)[int(rng.integers(0, x.size))] = round_to(-float(base) * 1e3, dtype)
    elif kind == 4:  # subnormals only, mixed signs
        k = rng.integers(-(2 ** (fi.mant - 1)) + 1, 2 ** (fi.mant - 1), size=shape)
        x = round_to(k * fi.smallest_subnormal, dtype)
    elif kind == 5:  # near the largest finite value, mixed signs
        u = rng.uniform(0.5, 1.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
        x = round_to(u * fi.max, dtype)
    elif kind == 6:  # mixed magnitudes and signs across the range
        e = rng.uniform(math.log2(fi.smallest_subnormal), math.log2(fi.max), size=shape)
        x = round_to(rng.choice([-1.0, 1.0], size=shape) * 2.0**e, dtype)
    elif kind == 7:  # near the smallest normal
        x = round_to(rng.standard_normal(shape) * fi.tiny, dtype)
    else:  # non-finite values sprinkled in
        x = round_to(rng.standard_normal(shape), dtype)
        flat = x.reshape(-1)
        for _ in range(int(rng.integers(1, 3))):
            flat[int(rng.integers(0, flat.size))] = round_to(
                rng.choice([np.inf, -np.inf, np.nan]), dtype
            )
    x = np.asarray(x, dtype=dtype)
    choice = int(rng.integers(0, 4))
    axis: Any
    if choice == 0:
        axis = None
    elif choice == 1:
        axis = int(rng.integers(-ndim, ndim))
    else:
        k = int(rng.integers(1, ndim + 1))
        axis = tuple(int(a) for a in rng.permutation(ndim)[:k])
        if choice == 3:
            axis = tuple(a - ndim for a in axis)
    return x, axis


def _arrays(seed: int, dtype: np.dtype[Any]) -> Iterator[tuple[Any, Any]]:
    rng = np.random.default_rng(seed)
    for _ in range(ARRAYS_PER_EXAMPLE):
        yield _generate(rng, dtype)


def _check_fast_equals_reference(x: Any, axis: Any) -> None:
    label = f"{x.dtype} shape={x.shape} axis={axis}"
    assert_same_bits(
        exact_mean(x, axis=axis), exact_mean(x, axis=axis, method="reference"), "mean " + label
    )
    n = x.size if axis is None else math.prod(x.shape[a] for a in np.atleast_1d(axis))
    for c in (0, 1) if n > 1 else (0,):
        assert_same_bits(
            exact_var(x, axis=axis, correction=c),
            exact_var(x, axis=axis, correction=c, method="reference"),
            f"var correction={c} {label}",
        )


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=EXAMPLES)
@given(seed=st.integers(0, 2**63 - 1))
def test_fast_equals_reference_bit_for_bit(dtype: str, seed: int) -> None:
    for x, axis in _arrays(seed, as_dtype(dtype)):
        _check_fast_equals_reference(x, axis)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_fast_equals_reference_on_any_bit_pattern(dtype: str, data: st.DataObject) -> None:
    # hypothesis draws (and shrinks) raw bit patterns: NaN, inf, subnormals, max included
    dt = as_dtype(dtype)
    raw = data.draw(hnp.arrays(bits_dtype(dt), hnp.array_shapes(max_dims=2, max_side=8)))
    x = raw.view(dt)
    axis = data.draw(st.sampled_from([None, -1, 0]))
    _check_fast_equals_reference(x, axis)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=25)
@given(seed=st.integers(0, 2**63 - 1))
def test_moments_fast_equal_reference_exactly(dtype: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(4):
        x, axis = _generate(rng, as_dtype(dtype))
        fast = exact_moments(x, axis=axis)
        ref = exact_moments(x, axis=axis, method="reference")
        assert fast.count == ref.count
        for a, b in ((fast.mean, ref.mean), (fast.m2, ref.m2)):
            for u, v in zip(a.ravel().tolist(), b.ravel().tolist(), strict=True):
                assert u == v or (isinstance(u, float) and math.isnan(u) and math.isnan(v))


# ------------------------------------------------------------------------------------
# the one rounding
# ------------------------------------------------------------------------------------


@given(
    num=st.integers(-(2**300), 2**300),
    den=st.integers(1, 2**300),
    exp2=st.integers(-1500, 1500),
)
def test_round_ratio_is_correctly_rounded(num: int, den: int, exp2: int) -> None:
    assert_same_bits(
        round_ratio(num, den, exp2), frac_float(Fraction(num, den) * Fraction(2) ** exp2), "ratio"
    )


@given(
    mant=st.integers(2**52, 2**53 - 1),
    exp2=st.integers(-1130, 975),
    sign=st.sampled_from([-1, 1]),
    offset=st.sampled_from([-1, 0, 1]),
)
def test_round_ratio_breaks_ties_to_even(mant: int, exp2: int, sign: int, offset: int) -> None:
    # (2 mant + 1) / 2 is exactly halfway between two 53-bit integers; offset nudges it
    num = sign * ((2 * mant + 1) * 2**40 + offset)
    q = Fraction(num, 2**41) * Fraction(2) ** exp2
    assert_same_bits(round_ratio(num, 2**41, exp2), frac_float(q), "tie")


def test_round_ratio_boundaries() -> None:
    sub = finfo("float64").smallest_subnormal
    big = finfo("float64").max
    assert round_ratio(1, 2, -1074) == 0.0  # half the smallest subnormal: tie to even 0
    assert round_ratio(3, 2, -1074) == 2 * sub  # 1.5 quanta: tie to even 2
    assert round_ratio(5, 4, -1074) == sub
    half_ulp = Fraction(2) ** 970
    top = Fraction(big) + half_ulp  # the rounding boundary beyond max: ties to even -> inf
    assert round_ratio(top.numerator, top.denominator) == math.inf
    below = top - Fraction(1, 2**60)
    assert round_ratio(below.numerator, below.denominator) == big
    assert round_ratio(-top.numerator, top.denominator) == -math.inf
    assert math.copysign(1.0, round_ratio(0, 5, 10)) == 1.0
    with pytest.raises(ValueError, match="den"):
        round_ratio(1, 0)


# ------------------------------------------------------------------------------------
# known values and public reproduction cases (DESIGN.md)
# ------------------------------------------------------------------------------------


def test_known_values() -> None:
    assert exact_var([1e16, 1e16 + 2]) == 1.0
    assert exact_var(np.array([40000, 40001, 40002, 40003], dtype=np.float32)) == 1.25


def test_stored_doubles_not_decimals_are_the_ground_truth() -> None:
    x = [0.1, 0.2, 0.3]
    stored = frac_float(fraction_var(x))
    ds = [Fraction("0.1"), Fraction("0.2"), Fraction("0.3")]
    decimal_var = sum((d - Fraction("0.2")) ** 2 for d in ds) / 3
    assert decimal_var == Fraction(1, 150)
    decimal = frac_float(decimal_var)
    assert exact_var(x) == stored
    assert exact_var(x, method="reference") == stored
    assert stored != decimal, "the stored doubles' variance differs from the decimal one"
    assert stored == 0.006666666666666665
    assert decimal == 0.006666666666666667


# closed forms of the reproduction cases' variances, where there is one
KNOWN_VAR: dict[str, Fraction] = {
    "ort_28463": Fraction(5, 4),
    "ort_21935": Fraction(0),
    "trtllm_outlier": Fraction(10239, 10240**2),
    "tf_118179": Fraction(0),
    "tf_117318": Fraction(0),
    "daft_7468": Fraction(1),
    "comet_6044": Fraction(1),
}
CASES = {
    name: (case.x, case.correction, KNOWN_VAR.get(name))
    for name, case in vs.cases.PUBLIC_CASES.items()
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_reproduction_case_fast_equals_reference(name: str) -> None:
    x, correction, known = CASES[name]
    axis = -1  # per row for the 2-d cases, whole array for the 1-d ones
    for c in sorted({0, correction}):
        fast = exact_var(x, axis=axis, correction=c)
        assert_same_bits(fast, exact_var(x, axis=axis, correction=c, method="reference"), name)
        rows = np.atleast_2d(x)
        expected = [frac_float(fraction_var(r, c)) for r in rows]
        assert_same_bits(np.atleast_1d(fast), expected, name + " vs Fraction")
        assert np.all(np.isfinite(fast)), f"{name}: exact variance is finite"
    assert_same_bits(exact_mean(x, axis=axis), exact_mean(x, axis=axis, method="reference"), name)
    if known is not None:
        assert exact_var(x, correction=correction) == frac_float(known), name


def test_pg_15307_sample_variance_of_stored_values() -> None:
    x = [1000000.01, 999999.99]
    got = exact_var(x, correction=1)
    assert got == frac_float(fraction_var(x, 1))
    assert got != 0.000244140625
    assert abs(got - 2e-4) < 1e-12


@pytest.mark.parametrize("name", ["ort_21935", "torch_51102"])
def test_reproduction_case_layer_norm_exact(name: str) -> None:
    x, _, _ = CASES[name]
    x2 = np.atleast_2d(x)
    eps = np.float32(vs.cases.PUBLIC_CASES[name].eps)
    fast = exact_normalize(x2, axis=-1, eps=eps)
    assert_same_bits(fast, exact_normalize(x2, axis=-1, eps=eps, method="reference"), name)
    assert_same_bits(fast, _mp_normalize(x2, (1,), Fraction(float(eps))), name + " vs mpmath")
    assert np.all(np.isfinite(fast)), f"{name}: exact layer norm has no NaN"


# ------------------------------------------------------------------------------------
# rounding, range and special values
# ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_subnormal_inputs_are_exact(dtype: str) -> None:
    fi = finfo(dtype)
    x = round_to([fi.smallest_subnormal, 0.0, 2 * fi.smallest_subnormal], dtype)
    assert exact_mean(x) == frac_float(Fraction(fi.smallest_subnormal))
    assert exact_var(x) == frac_float(fraction_var(x))


def test_subnormal_results_round_ties_to_even() -> None:
    sub = finfo("float64").smallest_subnormal
    assert exact_mean([sub, 0.0]) == 0.0  # 2**-1075: tie between 0 and 2**-1074
    assert exact_mean([3 * sub, 0.0]) == 2 * sub  # 1.5 * 2**-1074 -> 2 * 2**-1074


@pytest.mark.parametrize("dtype", DTYPES)
def test_values_near_max(dtype: str) -> None:
    fi = finfo(dtype)
    x = round_to([fi.max, fi.max], dtype)
    assert exact_mean(x) == fi.max  # the exact sum is beyond the range; the mean is not
    y = round_to([-fi.max, fi.max], dtype)
    expected = frac_float(Fraction(fi.max) ** 2)
    assert exact_var(y) == expected
    if dtype == "float64":
        assert expected == math.inf


def test_nonfinite_policy() -> None:
    inf, nan = math.inf, math.nan
    assert exact_mean([1.0, inf]) == inf
    assert exact_mean([1.0, -inf]) == -inf
    assert math.isnan(exact_mean([inf, -inf]))
    assert math.isnan(exact_mean([1.0, nan]))
    assert math.isnan(exact_var([1.0, inf]))  # inf - inf in the deviation
    assert math.isnan(exact_var([inf]))
    assert math.isnan(exact_var([nan, 2.0]))
    out = exact_var(np.array([[1.0, 2.0], [inf, 2.0]]), axis=1)
    assert out[0] == 0.25
    assert math.isnan(out[1])
    y = exact_normalize(np.array([[1.0, 2.0], [inf, 2.0]]), axis=1)
    assert np.all(np.isfinite(y[0]))
    assert np.all(np.isnan(y[1]))


def test_signed_zero_policy() -> None:
    assert math.copysign(1.0, exact_mean([-0.0, -0.0])) == -1.0
    assert math.copysign(1.0, exact_mean([-0.0, 0.0])) == 1.0
    assert math.copysign(1.0, exact_mean([-1.0, 1.0])) == 1.0
    assert math.copysign(1.0, exact_var([-0.0, -0.0])) == 1.0


# ------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------

finite64 = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(st.lists(finite64, min_size=1, max_size=30))
def test_mean_lies_between_min_and_max(xs: list[float]) -> None:
    m = exact_mean(xs)
    assert min(xs) <= m <= max(xs)


@given(st.lists(st.floats(-1e100, 1e100, allow_subnormal=False), min_size=2, max_size=30))
def test_var_scales_by_four_when_data_doubles(xs: list[float]) -> None:
    v = float(exact_var(xs))
    if v == 0 or not (finfo("float64").tiny * 4 <= v <= finfo("float64").max / 4):
        return
    assert exact_var(np.array(xs) * 2) == 4 * v


@given(st.lists(finite64, min_size=1, max_size=30), st.randoms(use_true_random=False))
def test_result_is_invariant_under_permutation(xs: list[float], rnd: Any) -> None:
    ys = list(xs)
    rnd.shuffle(ys)
    assert_same_bits(exact_var(ys), exact_var(xs), "var")
    assert_same_bits(exact_mean(ys), exact_mean(xs), "mean")


def test_reduced_axes_match_explicit_slices() -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3, 4, 5)) * 1e3 + 7).astype(np.float32)
    v = exact_var(x, axis=(0, 2))
    assert v.shape == (4,)
    for j in range(4):
        assert v[j] == frac_float(fraction_var(x[:, j, :]))
    assert_same_bits(exact_var(x, axis=(-1, 0)), v, "negative axes")
    assert_same_bits(exact_var(x, axis=-1), exact_var(x, axis=2), "axis=-1")
    m = exact_mean(x)
    assert isinstance(m, np.float64)
    assert np.ndim(m) == 0
    assert isinstance(exact_var(x), np.float64)


def test_moments_are_exact_rationals() -> None:
    x = [1.0, 2.0, 4.0]
    m = exact_moments(x)
    assert m.count == 3
    assert m.mean[()] == Fraction(7, 3)
    assert m.m2[()] == Fraction(14, 3)
    assert m.var(1)[()] == Fraction(7, 3)
    rows = exact_moments(np.array([[1.0, 3.0], [0.5, 0.5]]), axis=1)
    assert rows.mean.tolist() == [Fraction(2), Fraction(1, 2)]
    assert rows.m2.tolist() == [Fraction(2), Fraction(0)]


def test_correction_is_used_exactly() -> None:
    x = [1.0, 2.0, 4.0]
    assert exact_var(x, correction=0.5) == frac_float(Fraction(14, 3) / Fraction(5, 2))
    assert exact_var(x, correction=0.5, method="reference") == exact_var(x, correction=0.5)


# ------------------------------------------------------------------------------------
# exact normalize
# ------------------------------------------------------------------------------------


def _mp_normalize(
    x: Any,
    axes: tuple[int, ...],
    eps: Fraction,
    weight: Any = None,
    bias: Any = None,
    prec: int = 4000,
) -> Any:
    """Direct evaluation at `prec` bits with mpmath, rounded once via Fraction."""
    x64 = np.asarray(x).astype(np.float64)
    w = np.broadcast_to(1.0 if weight is None else np.asarray(weight).astype(np.float64), x.shape)
    b = np.broadcast_to(0.0 if bias is None else np.asarray(bias).astype(np.float64), x.shape)
    out = np.empty(x.shape)
    kept = [i for i in range(x.ndim) if i not in axes]
    with mpmath.workprec(prec):
        for kidx in np.ndindex(*[x.shape[i] for i in kept]):
            sl: list[Any] = [slice(None)] * x.ndim
            for i, k in zip(kept, kidx, strict=True):
                sl[i] = k
            idx = tuple(sl)
            vals = [Fraction(v) for v in x64[idx].ravel().tolist()]
            mean = sum(vals, Fraction(0)) / len(vals)
            var = sum(((v - mean) ** 2 for v in vals), Fraction(0)) / len(vals)
            d = var + eps
            inv = 1 / mpmath.sqrt(mpmath.mpf(d.numerator) / d.denominator)
            for pos in np.ndindex(x64[idx].shape):
                full = list(idx)
                it = iter(pos)
                full = [next(it) if isinstance(s, slice) else s for s in full]
                t = tuple(full)
                p = Fraction(float(x64[t])) - mean
                y = mpmath.mpf(p.numerator) / p.denominator * inv * mpmath.mpf(float(w[t]))
                y = y + mpmath.mpf(float(b[t]))
                out[t] = frac_float(Fraction(*mpmath.libmp.to_rational(y._mpf_)))
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("shape", "axes"),
    [((3, 2, 4), (0, 2)), ((2, 3, 4), (1, 2)), ((2, 3, 5), (2,)), ((7,), (0,))],
    ids=["batch_norm", "layer_norm", "instance_norm", "vector"],
)
def test_normalize_matches_mpmath_at_4000_bits(
    dtype: str, shape: tuple[int, ...], axes: tuple[int, ...]
) -> None:
    rng = np.random.default_rng(sum(shape) + len(dtype))
    x = round_to(rng.standard_normal(shape) * 3 + 50, dtype)
    cshape = [1] * len(shape)
    cshape[1 if len(shape) > 1 else 0] = shape[1 if len(shape) > 1 else 0]
    weight = round_to(rng.uniform(0.5, 2.0, size=cshape), dtype)
    bias = round_to(rng.standard_normal(cshape), dtype)
    eps = as_dtype(dtype).type(1e-3)
    expected = _mp_normalize(x, axes, Fraction(float(eps)), weight, bias)
    for method in ("fast", "reference"):
        got = exact_normalize(x, axis=axes, eps=eps, weight=weight, bias=bias, method=method)
        assert_same_bits(got, expected, f"{method} {dtype} {shape} {axes}")


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=30)
@given(seed=st.integers(0, 2**63 - 1))
def test_normalize_fast_equals_reference(dtype: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    dt = as_dtype(dtype)
    for _ in range(3):
        x, axis = _generate(rng, dt)
        if x.size > 60:
            continue
        weight = round_to(rng.standard_normal(x.shape[-1:]), dt)
        bias = round_to(rng.standard_normal(x.shape[-1:]) * 2.0 ** rng.integers(-30, 30), dt)
        eps = [0.0, 1e-5, dt.type(1e-3)][int(rng.integers(0, 3))]
        fast = exact_normalize(x, axis=axis, eps=eps, weight=weight, bias=bias)
        ref = exact_normalize(x, axis=axis, eps=eps, weight=weight, bias=bias, method="reference")
        assert_same_bits(fast, ref, f"normalize {dtype} {x.shape} axis={axis}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_input_with_eps_gives_bias_exactly(dtype: str) -> None:
    x = round_to(np.full((2, 3, 4), 1234.0), dtype)
    weight = round_to(np.array([0.5, -2.0, 3.0]).reshape(1, 3, 1), dtype)
    bias = round_to(np.array([0.25, -1.5, 0.0]).reshape(1, 3, 1), dtype)
    for method in ("fast", "reference"):
        y = exact_normalize(x, axis=(0, 2), eps=1e-5, weight=weight, bias=bias, method=method)
        assert_same_bits(y, np.broadcast_to(weight * 0 + bias, x.shape), method)
        nan = exact_normalize(x, axis=(0, 2), eps=0.0, method=method)
        assert np.all(np.isnan(nan)), "0/0 with eps=0 on constant input"


def test_normalize_rational_square_root_is_exact() -> None:
    # var([0, 3]) = 9/4: the square root is rational, y = ±1 exactly, then * w + b
    third = 1 / 3
    for method in ("fast", "reference"):
        y = exact_normalize([0.0, 3.0], axis=0, method=method)
        assert y.tolist() == [-1.0, 1.0]
        z = exact_normalize([0.0, 3.0], axis=0, weight=third, bias=1.0, method=method)
        assert z.tolist() == [frac_float(1 - Fraction(third)), frac_float(1 + Fraction(third))]


def test_group_norm_after_reshape() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 3)).astype(np.float32) + 10
    grouped = x.reshape(2, 2, 2, 3)
    fast = exact_normalize(grouped, axis=(2, 3), eps=np.float32(1e-5))
    expected = _mp_normalize(grouped, (2, 3), Fraction(float(np.float32(1e-5))))
    assert_same_bits(fast, expected, "group norm")


# ------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------


@pytest.mark.parametrize("func", [exact_mean, exact_var, exact_moments])
@pytest.mark.parametrize(
    "bad", [np.arange(3), np.ones(3, dtype=complex), np.array([1.0], dtype=object), [True]]
)
def test_non_float_input_raises_type_error(func: Any, bad: Any) -> None:
    with pytest.raises(TypeError, match="x"):
        func(bad)


@pytest.mark.parametrize(
    ("x", "axis", "correction"),
    [(np.zeros((3, 0)), 1, 0), ([1.0, 2.0], None, 2), ([1.0, 2.0], None, 2.5), (np.ones(2), (), 1)],
)
def test_no_degrees_of_freedom_is_nan_with_one_warning(x: Any, axis: Any, correction: Any) -> None:
    # the Array API rule vs.var follows: n - correction <= 0 -> NaN, one RuntimeWarning
    with pytest.warns(RuntimeWarning, match="correction") as record:
        got = exact_var(x, axis=axis, correction=correction)
    assert len(record) == 1
    assert np.all(np.isnan(got))
    with pytest.warns(RuntimeWarning, match="correction"):
        assert np.all(np.isnan(np.asarray(exact_normalize(x, axis=axis, correction=correction))))
    m = exact_moments(x, axis=axis)
    with pytest.warns(RuntimeWarning, match="correction"):
        variances = m.var(correction)
    assert all(np.isnan(v) for v in variances.reshape(-1))


def test_empty_mean_is_nan_and_0d_normalize_stays_0d() -> None:
    assert np.all(np.isnan(exact_mean(np.zeros((3, 0)), axis=1)))
    assert exact_normalize(np.float64(2.0), axis=None, eps=1.0).shape == ()


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: exact_var(np.zeros((2, 3)), axis=2**31), AxisError),
        (lambda: exact_mean(np.zeros(3), axis=-(2**63)), AxisError),
        (lambda: exact_var(np.zeros(3), correction=10**400), ValueError),
        (lambda: exact_normalize(np.zeros(3), axis=0, eps=10**400), ValueError),
        (lambda: exact_var(np.ma.array([1.0, 2.0], mask=[0, 1])), TypeError),
        (lambda: exact_mean(np.zeros(3), method=None), ValueError),  # type: ignore[arg-type]
    ],
)
def test_huge_ints_and_masks_are_value_or_type_errors(call: Any, error: type[Exception]) -> None:
    # issue 14: never OverflowError; a mask is refused rather than silently dropped
    with pytest.raises(error):
        call()


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_big_endian_input_gives_the_same_bits(dtype: str) -> None:
    x = vs.round_to(np.array([1.0, 2.0, 4.0, 1e-3]), dtype)
    swapped = x.astype(x.dtype.newbyteorder(">"))
    assert_same_bits(exact_var(swapped, correction=1), exact_var(x, correction=1), dtype)
    assert_same_bits(exact_normalize(swapped, axis=0), exact_normalize(x, axis=0), dtype)


def test_torch_tensors_that_require_grad_are_read_as_values() -> None:
    torch = pytest.importorskip("torch")
    values = [1.0, 2.0, 4.0, 8.0]
    t = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    assert exact_var(t) == exact_var(np.array(values))
    assert exact_mean(t) == exact_mean(np.array(values))
    assert_same_bits(
        exact_normalize(t, axis=0, weight=t, bias=t),
        exact_normalize(np.array(values), axis=0, weight=np.array(values), bias=np.array(values)),
        "torch",
    )
    assert t.requires_grad  # the caller's tensor is left as it was
    assert t.grad is None


def test_bad_arguments_raise() -> None:
    with pytest.raises(AxisError):
        exact_var(np.zeros((3, 2)), axis=2)
    with pytest.raises(ValueError, match="axis"):
        exact_mean(np.zeros((3, 2)), axis=(0, 0))
    with pytest.raises(ValueError, match="correction"):
        exact_var([1.0, 2.0], correction=-1)
    with pytest.raises(TypeError, match="correction"):
        exact_var([1.0, 2.0], correction="1")
    with pytest.raises(ValueError, match="method"):
        exact_var([1.0, 2.0], method="slow")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eps"):
        exact_normalize([1.0, 2.0], axis=0, eps=-1.0)
    with pytest.raises(ValueError, match="weight"):
        exact_normalize([1.0, 2.0], axis=0, weight=[1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="bias"):
        exact_normalize([1.0, 2.0], axis=0, bias=[1, 2])


def test_all_matches_documented_api() -> None:
    documented = {
        "ExactMoments",
        "exact_mean",
        "exact_moments",
        "exact_normalize",
        "exact_var",
        "round_ratio",
    }
    assert set(oracle.__all__) == documented
    for name in oracle.__all__:
        assert getattr(oracle, name).__doc__, name


@pytest.mark.parametrize(
    ("dtype", "shape", "kind"),
    [
        ("float32", (2, 17000), "bits"),  # rows span several blocks, many binades
        ("float64", (2000, 8), "bits"),  # many rows x many binades: compressed bucket keys
        ("float16", (5000, 7), "offset"),  # few binades, many rows per block
        ("bfloat16", (2, 20000), "offset"),
        ("float64", (1, 50000), "normal"),
    ],
)
def test_fast_equals_reference_across_blocks(dtype: str, shape: tuple[int, int], kind: str) -> None:
    dt = as_dtype(dtype)
    rng = np.random.default_rng(7)
    if kind == "bits":
        x = _random_finite_bits(rng, dt, shape)
    elif kind == "offset":
        x = round_to(rng.standard_normal(shape) + 100, dt)
    else:
        x = round_to(rng.standard_normal(shape), dt)
    for c in (0, 1):
        assert_same_bits(
            exact_var(x, axis=1, correction=c),
            exact_var(x, axis=1, correction=c, method="reference"),
            f"{dtype} {shape} {kind}",
        )
    assert_same_bits(exact_mean(x, axis=1), exact_mean(x, axis=1, method="reference"), kind)


# ------------------------------------------------------------------------------------
# the fast path's window limbs, bucket path and block boundaries
# ------------------------------------------------------------------------------------


@contextmanager
def small_blocks(block: int, dot: int) -> Iterator[None]:
    """Shrink the fast path's block and dot-product lengths, so small arrays cross them."""
    saved = oracle._BLOCK, oracle._DOT
    oracle._BLOCK, oracle._DOT = block, dot
    try:
        yield
    finally:
        oracle._BLOCK, oracle._DOT = saved


def _clustered(rng: np.random.Generator, dtype: np.dtype[Any], size: int) -> Any:
    """Values from a few magnitude clusters: narrow, far apart, or across the whole range."""
    fi = finfo(dtype)
    lo, hi = math.log2(fi.smallest_subnormal), math.log2(fi.max)
    parts = []
    for count in rng.multinomial(size, [0.6, 0.3, 0.1]):
        centre = rng.uniform(lo, hi)
        spread = 2.0 ** rng.integers(-3, 11)  # binades: a fraction of one to the whole range
        e = np.clip(centre + spread * rng.standard_normal(count), lo, hi - 1)
        parts.append(rng.choice([-1.0, 1.0], size=count) * 2.0**e)
    x = round_to(np.concatenate(parts), dtype)
    return np.asarray(rng.permutation(x), dtype=dtype)


def _check_rows(x: Any) -> None:
    for c in (0, 1):
        assert_same_bits(
            exact_var(x, axis=-1, correction=c),
            exact_var(x, axis=-1, correction=c, method="reference"),
            f"var correction={c} {x.dtype} {x.shape}",
        )
    assert_same_bits(
        exact_mean(x, axis=-1), exact_mean(x, axis=-1, method="reference"), f"mean {x.shape}"
    )


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**63 - 1),
    shape=st.sampled_from([(1, 300), (1, 2000), (3, 150), (7, 37), (40, 9)]),
    sizes=st.sampled_from([(256, 64), (128, 16), (1 << 16, 1 << 12)]),
)
def test_fast_equals_reference_on_clustered_magnitudes(
    dtype: str, seed: int, shape: tuple[int, int], sizes: tuple[int, int]
) -> None:
    # clusters of magnitudes put values inside the window, below it (outliers), or spread
    # over so many binades that whole blocks go to the bucket path; the small block and
    # dot lengths make rows cross blocks and padded dot products
    rng = np.random.default_rng(seed)
    dt = as_dtype(dtype)
    x = _clustered(rng, dt, math.prod(shape)).reshape(shape)
    with small_blocks(*sizes):
        _check_rows(x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "kind", ["normal", "offset", "tiny outliers", "huge rows", "tiny rows", "all binades"]
)
def test_fast_equals_reference_on_each_path(dtype: str, kind: str) -> None:
    fi = finfo(dtype)
    rng = np.random.default_rng(11)
    shape = (2, 4200)  # rows longer than a dot product, shorter than a block
    if kind == "normal":  # the window captures everything
        x = round_to(rng.standard_normal(shape), dtype)
    elif kind == "offset":
        x = round_to(rng.standard_normal(shape) + 3000, dtype)
    elif kind == "tiny outliers":  # a few values far below the window
        x = round_to(rng.standard_normal(shape), dtype)
        x[:, ::997] = round_to(fi.smallest_subnormal * rng.integers(1, 4, x[:, ::997].shape), dtype)
    elif kind == "huge rows":  # scaled down first; subnormals beside the largest values
        x = round_to(rng.uniform(-1, 1, shape) * fi.max, dtype)
        x[:, ::101] = round_to(fi.smallest_subnormal, dtype)
    elif kind == "tiny rows":  # scaled up first
        x = round_to(rng.integers(-50, 50, shape) * fi.smallest_subnormal, dtype)
    else:  # every binade: the bucket path
        x = _random_finite_bits(rng, as_dtype(dtype), shape)
    x = np.asarray(x, dtype=as_dtype(dtype))
    _check_rows(x)
    with small_blocks(1024, 64):
        _check_rows(x)


def test_a_long_row_is_exact_against_fractions() -> None:
    # one row over several blocks of the default size, against Fraction directly
    rng = np.random.default_rng(5)
    x = rng.standard_normal(oracle._BLOCK + 4099) * 1e3 + 1e6
    x[::1999] = rng.standard_normal(x[::1999].size) * 1e-290  # outliers for the bucket path
    assert exact_var(x, correction=1) == frac_float(fraction_var(x, 1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_window_captures_values_down_to_2_to_the_p_minus_103_of_the_largest(dtype: str) -> None:
    # the module docstring's claim: such a block never reaches the bucket path
    fi = finfo(dtype)
    rng = np.random.default_rng(3)
    top = 2.0 ** min(20, math.floor(math.log2(fi.max)))
    smallest = max(top * 2.0 ** (fi.mant - 103), fi.smallest_subnormal)
    e = rng.uniform(math.log2(smallest), math.log2(top), size=(2, 3000))
    x = np.asarray(round_to(rng.choice([-1.0, 1.0], size=e.shape) * 2.0**e, dtype))
    x[:, 0], x[:, 1] = round_to(top, dtype), round_to(smallest, dtype)
    block = x.astype(np.float64)
    e_floor = round(math.log2(fi.smallest_subnormal)) + 1
    fmt = oracle._Format(fi.mant, e_floor, want_squares=True)
    total, squares = [0, 0], [0, 0]
    workspace = oracle._Workspace.for_blocks(*block.shape)
    top_of_rows = np.abs(block).max(axis=1)
    assert oracle._window_sums(block, top_of_rows, 0, fmt, total, squares, workspace) is None
    below = block.copy()
    below[0, 1] = round_to(smallest / 2 ** (fi.mant + 1), dtype)  # grid of the last limb / 2
    if below[0, 1] != 0:  # float16's whole range fits in the window
        missed = oracle._window_sums(below, top_of_rows, 0, fmt, total, squares, workspace)
        assert missed is not None
        assert missed[0].tolist() == [below[0, 1]]
    _check_rows(x)


def test_a_block_spread_over_many_binades_goes_to_the_buckets_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the module docstring's claims: a block with more than one in 32 sampled values
    # below the window's reach, or whose largest magnitude is below 2**-960, skips the
    # window; a narrow block never reaches the buckets
    windowed: list[int] = []
    bucketed: list[int] = []
    real_window, real_add = oracle._window_sums, oracle._Binades.add

    def window_spy(block: Any, *args: Any) -> Any:
        windowed.append(block.size)
        return real_window(block, *args)

    def add_spy(self: Any, values: Any, rows: Any) -> None:
        bucketed.append(values.size)
        real_add(self, values, rows)

    monkeypatch.setattr(oracle, "_window_sums", window_spy)
    monkeypatch.setattr(oracle._Binades, "add", add_spy)
    rng = np.random.default_rng(8)
    spread = rng.choice([-1.0, 1.0], size=6000) * 2.0 ** rng.uniform(-60, 60, size=6000)
    assert exact_var(spread, correction=1) == frac_float(fraction_var(spread, 1))
    assert (sum(windowed), sum(bucketed)) == (0, spread.size)
    windowed.clear()
    bucketed.clear()
    narrow = rng.standard_normal(6000) + 1e3
    assert exact_var(narrow, correction=1) == frac_float(fraction_var(narrow, 1))
    assert (sum(windowed), sum(bucketed)) == (narrow.size, 0)
    windowed.clear()
    bucketed.clear()
    tiny = rng.integers(-(2**52), 2**52, size=6000) * finfo("float64").smallest_subnormal
    assert exact_var(tiny, correction=1) == frac_float(fraction_var(tiny, 1))
    assert (sum(windowed), sum(bucketed)) == (0, tiny.size)  # below 2**-960: no window


@contextmanager
def bucket_limits(*, spread: float, coarse: int, fine: int, dense: int) -> Iterator[None]:
    """Force the bucket path (or not) and shrink its limits, so every branch runs."""
    names = ("_SPREAD_FRACTION", "_COARSE_LIMIT", "_FINE_LIMIT", "_DENSE_BUCKETS")
    saved = [getattr(oracle, name) for name in names]
    for name, value in zip(names, (spread, coarse, fine, dense), strict=True):
        setattr(oracle, name, value)
    try:
        yield
    finally:
        for name, value in zip(names, saved, strict=True):
            setattr(oracle, name, value)


# every block to the buckets: the default limits, fine buckets for crowded ones, flushes
# of full fine buckets, and numbered (compressed) buckets
BUCKET_LIMITS = {
    "default limits": {"coarse": 1 << 12, "fine": 1 << 16, "dense": 1 << 16},
    "fine": {"coarse": 2, "fine": 1 << 16, "dense": 1 << 16},
    "fine flushed": {"coarse": 1, "fine": 3, "dense": 1 << 16},
    "numbered buckets": {"coarse": 2, "fine": 5, "dense": 1},
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("limits", list(BUCKET_LIMITS))
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**63 - 1))
def test_bucket_path_equals_reference_on_any_data(dtype: str, limits: str, seed: int) -> None:
    # the generated arrays (random bit patterns, subnormals, values near the largest,
    # mixed signs, clusters, NaN and inf) with every block sent to the buckets
    rng = np.random.default_rng(seed)
    with bucket_limits(spread=-1.0, **BUCKET_LIMITS[limits]), small_blocks(64, 16):
        for _ in range(6):
            x, axis = _generate(rng, as_dtype(dtype))
            _check_fast_equals_reference(x, axis)
        _check_rows(_clustered(rng, as_dtype(dtype), 3 * 150).reshape(3, 150))


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=50, deadline=None)
@given(
    data=st.data(),
    exponents=st.sampled_from(["subnormal", "smallest normal", "largest", "all"]),
)
def test_bucket_path_is_exact_at_extreme_exponents(
    dtype: str, data: st.DataObject, exponents: str
) -> None:
    # hypothesis draws the values (mixed signs, shrinking to the edges of the format);
    # float64's extreme exponents are where the buckets' shifts and digits are widest
    fi = finfo(dtype)
    bounds = {
        "subnormal": (0.0, fi.tiny),
        "smallest normal": (fi.tiny, fi.tiny * 2**12),
        "largest": (fi.max / 2**12, fi.max),
        "all": (0.0, fi.max),
    }[exponents]
    values = data.draw(st.lists(st.floats(*bounds), min_size=2, max_size=300))
    signs = data.draw(st.lists(st.booleans(), min_size=len(values), max_size=len(values)))
    x = np.asarray(round_to(np.where(signs, -1.0, 1.0) * values, dtype))
    with bucket_limits(spread=-1.0, coarse=3, fine=7, dense=1 << 16):
        _check_rows(x[None, :])


def test_benchmark_families_are_exact() -> None:
    # every kind of data benchmarks/bench_oracle.py times, at a small size, bit for bit
    from benchmarks import bench_oracle

    rng = np.random.default_rng(4)
    for source in (bench_oracle.families, bench_oracle.slice_families):
        for label, x, axis in source(rng, 3000):
            for c in (0, 1):
                assert_same_bits(
                    exact_var(x, axis=axis, correction=c),
                    exact_var(x, axis=axis, correction=c, method="reference"),
                    f"{label} correction={c}",
                )


@pytest.mark.parametrize("power", [1, 2])
def test_place_is_exact_with_every_bucket_full(power: int) -> None:
    # the worst case of _place's digit bound: every (exponent, sign, fine) bucket of two
    # slices holds the largest uint64 in every term, as in the sums (power 1, signed)
    # and the sums of squares (power 2) of a flush of fine buckets
    e = np.repeat(np.arange(2047, dtype=np.int64), 32)  # 2 signs x 16 fine buckets
    negative = np.ones(e.size, dtype=bool) if power == 1 else None  # one sign: no cancelling
    shifts = [48, 0] if power == 1 else [96, 49, 81, 48, 25, 0]
    top = np.full(e.size, np.iinfo(np.uint64).max, dtype=np.uint64)
    rows = np.repeat(np.array([3, 5]), e.size)
    terms = [(np.concatenate([top, top >> np.uint64(k)]), s) for k, s in enumerate(shifts)]
    signs = None if negative is None else np.tile(negative, 2)
    slices, sums = oracle._place(rows, terms, np.tile(power * e, 2), signs)
    assert slices == [3, 5]
    for slice_index, got in enumerate(sums):
        expected = 0
        for k, s in enumerate(shifts):
            v = int(terms[k][0][slice_index * e.size])
            for i in range(e.size):
                sign = -1 if negative is not None and negative[i] else 1
                expected += sign * (v << (power * int(e[i]) + s))
        assert got == expected
