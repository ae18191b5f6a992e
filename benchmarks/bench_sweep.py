"""Wall time of the study's grids, as the CLI runs them.

Run: ``python benchmarks/bench_sweep.py [--grids quick,standard] [--jobs 2]``.
Each grid runs ``python -m varstats.sweep --grid G --jobs J --out TMP`` in a fresh
process (worker start-up, the oracle, every kernel, the report and its figures
included) into a temporary directory, and the wall time is printed next to its target.

Targets (issue 6), with ``--jobs 2`` on a 2-core machine: quick <= 60 s,
standard <= 10 min.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"tiny": 30.0, "quick": 60.0, "standard": 600.0, "full": float("inf")}


def run_grid(grid: str, jobs: int) -> tuple[float, int]:
    """Wall seconds and the number of errors.csv rows of one sweep."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "varstats.sweep",
            "--grid",
            grid,
            "--jobs",
            str(jobs),
            "--out",
            tmp,
            "--no-progress",
        ]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - t0
        rows = (Path(tmp) / "errors.csv").read_text().count("\n") - 1
    return seconds, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", default="quick,standard")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    print(f"{'grid':<10} {'jobs':>4} {'rows':>8} {'wall s':>8} {'target s':>9}  ok")
    ok = True
    for grid in args.grids.split(","):
        seconds, rows = run_grid(grid, args.jobs)
        target = TARGETS[grid]
        ok &= seconds <= target
        print(
            f"{grid:<10} {args.jobs:>4} {rows:>8} {seconds:>8.1f} {target:>9.0f}  "
            f"{'yes' if seconds <= target else 'NO'}",
            flush=True,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
