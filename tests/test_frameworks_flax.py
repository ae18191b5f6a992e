"""The ``flax`` preset and :mod:`varstats.jax_cpu` against Flax on jax/jaxlib CPU.

Flax's layers run op by op on jax's CPU backend (XLA), with ``jax_enable_x64`` so
that float64 stays float64. Skipped when the ``frameworks`` extra is not installed.
"""

import numpy as np
import pytest
from _framework_checks import layer_data, nchw, nhwc, scale_ulps, ulps

import varstats.jax_cpu as vj
from varstats import norms
from varstats.cases import PUBLIC_CASES
from varstats.conventions import CONVENTIONS

jax = pytest.importorskip("jax")
flax = pytest.importorskip("flax")
jax.config.update("jax_enable_x64", True)

import flax.linen as nn  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax.linen.normalization import _compute_stats  # noqa: E402

DTYPES = ["float32", "float64"]
# (N, C, H, W) below 4096 values in all, where XLA's CPU sums are modelled
SHAPES = [(2, 3, 1, 1), (4, 6, 3, 3), (8, 4, 5, 5), (16, 3, 4, 4), (2, 8, 12, 12)]
# XLA's rsqrt is an estimate refined by Newton steps, not modelled: measured within
# 2 ulps (float32) and 1 ulp (float64) of the correctly rounded 1/sqrt, which moves an
# output by about as many ulps of its scale
RSQRT_ULPS = 4


def test_all_matches_module():
    assert sorted(vj.__all__) == [
        "xla_cpu_naive",
        "xla_cpu_naive_loop",
        "xla_cpu_sum",
        "xla_cpu_two_pass",
        "xla_cpu_two_pass_loop",
    ]


def test_preset_points_at_the_emulations():
    conv = CONVENTIONS["flax"]
    assert conv.algorithm("batch_norm") == "xla_cpu_naive_loop"
    assert conv.algorithm("layer_norm") == "xla_cpu_naive"
    assert conv.verified.startswith(f"flax {flax.__version__} on jax/jaxlib {jax.__version__}")


@pytest.mark.parametrize(
    ("rows", "n"),
    [
        *[(3, n) for n in (1, 2, 31, 32, 33, 100, 513, 1000, 1024)],
        *[(1, n) for n in (1025, 4095)],  # one row: recursive windows, below 4096 elements
    ],
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_over_one_axis_bit_for_bit(rows, n, dtype):
    x = np.random.default_rng(n).normal(3.0, 1.0, size=(rows, n)).astype(dtype)
    assert ulps(np.asarray(jnp.sum(jnp.asarray(x), axis=-1)), vj.xla_cpu_sum(x)) == 0
    assert (
        ulps(
            np.asarray(jnp.mean(jnp.asarray(x), axis=-1)),
            vj.xla_cpu_naive(x, acc=np.dtype(dtype)).mean,
        )
        == 0
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 4096), (5, 1000), (2, 4099), (64, 64)])
def test_sum_of_4096_values_or_more_is_not_modelled(shape, dtype):
    # an input of 4096 elements or more goes to a YNNPACK fusion: another order,
    # measured within a few ulps
    x = np.random.default_rng(0).normal(3.0, 1.0, size=shape).astype(dtype)
    assert ulps(np.asarray(jnp.sum(jnp.asarray(x), axis=-1)), vj.xla_cpu_sum(x)) <= 4


@pytest.mark.parametrize("dtype", DTYPES)
def test_xla_rsqrt_is_an_estimate_within_two_ulps(dtype):
    # the cause of the layers' output differences: XLA's rsqrt is neither correctly
    # rounded nor 1/sqrt, within 2 ulps (float32) and 1 ulp (float64)
    v = np.random.default_rng(0).uniform(0.1, 10, 20000).astype(dtype)
    r = np.asarray(jax.lax.rsqrt(jnp.asarray(v)))
    exact = (1 / np.sqrt(v.astype(np.longdouble))).astype(dtype)
    assert not np.array_equal(r, exact)
    assert not np.array_equal(r, v.dtype.type(1) / np.sqrt(v))
    assert ulps(r, exact) <= (2 if dtype == "float32" else 1)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_statistics_bit_for_bit(shape, dtype, fast):
    x = layer_data(shape, dtype, 1)[0]
    mean, var = _compute_stats(jnp.asarray(nhwc(x)), (0, 1, 2), None, use_fast_variance=fast)
    rows = np.moveaxis(x, 1, 0).reshape(shape[1], -1)
    kernel = vj.xla_cpu_naive_loop if fast else vj.xla_cpu_two_pass_loop
    m = kernel(rows, acc=np.dtype(dtype))
    assert ulps(np.asarray(mean), m.mean) == 0
    # Flax clamps at 0 (as the preset does); Moments carries the variance as M2 / n
    assert ulps(np.asarray(var), np.maximum(m.var(0), 0)) <= 1


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [4, 16, 40, 200, 1024])
def test_layer_norm_statistics_bit_for_bit(n, dtype, fast):
    x = np.random.default_rng(n).normal(3.0, 1.0, size=(3, n)).astype(dtype)
    mean, var = _compute_stats(jnp.asarray(x), (1,), None, use_fast_variance=fast)
    kernel = vj.xla_cpu_naive if fast else vj.xla_cpu_two_pass
    m = kernel(x, acc=np.dtype(dtype))
    assert ulps(np.asarray(mean), m.mean) == 0
    assert ulps(np.asarray(var), np.maximum(m.var(0), 0)) <= 1


def _flax_batch_norm(x, w, b, rm, rv, *, training, fast=True):
    layer = nn.BatchNorm(
        use_running_average=not training, use_fast_variance=fast, dtype=x.dtype, param_dtype=x.dtype
    )
    variables = {"params": {"scale": w, "bias": b}, "batch_stats": {"mean": rm, "var": rv}}
    y, state = layer.apply(variables, nhwc(x), mutable=["batch_stats"])
    stats = state["batch_stats"]
    return nchw(y), np.asarray(stats["mean"]), np.asarray(stats["var"])


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_layer_three_training_steps_then_eval(shape, dtype, fast):
    x, w, b, rm, rv = layer_data(shape, dtype, 2)
    algorithm = "xla_cpu_naive_loop" if fast else "xla_cpu_two_pass_loop"
    f_rm, f_rv, v_rm, v_rv = rm, rv, rm, rv
    for step in range(3):
        xs = (x + step).astype(dtype)
        y, f_rm, f_rv = _flax_batch_norm(xs, w, b, f_rm, f_rv, training=True, fast=fast)
        out = norms.batch_norm(
            xs, v_rm, v_rv, weight=w, bias=b, training=True, convention="flax", algorithm=algorithm
        )
        v_rm, v_rv = out.running_mean, out.running_var
        assert scale_ulps(y, out.y) <= RSQRT_ULPS
        # Flax rounds momentum * r and (1 - momentum) * b and their sum, each in the
        # data's format; varstats rounds the update once
        assert ulps(f_rm, v_rm) <= 2 * (step + 1)
        assert ulps(f_rv, v_rv) <= 2 * (step + 1)
    y, _, _ = _flax_batch_norm(x, w, b, f_rm, f_rv, training=False)
    out = norms.batch_norm(x, f_rm, f_rv, weight=w, bias=b, convention="flax")
    assert scale_ulps(y, out.y) <= RSQRT_ULPS


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 16), (3, 5, 40), (2, 7, 200)])
def test_layer_norm_layer(shape, dtype, fast):
    rng = np.random.default_rng(3)
    x = rng.normal(3.0, 1.0, size=shape).astype(dtype)
    d = shape[-1]
    w, b = rng.normal(1, 0.1, d).astype(dtype), rng.normal(0, 0.1, d).astype(dtype)
    layer = nn.LayerNorm(use_fast_variance=fast, dtype=x.dtype, param_dtype=x.dtype)
    y = np.asarray(layer.apply({"params": {"scale": w, "bias": b}}, x))
    out = norms.layer_norm(
        x,
        d,
        weight=w,
        bias=b,
        eps=1e-6,
        convention="flax",
        algorithm="xla_cpu_naive" if fast else "xla_cpu_two_pass",
    )
    assert scale_ulps(y, out) <= RSQRT_ULPS


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("groups", [1, 2, 4])
def test_group_norm_statistics_in_flax_order_within_measured_ulps(groups, dtype, fast):
    # Flax reduces the axes (H, W, channel-in-group) of an (N, H, W, G, C/G) view; XLA
    # emits that reduction, whose minor axis is reduced, in an order varstats does not
    # model (a row-major loop matches 4 channels per group only): measured within 5 ulps
    # of the mean and, amplified by mean^2 / var with the fast variance, 160 of the var.
    x = layer_data((2, 8, 4, 4), dtype, 4)[0]
    grouped = nhwc(x).reshape(2, 4, 4, groups, 8 // groups)
    mean, var = _compute_stats(jnp.asarray(grouped), (1, 2, 4), None, use_fast_variance=fast)
    rows = np.moveaxis(grouped, 3, 1).reshape(2, groups, -1)
    m = (vj.xla_cpu_naive_loop if fast else vj.xla_cpu_two_pass_loop)(rows, acc=np.dtype(dtype))
    assert ulps(np.asarray(mean), m.mean) <= 8
    assert ulps(np.asarray(var), np.maximum(m.var(0), 0)) <= (256 if fast else 8)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("groups", [1, 2, 4])
def test_group_norm_layer(groups, dtype, fast):
    # Flax sums a group in (H, W, channel) order, varstats.norms in (channel, H, W)
    # order. With the fast variance E[x^2] - E[x]^2 the reordering's rounding is
    # amplified by mean^2 / var (about 10 here): measured up to 56 ulps of the output
    # scale; two-pass up to 5.
    x, w, b, _, _ = layer_data((2, 8, 4, 4), dtype, 4)
    layer = nn.GroupNorm(
        num_groups=groups, use_fast_variance=fast, dtype=x.dtype, param_dtype=x.dtype
    )
    y = nchw(layer.apply({"params": {"scale": w, "bias": b}}, nhwc(x)))
    out = norms.group_norm(
        x,
        groups,
        weight=w,
        bias=b,
        eps=1e-6,
        convention="flax",
        algorithm="xla_cpu_naive_loop" if fast else "xla_cpu_two_pass_loop",
    )
    assert scale_ulps(y, out) <= (64 if fast else 8)


@pytest.mark.parametrize("name", ["ort_28463", "ort_21935", "torch_51102"])
def test_public_layer_norm_cases_stay_finite_in_flax(name):
    # The one-pass variance that makes ONNX Runtime return NaN is clamped at 0 in
    # Flax: the output is finite, and the emulation reproduces it.
    case = PUBLIC_CASES[name]
    x = np.asarray(case.x)
    y = np.asarray(nn.LayerNorm(use_bias=False, use_scale=False, epsilon=case.eps).apply({}, x))
    out = norms.layer_norm(x, x.shape[-1], eps=case.eps, convention="flax")
    assert np.all(np.isfinite(y))
    assert scale_ulps(y, out) <= RSQRT_ULPS
    mean, var = _compute_stats(jnp.asarray(x), (1,), None)
    m = vj.xla_cpu_naive(x, acc=np.dtype(np.float32))
    assert ulps(np.asarray(mean), m.mean) == 0
    assert ulps(np.asarray(var), np.maximum(m.var(0), 0)) <= 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_one_value_per_channel_is_not_an_error(dtype):
    # single_value_behaviour="none": no Bessel factor, the batch variance is 0
    x, w, b, rm, rv = layer_data((1, 3, 1, 1), dtype, 5)
    y, f_rm, f_rv = _flax_batch_norm(x, w, b, rm, rv, training=True)
    out = norms.batch_norm(x, rm, rv, weight=w, bias=b, training=True, convention="flax")
    assert CONVENTIONS["flax"].single_value_behaviour == "none"
    assert np.array_equal(y, out.y)  # (x - x) * r * w + b = b
    assert ulps(f_rm, out.running_mean) <= 1
    assert ulps(f_rv, out.running_var) <= 1
