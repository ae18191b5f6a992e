"""Floating-point formats and the storage/accumulator precision model.

Every algorithm in varstats is a sequence of roundings. :class:`Precision` names
where they happen: inputs are *stored* in ``storage``; sums, means and squared
deviations are formed and rounded in ``accumulator``.

NumPy implements float16 arithmetic by computing in float32 and rounding, and
``ml_dtypes`` does the same for bfloat16. Because float32 carries at least
``2p + 2`` significant bits for both formats (p = 11 and p = 8), each single
``+ - * / sqrt`` is still correctly rounded (Goldberg 1991, theorem on
innocuous double rounding), so elementwise NumPy operations on arrays of the
accumulator dtype *are* exact emulations of that format. Reductions are not:
``np.sum`` widens float16 and reorders; varstats never uses it on emulated data.

One trap remains in casts: ``ml_dtypes`` converts float64 to bfloat16 through
float32, which double-rounds. :func:`round_to` does the cast correctly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import ml_dtypes
import numpy as np
import numpy.typing as npt

__all__ = [
    "DTYPES",
    "PRECISIONS",
    "FloatInfo",
    "Precision",
    "as_dtype",
    "dtype_name",
    "finfo",
    "rescale_exponents",
    "resolve_precision",
    "round_to",
]

Array = npt.NDArray[Any]

#: The floating-point formats varstats emulates, narrowest first.
DTYPES: Final = ("float16", "bfloat16", "float32", "float64")

_NP_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
}

# a can hold every value of b exactly (same or wider significand *and* range)
_CONTAINS: Final[dict[str, frozenset[str]]] = {
    "float16": frozenset({"float16"}),
    "bfloat16": frozenset({"bfloat16"}),
    "float32": frozenset({"float16", "bfloat16", "float32"}),
    "float64": frozenset(DTYPES),
}


def as_dtype(dtype: Any, /, *, name: str = "dtype") -> np.dtype[Any]:
    """Resolve a dtype name or object to one of the :data:`DTYPES`.

    Raises ``ValueError`` naming ``name`` for anything else (integers,
    complex, extended precision, unknown names).
    """
    if isinstance(dtype, str):
        if dtype in _NP_DTYPES:
            return _NP_DTYPES[dtype]
        raise ValueError(f"{name}: unknown dtype {dtype!r}; expected one of {DTYPES}")
    if dtype is None:  # np.dtype(None) would silently mean float64
        raise TypeError(f"{name}: expected one of {DTYPES}, got None")
    try:
        # the byte order is storage, not format: '>f8' is float64
        dt = np.dtype(dtype).newbyteorder("=")
    except TypeError:
        raise TypeError(f"{name}: {dtype!r} is not a dtype") from None
    for candidate in _NP_DTYPES.values():
        if dt == candidate:
            return candidate
    raise ValueError(f"{name}: unsupported dtype {dt}; expected one of {DTYPES}")


def dtype_name(dtype: Any, /) -> str:
    """The :data:`DTYPES` name of ``dtype`` (``'bfloat16'`` for ml_dtypes' type)."""
    dt = as_dtype(dtype)
    for key, candidate in _NP_DTYPES.items():
        if dt == candidate:
            return key
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class FloatInfo:
    """Parameters of a binary floating-point format.

    Attributes
    ----------
    name : str
    bits : int
        Storage width.
    mant : int
        Significand precision p in bits, including the implicit bit.
    eps : float
        Machine epsilon, :math:`2^{1-p}`.
    unit_roundoff : float
        :math:`u = 2^{-p}`, the bound on the relative error of one rounding
        to nearest (Higham 2002, section 2.1).
    tiny : float
        Smallest positive normal number.
    smallest_subnormal : float
    max : float
        Largest finite number.
    digits : float
        Decimal digits a correctly rounded value carries, :math:`-\\log_{10} u`.
    """

    name: str
    bits: int
    mant: int
    eps: float
    unit_roundoff: float
    tiny: float
    smallest_subnormal: float
    max: float
    digits: float


def finfo(dtype: Any, /) -> FloatInfo:
    """Format parameters of one of :data:`DTYPES`, bfloat16 included.

    Values come from ``numpy.finfo`` / ``ml_dtypes.finfo`` and are returned as
    Python floats (every one is exactly representable in float64).
    """
    dt = as_dtype(dtype)
    fi = ml_dtypes.finfo(dt)  # type: ignore[no-untyped-call]
    mant = int(fi.nmant) + 1
    return FloatInfo(
        name=dtype_name(dt),
        bits=dt.itemsize * 8,
        mant=mant,
        eps=float(fi.eps),
        unit_roundoff=float(fi.eps) / 2,
        tiny=float(fi.smallest_normal),
        smallest_subnormal=float(fi.smallest_subnormal),
        max=float(fi.max),
        # log10(2) as a literal (parsed correctly rounded), not libm: the same digits everywhere
        digits=mant * 0.30102999566398119521,
    )


@dataclass(frozen=True)
class Precision:
    """Where an algorithm rounds: ``storage`` for data, ``accumulator`` for arithmetic.

    Parameters
    ----------
    storage : str
        Format the inputs are stored (and read) in; one of :data:`DTYPES`.
    accumulator : str, optional
        Format every sum, mean and squared deviation is rounded to. Defaults to
        ``storage``. It must hold every storage value exactly, so float16 and
        bfloat16 accumulate in themselves, float32 or float64.

    Examples
    --------
    >>> Precision("float16", "float32")
    Precision(storage='float16', accumulator='float32')
    >>> Precision("float32", "float16")
    Traceback (most recent call last):
    ...
    ValueError: accumulator: float16 cannot hold every float32 value; ...
    """

    storage: str
    accumulator: str = ""

    def __post_init__(self) -> None:
        storage = dtype_name(as_dtype(self.storage, name="storage"))
        # "" (the default) and None mean the storage format; any other value must name one
        accumulator = storage if self.accumulator in ("", None) else self.accumulator
        accumulator = dtype_name(as_dtype(accumulator, name="accumulator"))
        if storage not in _CONTAINS[accumulator]:
            raise ValueError(
                f"accumulator: {accumulator} cannot hold every {storage} value; "
                "use an accumulator at least as wide as the storage format"
            )
        object.__setattr__(self, "storage", storage)
        object.__setattr__(self, "accumulator", accumulator)

    @property
    def storage_dtype(self) -> np.dtype[Any]:
        return _NP_DTYPES[self.storage]

    @property
    def accumulator_dtype(self) -> np.dtype[Any]:
        return _NP_DTYPES[self.accumulator]

    @classmethod
    def parse(cls, text: str, /) -> Precision:
        """``"float16:float32"`` -> ``Precision("float16", "float32")``; ``"float32"`` alone too."""
        if not isinstance(text, str):
            raise TypeError(f"text: expected a string like 'float16:float32', got {text!r}")
        storage, _, accumulator = text.partition(":")
        return cls(storage, accumulator)

    def __str__(self) -> str:
        return f"{self.storage}:{self.accumulator}"


#: The (storage, accumulator) pairs the study covers (DESIGN.md, "The sweep").
PRECISIONS: Final = tuple(
    Precision(storage, accumulator)
    for storage, accumulator in (
        ("float16", "float16"),
        ("float16", "float32"),
        ("bfloat16", "bfloat16"),
        ("bfloat16", "float32"),
        ("float32", "float32"),
        ("float32", "float64"),
        ("float64", "float64"),
    )
)


def resolve_precision(precision: Precision | str | None, x: Any, /) -> Precision:
    """The :class:`Precision` to use for data ``x`` (a NumPy array or a storage format name).

    ``None`` means storage = accumulator = the format of ``x``. A string is parsed by
    :meth:`Precision.parse`. Given a precision, ``x`` must already be stored in its
    storage format: varstats does not silently round data. For arrays of other
    libraries, see :func:`varstats.validation.resolve_precision`.
    """
    storage = x if isinstance(x, str) else dtype_name(np.asarray(x).dtype)
    if precision is None:
        return Precision(storage)
    if isinstance(precision, str):
        precision = Precision.parse(precision)
    if not isinstance(precision, Precision):
        kind = type(precision).__name__
        raise TypeError(f"precision: expected Precision, str or None, got {kind}")
    if precision.storage != storage:
        raise ValueError(
            f"precision: x is stored as {storage} but precision.storage is "
            f"{precision.storage}; cast it first with varstats.round_to(x, {precision.storage!r})"
        )
    return precision


def _f64_to_bf16(x: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
    # Round to float32 with round-to-odd, then to bfloat16 with round-to-nearest:
    # with 24 >= 8 + 2 bits the second rounding is then correct (Boldo & Melquiond 2008).
    t = x.astype(np.float32)
    with np.errstate(invalid="ignore"):
        inexact = np.isfinite(x) & (t.astype(np.float64) != x)
    away = inexact & (np.abs(t.astype(np.float64)) > np.abs(x))
    t = np.where(away, np.nextafter(t, np.float32(0)), t)
    bits = t.view(np.uint32) | inexact.astype(np.uint32)
    return np.asarray(bits.view(np.float32).astype(ml_dtypes.bfloat16))


def round_to(x: npt.ArrayLike, dtype: Any, /) -> npt.NDArray[Any]:
    """Round ``x`` to ``dtype`` once, to nearest with ties to even.

    Unlike ``x.astype(bfloat16)`` on float64 data (which rounds through float32
    and can be off by one bfloat16 ulp), every cast here is a single correct
    rounding. Values beyond the format's range become ``±inf``.
    """
    target = as_dtype(dtype)
    a = np.asarray(x)
    if a.dtype.kind not in "fiu" and a.dtype != _NP_DTYPES["bfloat16"]:
        raise TypeError(f"x: cannot round {a.dtype} data to {dtype_name(target)}")
    if target == _NP_DTYPES["bfloat16"] and a.dtype == np.float64:
        with np.errstate(over="ignore"):
            return _f64_to_bf16(a)
    if a.dtype.kind in "iu":
        # integers: through float64 is exact only below 2**53
        a = a.astype(np.float64)
        if target == _NP_DTYPES["bfloat16"]:
            return _f64_to_bf16(a)
    with np.errstate(over="ignore"):
        return np.asarray(a.astype(target))


def rescale_exponents(amax: npt.ArrayLike, n: int, acc: Any) -> Array:
    """Power-of-two exponents ``k`` for slices of ``n`` values with largest magnitude ``amax``.

    Slices whose largest finite magnitude lies in ``[L, T]`` get ``k = 0`` (no
    scaling at all), with ``T = sqrt(max / n) / 2`` (no sum of ``n`` squares can
    overflow) and ``L = sqrt(tiny) / u`` (squared deviations at the rounding level
    of the data stay normal). Others are scaled by ``2**-k`` so their magnitude
    falls just below ``T``. Used by ``rescale=True`` in :func:`varstats.var` and
    :mod:`varstats.dask`.
    """
    fi = finfo(acc)
    a = np.asarray(amax, dtype=np.float64)
    high = np.sqrt(fi.max / n) / 2
    low = np.sqrt(fi.tiny) / fi.unit_roundoff
    need = (a > 0) & ((a > high) | (a < low))
    k = np.frexp(a)[1] - np.frexp(high)[1] + 1
    return np.asarray(np.where(need, k, 0).astype(np.int64))
