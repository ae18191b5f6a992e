"""The benchmark runner's report (structure, no machine paths) and ``varstats.__version__``.

No timing is asserted here: speed targets live in ``benchmarks/`` and are measured there.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path

import pytest

import varstats as vs
from benchmarks import run
from varstats import jit

ROOT = Path(__file__).resolve().parents[1]


def test_version_is_the_one_in_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert vs.__version__ == project["version"]


def _rows() -> list[run.Row]:
    return [
        run.Row("fast thing", "np.var", 0.5, "x", 1.0),
        run.Row("slow thing", "np.var", 12.0, "x", 10.0, "measured at n = 10^5"),
        run.Row("memory", "input size", 1.08, "x input", None),
        run.Row("missing", "torch", math.nan, "x", 5.0),
    ]


def test_rows_say_whether_the_goal_is_met() -> None:
    assert [r.met for r in _rows()] == ["yes", "NO", "", ""]
    assert _rows()[1].cells()[0] == "slow thing (measured at n = 10^5)"


def test_report_has_the_fixed_structure_and_no_machine_path() -> None:
    settings = run.Settings(rounds=3, budget=1.0, full=False)
    text = run.report(_rows(), run.context((9.0, 8.0, 7.0), (1.0, 1.0, 1.0), settings))
    assert text.startswith("# Benchmarks\n")
    assert "| what | baseline | measured | goal | met |" in text
    assert text.count("\n| ") == 1 + len(_rows())  # header and one line per row
    assert "Load average (1, 5, 15 min) before: 9.00, 8.00, 7.00" in text
    assert "The machine was shared" in text  # load 9 on any machine with < 18 cores
    assert f"varstats {vs.__version__}" in text
    assert str(ROOT) not in text
    assert not re.search(r"(^|\s)/(home|tmp|work|usr|opt)/", text)


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_the_runner_writes_its_report(tmp_path: Path, clock: str) -> None:
    out = tmp_path / "benchmarks.md"
    args = ["--only", "default", "--rounds", "1", "--budget", "1", "--clock", clock]
    assert run.main([*args, "--out", str(out)]) == 0
    text = out.read_text()
    # three goal rows, and two without numba where the jit extra is installed
    without = 2 if jit.numba_module() is not None else 0
    assert text.count("default `vs.var(x)`") == 3 + without
    assert text.count("without numba (NumPy path)") == without
    said = "process's CPU time (`--clock cpu`)." if clock == "cpu" else "on the wall clock."
    assert said in text


def test_unknown_sections_are_rejected() -> None:
    with pytest.raises(SystemExit):
        run.main(["--only", "nonsense", "--no-write"])


@pytest.mark.skipif(not (ROOT / "results" / "benchmarks.md").exists(), reason="not generated")
def test_committed_report_holds_no_machine_path() -> None:
    text = (ROOT / "results" / "benchmarks.md").read_text()
    assert text.startswith("# Benchmarks\n")
    assert not re.search(r"(^|\s)/(home|tmp|work|usr|opt)/", text)


def test_the_sweep_rows_run_the_quick_grid() -> None:
    # the runner calls bench_sweep.run_grid: a signature change there must fail here,
    # not in the middle of `python -m benchmarks`
    rows = list(run.sweep_rows(run.Settings(rounds=1, budget=1.0, full=False)))
    assert [r.what for r in rows] == [
        "quick sweep, `--jobs 2`",
        "quick sweep, `--jobs 1` / `--jobs 2`",
    ]
    assert all(r.value > 0 for r in rows)
