"""The sweep's CLI, determinism, resumption and the errors.csv contract.

Every run here uses the test-only ``tiny`` grid restricted with --precisions and
--layers so that the whole file takes well under a minute.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import varstats as vs
from varstats import sweep
from varstats.report import read_errors
from varstats.schema import COLUMNS

FAST = ["--grid", "tiny", "--precisions", "float32:float32", "--layers", "none", "--no-progress"]


def _outputs(out: Path) -> dict[str, bytes]:
    files = sorted(p for p in out.rglob("*") if p.is_file())
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted run of the fast grid, with one worker."""
    out = tmp_path_factory.mktemp("reference")
    assert sweep.main([*FAST, "--jobs", "1", "--out", str(out)]) == 0
    return out


# ----------------------------------------------------------------------------- CLI


def test_defaults() -> None:
    args = sweep.make_parser().parse_args([])
    assert args.grid == "standard"
    assert args.jobs == (os.cpu_count() or 1)
    assert args.out is None  # results/, for the full standard study only
    assert args.seed == 0
    assert not args.resume


def test_precisions_and_algorithms_are_parsed() -> None:
    args = sweep.make_parser().parse_args(
        ["--precisions", "float16:float32,float64", "--algorithms", "welford,two_pass/seq"]
    )
    assert args.precisions == (vs.Precision("float16", "float32"), vs.Precision("float64"))
    assert args.algorithms == ("welford", "two_pass/seq")


@pytest.mark.parametrize(
    "argv",
    [
        ["--grid", "huge"],
        ["--precisions", "float32:float16"],
        ["--precisions", "float8"],
        ["--precisions", ","],
        ["--algorithms", "magic"],
        ["--layers", "batchnorm"],
        ["--layers", "none,batch_norm"],
        ["--jobs", "0"],
        ["--jobs", "two"],
        ["--seed", "-1"],
        ["--bogus"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as exc:
        sweep.main([*argv, "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "error" in err, err
    assert not (tmp_path / "out").exists()


def test_out_must_be_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(SystemExit) as exc:
        sweep.main([*FAST, "--out", str(f)])
    assert exc.value.code == 2


def test_module_runs_as_a_script() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "varstats.sweep", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0
    assert "--grid" in res.stdout


# ----------------------------------------------------------------------------- grid


def test_grid_covers_the_design_axes() -> None:
    units = sweep.build_grid("standard", layers=("batch_norm",))
    var = [u for u in units if u.kind == "var"]
    assert {u.n for u in var} >= {2, 10**6}
    assert {p for u in var for p in u.precisions} == {str(p) for p in vs.PRECISIONS}
    assert {u.distribution for u in var} == set(vs.cases.DISTRIBUTIONS)
    assert {u.layout for u in var} == set(vs.cases.LAYOUTS)
    assert {u.scale_point for u in var} == set(sweep.SCALE_POINTS)
    assert {v for u in var for v in u.variants} == set(sweep.VARIANTS)
    assert {VARIANT.algorithm for VARIANT in sweep.VARIANTS.values()} == set(vs.ALGORITHMS)
    for u in var:  # offsets up to where the storage stops resolving the spread
        assert max(u.offsets) <= vs.cases.max_offset_ratio(u.storage)
        assert max(u.offsets) * 10 > vs.cases.max_offset_ratio(u.storage)
    assert {u.case for u in units if u.kind == "public"} == set(vs.cases.PUBLIC_CASES)
    assert {u.storage for u in units if u.kind == "layer"} == set(vs.DTYPES)
    assert len({u.key for u in units}) == len(units)


def test_sequential_loops_are_a_thin_slice_at_the_largest_n() -> None:
    units = sweep.build_grid("standard")
    top = [u for u in units if u.kind == "var" and u.n == 10**6]
    slow = [u for u in top if any(sweep.VARIANTS[v].sequential_loop for v in u.variants)]
    assert slow
    assert all(u.distribution == "normal" and u.scale_point == "unit" for u in slow)
    assert all(len(u.precisions) == 1 for u in slow)


def test_algorithm_filter_keeps_all_variants_of_an_algorithm() -> None:
    units = sweep.build_grid("tiny", algorithms=["two_pass"], layers=())
    labels = {v for u in units for v in u.variants}
    assert labels == {"two_pass", "two_pass/seq"}


def test_seeds_do_not_depend_on_order_or_process() -> None:
    assert sweep.case_seed(0, "float32", "normal", "unit", 10, 1.0) == sweep.case_seed(
        0, "float32", "normal", "unit", 10, 1.0
    )
    assert sweep.case_seed(0, "float32") != sweep.case_seed(1, "float32")


def test_scale_points_keep_the_variance_finite() -> None:
    for storage in vs.DTYPES:
        fi = vs.finfo(storage)
        for offset in vs.cases.offset_ratios(storage):
            high = sweep.scale_for(storage, "high", offset)
            assert (offset + 1) * high <= vs.cases.scale_range(storage)[1] * 1.0001
            assert high**2 < fi.max  # the variance is representable...
            low = sweep.scale_for(storage, "low", offset)
            assert low**2 >= fi.tiny  # ...and normal at the low point


# ----------------------------------------------------------------------------- output


def test_errors_csv_has_every_column_with_its_type(reference: Path) -> None:
    header = (reference / "errors.csv").read_text().splitlines()[0].split(",")
    assert header == list(COLUMNS)
    required = [
        "algorithm",
        "storage",
        "accumulator",
        "layout",
        "distribution",
        "n",
        "offset",
        "scale",
        "kappa",
        "correction",
        "value",
        "exact",
        "rel_err",
        "ulps",
        "lre",
        "bound",
        "negative",
        "nonfinite",
    ]
    assert set(required) <= set(header)
    df = read_errors(reference / "errors.csv")
    expected = {"int": np.int64, "float": np.float64, "bool": np.bool_}
    for col, kind in COLUMNS.items():
        if kind == "str":
            assert pd.api.types.is_string_dtype(df[col]), col
            assert (df[col] != "").all(), col  # "-" stands for "not applicable"
        else:
            assert df[col].dtype == expected[kind], col
    raw = pd.read_csv(reference / "errors.csv")  # plain pandas agrees on the numeric types
    for col, kind in COLUMNS.items():
        if kind in ("int", "float"):
            assert pd.api.types.is_numeric_dtype(raw[col]), col
    assert set(df["kind"]) == {"var", "public"}
    assert set(df["correction"]) == {0, 1}
    assert (df["nonfinite"] == df["nan"] + df["inf"]).all()


def test_rows_match_the_oracle(reference: Path) -> None:
    # regenerate one case from its recorded seed and check value and exact
    df = read_errors(reference / "errors.csv")
    r = df[
        (df["kind"] == "var")
        & (df["variant"] == "two_pass")
        & (df["n"] == 50)
        & (df["distribution"] == "normal")
        & (df["layout"] == "contiguous")
        & (df["scale_point"] == "unit")
    ].iloc[0]
    x = vs.cases.generate(
        int(r["n"]),
        storage="float32",
        offset=r["offset"] * r["scale"],
        scale=r["scale"],
        batch=int(r["rows"]),
        seed=int(r["seed"]),
    )
    row = x[int(r["row"])]
    exact = float(vs.oracle.exact_var(row, correction=int(r["correction"])))
    assert exact == r["exact"]
    value = float(
        vs.var(
            row, correction=int(r["correction"]), algorithm="two_pass", precision="float32:float32"
        )
    )
    assert value == r["value"]
    assert r["rel_err"] == float(vs.metrics.rel_err(value, exact))


def test_flagged_rows_are_above_their_bound(reference: Path) -> None:
    df = read_errors(reference / "errors.csv")
    df = df[np.isfinite(df["bound"])]
    u = df["accumulator"].map(lambda a: vs.finfo(a).unit_roundoff)
    above = df["rel_err"].fillna(np.inf) > df["bound"] + 2 * u
    assert df.loc[above, "exceeds_bound"].all()


def test_an_error_above_its_bound_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    # a two_pass that loses a factor 1e-6 of M2 is far above its bound in float64
    real = sweep.compute_moments

    def broken(x: Any, **kw: Any) -> vs.Moments:
        m = real(x, **kw)
        if kw["algorithm"] == "two_pass":
            return vs.Moments(m.count, m.mean, m.m2 * (1 + 1e-6))
        return m

    monkeypatch.setattr(sweep, "compute_moments", broken)
    unit = sweep.Unit(
        "var",
        "float64",
        20,
        4,
        ("float64:float64",),
        ("two_pass", "compensated"),
        "normal",
        offsets=(1.0, 10.0),
    )
    rows = sweep.compute_unit(unit)
    flagged = {(r["variant"], bool(r["exceeds_bound"])) for r in rows}
    assert flagged == {("two_pass", True), ("compensated", False)}


def test_same_command_same_bytes_whatever_the_jobs(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    assert sweep.main([*FAST, "--jobs", "2", "--out", str(out)]) == 0
    first, second = _outputs(reference), _outputs(out)
    assert sorted(first) == sorted(second)
    assert any(name.startswith("figures/") for name in first)
    for name in first:
        assert first[name] == second[name], name
    assert not (out / sweep.PARTIAL_DIR).exists()


def test_seed_changes_the_data(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "seeded"
    assert (
        sweep.main(
            [*FAST, "--jobs", "1", "--seed", "7", "--out", str(out), "--algorithms", "two_pass"]
        )
        == 0
    )
    a = read_errors(reference / "errors.csv")
    b = read_errors(out / "errors.csv")
    assert not set(a["seed"]) & set(b.loc[b["kind"] == "var", "seed"])


def test_resume_recomputes_only_missing_units(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    units = sweep.build_grid("tiny", precisions=[vs.Precision("float32")], layers=())
    out = tmp_path / "resumed"
    sweep.run(units, out, progress=False, finalize=False)  # a run that died before the end
    partial = out / sweep.PARTIAL_DIR
    stored = sorted(partial.glob("*.csv"))
    assert len(stored) == len(units)
    lost = {p.stem for p in stored[::3]}
    for p in stored[::3]:
        p.unlink()
    (partial / ".stale.123.tmp").write_text("half a unit")  # a write the kill interrupted

    computed: list[str] = []
    real = sweep.compute_unit

    def counting(unit: sweep.Unit) -> list[dict[str, Any]]:
        computed.append(unit.key)
        return real(unit)

    monkeypatch.setattr(sweep, "compute_unit", counting)
    stats = sweep.run(units, out, progress=False, resume=True)
    assert set(computed) == lost
    assert len(computed) == len(lost)
    assert (stats.computed, stats.resumed) == (len(lost), len(units) - len(lost))
    assert _outputs(out) == _outputs(reference)


def test_without_resume_everything_is_recomputed(tmp_path: Path) -> None:
    units = sweep.build_grid(
        "tiny", precisions=[vs.Precision("float64")], layers=(), algorithms=["naive"]
    )
    out = tmp_path / "fresh"
    sweep.run(units, out, progress=False, finalize=False)
    stats = sweep.run(units, out, progress=False, report=False)
    assert stats.computed == len(units)
    assert stats.resumed == 0


def test_killed_run_resumes_to_the_same_bytes(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "varstats.sweep", *FAST, "--jobs", "1", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = out / sweep.PARTIAL_DIR
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if partial.exists() and len(list(partial.glob("*.csv"))) >= 5:
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("the run finished before it could be killed")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "errors.csv").exists()
    done = len(list(partial.glob("*.csv")))
    assert done >= 5
    assert sweep.main([*FAST, "--jobs", "1", "--out", str(out), "--resume"]) == 0
    assert _outputs(out) == _outputs(reference)
