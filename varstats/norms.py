r"""Functional normalization layers with a pluggable moments algorithm and precision.

Every layer takes channels-first ``(N, C, ...)`` arrays, mirrors the argument order
of ``torch.nn.functional``, returns new arrays and never mutates its inputs. Layers
that compute moments accept ``algorithm=`` (a registry name or a kernel callable,
see :mod:`varstats.algorithms`), ``precision=`` and ``convention=`` (a name in
:data:`varstats.conventions.CONVENTIONS` or a :class:`~varstats.conventions.Convention`).
``algorithm=None`` and ``precision=None`` take the convention's CPU-kernel choice
for the layer and the input's storage format; with the ``"pytorch"`` convention the
outputs equal ``torch.nn.functional``'s CPU outputs bit for bit on float32, float64,
float16 and bfloat16 inputs (torch 2.13; see ``tests/test_norms.py``).

All of them are instances of the two steps Wu & He (2018) use to unify BN, LN, IN and
GN: normalize by the moments of a set of axes, then apply a per-channel affine map

.. math::
    y = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}\,\gamma + \beta .

How the output is formed (centered or folded, fused or not) is part of the
convention and of the accuracy: the folded form :math:`x a + (\beta - \mu a)` loses
every correct digit once :math:`|\mu| \gg \sigma`.

References
----------
.. [1] S. Ioffe, C. Szegedy, "Batch normalization", ICML 2015.
.. [2] J. L. Ba, J. R. Kiros, G. E. Hinton, "Layer normalization", arXiv:1607.06450, 2016.
.. [3] D. Ulyanov, A. Vedaldi, V. Lempitsky, "Instance normalization", arXiv:1607.08022, 2016.
.. [4] Y. Wu, K. He, "Group normalization", ECCV 2018.
.. [5] S. Ioffe, "Batch renormalization", NeurIPS 2017.
.. [6] T. Salimans, D. P. Kingma, "Weight normalization", NeurIPS 2016.
.. [7] A. Krizhevsky, I. Sutskever, G. E. Hinton, "ImageNet classification with deep
       convolutional neural networks", NeurIPS 2012 (local response normalization).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple, ParamSpec, TypeVar, overload

import numpy as np
import numpy.typing as npt

from varstats import jit
from varstats.algorithms import Kernel, get_algorithm
from varstats.conventions import Convention, get_convention
from varstats.moments import Moments
from varstats.precision import Precision, as_dtype, resolve_precision, round_to
from varstats.reductions import moments
from varstats.rounding import fma
from varstats.torch_cpu import torch_cpu_pow, torch_cpu_sum_rows
from varstats.validation import host_float_array, normalize_axes, positive_float, positive_int

__all__ = [
    "NORM_ALGORITHMS",
    "SYNC_SCHEMES",
    "BatchNormOutput",
    "SyncBatchNormOutput",
    "affine_channel",
    "batch_norm",
    "batch_renorm",
    "conv2d",
    "fold_batch_norm",
    "group_norm",
    "instance_norm",
    "layer_norm",
    "local_response_norm",
    "sync_batch_norm",
    "vector_norm",
    "weight_norm",
]

Array = npt.NDArray[Any]

#: Vector-norm algorithms of :func:`weight_norm` and :func:`vector_norm`.
NORM_ALGORITHMS: Final = ("naive", "pairwise", "scaled")
#: How :func:`sync_batch_norm` combines the shards' statistics.
SYNC_SCHEMES: Final = ("merge", "invstd")


class BatchNormOutput(NamedTuple):
    """Output of :func:`batch_norm` and :func:`batch_renorm`.

    ``running_mean`` and ``running_var`` are new arrays (the updated statistics in
    training, copies in evaluation), or None when none were given.
    """

    y: Array
    running_mean: Array | None
    running_var: Array | None


class SyncBatchNormOutput(NamedTuple):
    """Output of :func:`sync_batch_norm`: one output per shard, and the running statistics."""

    y: list[Array]
    running_mean: Array | None
    running_var: Array | None


# --------------------------------------------------------------------------- validation


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _quiet(layer: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run a public layer under ``np.errstate(all="ignore")``.

    Overflow, underflow and NaN are results the layers return (and the study
    measures), never accidents worth a warning; this covers every cast and sum.
    """

    @functools.wraps(layer)
    def quiet(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with np.errstate(all="ignore"):
            return layer(*args, **kwargs)

    return quiet


def _flatten_after(a: Array, k: int) -> Array:
    """``a`` with the axes from ``k`` on flattened into one (sizes explicit: 0 is fine)."""
    return a.reshape(*a.shape[:k], math.prod(a.shape[k:]))


def _float_input(x: Any, name: str, min_ndim: int = 0) -> Array:
    # torch tensors (requires_grad=True included) are read as their values: the
    # layers compute no gradients
    a = host_float_array(x, name=name)
    if a.ndim < min_ndim:
        raise ValueError(f"{name}: expected at least {min_ndim} dimensions, got shape {a.shape}")
    return a


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_eps(eps: Any, name: str = "eps") -> float:
    return positive_float(eps, name=name)


def _per_channel(p: Any, c: int, name: str) -> Array | None:
    if p is None:
        return None
    a = _float_input(p, name)
    if a.shape != (c,):
        raise ValueError(f"{name}: expected shape ({c},) for C={c} channels, got {a.shape}")
    return a


def _required(p: Any, c: int, name: str) -> Array:
    a = _per_channel(p, c, name)
    if a is None:
        raise ValueError(f"{name}: required, got None")
    return a


def _momentum(momentum: Any, conv: Convention) -> float:
    m = conv.momentum if momentum is None else momentum
    if isinstance(m, bool) or not isinstance(m, (int, float, np.floating, np.integer)):
        raise TypeError(f"momentum: expected a number in [0, 1], got {momentum!r}")
    if not 0 <= m <= 1:  # exact comparison: no float conversion of huge ints
        raise ValueError(f"momentum: expected a number in [0, 1], got {momentum!r}")
    return float(m)


def _axes(axis: Any, ndim: int, name: str = "axis") -> tuple[int, ...]:
    """Normalized, distinct axes of an ``ndim``-dimensional array; ``None`` is refused."""
    if axis is None:
        raise TypeError(f"{name}: expected an int or a tuple of ints, got None")
    return normalize_axes(axis, ndim, name=name)


def _resolve(
    x: Array,
    layer: str,
    conv: Convention,
    algorithm: str | Kernel | None,
    precision: Precision | str | None,
) -> tuple[str | Kernel, Precision]:
    algo = conv.algorithm(layer) if algorithm is None else algorithm
    prec = conv.precision(layer, x.dtype) if precision is None else resolve_precision(precision, x)
    return algo, prec


def _row_moments(
    rows: Array, algorithm: str | Kernel, prec: Precision, options: dict[str, Any]
) -> Moments:
    return moments(rows, axis=-1, algorithm=algorithm, precision=prec, **options)


# --------------------------------------------------------------------------- arithmetic


def _invstd(var: Array, eps: float, conv: Convention, dtype: np.dtype[Any], in_f64: bool) -> Array:
    """:math:`1/\\sqrt{\\sigma^2 + \\epsilon}` rounded as the convention rounds it, in ``dtype``."""
    with np.errstate(all="ignore"):
        if in_f64:
            # e.g. torch: 1 / std::sqrt(float_var + double_eps), then stored to float
            v64 = np.asarray(var).astype(np.float64)
            if conv.eps_placement == "inside":
                return round_to(1.0 / np.sqrt(v64 + eps), dtype)
            return round_to(1.0 / (np.sqrt(v64) + eps), dtype)
        v = np.asarray(var).astype(dtype)
        e = round_to(eps, dtype)
        if conv.inv_sqrt == "rsqrt":  # one rounding of the exact reciprocal square root
            v64 = v.astype(np.float64)
            e64 = e.astype(np.float64)
            exact = (
                1.0 / np.sqrt(v64 + e64)
                if conv.eps_placement == "inside"
                else (1.0 / (np.sqrt(v64) + e64))
            )
            return round_to(exact, dtype)
        if conv.eps_placement == "inside":
            return np.asarray(dtype.type(1) / np.sqrt(v + e))
        return np.asarray(dtype.type(1) / (np.sqrt(v) + e))


def _affine_output(
    x: Array,
    mean: Array,
    invstd: Array,
    weight: Array | None,
    bias: Array | None,
    form: str,
    fused: bool,
    dtype: np.dtype[Any],
) -> Array:
    """The normalized output in one of the convention's forms, every step rounded in ``dtype``.

    ``mean`` and ``invstd`` broadcast against ``x``; so do ``weight`` and ``bias``.
    """
    xd = x.astype(dtype, copy=False)
    w = None if weight is None else weight.astype(dtype)
    b = None if bias is None else bias.astype(dtype)
    if form == "folded_if_affine":
        form = "folded" if (w is not None or b is not None) else "centered_then_affine"
    with np.errstate(all="ignore"):
        if form == "folded":
            a = invstd if w is None else invstd * w
            if b is None:
                shift = -mean * a
            elif fused:  # beta = fma(-mean, a, b): the compiler's contraction of b - mean*a
                shift = fma(-mean, a, b, dtype)
            else:
                shift = b - mean * a
            return fma(xd, a, shift, dtype) if fused else xd * a + shift
        if form == "centered_then_affine" and w is None and b is None:
            return _centered_scaled(xd, np.asarray(mean), np.asarray(invstd))
        centered = xd - mean
        if form == "centered":
            a = invstd if w is None else invstd * w
            if b is None:
                return np.asarray(centered * a)
            return fma(centered, a, b, dtype) if fused else centered * a + b
        # centered_then_affine: ((x - mean) * invstd) * w + b
        t = centered * invstd
        if w is None and b is not None and fused:
            # layer_norm_kernel.cpp's scalar loop for a null gamma: `* 1` is folded
            # away and (x - mean) * rstd + beta contracts to one FMA (measured)
            return fma(centered, invstd, b, dtype)
        w1 = np.ones((), dtype) if w is None else w
        b0 = np.zeros((), dtype) if b is None else b
        return fma(t, w1, b0, dtype) if fused else t * w1 + b0


def _in_format(y: Array, dtype: np.dtype[Any]) -> Array:
    """``y`` rounded to ``dtype``; ``y`` itself (a new array of the layer's) if it is in it."""
    return y if y.dtype == dtype else round_to(y, dtype)


# With numba (the "jit" extra), (x - mean) * invstd runs as one compiled pass over x
# instead of two NumPy passes and a temporary: the same two roundings per element in the
# same format (no fast-math, nothing contracted), so the same bits; tests/test_norms.py
# compares the two paths. Whether it may run compiled (tests switch it off); numba is
# imported on first use.
_USE_JIT = True


def _compiled_centered_scaled() -> Any:
    if not _USE_JIT:
        return None
    return jit.build(
        "norms.centered_scaled",
        lambda numba: numba.njit(cache=True, nogil=True)(_centered_scaled_py),
    )


def _centered_scaled_py(x: Array, mean: Array, invstd: Array, out: Array) -> None:
    for r in range(x.shape[0]):
        m = mean[r]
        s = invstd[r]
        xr = x[r]
        yr = out[r]
        for k in range(x.shape[1]):
            yr[k] = (xr[k] - m) * s


def _centered_scaled(x: Array, mean: Array, invstd: Array) -> Array:
    """``(x - mean) * invstd`` in ``x.dtype``, two roundings; the statistics broadcast.

    Compiled when both statistics hold one value per leading slice of ``x`` (shape
    ``(*x.shape[:k], 1, ..., 1)``), the common case of every per-sample layer.
    """
    kernel = _compiled_centered_scaled() if x.dtype in (np.float32, np.float64) else None
    k = mean.ndim
    while k and mean.shape[k - 1] == 1:
        k -= 1
    per_slice = (
        mean.shape == invstd.shape
        and mean.ndim == x.ndim
        and mean.shape[:k] == x.shape[:k]
        and mean.dtype == invstd.dtype == x.dtype
    )
    if kernel is None or not per_slice or x.size == 0:
        return np.asarray((x - mean) * invstd)
    rows = math.prod(x.shape[:k])
    out = np.empty(x.shape, x.dtype)
    kernel(
        np.ascontiguousarray(x).reshape(rows, -1),
        mean.reshape(rows),
        invstd.reshape(rows),
        out.reshape(rows, -1),
    )
    return out


def _channel_shape(ndim: int) -> tuple[int, ...]:
    return (1, -1) + (1,) * (ndim - 2)


# --------------------------------------------------------------------------- batch norm


def _single_value(n: int, conv: Convention) -> None:
    if n == 1 and conv.single_value_behaviour == "raise":
        raise ValueError(
            "x: expected more than 1 value per channel when training (convention "
            f"{conv.name!r} raises, as torch.nn.functional.batch_norm does)"
        )


def _bessel(var64: Array, n: int, conv: Convention) -> Array:
    """The batch variance that enters the running average, in float64."""
    if conv.running_var_correction == 0:
        return var64
    if n == 1:
        if conv.single_value_behaviour == "max1":
            return var64
        if conv.single_value_behaviour == "inf":
            with np.errstate(invalid="ignore"):
                return var64 * np.inf  # Caffe2: unbias_scale = inf (0 * inf = NaN)
    return var64 * (n / (n - 1))


def _update_running(running: Array, batch: Array, momentum: float, conv: Convention) -> Array:
    dt = running.dtype
    r64, b64 = running.astype(np.float64), np.asarray(batch).astype(np.float64)
    with np.errstate(all="ignore"):
        if conv.momentum_weights == "new":
            new = (1 - momentum) * r64 + momentum * b64
        else:
            new = momentum * r64 + (1 - momentum) * b64
    return round_to(new, dt)


def _torch_running(
    running_mean: Array,
    running_var: Array,
    mean: Array,
    m2: Array,
    n: int,
    momentum: float,
    mean_float: Array,
) -> tuple[Array, Array]:
    # Normalization.cpp batch_norm_cpu_update_stats_template (no FMA in that file):
    #   momentum_ = static_cast<param_t>(momentum)
    #   running_mean = momentum_ * mean + (1 - momentum_) * running_mean   (param_t)
    #   unbiased_var = var_sum / (n - 1)          (param_t division, stored in accscalar_t)
    #   running_var  = momentum_ * unbiased_var + (1 - momentum_) * running_var
    dt = running_mean.dtype
    if dt == np.float16:
        # float16 (measured on 2.13): the batch mean and var_sum stay float (unrounded),
        # momentum is a float, and both updates run in float before the store to half
        f32 = np.dtype(np.float32)
        with np.errstate(all="ignore"):
            mf, one_minus_f = f32.type(momentum), f32.type(1) - f32.type(momentum)
            rm = mf * np.asarray(mean_float, f32) + one_minus_f * running_mean.astype(f32)
            unbiased = np.asarray(m2, f32) / f32.type(n - 1)
            rv = mf * unbiased + one_minus_f * running_var.astype(f32)
        return rm.astype(dt), rv.astype(dt)
    acc = np.dtype(np.float64)  # acc_type<float, false> and acc_type<double, false>
    with np.errstate(all="ignore"):
        m = dt.type(momentum)
        one_minus = dt.type(1) - m
        rm = m * mean.astype(dt) + one_minus * running_mean
        # _var_sum_a[f] / (n - 1): a float divided by an int64 is a float division
        unbiased = (m2.astype(dt) / dt.type(n - 1)).astype(acc)
        rv = (acc.type(m) * unbiased + (one_minus * running_var.astype(dt)).astype(acc)).astype(dt)
    return np.asarray(rm), np.asarray(rv)


def _running_stats(
    rm: Array | None,
    rv: Array | None,
    batch_mean: Array,
    m: Moments,
    n: int,
    momentum: float,
    conv: Convention,
) -> tuple[Array | None, Array | None]:
    """Running mean and variance after one training step (None without running stats)."""
    if rm is None or rv is None:
        return None, None
    if conv.running_update == "torch_cpu":
        return _torch_running(rm, rv, batch_mean, np.asarray(m.m2), n, momentum, np.asarray(m.mean))
    var64 = np.asarray(m.m2).astype(np.float64) / n
    return (
        _update_running(rm, batch_mean, momentum, conv),
        _update_running(rv, _bessel(var64, n, conv), momentum, conv),
    )


def _batch_stats(
    rows: Array,
    conv: Convention,
    layer: str,
    algorithm: str | Kernel | None,
    precision: Precision | str | None,
    options: dict[str, Any],
    x: Array,
) -> tuple[Moments, np.dtype[Any]]:
    algo, prec = _resolve(x, layer, conv, algorithm, precision)
    m = _row_moments(rows, algo, prec, options)
    # PyTorch stores save_mean/save_invstd in the input's dtype and forms the output
    # there (opmath float for float); the others compute in the accumulator.
    dtype = x.dtype if conv.running_update == "torch_cpu" else prec.accumulator_dtype
    return m, np.dtype(dtype)


@_quiet
def batch_norm(
    x: npt.ArrayLike,
    /,
    running_mean: npt.ArrayLike | None,
    running_var: npt.ArrayLike | None,
    *,
    weight: npt.ArrayLike | None = None,
    bias: npt.ArrayLike | None = None,
    training: bool = False,
    momentum: float | None = None,
    eps: float | None = None,
    convention: str | Convention = "pytorch",
    algorithm: str | Kernel | None = None,
    precision: Precision | str | None = None,
    **options: Any,
) -> BatchNormOutput:
    r"""Batch normalization (Ioffe & Szegedy 2015) over the N and spatial axes.

    .. math::
        y_{nc\ldots} = \frac{x_{nc\ldots} - \mu_c}{\sqrt{\sigma_c^2 + \epsilon}}\,\gamma_c + \beta_c

    In training :math:`\mu_c, \sigma_c^2` are the biased moments of channel ``c``
    over the batch, and the running statistics are updated with the convention's
    momentum side and Bessel choice; in evaluation the running statistics are used.

    Parameters
    ----------
    x : array_like, shape (N, C, ...)
    running_mean, running_var : array_like, shape (C,), or None
        Required in evaluation; never modified (updated copies are returned).
    weight, bias : array_like, shape (C,), optional
        :math:`\gamma` and :math:`\beta`.
    training : bool
    momentum, eps : float, optional
        ``None``: the convention's defaults (PyTorch 0.1 and 1e-5).
    convention : str or Convention
    algorithm : str or callable, optional
        Moments algorithm; ``None``: the convention's (``torch_cpu_two_pass`` for PyTorch).
    precision : Precision or str, optional
        ``None``: the convention's accumulator for ``x.dtype`` (PyTorch: float32 data
        accumulated in float64).
    **options
        Passed to the moments kernel (e.g. ``summation``). ``threads`` (PyTorch preset):
        torch's thread count, which decides how its channels-last kernel, taken for
        (N, C) inputs and spatial size 1, splits the batch (default 1).

    Returns
    -------
    BatchNormOutput
        ``(y, running_mean, running_var)``; ``y`` in ``x.dtype``.

    Notes
    -----
    PyTorch's CPU kernel forms the output as :math:`\operatorname{fma}(x, a, b)` with
    :math:`a = \sigma^{-1}\gamma` and :math:`b = \beta - \mu a`; when
    :math:`|\mu| \gg \sigma` both products are large and their sum cancels, so the
    output loses about :math:`\log_{10}(|\mu|/\sigma)` digits even with exact moments.
    """
    conv = get_convention(convention)
    xa = _float_input(x, "x", min_ndim=2)
    c = xa.shape[1]
    eps_v = _check_eps(conv.eps if eps is None else eps)
    mom = _momentum(momentum, conv)
    w = _per_channel(weight, c, "weight")
    b = _per_channel(bias, c, "bias")
    rm = _per_channel(running_mean, c, "running_mean")
    rv = _per_channel(running_var, c, "running_var")
    if (rm is None) != (rv is None):
        raise ValueError(
            "running_mean: running_mean and running_var must both be given or both be None"
        )
    shape = _channel_shape(xa.ndim)

    if not training:
        if rm is None or rv is None:
            raise ValueError("running_mean: evaluation (training=False) needs running statistics")
        if algorithm is not None:
            get_algorithm(algorithm)  # validated, though evaluation computes no moments
        if precision is not None:  # the arithmetic of the output runs in its accumulator
            dtype = np.dtype(resolve_precision(precision, xa).accumulator_dtype)
        elif conv.running_update == "torch_cpu":
            # batch_norm_cpu_collect_linear_and_constant_terms<param_t, opmath_t>: float
            # arithmetic for float16/bfloat16 statistics, their own format otherwise
            dtype = np.dtype(np.float32) if rv.dtype.itemsize < 4 else np.dtype(rv.dtype)
        else:
            dtype = np.dtype(conv.precision("batch_norm", xa.dtype).accumulator_dtype)
        mean = rm.astype(dtype)
        inv = _invstd(rv.astype(dtype), eps_v, conv, dtype, in_f64=False)
        half_bias = b is not None and b.dtype == np.float16 and dtype == np.float32
        if precision is None and conv.running_update == "torch_cpu" and half_bias:
            # a c10::Half bias: bias - mean * alpha is not contracted (see
            # _torch_reduced_normalize); the output is one FMA in float
            assert b is not None
            alpha = inv.reshape(shape) * (1 if w is None else w.astype(dtype).reshape(shape))
            beta = b.astype(dtype).reshape(shape) - mean.reshape(shape) * alpha
            y = fma(xa.astype(dtype), alpha, beta, dtype)
            return BatchNormOutput(round_to(y, xa.dtype), rm.copy(), rv.copy())
        y = _affine_output(
            xa,
            mean.reshape(shape),
            inv.reshape(shape),
            None if w is None else w.reshape(shape),
            None if b is None else b.reshape(shape),
            conv.output_form("batch_norm"),
            conv.fused_multiply_add,
            dtype,
        )
        return BatchNormOutput(round_to(y, xa.dtype), rm.copy(), rv.copy())

    rows = _flatten_after(np.moveaxis(xa, 1, 0), 1)  # per channel: n-major, then spatial
    n = rows.shape[1]
    if n == 0:
        raise ValueError(f"x: empty reduction for shape {xa.shape}")
    _single_value(n, conv)
    if (conv.algorithm("batch_norm") if algorithm is None else algorithm) == "torch_cpu_two_pass":
        # batch_norm_cpu_collect_stats_kernel takes the channels-last kernel whenever
        # image_size == 1 ("NC11 is also channels last"), for any number of dimensions
        image_size = n // xa.shape[0]
        options = {"channels_last": image_size == 1, "image_size": image_size, **options}
    m, dtype = _batch_stats(rows, conv, "batch_norm", algorithm, precision, options, xa)
    y, mean_d, _ = _normalize_from_moments(xa, m, n, w, b, eps_v, conv, "batch_norm", dtype, shape)
    new_rm, new_rv = _running_stats(rm, rv, mean_d, m, n, mom, conv)
    return BatchNormOutput(y, new_rm, new_rv)


def _normalize_from_moments(
    xa: Array,
    m: Moments,
    n: int,
    w: Array | None,
    b: Array | None,
    eps: float,
    conv: Convention,
    layer: str,
    dtype: np.dtype[Any],
    shape: tuple[int, ...],
) -> tuple[Array, Array, Array]:
    if (
        conv.running_update == "torch_cpu"
        and layer in ("batch_norm", "instance_norm")
        and xa.dtype.itemsize < 4
        and m.dtype == np.float32
    ):
        return _torch_reduced_normalize(xa, m, w, b, eps, shape)
    with np.errstate(all="ignore"):
        mean_d = np.asarray(m.mean).astype(dtype) if m.dtype == dtype else round_to(m.mean, dtype)
        var_acc = m.var(0)
        var_d = var_acc.astype(dtype) if var_acc.dtype == dtype else round_to(var_acc, dtype)
    if layer in conv.clamp_negative_variance:
        var_d = np.maximum(var_d, dtype.type(0))
    inv = _invstd(var_d, eps, conv, dtype, in_f64=layer in conv.invstd_in_float64)
    y = _affine_output(
        xa,
        mean_d.reshape(shape),
        inv.reshape(shape),
        None if w is None else w.reshape(_channel_shape(xa.ndim)),
        None if b is None else b.reshape(_channel_shape(xa.ndim)),
        conv.output_form(layer),
        conv.fused_multiply_add,
        dtype,
    )
    return _in_format(y, xa.dtype), mean_d, var_d


def _torch_reduced_normalize(
    xa: Array,
    m: Moments,
    w: Array | None,
    b: Array | None,
    eps: float,
    shape: tuple[int, ...],
) -> tuple[Array, Array, Array]:
    """torch's float16/bfloat16 BatchNorm after the float statistics (measured on 2.13).

    The mean is stored in the input's format; the variance is ``M2 / n`` in float for
    float16 and ``bf16(bf16(M2) / n)`` for bfloat16 (its ``var_sum`` is a bfloat16
    tensor); ``invstd = 1 / sqrt(var + eps)`` in double, rounded to float and stored
    in the input's format; the output ``fma(x, a, b)`` with ``a = invstd * gamma`` and
    ``b = beta - mean * a`` (one FMA for bfloat16, two roundings for float16) runs in
    float and is rounded once to the input's format.
    """
    storage = np.dtype(xa.dtype)
    f32 = np.dtype(np.float32)
    with np.errstate(all="ignore"):
        count = np.asarray(m.count).astype(f32)
        mean_s = round_to(m.mean, storage)
        if storage == np.float16:
            var = np.asarray(m.m2, f32) / count
        else:
            var_sum = round_to(m.m2, storage).astype(f32)
            var = round_to(var_sum / round_to(count, storage).astype(f32), storage).astype(f32)
        inv = round_to((1.0 / np.sqrt(var.astype(np.float64) + eps)).astype(f32), storage)
        channel = _channel_shape(xa.ndim)
        alpha = inv.astype(f32).reshape(shape)
        if w is not None:
            alpha = alpha * w.astype(f32).reshape(channel)
        beta0 = np.zeros((), f32) if b is None else b.astype(f32).reshape(channel)
        mean_f = mean_s.astype(f32).reshape(shape)
        if b is not None and b.dtype == np.float16:
            # bias_v - mean * alpha with a c10::Half bias: the half-to-float conversion
            # sits between the product and the subtraction, so no FMA (measured)
            beta = beta0 - mean_f * alpha
        else:
            beta = fma(-mean_f, alpha, beta0, f32)
        y = fma(xa.astype(f32), alpha, beta, f32)
    return round_to(y, storage), mean_s, round_to(var, storage)


# --------------------------------------------------------------------------- LN, IN, GN


@_quiet
def layer_norm(
    x: npt.ArrayLike,
    /,
    normalized_shape: int | Sequence[int],
    *,
    weight: npt.ArrayLike | None = None,
    bias: npt.ArrayLike | None = None,
    eps: float = 1e-5,
    convention: str | Convention = "pytorch",
    algorithm: str | Kernel | None = None,
    precision: Precision | str | None = None,
    **options: Any,
) -> Array:
    r"""Layer normalization (Ba, Kiros & Hinton 2016) over the trailing ``normalized_shape``.

    .. math::
        y = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}\odot\gamma + \beta,\qquad
        \mu, \sigma^2 \text{ over the last } \texttt{len(normalized\_shape)} \text{ axes}

    ``weight`` and ``bias`` have shape ``normalized_shape``. With the PyTorch
    convention the moments are ``torch_cpu_welford`` in float32 (float64 data in
    float64) and the output is :math:`\operatorname{fma}(((x-\mu)\,r), \gamma, \beta)`
    (``layer_norm_kernel.cpp``).

    Notes
    -----
    PyTorch's CPU LayerNorm does not clamp the variance and returns NaN when
    :math:`|\mu|` is so large that the Welford update overflows.
    """
    conv = get_convention(convention)
    xa = _float_input(x, "x", min_ndim=1)
    if isinstance(normalized_shape, (int, np.integer)) and not isinstance(normalized_shape, bool):
        ns: tuple[Any, ...] = (normalized_shape,)
    elif isinstance(normalized_shape, (tuple, list)) and all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in normalized_shape
    ):
        ns = tuple(normalized_shape)
    else:
        raise TypeError(
            "normalized_shape: expected an int or a sequence of ints, "
            f"got {_show(normalized_shape)}"
        )
    if (
        not ns
        or any(int(d) <= 0 for d in ns)
        or tuple(xa.shape[-len(ns) :]) != tuple(int(d) for d in ns)
    ):
        raise ValueError(
            f"normalized_shape: {tuple(ns)} does not match the trailing dimensions of x {xa.shape}"
        )
    eps_v = _check_eps(eps)
    w = None if weight is None else _float_input(weight, "weight")
    b = None if bias is None else _float_input(bias, "bias")
    for name, p in (("weight", w), ("bias", b)):
        if p is not None and p.shape != ns:
            raise ValueError(f"{name}: expected shape {ns}, got {p.shape}")
    lead = xa.shape[: xa.ndim - len(ns)]
    rows = _flatten_after(xa, len(lead))
    m, dtype = _batch_stats(rows, conv, "layer_norm", algorithm, precision, options, xa)
    if conv.running_update == "torch_cpu":
        dtype = np.dtype(m.dtype)  # opmath: float for float/half/bfloat16, double for double
    k = len(ns)
    stat_shape = (*lead,) + (1,) * k
    if conv.running_update == "torch_cpu" and xa.dtype.itemsize < 4 and m.dtype == np.float32:
        return _torch_reduced_layer_norm(xa, m, w, b, eps_v, stat_shape)
    y, _, _ = (
        _normalize_from_moments(
            xa, m, rows.shape[-1], w, b, eps_v, conv, "layer_norm", dtype, stat_shape
        )
        if w is None and b is None
        else _normalize_affine_trailing(xa, m, w, b, eps_v, conv, dtype, stat_shape)
    )
    return y


def _torch_reduced_layer_norm(
    xa: Array, m: Moments, w: Array | None, b: Array | None, eps: float, stat_shape: tuple[int, ...]
) -> Array:
    # layer_norm_kernel.cpp for float16/bfloat16 input (measured on torch 2.13): float
    # statistics, rstd = 1 / sqrt(var + float(eps)) in float, then
    # y = fma(x, rstd, -mean * rstd), and with an affine map fma(y, gamma, beta).
    f32 = np.dtype(np.float32)
    with np.errstate(all="ignore"):
        mean = np.asarray(m.mean, f32).reshape(stat_shape)
        var = m.var(0).astype(f32).reshape(stat_shape)
        rstd = f32.type(1) / np.sqrt(var + f32.type(eps))
        y = fma(xa.astype(f32), rstd, -mean * rstd, f32)
        if w is not None or b is not None:
            g = np.ones((), f32) if w is None else w.astype(f32)
            beta = np.zeros((), f32) if b is None else b.astype(f32)
            y = fma(y, g, beta, f32)
    return round_to(y, xa.dtype)


def _normalize_affine_trailing(
    xa: Array,
    m: Moments,
    w: Array | None,
    b: Array | None,
    eps: float,
    conv: Convention,
    dtype: np.dtype[Any],
    stat_shape: tuple[int, ...],
) -> tuple[Array, Array, Array]:
    # weight/bias broadcast over the trailing axes (LayerNorm), not per channel
    with np.errstate(all="ignore"):
        mean_d = round_to(m.mean, dtype).reshape(stat_shape)
        var_d = round_to(m.var(0), dtype).reshape(stat_shape)
    if "layer_norm" in conv.clamp_negative_variance:
        var_d = np.maximum(var_d, dtype.type(0))
    inv = _invstd(var_d, eps, conv, dtype, in_f64="layer_norm" in conv.invstd_in_float64)
    y = _affine_output(
        xa, mean_d, inv, w, b, conv.output_form("layer_norm"), conv.fused_multiply_add, dtype
    )
    return _in_format(y, xa.dtype), mean_d, var_d


@_quiet
def group_norm(
    x: npt.ArrayLike,
    /,
    num_groups: int,
    *,
    weight: npt.ArrayLike | None = None,
    bias: npt.ArrayLike | None = None,
    eps: float = 1e-5,
    convention: str | Convention = "pytorch",
    algorithm: str | Kernel | None = None,
    precision: Precision | str | None = None,
    **options: Any,
) -> Array:
    r"""Group normalization (Wu & He 2018): moments per sample over groups of channels.

    The C channels are split into ``num_groups`` groups of ``C // num_groups``; each
    (sample, group) is normalized by its own moments, then the per-channel affine map
    is applied. Its moments do not depend on the batch size, and, unlike BatchNorm,
    they are computed at inference too, so GroupNorm cannot be folded into the
    preceding convolution.

    With the PyTorch convention: ``torch_cpu_welford`` moments, the variance
    clamped at 0, :math:`r = 1/\sqrt{\sigma^2 + \epsilon}` in double, and the output
    ``(x - mean) * r`` without affine or
    :math:`\operatorname{fma}(s, x, \operatorname{fma}(-s, \mu, \beta))`,
    :math:`s = r\gamma`, with it (``group_norm_kernel.cpp``).
    """
    conv = get_convention(convention)
    xa = _float_input(x, "x", min_ndim=2)
    n, c = xa.shape[0], xa.shape[1]
    if (
        isinstance(num_groups, bool)
        or not isinstance(num_groups, (int, np.integer))
        or num_groups <= 0
    ):
        raise ValueError(f"num_groups: expected a positive integer, got {num_groups!r}")
    if c % num_groups:
        raise ValueError(f"num_groups: {num_groups} does not divide the number of channels C={c}")
    eps_v = _check_eps(eps)
    w = _per_channel(weight, c, "weight")
    b = _per_channel(bias, c, "bias")
    g = int(num_groups)
    if conv.single_value_behaviour == "raise" and (n * c // g) * int(np.prod(xa.shape[2:])) == 1:
        # torch.nn.functional.group_norm's _verify_batch_size on [N*C/G, G, *spatial]
        raise ValueError(
            "x: expected more than 1 value per channel when training, got shape "
            f"{xa.shape} with num_groups={g} (convention {conv.name!r} raises, as "
            "torch.nn.functional.group_norm does)"
        )
    rows = xa.reshape(n, g, math.prod(xa.shape[1:]) // g)
    m, dtype = _batch_stats(rows, conv, "group_norm", algorithm, precision, options, xa)
    if conv.running_update == "torch_cpu":
        dtype = np.dtype(m.dtype)
    # broadcast group statistics to channels: (N, G) -> (N, C, 1, ...)
    per_c = c // g
    spatial = (1,) * (xa.ndim - 2)
    expand = Moments(
        np.repeat(np.asarray(m.count), per_c, axis=1).reshape(n, c, *spatial),
        np.repeat(np.asarray(m.mean), per_c, axis=1).reshape(n, c, *spatial),
        np.repeat(np.asarray(m.m2), per_c, axis=1).reshape(n, c, *spatial),
    )
    y, _, _ = _normalize_from_moments(
        xa, expand, 0, w, b, eps_v, conv, "group_norm", dtype, (n, c, *spatial)
    )
    return y


@overload
def instance_norm(
    x: npt.ArrayLike,
    /,
    *,
    running_mean: None = None,
    running_var: None = None,
    weight: npt.ArrayLike | None = None,
    bias: npt.ArrayLike | None = None,
    use_input_stats: bool = True,
    momentum: float | None = None,
    eps: float = 1e-5,
    convention: str | Convention = "pytorch",
    algorithm: str | Kernel | None = None,
    precision: Precision | str | None = None,
    **options: Any,
) -> Array: ...


@overload
def instance_norm(
    x: npt.ArrayLike,
    /,
    *,
    running_mean: npt.ArrayLike,
    running_var: npt.ArrayLike,
    weight: npt.ArrayLike | None = None,
    bias: npt.ArrayLike | None = None,
    use_input_stats: bool = True,
    momentum: float | None = None,
    eps: float = 1e-5,
    convention: str | Convention = "pytorch",
    algorithm: str | Kernel | None = None,
    precision: Precision | str | None = None,
    **options: Any,
) -> BatchNormOutput: ...


@_quiet
def instance_norm(
    x: npt.ArrayLike,
    /,
    *,
    running_mean: npt.ArrayLike | None = None,
    running_var: npt.ArrayLike | None = None,
    weight: npt.ArrayLike | None = None,
    bias: npt.ArrayLike | None = None,
    use_input_stats: bool = True,
    momentum: float | None = None,
    eps: float = 1e-5,
    convention: str | Convention = "pytorch",
    algorithm: str | Kernel | None = None,
    precision: Precision | str | None = None,
    **options: Any,
) -> Array | BatchNormOutput:
    r"""Instance normalization (Ulyanov et al. 2016): moments per (sample, channel).

    .. math::
        y_{nc\ldots} = \frac{x_{nc\ldots} - \mu_{nc}}
                          {\sqrt{\sigma_{nc}^2 + \epsilon}}\,\gamma_c + \beta_c

    PyTorch computes it as a BatchNorm of the input viewed as ``(1, N*C, ...)``
    (``instance_norm`` in ``aten/src/ATen/native/Normalization.cpp``), so the PyTorch
    preset uses the BatchNorm kernel (``torch_cpu_two_pass``) and output form.

    Without running statistics the result is the normalized array. With
    ``running_mean`` and ``running_var`` (shape (C,)) it is a :class:`BatchNormOutput`:
    as in torch, each is repeated N times, BatchNorm of the view runs in training
    (``use_input_stats=True``: the batch's moments normalize, the copies are updated
    with ``momentum``) or evaluation (``use_input_stats=False``: the running statistics
    normalize, and are returned unchanged), and the new running statistics are the mean
    over N of the updated copies as ``at::mean`` computes it
    (:func:`varstats.torch_cpu.torch_cpu_sum_rows`, then a division by N).
    """
    conv = get_convention(convention)
    xa = _float_input(x, "x", min_ndim=3)
    n, c = xa.shape[0], xa.shape[1]
    eps_v = _check_eps(eps)
    w = _per_channel(weight, c, "weight")
    b = _per_channel(bias, c, "bias")
    rm = _per_channel(running_mean, c, "running_mean")
    rv = _per_channel(running_var, c, "running_var")
    if (rm is None) != (rv is None):
        raise ValueError(
            "running_mean: running_mean and running_var must both be given or both be None"
        )
    if rm is not None and rv is not None:
        return _instance_norm_with_running_stats(
            xa, rm, rv, w, b, use_input_stats, momentum, eps_v, conv, algorithm, precision, options
        )
    if not use_input_stats:
        raise ValueError("use_input_stats: False needs running_mean and running_var")
    rows = _flatten_after(xa, 2)
    if rows.shape[-1] == 1:
        _single_value(1, conv)
    if (
        conv.algorithm("instance_norm") if algorithm is None else algorithm
    ) == "torch_cpu_two_pass":
        # the (1, N*C, ...) view: each row is one contiguous block of the spatial size
        options = {"image_size": rows.shape[-1], **options}
    m, dtype = _batch_stats(rows, conv, "instance_norm", algorithm, precision, options, xa)
    spatial = (1,) * (xa.ndim - 2)
    m = Moments(
        np.asarray(m.count).reshape(n, c, *spatial),
        np.asarray(m.mean).reshape(n, c, *spatial),
        np.asarray(m.m2).reshape(n, c, *spatial),
    )
    y, _, _ = _normalize_from_moments(
        xa, m, 0, w, b, eps_v, conv, "instance_norm", dtype, (n, c, *spatial)
    )
    return y


def _instance_norm_with_running_stats(
    xa: Array,
    rm: Array,
    rv: Array,
    w: Array | None,
    b: Array | None,
    use_input_stats: bool,
    momentum: float | None,
    eps: float,
    conv: Convention,
    algorithm: str | Kernel | None,
    precision: Precision | str | None,
    options: dict[str, Any],
) -> BatchNormOutput:
    # torch: batch_norm(input.view(1, N*C, ...), running_mean.repeat(N), ...,
    # training=use_input_stats), then (in training) running_mean.copy_(view(N, C).mean(0))
    n, c = xa.shape[0], xa.shape[1]
    view = xa.reshape(1, n * c, *xa.shape[2:])
    out = batch_norm(
        view,
        np.tile(rm, n),
        np.tile(rv, n),
        weight=None if w is None else np.tile(w, n),
        bias=None if b is None else np.tile(b, n),
        training=bool(use_input_stats),
        momentum=momentum,
        eps=eps,
        convention=conv,
        algorithm=algorithm,
        precision=precision,
        **options,
    )
    assert out.running_mean is not None
    assert out.running_var is not None
    if not use_input_stats:  # evaluation leaves the running statistics as they were
        return BatchNormOutput(out.y.reshape(xa.shape), rm.copy(), rv.copy())
    return BatchNormOutput(
        out.y.reshape(xa.shape),
        _mean_over_samples(out.running_mean.reshape(n, c)),
        _mean_over_samples(out.running_var.reshape(n, c)),
    )


def _mean_over_samples(a: Array) -> Array:
    # at::mean over dim 0 of a contiguous (N, C) tensor: at::sum (cascade_sum), then
    # one division by N, in the tensor's own format
    if a.dtype in (np.float32, np.float64):
        total = torch_cpu_sum_rows(a)
    else:
        total = np.add.accumulate(a, axis=0)[-1]
    return np.asarray(total / a.dtype.type(a.shape[0]))


# --------------------------------------------------------------------------- affine, folding


@_quiet
def affine_channel(
    x: npt.ArrayLike,
    /,
    weight: npt.ArrayLike,
    bias: npt.ArrayLike,
    *,
    fused_multiply_add: bool = False,
) -> Array:
    r"""Caffe2/Detectron's AffineChannel: a frozen per-channel :math:`y = x\,\gamma_c + \beta_c`.

    Rounded in ``x.dtype`` (one FMA if ``fused_multiply_add``). This is what a
    BatchNorm with frozen statistics becomes once :math:`\gamma/\sigma` and
    :math:`\beta - \mu\gamma/\sigma` are precomputed (Caffe2 ``AffineChannelOp``).
    """
    xa = _float_input(x, "x", min_ndim=2)
    c = xa.shape[1]
    w = _required(weight, c, "weight")
    b = _required(bias, c, "bias")
    shape = _channel_shape(xa.ndim)
    wd, bd = w.astype(xa.dtype).reshape(shape), b.astype(xa.dtype).reshape(shape)
    with np.errstate(all="ignore"):
        if fused_multiply_add:
            return fma(xa, wd, bd, xa.dtype)
        return np.asarray(xa * wd + bd)


@_quiet
def fold_batch_norm(
    conv_weight: npt.ArrayLike,
    conv_bias: npt.ArrayLike | None,
    running_mean: npt.ArrayLike,
    running_var: npt.ArrayLike,
    weight: npt.ArrayLike | None,
    bias: npt.ArrayLike | None,
    eps: float,
) -> tuple[Array, Array]:
    r"""Fold an inference-mode BatchNorm into the preceding convolution.

    .. math::
        s_o = \frac{\gamma_o}{\sqrt{\sigma_o^2 + \epsilon}},\qquad
        W'_{o\ldots} = W_{o\ldots}\, s_o,\qquad b'_o = (b_o - \mu_o)\, s_o + \beta_o

    Every step is rounded in ``conv_weight.dtype``, as a deployment tool working
    in that format would. Returns ``(folded_weight, folded_bias)``.
    """
    wt = _float_input(conv_weight, "conv_weight", min_ndim=2)
    dt = wt.dtype
    o = wt.shape[0]
    eps_v = _check_eps(eps)
    rm = _required(running_mean, o, "running_mean")
    rv = _required(running_var, o, "running_var")
    g = _per_channel(weight, o, "weight")
    be = _per_channel(bias, o, "bias")
    cb = _per_channel(conv_bias, o, "conv_bias")
    with np.errstate(all="ignore"):
        s = dt.type(1) / np.sqrt(rv.astype(dt) + round_to(eps_v, dt))
        if g is not None:
            s = s * g.astype(dt)
        fw = wt * s.reshape((o,) + (1,) * (wt.ndim - 1))
        base = (np.zeros(o, dt) if cb is None else cb.astype(dt)) - rm.astype(dt)
        fb = base * s
        if be is not None:
            fb = fb + be.astype(dt)
    return np.asarray(fw, dtype=dt), np.asarray(fb, dtype=dt)


@_quiet
def conv2d(
    x: npt.ArrayLike,
    weight: npt.ArrayLike,
    bias: npt.ArrayLike | None = None,
    *,
    stride: int = 1,
    padding: int = 0,
    accumulator: Any = "float64",
) -> Array:
    r"""A small direct 2-D convolution (cross-correlation, as ``torch.nn.functional.conv2d``).

    ``x`` is (N, C, H, W), ``weight`` (O, C, kH, kW). Products and sums are formed
    in ``accumulator`` (default float64, in which products of float32 values are
    exact) and the result is rounded once to ``x.dtype``. Meant for tests and for
    measuring the error of :func:`fold_batch_norm`, not for speed.
    """
    xa = _float_input(x, "x", min_ndim=4)
    wa = _float_input(weight, "weight", min_ndim=4)
    if xa.ndim != 4 or wa.ndim != 4:
        raise ValueError("x: conv2d expects 4-D x (N, C, H, W) and weight (O, C, kH, kW)")
    if xa.shape[1] != wa.shape[1]:
        raise ValueError(f"weight: {wa.shape[1]} input channels, x has C={xa.shape[1]}")
    stride = positive_int(stride, name="stride")
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding: expected a non-negative integer, got {padding!r}")
    acc = as_dtype(accumulator, name="accumulator")
    xp = np.pad(xa.astype(acc), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    kh, kw = wa.shape[2], wa.shape[3]
    oh = (xp.shape[2] - kh) // stride + 1
    ow = (xp.shape[3] - kw) // stride + 1
    out = np.zeros((xa.shape[0], wa.shape[0], oh, ow), dtype=acc)
    wacc = wa.astype(acc)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
            out += np.einsum("nchw,oc->nohw", patch, wacc[:, :, i, j])
    if bias is not None:
        bb = _required(bias, wa.shape[0], "bias")
        out += bb.astype(acc).reshape(1, -1, 1, 1)
    return round_to(out, xa.dtype)


# --------------------------------------------------------------------------- sync batch norm


@_quiet
def sync_batch_norm(
    shards: Sequence[npt.ArrayLike],
    /,
    running_mean: npt.ArrayLike | None,
    running_var: npt.ArrayLike | None,
    *,
    weight: npt.ArrayLike | None = None,
    bias: npt.ArrayLike | None = None,
    momentum: float | None = None,
    eps: float | None = None,
    scheme: str = "merge",
    convention: str | Convention = "pytorch",
    algorithm: str | Kernel | None = None,
    precision: Precision | str | None = None,
    **options: Any,
) -> SyncBatchNormOutput:
    r"""Synchronized BatchNorm (training) over shards standing for devices.

    ``scheme="merge"``: each shard's :class:`~varstats.moments.Moments` are computed
    with ``algorithm`` and merged exactly in the sense of Chan, Golub & LeVeque
    (:meth:`Moments.merge`, left to right as shards arrive); the result equals
    single-device :func:`batch_norm` on the concatenation within that algorithm's bound.

    ``scheme="invstd"``: PyTorch's ``SyncBatchNorm`` (``torch/nn/modules/_functions.py``):
    each shard sends its mean and :math:`r_k = 1/\sqrt{\sigma_k^2 + \epsilon}`
    (``batch_norm_stats``); ``batch_norm_gather_stats_with_counts`` rebuilds
    :math:`\sigma_k^2 = 1/r_k^2 - \epsilon` and merges. The rebuild cancels when
    :math:`\sigma_k^2 \ll \epsilon`, and :math:`r_k` carries only the storage
    format's digits, so the merged variance can lose all accuracy.
    """
    if scheme not in SYNC_SCHEMES:
        raise ValueError(f"scheme: expected one of {SYNC_SCHEMES}, got {scheme!r}")
    if isinstance(shards, np.ndarray) or len(shards) == 0:
        raise ValueError("shards: expected a non-empty list of (N_k, C, ...) arrays")
    conv = get_convention(convention)
    xs = [_float_input(s, f"shards: shard {k}", min_ndim=2) for k, s in enumerate(shards)]
    c = xs[0].shape[1]
    for k, s in enumerate(xs):
        if s.shape[1:] != xs[0].shape[1:] or s.dtype != xs[0].dtype:
            raise ValueError(
                f"shards: shard {k} has shape/dtype {s.shape}/{s.dtype}, "
                f"shard 0 {xs[0].shape}/{xs[0].dtype}"
            )
        if c == 0 or s.size == 0:
            # a shard with no values: its moments would be NaN (one warning per shard)
            raise ValueError(f"shards: shard {k} holds no values per channel (shape {s.shape})")
    eps_v = _check_eps(conv.eps if eps is None else eps)
    mom = _momentum(momentum, conv)
    w = _per_channel(weight, c, "weight")
    b = _per_channel(bias, c, "bias")
    rm = _per_channel(running_mean, c, "running_mean")
    rv = _per_channel(running_var, c, "running_var")
    shape = _channel_shape(xs[0].ndim)
    parts = []
    dtype = np.dtype(xs[0].dtype)
    for s in xs:
        rows = _flatten_after(np.moveaxis(s, 1, 0), 1)
        m, dtype = _batch_stats(rows, conv, "batch_norm", algorithm, precision, options, s)
        parts.append(m)
    n = sum(int(np.asarray(p.count).flat[0]) for p in parts)
    _single_value(n, conv)
    if scheme == "merge":
        total = parts[0]
        for p in parts[1:]:
            total = total.merge(p)
    else:
        total = _gather_invstd(parts, eps_v, dtype)
    ys = []
    for s in xs:
        y, mean_d, _ = _normalize_from_moments(
            s, total, n, w, b, eps_v, conv, "batch_norm", dtype, shape
        )
        ys.append(y)
    new_rm, new_rv = _running_stats(rm, rv, mean_d, total, n, mom, conv)
    return SyncBatchNormOutput(ys, new_rm, new_rv)


def _gather_invstd(parts: list[Moments], eps: float, dtype: np.dtype[Any]) -> Moments:
    """PyTorch's gather: shards send (mean, invstd) rounded to ``dtype``; var is rebuilt."""
    acc = parts[0].dtype
    rebuilt = []
    with np.errstate(all="ignore"):
        for p in parts:
            cnt = np.asarray(p.count)
            var = p.var(0)
            invstd = round_to(
                1.0 / np.sqrt(var.astype(np.float64) + eps), dtype
            )  # batch_norm_stats
            inv_acc = invstd.astype(acc)
            var_rebuilt = acc.type(1) / (inv_acc * inv_acc) - round_to(eps, acc)  # 1/invstd^2 - eps
            mean = round_to(p.mean, dtype).astype(acc)
            rebuilt.append(Moments(cnt, mean, var_rebuilt * cnt.astype(acc)))
    total = rebuilt[0]
    for p in rebuilt[1:]:
        total = total.merge(p)
    return total


# --------------------------------------------------------------------------- batch renorm


@_quiet
def batch_renorm(
    x: npt.ArrayLike,
    /,
    running_mean: npt.ArrayLike,
    running_var: npt.ArrayLike,
    *,
    weight: npt.ArrayLike | None = None,
    bias: npt.ArrayLike | None = None,
    training: bool = False,
    momentum: float = 0.01,
    eps: float = 1e-5,
    rmax: float = 3.0,
    dmax: float = 5.0,
    convention: str | Convention = "pytorch",
    algorithm: str | Kernel | None = None,
    precision: Precision | str | None = None,
    **options: Any,
) -> BatchNormOutput:
    r"""Batch renormalization (Ioffe 2017).

    .. math::
        \sigma_B = \sqrt{\sigma_B^2 + \epsilon},\quad
        \sigma = \sqrt{\sigma_{run}^2 + \epsilon},\quad
        r = \operatorname{clip}_{[1/r_{max},\,r_{max}]}\!\Big(\frac{\sigma_B}{\sigma}\Big),\quad
        d = \operatorname{clip}_{[-d_{max},\,d_{max}]}\!\Big(\frac{\mu_B - \mu}{\sigma}\Big)

    .. math::
        y = \Big(\frac{x - \mu_B}{\sigma_B}\,r + d\Big)\gamma + \beta,\qquad
        \mu \mathrel{+}= \alpha(\mu_B - \mu),\quad
        \sigma_{run}^2 \mathrel{+}= \alpha(\sigma_B^2 - \sigma_{run}^2)

    (the paper's Algorithm 1, with the running *variance* updated as the frameworks
    store it; :math:`\alpha` is ``momentum``, weighting the new batch). ``r`` and ``d``
    are treated as constants (no gradient). In evaluation it is BatchNorm with the
    running statistics. Moments by ``algorithm`` in the convention's precision; the
    remaining arithmetic is rounded in the accumulator.
    """
    conv = get_convention(convention)
    xa = _float_input(x, "x", min_ndim=2)
    c = xa.shape[1]
    eps_v = _check_eps(eps)
    rmax = positive_float(rmax, name="rmax")
    dmax = positive_float(dmax, name="dmax")
    if rmax < 1:
        raise ValueError(f"rmax: must be >= 1, got {rmax!r}")
    mom = _momentum(momentum, conv)
    w = _per_channel(weight, c, "weight")
    b = _per_channel(bias, c, "bias")
    rm = _required(running_mean, c, "running_mean")
    rv = _required(running_var, c, "running_var")
    if not training:
        return batch_norm(
            xa,
            rm,
            rv,
            weight=w,
            bias=b,
            training=False,
            eps=eps_v,
            convention=conv,
            algorithm=algorithm,
            precision=precision,
        )
    rows = _flatten_after(np.moveaxis(xa, 1, 0), 1)
    _single_value(rows.shape[1], conv)
    algo, prec = _resolve(xa, "batch_norm", conv, algorithm, precision)
    m = _row_moments(rows, algo, prec, options)
    acc = prec.accumulator_dtype
    shape = _channel_shape(xa.ndim)
    with np.errstate(all="ignore"):
        mean_b = np.asarray(m.mean)
        var_b = m.var(0)
        if "batch_norm" in conv.clamp_negative_variance:  # as batch_norm does
            var_b = np.maximum(var_b, acc.type(0))
        sigma_b = np.sqrt(var_b + round_to(eps_v, acc))
        sigma = np.sqrt(rv.astype(acc) + round_to(eps_v, acc))
        r = np.clip(sigma_b / sigma, acc.type(1 / rmax), acc.type(rmax))
        d = np.clip((mean_b - rm.astype(acc)) / sigma, acc.type(-dmax), acc.type(dmax))
        xhat = (xa.astype(acc) - mean_b.reshape(shape)) / sigma_b.reshape(shape)
        xhat = xhat * r.reshape(shape) + d.reshape(shape)
        if w is not None:
            xhat = xhat * w.astype(acc).reshape(shape)
        if b is not None:
            xhat = xhat + b.astype(acc).reshape(shape)
        a = acc.type(mom)
        new_rm = rm.astype(acc) + a * (mean_b - rm.astype(acc))
        new_rv = rv.astype(acc) + a * (var_b - rv.astype(acc))
    return BatchNormOutput(
        round_to(xhat, xa.dtype), round_to(new_rm, rm.dtype), round_to(new_rv, rv.dtype)
    )


# --------------------------------------------------------------------------- LRN


#: Largest LRN window :func:`local_response_norm` accepts (torch's nets use 5).
_LRN_MAX_SIZE: Final = 1 << 16


@_quiet
def local_response_norm(
    x: npt.ArrayLike,
    /,
    size: int,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 1.0,
    *,
    threads: int = 1,
) -> Array:
    r"""Local response normalization across channels (Krizhevsky et al. 2012), PyTorch's formula.

    .. math::
        y_c = x_c \Big/ \Big(k + \frac{\alpha}{n}
              \sum_{c'=c-\lfloor n/2\rfloor}^{c+\lfloor (n-1)/2\rfloor}
              x_{c'}^2\Big)^{\beta}

    with zero padding outside the channels and ``n = size``: ``torch/nn/functional.py``
    squares, zero-pads, average-pools ``size`` channels (``count_include_pad``), then
    ``div.mul(alpha).add(k).pow(beta)`` and ``input / div``. The window sum runs in
    order over channels and every step rounds in ``x.dtype``. The power is torch's
    CPU ``pow`` (:func:`varstats.torch_cpu.torch_cpu_pow`: Sleef's vectorized ``pow``
    on whole blocks of 32 float32 or 16 float64 values, the C library's ``pow`` on the
    rest); which elements fall in whole blocks depends on ``threads`` once ``x`` has
    more than 32768 elements. For float16/bfloat16 input the power is NumPy's, rounded
    to the input's format (torch's reduced-precision ``pow`` is not modelled).
    """
    xa = _float_input(x, "x", min_ndim=3)
    size = positive_int(size, name="size")
    if size > _LRN_MAX_SIZE:
        # the window sum is a loop over the window: a bound keeps it from running forever
        raise ValueError(f"size: at most {_LRN_MAX_SIZE} channels in a window, got {_show(size)}")
    dt = xa.dtype
    c = xa.shape[1]
    with np.errstate(all="ignore"):
        sq = xa * xa
        pad = [(0, 0)] * xa.ndim
        pad[1] = (size // 2, (size - 1) // 2)
        sqp = np.pad(sq, pad)
        acc = np.zeros_like(xa)
        for j in range(size):  # window sum, first channel first
            acc = acc + np.take(sqp, np.arange(j, j + c), axis=1)
        div = acc / dt.type(size)
        div = div * dt.type(alpha) + dt.type(k)
        if dt.itemsize >= 4:
            div = torch_cpu_pow(div, float(beta), threads=threads)
        else:  # torch's float16/bfloat16 pow is not modelled: NumPy's, in the format
            div = np.power(div, dt.type(beta))
        return np.asarray(xa / div)


# --------------------------------------------------------------------------- weight norm


@_quiet
def vector_norm(
    v: npt.ArrayLike, /, *, axis: int | tuple[int, ...] | None = None, algorithm: str = "pairwise"
) -> Array:
    r"""Euclidean norm :math:`\|v\|_2` over ``axis`` by a chosen algorithm, in ``v.dtype``.

    ``"naive"``
        :math:`\sqrt{\sum v_i^2}`, sequential; overflows once :math:`v_i^2` does
        (:math:`|v_i| > \sqrt{\max}`) and underflows for tiny vectors.
    ``"pairwise"``
        Sum of squares by a balanced tree (error :math:`O(\log n\,u)`); same range limits.
    ``"scaled"``
        LAPACK's ``xNRM2`` (Hammarling's scaled sum of squares): keeps
        :math:`\text{scale} = \max|v_i|` and :math:`\text{ssq} = \sum (v_i/\text{scale})^2`,
        so no intermediate overflows or underflows.
    """
    a = _float_input(v, "v")
    if algorithm not in NORM_ALGORITHMS:
        raise ValueError(f"algorithm: expected one of {NORM_ALGORITHMS}, got {algorithm!r}")
    axes = tuple(range(a.ndim)) if axis is None else _axes(axis, a.ndim)
    keep = tuple(i for i in range(a.ndim) if i not in axes)
    rows = _flatten_after(np.transpose(a, keep + axes), len(keep))
    dt = a.dtype
    with np.errstate(all="ignore"):
        if algorithm == "naive":
            sq = rows * rows
            s = (
                np.add.accumulate(sq, axis=-1)[..., -1]
                if rows.shape[-1]
                else np.zeros(rows.shape[:-1], dt)
            )
            return np.asarray(np.sqrt(s))
        if algorithm == "pairwise":
            sq = rows * rows
            while sq.shape[-1] > 1:
                half = sq.shape[-1] // 2
                head = sq[..., : 2 * half : 2] + sq[..., 1 : 2 * half : 2]
                sq = np.concatenate([head, sq[..., 2 * half :]], axis=-1)
            s = sq[..., 0] if sq.shape[-1] else np.zeros(rows.shape[:-1], dt)
            return np.asarray(np.sqrt(s))
        scale = np.zeros(rows.shape[:-1], dt)
        ssq = np.ones(rows.shape[:-1], dt)
        for i in range(rows.shape[-1]):
            ax = np.abs(rows[..., i])
            nz = ax != 0
            grow = nz & (ax > scale)
            ratio_g = np.where(grow, scale / np.where(grow, ax, dt.type(1)), dt.type(0))
            ratio_s = np.where(nz & ~grow, ax / np.where(scale > 0, scale, dt.type(1)), dt.type(0))
            ssq = np.where(grow, dt.type(1) + ssq * ratio_g * ratio_g, ssq + ratio_s * ratio_s)
            scale = np.where(grow, ax, scale)
        return np.asarray(scale * np.sqrt(ssq))


@_quiet
def weight_norm(
    v: npt.ArrayLike, g: npt.ArrayLike, /, dim: int | None = 0, *, norm_algorithm: str = "pairwise"
) -> Array:
    r"""Weight normalization (Salimans & Kingma 2016): :math:`w = g\,v/\|v\|`.

    The norm is over every axis except ``dim`` (``torch.nn.utils.weight_norm``'s
    ``norm_except_dim``; ``dim=None``: over all axes, ``g`` a scalar), computed by
    ``norm_algorithm`` (see :func:`vector_norm`), and :math:`w = v \cdot (g/\|v\|)`
    rounded in ``v.dtype`` as ``aten/src/ATen/native/cpu/WeightNormKernel.cpp`` does.
    """
    va = _float_input(v, "v")
    ga = _float_input(g, "g")
    if dim is None:
        norm = vector_norm(va, axis=None, algorithm=norm_algorithm).reshape((1,) * va.ndim)
    else:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise TypeError(f"dim: expected an int or None, got {_show(dim)}")
        (d,) = _axes(dim, va.ndim, "dim")
        axes = tuple(i for i in range(va.ndim) if i != d)
        norm = vector_norm(va, axis=axes, algorithm=norm_algorithm) if axes else np.abs(va)
        shape = [1] * va.ndim
        shape[d] = va.shape[d]
        norm = norm.reshape(shape)
    if ga.size != norm.size:
        raise ValueError(
            f"g: expected {norm.size} values (one per slice along dim={dim}), got {ga.shape}"
        )
    with np.errstate(all="ignore"):
        scale = ga.astype(va.dtype).reshape(norm.shape) / norm
        return np.asarray(va * scale)
