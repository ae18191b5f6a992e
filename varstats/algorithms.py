r"""The registry of variance algorithms: names for kernels, and how a kernel is called.

A kernel is ``kernel(x, /, *, acc, **options) -> Moments`` over the last axis of
``x`` (see :mod:`varstats.kernels`). The built-in algorithms (:data:`ALGORITHMS`) are
written once for every Array API library; framework kernel emulations (e.g.
:mod:`varstats.torch_cpu`) and kernels given to :func:`register_algorithm` are NumPy
code. Names are given here, where the registry is built, so that importing a module
never changes what a name means. :func:`apply_kernel` moves the reduced axes last and
runs a kernel; the public reductions (:mod:`varstats.reductions`) and
:mod:`varstats.dask` call it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

import numpy as np

from varstats import kernels
from varstats.array_api import array_namespace, dtype_name, is_foreign_array
from varstats.dot2 import dot2_two_pass
from varstats.jax_cpu import (
    xla_cpu_naive,
    xla_cpu_naive_loop,
    xla_cpu_two_pass,
    xla_cpu_two_pass_loop,
)
from varstats.moments import Moments, empty_like
from varstats.onnxruntime_cpu import ort_cpu_instance_norm, ort_cpu_layer_norm
from varstats.summation import PAIRWISE_BLOCK as PAIRWISE_BLOCK
from varstats.summation import SUMMATIONS as SUMMATIONS
from varstats.tensorflow_cpu import eigen_cpu_fused_batch_norm, eigen_cpu_moments
from varstats.torch_cpu import torch_cpu_two_pass, torch_cpu_welford

__all__ = [
    "ALGORITHMS",
    "PAIRWISE_BLOCK",
    "SUMMATIONS",
    "Kernel",
    "apply_kernel",
    "get_algorithm",
    "is_generic",
    "reduced_last",
    "register_algorithm",
]


#: ``kernel(x, /, *, acc, **options) -> Moments`` over the last axis of ``x``.
Kernel = Callable[..., Moments]


_BUILTINS: Final[dict[str, Kernel]] = {
    "naive": kernels.naive,
    "shifted": kernels.shifted,
    "two_pass": kernels.two_pass,
    "corrected_two_pass": kernels.corrected_two_pass,
    "welford": kernels.welford,
    "pairwise": kernels.pairwise,
    "chan": kernels.chan,
    "compensated": kernels.compensated,
}

#: Names of the built-in algorithms, in the order tables list them.
ALGORITHMS: Final = tuple(_BUILTINS)

# Framework kernel emulations are named here, where the registry is built, so
# that importing a module never changes what a name means.
_FRAMEWORK_KERNELS: Final[dict[str, Kernel]] = {
    "torch_cpu_welford": torch_cpu_welford,
    "torch_cpu_two_pass": torch_cpu_two_pass,
    "eigen_cpu_fused_batch_norm": eigen_cpu_fused_batch_norm,
    "eigen_cpu_moments": eigen_cpu_moments,
    "ort_cpu_instance_norm": ort_cpu_instance_norm,
    "ort_cpu_layer_norm": ort_cpu_layer_norm,
    "xla_cpu_naive": xla_cpu_naive,
    "xla_cpu_naive_loop": xla_cpu_naive_loop,
    "xla_cpu_two_pass": xla_cpu_two_pass,
    "xla_cpu_two_pass_loop": xla_cpu_two_pass_loop,
}

# dot2 (the recommended kernel) is registered by name but is not one of ALGORITHMS
_REGISTRY: dict[str, Kernel] = {**_BUILTINS, **_FRAMEWORK_KERNELS, "dot2": dot2_two_pass}


def register_algorithm(name: str, kernel: Kernel, /, *, overwrite: bool = False) -> None:
    """Make ``kernel`` available as ``algorithm=name`` everywhere.

    A kernel is called as ``kernel(x, /, *, acc, **options)`` with the reduced
    axes flattened into the last axis of ``x`` (stored in the storage dtype) and
    must return :class:`Moments` in ``acc`` with that axis removed.
    """
    if not isinstance(name, str) or not name:
        raise TypeError("name: expected a non-empty string")
    if not callable(kernel):
        raise TypeError(f"kernel: {kernel!r} is not callable")
    if name in _BUILTINS or name in _FRAMEWORK_KERNELS or (name in _REGISTRY and not overwrite):
        raise ValueError(f"name: algorithm {name!r} is already registered")
    _REGISTRY[name] = kernel


def get_algorithm(algorithm: str | Kernel, /) -> Kernel:
    """The kernel for a registered name, or ``algorithm`` itself if it is callable."""
    if isinstance(algorithm, str):
        try:
            return _REGISTRY[algorithm]
        except KeyError:
            raise ValueError(
                f"algorithm: unknown {algorithm!r}; "
                f"expected one of {sorted(_REGISTRY)} or a callable"
            ) from None
    if callable(algorithm):
        return algorithm
    raise TypeError(f"algorithm: expected a name or a callable, got {type(algorithm).__name__}")


def is_generic(kernel: Kernel, /) -> bool:
    """Whether ``kernel`` runs on arrays of every Array API library (the built-ins do)."""
    return any(kernel is k for k in _BUILTINS.values())


def reduced_last(x: Any, axes: tuple[int, ...], /) -> Any:
    """``x`` with the (normalized) ``axes`` moved last and flattened into one.

    The kept axes stay in order, so a result over the last axis has the shape of
    ``x`` without ``axes``.
    """
    ndim = len(x.shape)
    if axes == (ndim - 1,):  # already last (the common case): nothing to move
        return x
    xp = array_namespace(x)
    keep = tuple(i for i in range(ndim) if i not in axes)
    n = math.prod(x.shape[i] for i in axes)
    return xp.reshape(xp.permute_dims(x, keep + axes), (*(x.shape[i] for i in keep), n))


def apply_kernel(
    kernel: Kernel, x: Any, /, *, axes: tuple[int, ...], acc: Any, **options: Any
) -> Moments:
    """Run ``kernel`` on ``x`` reduced over ``axes`` (normalized), rounding in ``acc``.

    The reduced axes are moved last and flattened; the kept axes stay in order. An
    empty reduction gives the empty state (``count == 0``) without calling the kernel.
    ``acc`` is a dtype of ``x``'s namespace. Overflow and NaN are results here, not
    accidents, so NumPy's floating-point warnings are silenced inside the kernel.
    """
    if is_foreign_array(x) and not is_generic(kernel):
        raise ValueError(
            f"algorithm: {kernel!r} is a NumPy kernel; only {ALGORITHMS} run with "
            "another array library's operations. Pass np.asarray(x) to use it"
        )
    moved = reduced_last(x, axes)
    batch_shape = tuple(moved.shape[:-1])
    if moved.shape[-1] == 0:  # nothing to reduce: the empty state, whose variance is NaN
        return empty_like(x, batch_shape, acc)
    with np.errstate(all="ignore"):
        result = kernel(moved, acc=acc, **options)
    if not isinstance(result, Moments):
        raise TypeError(f"algorithm: kernel returned {type(result).__name__}, expected Moments")
    if result.dtype != acc or result.shape != batch_shape:
        xp = array_namespace(x)
        raise ValueError(
            f"algorithm: kernel returned moments of {dtype_name(xp, result.dtype)}"
            f"{result.shape}, expected {dtype_name(xp, acc)}{batch_shape}"
        )
    return result
