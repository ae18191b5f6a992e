"""varstats.dask: our kernel per chunk and Chan merges between chunks, on a local cluster.

The ground truth is the exact oracle. The out-of-core result is not the in-memory
result bit for bit (the order of operations differs); both are within their bounds of
the exact variance, so they are within the sum of the bounds of each other.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import varstats as vs
from varstats import metrics
from varstats.cases import generate, kappa
from varstats.oracle import exact_moments, exact_var

pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

import dask.array as da  # noqa: E402

from varstats import dask as vd  # noqa: E402

# uneven chunks, including a tiny one: 20_001 + 50_000 + 7 + 60_000 + 69_992 = 200_000
CHUNKS_1D = (20_001, 50_000, 7, 60_000, 69_992)


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """Two single-threaded workers in this process (in-process transport, no ports)."""
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    )
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _merge_bound(algorithm: str, n: int, chunk: int, parts: int, k: float, u: float) -> float:
    """First-order bound on the relative error of M2 from chunk kernels merged in a tree.

    The kernel's bound on one chunk (``metrics.bound``) plus one Chan merge per tree level,
    each adding about ``kappa * u`` (CGL's pairwise updating bound with chunks as leaves),
    plus the final division.
    """
    levels = math.ceil(math.log2(max(parts, 1)))
    kernel = float(metrics.bound(algorithm, min(n, chunk), k, u))
    return kernel + (levels + 1) * k * u + u


def _rel(value: Any, exact: float) -> float:
    return abs(float(value) - exact) / exact


def _kappa(x: np.ndarray[Any, Any], axis: Any = None) -> float:
    """The largest condition number of the slices reduced over ``axis`` (exact moments)."""
    em = exact_moments(x, axis=axis)
    mean = np.asarray(em.mean, dtype=np.float64)
    m2 = np.asarray(em.m2, dtype=np.float64)
    n = x.size // max(mean.size, 1)
    return float(np.max(kappa(n, mean, m2)))


@pytest.mark.parametrize("algorithm", vs.ALGORITHMS)
@pytest.mark.parametrize(
    ("storage", "precision"), [("float64", None), ("float32", "float32:float64")]
)
def test_distributed_equals_in_memory_within_merge_bound(
    client: Any, algorithm: str, storage: str, precision: str | None
) -> None:
    options = {"lanes": 64} if algorithm == "welford" else {}  # one lane: 70_000 Python steps
    x = generate(200_000, storage=storage, offset=3.0, seed=11)[0]
    d = da.from_array(x, chunks=(CHUNKS_1D,))
    got = vd.var(d, algorithm=algorithm, precision=precision, correction=1, **options)
    got = got.compute()
    ref = vs.var(x, algorithm=algorithm, precision=precision, correction=1, **options)
    exact = float(exact_var(x, correction=1))
    acc = (precision or storage).split(":")[-1]
    u = vs.finfo(acc).unit_roundoff
    k = _kappa(x)
    dask_bound = _merge_bound(algorithm, x.size, max(CHUNKS_1D), len(CHUNKS_1D), k, u)
    mem_bound = float(metrics.bound(algorithm, x.size, k, u))
    assert got.dtype == np.dtype(acc)
    assert _rel(got, exact) <= dask_bound, f"dask {algorithm}: above its chunk+merge bound"
    assert abs(float(got) - float(ref)) <= (dask_bound + mem_bound) * exact, (
        "dask and in-memory results differ by more than the sum of their bounds"
    )


def test_two_axes_uneven_chunks_keepdims(client: Any) -> None:
    x = generate(30 * 41, storage="float64", offset=1e3, seed=5)[0].reshape(30, 41)
    d = da.from_array(x, chunks=((7, 1, 22), (10, 10, 21)))
    for axis in (0, 1, (0, 1), None):
        got = vd.var(d, axis=axis, keepdims=True, algorithm="corrected_two_pass").compute()
        exact = exact_var(x, axis=axis)
        assert got.shape == np.var(x, axis=axis, keepdims=True).shape
        k = _kappa(x, axis)
        rtol = _merge_bound("corrected_two_pass", x.size, 22 * 21, 9, k, 2.0**-53)
        np.testing.assert_allclose(np.squeeze(got), exact, rtol=rtol, err_msg="merge bound")
    mean, _ = vd.mean_var(d, axis=1)
    np.testing.assert_allclose(mean.compute(), np.mean(x, axis=1), rtol=4 * 2.0**-53)
    m = vd.moments(d, axis=0).compute()
    assert isinstance(m, vs.Moments)
    np.testing.assert_array_equal(m.count, np.full(41, 30))


def test_accuracy_difference_from_dask_var_same_accumulator(client: Any) -> None:
    """float32 data whose mean is 10**6 standard deviations: both reductions in float32.

    dask.array.var merges chunk moments too, but forms each chunk's mean from a plain sum
    and the squared deviations around it (two-pass, error ~ (L kappa u)**2); the
    corrected two-pass per chunk removes that, leaving the merge's ~kappa u / sqrt(m).
    """
    offset = 1e6
    x = vs.round_to(np.random.default_rng(0).normal(size=200_000) + offset, "float32")
    d = da.from_array(x, chunks=(CHUNKS_1D,))
    exact = float(exact_var(x))
    ours = _rel(vd.var(d, algorithm="corrected_two_pass").compute(), exact)
    theirs = _rel(da.var(d).compute(), exact)
    u = vs.finfo("float32").unit_roundoff
    bound = _merge_bound("corrected_two_pass", x.size, max(CHUNKS_1D), 5, _kappa(x), u)
    assert ours <= bound
    assert ours * 10 <= theirs, f"varstats.dask {ours:.2e} vs dask.array.var {theirs:.2e}"


def test_float64_accumulator_for_float32_data_is_nearly_exact(client: Any) -> None:
    """The recommended out-of-core setting: float32 data, float64 states and merges.

    At offset 10**4 std, dask.array.var in float32 (its default for float32 data) keeps
    about 6 digits; varstats.dask with a float64 accumulator keeps about 15.
    """
    x = vs.round_to(np.random.default_rng(1).normal(size=200_000) + 1e4, "float32")
    d = da.from_array(x, chunks=(CHUNKS_1D,))
    exact = float(exact_var(x))
    ours = _rel(
        vd.var(d, algorithm="corrected_two_pass", precision="float32:float64").compute(), exact
    )
    theirs = _rel(da.var(d).compute(), exact)
    assert ours <= 64 * 2.0**-53
    assert theirs >= 2.0**-24 * 4, "dask.array.var in float32 is at the float32 level"


def test_float16_and_bfloat16_chunks(client: Any) -> None:
    for storage in ("float16", "bfloat16"):
        x = generate(5000, storage=storage, offset=4.0, seed=2)[0]
        d = da.from_array(x, chunks=((1000, 3, 3997),))
        got = vd.var(d, precision=f"{storage}:float32").compute()
        assert got.dtype == np.float32
        assert _rel(got, float(exact_var(x))) <= 1e-5


def test_bad_input_names_the_argument() -> None:
    d = da.from_array(np.arange(10.0), chunks=3)
    with pytest.raises(TypeError, match="arr: "):
        vd.var(np.arange(10.0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="arr: int64 input"):
        vd.var(da.from_array(np.arange(10), chunks=3))
    with pytest.raises(TypeError, match="arr: unsupported dtype complex128"):
        vd.var(da.from_array(np.ones(3, dtype=complex), chunks=3))
    with pytest.raises(ValueError, match="correction"):
        vd.var(d, correction=-1)
    with pytest.raises(TypeError, match="correction"):
        vd.var(d, correction="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"varstats.dask.var\(\) got .*'ddof'; use correction="):
        vd.var(d, ddof=1)
    with pytest.raises(ValueError, match="algorithm: unknown"):
        vd.var(d, algorithm="no_such")
    with pytest.raises(ValueError, match="axis"):
        vd.var(d, axis=3)
    with pytest.raises(ValueError, match="precision"):
        vd.var(d, precision="float32")


def test_varstats_var_on_a_dask_array_stays_lazy() -> None:
    x = np.arange(12.0)
    d = da.from_array(x, chunks=5)
    got = vs.var(d, correction=1)
    assert isinstance(got, da.Array)
    assert float(got.compute()) == float(exact_var(x, correction=1))


def test_all_matches_documented() -> None:
    assert set(vd.__all__) == {"mean_var", "moments", "state_dtype", "var"}


@pytest.mark.parametrize("keepdims", [False, True])
def test_rescale_matches_in_memory_where_m2_overflows_or_underflows(keepdims: bool) -> None:
    # rows: M2 = 2e308 overflows; squared deviations underflow; an ordinary row
    x = np.array(
        [[1e154, 2e154, 3e154, 2e154], [1e-160, 2e-160, 3e-160, 2e-160], [1.0, 2.0, 3.0, 4.0]]
    )
    d = da.from_array(x, chunks=(2, 3))
    plain = vd.var(d, axis=1, keepdims=keepdims).compute()
    scaled = vd.mean_var(d, axis=1, correction=1, keepdims=keepdims, rescale=True)
    mean, variance = (a.compute() for a in scaled)
    exact = vs.oracle.exact_var(x, axis=1, correction=1)
    in_memory = vs.var(x, axis=1, correction=1, rescale=True)
    assert np.isinf(plain.ravel()[0])
    np.testing.assert_allclose(variance.ravel(), exact, rtol=1e-14)
    np.testing.assert_allclose(variance.ravel(), in_memory, rtol=1e-14)
    np.testing.assert_allclose(mean.ravel(), vs.oracle.exact_mean(x, axis=1), rtol=1e-15)
    assert variance.shape == ((3, 1) if keepdims else (3,))


@pytest.mark.parametrize(("shape", "correction"), [((3, 4), 4), ((3, 0), 0)])
def test_no_degrees_of_freedom_is_nan_with_one_warning(
    shape: tuple[int, int], correction: int
) -> None:
    d = da.from_array(np.ones(shape), chunks=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lazy = vd.mean_var(d, axis=1, correction=correction)
        mean, variance = (a.compute() for a in lazy)
    assert [w.category for w in caught] == [RuntimeWarning]
    assert "correction" in str(caught[0].message)
    assert variance.shape == (3,)
    assert np.all(np.isnan(variance))
    if shape[1] == 0:
        assert np.all(np.isnan(mean))


@pytest.mark.parametrize(("shape", "axis"), [((0, 3), 1), ((0, 0), 0), ((0, 3), (0, 1))])
def test_an_empty_kept_axis_reduces_to_an_empty_result_like_numpy(
    shape: tuple[int, ...], axis: Any
) -> None:
    x = np.zeros(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # n - correction <= 0 where n == 0
        got = vd.var(da.from_array(x, chunks=2), axis=axis).compute(scheduler="synchronous")
        expected = vs.var(x, axis=axis)
    assert np.shape(got) == np.shape(expected)
    assert np.array_equal(got, expected, equal_nan=True)
