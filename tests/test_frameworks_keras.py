"""The ``keras`` preset against Keras 3 on its TensorFlow backend (CPU).

``KERAS_BACKEND=tensorflow`` and ``TF_ENABLE_ONEDNN_OPTS=0`` are set before Keras
(and so TensorFlow) is first imported in this process, so the Eigen kernels run
(see ``test_frameworks_tensorflow.py``). Skipped without the ``frameworks`` extra.
"""

import os

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from _framework_checks import folded_term_size, layer_data, nchw, nhwc, scale_ulps, ulps

from varstats import norms
from varstats.conventions import CONVENTIONS
from varstats.tensorflow_cpu import eigen_cpu_moments_mean_var

keras = pytest.importorskip("keras")

DTYPES = ["float32", "float64"]
SHAPES = [(2, 3, 1, 1), (4, 6, 3, 3), (16, 5, 4, 4), (4, 8, 3, 3), (3, 16, 4, 4)]
# The layers round rsqrt(var + eps): float64 is 1/sqrt (modelled), float32 Eigen's
# fast-math rsqrt (within 2 ulps, not modelled). x * inv + res is
# the folded form: its rounding is measured in ulps of the output's scale.
RSQRT_ULPS = 4


def test_backend_is_tensorflow():
    assert keras.backend.backend() == "tensorflow"
    assert CONVENTIONS["keras"].verified.startswith(f"keras {keras.__version__}, TensorFlow")


def test_defaults_match_the_preset():
    layer = keras.layers.BatchNormalization()
    conv = CONVENTIONS["keras"]
    assert (layer.momentum, layer.epsilon) == (conv.momentum, conv.eps)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [s for s in SHAPES if s[1] > 1])
def test_ops_moments_bit_for_bit(shape, dtype):
    x = layer_data(shape, dtype, 0)[0]
    mean, var = keras.ops.moments(nhwc(x), axes=[0, 1, 2])
    m, v = eigen_cpu_moments_mean_var(
        np.moveaxis(x, 1, 0).reshape(shape[1], -1), acc=np.dtype(dtype)
    )
    assert ulps(keras.ops.convert_to_numpy(mean), m) == 0
    assert ulps(keras.ops.convert_to_numpy(var), v) == 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_batch_normalization_three_training_steps_then_inference(shape, dtype):
    x, w, b, rm, rv = layer_data(shape, dtype, 1)
    layer = keras.layers.BatchNormalization(dtype=dtype)
    layer.build(nhwc(x).shape)
    layer.set_weights([w, b, rm, rv])  # gamma, beta, moving_mean, moving_variance
    v_rm, v_rv = rm, rv
    for step in range(3):
        xs = (x + step).astype(dtype)
        y = keras.ops.convert_to_numpy(layer(nhwc(xs), training=True))
        out = norms.batch_norm(xs, v_rm, v_rv, weight=w, bias=b, training=True, convention="keras")
        v_rm, v_rv = out.running_mean, out.running_var
        batch_var = np.var(np.moveaxis(xs, 1, 0).reshape(shape[1], -1), axis=-1)
        size = folded_term_size(xs, w, batch_var, layer.epsilon)
        assert scale_ulps(nchw(y), out.y, size) <= (0 if dtype == "float64" else RSQRT_ULPS)
        k_rm, k_rv = (np.asarray(v) for v in layer.get_weights()[2:])
        # Keras rounds m * r, b * (1 - m) and their sum in the data's format,
        # varstats rounds the update once
        assert ulps(k_rm, v_rm) <= 2 * (step + 1)
        assert ulps(k_rv, v_rv) <= 2 * (step + 1)
    y = keras.ops.convert_to_numpy(layer(nhwc(x), training=False))
    out = norms.batch_norm(x, k_rm, k_rv, weight=w, bias=b, convention="keras")
    size = folded_term_size(x, w, k_rv, layer.epsilon)
    assert scale_ulps(nchw(y), out.y, size) <= (0 if dtype == "float64" else RSQRT_ULPS)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 16), (3, 5, 40), (2, 7, 200)])
def test_layer_normalization(shape, dtype):
    # A reduction over the innermost axis is Eigen's inner-most (tree) reducer, not
    # modelled: the statistics differ by a few ulps, the folded output by up to 7 ulps
    # of its scale.
    rng = np.random.default_rng(2)
    x = rng.normal(3.0, 1.0, size=shape).astype(dtype)
    d = shape[-1]
    w, b = rng.normal(1, 0.1, d).astype(dtype), rng.normal(0, 0.1, d).astype(dtype)
    layer = keras.layers.LayerNormalization(dtype=dtype)
    layer.build(x.shape)
    layer.set_weights([w, b])
    y = keras.ops.convert_to_numpy(layer(x))
    out = norms.layer_norm(x, d, weight=w, bias=b, eps=layer.epsilon, convention="keras")
    assert scale_ulps(y, out) <= 8, "measured 7"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("groups", [1, 2, 4])
def test_group_normalization(groups, dtype):
    # Keras reduces the (H, W, channel-in-group) axes of an (N, H, W, G, C/G) view:
    # TensorFlow transposes them innermost and runs the inner-most reducer (not
    # modelled; varstats sums (channel, H, W) left to right): measured up to 4 ulps of
    # the output's scale.
    x, w, b, _, _ = layer_data((2, 8, 4, 4), dtype, 3)
    layer = keras.layers.GroupNormalization(groups=groups, dtype=dtype)
    layer.build(nhwc(x).shape)
    layer.set_weights([w, b])
    y = nchw(keras.ops.convert_to_numpy(layer(nhwc(x))))
    out = norms.group_norm(x, groups, weight=w, bias=b, eps=layer.epsilon, convention="keras")
    assert scale_ulps(y, out) <= 8, "measured 4"


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_normalization_one_value_per_channel_is_not_an_error(dtype):
    # single_value_behaviour="none": the biased batch variance 0 enters the moving average
    x, w, b, rm, rv = layer_data((1, 3, 1, 1), dtype, 4)
    layer = keras.layers.BatchNormalization(dtype=dtype)
    layer.build(nhwc(x).shape)
    layer.set_weights([w, b, rm, rv])
    y = keras.ops.convert_to_numpy(layer(nhwc(x), training=True))
    out = norms.batch_norm(x, rm, rv, weight=w, bias=b, training=True, convention="keras")
    assert CONVENTIONS["keras"].single_value_behaviour == "none"
    assert np.array_equal(nchw(y), out.y)
    k_rm, k_rv = (np.asarray(v) for v in layer.get_weights()[2:])
    assert ulps(k_rm, out.running_mean) <= 1
    assert ulps(k_rv, out.running_var) <= 1
