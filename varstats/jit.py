r"""Optional compilation by numba (the ``jit`` extra): the one place that imports it.

Several kernels have a compiled twin of their NumPy code: the sequential sums, Welford's
loop, the pairwise lane sums, float16 arithmetic (:mod:`varstats.half`), the recommended
``dot2`` kernel and the PyTorch-preset norm layers. Every twin performs the same IEEE
operations in the same order and format as the NumPy code: numba compiles without
fast-math, so LLVM neither reorders nor contracts ``a * b + c`` into a fused
multiply-add, and the one fused operation used on purpose (:func:`hardware_fma`) is
rounded once by definition. The twins therefore give the same bits, and each module's
tests compare both paths by setting the module's ``_USE_JIT`` switch to False.

Without numba every builder here returns None and the NumPy code runs. Compiled
functions are cached on disk by numba (``cache=True``, in ``__pycache__``): the first
call in a fresh checkout compiles, later processes load.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["build", "hardware_fma", "numba_module"]

# what build() made, by key; None where numba is missing
_BUILT: dict[str, Any] = {}


def numba_module() -> ModuleType | None:
    """The ``numba`` module, or None when the ``jit`` extra is not installed."""
    if "numba" not in _BUILT:
        try:
            import numba
        except ImportError:  # pragma: no cover - the jit extra is optional
            _BUILT["numba"] = None
        else:
            _BUILT["numba"] = numba
    module: ModuleType | None = _BUILT["numba"]
    return module


def build(key: str, make: Callable[[ModuleType], Any], /) -> Any:
    """``make(numba)``, computed once per process and kept under ``key``; None without numba.

    ``key`` names what is built (``"dot2.passes"``); a module's ``_USE_JIT`` switch is
    checked by the module before it asks, so switching it off needs no cache reset.
    """
    if key not in _BUILT:
        numba = numba_module()
        _BUILT[key] = None if numba is None else make(numba)
    return _BUILT[key]


def _make_hardware_fma(numba: ModuleType) -> Any:
    from numba.core import types
    from numba.extending import intrinsic

    @intrinsic
    def fma(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
        if not (isinstance(a, types.Float) and a == b == c):
            return None

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            # llvm.fma: rounded once by its definition (the CPU's FMA instruction where
            # it has one, the C library's fma otherwise)
            return builder.fma(*args)

        return a(a, b, c), codegen

    return fma


def hardware_fma() -> Any:
    r"""LLVM's ``llvm.fma`` as a numba intrinsic for compiled code, or None without numba.

    Inside a function compiled by numba, ``hardware_fma()(a, b, c)`` is
    :math:`\operatorname{fl}(ab + c)`, one rounding, for float32 or float64 operands of
    one type (IEEE 754-2008 fusedMultiplyAdd).
    """
    return build("hardware_fma", _make_hardware_fma)
