"""Checks of the arguments every public entry point shares: data, axis, correction, precision.

One place for each rule and each message, so that :func:`varstats.var`,
:func:`varstats.moments`, :mod:`varstats.dask` and :class:`varstats.Moments` reject the
same input with the same words. Every failure is a ``TypeError`` (wrong kind of
value) or a ``ValueError`` (right kind, wrong value) whose message starts with the
name of the argument.
"""

from __future__ import annotations

import functools
import inspect
import math
import operator
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple

from varstats.array_api import array_namespace, dtype_name, is_foreign_array, to_host
from varstats.precision import Precision
from varstats.precision import resolve_precision as _resolve_storage

__all__ = [
    "check_correction",
    "check_options",
    "flag",
    "float_array",
    "host_float_array",
    "normalize_axes",
    "positive_float",
    "positive_int",
    "resolve_precision",
    "storage_name",
    "warn_no_degrees_of_freedom",
]


def storage_name(x: Any, /, *, name: str = "x") -> str:
    """The :data:`~varstats.DTYPES` name ``x`` is stored in, for an array of any namespace.

    Integer and boolean data are a ``TypeError``: varstats does not pick a float
    format for you. So is every other dtype (complex, object, extended precision).
    """
    xp = array_namespace(x)
    found = dtype_name(xp, x.dtype)
    if found is not None:
        return found
    if xp.isdtype(x.dtype, ("bool", "integral")):
        raise TypeError(
            f"{name}: {x.dtype} input; varstats does not pick a float format for you. "
            f"Store the data first, e.g. varstats.round_to({name}, 'float32')"
        )
    raise TypeError(
        f"{name}: unsupported dtype {x.dtype}; expected float16, bfloat16, float32 or float64"
    )


def float_array(x: Any, /, *, name: str = "x") -> Any:
    """``x`` as an array stored in one of the :data:`~varstats.DTYPES` (see :func:`storage_name`).

    Arrays of other Array API libraries are returned as they are; anything else goes
    through ``np.asarray``.
    """
    if isinstance(x, np.ma.MaskedArray):
        # np.asarray would drop the mask and reduce the masked values too
        raise TypeError(
            f"{name}: a masked array; varstats does not honour masks. Pass "
            f"{name}.compressed() (one slice) or the unmasked values"
        )
    if is_foreign_array(x):
        storage_name(x, name=name)
        return x
    a = np.asarray(x)
    storage_name(a, name=name)
    # NumPy computes in the machine's byte order; '>f8' data are float64 all the same
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def host_float_array(x: Any, /, *, name: str = "x") -> np.ndarray[Any, Any]:
    """``x`` as a NumPy array stored in one of the :data:`~varstats.DTYPES`, bit for bit.

    The rules of :func:`float_array`; an array of another library is copied to the
    host (a ``torch.Tensor`` that requires grad is detached first: only its values
    are read). For the entry points that compute on the host, like the oracle.
    """
    return to_host(float_array(x, name=name))


def normalize_axes(
    axis: int | Sequence[int] | None, ndim: int, /, *, name: str = "axis"
) -> tuple[int, ...]:
    """``axis`` as a tuple of non-negative axes of an ``ndim``-dimensional array.

    ``None`` is every axis. Raises ``TypeError`` for anything but None, an int or a
    sequence of ints, ``numpy.exceptions.AxisError`` (a ``ValueError``) for an axis out
    of range and ``ValueError`` for a repeated axis; every message names ``name``.
    """
    if axis is None:
        return tuple(range(ndim))
    if type(axis) is int and -ndim <= axis < ndim:  # the common case, answered first
        return (axis % ndim,)
    if isinstance(axis, bool | float) or not isinstance(axis, int | np.integer | tuple | list):
        raise TypeError(f"{name}: expected None, an int or a tuple of ints, got {axis!r}")
    items = [axis] if isinstance(axis, int | np.integer) else list(axis)
    try:
        axes = tuple(operator.index(a) for a in items if not isinstance(a, bool))
    except TypeError:
        axes = ()
    if len(axes) != len(items):
        raise TypeError(f"{name}: expected None, an int or a tuple of ints, got {axis!r}")
    try:
        return tuple(normalize_axis_tuple(axes, ndim, argname=name))
    except OverflowError:  # an axis beyond C's integers is out of range too
        raise np.exceptions.AxisError(
            f"{name}: {axis!r} is out of bounds for an array of dimension {ndim}"
        ) from None
    except np.exceptions.AxisError:
        raise
    except ValueError:  # NumPy's words for it do not start with the argument's name
        raise ValueError(f"{name}: repeated axis in {axis!r}") from None


def check_correction(correction: Any, /) -> float:
    r"""The degrees-of-freedom correction :math:`c` as a float: a finite real number >= 0.

    Whether :math:`c` leaves any degrees of freedom is not checked here: where
    :math:`n - c \le 0` the variance is NaN (see :func:`warn_no_degrees_of_freedom`).
    """
    real = (int, float, np.integer, np.floating)
    if isinstance(correction, bool) or not isinstance(correction, real):
        raise TypeError(f"correction: expected a real number, got {type(correction).__name__}")
    try:
        c = float(correction)
    except OverflowError:
        raise ValueError("correction: too large for a float, let alone a count") from None
    if not math.isfinite(c) or c < 0:
        raise ValueError(f"correction: must be a finite number >= 0, got {correction!r}")
    return c


def warn_no_degrees_of_freedom(correction: Any, count: Any, /) -> bool:
    r"""Warn once if :math:`n - c \le 0` for any of the (host) ``count``; return whether it is.

    The Array API standard (``var``) makes the variance NaN there, empty reductions
    included, as NumPy and torch do; like NumPy, varstats says so with one
    ``RuntimeWarning``, the one warning a reduction lets escape. It points at the
    caller's line: the first frame outside the varstats package, however deep the
    public function that checks it.
    """
    counts = np.asarray(count)
    if not counts.size or np.min(counts) - float(correction) > 0:
        return False
    warnings.warn(
        f"correction: {correction!r} >= the number of values reduced "
        f"({int(np.min(counts))}); the variance is NaN there (Array API standard)",
        RuntimeWarning,
        stacklevel=_caller_stacklevel(),
    )
    return True


_PACKAGE: Final = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _caller_stacklevel() -> int:
    """:func:`warnings.warn`'s ``stacklevel`` of the first frame outside the package.

    Counted for a warning issued by the function that calls this one (level 1).
    """
    frame = sys._getframe(2)  # that function's caller
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level


def resolve_precision(precision: Precision | str | None, x: Any, /) -> Precision:
    """The :class:`~varstats.Precision` to use for data ``x``, an array of any namespace.

    The rule is :func:`varstats.precision.resolve_precision`'s: ``None`` means the
    dtype of ``x`` throughout, a string is parsed, and ``x`` must already be stored in
    the precision's storage format.
    """
    storage = x if isinstance(x, str) else storage_name(x)
    if precision is None or isinstance(precision, str):
        return _resolved(precision, storage)
    return _resolve_storage(precision, storage)


@functools.lru_cache(maxsize=256)
def _resolved(precision: str | None, storage: str) -> Precision:
    # a Precision is immutable, so the few (name, storage) pairs in use are parsed once
    return _resolve_storage(precision, storage)


# NumPy's and torch's spellings of the options, and what to write instead
_SPELLINGS: Final = {
    "ddof": "correction=",
    "unbiased": "correction=1 (or 0)",
    "dim": "axis=",
    "keepdim": "keepdims=",
    "dtype": "precision= (a storage:accumulator pair, e.g. 'float16:float32')",
    "out": "the returned array (there is no out=)",
}


def check_options(function: str, kernel: Callable[..., Any], options: dict[str, Any], /) -> None:
    """Raise a ``TypeError`` naming ``function`` if ``kernel`` does not take every option.

    NumPy's and torch's spellings (``ddof``, ``dim``, ``dtype``, ...) get the right
    keyword in the message instead of an error from inside a kernel.
    """
    if not options:
        return
    accepted = _keywords(kernel)
    if accepted is None:  # **kwargs: the kernel takes anything
        return
    for option in options:
        if option not in accepted:
            hint = _SPELLINGS.get(option)
            expected = f"use {hint}" if hint else f"options of this algorithm: {sorted(accepted)}"
            raise TypeError(
                f"{function}() got an unexpected keyword argument {option!r}; {expected}"
            )


@functools.cache
def _keywords(kernel: Callable[..., Any]) -> frozenset[str] | None:
    try:
        params = inspect.signature(kernel).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a builtin): let the call decide
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY) - {"acc"}


def positive_int(value: Any, /, *, name: str) -> int:
    """``value`` as a positive Python int (a kernel's ``block`` or ``lanes``)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def positive_float(value: Any, /, *, name: str) -> float:
    """``value`` as a positive finite Python float (an ``eps``, a clipping bound)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"{name}: expected a positive number, got {value!r}")
    try:
        result = float(value)
    except OverflowError:  # an int beyond the float range, e.g. 10**400
        text = repr(value)
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise ValueError(f"{name}: must be a positive finite number, got {shown}") from None
    if not (result > 0 and math.isfinite(result)):
        raise ValueError(f"{name}: must be a positive finite number, got {value!r}")
    return result


def flag(value: Any, /, *, name: str) -> bool:
    """``value`` as a bool: only ``True``, ``False`` and NumPy's bools (not any truthy value)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise TypeError(f"{name}: expected True or False, got {value!r}")
