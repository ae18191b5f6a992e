"""Framework presets, the FMA emulation and the PyTorch moments kernels."""

from fractions import Fraction

import numpy as np
import pytest

import varstats.conventions as vc
from varstats import algorithms, oracle
from varstats.precision import DTYPES, finfo, round_to


def test_all_matches_module():
    assert sorted(vc.__all__) == sorted(
        [
            "CONVENTIONS",
            "LAYERS",
            "Convention",
            "fma",
            "get_convention",
            "torch_cpu_two_pass",
            "torch_cpu_welford",
        ]
    )


def test_every_framework_has_a_convention():
    assert set(vc.CONVENTIONS) == {"pytorch", "tensorflow", "keras", "flax", "caffe2", "onnx"}


@pytest.mark.parametrize("name", sorted(vc.CONVENTIONS))
def test_convention_fields_are_usable(name):
    conv = vc.CONVENTIONS[name]
    assert conv.name == name
    assert conv.eps > 0
    assert 0 < conv.momentum < 1
    for layer in vc.LAYERS:
        algorithms.get_algorithm(conv.algorithm(layer))  # registered
        for storage in DTYPES:
            prec = conv.precision(layer, storage)
            assert prec.storage == storage
    assert conv.sources


def test_momentum_sides_and_bessel_as_documented():
    c = vc.CONVENTIONS
    assert c["pytorch"].momentum_weights == "new"
    assert c["pytorch"].momentum == 0.1
    assert {c[k].momentum_weights for k in ("keras", "flax", "onnx", "caffe2")} == {"old"}
    assert (c["keras"].momentum, c["keras"].eps) == (0.99, 1e-3)
    assert (c["flax"].momentum, c["flax"].eps) == (0.99, 1e-5)
    assert c["onnx"].momentum == c["caffe2"].momentum == 0.9
    assert c["pytorch"].running_var_correction == 1
    assert c["onnx"].running_var_correction == 0
    assert c["pytorch"].single_value_behaviour == "raise"
    assert c["tensorflow"].single_value_behaviour == "max1"
    assert c["caffe2"].single_value_behaviour == "inf"


def test_unknown_convention_names_the_argument():
    with pytest.raises(ValueError, match="convention"):
        vc.get_convention("mxnet")
    with pytest.raises(TypeError, match="convention"):
        vc.get_convention(3)  # type: ignore[arg-type]


def test_bad_convention_field_is_rejected():
    import dataclasses

    with pytest.raises(ValueError, match="momentum_weights"):
        dataclasses.replace(vc.CONVENTIONS["pytorch"], momentum_weights="both")


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
    got = vc.fma(a, b, c, dtype)
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
    got = vc.fma(a, a, np.float32(-1), "float32")
    assert float(got) == 2.0**-11 + 2.0**-24
    assert float(a * a - np.float32(1)) == 2.0**-11


@pytest.mark.parametrize("n", [2, 7, 8, 9, 100, 257, 1000])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_welford_within_updating_bound(n, dtype):
    rng = np.random.default_rng(n)
    x = round_to(rng.standard_normal((3, n)) + 10, dtype)
    m = vc.torch_cpu_welford(x, acc=np.dtype(dtype))
    exact = oracle.exact_var(x, axis=-1)
    u = finfo(dtype).unit_roundoff
    kappa = np.sqrt(1 + 100 * n)  # offset 10, unit spread
    rel = np.abs(m.var(0).astype(np.float64) - exact) / exact
    assert np.all(rel <= 4 * np.log2(n + 1) * kappa * u + 1e-300), "updating bound log2(n) kappa u"


def test_torch_two_pass_rounds_deviations_in_storage():
    x = np.array([[40000, 40001, 40002, 40003]], dtype=np.float32)
    m = vc.torch_cpu_two_pass(x, acc=np.dtype(np.float64))
    assert float(m.var(0)[0]) == 1.25
    assert m.mean.dtype == np.float64
