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


def _headline_cells() -> dict[tuple[str, str], tuple[float, float]]:
    root = Path(__file__).resolve().parents[1]
    text = (root / "results" / "summary.md").read_text(encoding="utf-8")
    block = text[text.index(HEADLINE_START) : text.index(HEADLINE_END)].strip().splitlines()
    header = [c.strip().strip("`") for c in block[1].strip("|").split("|")]
    cells = {}
    for line in block[4:]:
        parts = [c.strip() for c in line.strip("|").split("|")]
        for precision, cell in zip(header[1:], parts[1:], strict=True):
            median, worst = (float(v) for v in cell.split(" / "))
            cells[(parts[0].strip("`"), precision)] = (median, worst)
    return cells


def test_readme_findings_quote_the_headline() -> None:
    # the bullets under the README's headline table state numbers read off it
    root = Path(__file__).resolve().parents[1]
    readme = " ".join((root / "README.md").read_text(encoding="utf-8").split())
    cells = _headline_cells()
    median = cells[("two_pass", "float64:float64")][0]
    assert f"Plain two-pass in float64 is right to {median:.1f} digits at the median" in readme
    # "no correct digit left in its worst case in any precision where it accumulates in
    # the storage format"
    assert "(`naive`) has no correct digit left in its worst case" in readme
    for precision in ("float16:float16", "bfloat16:bfloat16", "float32:float32", "float64:float64"):
        assert cells[("naive", precision)][1] == 0.0, precision


# --------------------------------------------------------------------------- issue 16 tables


def test_subnormal_results_are_judged_by_attainable_accuracy(tmp_path: Path) -> None:
    q = vs.finfo("float64").smallest_subnormal
    exact = 1234 * q  # a variance below the normal range (n = 2 at the low scale point)
    rows = [
        # within one quantum: full accuracy although lre (11 bits left) says 3.1
        _row(
            storage="float64",
            accumulator="float64",
            scale_point="low",
            variant="two_pass",
            exact=exact,
            value=exact + q,
            lre=3.1,
        ),
        # two quanta off: judged by its lre
        _row(
            storage="float64",
            accumulator="float64",
            scale_point="low",
            variant="naive",
            algorithm="naive",
            exact=exact,
            value=exact + 2 * q,
            lre=2.8,
        ),
    ]
    df = report.read_errors(_write(rows, tmp_path / "res") / "errors.csv")
    judged = report.attainable_lre(df)
    assert judged.iloc[0] == vs.finfo("float64").digits
    assert judged.iloc[1] == 2.8


def test_recommendation_table_has_a_one_pass_column(tmp_path: Path) -> None:
    df = report.read_errors(_write(_small(), tmp_path / "res") / "errors.csv")
    rec = report.recommendations(df).set_index(["n", "offset"])
    high = rec.loc[("n ≤ 1000", "offset > 10")]
    # welford is the only streaming variant here, and keeps 6.5 >= 6.2 digits
    assert (high["one_pass_variant"], high["one_pass_accumulator"]) == ("welford", "float32")
    assert bool(high["one_pass_full"])
    assert "one pass (streaming)" in report.recommendation_table(df)
    assert set(report.ONE_PASS_VARIANTS) <= set(report.COST_ORDER)
    assert "two_pass" not in report.ONE_PASS_VARIANTS


def test_bound_table_lists_each_case_once(tmp_path: Path) -> None:
    # the same data under both corrections and both layouts: one line, rows = 4
    flagged = [
        _row(
            variant="chan",
            algorithm="chan",
            correction=c,
            layout=layout,
            rel_err=2e-6 * (1 + c),
            bound=1e-6,
            exceeds_bound=True,
        )
        for c in (0, 1)
        for layout in ("contiguous", "strided")
    ]
    df = report.read_errors(_write(flagged, tmp_path / "res") / "errors.csv")
    section = report.bound_section(df)
    lines = [line for line in section.splitlines() if line.startswith("| `chan`")]
    assert len(lines) == 1
    assert lines[0].endswith("| constant factor | 4 |")
    assert "| 4 |" in lines[0]
    assert "| 4e-06 |" in lines[0]


def test_kernel_and_ordering_tables(tmp_path: Path) -> None:
    rows = [
        _row(variant="naive", algorithm="naive", distribution=d, lre=lre)
        for d, lre in (("normal", 7.0), ("normal/ascending", 2.0))
    ]
    rows += [
        _row(variant="welford/lanes8", algorithm="welford", distribution=d, lre=6.5)
        for d in ("normal", "normal/ascending")
    ]
    df = report.read_errors(_write(rows, tmp_path / "res") / "errors.csv")
    kernels = report.kernel_table(df)
    assert "E[x²] − E[x]²" in kernels
    assert "`naive`" in kernels
    # worst over every order: 2.0 < 6.2 needed
    naive_line = next(line for line in kernels.splitlines() if "`naive`" in line)
    assert "2.0 ✗" in naive_line
    order = report.ordering_table(df)
    naive_row = next(line for line in order.splitlines() if line.startswith("| `naive`"))
    assert "7.0 / 2.0 ✗" in naive_row
    welford_row = next(line for line in order.splitlines() if line.startswith("| `welford"))
    assert "✗" not in welford_row


def test_recommended_ulps_table_counts_results_over_one_ulp(tmp_path: Path) -> None:
    rows = [
        _row(variant="dot2", algorithm="dot2", kappa=k, ulps=u)
        for k, u in ((1.5, 0.3), (2e3, 0.5), (3e3, 1.5))
    ]
    rows.append(_row(variant="dot2", algorithm="dot2", accumulator="float64", ulps=9.0))
    df = report.read_errors(_write(rows, tmp_path / "res") / "errors.csv")
    table = report.recommended_ulps_table(df)
    # float32 data: the recommended accumulator is float32, so the float64 row is not counted
    assert "3 results" in table
    assert "**1 over 1 ulp**" in table
    assert "| 1e3 ≤ κ < 1e4 | 2: 1 / 1.5, 1 over 1 |" in table


def test_summary_describes_the_default_summation_as_lanes(tmp_path: Path) -> None:
    df = report.read_errors(_write(_small(), tmp_path / "res") / "errors.csv")
    text = report.summary_markdown(df)
    assert "pairwise tree over 32 lanes" not in text
    assert "n/32 lane sums are added in a balanced tree" in text
    for heading in ("## The recommended configuration", "## If you write a kernel"):
        assert heading in text
