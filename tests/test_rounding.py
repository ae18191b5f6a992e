"""Error-free transformations and the emulated fused multiply-add, against exact rationals."""

from fractions import Fraction

import numpy as np
import pytest

import varstats.rounding as vr
from varstats.precision import DTYPES, finfo, round_to


def test_all_matches_module():
    assert sorted(vr.__all__) == ["compiled_fma", "fma", "split_factor", "two_product", "two_sum"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_two_sum_is_error_free(dtype):
    rng = np.random.default_rng(3)
    a = round_to(rng.standard_normal(200) * 2.0 ** rng.integers(-8, 8, 200), dtype)
    b = round_to(rng.standard_normal(200), dtype)
    t, e = vr.two_sum(a, b)
    for ai, bi, ti, ei in zip(a, b, t, e, strict=True):
        assert Fraction(float(ti)) + Fraction(float(ei)) == Fraction(float(ai)) + Fraction(
            float(bi)
        )


def test_two_product_is_error_free():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal(200), rng.standard_normal(200) * 1e3
    p, e = vr.two_product(a, b)
    for ai, bi, pi, ei in zip(a, b, p, e, strict=True):
        assert Fraction(pi) + Fraction(ei) == Fraction(ai) * Fraction(bi)


def _exact_fma(a, b, c):
    return Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))


@pytest.mark.parametrize("dtype", DTYPES)
def test_fma_is_one_correct_rounding(dtype):
    rng = np.random.default_rng(7)
    fi = finfo(dtype)
    n = 400
    a = round_to(rng.standard_normal(n) * 2.0 ** rng.integers(-6, 6, n), dtype)
    b = round_to(rng.standard_normal(n), dtype)
    # c close to -a*b: the hard cases where double rounding would show
    c = round_to(
        -(a.astype(np.float64) * b.astype(np.float64)) * (1 + rng.standard_normal(n) * fi.eps),
        dtype,
    )
    got = vr.fma(a, b, c, dtype)
    for ai, bi, ci, gi in zip(a, b, c, got, strict=True):
        exact = _exact_fma(ai, bi, ci)
        g = Fraction(float(gi))
        mag = max(abs(g), Fraction(fi.tiny))
        ulp = Fraction(2) ** (mag.numerator.bit_length() - mag.denominator.bit_length() - fi.mant)
        assert abs(g - exact) <= ulp, (ai, bi, ci, gi)  # within half an ulp of the binade above
        # and no representable value is closer than the result
        for nb in (
            np.nextafter(gi.astype(np.float64), np.inf),
            np.nextafter(gi.astype(np.float64), -np.inf),
        ):
            other = round_to(nb, dtype)
            if other != gi:
                assert abs(Fraction(float(other)) - exact) >= abs(g - exact)


def test_fma_differs_from_unfused_multiply_add():
    # (1 + 2**-12)**2 - 1: the unfused product drops the 2**-24 term, FMA keeps it
    a = np.float32(1 + 2.0**-12)
    got = vr.fma(a, a, np.float32(-1), "float32")
    assert float(got) == 2.0**-11 + 2.0**-24
    assert float(a * a - np.float32(1)) == 2.0**-11


def test_compiled_fma_gives_the_emulated_bits(monkeypatch):
    # llvm.fma (the jit extra) is the exactly rounded fma by definition; the emulation
    # is one correct rounding (above): every float32 result has the same bits, edge
    # values of finfo, zeros of both signs, infinities and NaN included
    pytest.importorskip("numba")
    fi = finfo("float32")
    rng = np.random.default_rng(8)
    n = 20_000
    edges = np.array(
        [0.0, -0.0, np.inf, -np.inf, np.nan, fi.max, -fi.max, fi.tiny, fi.smallest_subnormal],
        np.float32,
    )

    def draw():
        # every binade, subnormal to overflow
        v = round_to(rng.standard_normal(n) * 2.0 ** rng.integers(-150, 129, n), "float32")
        pick = rng.integers(0, 12, n) == 0
        v[pick] = rng.choice(edges, pick.sum())
        return v

    a, b = draw(), draw()
    out = []
    with np.errstate(all="ignore"):
        product = a.astype(np.float64) * b.astype(np.float64)
        near = round_to(-product * (1 + rng.standard_normal(n) * fi.eps), "float32")
        c = np.where(rng.integers(0, 2, n) == 0, draw(), near)
        for jit in (False, True):
            monkeypatch.setattr(vr, "_USE_JIT", jit)
            out.append(vr.fma(a, b, c, "float32"))
    emulated, compiled = out
    assert np.array_equal(np.isnan(emulated), np.isnan(compiled))
    ok = ~np.isnan(emulated)
    assert emulated[ok].tobytes() == compiled[ok].tobytes()
