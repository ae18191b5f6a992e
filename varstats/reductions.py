r"""The public reductions: :func:`var`, :func:`mean_var` and :func:`moments`.

Thin functions over the kernels: they check their arguments
(:mod:`varstats.validation`), pick the kernel by name (:mod:`varstats.algorithms`),
move the reduced axes last and run it (:func:`~varstats.algorithms.apply_kernel`), and
never re-implement a kernel's arithmetic. They take a NumPy array (or anything
``np.asarray`` accepts), an array of another Array API library (a ``torch.Tensor``, an
``array_api_strict`` array, ...: the result comes back in that library, on the same
device), or a Dask array (handed to :mod:`varstats.dask`, a lazy reduction).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from varstats.algorithms import Kernel, apply_kernel, get_algorithm, reduced_last
from varstats.array_api import (
    array_namespace,
    as_array,
    device,
    is_dask_array,
    ldexp,
    namespace_dtype,
    to_host,
)
from varstats.moments import Moments, variance
from varstats.precision import Precision, rescale_exponents
from varstats.validation import (
    check_correction,
    check_options,
    flag,
    float_array,
    normalize_axes,
    resolve_precision,
)

__all__ = ["mean_var", "moments", "var"]


def _accumulator(x: Any, prec: Precision) -> Any:
    """The accumulator dtype of ``prec`` in ``x``'s namespace, on ``x``'s device."""
    return namespace_dtype(
        array_namespace(x), prec.accumulator, argname="precision", device=device(x)
    )


def moments(
    x: npt.ArrayLike,
    /,
    *,
    axis: int | Sequence[int] | None = None,
    algorithm: str | Kernel = "two_pass",
    precision: Precision | str | None = None,
    **options: Any,
) -> Moments:
    r"""Count, mean and :math:`M_2 = \sum (x_i - \bar x)^2` of ``x`` over ``axis``.

    Parameters
    ----------
    x : array_like
        Data stored in float16, bfloat16, float32 or float64.
    axis : None, int or tuple of ints
        Axes to reduce; ``None`` reduces all.
    algorithm : str or callable
        One of :data:`ALGORITHMS`, a name given to :func:`register_algorithm`, or
        a kernel ``kernel(x, /, *, acc, **options) -> Moments``.
    precision : Precision, str or None
        Storage and accumulator formats. ``None``: both are ``x.dtype``.
    **options
        Passed to the kernel: ``summation`` ("pairwise" or "sequential") for
        naive, shifted, two_pass, corrected_two_pass and compensated; ``block``
        for pairwise and chan; ``lanes`` for welford.

    Returns
    -------
    Moments
        ``mean`` and ``m2`` in the accumulator dtype, shaped like ``x`` without
        the reduced axes.
    """
    if is_dask_array(x):
        raise TypeError("x: a dask array; use varstats.dask.moments (a lazy reduction)")
    a = float_array(x)
    prec = resolve_precision(precision, a)
    axes = normalize_axes(axis, len(a.shape))
    kernel = get_algorithm(algorithm)
    check_options("moments", kernel, options)
    return apply_kernel(kernel, a, axes=axes, acc=_accumulator(a, prec), **options)


def _finish(value: Any, axes: tuple[int, ...], keepdims: bool) -> Any:
    # the kernels keep the non-reduced axes in order, so keepdims is expand_dims
    value = as_array(value)
    if keepdims:
        xp = array_namespace(value)
        for ax in sorted(axes):
            value = xp.expand_dims(value, axis=ax)
    # NumPy reductions return a scalar for a 0-d result; the Array API a 0-d array
    return value[()] if value.ndim == 0 else value


def _largest_finite_magnitude(xm: Any, prec: Precision) -> npt.NDArray[np.float64]:
    """Largest finite ``|x|`` of each slice (0 if none), as float64 on the host.

    ``max(max x, -min x)`` needs no input-sized temporary; only where it is not
    finite (an inf or NaN in the slice) are the finite magnitudes picked out.
    """
    xp = array_namespace(xm)
    with np.errstate(invalid="ignore"):
        top = to_host(xp.max(xm, axis=-1)).astype(np.float64)
        bottom = to_host(xp.min(xm, axis=-1)).astype(np.float64)
        amax = np.maximum(top, -bottom)
    if np.all(np.isfinite(amax)):
        return np.asarray(amax)
    # the slice maxima are exact in float32 (float64 for float64 data)
    wide = "float64" if prec.storage == "float64" else "float32"
    mag = xp.abs(xp.astype(xm, namespace_dtype(xp, wide, argname="x", device=device(xm))))
    finite = xp.max(xp.where(xp.isfinite(mag), mag, xp.zeros_like(mag)), axis=-1)
    return np.asarray(to_host(finite).astype(np.float64))


def _rescaled(
    a: Any,
    axes: tuple[int, ...],
    kernel: Kernel,
    prec: Precision,
    c: float,
    correction: Any,
    options: Any,
) -> tuple[Any, Any]:
    """Mean and variance of ``a`` with every slice scaled by a power of two first.

    Each slice is scaled by :math:`2^{-k}` in the accumulator (exact: the rule of
    :func:`~varstats.precision.rescale_exponents` only moves values away from
    overflow and underflow), reduced, and scaled back with one rounding each.
    """
    xp = array_namespace(a)
    acc = _accumulator(a, prec)
    xm = reduced_last(a, axes)
    n = xm.shape[-1]
    last = (len(xm.shape) - 1,)
    k = rescale_exponents(_largest_finite_magnitude(xm, prec), n, prec.accumulator)
    if not np.any(k):
        # nothing to scale: 2**0 is the identity, so this is the kernel on the data
        # cast to acc (exact), with no float64 copy and no rounding back
        m = apply_kernel(kernel, xp.astype(xm, acc, copy=False), axes=last, acc=acc, **options)
        return m.mean, variance(m, c, correction)
    scaled = ldexp(xm, -k[..., None], dtype=acc)
    m = apply_kernel(kernel, scaled, axes=last, acc=acc, **options)
    return ldexp(m.mean, k, dtype=acc), ldexp(variance(m, c, correction), 2 * k, dtype=acc)


def _mean_var(
    function: str,
    x: Any,
    /,
    *,
    axis: int | Sequence[int] | None,
    correction: float,
    algorithm: str | Kernel,
    precision: Precision | str | None,
    keepdims: bool,
    rescale: bool,
    options: dict[str, Any],
) -> tuple[Any, Any]:
    """:func:`mean_var` and :func:`var`; ``function`` names the caller in error messages."""
    keepdims = flag(keepdims, name="keepdims")
    rescale = flag(rescale, name="rescale")
    if is_dask_array(x):
        from varstats import dask  # lazy: Dask is an optional dependency

        return dask.mean_var(
            x,
            axis=axis,
            correction=correction,
            algorithm=algorithm,
            precision=precision,
            keepdims=keepdims,
            rescale=rescale,
            **options,
        )
    a = float_array(x)
    prec = resolve_precision(precision, a)
    axes = normalize_axes(axis, len(a.shape))
    n = math.prod(a.shape[i] for i in axes)
    c = check_correction(correction)
    kernel = get_algorithm(algorithm)
    check_options(function, kernel, options)
    if rescale and n:
        mean, var_ = _rescaled(a, axes, kernel, prec, c, correction, options)
    else:
        m = apply_kernel(kernel, a, axes=axes, acc=_accumulator(a, prec), **options)
        mean, var_ = m.mean, variance(m, c, correction)
    if n == 0:  # the mean of nothing is NaN, like its variance (which has warned)
        mean = var_
    return _finish(mean, axes, keepdims), _finish(var_, axes, keepdims)


def mean_var(
    x: npt.ArrayLike,
    /,
    *,
    axis: int | Sequence[int] | None = None,
    correction: float = 0,
    algorithm: str | Kernel = "two_pass",
    precision: Precision | str | None = None,
    keepdims: bool = False,
    rescale: bool = False,
    **options: Any,
) -> tuple[Any, Any]:
    r"""Mean and variance :math:`M_2/(n - c)` in one call; see :func:`var`.

    Both results are in the accumulator dtype.
    """
    return _mean_var(
        "mean_var",
        x,
        axis=axis,
        correction=correction,
        algorithm=algorithm,
        precision=precision,
        keepdims=keepdims,
        rescale=rescale,
        options=options,
    )


def var(
    x: npt.ArrayLike,
    /,
    *,
    axis: int | Sequence[int] | None = None,
    correction: float = 0,
    algorithm: str | Kernel = "two_pass",
    precision: Precision | str | None = None,
    keepdims: bool = False,
    rescale: bool = False,
    **options: Any,
) -> Any:
    r"""Variance of ``x`` over ``axis`` by the chosen algorithm and precision.

    .. math::
        \operatorname{var}(x) = \frac{1}{n - c}\sum_{i=1}^{n} (x_i - \bar x)^2

    Parameters
    ----------
    x : array_like
        Data stored in float16, bfloat16, float32 or float64. Integer, boolean,
        complex and object input is a ``TypeError``.
    axis : None, int or tuple of ints
    correction : float
        :math:`c`, the Array API name for ``ddof``: 0 is the biased (population)
        variance, 1 Bessel's correction; a float is allowed. Where
        :math:`n - c \le 0` (an empty reduction included) the variance is NaN, with one
        ``RuntimeWarning`` naming ``correction``, as the Array API standard specifies.
    algorithm : str or callable
        See :data:`ALGORITHMS` and :func:`moments`.
    precision : Precision, str or None
        ``None`` computes in ``x.dtype`` throughout.
    keepdims : bool
    rescale : bool
        Scale each slice by a power of two before reducing when its largest
        magnitude is so large that squares could overflow, or so small that
        squared deviations would underflow, and scale the results back. The
        scaling is exact, so it never changes a result that was in range; it
        turns ``inf`` or ``0`` into the right answer, e.g. for
        ``[1e154, 2e154, 3e154]``, whose :math:`M_2 = 2\cdot 10^{308}` overflows
        although the variance does not.
    **options
        Kernel options (``summation``, ``block``, ``lanes``). Any other keyword is a
        ``TypeError`` naming this function; NumPy's and torch's spellings (``ddof``,
        ``dim``, ``dtype``, ``out``, ``unbiased``) are answered with the keyword to use.

    Returns
    -------
    ndarray or scalar
        In the accumulator dtype. NaN and inf in the data propagate as IEEE
        arithmetic makes them; a negative result (possible for ``naive`` and
        ``shifted``) is returned as computed, never clamped.

    Examples
    --------
    >>> import numpy as np, varstats as vs
    >>> x = np.array([40000, 40001, 40002, 40003], dtype=np.float32)
    >>> float(vs.var(x, algorithm="two_pass"))
    1.25
    >>> float(vs.var(x, algorithm="naive", summation="sequential"))
    -128.0
    """
    return _mean_var(
        "var",
        x,
        axis=axis,
        correction=correction,
        algorithm=algorithm,
        precision=precision,
        keepdims=keepdims,
        rescale=rescale,
        options=options,
    )[1]
