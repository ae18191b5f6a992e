"""Tests for varstats.metrics against hand-computed values and exact arithmetic."""

from __future__ import annotations

import inspect
import math
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

import varstats.metrics as metrics_module
from varstats.algorithms import PAIRWISE_BLOCK, get_algorithm
from varstats.cases import generate, kappa, offset_ratios
from varstats.metrics import (
    BOUND_ALGORITHMS,
    SUMMATIONS,
    FailureCounts,
    bound,
    failure_counts,
    lre,
    rel_err,
    ulp,
    ulps,
)
from varstats.oracle import exact_mean, exact_var
from varstats.precision import DTYPES, as_dtype, finfo
from varstats.reductions import var

_UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def step(x: Any, dtype: str, k: int) -> np.ndarray:
    """The value ``k`` representable numbers above positive ``x`` in ``dtype`` (bit arithmetic)."""
    dt = as_dtype(dtype)
    uint = _UINT[dt.itemsize]
    bits = int(np.asarray(x).astype(dt).view(uint)) + k
    return np.asarray(bits, dtype=uint).view(dt)


# ------------------------------------------------------------------------- ulps


@pytest.mark.parametrize("dtype", DTYPES)
def test_ulps_between_one_and_its_neighbours(dtype: str) -> None:
    above = step(1.0, dtype, 1)
    below = step(1.0, dtype, -1)
    assert ulps(above, 1.0, dtype) == 1.0
    assert ulps(step(1.0, dtype, 3), 1.0, dtype) == 3.0
    assert ulps(below, 1.0, dtype) == 0.5, "the spacing halves below a power of two"
    assert ulps(1.0, 1.0, dtype) == 0.0
    assert ulp(1.0, dtype) == finfo(dtype).eps


@pytest.mark.parametrize("dtype", DTYPES)
def test_ulp_is_the_grid_spacing_everywhere(dtype: str) -> None:
    fi = finfo(dtype)
    x = np.abs(generate(500, storage=dtype, scale=1e3, seed=11).astype(np.float64)).ravel()
    probes = [*x.tolist(), fi.tiny, fi.smallest_subnormal, 3 * fi.smallest_subnormal, 1.5]
    for p in probes:
        if p == 0:
            continue
        spacing = float(step(p, dtype, 1)) - p
        assert ulp(p, dtype) == spacing, p
    # at and below the subnormal boundary the spacing is the smallest subnormal
    assert ulp(0.0, dtype) == fi.smallest_subnormal
    assert ulps(fi.smallest_subnormal, 0.0, dtype) == 1.0
    # the top binade
    assert ulp(fi.max, dtype) == fi.max - float(step(fi.max, dtype, -1))


def test_ulps_of_a_float64_exact_value_in_a_narrow_format() -> None:
    # exact 1 + 2**-12 lies between two float16 values 1 and 1 + 2**-10
    assert ulps(1.0, 1.0 + 2.0**-12, "float16") == 0.25
    assert ulps(1.0, 1.0 + 2.0**-12, "float32") == 2.0**11


def test_ulps_special_values() -> None:
    assert np.isnan(ulps(np.nan, 1.0, "float32"))
    assert np.isnan(ulps(1.0, np.nan, "float32"))
    assert ulps(np.inf, 1.0, "float32") == np.inf
    assert ulps(np.inf, np.inf, "float64") == 0.0
    assert ulps(-np.inf, np.inf, "float64") == np.inf


# ---------------------------------------------------------------------- rel_err


def test_rel_err_hand_values() -> None:
    assert rel_err(1.5, 1.0) == 0.5
    assert rel_err(-128.0, 1.25) == pytest.approx(129.25 / 1.25, rel=1e-15)
    assert rel_err(0.0, 0.0) == 0.0
    assert rel_err(-0.0, 0.0) == 0.0
    assert rel_err(2.0**-1074, 0.0) == np.inf
    assert np.isnan(rel_err(np.nan, 1.0))
    assert np.isnan(rel_err(1.0, np.nan))
    assert rel_err(np.inf, 1e300) == np.inf
    assert rel_err(np.inf, np.inf) == 0.0
    big = finfo("float64").max
    assert rel_err(-big, big) == 2.0, "difference overflows float64"


@pytest.mark.parametrize("dtype", DTYPES)
def test_rel_err_of_stored_values_is_exact(dtype: str) -> None:
    # value and exact both stored: the float64 relative error is one rounding of the
    # exact rational |v - e| / |e|
    v = float(step(3.0, dtype, 5))
    e = 3.0
    assert rel_err(np.asarray(v).astype(as_dtype(dtype)), e) == float(
        abs(Fraction(v) - Fraction(e)) / Fraction(e)
    )


def test_rel_err_broadcasts() -> None:
    out = rel_err(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([1.0, 4.0]))
    assert out.shape == (2, 2)
    assert out.dtype == np.float64
    assert out.tolist() == [[0.0, 0.5], [2.0, 0.0]]


# -------------------------------------------------------------------------- lre


@pytest.mark.parametrize("dtype", DTYPES)
def test_lre_of_an_exact_result_is_capped_at_the_digits(dtype: str) -> None:
    digits = finfo(dtype).digits
    assert digits == pytest.approx(finfo(dtype).mant * math.log10(2.0))
    assert lre(1.25, 1.25, dtype) == digits
    assert lre(0.0, 0.0, dtype) == digits
    assert lre(1.0 + 1e-30, 1.0, dtype) == digits


def test_lre_hand_values() -> None:
    assert lre(1.001, 1.0, "float64") == pytest.approx(3.0, abs=1e-9)
    assert lre(2.0, 1.0, "float64") == 0.0, "100% wrong: no correct digit"
    assert math.copysign(1.0, float(lre(0.0, 1.0, "float64"))) == 1.0, "+0 digits, not -0"
    assert lre(-1.0, 1.0, "float64") == 0.0, "wrong sign"
    assert lre(-128.0, 1.25, "float32") == 0.0, "ort_28463"
    assert lre(np.nan, 1.0, "float64") == 0.0
    assert lre(np.inf, 1.0, "float64") == 0.0
    assert lre(1e-10, 0.0, "float64") == 0.0, "nonzero variance of constant data"
    # capped: a float64-accurate result scored in float16 has float16's digits
    assert lre(1.0 + 1e-8, 1.0, "float16") == finfo("float16").digits


# ------------------------------------------------------------------------ bound


N = 2.0**10
K = 10.0
U = 2.0**-24


@pytest.mark.parametrize(
    ("algorithm", "summation", "expected"),
    [
        # Chan, Golub & LeVeque (1983), table 1, with a pure tree (block=1):
        # L = n (sequential) or log2 n (pairwise)
        ("naive", "sequential", N * K**2 * U),
        ("naive", "pairwise", 10 * K**2 * U),
        ("two_pass", "sequential", N * U + N**2 * K**2 * U**2),
        ("two_pass", "pairwise", 10 * U + (10 * K * U) ** 2),
        ("corrected_two_pass", "sequential", N * U + N**3 * K**2 * U**3),
        ("corrected_two_pass", "pairwise", 10 * U + 10**3 * K**2 * U**3),
        ("welford", "sequential", N * K * U),
        ("welford", "pairwise", N * K * U),
        ("pairwise", "pairwise", 10 * K * U),
        ("pairwise", "sequential", 10 * K * U),
        # derived rows (see the module docstring)
        ("chan", "sequential", (N - 1) * K * U),  # block=1: one update per value, as Welford
        ("shifted", "sequential", N * (1 + N) * U),
        ("shifted", "pairwise", 10 * (1 + N) * U),
        # Sum2 (Ogita, Rump & Oishi 2005): eps = 3u + (L u)^2
        ("compensated", "sequential", (3 * U + (N * U) ** 2) + (3 * U + (N * U) ** 2) ** 3 * K**2),
        ("compensated", "pairwise", (3 * U + (10 * U) ** 2) + (3 * U + (10 * U) ** 2) ** 3 * K**2),
    ],
)
def test_bound_table_matches_the_formula(algorithm: str, summation: str, expected: float) -> None:
    got = bound(algorithm, N, K, U, summation, block=1, lanes=1)
    assert got == pytest.approx(expected, rel=1e-14)


def test_bound_with_shift_block_and_lanes() -> None:
    # the shifted bound is the textbook bound at the shifted condition number
    assert bound("shifted", N, 1e6, U, "sequential", shifted_kappa=2.0) == pytest.approx(
        bound("naive", N, 2.0, U, "sequential"), rel=1e-15
    )
    n = 2.0**20
    # pairwise sums with sequential leaves of 128: L = 127 + log2(n / 128)
    assert bound("naive", n, K, U, "pairwise", block=128) == pytest.approx(
        (127 + 13) * K**2 * U, rel=1e-14
    )
    # a tree over fewer values than one leaf is a sequential sum of n - 1 additions
    assert bound("two_pass", 100, 1.0, U, "pairwise", block=128) == pytest.approx(
        99 * U + (99 * U) ** 2, rel=1e-14
    )
    # pairwise and chan: two-pass leaves (sequential sums of b - 1 additions, quadratic
    # in kappa) plus one kappa u per merge level (pairwise) or per merge (chan)
    assert bound("pairwise", n, K, U, block=64) == pytest.approx(
        63 * U + (63 * K * U) ** 2 + 14 * K * U, rel=1e-14
    )
    assert bound("chan", n, K, U, block=1024) == pytest.approx(
        1023 * U + (1023 * K * U) ** 2 + 1023 * K * U, rel=1e-14
    )
    # fewer values than one block: a single two-pass leaf of n values, no merge
    assert bound("chan", 100, K, U, block=1024) == pytest.approx(
        99 * U + (99 * K * U) ** 2, rel=1e-14
    )
    assert bound("pairwise", 20, K, U, block=32) == pytest.approx(
        19 * U + (19 * K * U) ** 2, rel=1e-14
    )
    # dot2: 4 (L u)^2 (1 + (u kappa)^2), L = 31 + ceil(log2(ceil(n / 32)))
    assert bound("dot2", n, K, U) == pytest.approx(
        4 * ((31 + 15) * U) ** 2 * (1 + (U * K) ** 2), rel=1e-14
    )
    assert bound("welford", n, K, U, lanes=8) == pytest.approx((n / 8 + 3) * K * U, rel=1e-14)


def test_bound_defaults_follow_the_kernels() -> None:
    # the defaults describe the kernel that ran: its own block and lane counts
    for algorithm, option in [("pairwise", "block"), ("chan", "block"), ("welford", "lanes")]:
        default = inspect.signature(get_algorithm(algorithm)).parameters[option].default
        assert bound(algorithm, 4096, K, U) == bound(algorithm, 4096, K, U, **{option: default})
    assert bound("naive", 4096, K, U) == bound("naive", 4096, K, U, block=PAIRWISE_BLOCK)


@pytest.mark.parametrize("algorithm", BOUND_ALGORITHMS)
@pytest.mark.parametrize("summation", SUMMATIONS)
def test_bound_is_monotone_in_n_and_kappa(algorithm: str, summation: str) -> None:
    n = np.array([2, 3, 10, 100, 1000, 10**6])
    k = np.array([1.0, 2.0, 1e2, 1e4, 1e8])
    by_n = bound(algorithm, n, 10.0, U, summation)
    by_k = bound(algorithm, 1000, k, U, summation)
    assert np.all(np.diff(by_n) > 0), "strictly increasing in n"
    assert np.all(np.diff(by_k) >= 0), "non-decreasing in kappa"
    if algorithm != "shifted":  # the default shifted bound does not depend on kappa
        assert np.all(np.diff(by_k) > 0)
    assert bound(algorithm, 1000, np.inf, U, summation) == np.inf or algorithm == "shifted"


def test_bound_broadcasts_and_orders_the_algorithms() -> None:
    out = bound("two_pass", np.array([[10], [1000]]), np.array([1.0, 1e3, 1e6]), U, "sequential")
    assert out.shape == (2, 3)
    assert out.dtype == np.float64
    # at a large condition number the one-pass bound exceeds the two-pass bound,
    # which exceeds the corrected two-pass bound (CGL 1983's ordering)
    args = (10**4, 1e3, U, "sequential")
    assert bound("naive", *args) > bound("two_pass", *args) > bound("corrected_two_pass", *args)


def test_bound_rejects_bad_arguments_by_name() -> None:
    with pytest.raises(ValueError, match="algorithm"):
        bound("textbook", 10, 1.0, U)
    with pytest.raises(ValueError, match="lanes"):
        bound("welford", 10, 1.0, U, lanes=0)
    with pytest.raises(ValueError, match="summation"):
        bound("naive", 10, 1.0, U, "kahan")
    with pytest.raises(ValueError, match="n"):
        bound("naive", 0, 1.0, U)
    with pytest.raises(ValueError, match="block"):
        bound("naive", 10, 1.0, U, block=0)


def _seq_naive_m2(x: np.ndarray) -> float:
    # textbook one-pass with sequential sums, every operation rounded in x.dtype
    dt = x.dtype.type
    s = dt(0)
    q = dt(0)
    for v in x:
        s = dt(s + v)
        q = dt(q + dt(v * v))
    return float(dt(q - dt(dt(s * s) / dt(len(x)))))


def _seq_two_pass_m2(x: np.ndarray) -> float:
    dt = x.dtype.type
    s = dt(0)
    for v in x:
        s = dt(s + v)
    mean = dt(s / dt(len(x)))
    q = dt(0)
    for v in x:
        d = dt(v - mean)
        q = dt(q + dt(d * d))
    return float(q)


@pytest.mark.parametrize("offset", [0.0, 10.0, 1e3, 1e5])
def test_measured_float32_errors_respect_the_bound(offset: float) -> None:
    # exact S from fractions; slack 4 covers the constants the first-order bound drops
    x = generate(256, storage="float32", offset=offset, seed=13)[0]
    values = [Fraction(float(v)) for v in x]
    mean = sum(values, Fraction(0)) / len(values)
    m2 = sum(((v - mean) ** 2 for v in values), Fraction(0))
    k = float(kappa(len(x), float(mean), float(m2)))
    u = finfo("float32").unit_roundoff
    for algorithm, m2_hat in [("naive", _seq_naive_m2(x)), ("two_pass", _seq_two_pass_m2(x))]:
        err = float(rel_err(m2_hat, float(m2)))
        b = float(bound(algorithm, len(x), k, u, "sequential"))
        assert err <= 4 * b, f"{algorithm}: error {err:.3g} above CGL bound {b:.3g}"


# ------------------------------------------------------------------- failures


def test_failure_counts() -> None:
    counts = failure_counts([1.0, -0.5, np.nan, np.inf, -np.inf, -0.0, 0.0])
    assert counts == FailureCounts(total=7, negative=1, nan=1, posinf=1, neginf=1)
    assert counts.nonfinite == 3
    assert failure_counts(np.array([-1.0, 2.0], dtype=np.float16)).negative == 1
    assert failure_counts(np.empty((0, 3))).total == 0


def test_all_is_complete() -> None:
    public = {
        name
        for name, obj in vars(metrics_module).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == metrics_module.__name__
    }
    assert public <= set(metrics_module.__all__)
    assert all(hasattr(metrics_module, name) for name in metrics_module.__all__)


@pytest.mark.parametrize("algorithm", ["chan", "pairwise"])
@pytest.mark.parametrize("precision", ["bfloat16:bfloat16", "float16:float16", "float32:float32"])
def test_tree_and_blocked_bounds_cover_their_two_pass_leaves(
    algorithm: str, precision: str
) -> None:
    # n < block (one two-pass leaf) and n > block: the leaf term is quadratic in kappa,
    # which the linear bound missed by 4.6-6.5x in bfloat16
    storage, acc = precision.split(":")
    u = finfo(acc).unit_roundoff
    for n in (100, 1000, 3000):
        for ratio in offset_ratios(storage):
            x = generate(n, storage=storage, offset=ratio, batch=8, seed=n)
            exact = exact_var(x, axis=-1)
            k = kappa(1, exact_mean(x, axis=-1).astype(np.float64), exact)
            got = var(x, axis=-1, algorithm=algorithm, precision=precision)
            err = rel_err(got, exact)
            b = bound(algorithm, n, k, u)
            finite = np.isfinite(got.astype(np.float64))
            assert np.all(err[finite] <= b[finite] + 2 * u), (n, ratio, float(np.max(err / b)))


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (np.ones(2, dtype=complex), TypeError),  # would drop the imaginary part
        (np.ma.array([1.0, 2.0], mask=[0, 1]), TypeError),  # would score the masked value
        (np.array(["1.5"]), TypeError),  # would be parsed
        (10**400, ValueError),  # not an OverflowError
    ],
)
def test_errors_refuse_what_float64_would_silently_change(value: Any, error: type) -> None:
    for call in (
        lambda: rel_err(value, 1.0),
        lambda: ulps(value, 1.0, "float32"),
        lambda: lre(1.0, value, "float32"),
    ):
        with pytest.raises(error, match=r"value|exact"):
            call()


def test_errors_of_big_endian_and_torch_values_are_those_of_their_values() -> None:
    torch = pytest.importorskip("torch")
    x = np.array([1.0, 1.5, 3.0])
    assert np.array_equal(rel_err(x.astype(">f8"), 1.0), rel_err(x, 1.0))
    grad = torch.tensor(x, requires_grad=True)
    assert np.array_equal(ulps(grad, 1.0, "float64"), ulps(x, 1.0, "float64"))
