r"""Framework presets for the normalization layers, and the kernels that emulate them.

A :class:`Convention` records every choice a framework makes inside its
normalization layers that changes the numbers: default ``eps`` and
``momentum``, which side the momentum weights, whether the running variance is
Bessel-corrected, where ``eps`` goes, whether a negative variance is clamped,
what happens when a channel holds one value, how the output is formed
(centered or folded, with or without fused multiply-adds), and which moments
algorithm and accumulator the framework's CPU kernel uses for each layer.

Every field value cites the source it was read from; the full notes, with the
lines quoted, are in ``docs/frameworks.md``.

The kernels that emulate a framework live in their own modules
(:mod:`varstats.torch_cpu`); a preset names them by their registry name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from varstats.precision import DTYPES, Precision, as_dtype, dtype_name

__all__ = [
    "CONVENTIONS",
    "LAYERS",
    "Convention",
    "get_convention",
]

#: The layers a convention configures.
LAYERS: Final = ("batch_norm", "layer_norm", "group_norm", "instance_norm")

_SAME: Final = tuple((d, d) for d in DTYPES)
_AT_LEAST_F32: Final = (
    ("float16", "float32"),
    ("bfloat16", "float32"),
    ("float32", "float32"),
    ("float64", "float64"),
)
_TORCH_ACC_TYPE: Final = (  # at::acc_type<T, /*is_cuda=*/false>
    ("float16", "float32"),
    ("bfloat16", "float32"),
    ("float32", "float64"),
    ("float64", "float64"),
)


@dataclass(frozen=True)
class Convention:
    r"""How one framework's normalization layers round, update and normalize.

    Attributes
    ----------
    name : str
    eps : float
        Default :math:`\epsilon` of BatchNorm.
    momentum : float
        Default BatchNorm momentum.
    momentum_weights : {"new", "old"}
        ``"new"``: :math:`r \leftarrow (1-m)\,r + m\,b` (PyTorch);
        ``"old"``: :math:`r \leftarrow m\,r + (1-m)\,b` (Keras, Flax, ONNX, Caffe2).
    running_var_correction : int
        0: the running variance averages the biased batch variance; 1: Bessel's.
    eps_placement : {"inside", "outside"}
        :math:`1/\sqrt{\sigma^2+\epsilon}` or :math:`1/(\sqrt{\sigma^2}+\epsilon)`.
    clamp_negative_variance : tuple of str
        Layers whose negative computed variance is replaced by 0 before the square root.
    single_value_behaviour : {"raise", "max1", "inf", "none"}
        Training with one value per channel: PyTorch raises; TensorFlow divides by
        :math:`\max(n-1, 1)`; Caffe2's unbias factor :math:`n/(n-1)` is inf;
        "none": no Bessel factor, nothing special.
    batch_norm_output_form, layer_norm_output_form : str
    group_norm_output_form, instance_norm_output_form : str
        ``"centered"``: :math:`(x-\mu)\cdot(\sigma^{-1}\gamma) + \beta`;
        ``"centered_then_affine"``: :math:`((x-\mu)\,\sigma^{-1})\,\gamma + \beta`;
        ``"folded"``: :math:`x\cdot a + b` with :math:`a = \sigma^{-1}\gamma,\ b = \beta - \mu a`;
        ``"folded_if_affine"``: folded when weight or bias is given, else centered.
    fused_multiply_add : bool
        Whether the last multiply-add of each form (and :math:`b = \beta - \mu a`)
        is one FMA.
    inv_sqrt : {"rsqrt", "reciprocal_sqrt"}
        ``rsqrt``: :math:`\sigma^{-1}` rounded once; ``reciprocal_sqrt``: the square
        root and the division each rounded.
    invstd_in_float64 : tuple of str
        Layers whose :math:`\sigma^{-1}` is computed in double and rounded once to
        the accumulator (PyTorch BatchNorm training, GroupNorm).
    algorithms : tuple of (layer, algorithm name)
        Moments algorithm of the CPU kernel per layer.
    batch_norm_accumulators, norm_accumulators : tuple of (storage, accumulator)
        Accumulator per storage format for BatchNorm/InstanceNorm and for
        LayerNorm/GroupNorm.
    running_update : {"generic", "torch_cpu"}
        ``torch_cpu`` reproduces the float/double mix of ``Normalization.cpp``.
    sources : tuple of str
        Where the values come from (see ``docs/frameworks.md``).
    verified : str
        How the preset is checked: the framework release it was run against (and
        the test file that runs it), or that it is modelled from source only.
    """

    name: str
    eps: float
    momentum: float
    momentum_weights: str
    running_var_correction: int
    eps_placement: str
    clamp_negative_variance: tuple[str, ...]
    single_value_behaviour: str
    batch_norm_output_form: str
    layer_norm_output_form: str
    group_norm_output_form: str
    instance_norm_output_form: str
    fused_multiply_add: bool
    inv_sqrt: str
    invstd_in_float64: tuple[str, ...]
    algorithms: tuple[tuple[str, str], ...]
    batch_norm_accumulators: tuple[tuple[str, str], ...]
    norm_accumulators: tuple[tuple[str, str], ...]
    running_update: str = "generic"
    sources: tuple[str, ...] = ()
    verified: str = "modelled from source"

    def __post_init__(self) -> None:
        choices = {
            "momentum_weights": ("new", "old"),
            "eps_placement": ("inside", "outside"),
            "single_value_behaviour": ("raise", "max1", "inf", "none"),
            "inv_sqrt": ("rsqrt", "reciprocal_sqrt"),
            "running_update": ("generic", "torch_cpu"),
        }
        for field, allowed in choices.items():
            if getattr(self, field) not in allowed:
                raise ValueError(
                    f"{field}: expected one of {allowed}, got {getattr(self, field)!r}"
                )
        forms = ("centered", "centered_then_affine", "folded", "folded_if_affine")
        for layer in LAYERS:
            if getattr(self, f"{layer}_output_form") not in forms:
                raise ValueError(f"{layer}_output_form: expected one of {forms}")
        if self.running_var_correction not in (0, 1):
            raise ValueError("running_var_correction: expected 0 or 1")
        if not self.eps > 0:
            raise ValueError(f"eps: must be positive, got {self.eps!r}")

    def algorithm(self, layer: str, /) -> str:
        """The moments algorithm this framework's CPU kernel uses for ``layer``."""
        return dict(self.algorithms)[_check_layer(layer)]

    def output_form(self, layer: str, /) -> str:
        return str(getattr(self, f"{_check_layer(layer)}_output_form"))

    def precision(self, layer: str, storage: Any, /) -> Precision:
        """The :class:`Precision` of ``layer``'s kernel for data stored in ``storage``."""
        table = (
            self.batch_norm_accumulators
            if _check_layer(layer) in ("batch_norm", "instance_norm")
            else self.norm_accumulators
        )
        name = dtype_name(as_dtype(storage, name="storage"))
        return Precision(name, dict(table)[name])


def _check_layer(layer: str) -> str:
    if layer not in LAYERS:
        raise ValueError(f"layer: expected one of {LAYERS}, got {layer!r}")
    return layer


CONVENTIONS: Final[dict[str, Convention]] = {
    "pytorch": Convention(
        name="pytorch",
        # torch/nn/modules/batchnorm.py: eps=1e-5, momentum=0.1
        eps=1e-5,
        momentum=0.1,
        # Normalization.cpp batch_norm_cpu_update_stats_template:
        #   running_mean = momentum * mean + (1 - momentum) * running_mean
        momentum_weights="new",
        # ... unbiased_var = _var_sum / (n - 1)
        running_var_correction=1,
        # InvStd: 1 / std::sqrt(var + epsilon)
        eps_placement="inside",
        # group_norm_kernel.cpp: std::sqrt(std::max(rstd_val, opmath_t(0)) + eps);
        # LayerNorm does not clamp; BatchNorm's var_sum is a sum of squares
        clamp_negative_variance=("group_norm",),
        # torch/nn/functional.py _verify_batch_size: "Expected more than 1 value per
        # channel when training"
        single_value_behaviour="raise",
        # batch_norm_kernel.cpp: alpha = invstd * weight; beta = bias - mean * alpha;
        # output = input * alpha + beta
        batch_norm_output_form="folded",
        # layer_norm_kernel.cpp LayerNormSecondPass: (x + (-mean)) * scale * gamma + beta
        layer_norm_output_form="centered_then_affine",
        # group_norm_kernel.cpp: (X - mean) * rstd without affine; scale * X + bias with
        instance_norm_output_form="folded",
        group_norm_output_form="folded_if_affine",
        # per-CPU-capability files are built with -mavx2 -mfma and GCC's default
        # -ffp-contract=fast: a * b + c becomes one FMA (confirmed bit for bit)
        fused_multiply_add=True,
        inv_sqrt="reciprocal_sqrt",
        # BatchNorm training: InvStd<double>; GroupNorm: std::sqrt(float + double eps)
        invstd_in_float64=("batch_norm", "group_norm", "instance_norm"),
        algorithms=(
            ("batch_norm", "torch_cpu_two_pass"),
            ("instance_norm", "torch_cpu_two_pass"),
            ("layer_norm", "torch_cpu_welford"),
            ("group_norm", "torch_cpu_welford"),
        ),
        batch_norm_accumulators=_TORCH_ACC_TYPE,  # acc_type<scalar_t, false>
        norm_accumulators=_AT_LEAST_F32,  # opmath_type<T>
        running_update="torch_cpu",
        sources=(
            "aten/src/ATen/native/Normalization.cpp",
            "aten/src/ATen/native/cpu/batch_norm_kernel.cpp",
            "aten/src/ATen/native/cpu/layer_norm_kernel.cpp",
            "aten/src/ATen/native/cpu/group_norm_kernel.cpp",
            "aten/src/ATen/native/cpu/moments_utils.h",
        ),
        verified="torch 2.13.0 CPU, run (tests/test_norms.py, tests/test_torch_cpu.py)",
    ),
    "tensorflow": Convention(
        name="tensorflow",
        # tf.nn.fused_batch_norm(..., epsilon=0.001); exponential_avg_factor=1.0
        eps=1e-3,
        momentum=0.99,
        momentum_weights="old",
        # fused_batch_norm_op.cc: batch_var = variance * rest_size_adjust,
        # rest_size_adjust = rest_size / max(rest_size - 1, 1) ("Bessel's correction")
        running_var_correction=1,
        eps_placement="inside",  # (variance + epsilon).rsqrt()
        clamp_negative_variance=(),  # two-pass: x_centered.square().sum()
        single_value_behaviour="max1",  # rest_size_minus_one = max(rest_size - 1, 1)
        # fused_batch_norm_op.cc: x_centered * (rsqrt(var + eps) * scale) + offset
        batch_norm_output_form="centered",
        # tf.nn.batch_normalization (nn_impl.py): x * inv + (offset - mean * inv)
        layer_norm_output_form="folded",
        group_norm_output_form="folded",
        instance_norm_output_form="folded",
        fused_multiply_add=False,
        inv_sqrt="rsqrt",
        invstd_in_float64=(),
        # FusedBatchNorm CPU: per channel a left-to-right sum times fl(1/n), then the
        # centered squares the same way (run: bit for bit with the Eigen kernels);
        # the other layers are built from tf.nn.moments: column sums divided by n
        # (LayerNorm's innermost-axis reduction is Eigen's tree reducer: not modelled)
        algorithms=(
            ("batch_norm", "eigen_cpu_fused_batch_norm"),
            ("instance_norm", "eigen_cpu_moments"),
            ("layer_norm", "eigen_cpu_moments"),
            ("group_norm", "eigen_cpu_moments"),
        ),
        # U = float for half/bfloat16 (FusedBatchNorm<CPUDevice, T, U=float>);
        # tf.nn.moments casts float16 to float32
        batch_norm_accumulators=_AT_LEAST_F32,
        norm_accumulators=_AT_LEAST_F32,
        sources=(
            "tensorflow/core/kernels/fused_batch_norm_op.cc",
            "tensorflow/python/ops/nn_impl.py (moments, batch_normalization)",
        ),
        verified="tensorflow-cpu 2.21.0, run with TF_ENABLE_ONEDNN_OPTS=0 "
        "(tests/test_frameworks_tensorflow.py)",
    ),
    "keras": Convention(
        name="keras",
        # keras/src/layers/normalization/batch_normalization.py: momentum=0.99, epsilon=1e-3
        eps=1e-3,
        momentum=0.99,
        # moving_variance * momentum + variance * (1 - momentum)
        momentum_weights="old",
        running_var_correction=0,  # ops.moments: biased variance (Keras 3)
        eps_placement="inside",
        clamp_negative_variance=(),
        single_value_behaviour="none",
        # ops.batch_normalization -> tf.nn.batch_normalization: x * inv + (offset - mean*inv);
        # GroupNormalization: reshaped_inputs * inv + res
        batch_norm_output_form="folded",
        layer_norm_output_form="folded",
        group_norm_output_form="folded",
        instance_norm_output_form="folded",
        fused_multiply_add=False,
        inv_sqrt="rsqrt",
        invstd_in_float64=(),
        # keras ops.moments (TF backend, keras/src/backend/tensorflow/nn.py) is
        # tf.nn.moments: left-to-right sums divided by n, two passes
        algorithms=(
            ("batch_norm", "eigen_cpu_moments"),
            ("instance_norm", "eigen_cpu_moments"),
            ("layer_norm", "eigen_cpu_moments"),
            ("group_norm", "eigen_cpu_moments"),
        ),
        batch_norm_accumulators=_AT_LEAST_F32,
        norm_accumulators=_AT_LEAST_F32,
        sources=(
            "keras/src/layers/normalization/batch_normalization.py",
            "keras/src/layers/normalization/group_normalization.py",
            "keras/src/backend/tensorflow/nn.py (moments, batch_normalization)",
        ),
        verified="keras 3.15.1, TensorFlow backend, run (tests/test_frameworks_keras.py)",
    ),
    "flax": Convention(
        name="flax",
        # flax/linen/normalization.py BatchNorm: momentum=0.99, epsilon=1e-5
        eps=1e-5,
        momentum=0.99,
        # ra_var = momentum * ra_var + (1 - momentum) * var
        momentum_weights="old",
        running_var_correction=0,
        eps_placement="inside",  # lax.rsqrt(var + epsilon)
        # _compute_stats: var = jnp.maximum(0.0, mu2 - _abs_sq(mu))
        clamp_negative_variance=LAYERS,
        single_value_behaviour="none",
        # _normalize: y = (x - mean) * (rsqrt(var + eps) * scale) + bias
        batch_norm_output_form="centered",
        layer_norm_output_form="centered",
        group_norm_output_form="centered",
        instance_norm_output_form="centered",
        fused_multiply_add=False,
        inv_sqrt="rsqrt",
        invstd_in_float64=(),
        # use_fast_variance=True: E[x^2] - E[x]^2 (textbook one-pass) with XLA CPU's
        # jnp.mean: sum * fl(1/n); one reduced axis (LayerNorm) is summed in windows of
        # 32, several axes (BatchNorm over N, H, W; GroupNorm) in one loop
        algorithms=(
            ("batch_norm", "xla_cpu_naive_loop"),
            ("instance_norm", "xla_cpu_naive_loop"),
            ("layer_norm", "xla_cpu_naive"),
            ("group_norm", "xla_cpu_naive_loop"),
        ),
        # force_float32_reductions=True: promote_types(dtype, float32)
        batch_norm_accumulators=_AT_LEAST_F32,
        norm_accumulators=_AT_LEAST_F32,
        sources=("flax/linen/normalization.py (_compute_stats, _normalize, BatchNorm)",),
        verified="flax 0.12.8 on jax/jaxlib 0.10.2 CPU, run (tests/test_frameworks_flax.py)",
    ),
    "caffe2": Convention(
        name="caffe2",
        # caffe2/operators/spatial_batch_norm_op.h: momentum 0.9, epsilon 1e-5
        eps=1e-5,
        momentum=0.9,
        # running_var = a * unbias_scale * var + b * running_var, a = 1 - momentum, b = momentum
        momentum_weights="old",
        running_var_correction=1,
        eps_placement="inside",  # rsqrtf(var + epsilon)
        clamp_negative_variance=(),
        # unbias_scale = reduce_size == 1 ? inf : reduce_size / (reduce_size - 1)
        single_value_behaviour="inf",
        # alpha = scale * rstd; beta = bias - alpha * mean; AffineChannel: x * alpha + beta
        batch_norm_output_form="folded",
        layer_norm_output_form="folded",
        group_norm_output_form="folded",
        instance_norm_output_form="folded",
        fused_multiply_add=False,
        inv_sqrt="rsqrt",
        invstd_in_float64=(),
        # ComputeBatchMoments: var = batch_var_sum * scale - mean^2 (multi-batch path);
        # single batch: math::Moments. Modelled as the textbook one-pass.
        algorithms=(
            ("batch_norm", "naive"),
            ("instance_norm", "naive"),
            ("layer_norm", "naive"),
            ("group_norm", "naive"),
        ),
        batch_norm_accumulators=_SAME,
        norm_accumulators=_SAME,
        sources=(
            "caffe2/operators/spatial_batch_norm_op.h",
            "caffe2/operators/spatial_batch_norm_op.cu",
        ),
        verified="modelled from source (no installable Caffe2 CPU wheel)",
    ),
    "onnx": Convention(
        name="onnx",
        # onnx/defs/nn/defs.cc BatchNormalization-15: epsilon=1e-5, momentum=0.9; the
        # attribute is a float, so onnxruntime adds fl32(1e-5) also to double data (run)
        eps=float(np.float32(1e-5)),
        momentum=float(np.float32(0.9)),  # a float attribute too
        # running_mean = input_mean * momentum + current_mean * (1 - momentum)
        momentum_weights="old",
        # "ReduceVar refers to the population variance ... sum(sqrd(x_i - x_avg)) / N"
        running_var_correction=0,
        # Y = (X - current_mean) / sqrt(current_var + epsilon) * scale + B
        eps_placement="inside",
        clamp_negative_variance=(),
        single_value_behaviour="none",
        # onnxruntime batch_norm.h: new_scale = inv_std * scale;
        # new_bias = bias - mean * new_scale; Y = X * new_scale + new_bias
        batch_norm_output_form="folded",
        # MLAS layernorm_kernel_avx2.cpp: fma((x - mean) * inv, scale, bias); the FMA is
        # not modelled (fused_multiply_add is one switch, and BatchNorm does not fuse)
        layer_norm_output_form="centered_then_affine",
        # GroupNormalization-21: double data normalized in float32 (stash type float); the
        # order of its reductions is not modelled (run: measured)
        group_norm_output_form="centered_then_affine",
        # instance_norm.cc: channel_scale = inv_stdev * scale;
        # channel_shift = B - mean * channel_scale; Y = X * channel_scale + channel_shift
        instance_norm_output_form="folded",
        fused_multiply_add=False,
        inv_sqrt="reciprocal_sqrt",
        invstd_in_float64=(),
        # the spec's ReduceMean/ReduceVar is two-pass, but ORT's CPU LayerNormalization
        # (layer_norm_impl.cc ComputeJob) is one pass, E[x^2] - E[x]^2, unclamped
        # InstanceNormalization: Eigen SSE reductions (instance_norm.cc); LayerNormalization:
        # MLAS AVX2 centered two-pass or Welford (layer_norm_impl.cc); BatchNormalization
        # training: Eigen column sums per (n, c), and GroupNormalization: modelled as a
        # two-pass
        algorithms=(
            ("batch_norm", "two_pass"),
            ("instance_norm", "ort_cpu_instance_norm"),
            ("layer_norm", "ort_cpu_layer_norm"),
            ("group_norm", "two_pass"),
        ),
        batch_norm_accumulators=_SAME,
        norm_accumulators=_SAME,
        sources=(
            "https://onnx.ai/onnx/operators/onnx__BatchNormalization.html",
            "onnxruntime/core/providers/cpu/nn/batch_norm.h (BatchNorm::Compute)",
            "onnxruntime/core/providers/cpu/nn/layer_norm_impl.cc (ComputeJob)",
            "onnxruntime/core/providers/cpu/nn/instance_norm.cc (InstanceNorm<float>::Compute)",
            "onnxruntime/core/mlas/lib/layernorm_kernel_avx2.cpp (MlasLayerNormKernelAvx2)",
        ),
        verified="onnxruntime 1.31.1 CPU execution provider, run "
        "(tests/test_frameworks_onnxruntime.py)",
    ),
}


def get_convention(convention: str | Convention, /) -> Convention:
    """A :class:`Convention` by name (see :data:`CONVENTIONS`), or ``convention`` itself."""
    if isinstance(convention, Convention):
        return convention
    if isinstance(convention, str):
        try:
            return CONVENTIONS[convention]
        except KeyError:
            raise ValueError(
                f"convention: unknown {convention!r}; expected one of {sorted(CONVENTIONS)}"
            ) from None
    raise TypeError(f"convention: expected a name or a Convention, got {type(convention).__name__}")
