"""Issue 14, "Bad input": a property test over the whole public API.

Every public entry point gets arbitrary arrays (every stored format and some it must
refuse, 0-d and empty shapes, strided views, both byte orders, masked arrays, lists,
torch tensors that require grad, NaN, inf, subnormals and the format's extremes) and
arbitrary axes, corrections and options. The property: it returns, or raises a
``ValueError`` or ``TypeError`` (``numpy.exceptions.AxisError`` is a ``ValueError``);
no other exception, and no ``RuntimeWarning`` but the one the Array API standard asks
for where ``n - correction <= 0`` (one, naming ``correction``). Where it is cheap the
result is checked too: ``vs.var`` against the exact oracle within the algorithm's own
bound (:func:`varstats.metrics.bound`), and against ``np.var`` on benign data.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Callable
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from exact_arithmetic import exact_kappa, rel_error
from exact_arithmetic import exact_var as fraction_var
from hypothesis import given, settings
from hypothesis import strategies as st

import varstats as vs
from varstats import cases, metrics, norms, oracle
from varstats.precision import rescale_exponents

torch = pytest.importorskip("torch")

ALLOWED = (ValueError, TypeError)
# formats varstats stores in, and others it must refuse with a TypeError
REFUSED = ["int32", "uint64", "bool", "complex128", "object", "longdouble"]
FEW = settings(max_examples=int(os.environ.get("VARSTATS_FUZZ_EXAMPLES", "60")))


def edge_values(dtype: str) -> list[float]:
    """The format's extremes from ``finfo``, never typed in."""
    fi = vs.finfo(dtype)
    return [0.0, -0.0, fi.tiny, fi.smallest_subnormal, fi.max, -fi.max, fi.eps, 1.0 + fi.eps]


@st.composite
def arrays(draw: st.DrawFn, *, min_dims: int = 0, max_side: int = 4) -> Any:
    """An array of any kind the public API may meet (most of them stored in a DTYPES format)."""
    dtype = draw(st.sampled_from([*vs.DTYPES, *vs.DTYPES, *REFUSED]))
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=3, min_side=0, max_side=max_side))
    fmt = dtype if dtype in vs.DTYPES else "float64"
    elements = st.one_of(
        st.floats(-1e6, 1e6),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(edge_values(fmt)),
    )
    values = draw(hnp.arrays(np.float64, shape, elements=elements))
    if dtype in vs.DTYPES:
        x: Any = vs.round_to(values, dtype)
    else:
        with np.errstate(all="ignore"):
            x = np.asarray(np.nan_to_num(values)).astype(dtype)
    kind = draw(st.sampled_from(["plain", "strided", "swapped", "masked", "list", "torch"]))
    if kind == "strided" and x.ndim:
        x = np.repeat(x, 2, axis=-1)[..., ::2]  # the same values, a non-contiguous view
    elif kind == "swapped" and dtype in ("float16", "float32", "float64"):
        x = x.astype(x.dtype.newbyteorder(">" if x.dtype.isnative else "<"))
    elif kind == "masked":
        x = np.ma.array(x, mask=draw(hnp.arrays(bool, x.shape)))
    elif kind == "list" and x.dtype != object:
        x = x.tolist()
    elif kind == "torch" and dtype in ("float32", "float64"):
        x = torch.tensor(x, requires_grad=draw(st.booleans()))
    return x


AXES = st.one_of(
    st.none(),
    st.integers(-4, 4),
    st.lists(st.integers(-4, 4), max_size=3).map(tuple),
    st.lists(st.integers(-3, 3), max_size=2),
    st.sampled_from([2**31, -(2**63), 10**30, 1.0, "0", True, np.int64(0), (0, 0), [0, 1.5]]),
)
CORRECTIONS = st.one_of(
    st.integers(0, 6),
    st.floats(0, 6),
    st.sampled_from([-1, -0.5, 10**400, 2**63, math.nan, math.inf, True, "1", None]),
    st.sampled_from([np.float32(1.0), np.int8(2), np.uint64(1)]),
)
ALGORITHM_NAMES = st.sampled_from([*vs.ALGORITHMS, "bogus", 3, None])
PRECISION_SPELLINGS = st.one_of(
    st.none(),
    st.sampled_from([str(p) for p in vs.PRECISIONS]),
    st.sampled_from(vs.PRECISIONS),
    st.sampled_from(["float99", "float32:float16", "", ":", 3, 10**400, b"float32"]),
)
OPTIONS = st.sampled_from(
    [
        {},
        {"summation": "sequential"},
        {"summation": "bogus"},
        {"summation": 3},
        {"block": 0},
        {"block": 2**70},
        {"lanes": 3},
        {"lanes": 1.5},
        {"ddof": 1},
        {"dim": 0},
        {"dtype": np.float32},
        {"out": None},
        {"unbiased": True},
        {"keepdim": True},
    ]
)
JUNK = st.sampled_from([None, -1, 0, 2**70, 10**400, 1.5, math.nan, "x", b"x", (), [1], object()])


def outcome(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)``, or ``None`` for a ValueError/TypeError.

    Fails on any other exception and on any RuntimeWarning but one naming ``correction``.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = function(*args, **kwargs)
        except ALLOWED as exc:
            message: str | None = str(exc)
            result = None
        else:
            message = None
    if message is not None:
        # an error names the argument ("axis: ...") or the function ("var() got ..."),
        # never a private function of the package
        assert re.match(r"[A-Za-z][\w.]*(: |\(\) )", message), message
        assert not re.search(r"\b_[a-z]\w*\(", message), message
    runtime = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(runtime) <= 1, runtime
    assert all("correction" in message for message in runtime), runtime
    return result


def benign(x: Any) -> bool:
    """A NumPy array of finite values where no square can overflow or underflow.

    That is where the bounds hold: the range in which ``rescale=True`` leaves a slice
    alone (:func:`varstats.precision.rescale_exponents` is 0), with a non-zero maximum.
    """
    if type(x) is not np.ndarray or x.dtype.name not in vs.DTYPES or not x.size:
        return False
    a = np.abs(x.astype(np.float64))
    amax = a.max(axis=-1) if a.ndim else a
    n = x.shape[-1] if x.ndim else 1
    scaled = rescale_exponents(amax, n, x.dtype.name)
    return bool(np.all(np.isfinite(a)) and np.all(amax > 0) and not np.any(scaled))


# --------------------------------------------------------------------------- reductions


@FEW
@given(
    x=arrays(),
    axis=AXES,
    correction=CORRECTIONS,
    algorithm=ALGORITHM_NAMES,
    precision=PRECISION_SPELLINGS,
    options=OPTIONS,
    keepdims=st.sampled_from([False, True, 1, "no"]),
    rescale=st.booleans(),
)
def test_reductions_return_or_raise_value_or_type_error(
    x: Any,
    axis: Any,
    correction: Any,
    algorithm: Any,
    precision: Any,
    options: dict[str, Any],
    keepdims: Any,
    rescale: bool,
) -> None:
    common = {"axis": axis, "algorithm": algorithm, "precision": precision, **options}
    outcome(vs.moments, x, **common)
    both = {"correction": correction, "keepdims": keepdims, "rescale": rescale, **common}
    outcome(vs.mean_var, x, **both)
    outcome(vs.var, x, **both)


@FEW
@given(x=arrays(min_dims=1), algorithm=st.sampled_from(vs.ALGORITHMS), correction=st.integers(0, 1))
def test_var_of_any_accepted_input_is_within_its_bound_of_the_oracle(
    x: Any, algorithm: str, correction: int
) -> None:
    got = outcome(vs.var, x, axis=-1, algorithm=algorithm, correction=correction)
    if got is None or not benign(x) or x.ndim != 1:
        return
    exact = fraction_var(x.astype(np.float64).tolist(), correction) if x.size > correction else None
    if exact is None:
        assert np.isnan(got)
        return
    if exact == 0:
        return  # constant data: any rounding error is infinitely wrong in relative terms
    u = vs.finfo(x.dtype).unit_roundoff
    # the algorithm's first-order bound on M2, plus one rounding for the division
    tol = float(metrics.bound(algorithm, x.size, exact_kappa(x.astype(np.float64)), u)) + u
    # where no square overflows or underflows, no algorithm may return NaN or inf
    assert math.isfinite(float(got)), f"{algorithm}: {got} for finite, in-range data"
    if math.isfinite(tol):
        err = rel_error(got, exact)
        assert err <= 2 * tol, (
            f"{algorithm}: relative error {err:.3g} > 2 * metrics.bound {tol:.3g}"
        )


@FEW
@given(x=arrays(min_dims=1), correction=st.integers(0, 1))
def test_var_agrees_with_numpy_on_benign_float64_input(x: Any, correction: int) -> None:
    if not benign(x) or x.dtype != np.float64 or x.shape[-1] <= correction:
        return
    got = vs.var(x, axis=-1, correction=correction)
    np.testing.assert_allclose(got, np.var(x, axis=-1, ddof=correction), rtol=1e-9, atol=1e-9)


@FEW
@given(x=arrays(max_side=3), axis=AXES, correction=CORRECTIONS, algorithm=ALGORITHM_NAMES)
def test_dask_var_returns_or_raises_value_or_type_error(
    x: Any, axis: Any, correction: Any, algorithm: Any
) -> None:
    da = pytest.importorskip("dask.array")
    from varstats import dask as vs_dask

    if not isinstance(x, np.ndarray) or isinstance(x, np.ma.MaskedArray):
        return
    if x.dtype.kind not in "f" and x.dtype.name != "bfloat16":
        return
    arr = da.from_array(x, chunks=2 if x.ndim else ())
    lazy = outcome(vs_dask.var, arr, axis=axis, correction=correction, algorithm=algorithm)
    if lazy is not None:
        outcome(lazy.compute, scheduler="synchronous")


# --------------------------------------------------------------------------- moments


@FEW
@given(
    count=st.one_of(st.integers(-1, 4), JUNK, st.sampled_from([np.uint64(2**64 - 1), [1, 2]])),
    mean=st.one_of(arrays(max_side=2), JUNK),
    m2=st.one_of(arrays(max_side=2), JUNK),
    axis=AXES,
    order=st.sampled_from(["pairwise", "sequential", "bogus", None]),
    correction=CORRECTIONS,
)
def test_moments_and_merge_along_return_or_raise_value_or_type_error(
    count: Any, mean: Any, m2: Any, axis: Any, order: Any, correction: Any
) -> None:
    m = outcome(vs.Moments, count, mean, m2)
    outcome(vs.merge_along, (1, 2, 3))
    if m is not None:
        outcome(vs.merge_along, m, axis, order=order)
        outcome(m.var, correction)
        outcome(m.merge, m)


@FEW
@given(
    storage=st.one_of(st.sampled_from(vs.DTYPES), JUNK),
    accumulator=st.one_of(st.sampled_from(vs.DTYPES), JUNK, st.just("")),
    text=st.one_of(st.text(max_size=20), JUNK),
)
def test_precision_and_recommended_return_or_raise_value_or_type_error(
    storage: Any, accumulator: Any, text: Any
) -> None:
    outcome(vs.Precision, storage, accumulator)
    outcome(vs.Precision.parse, text)
    outcome(vs.recommended, storage)


# --------------------------------------------------------------------------- oracle


@FEW
@given(
    x=arrays(max_side=3),
    axis=AXES,
    correction=CORRECTIONS,
    eps=st.one_of(st.sampled_from([0.0, 1e-5, np.float32(1e-5)]), JUNK),
    affine=st.sampled_from([None, 2.0, [1.0, 2.0], np.ma.array([1.0]), "x"]),
    method=st.sampled_from(["fast", "reference", "slow", None]),
    extra=st.sampled_from([{}, {"ddof": 1}, {"keepdims": True}, {"dtype": np.float64}]),
)
def test_oracle_returns_or_raises_value_or_type_error(
    x: Any, axis: Any, correction: Any, eps: Any, affine: Any, method: Any, extra: dict[str, Any]
) -> None:
    outcome(oracle.exact_mean, x, axis=axis, method=method, **extra)
    outcome(oracle.exact_var, x, axis=axis, correction=correction, method=method, **extra)
    m = outcome(oracle.exact_moments, x, axis=axis, method=method)
    if m is not None:
        outcome(m.var, correction)
    normalize = {"axis": axis, "eps": eps, "correction": correction, "method": method}
    y = outcome(oracle.exact_normalize, x, weight=affine, bias=affine, **normalize)
    if y is not None:
        assert y.shape == np.shape(np.asarray(x.detach() if hasattr(x, "detach") else x))


@FEW
@given(x=arrays(min_dims=1), correction=st.integers(0, 2))
def test_oracle_agrees_with_fractions_on_any_accepted_input(x: Any, correction: int) -> None:
    got = outcome(oracle.exact_var, x, axis=-1, correction=correction)
    if got is None or not benign(x):
        return
    for row, value in zip(x.reshape(-1, x.shape[-1]), np.reshape(got, -1), strict=True):
        if row.size <= correction:
            assert np.isnan(value)
        else:
            exact = fraction_var(row.astype(np.float64).tolist(), correction)
            assert float(value) == float(exact)


# --------------------------------------------------------------------------- cases, metrics


@FEW
@given(
    n=st.one_of(st.integers(0, 5), JUNK),
    storage=st.one_of(st.sampled_from(vs.DTYPES), JUNK),
    distribution=st.sampled_from([*cases.DISTRIBUTIONS, "bogus", None]),
    offset=st.one_of(st.floats(-1e3, 1e3), JUNK),
    scale=st.one_of(st.floats(0, 1e3), JUNK),
    layout=st.sampled_from([*cases.LAYOUTS, "bogus"]),
    batch=st.one_of(st.integers(0, 3), JUNK),
    seed=st.one_of(st.integers(0, 2**70), JUNK),
    order=st.sampled_from([*cases.ORDERS, "bogus"]),
)
def test_generate_returns_or_raises_value_or_type_error(
    n: Any,
    storage: Any,
    distribution: Any,
    offset: Any,
    scale: Any,
    layout: Any,
    batch: Any,
    seed: Any,
    order: Any,
) -> None:
    if isinstance(n, int) and isinstance(batch, int) and n * batch > 100:
        return  # the size itself is not under test
    outcome(
        cases.generate,
        n,
        storage=storage,
        distribution=distribution,
        offset=offset,
        scale=scale,
        layout=layout,
        batch=batch,
        seed=seed,
        order=order,
    )


@FEW
@given(
    value=st.one_of(arrays(max_side=3), JUNK),
    exact=st.one_of(arrays(max_side=3), JUNK),
    dtype=st.one_of(st.sampled_from(vs.DTYPES), JUNK),
)
def test_metrics_return_or_raise_value_or_type_error(value: Any, exact: Any, dtype: Any) -> None:
    outcome(metrics.rel_err, value, exact)
    outcome(metrics.ulps, value, exact, dtype)
    outcome(metrics.lre, value, exact, dtype)


# --------------------------------------------------------------------------- norms

NORM_CALLS: dict[str, Callable[..., Any]] = {
    "layer_norm": lambda x, num, axis, layer: norms.layer_norm(x, num, **layer),
    "group_norm": lambda x, num, axis, layer: norms.group_norm(x, num, **layer),
    "instance_norm": lambda x, num, axis, layer: norms.instance_norm(x, **layer),
    "batch_norm": lambda x, num, axis, layer: norms.batch_norm(
        x, None, None, training=True, **layer
    ),
    "batch_renorm": lambda x, num, axis, layer: norms.batch_renorm(x, x, x, training=True, **layer),
    "sync_batch_norm": lambda x, num, axis, layer: norms.sync_batch_norm(
        [x, x], None, None, **layer
    ),
    "affine_channel": lambda x, num, axis, layer: norms.affine_channel(x, x, x),
    "local_response_norm": lambda x, num, axis, layer: norms.local_response_norm(x, num),
    "vector_norm": lambda x, num, axis, layer: norms.vector_norm(x, axis=axis),
    "weight_norm": lambda x, num, axis, layer: norms.weight_norm(x, x, axis),
    "conv2d": lambda x, num, axis, layer: norms.conv2d(x, x, stride=num, padding=num),
    "fold_batch_norm": lambda x, num, axis, layer: norms.fold_batch_norm(
        x, None, x, x, None, None, layer["eps"]
    ),
}


@pytest.mark.parametrize("name", list(NORM_CALLS))
@FEW
@given(
    x=arrays(max_side=3),
    num=st.one_of(st.integers(-1, 4), JUNK),
    eps=st.one_of(st.sampled_from([1e-5, 0.0]), JUNK),
    convention=st.sampled_from(["pytorch", "tensorflow", "flax", "bogus", None]),
    algorithm=st.one_of(st.none(), ALGORITHM_NAMES),
    axis=AXES,
)
def test_norm_layers_return_or_raise_value_or_type_error(
    name: str, x: Any, num: Any, eps: Any, convention: Any, algorithm: Any, axis: Any
) -> None:
    layer = {"eps": eps, "convention": convention, "algorithm": algorithm}
    outcome(NORM_CALLS[name], x, num, axis, layer)
