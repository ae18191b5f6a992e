"""Framework presets (data): every field usable and as documented."""

import numpy as np
import pytest

import varstats.conventions as vc
from varstats import algorithms
from varstats.precision import DTYPES


def test_all_matches_module():
    assert sorted(vc.__all__) == sorted(
        [
            "CONVENTIONS",
            "LAYERS",
            "Convention",
            "get_convention",
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
    assert conv.verified  # how the preset is checked: run against the framework, or modelled


def test_momentum_sides_and_bessel_as_documented():
    c = vc.CONVENTIONS
    assert c["pytorch"].momentum_weights == "new"
    assert c["pytorch"].momentum == 0.1
    assert {c[k].momentum_weights for k in ("keras", "flax", "onnx", "caffe2")} == {"old"}
    assert (c["keras"].momentum, c["keras"].eps) == (0.99, 1e-3)
    assert (c["flax"].momentum, c["flax"].eps) == (0.99, 1e-5)
    assert c["caffe2"].momentum == 0.9
    # ONNX's momentum and epsilon are float attributes: ORT uses them rounded to float
    assert (c["onnx"].momentum, c["onnx"].eps) == (float(np.float32(0.9)), float(np.float32(1e-5)))
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
