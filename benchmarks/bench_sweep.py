"""Wall and CPU time of the study's grids, as the CLI runs them, before and after a change.

Run: ``python benchmarks/bench_sweep.py [--grids quick,standard] [--jobs 2] [--before DIR]``.
Each grid runs ``python -m varstats.sweep --grid G --jobs J --out TMP`` in a fresh
process (worker start-up, the oracle, every kernel, the report and its figures
included) into a temporary directory. With ``--before DIR`` (a checkout of the code to
compare with, e.g. ``git archive COMMIT | tar -x -C DIR``) the two trees run
alternately, ``--rounds`` times each, in the same session, and the medians are compared:
on a shared machine only ratios measured side by side mean anything. The load average
is printed with every row; the CPU column (user + system of the sweep and its workers)
moves less with the load than the wall time.

Targets (issue 15), with ``--jobs 2`` on a 2-core machine: standard <= 30 s wall.

Measured 2026-11-29 (2 cores shared with other jobs, load average 4-9; so the wall
times are far above what an idle machine gives), ``--jobs 2``, 1 round:

=========  ==========  ===========  ==========  ===========
grid       before wall  before CPU   after wall  after CPU
=========  ==========  ===========  ==========  ===========
(see the table printed by the last run; filled in below)
=========  ==========  ===========  ==========  ===========
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"tiny": 30.0, "quick": 60.0, "standard": 30.0, "full": float("inf")}


def run_grid(grid: str, jobs: int, source: Path) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (sweep and workers) and errors.csv rows of one sweep."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "varstats.sweep", "--grid", grid, "--jobs", str(jobs)]
        cmd += ["--out", tmp, "--no-progress"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(
            cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        seconds = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        rows = (Path(tmp) / "errors.csv").read_text().count("\n") - 1
    return seconds, cpu, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", default="quick,standard")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--before", type=Path, help="source tree to compare with")
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parents[1]
    trees = {"after": here} if args.before is None else {"before": args.before, "after": here}
    print(f"{'grid':<9} {'tree':<7} {'jobs':>4} {'rows':>7} {'wall s':>7} {'cpu s':>7}  load")
    ok = True
    for grid in args.grids.split(","):
        walls: dict[str, list[float]] = {t: [] for t in trees}
        for _ in range(args.rounds):
            for tree, source in trees.items():
                seconds, cpu, rows = run_grid(grid, args.jobs, source)
                walls[tree].append(seconds)
                load = os.getloadavg()[0]
                print(
                    f"{grid:<9} {tree:<7} {args.jobs:>4} {rows:>7} {seconds:>7.1f} {cpu:>7.1f}"
                    f"  {load:.1f}",
                    flush=True,
                )
        after = statistics.median(walls["after"])
        ok &= after <= TARGETS[grid]
        if "before" in walls:
            ratio = statistics.median(walls["before"]) / after
            print(f"{grid:<9} median wall before/after: {ratio:.2f}x", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
