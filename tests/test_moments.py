"""Tests for varstats.moments: the (count, mean, m2) state and its exact-structure merge."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from exact_arithmetic import exact_m2, rounded
from hypothesis import given
from hypothesis import strategies as st

import varstats as vs
from varstats.moments import chan_update, tree_reduce, variance
from varstats.precision import round_to


@pytest.mark.parametrize("dtype", vs.DTYPES)
def test_merge_with_empty_is_the_identity(dtype: str) -> None:
    x = round_to(np.array([[1.0, 2.0, 4.0], [3.0, 3.0, 9.0]]), dtype)
    m = vs.moments(x, axis=1)
    empty = vs.Moments.empty((2,), dtype)
    for merged in (m.merge(empty), empty.merge(m)):
        np.testing.assert_array_equal(merged.count, m.count)
        np.testing.assert_array_equal(merged.mean, m.mean)
        np.testing.assert_array_equal(merged.m2, m.m2)


def test_merge_ignores_whatever_an_empty_state_holds() -> None:
    m = vs.moments(np.array([1.0, 2.0, 3.0]))
    garbage = vs.Moments(np.array(0), np.array(np.nan), np.array(np.inf))
    merged = m.merge(garbage)
    assert float(merged.mean) == 2.0
    assert float(merged.m2) == 2.0


def test_merge_formula_against_exact_arithmetic() -> None:
    # two halves whose merged moments are exact in float64
    a, b = np.array([1.0, 3.0]), np.array([10.0, 12.0, 14.0])
    merged = vs.moments(a).merge(vs.moments(b))
    whole = np.concatenate([a, b])
    assert int(merged.count) == 5
    assert Fraction(float(merged.mean)) == sum(Fraction(v) for v in whole) / 5
    assert Fraction(float(merged.m2)) == exact_m2(whole)


@pytest.mark.parametrize("prec", vs.PRECISIONS, ids=str)
def test_merge_rounds_in_the_accumulator(prec: vs.Precision) -> None:
    x = round_to(np.linspace(1, 2, 10), prec.storage)
    a = vs.moments(x[:4], precision=prec)
    b = vs.moments(x[4:], precision=prec)
    merged = a.merge(b)
    assert merged.mean.dtype == prec.accumulator_dtype
    assert merged.m2.dtype == prec.accumulator_dtype


@given(
    values=st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=200),
    cuts=st.lists(st.integers(1, 199), max_size=6),
    order=st.sampled_from(["pairwise", "sequential"]),
)
def test_merge_of_any_split_equals_whole(values: list[float], cuts: list[int], order: str) -> None:
    x = np.array(values)
    edges = sorted({c for c in cuts if c < len(values)})
    parts = np.split(x, edges)
    states = [vs.moments(p) for p in parts]
    stacked = vs.Moments(
        np.array([s.count for s in states]),
        np.array([s.mean for s in states]),
        np.array([s.m2 for s in states]),
    )
    merged = vs.merge_along(stacked, axis=0, order=order)
    s = exact_m2(x)
    n = len(values)
    mean = sum(Fraction(v) for v in values) / n
    u = vs.finfo("float64").unit_roundoff
    # kappa^2 S = S + n mean^2 stays finite when S = 0 (constant data whose mean
    # is not representable): two-pass parts, (n u + (n kappa u)^2) S, plus one
    # merge level per part, (n + k) kappa u S.
    k2s = float(s + n * mean**2)
    steps = n + len(parts)
    tol = 8 * steps * u * np.sqrt(float(s) * k2s) + 8 * (steps * u) ** 2 * k2s
    tol += 4 * steps * vs.finfo("float64").smallest_subnormal  # squares may underflow
    assert int(merged.count) == n
    assert abs(Fraction(float(merged.m2)) - s) <= Fraction(tol)
    assert float(merged.m2) >= 0  # a sum of non-negative terms


def test_merge_along_with_empty_parts() -> None:
    parts = vs.Moments(
        np.array([0, 3, 0, 2]), np.array([9.0, 2.0, -1.0, 5.0]), np.array([7.0, 2.0, 1.0, 0.5])
    )
    merged = vs.merge_along(parts, axis=0)
    direct = vs.Moments(np.array(3), np.array(2.0), np.array(2.0)).merge(
        vs.Moments(np.array(2), np.array(5.0), np.array(0.5))
    )
    assert float(merged.m2) == float(direct.m2)
    assert float(merged.mean) == float(direct.mean)
    assert int(vs.merge_along(vs.Moments.empty((0,), "float64"), axis=0).count) == 0


@pytest.mark.parametrize("dtype", vs.DTYPES)
def test_var_correction(dtype: str) -> None:
    x = round_to(np.array([1.0, 2.0, 3.0, 6.0]), dtype)
    m = vs.moments(x)
    assert float(m.var(0)) == 3.5
    assert float(m.var(correction=1)) == float(round_to(14 / 3, dtype))
    assert float(m.var(0.5)) == float(round_to(14 / 3.5, dtype))
    with pytest.warns(RuntimeWarning, match="correction"):
        assert np.isnan(m.var(4))
    with pytest.raises(ValueError, match="correction"):
        m.var(float("nan"))
    with pytest.raises(TypeError, match="correction"):
        m.var(True)


@pytest.mark.parametrize("dtype", vs.DTYPES)
@pytest.mark.parametrize("uniform", [True, False])
def test_variance_is_m2_over_the_rounded_divisor_rounded_once(dtype: str, uniform: bool) -> None:
    # M2 / fl(n - c), one correct rounding of the exact quotient, whether one count
    # serves every slice (one divisor, the reductions' path) or each slice has its own;
    # a divisor below 1 may overflow to inf, silently
    fi = vs.finfo(dtype)
    m2 = round_to(np.array([0.0, 1.0, 3.0, fi.max, fi.smallest_subnormal, np.inf]), dtype)
    counts = np.full(m2.shape, 7) if uniform else np.array([7, 8, 9, 7, 8, 9])
    m = vs.Moments(counts if not uniform else np.asarray(7), np.zeros_like(m2), m2)
    for c in (0, 1, 0.5, 6.75):
        got = variance(m, float(c), c)
        for g, q, n in zip(np.asarray(got), m2, np.broadcast_to(counts, m2.shape), strict=True):
            d = round_to(np.float64(n) - c, dtype)
            if np.isinf(q) or Fraction(float(q)) / Fraction(float(d)) > 2 * Fraction(fi.max):
                want = np.asarray(np.inf, dtype=got.dtype)  # past the range: overflow
            else:
                want = rounded(Fraction(float(q)) / Fraction(float(d)), np.dtype(got.dtype))
            assert np.asarray(g).tobytes() == np.asarray(want).tobytes(), (dtype, c, n, q)
        assert np.asarray(got).tobytes() == np.asarray(m.var(c)).tobytes()


def test_state_validation() -> None:
    with pytest.raises(ValueError, match="m2"):
        vs.Moments(np.array(1), np.array(1.0), np.array(1.0, dtype=np.float32))
    with pytest.raises(TypeError, match="count"):
        vs.Moments(np.array(1.0), np.array(1.0), np.array(1.0))
    with pytest.raises(ValueError, match="count"):
        vs.Moments(np.array(-1), np.array(1.0), np.array(1.0))
    with pytest.raises(ValueError, match="count"):  # would wrap to -1 as int64
        vs.Moments(np.array(2**64 - 1, dtype=np.uint64), np.array(1.0), np.array(1.0))
    with pytest.raises(ValueError, match="mean"):
        vs.Moments(np.array(1), np.array(1), np.array(1))
    with pytest.raises(TypeError, match="other"):
        vs.moments(np.ones(2)).merge(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="other"):
        vs.moments(np.ones(2)).merge(vs.moments(np.ones(2, dtype=np.float32)))
    with pytest.raises(ValueError, match="order"):
        vs.merge_along(vs.moments(np.ones((2, 2)), axis=1), order="random")


def test_chan_update_and_tree_reduce_building_blocks() -> None:
    n, mean, m2 = chan_update(
        2, np.float64(1.0), np.float64(0.0), 2, np.float64(3.0), np.float64(0.0)
    )
    assert (n, float(mean), float(m2)) == (4, 2.0, 4.0)
    (total,) = tree_reduce((np.arange(7.0),), lambda p, q: (p + q,))
    assert float(total) == 21.0


def _scalar_merge(a: tuple[int, Any, Any], b: tuple[int, Any, Any], t: Any) -> tuple[int, Any, Any]:
    # Chan, Golub & LeVeque eq. (2.1) on scalars of the accumulator type; an empty side
    # contributes nothing. Count ratios: exact rationals rounded once.
    (na, ma, sa), (nb, mb, sb) = a, b
    if na == 0:
        return b
    if nb == 0:
        return a
    n = na + nb
    delta = mb - ma
    weight_b = rounded(Fraction(nb, n), t)
    weight_ab = rounded(Fraction(na * nb, n), t)
    return n, ma + delta * weight_b, (sa + sb) + (delta * delta) * weight_ab


def _scalar_tree(parts: list[tuple[int, Any, Any]], t: Any) -> tuple[int, Any, Any]:
    while len(parts) > 1:
        nxt = [_scalar_merge(parts[i], parts[i + 1], t) for i in range(0, len(parts) - 1, 2)]
        parts = nxt + parts[len(parts) - len(parts) % 2 :]
    return parts[0]


def _scalar_fold(parts: list[tuple[int, Any, Any]], t: Any) -> tuple[int, Any, Any]:
    state = parts[0]
    for part in parts[1:]:
        state = _scalar_merge(state, part, t)
    return state


@pytest.mark.parametrize("empty", [0, 4, 8])
def test_pairwise_merge_stays_pairwise_with_an_empty_part(empty: int) -> None:
    # Regression (issue 11): merge_along(order="pairwise") fell back to a sequential
    # merge as soon as one part was empty. Truth: a scalar tree, written independently.
    rng = np.random.default_rng(11)
    t = np.dtype(np.float32)
    sizes = [0 if k == empty else int(rng.integers(3, 40)) for k in range(9)]
    data = [round_to(rng.normal(1e3, 3.0, size=s), "float32") for s in sizes]
    states = []
    for part in data:
        if part.size:
            m = vs.moments(part)
            states.append((int(m.count), m.mean[()], m.m2[()]))
        else:  # whatever an empty state holds is ignored
            states.append((0, t.type(123.0), t.type(456.0)))
    stacked = vs.Moments(
        np.array([s[0] for s in states]),
        np.array([s[1] for s in states], dtype=t),
        np.array([s[2] for s in states], dtype=t),
    )
    tree = _scalar_tree(states, t)
    fold = _scalar_fold(states, t)
    assert (tree[1], tree[2]) != (fold[1], fold[2]), "the data must tell the two orders apart"
    for order, truth in (("pairwise", tree), ("sequential", fold)):
        merged = vs.merge_along(stacked, axis=0, order=order)
        assert int(merged.count) == sum(sizes)
        assert merged.mean[()] == truth[1], f"{order}: mean"
        assert merged.m2[()] == truth[2], f"{order}: m2"


def test_merge_along_rejects_what_is_not_moments() -> None:
    with pytest.raises(TypeError, match="m: expected Moments"):
        vs.merge_along((1, 2, 3))  # type: ignore[arg-type]
    with pytest.raises(np.exceptions.AxisError, match="axis"):
        vs.merge_along(vs.moments(np.ones((2, 2)), axis=1), axis=1)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda m: vs.merge_along(m, None), TypeError, "axis: expected one int"),
        (lambda m: vs.merge_along(m, (0, 1)), TypeError, "axis: expected one int"),
        (lambda m: vs.merge_along(m, 2), np.exceptions.AxisError, "axis"),
        (lambda m: vs.Moments([1, 2, 3], m.mean, m.m2), ValueError, "count: shape"),
        (lambda m: vs.Moments(m.count, np.ma.array(m.mean), m.m2), TypeError, "mean: a masked"),
    ],
)
def test_bad_arguments_name_themselves(make: Any, error: type, message: str) -> None:
    m = vs.moments(np.ones((2, 4)), axis=1)
    with pytest.raises(error, match=message):
        make(m)
