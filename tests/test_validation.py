"""varstats.validation: one rule and one message per argument, for every entry point."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import varstats as vs
from varstats import validation as va


@pytest.mark.parametrize(
    ("axis", "ndim", "expected"),
    [
        (None, 3, (0, 1, 2)),
        (-1, 3, (2,)),
        (np.int64(1), 2, (1,)),
        ((0, -1), 3, (0, 2)),
        ([1, 0], 2, (1, 0)),
        ((), 2, ()),
    ],
)
def test_normalize_axes(axis: Any, ndim: int, expected: tuple[int, ...]) -> None:
    assert va.normalize_axes(axis, ndim) == expected


@pytest.mark.parametrize(
    ("axis", "error"),
    [
        (3, np.exceptions.AxisError),
        (-4, np.exceptions.AxisError),
        (2**70, np.exceptions.AxisError),  # not an OverflowError
        ((0, 0), ValueError),
        (1.0, TypeError),
        (True, TypeError),
        ((0, True), TypeError),
        ("0", TypeError),
        ((0, 1.5), TypeError),
    ],
)
def test_bad_axes_name_the_argument(axis: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="axis"):
        va.normalize_axes(axis, 3)


@pytest.mark.parametrize("correction", [0, 1, 0.5, np.float32(2.0), np.int8(3)])
def test_check_correction_accepts_real_numbers(correction: Any) -> None:
    assert va.check_correction(correction) == float(correction)


@pytest.mark.parametrize(
    ("correction", "error"),
    [(-1, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
     (10**400, ValueError), (True, TypeError), ("1", TypeError), (None, TypeError)],
)  # fmt: skip
def test_bad_corrections_name_the_argument(correction: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="correction"):
        va.check_correction(correction)


def test_no_degrees_of_freedom_warns_once_and_says_so() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert va.warn_no_degrees_of_freedom(1, np.array([2, 3])) is False
        assert va.warn_no_degrees_of_freedom(0, np.array([], dtype=np.int64)) is False
    with pytest.warns(RuntimeWarning, match=r"correction: 2 >= .* \(2\)"):
        assert va.warn_no_degrees_of_freedom(2, np.array([5, 2])) is True


@pytest.mark.parametrize("dtype", vs.DTYPES)
def test_storage_name_of_every_format_and_byte_order(dtype: str) -> None:
    x = vs.round_to(np.ones(3), dtype)
    assert va.storage_name(x) == dtype
    if x.dtype.itemsize > 1 and dtype != "bfloat16":
        assert va.storage_name(x.astype(x.dtype.newbyteorder(">"))) == dtype


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.arange(3), "x: int64 input"),
        (np.ones(3, dtype=bool), "x: bool input"),
        (np.ones(3, dtype=np.complex64), "x: unsupported dtype complex64"),
        (np.ones(3, dtype=np.longdouble), "x: unsupported dtype"),
        (np.ma.array([1.0, 2.0], mask=[0, 1]), "x: a masked array"),
    ],
)
def test_float_array_refuses_what_it_cannot_reduce(x: Any, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        va.float_array(x)


def test_float_array_gives_native_byte_order() -> None:
    x = va.float_array(np.array([1.0, 2.0], dtype=">f8"))
    assert x.dtype == np.float64
    assert x.dtype.isnative


def test_check_options_names_the_function_and_the_keyword() -> None:
    kernel = vs.get_algorithm("two_pass")
    va.check_options("var", kernel, {"summation": "sequential"})
    with pytest.raises(TypeError, match=r"var\(\) got .*'ddof'; use correction="):
        va.check_options("var", kernel, {"ddof": 1})
    with pytest.raises(TypeError, match=r"moments\(\) got .*'block'; options .*\['summation'\]"):
        va.check_options("moments", kernel, {"block": 2})

    def anything(x: Any, /, *, acc: Any, **options: Any) -> vs.Moments:
        raise AssertionError("not called")

    va.check_options("var", anything, {"ddof": 1})  # **options: the kernel decides


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2", None])
def test_positive_int(value: Any) -> None:
    with pytest.raises(ValueError, match="lanes"):
        va.positive_int(value, name="lanes")
    assert va.positive_int(np.int32(4), name="lanes") == 4


def test_host_float_array_reads_any_library_and_byte_order() -> None:
    torch = pytest.importorskip("torch")
    x = np.array([1.0, 2.0, 4.0])
    t = torch.tensor(x, requires_grad=True)
    for value in (x.astype(">f8"), t, x.tolist()):
        got = va.host_float_array(value)
        assert type(got) is np.ndarray
        assert got.dtype == np.float64
        assert np.array_equal(got, x)
    with pytest.raises(TypeError, match="weight: a masked array"):
        va.host_float_array(np.ma.array(x), name="weight")


@pytest.mark.parametrize(
    "call",
    [
        lambda: vs.var(np.ones(1), correction=1),
        lambda: vs.mean_var(np.ones((2, 0)), axis=1),
        lambda: vs.moments(np.ones(1)).var(1),
        lambda: vs.oracle.exact_var(np.ones(1), correction=1),
        lambda: vs.oracle.exact_normalize(np.ones(1), axis=0, correction=1),
    ],
)
def test_the_correction_warning_points_at_the_callers_line(call: Any) -> None:
    with pytest.warns(RuntimeWarning, match="correction") as record:
        call()
    assert [w.filename for w in record] == [__file__]


def test_a_repeated_axis_names_the_argument() -> None:
    with pytest.raises(ValueError, match=r"^axis: repeated axis in \(0, -2\)"):
        va.normalize_axes((0, -2), 2)


def test_positive_float_names_the_argument() -> None:
    assert va.positive_float(3, name="eps") == 3.0
    with pytest.raises(TypeError, match=r"^eps: "):
        va.positive_float("1e-5", name="eps")
    for bad in (0.0, -1.0, float("inf"), float("nan"), 10**400):
        with pytest.raises(ValueError, match=r"^eps: must be a positive finite number"):
            va.positive_float(bad, name="eps")


def test_normalize_axes_names_the_argument_it_is_given() -> None:
    assert va.normalize_axes(-1, 2, name="dim") == (1,)
    with pytest.raises(ValueError, match=r"^dim: "):
        va.normalize_axes(5, 2, name="dim")
    with pytest.raises(ValueError, match=r"^dim: repeated"):
        va.normalize_axes((0, 0), 2, name="dim")


def test_keepdims_and_rescale_take_only_booleans() -> None:
    x = np.ones(3)
    assert vs.var(x, keepdims=np.True_).shape == (1,)
    for name in ("keepdims", "rescale"):
        with pytest.raises(TypeError, match=f"{name}: expected True or False"):
            vs.var(x, **{name: "no"})
