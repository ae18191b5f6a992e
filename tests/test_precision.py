"""Tests for varstats.precision: formats, the Precision model and correct rounding."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import varstats as vs
from varstats.precision import as_dtype, dtype_name, resolve_precision, round_to


@pytest.mark.parametrize("name", vs.DTYPES)
def test_finfo_matches_the_format(name: str) -> None:
    fi = vs.finfo(name)
    dt = as_dtype(name)
    uint = f"u{dt.itemsize}"

    def next_up(v: float) -> float:
        return float((np.asarray(v, dtype=dt).view(uint) + 1).view(dt))

    # eps is the gap above 1; the unit roundoff is half of it
    assert next_up(1.0) - 1.0 == fi.eps
    assert fi.unit_roundoff == fi.eps / 2 == 2.0**-fi.mant
    exponent_bits = fi.bits - fi.mant
    assert fi.tiny == 2.0 ** (2 - 2 ** (exponent_bits - 1))
    assert next_up(0.0) == fi.smallest_subnormal == fi.tiny * 2.0 ** (1 - fi.mant)
    assert np.isinf(next_up(fi.max))
    assert float(dt.type(fi.max)) == fi.max
    assert np.isinf(float(round_to(fi.max * (1 + fi.eps), name)))
    assert dtype_name(dt) == name


def test_mantissa_bits_are_the_standard_ones() -> None:
    assert [vs.finfo(d).mant for d in vs.DTYPES] == [11, 8, 24, 53]


def test_precision_validates_and_orders() -> None:
    assert vs.Precision("float16").accumulator == "float16"
    assert str(vs.Precision.parse("bfloat16:float32")) == "bfloat16:float32"
    assert vs.Precision("float16", "float32").accumulator_dtype == np.float32
    for storage, accumulator in [
        ("float32", "float16"),
        ("float16", "bfloat16"),
        ("bfloat16", "float16"),
    ]:
        with pytest.raises(ValueError, match="accumulator"):
            vs.Precision(storage, accumulator)
    with pytest.raises(ValueError, match="storage: unknown dtype"):
        vs.Precision("float128")
    with pytest.raises(ValueError, match="unsupported dtype int32"):
        as_dtype(np.int32, name="storage")
    with pytest.raises(TypeError, match="precision"):
        resolve_precision(3, np.ones(2))  # type: ignore[arg-type]
    p = vs.Precision("float32")
    with pytest.raises(AttributeError):
        p.storage = "float64"  # type: ignore[misc]


@pytest.mark.parametrize("prec", vs.PRECISIONS, ids=str)
def test_standard_precisions_are_valid_and_distinct(prec: vs.Precision) -> None:
    assert vs.PRECISIONS.count(prec) == 1
    assert vs.Precision.parse(str(prec)) == prec


@given(st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e30, max_value=1e30))
def test_round_to_bfloat16_is_a_single_correct_rounding(value: float) -> None:
    got = np.asarray(round_to(np.float64(value), "bfloat16"))
    bits = int(got.view(np.uint16))
    # the bfloat16 neighbours (one bit pattern away) are no closer to the exact value
    err = abs(Fraction(value) - Fraction(float(got)))
    for step in (-1, 1):
        if not 0 <= bits + step <= 0xFFFF:
            continue
        nb = np.array(bits + step, dtype=np.uint16).view(ml_dtypes.bfloat16)
        if np.isfinite(float(nb)):
            other = abs(Fraction(value) - Fraction(float(nb)))
            assert err < other or (err == other and bits % 2 == 0)


def test_round_to_bfloat16_avoids_double_rounding() -> None:
    # 1 + 2**-8 + 2**-40 is just above the midpoint of 1 and 1 + 2**-7:
    # through float32 it becomes the midpoint and rounds to even (1.0), which is wrong.
    x = np.float64(1 + 2**-8 + 2**-40)
    assert float(np.asarray(x).astype(ml_dtypes.bfloat16)) == 1.0  # ml_dtypes' cast
    assert float(round_to(x, "bfloat16")) == 1 + 2**-7
    assert float(round_to(-x, "bfloat16")) == -(1 + 2**-7)
    assert float(round_to(np.float64(1 + 2**-8), "bfloat16")) == 1.0  # a true tie: to even


@pytest.mark.parametrize("name", vs.DTYPES)
def test_round_to_edges(name: str) -> None:
    fi = vs.finfo(name)
    vals = np.array(
        [0.0, -0.0, fi.tiny, fi.smallest_subnormal, fi.max, -fi.max, np.inf, -np.inf, 1.0]
    )
    out = round_to(vals, name).astype(np.float64)
    np.testing.assert_array_equal(out, vals)
    assert np.signbit(out[1])
    assert np.isnan(float(round_to(np.nan, name)))
    # half the smallest subnormal is a tie with zero: rounds to even (zero)
    assert float(round_to(np.float64(fi.smallest_subnormal / 2), name)) == 0.0
    assert float(round_to(np.float64(fi.smallest_subnormal * 0.75), name)) == fi.smallest_subnormal


def test_round_to_rejects_non_real() -> None:
    with pytest.raises(TypeError, match="x: cannot round complex128"):
        round_to(np.array([1j]), "float32")


def test_none_is_not_a_format() -> None:
    # np.dtype(None) is float64; a Precision must not silently become one
    with pytest.raises(TypeError, match="storage"):
        vs.Precision(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="text"):
        vs.Precision.parse(None)  # type: ignore[arg-type]
    assert as_dtype(np.dtype(">f8")) == np.float64


def test_resolve_precision_refuses_to_round_silently() -> None:
    x: Any = np.ones(3, dtype=np.float64)
    assert resolve_precision(None, x) == vs.Precision("float64")
    with pytest.raises(ValueError, match="round_to"):
        resolve_precision("float32", x)


@pytest.mark.parametrize("accumulator", [0, False, 3])
def test_an_accumulator_that_is_not_a_format_is_refused(accumulator: Any) -> None:
    # only "" (the default) and None mean "the storage format"
    with pytest.raises(TypeError, match="accumulator"):
        vs.Precision("float32", accumulator)


def test_precision_none_and_parse_of_none_are_type_errors() -> None:
    with pytest.raises(TypeError, match="storage"):
        vs.Precision(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="text"):
        vs.Precision.parse(None)  # type: ignore[arg-type]
    assert vs.Precision("float16", None) == vs.Precision("float16")  # type: ignore[arg-type]
