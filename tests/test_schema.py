"""The shared facts of errors.csv: columns, orders, field text; and who imports them."""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import varstats as vs
from varstats import report, schema, sweep


def test_all_is_what_the_module_defines() -> None:
    public = {n for n in vars(schema) if not n.startswith("_")} - {"annotations", "np"}
    assert set(schema.__all__) == public - {"Any", "Final"}


def test_every_column_has_a_known_type() -> None:
    assert set(schema.COLUMNS.values()) <= set(schema.COLUMN_TYPES)
    assert len(schema.COLUMNS) == len(set(schema.COLUMNS))


def test_the_cost_order_ranks_every_variant_of_the_sweep_once() -> None:
    assert sorted(schema.COST_ORDER) == sorted(sweep.VARIANTS)


def test_the_precision_order_lists_every_precision_by_storage() -> None:
    assert sorted(schema.PRECISION_ORDER) == sorted(str(p) for p in vs.PRECISIONS)
    storages = [p.split(":")[0] for p in schema.PRECISION_ORDER]
    assert storages == sorted(storages, key=vs.DTYPES.index)


def test_sweep_and_report_share_one_copy_of_the_facts() -> None:
    assert report.COLUMNS is schema.COLUMNS
    assert report.COST_ORDER is schema.COST_ORDER


def test_the_report_never_imports_the_sweep() -> None:
    code = "import sys, varstats.report; print('varstats.sweep' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"
    # the schema sits below everything: it imports nothing of the package
    tree = ast.parse(Path(schema.__file__).read_text())
    imported = [
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    ] + [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
    assert not [m for m in imported if m.startswith("varstats")]


@given(st.floats(allow_nan=False) | st.floats(width=32, allow_nan=False).map(np.float32))
def test_a_float_field_reads_back_to_the_same_float64(x: float) -> None:
    text = schema.format_field(x)
    back = float(text)
    assert back == float(x)
    assert math.copysign(1.0, back) == math.copysign(1.0, float(x))


def test_nan_bool_and_int_fields() -> None:
    assert schema.format_field(float("nan")) == "nan"
    assert schema.format_field(np.bool_(False)) == "False"
    assert schema.format_field(True) == "True"
    assert schema.format_field(np.int64(-3)) == "-3"


@pytest.mark.parametrize("text", ["a,b", 'say "x"', "two\nlines"])
def test_a_field_that_would_need_quoting_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="value"):
        schema.format_field(text)


def test_load_results_without_errors_csv_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"python -m varstats\.sweep .*--out"):
        report.load_results(tmp_path)
    assert list(tmp_path.iterdir()) == [], "nothing was run or written"
