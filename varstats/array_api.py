r"""Array namespaces: the few places where array libraries differ, kept out of the kernels.

Every kernel in :mod:`varstats.kernels` is written once against the Array API: it asks
:func:`array_namespace` for ``xp`` and computes with ``xp.`` calls and operators only,
so a NumPy array, a ``torch.Tensor``, an ``array_api_strict`` array or a Dask chunk runs
the same lines and gets its result in its own library, dtype and device. Nothing is
reduced with a library's own ``sum``/``mean``/``var`` (their order and internal precision
are the library's business: ``torch.sum`` of float16 accumulates in float32,
``torch.cumsum`` of float32 in float64 on CPU). Every step is an elementwise
``+ - * /``, which IEEE 754 and the Array API specify as correctly rounded, so on the same
data every library gives the same bits (``tests/test_array_api.py``).

What differs between libraries lives here, and only here (as array-api-extra keeps it
in ``_lib/_utils/_compat``):

* **In-place updates.** NumPy writes a result into an existing buffer (``out=``), which
  keeps the sequential loops at ``np.var`` speed; the Array API has no ``out=``.
  :func:`binary_op` returns an operation that writes into ``out`` where the library can
  and returns a new array where it cannot; a kernel always uses the returned array.
* **Memory layout.** :func:`lane_major_like` and :func:`steps_first` give NumPy buffers
  whose loop steps are contiguous; other libraries get ``None`` or a plain view.
* **A sequential sum.** ``np.add.accumulate`` rounds every partial sum in the array's
  own dtype; no Array API function promises that (:func:`sequential_sum`). With numba
  (the ``jit`` extra) float32/float64 slices are summed by a compiled loop instead,
  with the same bits and without ``accumulate``'s input-sized output.
* **Host values.** Counts, count ratios and rescaling exponents are metadata known from
  the shapes. They are formed on the host with NumPy, rounded once into the accumulator
  (:func:`varstats.round_to`) and moved to the data's device by :func:`from_host`.
* **Scaling by powers of two** (:func:`ldexp`): ``np.ldexp`` and a correctly rounded
  float64-to-bfloat16 cast on NumPy; two exact power-of-two products and the library's
  cast elsewhere, which agree except where a scaled value lands in the accumulator's
  subnormal range (where a library's float64-to-narrow cast may round twice).

Formats a library lacks (``array_api_strict`` has no float16 or bfloat16) are a
``TypeError`` naming ``precision``; convert the data with ``np.asarray`` to emulate them.
Only :mod:`array_api_compat` is needed, and only for arrays of other libraries.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any, Final

import numpy as np

from varstats import half, jit
from varstats.precision import DTYPES, as_dtype, round_to

__all__ = [
    "array_namespace",
    "as_array",
    "binary_op",
    "device",
    "dtype_name",
    "from_host",
    "is_dask_array",
    "is_foreign_array",
    "lane_major_like",
    "ldexp",
    "namespace_dtype",
    "neumaier_sum",
    "own",
    "round_host",
    "scratch_like",
    "sequential_sum",
    "steps_first",
    "to_host",
    "unstack_last",
]


# NumPy's dtype objects for the four formats (bfloat16 is ml_dtypes'), by name
_NUMPY_NAMES: Final = {as_dtype(name): name for name in DTYPES}


def is_foreign_array(x: Any, /) -> bool:
    """Whether ``x`` is an Array API array of a library other than NumPy.

    NumPy arrays, scalars, lists and anything without ``shape`` and ``dtype`` are
    not (they take the NumPy path). Needs :mod:`array_api_compat` only when ``x``
    looks like an array of another library; without it such an ``x`` raises
    ``ImportError`` (install the ``interop`` extra).
    """
    if isinstance(x, np.ndarray | np.generic) or not (hasattr(x, "shape") and hasattr(x, "dtype")):
        return False
    try:
        import array_api_compat
    except ImportError:  # pragma: no cover - exercised only without the extra
        if hasattr(x, "__array_namespace__") or type(x).__module__.startswith("torch"):
            raise ImportError(
                f"x: a {type(x).__module__}.{type(x).__name__} needs array-api-compat; "
                "install varstats[interop] or pass np.asarray(x)"
            ) from None
        return False
    return bool(array_api_compat.is_array_api_obj(x) and not array_api_compat.is_numpy_array(x))


def is_dask_array(x: Any, /) -> bool:
    """Whether ``x`` is a ``dask.array.Array`` (checked without importing Dask)."""
    return type(x).__module__.startswith("dask.") and hasattr(x, "chunks")


def array_namespace(x: Any, /) -> ModuleType:
    """The namespace a kernel computes ``x`` with: :mod:`numpy` itself for NumPy input.

    NumPy 2's main namespace follows the Array API (``np.concat``, ``np.astype``,
    ``np.permute_dims``), and calling it directly costs nothing per operation, which
    matters in loops of one vector operation per step. Other libraries get their
    :mod:`array_api_compat` namespace.
    """
    if isinstance(x, np.ndarray) or not is_foreign_array(x):  # the first test is the fast path
        return np
    import array_api_compat

    xp: ModuleType = array_api_compat.array_namespace(x)
    return xp


def device(x: Any, /) -> Any:
    """The device ``x`` lives on (``"cpu"`` for NumPy)."""
    if not is_foreign_array(x):
        return "cpu"
    import array_api_compat

    return array_api_compat.device(x)


def dtype_name(xp: ModuleType, dtype: Any, /) -> str | None:
    """The :data:`~varstats.DTYPES` name of a namespace's dtype, or None if it is none of them."""
    if xp is np:
        name = _NUMPY_NAMES.get(dtype)
        if name is not None:
            return name
        try:
            return _NUMPY_NAMES.get(np.dtype(dtype).newbyteorder("="))
        except TypeError:
            return None
    for name in DTYPES:
        candidate = getattr(xp, name, None)
        if candidate is not None and dtype == candidate:
            return name
    return None


def namespace_dtype(xp: ModuleType, name: str, /, *, argname: str, device: Any = None) -> Any:
    """The namespace's dtype called ``name`` (a :data:`~varstats.DTYPES` name) on ``device``."""
    if xp is np:
        return as_dtype(name, name=argname)
    dt = getattr(xp, name, None)
    if dt is not None and name in ("float32", "float64") and device is not None:
        # the Array API's inspection: some devices lack float64 (e.g. Apple MPS)
        info = getattr(xp, "__array_namespace_info__", None)
        if info is not None and name not in info().dtypes(device=device, kind="real floating"):
            dt = None
    if dt is None:
        where = f"{xp.__name__}" + (f" on device {device}" if device is not None else "")
        raise TypeError(
            f"{argname}: {where} has no {name}; precision emulation in {name} is "
            "NumPy-only here. Pass np.asarray(x) (or np.from_dlpack(x)) to emulate it"
        )
    return dt


def from_host(values: Any, /, *, like: Any) -> Any:
    """Host values, exactly representable in ``like``'s dtype, as an array like ``like``.

    Same namespace, device and dtype as ``like`` (boolean values stay boolean). NumPy
    values are returned as they are. Elsewhere they pass through float32 (float64 for
    a float64 ``like``), which holds every float16, bfloat16 and float32 value exactly,
    so no rounding happens on the way.
    """
    if isinstance(like, np.ndarray) or not is_foreign_array(like):
        return values
    xp = array_namespace(like)
    dev = device(like)
    host = np.asarray(values)
    if host.dtype == np.bool_:
        return xp.asarray(host, device=dev)
    wide = "float64" if like.dtype == getattr(xp, "float64", None) else "float32"
    host = host.astype(np.float64).astype(wide)
    return xp.astype(xp.asarray(host, dtype=getattr(xp, wide), device=dev), like.dtype)


def round_host(values: np.ndarray[Any, Any], /, *, like: Any) -> Any:
    """Host float64 ``values`` rounded once into ``like``'s dtype, as an array like ``like``.

    Counts and count ratios take this way onto the data's device; float64 values
    for a float64 ``like`` are returned as they are.
    """
    if isinstance(like, np.ndarray | np.generic):
        return values if like.dtype == np.float64 else round_to(values, like.dtype)
    name = dtype_name(array_namespace(like), like.dtype)
    return from_host(round_to(values, name), like=like)


def to_host(a: Any, /) -> np.ndarray[Any, Any]:
    """``a`` as a NumPy array, bit for bit (float16/bfloat16 through float32, exact)."""
    if not is_foreign_array(a):
        return np.asarray(a)
    import array_api_compat

    xp = array_namespace(a)
    name = dtype_name(xp, a.dtype)
    if array_api_compat.is_torch_array(a):
        a = a.detach()  # values only; the autograd graph stays with the caller
    if name in ("float32", "float64", None):
        try:  # a copy of the bits, from any device that can hand them to the host
            return np.from_dlpack(a, device="cpu")
        except (TypeError, ValueError, RuntimeError, BufferError):
            return np.asarray(a)
    # float16/bfloat16: through float32 (exact), since DLPack and NumPy may lack the type
    wide = to_host(xp.astype(a, xp.float32))
    return round_to(wide, name)


def as_array(a: Any, /) -> Any:
    """``a`` as an array: ``np.asarray`` for NumPy values (scalars become 0-d), else ``a``."""
    return a if isinstance(a, np.ndarray) or is_foreign_array(a) else np.asarray(a)


def own(a: Any, /) -> Any:
    """A copy of ``a`` that may be updated in place (NumPy); ``a`` itself elsewhere."""
    return a.copy() if isinstance(a, np.ndarray | np.generic) else a


def binary_op(xp: ModuleType, name: str, /) -> Callable[..., Any]:
    """``xp.<name>`` as ``op(a, b, out=None)``; ``out`` is written in place where possible.

    NumPy's ufunc itself (``out=`` writes into the buffer, ``out=None`` allocates);
    elsewhere ``out`` is ignored and a new array returned. Use the result either way.
    """
    if xp is np:
        ufunc: Callable[..., Any] = getattr(np, name)
        return ufunc
    fn = getattr(xp, name)

    def op(a: Any, b: Any, out: Any = None) -> Any:
        return fn(a, b)

    return op


def scratch_like(a: Any, /) -> Any:
    """An uninitialised NumPy buffer shaped like ``a`` for ``out=``, or None elsewhere."""
    return np.empty_like(a) if isinstance(a, np.ndarray) else None


def lane_major_like(head: Any, /) -> Any:
    """For ``(..., rows, m)`` NumPy data, a buffer of that shape whose rows are contiguous.

    Each row step of a lane sum is then one contiguous vector operation across the
    batch axes. None for other libraries (``out=`` is ignored there).
    """
    if not isinstance(head, np.ndarray):
        return None
    buf = np.empty((head.shape[-2], *head.shape[:-2], head.shape[-1]), dtype=head.dtype)
    return np.moveaxis(buf, 0, -2)


def steps_first(a: Any, /) -> Any:
    """``(..., steps, lanes)`` as ``(steps, ..., lanes)``: ``out[k]`` is step ``k``.

    Contiguous per step on NumPy, so every step of a running update is one contiguous
    vector operation.
    """
    if isinstance(a, np.ndarray):
        return np.ascontiguousarray(np.moveaxis(a, -2, 0))
    return array_namespace(a).moveaxis(a, -2, 0)


def sequential_sum(a: Any, /) -> Any:
    """Left-to-right sum over the last axis, every partial sum rounded in ``a.dtype``.

    NumPy's ``add.accumulate`` does exactly this (unlike ``np.sum``, it never widens
    float16 or reorders; the tests pin it against a scalar loop). The Array API's
    ``cumulative_sum`` makes no such promise (torch's widens float32 on CPU), so other
    libraries add one element at a time.
    """
    if isinstance(a, np.ndarray):
        if a.shape[-1] == 1:
            return a[..., 0].copy()
        if (s := half.sequential_sum(a)) is not None:  # float16: compiled, the same bits
            return s
        compiled = _compiled("sequential_sum", a.dtype)
        if compiled is not None:
            flat = a.reshape(-1, a.shape[-1])
            out = np.empty(flat.shape[0], dtype=a.dtype)
            compiled(flat, out)
            return out.reshape(a.shape[:-1])
        return np.add.accumulate(a, axis=-1)[..., -1]
    s = a[..., 0]
    for k in range(1, a.shape[-1]):
        s = s + a[..., k]
    return s


def _sequential_sum_py(a: Any, out: Any) -> None:
    # s_1 = a_1, s_k = s_{k-1} + a_k, rounded in a's dtype (numba keeps float32 in float32)
    for b in range(a.shape[0]):
        s = a[b, 0]
        for k in range(1, a.shape[1]):
            s = s + a[b, k]
        out[b] = s


def _neumaier_py(a: Any, zero: Any, s_out: Any, c_out: Any) -> None:
    # Neumaier: s_k = s_{k-1} + a_k with TwoSum's exact error added to c, from +0
    for b in range(a.shape[0]):
        s = a[b, 0]
        c = zero[0]
        for k in range(1, a.shape[1]):
            x = a[b, k]
            t = s + x
            z = t - s
            c = c + ((s - (t - z)) + (x - z))
            s = t
        s_out[b] = s
        c_out[b] = c


#: Whether the sequential loops may run compiled by numba (the ``jit`` extra): the same
#: operations in the same order and dtype, no fast-math, so the same bits as
#: ``np.add.accumulate`` (``tests/test_array_api.py`` compares both).
_USE_JIT = True
_JIT_LOOPS: Final = {"sequential_sum": _sequential_sum_py, "neumaier": _neumaier_py}


def _compiled(name: str, dtype: Any) -> Any:
    """The compiled loop ``name`` for float32/float64 data, or None (see :mod:`varstats.jit`)."""
    if not _USE_JIT or dtype not in (np.float32, np.float64):
        return None
    loop = _JIT_LOOPS[name]
    return jit.build(f"array_api.{name}", lambda numba: numba.njit(cache=True, nogil=True)(loop))


def neumaier_sum(a: Any, /) -> tuple[Any, Any] | None:
    """Neumaier's sequential sum ``(s, c)`` of each NumPy slice (last axis), compiled.

    None where no compiled loop applies (no numba, not float32/float64): the caller
    then uses its vectorized form, which gives the same bits.
    """
    compiled = _compiled("neumaier", a.dtype) if isinstance(a, np.ndarray) else None
    if compiled is None:
        return None
    flat = a.reshape(-1, a.shape[-1])
    s = np.empty(flat.shape[0], dtype=a.dtype)
    c = np.empty_like(s)
    compiled(flat, np.zeros(1, dtype=a.dtype), s, c)
    return s.reshape(a.shape[:-1]), c.reshape(a.shape[:-1])


def unstack_last(a: Any, /) -> list[Any]:
    """The slices ``a[..., k]`` as a list, for a loop over the last axis.

    A 1-D float64 NumPy array becomes Python floats, which round exactly as binary64
    does and cost a tenth of a NumPy scalar operation in a loop.
    """
    if isinstance(a, np.ndarray) and a.ndim == 1 and a.dtype == np.float64:
        values: list[Any] = a.tolist()
        return values
    return [a[..., k] for k in range(a.shape[-1])]


def ldexp(a: Any, k: Any, /, *, dtype: Any) -> Any:
    """``a * 2**k`` (``k`` a host integer array broadcast against ``a``), rounded once to ``dtype``.

    Computed exactly in float64 and rounded once into ``dtype`` (a dtype of ``a``'s
    namespace). NumPy: ``np.ldexp`` and :func:`varstats.round_to`. Elsewhere: two exact
    power-of-two products (each factor a normal float64) and the library's cast.
    """
    if not is_foreign_array(a):
        with np.errstate(all="ignore"):
            return round_to(np.ldexp(np.asarray(a).astype(np.float64), k), dtype)
    xp = array_namespace(a)
    dev = device(a)
    f64 = namespace_dtype(xp, "float64", argname="rescale", device=dev)
    k = np.asarray(k)
    k1 = np.clip(k, -1000, 1000)
    out = xp.astype(a, f64)
    for factor in (np.ldexp(1.0, k1), np.ldexp(1.0, k - k1)):
        out = out * xp.asarray(factor, dtype=f64, device=dev)
    return xp.astype(out, dtype)
