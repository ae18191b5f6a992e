"""Array API inputs: the same algorithm with another library's operations.

The NumPy path is the reference. On the same stored data, algorithm and precision, a
torch tensor or an array_api_strict array must give the same bits, in its own namespace
and on its own device.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import pytest

import varstats as vs
from varstats import array_api
from varstats.cases import PUBLIC_CASES, generate

xps = pytest.importorskip("array_api_strict")
pytest.importorskip("array_api_compat")

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

SUM_BASED = ("naive", "shifted", "two_pass", "corrected_two_pass", "compensated")


def _options(algorithm: str) -> list[dict[str, Any]]:
    if algorithm in SUM_BASED:
        return [{"summation": s} for s in vs.SUMMATIONS]
    if algorithm == "welford":
        return [{}, {"lanes": 8}]
    if algorithm in ("pairwise", "chan"):
        return [{}, {"block": 5}]
    return [{}]


CONFIGS = [(a, o) for a in vs.ALGORITHMS for o in _options(a)]


def _ids(config: tuple[str, dict[str, Any]]) -> str:
    algorithm, options = config
    return algorithm + "".join(f"-{k}={v}" for k, v in options.items())


def _to_torch(x: np.ndarray[Any, Any]) -> Any:
    name = vs.precision.dtype_name(x.dtype)
    if name in ("float16", "bfloat16"):  # no NumPy/DLPack bfloat16: through float32 (exact)
        return torch.from_numpy(x.astype(np.float32)).to(getattr(torch, name))
    return torch.from_numpy(np.ascontiguousarray(x))


def _back(v: Any, dtype: str) -> np.ndarray[Any, Any]:
    """Result bits as a NumPy array of ``dtype`` (float16/bfloat16 through float32, exact)."""
    if torch is not None and isinstance(v, torch.Tensor):
        host = v.detach().to(torch.float64).numpy()
    else:
        host = np.asarray(xps.astype(v, xps.float64))
    return vs.round_to(host, dtype)


def _same_bits(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a64.shape != b64.shape:
        return False
    # every bit, the sign of zero included (float16/bfloat16 widen exactly); any NaN is NaN
    nan = np.isnan(a64) & np.isnan(b64)
    return bool(np.all(nan | (a64.view(np.uint64) == b64.view(np.uint64))))


def _libraries(dtype: str) -> list[str]:
    libs = ["array_api_strict"] if dtype in ("float32", "float64") else []
    if torch is not None:
        libs.append("torch")
    return libs


def _convert(x: np.ndarray[Any, Any], library: str) -> Any:
    return xps.asarray(x) if library == "array_api_strict" else _to_torch(x)


def _data(dtype: str) -> np.ndarray[Any, Any]:
    # three rows of 300, offset 100 std: cancellation matters, and 300 = 32*9 + 12
    # exercises the pairwise lanes, the tail and an odd tree level
    return generate(300, storage=dtype, offset=100.0, batch=3, seed=8)


@pytest.mark.parametrize("dtype", vs.DTYPES)
@pytest.mark.parametrize("config", CONFIGS, ids=_ids)
def test_same_bits_as_numpy_path(dtype: str, config: tuple[str, dict[str, Any]]) -> None:
    algorithm, options = config
    x = _data(dtype)
    for precision in (None, f"{dtype}:float64"):
        acc = (precision or dtype).split(":")[-1]
        ref_mean, ref_var = vs.mean_var(
            x, axis=-1, correction=1, algorithm=algorithm, precision=precision, **options
        )
        for library in _libraries(dtype):
            mean, variance = vs.mean_var(
                _convert(x, library),
                axis=-1,
                correction=1,
                algorithm=algorithm,
                precision=precision,
                **options,
            )
            assert _same_bits(_back(mean, acc), ref_mean), (library, precision, "mean")
            assert _same_bits(_back(variance, acc), ref_var), (library, precision, "var")


@pytest.mark.parametrize("library", ["array_api_strict", "torch"])
@pytest.mark.parametrize("name", sorted(PUBLIC_CASES))
def test_recommended_on_public_cases_same_bits(library: str, name: str) -> None:
    if library == "torch" and torch is None:
        pytest.skip("torch not installed")
    case = PUBLIC_CASES[name]
    x = np.array(case.x)
    # corrected two-pass with rescaling (the recommendation before dot2): dot2, the
    # current vs.RECOMMENDED, is a NumPy kernel only (see test_dot2_is_numpy_only)
    kwargs = dict(
        algorithm="corrected_two_pass",
        summation="pairwise",
        rescale=True,
        axis=-1,
        correction=case.correction,
    )
    ref = vs.var(x, **kwargs)
    got = vs.var(_convert(x, library), **kwargs)
    assert _same_bits(_back(got, case.dtype), ref)


def test_dot2_is_numpy_only() -> None:
    with pytest.raises(ValueError, match="NumPy kernel"):
        vs.var(xps.asarray(np.ones(4)), **vs.RECOMMENDED)


@pytest.mark.parametrize("axis", [None, 0, (0, 2), -1])
@pytest.mark.parametrize("keepdims", [False, True])
def test_axes_and_keepdims_match_numpy(axis: Any, keepdims: bool) -> None:
    x = generate(60, storage="float32", offset=10.0, batch=1, seed=3).reshape(3, 4, 5)
    ref = vs.var(x, axis=axis, keepdims=keepdims, algorithm="welford")
    got = vs.var(xps.asarray(x), axis=axis, keepdims=keepdims, algorithm="welford")
    assert tuple(got.shape) == np.shape(ref)
    assert _same_bits(_back(got, "float32"), ref)


def test_namespace_and_device_preserved_array_api_strict() -> None:
    device = xps.Device("device1")
    x = xps.asarray(_data("float64"), device=device)
    mean, variance = vs.mean_var(x, axis=-1)
    for out in (mean, variance):
        assert isinstance(out, type(x))
        assert out.device == device
        assert out.dtype == xps.float64
    m = vs.moments(x, axis=-1, precision="float64")
    assert isinstance(m, vs.Moments)
    assert isinstance(m.mean, type(x))
    assert m.mean.device == device


@pytest.mark.skipif(torch is None, reason="torch not installed")
@pytest.mark.parametrize("dtype", vs.DTYPES)
def test_namespace_and_dtype_preserved_torch(dtype: str) -> None:
    x = _to_torch(_data(dtype))
    variance = vs.var(x, axis=1, algorithm="welford", lanes=8)
    assert isinstance(variance, torch.Tensor)
    assert variance.dtype == x.dtype
    assert variance.device == x.device
    assert tuple(variance.shape) == (3,)


@pytest.mark.skipif(torch is None, reason="torch not installed")
def test_autograd_flows_through_torch_kernel() -> None:
    x = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64, requires_grad=True)
    vs.var(x, algorithm="two_pass").backward()
    # d var / d x_i = 2 (x_i - mean) / n
    expected = 2 * (x.detach() - x.detach().mean()) / 3
    torch.testing.assert_close(x.grad, expected, rtol=4 * 2.0**-53, atol=0)


def test_moments_merge_and_to_numpy_match_numpy() -> None:
    x = _data("float32")
    a, b = x[:, :100], x[:, 100:]
    ref = vs.moments(a, axis=-1).merge(vs.moments(b, axis=-1))
    got = vs.moments(xps.asarray(a), axis=-1).merge(vs.moments(xps.asarray(b), axis=-1))
    assert isinstance(got.mean, type(xps.asarray(a)))
    host = got.to_numpy()
    np.testing.assert_array_equal(host.count, ref.count)
    assert _same_bits(host.mean, ref.mean)
    assert _same_bits(host.m2, ref.m2)
    assert _same_bits(_back(got.var(1), "float32"), ref.var(1))


def test_missing_float64_names_precision() -> None:
    # array_api_strict's "no_float64" device stands in for hardware without float64
    try:
        device = xps.Device("no_float64")
    except ValueError:  # pragma: no cover - array_api_strict before the device existed
        pytest.skip("this array_api_strict has no 'no_float64' device")
    x = xps.asarray(_data("float32"), device=device)
    vs.var(x, axis=-1)  # float32 throughout works
    with pytest.raises(TypeError, match=r"precision: .*no float64"):
        vs.var(x, axis=-1, precision="float32:float64")


def test_missing_low_precision_dtype_names_precision() -> None:
    fake = types.SimpleNamespace(__name__="fakelib", float32=object())
    with pytest.raises(TypeError, match="precision: fakelib has no bfloat16"):
        array_api.namespace_dtype(fake, "bfloat16", argname="precision")  # type: ignore[arg-type]


def test_numpy_only_kernel_is_a_clear_error() -> None:
    def kernel(x: Any, /, *, acc: Any) -> vs.Moments:
        raise AssertionError("not called")

    with pytest.raises(ValueError, match=r"algorithm: .*NumPy kernel"):
        vs.var(xps.asarray(_data("float32")), algorithm=kernel)
    with pytest.raises(ValueError, match="algorithm: unknown"):
        vs.var(xps.asarray(_data("float32")), algorithm="no_such")


def test_bad_input_names_the_argument() -> None:
    with pytest.raises(TypeError, match=r"x: .*int"):
        vs.var(xps.asarray([1, 2, 3]))
    x = xps.asarray(_data("float32"))
    with pytest.raises(ValueError, match="precision: x is stored as float32"):
        vs.var(x, precision="float64")
    with pytest.raises(TypeError, match="correction"):
        vs.var(x, axis=-1, correction="1")  # type: ignore[arg-type]
    with pytest.raises(Exception, match="axis"):
        vs.var(x, axis=5)


def test_numpy_and_lists_are_not_foreign() -> None:
    assert not array_api.is_foreign_array(np.ones(3))
    assert not array_api.is_foreign_array([1.0, 2.0])
    assert not array_api.is_foreign_array(np.float32(1.0))
    assert array_api.is_foreign_array(xps.asarray([1.0]))


@pytest.mark.parametrize(("stop", "correction"), [(1, 1), (0, 0), (3, 3.0)])
def test_no_degrees_of_freedom_is_nan_in_the_callers_library(stop: int, correction: float) -> None:
    # the Array API standard's own rule, on its own arrays
    x = xps.asarray(_data("float32"))[:, :stop]
    with pytest.warns(RuntimeWarning, match="correction"):
        mean, variance = vs.mean_var(x, axis=-1, correction=correction)
    assert isinstance(variance, type(x))
    assert variance.shape == (3,)
    assert bool(xps.all(xps.isnan(variance)))
    if stop == 0:
        assert bool(xps.all(xps.isnan(mean)))
