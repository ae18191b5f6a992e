"""Tables and figures from errors.csv: built from small hand-made CSVs, no sweep needed."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import varstats as vs
from varstats import report
from varstats.report import COLUMNS, HEADLINE_END, HEADLINE_START


def _row(**cols: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "kind": "var",
        "case": "-",
        "layer": "-",
        "convention": "-",
        "algorithm": "two_pass",
        "variant": "two_pass",
        "summation": "pairwise",
        "storage": "float32",
        "accumulator": "float32",
        "layout": "contiguous",
        "distribution": "normal",
        "scale_point": "unit",
        "n": 100,
        "offset": 1.0,
        "scale": 1.0,
        "correction": 0,
        "seed": 1,
        "rows": 8,
        "row": 0,
        "kappa": 1.4,
        "value": 1.0,
        "exact": 1.0,
        "rel_err": 0.0,
        "ulps": 0.0,
        "lre": 7.2,
        "lre_median": 7.2,
        "bound": 1e-6,
        "exceeds_bound": False,
        "negative": 0,
        "nan": 0,
        "inf": 0,
        "nonfinite": 0,
    }
    base.update(cols)
    return base


def _write(rows: list[dict[str, Any]], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    lines = [",".join(COLUMNS)]
    for r in rows:
        lines.append(
            ",".join(repr(r[c]) if isinstance(r[c], float) else str(r[c]) for c in COLUMNS)
        )
    (out / "errors.csv").write_text("\n".join(lines) + "\n")
    return out


def _small() -> list[dict[str, Any]]:
    rows = []
    for n in (10, 10**4):
        for offset in (1.0, 1e4):
            for variant, algorithm, lre in (
                ("naive", "naive", 0.0),
                ("two_pass", "two_pass", 7.0),
                ("welford", "welford", 6.5),
            ):
                for acc in ("float32", "float64"):
                    rows.append(
                        _row(
                            n=n,
                            offset=offset,
                            variant=variant,
                            algorithm=algorithm,
                            accumulator=acc,
                            lre=lre if offset > 1 else 7.2,
                            lre_median=7.2,
                            rel_err=10.0 ** -(lre if offset > 1 else 7.2),
                            bound=1e-3,
                        )
                    )
    rows.append(
        _row(
            kind="public",
            case="ort_28463",
            variant="naive/seq",
            algorithm="naive",
            rows=1,
            value=-128.0,
            exact=1.25,
            rel_err=103.4,
            lre=0.0,
            negative=1,
        )
    )
    rows.append(
        _row(
            kind="public",
            case="ort_28463",
            variant="-",
            algorithm="naive",
            layer="layer_norm",
            convention="flax",
            rows=1,
            value=-128.0,
            exact=1.25,
            rel_err=103.4,
            lre=0.0,
            negative=1,
            bound=math.nan,
        )
    )
    for conv, lre in (("pytorch", 7.0), ("caffe2", 0.0)):
        for offset in (1.0, 100.0):
            rows.append(
                _row(
                    kind="layer",
                    layer="batch_norm",
                    convention=conv,
                    variant="folded",
                    offset=offset,
                    rows=512,
                    lre=lre,
                    nan=0 if lre else 512,
                    nonfinite=0 if lre else 512,
                    bound=math.nan,
                )
            )
    return rows


def test_report_builds_from_a_small_csv(tmp_path: Path) -> None:
    out = _write(_small(), tmp_path / "res")
    assert report.main([str(out)]) == 0
    text = (out / "summary.md").read_text()
    assert text.count(HEADLINE_START) == 1
    assert text.count(HEADLINE_END) == 1
    assert text.index(HEADLINE_START) < text.index(HEADLINE_END)
    headline = text[text.index(HEADLINE_START) : text.index(HEADLINE_END)]
    assert "`naive`" in headline and "`float32:float32`" in headline  # noqa: PT018
    for section in (
        "## Recommendations",
        "## Failures",
        "## Public reproduction cases",
        "## Norm layers",
        "## Measured error vs the Chan-Golub-LeVeque bound",
    ):
        assert section in text
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "error_vs_offset_float32_float32.png" in figures
    assert "error_vs_n_float32_float64.png" in figures
    assert "layer_batch_norm.png" in figures
    for name in figures:
        assert f"figures/{name}" in text
    # same CSV, same bytes
    first = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert report.main([str(out)]) == 0
    assert first == {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_missing_csv_is_exit_2(tmp_path: Path) -> None:
    assert report.main([str(tmp_path)]) == 2


def test_read_errors_rejects_a_missing_column(tmp_path: Path) -> None:
    out = _write(_small(), tmp_path / "res")
    df = pd.read_csv(out / "errors.csv").drop(columns=["lre"])
    df.to_csv(out / "errors.csv", index=False)
    with pytest.raises(ValueError, match="lre"):
        report.read_errors(out / "errors.csv")


def test_recommendation_is_the_cheapest_with_full_accuracy(tmp_path: Path) -> None:
    df = report.read_errors(_write(_small(), tmp_path / "res") / "errors.csv")
    rec = report.recommendations(df).set_index(["n", "offset"])
    low = rec.loc[("n ≤ 1000", "offset ≤ 10")]
    # naive is cheapest and exact at offset 1; float32 before float64
    assert (low["variant"], low["accumulator"]) == ("naive", "float32")
    high = rec.loc[("n ≤ 1000", "offset > 10")]
    # at offset 1e4 naive fails; welford keeps 6.5 >= 6.2 digits and is cheaper than two_pass
    need = vs.finfo("float32").digits - 1
    assert high["needed"] == pytest.approx(need)
    assert (high["variant"], high["accumulator"]) == ("welford", "float32")
    assert bool(high["full"])


def test_no_full_accuracy_is_reported_as_such(tmp_path: Path) -> None:
    rows = [_row(variant=v, algorithm=v, lre=3.0) for v in ("naive", "two_pass")]
    df = report.read_errors(_write(rows, tmp_path / "res") / "errors.csv")
    rec = report.recommendations(df)
    assert not rec["full"].any()
    assert "none reaches full accuracy" in report.recommendation_table(df)


def test_bound_explanations() -> None:
    rows = [
        _row(storage="float16", accumulator="float16", n=10**5, exceeds_bound=True, rel_err=1.0),
        _row(value=math.inf, rel_err=math.inf, exceeds_bound=True),
        _row(scale_point="low", rel_err=1.0, exceeds_bound=True),
        _row(
            variant="two_pass/seq",
            storage="bfloat16",
            accumulator="bfloat16",
            n=1000,
            rel_err=30.0,
            bound=0.2,
            exceeds_bound=True,
        ),
        _row(rel_err=3e-6, bound=1e-6, exceeds_bound=True),
        _row(rel_err=1e-2, bound=1e-6, exceeds_bound=True),
        _row(rel_err=1e-9, bound=1e-6),
    ]
    reasons = report.bound_explanations(pd.DataFrame(rows))
    assert list(reasons) == [
        "count overflow",
        "overflow",
        "underflow",
        "n·u ≥ 1",
        "constant factor",
        "unexplained",
        "",
    ]


def test_flagged_rows_are_listed_in_the_summary(tmp_path: Path) -> None:
    rows = [
        *_small(),
        _row(
            variant="chan", algorithm="chan", rel_err=1e-2, bound=1e-6, exceeds_bound=True, lre=2.0
        ),
    ]
    df = report.read_errors(_write(rows, tmp_path / "res") / "errors.csv")
    section = report.bound_section(df)
    assert "| unexplained | 1 |" in section
    assert "`chan`" in section


def test_readme_headline_is_the_committed_summary() -> None:
    # The README quotes the headline table; it must be the one the committed code wrote.
    root = Path(__file__).resolve().parents[1]
    marker = re.compile(r"<!-- headline:start -->.*?<!-- headline:end -->", re.S)
    summary = marker.search((root / "results" / "summary.md").read_text(encoding="utf-8"))
    readme = marker.search((root / "README.md").read_text(encoding="utf-8"))
    assert summary is not None
    assert readme is not None
    assert readme.group(0) == summary.group(0)
