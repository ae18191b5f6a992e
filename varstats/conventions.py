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

PyTorch's CPU kernels are emulated bit for bit (see ``tests/test_norms.py``)
by two kernels registered in :mod:`varstats.algorithms`:

``"torch_cpu_welford"``
    ``RowwiseMoments`` of ``aten/src/ATen/native/cpu/moments_utils.h``: Welford
    per SIMD lane with FMA, chunks of 16 vectors merged in a binary cascade, a
    scalar Welford tail, then the lanes merged into the tail one by one. Used by
    LayerNorm and GroupNorm.
``"torch_cpu_two_pass"``
    ``batch_norm_cpu_collect_stats_contiguous_impl`` of
    ``aten/src/ATen/native/cpu/batch_norm_kernel.cpp``: a sequential sum in
    ``acc_type`` (double for float), the mean rounded back to the storage
    format, squared deviations formed in the storage format and summed
    sequentially in the accumulator. Used by BatchNorm and InstanceNorm.

Fused multiply-add is emulated by :func:`fma`: one rounding of the exact
:math:`ab + c`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from varstats.algorithms import _two_sum, get_algorithm, register_algorithm
from varstats.moments import Moments
from varstats.precision import DTYPES, Precision, as_dtype, dtype_name

__all__ = [
    "CONVENTIONS",
    "LAYERS",
    "Convention",
    "fma",
    "get_convention",
    "torch_cpu_two_pass",
    "torch_cpu_welford",
]

Array = npt.NDArray[Any]

#: The layers a convention configures.
LAYERS: Final = ("batch_norm", "layer_norm", "group_norm", "instance_norm")

# --------------------------------------------------------------------------- FMA


def _add_round_to_odd(a: Array, b: Array) -> Array:
    """``a + b`` in float64 rounded to odd: an inexact sum gets an odd last bit.

    Rounding to odd in 53 bits followed by rounding to nearest in p <= 51 bits
    is a correct rounding of the exact sum (Boldo & Melquiond 2008).
    """
    s, e = _two_sum(a, b)
    inexact = (e != 0) & np.isfinite(s)
    even = (s.view(np.uint64) & np.uint64(1)) == 0
    toward = np.where(e > 0, np.inf, -np.inf)
    return np.where(inexact & even, np.nextafter(s, toward), s)


def _two_product(a: Array, b: Array) -> tuple[Array, Array]:
    # Dekker/Veltkamp: p + e == a * b exactly (barring overflow/underflow).
    p = a * b
    factor = 134217729.0  # 2**27 + 1
    ca, cb = factor * a, factor * b
    ah = ca - (ca - a)
    bh = cb - (cb - b)
    al, bl = a - ah, b - bh
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def fma(a: npt.ArrayLike, b: npt.ArrayLike, c: npt.ArrayLike, /, dtype: Any) -> Array:
    r"""Fused multiply-add :math:`\operatorname{fl}(ab + c)`: one rounding to ``dtype``.

    For float16, bfloat16 and float32 the product of two values is exact in
    float64, the sum is rounded to odd in float64 and then to nearest in
    ``dtype``, which is a correct single rounding (Boldo & Melquiond 2008). For
    float64 the product is split exactly (Dekker) and the three-term sum is
    rounded correctly by the same round-to-odd device (Boldo & Melquiond 2008,
    algorithm 5.4). Inputs must already be values of ``dtype``.

    References
    ----------
    .. [1] S. Boldo, G. Melquiond, "Emulation of a FMA and correctly rounded sums:
           proved algorithms using rounding to odd", IEEE Trans. Computers 57(4), 2008.
    """
    dt = as_dtype(dtype)
    a64, b64, c64 = (np.asarray(v).astype(np.float64) for v in (a, b, c))
    with np.errstate(all="ignore"):
        if dt != np.float64:
            # float32 * float32 is exact in float64 (24 + 24 <= 53 bits)
            out = _add_round_to_odd(a64 * b64, c64)
            out = np.where(np.isfinite(out), out, a64 * b64 + c64)
            return np.asarray(out.astype(dt))
        p, pe = _two_product(a64, b64)
        uh, ul = _two_sum(c64, pe)
        th, tl = _two_sum(p, uh)
        v = _add_round_to_odd(tl, ul)
        out = th + v
        # non-finite products or sums: IEEE semantics of the plain expression
        plain = a64 * b64 + c64
        return np.asarray(np.where(np.isfinite(out) & np.isfinite(p), out, plain))


# --------------------------------------------------------------------------- torch kernels

_CHUNK: Final = 16  # kChunkSize in moments_utils.h


def _avx2_lanes(acc: np.dtype[Any]) -> int:
    # Vectorized<T>::size() of the AVX2 build: 256 bits (8 floats, 4 doubles).
    # torch 2.13's AVX512 build also uses 8 float lanes for these kernels.
    return max(1, 32 // acc.itemsize)


def _ceil_log2(m: int) -> int:
    # utils::CeilLog2 in aten/src/ATen/native/cpu/utils.h: 1 for m <= 2
    return 1 if m <= 2 else int(m - 1).bit_length()


def _add_moments_vec(
    add: tuple[int, Array, Array], into: tuple[int, Array, Array], acc: np.dtype[Any]
) -> tuple[int, Array, Array]:
    # AddMomentsVec (moments_utils.h): the only FMA is the M2 update.
    m0_add, m1_add, m2_add = add
    m0, m1, m2 = into
    n = m0 + m0_add
    c = acc.type(m0_add) / acc.type(n) if n else acc.type(0)
    delta = m1_add - m1
    m2_tmp = m2 + m2_add
    c_delta = c * delta
    m0_delta = delta * acc.type(m0)
    return n, m1 + c_delta, fma(m0_delta, c_delta, m2_tmp, acc)


def torch_cpu_welford(x: Array, /, *, acc: np.dtype[Any], lanes: int | None = None) -> Moments:
    r"""PyTorch's CPU ``RowwiseMoments``: lane-wise Welford with FMA and a cascade.

    Models ``aten/src/ATen/native/cpu/moments_utils.h`` (torch 2.13) as compiled
    for AVX2 with GCC's default floating-point contraction:

    1. The row is read as ``n = N // lanes`` vectors. Chunks of 16 vectors run
       Welford per lane from zero, with :math:`c_j = \operatorname{fl}(1/(j+1))`:

       .. math::
           \delta = x - \bar x,\quad \bar x = \operatorname{fma}(c_j, \delta, \bar x),\quad
           M_2 = \operatorname{fma}(\delta, x - \bar x, M_2)

    2. Each chunk is merged into level 0 of a stack; level :math:`j-1` is merged
       into level :math:`j` while the chunk counter's low bits are zero (a binary
       cascade of depth :math:`\lceil\log_2 m\rceil`); at the end every level is
       merged into level 0 (``AddMomentsVec``: one FMA in the :math:`M_2` update).
    3. The ``N mod lanes`` tail elements run scalar Welford (no FMA), and the
       lanes are merged into the tail one at a time (``AddMoments``, contracted
       by the compiler into :math:`\bar x = \operatorname{fma}(c, \delta, \bar x)`
       and :math:`M_2 = M_2 + \operatorname{fma}(\delta^2 c, m_0, M_{2,\text{add}})`).

    Matches ``torch.native_layer_norm``'s mean and rstd bit for bit on float32
    and float64 rows. Float16/bfloat16 storage is accepted but torch's
    reduced-precision path (two float vectors per 16-lane load) is not modelled.
    """
    acc = np.dtype(acc)
    xa = np.asarray(x).astype(acc)
    batch, big_n = xa.shape[:-1], xa.shape[-1]
    flat = xa.reshape(-1, big_n)
    rows = flat.shape[0]
    v = lanes if lanes is not None else _avx2_lanes(acc)
    n = big_n // v
    m = -(-n // _CHUNK)
    depth = _ceil_log2(m)
    vec = flat[:, : n * v].reshape(rows, n, v)
    c_vecs = [acc.type(1) / acc.type(j + 1) for j in range(_CHUNK)]

    def zero() -> tuple[int, Array, Array]:
        return 0, np.zeros((rows, v), acc), np.zeros((rows, v), acc)

    stack = [zero() for _ in range(depth)]
    with np.errstate(all="ignore"):
        for i in range(m):
            m0 = min(_CHUNK, n - i * _CHUNK)
            m1 = np.zeros((rows, v), acc)
            m2 = np.zeros((rows, v), acc)
            for j in range(m0):
                xj = vec[:, i * _CHUNK + j, :]
                delta = xj - m1
                m1 = fma(c_vecs[j], delta, m1, acc)
                m2 = fma(delta, xj - m1, m2, acc)
            stack[0] = _add_moments_vec((m0, m1, m2), stack[0], acc)
            mask, level = i + 1, 1
            while level < depth and (mask & 1) == 0:
                stack[level] = _add_moments_vec(stack[level - 1], stack[level], acc)
                stack[level - 1] = zero()
                mask >>= 1
                level += 1
        for level in range(1, depth):
            stack[0] = _add_moments_vec(stack[level], stack[0], acc)
        lane_m1, lane_m2 = stack[0][1], stack[0][2]

        count = 0
        mean = np.zeros(rows, acc)
        m2s = np.zeros(rows, acc)
        for k in range(n * v, big_n):  # scalar tail: plain Welford, no FMA
            xk = flat[:, k]
            delta = xk - mean
            count += 1
            mean = mean + delta / acc.type(count)
            m2s = m2s + delta * (xk - mean)
        for lane in range(v):  # AddMoments, lanes into the tail
            total = count + n
            c = acc.type(n) / acc.type(total) if total else acc.type(0)
            delta = lane_m1[:, lane] - mean
            mean = fma(c, delta, mean, acc)
            m2s = m2s + fma((delta * delta) * c, acc.type(count), lane_m2[:, lane], acc)
            count = total
    return Moments(
        np.full(batch, big_n, dtype=np.int64),
        mean.reshape(batch).astype(acc),
        m2s.reshape(batch).astype(acc),
    )


def torch_cpu_two_pass(x: Array, /, *, acc: np.dtype[Any], channels_last: bool = False) -> Moments:
    r"""PyTorch's CPU BatchNorm statistics: sequential two-pass, deviations in storage.

    Models ``batch_norm_cpu_collect_stats_contiguous_impl``
    (``aten/src/ATen/native/cpu/batch_norm_kernel.cpp``):

    .. math::
        s = \sum_i x_i \ \text{(sequential, in acc)},\quad
        \bar x = \operatorname{fl}_{\text{storage}}(s / n),\quad
        M_2 = \operatorname{fl}_{\text{storage}}\Big(\sum_i
              \operatorname{fl}_{\text{storage}}\big((x_i - \bar x)^2\big)\Big)

    torch uses ``acc_type<float, false> = double`` as the accumulator, so the
    preset precision is ``float32:float64``. The mean and :math:`M_2` are
    rounded to the storage format (torch stores them in float tensors) and
    returned in ``acc``. ``channels_last=True`` models the kernel torch uses for
    ``(N, C)`` inputs and channels-last layouts when run on one thread.
    """
    acc = np.dtype(acc)
    storage = np.asarray(x).dtype
    xs = np.asarray(x)
    n = xs.shape[-1]
    if channels_last:
        return _torch_cpu_two_pass_channels_last(xs, acc)
    with np.errstate(all="ignore"):
        total = np.add.accumulate(xs.astype(acc), axis=-1)[..., -1]  # strictly left to right
        mean = (total / acc.type(n)).astype(storage)
        dev = xs - mean[..., None]
        sq = (dev * dev).astype(storage)
        m2 = np.add.accumulate(sq.astype(acc), axis=-1)[..., -1].astype(storage)
    return Moments(np.full(mean.shape, n, dtype=np.int64), mean.astype(acc), m2.astype(acc))


def _torch_cpu_two_pass_channels_last(xs: Array, acc: np.dtype[Any]) -> Moments:
    # batch_norm_cpu_collect_stats_channels_last_impl with one thread (and the (N, C)
    # inputs, image_size == 1, that take this path): the per-thread buffer sums in the
    # storage format, sequentially over rows, with y + (x - mean)^2 contracted to an
    # FMA; the one buffer row is then added in acc. Other thread counts split the rows.
    storage = xs.dtype
    n = xs.shape[-1]
    with np.errstate(all="ignore"):
        total = np.add.accumulate(xs, axis=-1)[..., -1]
        mean = (total.astype(acc) / acc.type(n)).astype(storage)
        m2 = np.zeros(xs.shape[:-1], storage)
        for i in range(n):
            dev = xs[..., i] - mean
            m2 = fma(dev, dev, m2, storage)
    return Moments(np.full(mean.shape, n, dtype=np.int64), mean.astype(acc), m2.astype(acc))


def _register(name: str, kernel: Any) -> None:
    try:
        get_algorithm(name)
    except ValueError:
        register_algorithm(name, kernel)


_register("torch_cpu_welford", torch_cpu_welford)
_register("torch_cpu_two_pass", torch_cpu_two_pass)

# --------------------------------------------------------------------------- conventions

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
        # FusedBatchNorm CPU: mean = sum * (1/n), variance = centered squares summed
        # (Eigen reductions: tree-like, modelled as pairwise); tf.nn.moments: two-pass
        algorithms=(
            ("batch_norm", "two_pass"),
            ("instance_norm", "two_pass"),
            ("layer_norm", "two_pass"),
            ("group_norm", "two_pass"),
        ),
        # U = float for half/bfloat16 (FusedBatchNorm<CPUDevice, T, U=float>);
        # tf.nn.moments casts float16 to float32
        batch_norm_accumulators=_AT_LEAST_F32,
        norm_accumulators=_AT_LEAST_F32,
        sources=(
            "tensorflow/core/kernels/fused_batch_norm_op.cc",
            "tensorflow/python/ops/nn_impl.py (moments, batch_normalization)",
        ),
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
        # keras ops.moments (TF backend): mean, then mean of squared differences
        algorithms=(
            ("batch_norm", "two_pass"),
            ("instance_norm", "two_pass"),
            ("layer_norm", "two_pass"),
            ("group_norm", "two_pass"),
        ),
        batch_norm_accumulators=_AT_LEAST_F32,
        norm_accumulators=_AT_LEAST_F32,
        sources=(
            "keras/src/layers/normalization/batch_normalization.py",
            "keras/src/layers/normalization/group_normalization.py",
        ),
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
        # use_fast_variance=True: E[x^2] - E[x]^2 (textbook one-pass), jnp.mean reductions
        algorithms=(
            ("batch_norm", "naive"),
            ("instance_norm", "naive"),
            ("layer_norm", "naive"),
            ("group_norm", "naive"),
        ),
        # force_float32_reductions=True: promote_types(dtype, float32)
        batch_norm_accumulators=_AT_LEAST_F32,
        norm_accumulators=_AT_LEAST_F32,
        sources=("flax/linen/normalization.py (_compute_stats, _normalize, BatchNorm)",),
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
    ),
    "onnx": Convention(
        name="onnx",
        # onnx/defs/nn/defs.cc BatchNormalization-15: epsilon=1e-5, momentum=0.9
        eps=1e-5,
        momentum=0.9,
        # running_mean = input_mean * momentum + current_mean * (1 - momentum)
        momentum_weights="old",
        # "ReduceVar refers to the population variance ... sum(sqrd(x_i - x_avg)) / N"
        running_var_correction=0,
        # Y = (X - current_mean) / sqrt(current_var + epsilon) * scale + B
        eps_placement="inside",
        clamp_negative_variance=(),
        single_value_behaviour="none",
        batch_norm_output_form="centered",
        layer_norm_output_form="centered",
        group_norm_output_form="centered",
        instance_norm_output_form="centered",
        fused_multiply_add=False,
        inv_sqrt="reciprocal_sqrt",
        invstd_in_float64=(),
        # the spec's ReduceMean/ReduceVar: two-pass
        algorithms=(
            ("batch_norm", "two_pass"),
            ("instance_norm", "two_pass"),
            ("layer_norm", "two_pass"),
            ("group_norm", "two_pass"),
        ),
        batch_norm_accumulators=_SAME,
        norm_accumulators=_SAME,
        sources=("https://onnx.ai/onnx/operators/onnx__BatchNormalization.html",),
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
