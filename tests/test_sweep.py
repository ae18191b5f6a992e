"""The sweep's CLI, determinism, resumption and the errors.csv contract.

Every run here uses the test-only ``tiny`` grid restricted with --precisions and
--layers so that the whole file takes well under a minute.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import re
import shutil
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
from varstats import report, sweep
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
        ["--jobs", "99999999999999999999999"],
        ["--jobs", str(sweep.MAX_JOBS + 1)],
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
    # "distribution/order": the adversarial orders of cases.ORDERS beside the drawn one
    assert {u.distribution.partition("/")[0] for u in var} == set(vs.cases.DISTRIBUTIONS)
    orders = {u.distribution.partition("/")[2] or "drawn" for u in var}
    assert orders == set(vs.cases.ORDERS)
    assert {u.layout for u in var} == set(vs.cases.LAYOUTS)
    assert {u.scale_point for u in var} == set(sweep.SCALE_POINTS)
    assert {v for u in var for v in u.variants} == set(sweep.VARIANTS)
    # dot2, the recommended kernel, is registered by name but not one of ALGORITHMS
    algorithms = {VARIANT.algorithm for VARIANT in sweep.VARIANTS.values()}
    assert algorithms == {*vs.ALGORITHMS, vs.RECOMMENDED["algorithm"]}
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
    parts = (0, "float32", "normal", "unit", 10, 1.0)
    code = f"from varstats import sweep; print(sweep.case_seed{parts!r})"
    # another process with another string-hash seed: nothing of the process may leak in
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert int(res.stdout) == sweep.case_seed(*parts)
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


# ----------------------------------------------------------------------------- faults

# a run that lasts several seconds (Welford up to n = 10**6, the largest units first, with
# numba or without), so an interrupt after the first stored unit lands while units are
# still being computed, not while the run is already finishing
SLOW = [
    "--grid",
    "standard",
    "--precisions",
    "float64",
    "--algorithms",
    "welford",
    "--layers",
    "none",
    "--no-progress",
]


def _start(argv: list[str], out: Path, **kw: Any) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "varstats.sweep", *argv, "--out", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)


def _wait_for(proc: subprocess.Popen[str], ready: Any, timeout: float = 60.0) -> bool:
    """Poll ``ready()`` until true; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    raise AssertionError("the condition never came true")


def _units_stored(out: Path, k: int = 1) -> Any:
    return lambda: len(list((out / sweep.PARTIAL_DIR).glob("*.csv"))) >= k


def _group(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, from /proc."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            alive.append(int(stat.parent.name))
    return alive


def _default_sigint() -> None:
    # a shell may start background jobs with SIGINT ignored; Ctrl-C must reach the sweep
    signal.signal(signal.SIGINT, signal.SIG_DFL)


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


@pytest.mark.parametrize(
    "moment",
    ["after the first unit", "while the report is written", "after the first figure"],
)
def test_a_kill_at_any_point_then_resume_gives_the_same_bytes(
    moment: str, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    proc = _start([*FAST, "--jobs", "1"], out)
    ready = {
        "after the first unit": _units_stored(out),
        # errors.csv is renamed into place, then the report starts
        "while the report is written": lambda: (out / "errors.csv").exists(),
        "after the first figure": lambda: any((out / "figures").glob("*.png")),
    }[moment]
    if not _wait_for(proc, ready):
        pytest.skip(f"the run finished before it could be killed {moment}")
    proc.kill()
    proc.wait()
    assert (out / sweep.PARTIAL_DIR).exists(), "the partial store goes last"
    assert sweep.main([*FAST, "--jobs", "1", "--out", str(out), "--resume"]) == 0
    assert _outputs(out) == _outputs(reference)  # no temporary file left either


@needs_proc
def test_workers_die_with_their_parent(tmp_path: Path) -> None:
    out = tmp_path / "orphans"
    proc = _start([*SLOW, "--jobs", "2"], out, start_new_session=True)
    try:
        # both workers started and one unit is done: the pool is fully up
        if not _wait_for(proc, lambda: len(_group(proc.pid)) >= 3):
            pytest.skip("the run finished before its workers could be seen")
        assert len(_group(proc.pid)) >= 3
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5.0
        while _group(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _group(proc.pid) == [], "processes of the run outlived it by 5 s"
    finally:
        for pid in _group(proc.pid):
            os.kill(pid, signal.SIGKILL)


@needs_proc
@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_stops_within_5_s_with_exit_130_and_says_how_to_resume(
    jobs: int, tmp_path: Path
) -> None:
    out = tmp_path / "interrupted"
    proc = _start(
        [*SLOW, "--jobs", str(jobs)], out, start_new_session=True, preexec_fn=_default_sigint
    )
    try:
        if not _wait_for(proc, _units_stored(out)):
            pytest.skip("the run finished before it could be interrupted")
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        _, err = proc.communicate(timeout=10)
        assert time.monotonic() - t0 < 5.0
        assert proc.returncode == sweep.EXIT_INTERRUPTED, err
        assert "Traceback" not in err, err
        assert "--resume" in err, err
        assert str(out) in err, err
        deadline = time.monotonic() + 5.0
        while _group(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _group(proc.pid) == []
        assert list((out / sweep.PARTIAL_DIR).glob("*.csv")), "finished units are kept"
    finally:
        for pid in _group(proc.pid):
            os.kill(pid, signal.SIGKILL)


def test_a_second_sweep_into_the_same_directory_is_refused(reference: Path, tmp_path: Path) -> None:
    # another process holds the directory (as a running sweep does, for its whole run):
    # held here, so the test does not race a sweep that may finish first
    out = tmp_path / "shared"
    shutil.copytree(reference, out)
    with report.output_lock(out):
        second = subprocess.run(
            [sys.executable, "-m", "varstats.sweep", *FAST, "--out", str(out)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    assert second.returncode == sweep.EXIT_BUSY, second.stderr
    assert "another sweep" in second.stderr
    assert "Traceback" not in second.stderr
    assert _outputs(out) == _outputs(reference), "the refused run touched nothing"


def test_the_lock_is_held_by_the_report_too(tmp_path: Path) -> None:
    out = tmp_path / "locked"
    out.mkdir()
    with report.output_lock(out):
        assert sweep.main([*FAST, "--out", str(out)]) == sweep.EXIT_BUSY
        with pytest.raises(report.OutputBusyError, match="another sweep"), report.output_lock(out):
            pass
    assert list(out.iterdir()) == [], "nothing written, no lock file left"


@contextlib.contextmanager
def _read_only(path: Path) -> Any:
    """Make a directory unwritable, also for root (immutable attribute) where possible."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(path)], check=False).returncode:
        pytest.skip("running as root without chattr +i: cannot make a directory read-only")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


@pytest.mark.parametrize("where", [".", "figures"])
def test_a_read_only_output_is_refused_before_any_computation(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ro"
    (out / "figures").mkdir(parents=True)
    (out / "errors.csv").write_text("the previous run's\n")
    before = _outputs(out)
    computed: list[str] = []
    monkeypatch.setattr(sweep, "compute_unit", lambda unit: computed.append(unit.key))
    with _read_only(out / where):
        code = sweep.main([*FAST, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == sweep.EXIT_NOT_WRITABLE, err
    assert str((out / where).resolve()) in str(Path(err.split(": ")[2]).resolve()), err
    assert computed == []
    assert _outputs(out) == before
    assert not (out / sweep.PARTIAL_DIR).exists()


@pytest.mark.parametrize(
    "damage",
    ["emptied", "truncated", "last row changed", "rows of another unit", "not text"],
)
def test_a_damaged_unit_file_is_detected_and_recomputed(
    damage: str, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    units = sweep.build_grid("tiny", precisions=[vs.Precision("float32")], layers=())
    out = tmp_path / "damaged"
    sweep.run(units, out, progress=False, finalize=False)  # a run that died before the end
    partial = out / sweep.PARTIAL_DIR
    victim, other = partial / f"{units[1].key}.csv", partial / f"{units[2].key}.csv"
    text = victim.read_bytes()
    victim.write_bytes(
        {
            "emptied": b"",
            "truncated": text[: len(text) // 2],
            "last row changed": text[:-3] + b"9" + text[-2:],
            "rows of another unit": other.read_bytes(),
            "not text": b"\xff\xfe" + text,
        }[damage]
    )
    computed: list[str] = []
    real = sweep.compute_unit

    def counting(unit: sweep.Unit) -> list[dict[str, Any]]:
        computed.append(unit.key)
        return real(unit)

    monkeypatch.setattr(sweep, "compute_unit", counting)
    stats = sweep.run(units, out, progress=False, resume=True)
    assert computed == [units[1].key]
    assert stats.invalid == 1
    assert _outputs(out) == _outputs(reference)


def test_jobs_are_capped_at_the_tasks_and_warned_above_the_cores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    units = sweep.build_grid("tiny", precisions=[vs.Precision("float64")], layers=())[:2]
    stats = sweep.run(units, tmp_path / "capped", jobs=1000, progress=False, report=False)
    assert stats.jobs == 2
    cores = os.cpu_count() or 1
    argv = [*FAST, "--algorithms", "naive", "--jobs", str(cores + 1)]
    assert sweep.main([*argv, "--out", str(tmp_path / "warned")]) == 0
    assert f"warning: --jobs {cores + 1} is more than the {cores} cores" in capsys.readouterr().err


def test_a_filtered_run_does_not_replace_results_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for argv in (FAST, ["--grid", "quick"], ["--precisions", "float16:float64"], ["--seed", "1"]):
        with pytest.raises(SystemExit) as exc:
            sweep.main(argv)
        assert exc.value.code == 2
        assert "--out" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
    assert sweep.main([*FAST, "--algorithms", "naive", "--force"]) == 0
    assert (tmp_path / "results" / "errors.csv").is_file()


def test_help_describes_every_grid_with_its_time() -> None:
    text = " ".join(sweep.make_parser().format_help().split())
    for grid in sweep.GRIDS:
        duration, purpose = sweep.GRID_HELP[grid]
        assert f"{grid} ({duration}): {purpose}" in text
        assert re.search(r"\d+ (s|min)$|seconds$", duration), grid


def test_scheduler_gives_the_same_bytes_as_jobs(reference: Path, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "cluster"
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        argv = [*FAST, "--scheduler", cluster.scheduler_address, "--out", str(out)]
        assert sweep.main(argv) == 0
    assert _outputs(out) == _outputs(reference)


# ----------------------------------------------------------------------------- numbers


def test_written_numbers_do_not_come_from_libm(monkeypatch: pytest.MonkeyPatch) -> None:
    # libm's log10/log2/hypot (and NumPy's SIMD ones) differ in the last bit between
    # builds; no derived column may pass through them
    def guard(module: Any, name: str) -> None:
        real = getattr(module, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller == "varstats.oracle":  # exponents of powers of two: exact anywhere
                return real(*args, **kwargs)
            raise AssertionError(f"{caller} called {module.__name__}.{name}")

        monkeypatch.setattr(module, name, call)

    units = sweep.build_grid("tiny", layers=("layer_norm",))
    picked = [next(u for u in units if u.kind == kind) for kind in ("var", "public", "layer")]
    for name in ("log10", "log2", "log", "hypot", "log1p", "exp", "power"):
        guard(np, name)
    for name in ("log10", "log2", "log", "hypot", "pow", "exp"):
        guard(math, name)
    for unit in picked:
        assert sweep.unit_text(unit)


def test_the_written_lre_is_within_a_few_ulps_of_the_true_log() -> None:
    mpmath = pytest.importorskip("mpmath")
    rng = np.random.default_rng(0)
    rel = np.concatenate(
        [10.0 ** rng.uniform(-17, 0, 2000), 2.0 ** -np.arange(1, 60), [np.finfo(np.float64).tiny]]
    )
    got = vs.metrics.correct_digits(rel, "float64")
    with mpmath.workdps(40):
        true = [min(vs.finfo("float64").digits, float(-mpmath.log10(mpmath.mpf(r)))) for r in rel]
    assert np.all(np.abs(got - true) <= 4 * np.spacing(np.abs(true))), "4 ulps of log10"


def test_a_norm_layer_row_matches_the_layer_and_the_exact_output() -> None:
    # the layer part of the sweep, checked against norms and the exact oracle directly
    units = sweep.build_grid("tiny", precisions=[vs.Precision("float32")], layers=("layer_norm",))
    unit = next(u for u in units if u.kind == "layer")
    rows = sweep.compute_unit(unit)
    assert {r["convention"] for r in rows} == set(vs.conventions.CONVENTIONS)
    assert len(rows) == len(unit.conventions) * len(unit.offsets)
    shape = tuple(int(s) for s in unit.case.split("x"))
    for r in rows[:: max(1, len(rows) // 6)]:
        x = vs.cases.generate(
            unit.n, storage="float32", offset=r["offset"], scale=1.0, seed=r["seed"]
        ).reshape(shape)
        y = vs.norms.layer_norm(x, shape[1:], eps=sweep.LAYER_EPS, convention=r["convention"])
        y64 = np.asarray(y).astype(np.float64).reshape(-1)
        exact = vs.oracle.exact_normalize(x, axis=(1, 2, 3), eps=sweep.LAYER_EPS).reshape(-1)
        err = np.abs(y64 - exact) / math.sqrt(float(np.mean(exact**2)))
        assert r["value"] == y64[r["row"]]
        assert r["exact"] == exact[r["row"]]
        assert r["rel_err"] == err.max()
        assert r["lre"] == vs.metrics.correct_digits(err.max(), "float32")
        assert r["rows"] == unit.n


def test_an_unusable_scheduler_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("distributed")
    argv = [*FAST, "--scheduler", "nonsense://nowhere", "--out", str(tmp_path / "out")]
    assert sweep.main(argv) == sweep.EXIT_UNAVAILABLE
    assert "cannot reach nonsense://nowhere" in capsys.readouterr().err


def test_the_report_replaces_stale_figures_and_leaves_no_temporary(
    reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "stale"
    shutil.copytree(reference, out)
    (out / "figures" / "layer_gone.png").write_bytes(b"a figure of an earlier grid")
    (out / "figures" / ".error_vs_n_x.123.tmp.png").write_bytes(b"half a figure")
    (out / "summary.md").write_text("")  # what a kill mid-write used to leave
    assert report.main([str(out)]) == 0
    assert _outputs(out) == _outputs(reference)


def test_the_report_refuses_a_directory_another_writer_holds(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "held"
    shutil.copytree(reference, out)
    with report.output_lock(out):
        assert report.main([str(out)]) == report.EXIT_BUSY
    assert "another sweep or report" in capsys.readouterr().err
    assert _outputs(out) == _outputs(reference)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_kill_at_a_random_instant_then_resume_gives_the_same_bytes(
    seed: int, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "random"
    proc = _start([*FAST, "--jobs", "2"], out)
    time.sleep(random.Random(seed).uniform(0.5, 8.0))  # start-up, units or report
    proc.kill()
    proc.wait()
    assert sweep.main([*FAST, "--jobs", "1", "--out", str(out), "--resume"]) == 0
    assert _outputs(out) == _outputs(reference)


def test_an_output_that_cannot_be_created_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert sweep.main([*FAST, "--out", str(blocker / "out")]) == sweep.EXIT_NOT_WRITABLE
    assert "cannot create it" in capsys.readouterr().err


def test_unknown_algorithm_lists_each_name_once(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        sweep.main(["--algorithms", "bogus", "--out", "unused"])
    assert info.value.code == 2
    listed = capsys.readouterr().err.split("expected some of ")[1].strip().split(", ")
    assert len(listed) == len(set(listed)), listed
    assert "naive/seq" in listed and "two_pass" in listed  # noqa: PT018


def test_the_report_keeps_figures_it_does_not_own(reference: Path, tmp_path: Path) -> None:
    # results/figures/ also holds the batch-size experiment's figure
    out = tmp_path / "shared_figures"
    shutil.copytree(reference, out)
    other = out / "figures" / "batch_size.png"
    other.write_bytes(b"another module's figure")
    assert report.main([str(out)]) == 0
    assert other.read_bytes() == b"another module's figure"


def test_load_or_sweep_reads_the_committed_results_and_names_no_machine_path() -> None:
    frame, shown = sweep.load_or_sweep()
    assert shown == "results/errors.csv"
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) > 0


def test_load_or_sweep_sweeps_a_small_grid_where_results_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "results_dir", lambda: tmp_path / "results")
    monkeypatch.setattr(sweep.tempfile, "gettempdir", lambda: str(tmp_path))
    frame, shown = sweep.load_or_sweep(quick=True)
    assert shown == "a tiny sweep in a temporary directory"
    assert (tmp_path / "varstats-sweep-tiny" / "errors.csv").is_file()
    assert len(frame) > 0
