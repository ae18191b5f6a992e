"""The ``onnx`` preset and :mod:`varstats.onnxruntime_cpu` against ONNX Runtime's CPU kernels.

Every test builds a one-node model with ``onnx.helper`` and runs it on the CPU
execution provider with one intra-op thread. Skipped without the ``frameworks`` extra.
"""

import numpy as np
import pytest
from _framework_checks import folded_term_size, layer_data, scale_ulps, ulps

import varstats.onnxruntime_cpu as vort
from varstats import norms
from varstats.cases import PUBLIC_CASES
from varstats.conventions import CONVENTIONS

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

DTYPES = ["float32", "float64"]
# ONNX's epsilon attribute is a float: ORT adds fl32(1e-5) to double data too
EPS = float(np.float32(1e-5))
_ELEM = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}


def _run(op, inputs, *, opset, outputs=1, stats_float=False, **attrs):
    """Run one node; ``stats_float``: outputs after the first are float (LayerNorm's U)."""
    dtype = inputs[0].dtype.name
    names = [f"in{k}" for k in range(len(inputs))]
    outs = [f"out{k}" for k in range(outputs)]
    types = [_ELEM[dtype]] + [TensorProto.FLOAT if stats_float else _ELEM[dtype]] * (outputs - 1)
    graph = helper.make_graph(
        [helper.make_node(op, names, outs, **attrs)],
        "one_node",
        [
            helper.make_tensor_value_info(n, _ELEM[a.dtype.name], a.shape)
            for n, a in zip(names, inputs, strict=True)
        ],
        [helper.make_tensor_value_info(o, t, None) for o, t in zip(outs, types, strict=True)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, dict(zip(names, inputs, strict=True)))


def _aligned(x, offset=0):
    """``x`` copied to a buffer that starts ``offset`` elements past a 64-byte boundary."""
    itemsize = x.dtype.itemsize
    buf = np.empty(x.size + 64 // itemsize + offset, x.dtype)
    skip = (-buf.ctypes.data % 64) // itemsize + offset
    out = buf[skip : skip + x.size].reshape(x.shape)
    out[...] = x
    return out


def test_all_matches_module():
    assert sorted(vort.__all__) == [
        "eigen_sse_sum",
        "ort_cpu_instance_norm",
        "ort_cpu_layer_norm",
        "ort_cpu_layer_norm_mean_var",
    ]


def test_preset_says_it_was_run():
    conv = CONVENTIONS["onnx"]
    assert conv.verified.startswith(f"onnxruntime {ort.__version__} CPU")
    assert conv.batch_norm_output_form == conv.instance_norm_output_form == "folded"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 5), (4, 6, 3, 3), (2, 4, 2, 3, 3)])
def test_batch_norm_inference_bit_for_bit(shape, dtype):
    # batch_norm.h: inv_std = 1 / sqrt(var + eps); y = x * (inv_std * scale)
    # + (bias - mean * inv_std * scale), no FMA
    x, w, b, rm, rv = layer_data(shape, dtype, 0)
    (y,) = _run("BatchNormalization", [x, w, b, rm, rv], opset=15, epsilon=1e-5)
    out = norms.batch_norm(x, rm, rv, weight=w, bias=b, convention="onnx")
    assert ulps(y, out.y) == 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(8, 3), (4, 6, 3, 3), (16, 3, 5, 5)])
def test_batch_norm_training_mode(shape, dtype):
    # training_mode=1 runs on CPU: biased batch variance in the running average, old
    # side weighted by momentum. Its sums are Eigen SSE column reductions (aligned per
    # (n, c) column) accumulated over n, and inv_std = sqrt(1 / (var + eps)); the preset
    # uses a left-to-right two-pass and 1 / sqrt: measured 2 ulps of the folded terms
    # and 1 ulp of the running statistics.
    x, w, b, rm, rv = layer_data(shape, dtype, 1)
    y, new_rm, new_rv = _run(
        "BatchNormalization",
        [_aligned(x), w, b, rm, rv],
        opset=15,
        outputs=3,
        epsilon=EPS,
        momentum=0.9,
        training_mode=1,
    )
    out = norms.batch_norm(x, rm, rv, weight=w, bias=b, training=True, convention="onnx")
    batch_var = np.var(np.moveaxis(x, 1, 0).reshape(shape[1], -1), axis=-1)
    assert scale_ulps(y, out.y, folded_term_size(x, w, batch_var, EPS)) <= 4
    assert ulps(new_rm, out.running_mean) <= 2
    assert ulps(new_rv, out.running_var) <= 2
    assert CONVENTIONS["onnx"].running_var_correction == 0
    assert CONVENTIONS["onnx"].eps == EPS
    assert CONVENTIONS["onnx"].momentum == float(np.float32(0.9))


@pytest.mark.parametrize("offset", [0, 1, 2, 3])
@pytest.mark.parametrize("shape", [(2, 3, 5, 5), (4, 3, 7, 7), (2, 5, 3, 3), (1, 2, 4, 4)])
def test_instance_norm_bit_for_bit_at_every_alignment(shape, offset):
    x, w, b, _, _ = layer_data(shape, "float32", 2)
    (y,) = _run("InstanceNormalization", [_aligned(x, offset), w, b], opset=22, epsilon=1e-5)
    out = norms.instance_norm(x, weight=w, bias=b, eps=EPS, convention="onnx", offset=offset)
    assert ulps(y, out) == 0


def test_instance_norm_depends_on_the_buffer_address():
    # The same values at another 16-byte phase give other bits (Eigen aligns the mean's
    # reduction to the buffer): ORT's InstanceNormalization is not a function of the values.
    x, w, b, _, _ = layer_data((2, 3, 5, 5), "float32", 2)
    (y0,) = _run("InstanceNormalization", [_aligned(x, 0), w, b], opset=22, epsilon=1e-5)
    (y1,) = _run("InstanceNormalization", [_aligned(x, 1), w, b], opset=22, epsilon=1e-5)
    assert not np.array_equal(y0, y1)


def test_instance_norm_has_no_float64_kernel():
    x, w, b, _, _ = layer_data((2, 3, 4), "float64", 0)
    with pytest.raises(Exception, match="InstanceNormalization"):
        _run("InstanceNormalization", [x, w, b], opset=22, epsilon=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 3), (4, 7), (6, 8), (5, 9), (4, 16), (3, 5, 40), (3, 1000)])
def test_layer_norm_statistics_bit_for_bit(shape, dtype):
    # float rows of 8 or more: MLAS's AVX2 centered two-pass; shorter rows and double:
    # Welford. Mean and InvStdDev are float outputs (U), so double rows are checked
    # after rounding to float.
    rng = np.random.default_rng(3)
    x = rng.normal(3.0, 1.0, size=shape).astype(dtype)
    d = shape[-1]
    w, b = rng.normal(1, 0.1, d).astype(dtype), rng.normal(0, 0.1, d).astype(dtype)
    y, mean, inv_std = _run(
        "LayerNormalization", [x, w, b], opset=17, outputs=3, stats_float=True, axis=-1, epsilon=EPS
    )
    m, v = vort.ort_cpu_layer_norm_mean_var(x, acc=x.dtype)
    expect_inv = x.dtype.type(1) / np.sqrt(v + x.dtype.type(EPS))
    f32 = np.float32
    assert ulps(mean.ravel(), m.astype(f32).ravel()) == 0
    assert ulps(inv_std.ravel(), expect_inv.astype(f32).ravel()) == 0
    # the output: ((x - mean) * inv) fused-multiply-added with scale and bias in the
    # MLAS kernel; the preset rounds the product and the sum apart (no FMA, which its
    # BatchNorm must not have): measured within 1 ulp of the output's scale
    out = norms.layer_norm(x, d, weight=w, bias=b, eps=EPS, convention="onnx")
    assert scale_ulps(y, out) <= 2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("groups", [1, 2, 4])
def test_group_norm(groups, dtype):
    # GroupNormalization-21 works in float (stash_type=1) also for double data, so ORT's
    # float64 GroupNormalization is float32-accurate; the order of its reductions is not
    # modelled (group_norm.cc as read, double sums of float values, misses by 1000 ulps). The
    # preset (a two-pass in the data's type) is measured against it in float32 terms:
    # up to 13 ulps of the output's scale (4 groups of 32 values).
    x, w, b, _, _ = layer_data((2, 8, 4, 4), dtype, 4)
    (y,) = _run("GroupNormalization", [x, w, b], opset=21, epsilon=EPS, num_groups=groups)
    out = norms.group_norm(x, groups, weight=w, bias=b, eps=EPS, convention="onnx")
    f32 = np.float32
    assert scale_ulps(y.astype(f32), out.astype(f32)) <= 16, "measured 13"
    if dtype == "float64":
        assert scale_ulps(y, out) > 1e6, "float64 data normalized in float32"


@pytest.mark.parametrize("name", ["ort_28463", "ort_21935"])
def test_public_layer_norm_cases_are_fixed_in_ort_1_31(name):
    # onnxruntime#28463 (-128 variance, NaN) and #21935 (NaN on a constant row) came
    # from a one-pass E[x^2] - E[x]^2 in float. ORT 1.31.1 returns finite outputs: the
    # 4-value row of #28463 takes the Welford loop, the 256-value row of #21935 the
    # centered two-pass MLAS kernel. The emulation returns the same statistics.
    case = PUBLIC_CASES[name]
    x = np.asarray(case.x)
    d = x.shape[-1]
    one, zero = np.ones(d, np.float32), np.zeros(d, np.float32)
    y, mean, inv_std = _run(
        "LayerNormalization", [x, one, zero], opset=17, outputs=3, axis=-1, epsilon=case.eps
    )
    assert np.all(np.isfinite(y))
    m, v = vort.ort_cpu_layer_norm_mean_var(x, acc=np.dtype(np.float32))
    assert float(v[0]) >= 0
    assert ulps(mean.ravel(), m) == 0
    expect_inv = np.float32(1) / np.sqrt(v + np.float32(case.eps))
    assert ulps(inv_std.ravel(), expect_inv) == 0
    out = norms.layer_norm(x, d, weight=one, bias=zero, eps=case.eps, convention="onnx")
    assert scale_ulps(y, out) <= 2
    if name == "ort_28463":  # 40000..40003: exact variance 1.25, output +-1.34, +-0.45
        assert float(v[0]) == 1.25
        exact = (np.arange(4) - 1.5) / np.sqrt(1.25 + case.eps)
        assert np.allclose(y.ravel(), exact, rtol=4 * np.finfo(np.float32).eps)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_training_one_value_per_channel_is_not_an_error(dtype):
    x, w, b, rm, rv = layer_data((1, 3), dtype, 6)
    y, new_rm, new_rv = _run(
        "BatchNormalization",
        [x, w, b, rm, rv],
        opset=15,
        outputs=3,
        epsilon=EPS,
        momentum=0.9,
        training_mode=1,
    )
    out = norms.batch_norm(x, rm, rv, weight=w, bias=b, training=True, convention="onnx")
    assert CONVENTIONS["onnx"].single_value_behaviour == "none"
    assert np.array_equal(y, out.y)  # x * a + (b - x * a) = b up to rounding, same bits
    assert ulps(new_rm, out.running_mean) <= 2
    assert ulps(new_rv, out.running_var) <= 2
