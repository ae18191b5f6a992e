"""Tests for varstats.algorithms.

The central check is bit-exact emulation: a slow scalar reference that rounds
each operation through a scalar of the accumulator dtype must give the same bits
as the vectorized kernels. Accuracy is checked against exact rational arithmetic
(``fractions.Fraction``), never against the code's own earlier output.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from exact_arithmetic import exact_kappa, exact_var, rel_error, rounded
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import varstats as vs
from varstats import metrics
from varstats.algorithms import PAIRWISE_BLOCK
from varstats.precision import round_to

# --------------------------------------------------------------------------- scalar reference


class Ref:
    """Per-element scalar emulation of every kernel; every op rounds in ``acc``."""

    def __init__(self, acc: np.dtype[Any]) -> None:
        self.t = acc.type

    def r(self, q: Fraction | int) -> Any:
        # a correctly rounded accumulator scalar from an exact rational
        return rounded(q, np.dtype(self.t))

    def seq(self, a: list[Any]) -> Any:
        s = a[0]
        for v in a[1:]:
            s = s + v
        return s

    def tree(self, leaves: list[Any], combine: Any) -> Any:
        while len(leaves) > 1:
            nxt = [combine(leaves[i], leaves[i + 1]) for i in range(0, len(leaves) - 1, 2)]
            if len(leaves) % 2:
                nxt.append(leaves[-1])
            leaves = nxt
        return leaves[0]

    def chunks(self, a: list[Any], b: int) -> list[list[Any]]:
        return [a[i : i + b] for i in range(0, len(a), b)]

    def lanes(self, a: list[Any], rows: int) -> list[list[Any]]:
        # n = rows*m + r: lane j holds a[j], a[j+m], ...; the tail is one more leaf
        m = len(a) // rows
        leaves = [a[j : rows * m : m] for j in range(m)]
        return leaves + ([a[rows * m :]] if rows * m < len(a) else [])

    def pairwise_sum(self, a: list[Any]) -> Any:
        return self.tree([self.seq(c) for c in self.lanes(a, PAIRWISE_BLOCK)], lambda p, q: p + q)

    def sum(self, a: list[Any], summation: str) -> Any:
        return self.pairwise_sum(a) if summation == "pairwise" else self.seq(a)

    def two_sum(self, s: Any, x: Any) -> tuple[Any, Any]:
        t = s + x
        z = t - s
        return t, (s - (t - z)) + (x - z)

    def neumaier(self, a: list[Any]) -> tuple[Any, Any]:
        s, c = a[0], self.t(0)
        for v in a[1:]:
            s, e = self.two_sum(s, v)
            c = c + e
        return s, c

    def csum(self, a: list[Any], summation: str) -> Any:
        if summation == "sequential":
            s, c = self.neumaier(a)
        else:

            def combine(p: tuple[Any, Any], q: tuple[Any, Any]) -> tuple[Any, Any]:
                t, e = self.two_sum(p[0], q[0])
                return t, (p[1] + q[1]) + e

            s, c = self.tree([self.neumaier(ch) for ch in self.lanes(a, PAIRWISE_BLOCK)], combine)
        return s + c

    def merge(self, a: tuple[int, Any, Any], b: tuple[int, Any, Any]) -> tuple[int, Any, Any]:
        na, ma, sa = a
        nb, mb, sb = b
        n = na + nb
        delta = mb - ma
        return (
            n,
            ma + delta * self.r(Fraction(nb, n)),
            (sa + sb) + (delta * delta) * self.r(Fraction(na * nb, n)),
        )

    # kernels: return (count, mean, m2)
    def naive(self, a: list[Any], summation: str = "pairwise") -> tuple[int, Any, Any]:
        n = self.r(len(a))
        s1, s2 = self.sum(a, summation), self.sum([v * v for v in a], summation)
        mean = s1 / n
        return len(a), mean, s2 - s1 * mean

    def shifted(self, a: list[Any], summation: str = "pairwise") -> tuple[int, Any, Any]:
        k = a[0]
        cnt, dm, m2 = self.naive([v - k for v in a], summation)
        return cnt, k + dm, m2

    def two_pass(self, a: list[Any], summation: str = "pairwise") -> tuple[int, Any, Any]:
        mean = self.sum(a, summation) / self.r(len(a))
        return len(a), mean, self.sum([(v - mean) * (v - mean) for v in a], summation)

    def corrected_two_pass(self, a: list[Any], summation: str = "pairwise") -> tuple[int, Any, Any]:
        n = self.r(len(a))
        mean = self.sum(a, summation) / n
        d = [v - mean for v in a]
        sd = self.sum(d, summation)
        return len(a), mean + sd / n, self.sum([e * e for e in d], summation) - (sd * sd) / n

    def compensated(self, a: list[Any], summation: str = "pairwise") -> tuple[int, Any, Any]:
        n = self.r(len(a))
        mean = self.csum(a, summation) / n
        d = [v - mean for v in a]
        sd = self.csum(d, summation)
        return len(a), mean + sd / n, self.csum([e * e for e in d], summation) - (sd * sd) / n

    def welford(self, a: list[Any], lanes: int = 1) -> tuple[int, Any, Any]:
        lanes = min(lanes, len(a))
        states = []
        for lane in range(lanes):
            mean, m2, k = self.t(0), self.t(0), 0
            for v in a[lane::lanes]:
                k += 1
                delta = v - mean
                mean = mean + delta / self.r(k)
                m2 = m2 + delta * (v - mean)
            states.append((k, mean, m2))
        return self.tree(states, self.merge)

    def pairwise(self, a: list[Any], block: int = PAIRWISE_BLOCK) -> tuple[int, Any, Any]:
        return self.tree([self.two_pass(c, "sequential") for c in self.lanes(a, block)], self.merge)

    def chan(self, a: list[Any], block: int = 1024) -> tuple[int, Any, Any]:
        parts = [self.two_pass(c, "sequential") for c in self.chunks(a, block)]
        state = parts[0]
        for p in parts[1:]:
            state = self.merge(state, p)
        return state


def reference_moments(
    x: np.ndarray[Any, Any], axis: Any, prec: vs.Precision, algorithm: str, **options: Any
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    axes = tuple(range(x.ndim)) if axis is None else np.atleast_1d(axis) % x.ndim
    axes = tuple(int(a) for a in axes)
    keep = tuple(i for i in range(x.ndim) if i not in axes)
    moved = np.transpose(x, keep + axes).reshape(*(x.shape[i] for i in keep), -1)
    ref = Ref(prec.accumulator_dtype)
    acc = prec.accumulator_dtype
    means = np.empty(moved.shape[:-1], dtype=acc)
    m2s = np.empty(moved.shape[:-1], dtype=acc)
    with np.errstate(all="ignore"):
        for idx in np.ndindex(*moved.shape[:-1]):
            values = [acc.type(v) for v in moved[idx]]
            _, means[idx], m2s[idx] = getattr(ref, algorithm)(values, **options)
    return means, m2s


def bits(a: Any) -> np.ndarray[Any, Any]:
    a = np.asarray(a)
    return a.view(f"u{a.dtype.itemsize}")


# options that change each kernel's order of operations
OPTIONS: dict[str, list[dict[str, Any]]] = {
    "naive": [{"summation": "pairwise"}, {"summation": "sequential"}],
    "shifted": [{"summation": "pairwise"}, {"summation": "sequential"}],
    "two_pass": [{"summation": "pairwise"}, {"summation": "sequential"}],
    "corrected_two_pass": [{"summation": "pairwise"}, {"summation": "sequential"}],
    "compensated": [{"summation": "pairwise"}, {"summation": "sequential"}],
    "welford": [{"lanes": 1}, {"lanes": 8}],
    "pairwise": [{"block": PAIRWISE_BLOCK}, {"block": 8}, {"block": 1}],
    "chan": [{"block": 1024}, {"block": 16}],
}


def test_options_cover_every_algorithm() -> None:
    assert set(OPTIONS) == set(vs.ALGORITHMS)


def layouts(
    storage: np.dtype[Any], rng: np.random.Generator
) -> list[tuple[np.ndarray[Any, Any], Any]]:
    """(array, axis) pairs: several shapes, axes (incl. tuples) and strided views."""

    def data(*shape: int) -> np.ndarray[Any, Any]:
        return round_to(rng.normal(3.0, 1.0, size=shape), storage)

    big = data(2, 3 * PAIRWISE_BLOCK + 37)  # full pairwise blocks plus a tail
    return [
        (data(17), None),
        (data(4, 9), 1),
        (data(4, 9), 0),
        (data(3, 5, 6), (0, 2)),
        (data(3, 5, 6), -1),
        (data(6, 40)[:, ::3], 1),  # strided reduced axis
        (data(40, 6).T, 1),  # transposed: reduced axis has the large stride
        (big, 1),
        (data(3, 5 * PAIRWISE_BLOCK), 1),  # full blocks only: no tail, 5 lanes
        (data(2, 13 * PAIRWISE_BLOCK + 3), -1),  # 14 leaves: two odd levels in the tree
        (data(70, 3), 0),  # a leading axis: lanes are strided columns, sums lane-major
        (data(300, 2, 3), 0),
        (data(1, 1), None),
    ]


@pytest.mark.parametrize("prec", vs.PRECISIONS, ids=str)
@pytest.mark.parametrize("algorithm", vs.ALGORITHMS)
def test_kernels_equal_scalar_reference_bit_for_bit(prec: vs.Precision, algorithm: str) -> None:
    rng = np.random.default_rng(1234)
    for x, axis in layouts(prec.storage_dtype, rng):
        for options in OPTIONS[algorithm]:
            m = vs.moments(x, axis=axis, algorithm=algorithm, precision=prec, **options)
            mean, m2 = reference_moments(x, axis, prec, algorithm, **options)
            where = f"{algorithm} {prec} {options} shape={x.shape} axis={axis}"
            assert m.mean.dtype == prec.accumulator_dtype, where
            np.testing.assert_array_equal(bits(m.mean), bits(mean), err_msg=f"mean: {where}")
            np.testing.assert_array_equal(bits(m.m2), bits(m2), err_msg=f"m2: {where}")


# --------------------------------------------------------------------------- NumPy traps


def test_numpy_sum_widens_float16_but_sequential_float16_stalls_at_2048() -> None:
    ones = np.ones(10_000, dtype=np.float16)
    assert float(np.sum(ones)) == 10_000  # NumPy accumulates float16 in float32
    seq = vs.moments(ones, algorithm="naive", summation="sequential")
    # 2048 + 1 rounds back to 2048 (ties to even) in float16
    assert float(seq.mean) == float(np.float16(2048) / np.float16(10_000))
    s = np.float16(0)
    for _ in range(10_000):
        s = s + np.float16(1)
    assert float(s) == 2048


def test_numpy_sum_keeps_bfloat16_and_stalls_at_256() -> None:
    bf16 = vs.as_dtype("bfloat16")
    ones = np.ones(10_000, dtype=bf16)
    assert float(np.sum(ones)) == 256  # NumPy accumulates bfloat16 in bfloat16
    assert float(np.sum(ones.astype(np.float32))) == 10_000
    m = vs.moments(ones, algorithm="naive", summation="sequential")
    assert float(m.mean) == float(round_to(256 / 10_000, bf16))


def test_naive_float16_follows_sequential_not_numpy() -> None:
    x = np.full(10_000, 1.0, dtype=np.float16)
    f16 = vs.moments(x, algorithm="naive", summation="sequential", precision="float16:float16")
    f32 = vs.moments(x, algorithm="naive", summation="sequential", precision="float16:float32")
    assert float(f16.mean) != 1.0  # stalled sum
    assert float(f32.mean) == 1.0
    assert float(f32.m2) == 0.0


def test_numpy_sum_order_depends_on_contiguity() -> None:
    # np.sum is pairwise along the contiguous axis, but reducing the outer axis of a
    # C-ordered array adds whole rows one after another: a sequential sum per column.
    # The same values give different float32 sums. Our order does not depend on layout.
    rng = np.random.default_rng(0)
    a = (rng.random((4096, 2)) * 1000).astype(np.float32)
    contiguous = np.ascontiguousarray(a[:, 0])
    strided = a[:, 0]
    seq = float(vs.moments(contiguous, algorithm="naive", summation="sequential").mean)
    loop = np.float32(0)
    for v in contiguous:
        loop = loop + v
    assert np.sum(a, axis=0)[0] == loop  # outer axis: a plain loop
    assert np.sum(contiguous) != loop  # contiguous axis: pairwise blocks
    assert seq == float(loop / np.float32(4096))
    for alg in vs.ALGORITHMS:
        assert bits(vs.var(strided, algorithm=alg)) == bits(vs.var(contiguous, algorithm=alg))


# --------------------------------------------------------------------------- exact arithmetic


@pytest.mark.parametrize("correction", [0, 1])
@pytest.mark.parametrize("dtype", vs.DTYPES)
def test_two_pass_with_float64_accumulator_is_within_few_ulps(dtype: str, correction: int) -> None:
    rng = np.random.default_rng(7)
    for n in (2, 3, 10, 100, 1000):
        x = round_to(rng.normal(1.0, 1.0, size=n), dtype)
        got = vs.var(x, correction=correction, precision=vs.Precision(dtype, "float64"))
        exact = exact_var(x, correction)
        u = vs.finfo("float64").unit_roundoff
        # well-conditioned: bound ~ (log2 n + 4) u (two_pass, pairwise sums)
        tol = (np.log2(n) + 8) * u * float(exact)
        assert abs(Fraction(float(got)) - exact) <= Fraction(tol), (n, float(got), float(exact))


@pytest.mark.parametrize("offset", [0.5, 8.0])  # sums of squares stay below float16 max
@pytest.mark.parametrize("prec", vs.PRECISIONS, ids=str)
@pytest.mark.parametrize("algorithm", vs.ALGORITHMS)
def test_every_algorithm_is_within_its_own_bound(
    prec: vs.Precision, algorithm: str, offset: float
) -> None:
    rng = np.random.default_rng(3)
    n = 200
    x = round_to(rng.normal(offset, 1.0, size=n), prec.storage)
    got = vs.var(x, algorithm=algorithm, precision=prec)
    u = vs.finfo(prec.accumulator).unit_roundoff
    # the algorithm's own first-order bound (metrics.bound, Chan, Golub & LeVeque's
    # table and its extensions) on M2, plus one rounding for the division by n
    tol = float(metrics.bound(algorithm, n, exact_kappa(x), u)) + u
    err = rel_error(got, exact_var(x))
    assert err <= tol, f"{algorithm} {prec}: relative error {err:.3g} > metrics.bound {tol:.3g}"


def test_naive_goes_negative_where_two_pass_does_not() -> None:
    x = np.array([40000, 40001, 40002, 40003], dtype=np.float32)  # onnxruntime #28463
    assert float(vs.var(x, algorithm="naive")) < 0
    for algorithm in ("two_pass", "welford", "pairwise", "chan"):
        assert float(vs.var(x, algorithm=algorithm)) == 1.25


def test_corrected_two_pass_recovers_an_unrepresentable_mean() -> None:
    x = np.array([1e16, 1e16 + 2])  # comet #6044: the mean 1e16 + 1 is not a double
    assert exact_var(x) == 1
    assert float(vs.var(x, algorithm="two_pass")) == 2.0
    assert float(vs.var(x, algorithm="corrected_two_pass")) == 1.0
    assert float(vs.var(x, algorithm="compensated")) == 1.0


# --------------------------------------------------------------------------- properties

finite64 = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64)


@given(
    values=st.lists(finite64, min_size=2, max_size=300),
    split=st.integers(1, 299),
    algorithm=st.sampled_from(vs.ALGORITHMS),
)
def test_merge_of_any_split_equals_whole(values: list[float], split: int, algorithm: str) -> None:
    x = np.array(values)
    k = min(split, len(values) - 1)
    whole = vs.moments(x, algorithm="compensated")
    merged = vs.moments(x[:k], algorithm=algorithm).merge(vs.moments(x[k:], algorithm=algorithm))
    assert int(merged.count) == len(values)
    exact = exact_var(x)
    mean = sum(Fraction(v) for v in values) / len(values)
    u = vs.finfo("float64").unit_roundoff
    n = len(values)
    s = exact * n
    # the loosest bound, the textbook one-pass n kappa^2 u S, with kappa^2 S = S + n mean^2
    # (finite when S = 0), plus the merge; squares of tiny values may underflow
    tol = 4 * (n + 2) * u * float(s + n * mean**2) + 4 * n * vs.finfo("float64").smallest_subnormal
    assert abs(float(merged.m2) - float(s)) <= tol
    assert abs(float(merged.m2) - float(whole.m2)) <= 2 * tol


@given(
    values=st.lists(st.floats(-1e3, 1e3, width=32), min_size=2, max_size=300),
    offset=st.sampled_from([0.0, 1e2, 1e4]),
    seed=st.integers(0, 2**32 - 1),
    prec=st.sampled_from(vs.PRECISIONS),
    algorithm=st.sampled_from(vs.ALGORITHMS),
)
def test_any_permutation_stays_within_the_bound(
    values: list[float], offset: float, seed: int, prec: vs.Precision, algorithm: str
) -> None:
    # The order of the data changes the roundings, never the accuracy class: every
    # permutation's variance is within the algorithm's own bound of the exact one.
    x = round_to(np.array(values) + offset, prec.storage)
    truth = exact_var(x)
    assume(truth > 0 and np.all(np.isfinite(x.astype(np.float64))))
    fi = vs.finfo(prec.accumulator)
    assume(float(truth) * len(values) * 4 < fi.max and float(truth) > fi.tiny / fi.unit_roundoff)
    tol = float(metrics.bound(algorithm, len(values), exact_kappa(x), fi.unit_roundoff))
    tol += fi.unit_roundoff
    for y in (x, np.random.default_rng(seed).permutation(x)):
        err = rel_error(vs.var(y, algorithm=algorithm, precision=prec), truth)
        assert err <= tol, f"{algorithm} {prec}: {err:.3g} > metrics.bound {tol:.3g}"


@given(
    values=st.lists(
        st.floats(-4, 4, width=32).filter(lambda v: v == 0 or abs(v) > 1e-6),
        min_size=1,
        max_size=64,
    ),
    k=st.integers(-3, 3),
    prec=st.sampled_from([p for p in vs.PRECISIONS if p.accumulator != "float16"]),
    algorithm=st.sampled_from(vs.ALGORITHMS),
)
def test_power_of_two_scaling_scales_variance_exactly(
    values: list[float], k: int, prec: vs.Precision, algorithm: str
) -> None:
    # float16 accumulators are excluded: squared deviations fall into its subnormal
    # range, where scaling by 2**k is not exact.
    x = round_to(np.array(values), prec.storage)
    y = round_to(x.astype(np.float64) * 2.0**k, prec.storage)
    mx, vx = vs.mean_var(x, algorithm=algorithm, precision=prec)
    my, vy = vs.mean_var(y, algorithm=algorithm, precision=prec)
    assert float(vy) == float(vx) * 4.0**k
    assert float(my) == float(mx) * 2.0**k


@given(
    values=st.lists(
        st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=80
    ),
    offset=st.sampled_from([0.0, 1e3, 1e6, 3e7]),
    prec=st.sampled_from(vs.PRECISIONS),
    algorithm=st.sampled_from(["two_pass", "welford", "pairwise", "chan"]),
)
def test_promised_algorithms_never_return_a_negative_variance(
    values: list[float], offset: float, prec: vs.Precision, algorithm: str
) -> None:
    x = round_to(np.array(values) * 1e-30 + offset, prec.storage)
    v = vs.var(x, algorithm=algorithm, precision=prec)
    assert not float(v) < 0, f"{algorithm} {prec} returned {float(v)}"


# --------------------------------------------------------------------------- bad input


def test_bad_input_raises_naming_the_argument() -> None:
    x = np.ones((3, 4))
    with pytest.raises(ValueError, match="correction"):
        vs.var(x, correction=-1)
    with pytest.raises(TypeError, match="correction"):
        vs.var(x, correction="1")  # type: ignore[arg-type]
    with pytest.raises(np.exceptions.AxisError, match="axis"):
        vs.var(x, axis=2)
    with pytest.raises(ValueError, match="repeated axis"):
        vs.var(x, axis=(0, 0))
    with pytest.raises(TypeError, match="axis"):
        vs.var(x, axis=1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="x: int64"):
        vs.var(np.arange(4))
    with pytest.raises(TypeError, match="x: bool"):
        vs.var(np.ones(3, dtype=bool))
    with pytest.raises(TypeError, match="x: unsupported dtype complex128"):
        vs.var(np.ones(3, dtype=complex))
    with pytest.raises(TypeError, match="x: unsupported dtype object"):
        vs.var(np.array([1.0, None]))
    with pytest.raises(ValueError, match="algorithm: unknown 'bogus'"):
        vs.var(x, algorithm="bogus")
    with pytest.raises(ValueError, match="summation"):
        vs.var(x, algorithm="two_pass", summation="random")
    with pytest.raises(ValueError, match="block"):
        vs.var(x, algorithm="chan", block=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'block'"):
        vs.var(x, algorithm="two_pass", block=4)
    with pytest.raises(ValueError, match="precision: x is stored as float64"):
        vs.var(x, precision="float32:float64")
    with pytest.raises(ValueError, match="storage: unknown dtype 'float8'"):
        vs.var(x, precision="float8")
    with pytest.raises(ValueError, match="accumulator: float16 cannot hold every float64"):
        vs.Precision("float64", "float16")
    # issue 14: no OverflowError, and NumPy's / torch's keywords get the right name
    with pytest.raises(np.exceptions.AxisError, match="axis"):
        vs.var(x, axis=2**70)
    with pytest.raises(ValueError, match="correction: too large"):
        vs.var(x, correction=10**400)
    for keyword, hint in [("ddof", "correction="), ("dim", "axis="), ("dtype", "precision=")]:
        with pytest.raises(TypeError, match=rf"var\(\) got .*'{keyword}'; use {hint}"):
            vs.var(x, **{keyword: 1})
    with pytest.raises(TypeError, match=r"mean_var\(\) got .*'out'"):
        vs.mean_var(x, out=None)
    with pytest.raises(TypeError, match=r"x: a masked array"):
        vs.var(np.ma.array([1.0, 2.0, 3.0, 1e6], mask=[0, 0, 0, 1]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_big_endian_input_is_the_same_format(dtype: str) -> None:
    x = round_to(np.random.default_rng(2).normal(5.0, 1.0, size=(4, 33)), dtype)
    swapped = x.astype(x.dtype.newbyteorder(">"))
    for algorithm in vs.ALGORITHMS:
        got = vs.var(swapped, axis=1, algorithm=algorithm, precision=f"{dtype}:float64")
        ref = vs.var(x, axis=1, algorithm=algorithm, precision=f"{dtype}:float64")
        np.testing.assert_array_equal(got, ref)


NO_DEGREES_OF_FREEDOM = [
    # (shape, axis, correction): n - correction <= 0, empty reductions and axis=() included
    ((0, 4), None, 0),
    ((3, 0), 1, 0),
    ((3, 4), 0, 3),
    ((3, 4), 0, 3.5),
    ((3,), (), 1),
    ((2, 5), -1, 7),
]


@pytest.mark.parametrize(("shape", "axis", "correction"), NO_DEGREES_OF_FREEDOM)
@pytest.mark.parametrize("algorithm", vs.ALGORITHMS)
def test_no_degrees_of_freedom_is_nan_with_one_warning_naming_correction(
    shape: tuple[int, ...], axis: Any, correction: float, algorithm: str
) -> None:
    # The Array API standard: var is NaN where N - correction <= 0; NumPy agrees and
    # warns once. So do we, and the warning names the argument.
    x = np.ones(shape, dtype=np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mean, variance = vs.mean_var(x, axis=axis, correction=correction, algorithm=algorithm)
    assert [w.category for w in caught] == [RuntimeWarning]
    assert "correction" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.var(x, axis=axis, ddof=correction)
    assert np.shape(variance) == np.shape(expected)
    assert np.all(np.isnan(variance))
    assert np.asarray(variance).dtype == np.float32
    if math.prod(shape) == 0:  # the mean of nothing is NaN too
        assert np.all(np.isnan(mean))


def test_nan_and_inf_propagate() -> None:
    for algorithm in vs.ALGORITHMS:
        assert np.isnan(vs.var(np.array([1.0, np.nan, 3.0]), algorithm=algorithm))
        assert np.isnan(vs.var(np.array([1.0, np.inf, 3.0]), algorithm=algorithm))
        _m, v = vs.mean_var(np.array([[1.0, 2.0], [np.nan, 1.0]]), axis=1, algorithm=algorithm)
        assert np.isfinite(v[0]), algorithm
        assert np.isnan(v[1]), algorithm


def test_user_callable_and_registry() -> None:
    def mean_only(x: np.ndarray[Any, Any], /, *, acc: np.dtype[Any]) -> vs.Moments:
        return vs.get_algorithm("two_pass")(x, acc=acc)

    x = np.array([1.0, 2.0, 4.0])
    assert float(vs.var(x, algorithm=mean_only)) == float(vs.var(x))
    vs.register_algorithm("test_mean_only", mean_only)
    try:
        assert float(vs.var(x, algorithm="test_mean_only")) == float(vs.var(x))
        with pytest.raises(ValueError, match="already registered"):
            vs.register_algorithm("test_mean_only", mean_only)
        with pytest.raises(ValueError, match="already registered"):
            vs.register_algorithm("two_pass", mean_only, overwrite=True)
    finally:
        from varstats.algorithms import _REGISTRY

        _REGISTRY.pop("test_mean_only", None)

    def broken(x: np.ndarray[Any, Any], /, *, acc: np.dtype[Any]) -> Any:
        return 1.0

    with pytest.raises(TypeError, match="algorithm: kernel returned float"):
        vs.var(x, algorithm=broken)


def test_keepdims_and_scalar_results() -> None:
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    v = vs.var(x, axis=(0, 2), keepdims=True)
    assert v.shape == (1, 3, 1)
    np.testing.assert_array_equal(v, np.var(x, axis=(0, 2), keepdims=True))
    assert np.ndim(vs.var(x)) == 0
    assert isinstance(vs.var(x), np.float64)
    m, v1 = vs.mean_var(x, axis=-1, correction=1)
    np.testing.assert_array_equal(v1, np.var(x, axis=-1, ddof=1))
    np.testing.assert_array_equal(m, np.mean(x, axis=-1))


def test_inputs_are_not_mutated() -> None:
    x = np.array([3.0, 1.0, 2.0, 7.0])
    copy = x.copy()
    for algorithm in vs.ALGORITHMS:
        vs.var(x, algorithm=algorithm)
    np.testing.assert_array_equal(x, copy)


# --------------------------------------------------------------------------- rescale


def test_rescale_recovers_variances_whose_m2_overflows_or_underflows() -> None:
    overflow = np.array([1e154, 2e154, 3e154])  # M2 = 2e308 > max, var finite
    tiny = np.array([1e-160, 2e-160, 3e-160])  # squared deviations underflow
    for x in (overflow, tiny):
        for correction in (0, 1):
            exact = exact_var(x, correction)
            for algorithm in vs.ALGORITHMS:
                got = vs.var(x, algorithm=algorithm, correction=correction, rescale=True)
                assert np.isfinite(got), algorithm
                # the tiny case's variance is subnormal: allow the output's own spacing
                tiny = vs.finfo("float64").smallest_subnormal
                assert abs(float(got) - float(exact)) <= 1e-12 * float(exact) + 4 * tiny, (
                    algorithm,
                    float(got),
                    float(exact),
                )
    assert np.isinf(vs.var(overflow, algorithm="two_pass"))


@given(
    values=st.lists(st.floats(-1e3, 1e3, width=32), min_size=1, max_size=50),
    prec=st.sampled_from(vs.PRECISIONS),
    algorithm=st.sampled_from(vs.ALGORITHMS),
)
def test_rescale_never_changes_an_in_range_result(
    values: list[float], prec: vs.Precision, algorithm: str
) -> None:
    x = round_to(np.array(values) / 64, prec.storage)
    plain = vs.mean_var(x, algorithm=algorithm, precision=prec)
    scaled = vs.mean_var(x, algorithm=algorithm, precision=prec, rescale=True)
    for p, s in zip(plain, scaled, strict=True):
        assert bits(p) == bits(s)


def test_rescale_is_per_slice() -> None:
    x = np.array([[1e154, 2e154, 3e154], [1.0, 2.0, 3.0]])
    v = vs.var(x, axis=1, rescale=True)
    assert float(v[1]) == float(np.var(x[1]))
    assert float(v[0]) == float(round_to(float(exact_var(x[0])), "float64"))


# --------------------------------------------------------------------------- public cases

# Where two_pass cannot be right whatever the accumulator (DESIGN.md): the mean
# 1e16 + 1 is not a double, and M2 = 2e308 overflows.
TWO_PASS_KNOWN_FAILURES = {("comet_6044", 0), ("overflow_sq", 0)}
# The reported failure of tf_117318 is BatchNorm's folded output form, not the
# variance (tests/test_norms.py shows it); naive gets this constant input right.
NOT_A_VARIANCE_FAILURE = {"tf_117318"}


def _fails(got: np.ndarray[Any, Any], exact: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    with np.errstate(all="ignore"):
        wrong = np.abs(got.astype(np.float64) - exact) > 1e-3 * np.abs(exact)
    return (got < 0) | ~np.isfinite(got) | wrong | ((got == 0) != (exact == 0))


@pytest.mark.parametrize("name", sorted(vs.cases.PUBLIC_CASES))
def test_public_case_naive_reproduces_the_report_and_two_pass_float64_is_right(name: str) -> None:
    case = vs.cases.PUBLIC_CASES[name]
    exact = vs.oracle.exact_var(case.x, axis=-1, correction=case.correction)
    if name not in NOT_A_VARIANCE_FAILURE:
        failed = [
            _fails(
                vs.var(case.x, axis=-1, correction=case.correction, algorithm="naive", summation=s),
                exact,
            ).any()
            for s in vs.SUMMATIONS
        ]
        assert any(failed), f"{name}: naive in {case.dtype} does not reproduce the report"
    two_pass = vs.var(
        case.x, axis=-1, correction=case.correction, precision=vs.Precision(case.dtype, "float64")
    )
    for row, (got, ex) in enumerate(zip(two_pass, exact, strict=True)):
        if (name, row) in TWO_PASS_KNOWN_FAILURES:
            assert _fails(np.asarray([got]), np.asarray([ex])).all(), f"{name}[{row}] now passes?"
        else:
            assert abs(got - ex) <= 1e-12 * abs(ex), (name, row, got, ex)


@pytest.mark.parametrize("name", sorted(vs.cases.PUBLIC_CASES))
def test_recommended_algorithm_gets_every_public_case_right(name: str) -> None:
    case = vs.cases.PUBLIC_CASES[name]
    exact = vs.oracle.exact_var(case.x, axis=-1, correction=case.correction)
    got = vs.var(
        case.x,
        axis=-1,
        correction=case.correction,
        **vs.RECOMMENDED,
        precision=vs.Precision(case.dtype, "float64"),
    )
    np.testing.assert_allclose(got, exact, rtol=1e-15, atol=0, err_msg=name)


# --------------------------------------------------------------------------- fuzzed input

STORED = ["float16", "bfloat16", "float32", "float64", ">f8", ">f4", "int32", "bool", "complex64"]


@st.composite
def any_input(draw: st.DrawFn) -> Any:
    """Arrays of every kind the public API may meet, and some it must refuse."""
    dtype = draw(st.sampled_from(STORED))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))
    values = draw(
        hnp.arrays(np.float64, shape, elements=st.floats(allow_nan=True, allow_infinity=True))
    )
    if dtype in vs.DTYPES:
        x: Any = round_to(values, dtype)
    else:
        with np.errstate(all="ignore"):
            x = np.nan_to_num(values).astype(dtype)
    if x.ndim and draw(st.booleans()):
        x = x[..., ::2]  # a strided view
    if draw(st.booleans()):
        x = np.ma.array(x, mask=draw(hnp.arrays(bool, x.shape)))
    return x


@settings(max_examples=300)
@given(
    x=any_input(),
    axis=st.one_of(
        st.none(),
        st.integers(-4, 4),
        st.lists(st.integers(-4, 4), max_size=3).map(tuple),
        st.sampled_from([2**70, 1.0, "0", True]),
    ),
    correction=st.one_of(
        st.integers(0, 8), st.floats(allow_nan=True), st.sampled_from([10**400, "1", None])
    ),
    algorithm=st.sampled_from([*vs.ALGORITHMS, "bogus"]),
    options=st.sampled_from(
        [{}, {"summation": "sequential"}, {"block": 0}, {"lanes": 3}, {"ddof": 1}, {"dim": 0}]
    ),
    rescale=st.booleans(),
)
def test_any_input_gives_a_result_or_a_value_or_type_error(
    x: Any, axis: Any, correction: Any, algorithm: str, options: dict[str, Any], rescale: bool
) -> None:
    # Issue 14: no OverflowError, AttributeError or error from inside a kernel, and no
    # RuntimeWarning but the one the Array API standard asks for (n - correction <= 0).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with contextlib.suppress(ValueError, TypeError):
            vs.mean_var(
                x, axis=axis, correction=correction, algorithm=algorithm, rescale=rescale, **options
            )
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(runtime) <= 1, [str(w.message) for w in runtime]
    assert all("correction" in str(w.message) for w in runtime), [str(w.message) for w in runtime]


WIDE_ACCUMULATORS = [p for p in vs.PRECISIONS if p.accumulator_dtype.itemsize >= 4]


@pytest.mark.parametrize("precision", WIDE_ACCUMULATORS)
@pytest.mark.parametrize("lanes", [1, 3, 8])
@pytest.mark.parametrize("shape", [(1,), (7,), (100,), (3, 17), (2, 3, 50)])
def test_compiled_welford_gives_the_numpy_bits(
    precision: vs.Precision, lanes: int, shape: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    # with numba (the jit extra) welford runs compiled; without it, one vector step per
    # element: the two must agree bit for bit, inf and NaN included
    from varstats import kernels

    if kernels._welford_kernel() is None:
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(shape[-1] * 10 + lanes)
    values = rng.standard_normal(shape) * 10.0 + 1e3
    if shape[-1] > 5:
        values[..., 3] = np.inf
    x = round_to(values, precision.storage)
    acc = precision.accumulator_dtype
    with np.errstate(all="ignore"):
        compiled = kernels.welford(x, acc=acc, lanes=lanes)
        monkeypatch.setattr(kernels, "_USE_JIT", False)
        plain = kernels.welford(x, acc=acc, lanes=lanes)
    for field in ("count", "mean", "m2"):
        a, b = np.asarray(getattr(compiled, field)), np.asarray(getattr(plain, field))
        assert a.shape == b.shape
        assert a.tobytes() == b.tobytes(), field
