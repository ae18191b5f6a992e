r"""Out-of-core variance with Dask: our kernel per chunk, the Chan merge between chunks.

A :func:`dask.array.reduction` whose chunk step runs a varstats kernel (any
algorithm, any precision) on each in-memory block and returns its moments
:math:`(n, \bar x, M_2)`, and whose combine and aggregate steps merge those moments
with the update of Chan, Golub & LeVeque (:func:`varstats.merge_along`, a balanced
tree, every operation rounded in the accumulator):

.. math::
    \delta = \bar x_b - \bar x_a,\quad
    \bar x = \bar x_a + \delta\,\frac{n_b}{n},\quad
    M_2 = (M_{2,a} + M_{2,b}) + \delta^2\,\frac{n_a n_b}{n}

A dataset larger than memory therefore gets the accuracy class of the in-memory
algorithm: per chunk of :math:`m` values the kernel's bound (two-pass with pairwise
sums: about :math:`\log_2(m)\,u` for moderate :math:`\kappa`), plus about
:math:`\log_2(p)\,\kappa u` for a tree of :math:`p` chunks. ``dask.array.var`` also
merges chunk moments, but each chunk's mean comes from a plain sum and the merge
forms :math:`\sum n_i(\bar x_i - \bar x)^2` from float means, so on data whose mean is
large compared with their spread (float32 with offset :math:`10^4\sigma`) it loses
digits that this reduction keeps; ``tests/test_dask.py`` shows the difference against
the exact oracle.

The intermediate state of each chunk is a NumPy structured array with fields
``count`` (int64), ``mean`` and ``m2`` (accumulator dtype), shaped like the chunk with
its reduced axes of length one; only these small arrays travel between workers.

Requires the ``dask`` extra (``pip install varstats[dask]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, cast

import dask.array as da
import numpy as np
import numpy.typing as npt
from dask.delayed import delayed

from varstats.algorithms import Kernel, apply_kernel, get_algorithm
from varstats.array_api import ldexp
from varstats.moments import Moments, merge_along
from varstats.precision import Precision, as_dtype, rescale_exponents, round_to
from varstats.validation import (
    check_correction,
    check_options,
    normalize_axes,
    resolve_precision,
    storage_name,
    warn_no_degrees_of_freedom,
)

__all__ = ["mean_var", "moments", "state_dtype", "var"]

Array = npt.NDArray[Any]


def state_dtype(accumulator: Any, /) -> np.dtype[Any]:
    """The structured dtype of the per-chunk moments: ``count``, ``mean``, ``m2``."""
    acc = as_dtype(accumulator, name="accumulator")
    return np.dtype([("count", np.int64), ("mean", acc), ("m2", acc)])


def _pack(m: Moments, shape: tuple[int, ...], acc: np.dtype[Any]) -> Array:
    out = np.empty(shape, dtype=state_dtype(acc))
    out["count"] = np.reshape(m.count, shape)
    out["mean"] = np.reshape(m.mean, shape)
    out["m2"] = np.reshape(m.m2, shape)
    return out


def _kept_shape(shape: tuple[int, ...], axis: tuple[int, ...], keepdims: bool) -> tuple[int, ...]:
    if keepdims:
        return tuple(1 if i in axis else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axis)


def _chunk(
    block: Array,
    axis: tuple[int, ...],
    keepdims: bool,
    *,
    algorithm: str | Kernel,
    precision: Precision,
    options: dict[str, Any],
) -> Array:
    """Moments of one in-memory block over ``axis``, by our kernel."""
    acc = precision.accumulator_dtype
    shape = _kept_shape(block.shape, axis, keepdims)
    if int(np.prod([block.shape[i] for i in axis], dtype=np.int64)) == 0:
        return _pack(Moments.empty(shape, acc), shape, acc)  # an empty chunk merges as identity
    m = apply_kernel(get_algorithm(algorithm), block, axes=axis, acc=acc, **options)
    return _pack(m, shape, acc)


def _merge(state: Array, axis: tuple[int, ...], keepdims: bool) -> Array:
    """Merge the chunk states laid out along ``axis`` by a balanced Chan tree."""
    keep = tuple(i for i in range(state.ndim) if i not in axis)
    batch = tuple(state.shape[i] for i in keep)
    # the merged length spelled out: reshape cannot infer -1 when a kept axis is empty
    parts = int(np.prod([state.shape[i] for i in axis], dtype=np.int64))
    flat = np.transpose(state, keep + axis).reshape(*batch, parts)
    merged = merge_along(
        Moments(flat["count"], flat["mean"], flat["m2"]), axis=-1, order="pairwise"
    )
    acc = state.dtype["mean"]
    return _pack(merged, _kept_shape(state.shape, axis, keepdims), acc)


def _reduce(
    function: str,
    arr: da.Array,
    axis: int | Sequence[int] | None,
    algorithm: str | Kernel,
    precision: Precision | str | None,
    keepdims: bool,
    split_every: int | None,
    options: dict[str, Any],
) -> tuple[da.Array, Precision, int | None, tuple[int, ...]]:
    if not isinstance(arr, da.Array):
        raise TypeError(f"arr: expected a dask array, got {type(arr).__name__}")
    prec = resolve_precision(precision, storage_name(np.empty(0, dtype=arr.dtype), name="arr"))
    check_options(f"varstats.dask.{function}", get_algorithm(algorithm), options)  # not on a worker
    ndim = arr.ndim
    norm = tuple(sorted(normalize_axes(axis, ndim)))
    sizes = [arr.shape[i] for i in norm]
    n = None if any(np.isnan(s) for s in sizes) else int(np.prod(sizes, dtype=np.int64))
    state = state_dtype(prec.accumulator_dtype)
    out_ndim = ndim if keepdims else ndim - len(norm)
    reduction = cast(Any, da.reduction)  # untyped in dask
    reduced = reduction(
        arr,
        partial(_chunk, algorithm=algorithm, precision=prec, options=dict(options)),
        _merge,
        combine=_merge,
        axis=norm,
        keepdims=keepdims,
        dtype=state,
        split_every=split_every,
        concatenate=True,
        meta=np.empty((0,) * out_ndim, dtype=state),
        name="varstats-moments",
    )
    return reduced, prec, n, norm


def _var_of_state(state: Array, correction: float, undefined: bool) -> Array:
    if undefined:  # n - c <= 0 for every slice: NaN, and the caller has warned once
        return round_to(np.full(state.shape, np.nan), state.dtype["mean"])
    m = Moments(state["count"], state["mean"], state["m2"])
    return np.asarray(m.var(correction))


def _mean_var(
    function: str,
    arr: da.Array,
    /,
    *,
    axis: int | Sequence[int] | None,
    correction: float,
    algorithm: str | Kernel,
    precision: Precision | str | None,
    keepdims: bool,
    split_every: int | None,
    rescale: bool,
    options: dict[str, Any],
) -> tuple[da.Array, da.Array]:
    state, prec, n, norm = _reduce(
        function, arr, axis, algorithm, precision, keepdims, split_every, options
    )
    check_correction(correction)
    # n - c <= 0: NaN with one warning, here rather than once per block on the workers
    undefined = n is not None and warn_no_degrees_of_freedom(correction, n)
    acc = prec.accumulator_dtype
    if rescale and n != 0:
        if n is None:
            raise ValueError("rescale: needs the sizes of the reduced axes (compute_chunk_sizes)")
        # First pass: each slice's largest finite magnitude gives its exponent k
        # (the rule of varstats.var(rescale=True)); the scaling by 2**-k is exact.
        x64: Any = cast(Any, arr).astype(np.float64)
        mag = da.fabs(x64)
        amax: Any = da.where(da.isfinite(mag), mag, 0.0).max(axis=norm, keepdims=True)
        k = amax.map_blocks(rescale_exponents, n, acc, dtype=np.int64)
        scaled = da.ldexp(x64, -k).map_blocks(round_to, acc, dtype=acc)
        state = _reduce(
            function,
            scaled,
            norm,
            algorithm,
            Precision(prec.accumulator),
            keepdims,
            split_every,
            options,
        )[0]
        if not keepdims:
            k = k.squeeze(axis=norm)
    variance = cast(Any, state).map_blocks(
        _var_of_state,
        correction,
        undefined,
        dtype=acc,
        meta=np.empty((0,) * state.ndim, dtype=acc),
    )
    mean: da.Array = state["mean"] if n != 0 else variance  # the mean of nothing is NaN
    if rescale and n != 0:
        blockwise = cast(Any, da.map_blocks)  # untyped in dask
        mean = blockwise(_scale_back, mean, k, 1, acc, dtype=acc)
        variance = blockwise(_scale_back, variance, k, 2, acc, dtype=acc)
    return mean, variance


def mean_var(
    arr: da.Array,
    /,
    *,
    axis: int | Sequence[int] | None = None,
    correction: float = 0,
    algorithm: str | Kernel = "two_pass",
    precision: Precision | str | None = None,
    keepdims: bool = False,
    split_every: int | None = None,
    rescale: bool = False,
    **options: Any,
) -> tuple[da.Array, da.Array]:
    """Lazy mean and variance of a dask array; see :func:`var`.

    Returns
    -------
    (mean, variance) : tuple of dask arrays
        In the accumulator dtype; the mean is the merged mean of the chunk moments.
    """
    return _mean_var(
        "mean_var",
        arr,
        axis=axis,
        correction=correction,
        algorithm=algorithm,
        precision=precision,
        keepdims=keepdims,
        split_every=split_every,
        rescale=rescale,
        options=options,
    )


def _scale_back(value: Array, k: Array, power: int, acc: np.dtype[Any]) -> Array:
    return np.asarray(ldexp(value, power * k, dtype=acc))


def var(
    arr: da.Array,
    /,
    *,
    axis: int | Sequence[int] | None = None,
    correction: float = 0,
    algorithm: str | Kernel = "two_pass",
    precision: Precision | str | None = None,
    keepdims: bool = False,
    split_every: int | None = None,
    rescale: bool = False,
    **options: Any,
) -> da.Array:
    r"""Lazy variance of a dask array: our kernel per chunk, Chan merges between chunks.

    .. math::
        \operatorname{var}(x) = \frac{M_2}{n - c},\qquad
        M_2 = \operatorname{merge}\big(M_2^{(1)}, \dots, M_2^{(p)}\big)

    Parameters
    ----------
    arr : dask.array.Array
        Data stored in float16, bfloat16, float32 or float64 (chunks may be uneven).
    axis : None, int or tuple of ints
        Axes to reduce; ``None`` reduces all.
    correction : float
        :math:`c` (``ddof``); 1 is Bessel's correction. Where :math:`n - c \le 0` the
        variance is NaN, with one ``RuntimeWarning``, as in :func:`varstats.var`.
    algorithm : str or callable
        The per-chunk kernel: one of :data:`varstats.ALGORITHMS` or a registered or
        callable kernel (it runs on the workers, so it must be importable there).
    precision : Precision, str or None
        ``None`` computes in ``arr.dtype`` throughout. The chunk moments and every
        merge round in the accumulator.
    keepdims : bool
    split_every : int, optional
        Fan-in of the merge tree (Dask's default if omitted). Within one merge the
        states are combined in a balanced binary tree.
    rescale : bool
        As in :func:`varstats.var`: scale each slice by the power of two
        :func:`varstats.precision.rescale_exponents` picks from its largest
        magnitude, so that squares neither overflow nor underflow, and scale the
        results back. Costs one more pass over the data (the slice maxima).
    **options
        Kernel options (``summation``, ``block``, ``lanes``).

    Returns
    -------
    dask.array.Array
        In the accumulator dtype; call ``.compute()`` for the NumPy result.

    Notes
    -----
    Accuracy: the kernel's bound on each chunk plus about :math:`\log_2(p)\,\kappa u`
    for the merge tree over :math:`p` chunks. The result differs from the in-memory
    :func:`varstats.var` (whose order of operations differs) by at most the sum of
    the two bounds, not bit for bit.

    References
    ----------
    .. [1] T. F. Chan, G. H. Golub, R. J. LeVeque, "Algorithms for computing the sample
           variance: analysis and recommendations", The American Statistician 37(3),
           1983.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> x = da.from_array(np.array([4e4, 4e4 + 1, 4e4 + 2, 4e4 + 3], np.float32), chunks=(1, 3))
    >>> float(var(x).compute())
    1.25
    """
    return _mean_var(
        "var",
        arr,
        axis=axis,
        correction=correction,
        algorithm=algorithm,
        precision=precision,
        keepdims=keepdims,
        split_every=split_every,
        rescale=rescale,
        options=options,
    )[1]


def _to_moments(state: Array) -> Moments:
    return Moments(state["count"], state["mean"], state["m2"])


def moments(
    arr: da.Array,
    /,
    *,
    axis: int | Sequence[int] | None = None,
    algorithm: str | Kernel = "two_pass",
    precision: Precision | str | None = None,
    split_every: int | None = None,
    **options: Any,
) -> Any:
    """Lazy :class:`~varstats.Moments` of a dask array over ``axis``.

    Returns
    -------
    dask.delayed.Delayed
        ``.compute()`` gives a :class:`~varstats.Moments` (NumPy arrays), which merges
        with the moments of more data like any other.
    """
    state = _reduce("moments", arr, axis, algorithm, precision, False, split_every, options)[0]
    return delayed(_to_moments)(state)
