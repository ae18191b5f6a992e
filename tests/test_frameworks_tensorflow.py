"""The ``tensorflow`` preset and :mod:`varstats.tensorflow_cpu` against tensorflow-cpu itself.

TensorFlow is imported once per session with ``TF_ENABLE_ONEDNN_OPTS=0`` so that
the Eigen kernels of ``fused_batch_norm_op.cc`` and the reduction ops run (the
kernels read from source); the oneDNN kernels that x86 builds use by default are
measured in a subprocess. Skipped when the ``frameworks`` extra is not installed.
"""

import json
import os
import subprocess
import sys
import textwrap

# must precede the first import of tensorflow in this process (test_frameworks_keras too)
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from _framework_checks import layer_data, nchw, nhwc, scale_ulps, ulps

import varstats.tensorflow_cpu as vtf
from varstats import norms
from varstats.cases import PUBLIC_CASES
from varstats.conventions import CONVENTIONS

tf = pytest.importorskip("tensorflow")

F32 = np.dtype(np.float32)
# (N, C, H, W): C below, at and above one AVX packet (8 floats, 4 doubles); N*H*W
# below and above the 16 rows from which Eigen unrolls into four accumulators
SHAPES = [(2, 3, 1, 1), (8, 1, 5, 5), (4, 3, 2, 2), (16, 5, 7, 7), (4, 8, 3, 3), (2, 13, 5, 5)]
SHAPES += [(3, 16, 4, 4), (64, 3, 4, 4)]


def _data(shape, dtype, seed):
    x, *params = layer_data(shape, dtype, seed)  # params: scale, offset, running mean, variance
    return x, params


def test_all_matches_module():
    assert sorted(vtf.__all__) == [
        "eigen_cpu_column_sum",
        "eigen_cpu_fused_batch_norm",
        "eigen_cpu_fused_batch_norm_mean_var",
        "eigen_cpu_moments",
        "eigen_cpu_moments_mean_var",
    ]


def test_preset_points_at_the_emulations():
    conv = CONVENTIONS["tensorflow"]
    assert conv.algorithm("batch_norm") == "eigen_cpu_fused_batch_norm"
    assert conv.algorithm("layer_norm") == "eigen_cpu_moments"
    assert conv.verified.startswith(f"tensorflow-cpu {tf.__version__}")


def _fused(x, w, b, rm, rv, *, training, factor=1.0, eps=1e-3):
    return tf.raw_ops.FusedBatchNormV3(
        x=nhwc(x),
        scale=w,
        offset=b,
        mean=rm,
        variance=rv,
        epsilon=eps,
        exponential_avg_factor=factor,
        data_format="NHWC",
        is_training=training,
    )


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape", SHAPES)
def test_fused_batch_norm_statistics_bit_for_bit(shape, seed):
    x, (w, b, rm, rv) = _data(shape, np.float32, seed)
    _, _, _, saved_mean, saved_var, _ = _fused(x, w, b, rm, rv, training=True)
    rows = np.moveaxis(x, 1, 0).reshape(shape[1], -1)
    mean, var = vtf.eigen_cpu_fused_batch_norm_mean_var(rows, acc=F32)
    assert ulps(saved_mean.numpy(), mean) == 0
    assert ulps(saved_var.numpy(), var) == 0
    # carried through Moments, the variance read back by the layers is the same bits
    m = vtf.eigen_cpu_fused_batch_norm(rows, acc=F32)
    assert ulps(m.mean, mean) == 0
    assert ulps(m.var(0), var) <= 1, "M2 / n carries the rounded variance to 1 ulp"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rsqrt_is_an_estimate_in_float32_and_one_over_sqrt_in_float64(dtype):
    # the cause of the float32 output differences below: Eigen's fast-math float rsqrt,
    # within 2 ulps of the correctly rounded value
    v = np.random.default_rng(0).uniform(0.1, 10, 20000).astype(dtype)
    r = tf.math.rsqrt(tf.constant(v)).numpy()
    exact = (1 / np.sqrt(v.astype(np.longdouble))).astype(dtype)
    if dtype == "float64":
        assert np.array_equal(r, 1.0 / np.sqrt(v))
    else:
        assert not np.array_equal(r, exact)
        assert ulps(r, exact) <= 2


@pytest.mark.parametrize("shape", SHAPES)
def test_fused_batch_norm_layer_train_and_inference(shape):
    # The output rounds rsqrt(var + eps) with Eigen's fast-math float rsqrt (not correctly
    # rounded: within 2 ulps), which varstats does not model; the running statistics
    # round each of TF's three float operations,
    # varstats rounds the update once.
    x, (w, b, rm, rv) = _data(shape, np.float32, 7)
    y, new_mean, new_var, *_ = _fused(x, w, b, rm, rv, training=True, factor=0.01)
    out = norms.batch_norm(
        x, rm, rv, weight=w, bias=b, training=True, convention="tensorflow", momentum=0.99
    )
    assert scale_ulps(nchw(y), out.y) <= 4, "rsqrt estimate: 2 ulps of invstd"
    assert ulps(new_mean.numpy(), out.running_mean) <= 1
    assert ulps(new_var.numpy(), out.running_var) <= 2
    y_eval, *_ = _fused(x, w, b, rm, rv, training=False)
    out_eval = norms.batch_norm(x, rm, rv, weight=w, bias=b, convention="tensorflow")
    assert scale_ulps(nchw(y_eval), out_eval.y) <= 4, "rsqrt estimate: 2 ulps of invstd"


def test_fused_batch_norm_single_value_divides_by_one():
    # rest_size_minus_one = max(rest_size - 1, 1): one value per channel is not an error
    x, (w, b, rm, rv) = _data((1, 3, 1, 1), np.float32, 0)
    _, new_mean, new_var, *_ = _fused(x, w, b, rm, rv, training=True)
    out = norms.batch_norm(x, rm, rv, training=True, convention="tensorflow", momentum=0.0)
    assert np.array_equal(new_var.numpy(), np.zeros(3, np.float32))
    assert np.array_equal(out.running_var, new_var.numpy())
    assert np.array_equal(out.running_mean, new_mean.numpy())


def test_fused_batch_norm_bessel_running_variance():
    # exponential_avg_factor = 1: the running variance is the batch variance times n/(n-1)
    x, (w, b, rm, rv) = _data((4, 3, 2, 2), np.float32, 1)
    _, _, new_var, _, saved_var, _ = _fused(x, w, b, rm, rv, training=True)
    n = 16
    expect = saved_var.numpy() * np.float32(np.float32(n) / np.float32(n - 1))
    assert np.array_equal(new_var.numpy(), expect)
    assert CONVENTIONS["tensorflow"].running_var_correction == 1


def test_fused_batch_norm_has_no_float64_kernel():
    x, params = _data((2, 3, 1, 1), np.float64, 0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="double"):
        _fused(x, *params, training=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [s for s in SHAPES if s[1] > 1])
def test_nn_moments_bit_for_bit(shape, dtype):
    x, _ = _data(shape, dtype, 3)
    mean, var = tf.nn.moments(tf.constant(nhwc(x)), axes=[0, 1, 2])
    rows = np.moveaxis(x, 1, 0).reshape(shape[1], -1)
    m, v = vtf.eigen_cpu_moments_mean_var(rows, acc=np.dtype(dtype))
    assert ulps(mean.numpy(), m) == 0
    assert ulps(var.numpy(), v) == 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nn_moments_full_reduction_is_not_modelled(dtype):
    # One channel makes the reduction a full one: Eigen's FullReducer (vectorized tree)
    # sums in an order the emulation does not follow. Measured: a few ulps.
    x, _ = _data((16, 1, 9, 9), dtype, 4)
    mean, var = tf.nn.moments(tf.constant(nhwc(x)), axes=[0, 1, 2])
    m, v = vtf.eigen_cpu_moments_mean_var(x.reshape(1, -1), acc=np.dtype(dtype))
    assert ulps(mean.numpy(), m) <= 8
    assert ulps(var.numpy(), v) <= 8


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nn_batch_normalization_is_the_folded_form(dtype):
    # x * inv + (offset - mean * inv), inv = rsqrt(var + eps) * scale. float64 rsqrt is
    # 1/sqrt (bit for bit); float32 is Eigen's estimate (see the fused test).
    x, (w, b, rm, rv) = _data((4, 5, 3, 3), dtype, 5)
    y = tf.nn.batch_normalization(tf.constant(nhwc(x)), rm, rv, b, w, 1e-3).numpy()
    out = norms.batch_norm(x, rm, rv, weight=w, bias=b, convention="keras")
    if dtype == "float64":
        assert ulps(nchw(y), out.y) == 0
    else:
        assert scale_ulps(nchw(y), out.y) <= 4


def test_public_case_tf_118179_under_xla_and_not_eager():
    # tensorflow#118179: three equal values 7.5e10. Under jit_compile XLA multiplies
    # the sum by fl(1/3); the mean is one ulp off and the variance (8192 ** 2 * 3 / 3)
    # is 2**26. The eager Eigen kernel divides and returns 0; XLA's rule is the one
    # varstats.jax_cpu emulates.
    from varstats.jax_cpu import xla_cpu_two_pass

    x = PUBLIC_CASES["tf_118179"].x[0]
    jit = tf.function(lambda t: tf.nn.moments(t, [0]), jit_compile=True)
    mean, var = (v.numpy() for v in jit(tf.constant(x)))
    assert float(var) == 2.0**26
    emulated = xla_cpu_two_pass(x[None, :], acc=F32)
    assert ulps(emulated.mean[0], mean) == 0
    assert ulps(emulated.var(0)[0], var) == 0
    eager_mean, eager_var = (v.numpy() for v in tf.nn.moments(tf.constant(x), [0]))
    m, v = vtf.eigen_cpu_moments_mean_var(x[None, :], acc=F32)
    assert float(eager_var) == 0.0 == float(v[0])
    assert ulps(eager_mean, m[0]) == 0


def test_public_case_tf_117318_under_xla_and_not_eager():
    # tensorflow#117318: x equal to the mean 1e15, variance 0. TF 2.21 under jit_compile
    # still returns a large negative output (-7.6e9 on the test machine; the report:
    # -1.14e10); eager TF and the keras/tensorflow presets (no FMA) return exactly 0.
    case = PUBLIC_CASES["tf_117318"]
    x = case.x[0]
    mean = np.float32(case.norm_mean)
    var = np.float32(case.norm_var)
    fn = tf.function(
        lambda t: tf.nn.batch_normalization(t, mean, var, None, None, case.eps), jit_compile=True
    )
    assert np.all(fn(tf.constant(x)).numpy() < -1e9)
    eager = tf.nn.batch_normalization(tf.constant(x), mean, var, None, None, case.eps).numpy()
    assert np.array_equal(eager, np.zeros(3, np.float32))
    out = norms.batch_norm(
        x.reshape(3, 1), np.array([mean]), np.array([var]), eps=case.eps, convention="keras"
    )
    assert np.array_equal(out.y.ravel(), eager)


def test_fused_batch_norm_training_on_three_equal_values_is_off_by_one_ulp_of_the_mean():
    # The values of tensorflow#117318 ([1e15] * 3) in *training*: the Eigen kernel's
    # mean = sum * fl(1/3) is one ulp above 1e15, so the batch variance is 2**52 (not
    # 0) and every output is -1 (not 0). The emulation and the preset reproduce it bit
    # for bit; oneDNN's kernel returns 0 (see the oneDNN test below).
    x = PUBLIC_CASES["tf_117318"].x.reshape(3, 1, 1, 1)
    one, zero = np.ones(1, np.float32), np.zeros(1, np.float32)
    y, _, _, saved_mean, saved_var, _ = _fused(x, one, zero, zero, one, training=True, eps=1e-5)
    assert float(saved_var.numpy()[0]) == 2.0**52
    assert np.array_equal(y.numpy().ravel(), -np.ones(3, np.float32))
    m, v = vtf.eigen_cpu_fused_batch_norm_mean_var(x.reshape(1, 3), acc=F32)
    assert ulps(saved_mean.numpy(), m) == 0
    assert ulps(saved_var.numpy(), v) == 0
    out = norms.batch_norm(x, zero, one, training=True, eps=1e-5, convention="tensorflow")
    assert np.array_equal(out.y.ravel(), y.numpy().ravel())


_ONEDNN_SCRIPT = textwrap.dedent(
    """
    import json, os
    import numpy as np, tensorflow as tf
    from varstats.tensorflow_cpu import eigen_cpu_fused_batch_norm_mean_var
    worst = 0.0
    for seed, shape in enumerate([(16, 5, 7, 7), (4, 8, 3, 3), (3, 16, 4, 4)]):
        rng = np.random.default_rng(seed)
        x = rng.normal(3.0, 1.0, size=shape).astype(np.float32)
        c = shape[1]
        one, zero = np.ones(c, np.float32), np.zeros(c, np.float32)
        out = tf.raw_ops.FusedBatchNormV3(x=np.moveaxis(x, 1, -1), scale=one, offset=zero,
            mean=zero, variance=one, epsilon=1e-3, data_format="NHWC", is_training=True)
        m, v = eigen_cpu_fused_batch_norm_mean_var(np.moveaxis(x, 1, 0).reshape(c, -1),
            acc=np.dtype(np.float32))
        worst = max(worst, float(np.max(np.abs(out[3].numpy() - m) / np.spacing(m))))
    x = np.full((3, 1, 1, 1), np.float32(1e15), np.float32)
    one, zero = np.ones(1, np.float32), np.zeros(1, np.float32)
    out = tf.raw_ops.FusedBatchNormV3(x=x, scale=one, offset=zero, mean=zero, variance=one,
        epsilon=1e-5, data_format="NHWC", is_training=True)
    print(json.dumps([worst, float(out[4].numpy()[0])]))
    """
)


@pytest.mark.slow
def test_onednn_fused_batch_norm_mean_within_measured_ulps():
    # With oneDNN on (the x86 default) FusedBatchNormV3 is oneDNN's kernel: another
    # summation order, measured within 4 ulps of the mean for n up to 784;
    # and it returns the exact variance 0 for [1e15] * 3, where Eigen's gives 2**52.
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run(
        [sys.executable, "-c", _ONEDNN_SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    worst, var_of_equal_values = json.loads(run.stdout.strip().splitlines()[-1])
    assert worst <= 16, f"oneDNN FusedBatchNorm mean differs by {worst} ulps"
    assert var_of_equal_values == 0.0
