"""Speed of every variance algorithm as a ratio to ``np.var`` on the same array.

Run: ``python benchmarks/bench_algorithms.py``. Both timings come from this run: each
ratio is the median over rounds of time / np.var time, np.var timed in the same round,
so the ratios do not depend on the machine's speed. Every configuration runs
``--repeat`` rounds, or fewer once it has used ``--budget`` seconds (at least one); the
time in parentheses is the best round.

Targets (issue 3): two_pass and pairwise <= 2x np.var; welford and chan <= 10x.
Issue 15: the recommended ``dot2`` configuration <= 1.5x (about 14x in pure NumPy: about
50 operations per element; with the ``jit`` extra (numba) its two passes run compiled and
vectorized, about 1.1-1.2x in float32 and 1.35-1.6x in float64 at n = 10^6); the default two_pass
<= 1x at n = 10^6. ``python -m benchmarks`` measures these targets together.
Welford's default is the classic one-lane recurrence: without numba, on a 1-D array
that is a Python-level loop of n steps, so the table also lists ``welford(lanes=1024)``,
the vectorized form frameworks use. With numba it runs compiled, with the same bits, as
do the lane sums of the pairwise summation (two_pass, naive, shifted in float32 and
float64). ``--no-jit`` times the NumPy paths alone (what numba buys); ``--clock cpu``
counts this process's CPU time instead of wall time (a shared machine).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

import varstats as vs

# (label, algorithm, options); sequential variants are listed for the study's cost
CONFIGS: list[tuple[str, str, dict[str, Any]]] = [
    *((name, name, {}) for name in vs.ALGORITHMS),
    ("welford(lanes=1024)", "welford", {"lanes": 1024}),
    ("two_pass(sequential)", "two_pass", {"summation": "sequential"}),
    ("compensated(sequential)", "compensated", {"summation": "sequential"}),
    ("dot2 (recommended)", "dot2", {}),
]
TARGETS = {
    "two_pass": 2.0,
    "pairwise": 2.0,
    "welford": 10.0,
    "chan": 10.0,
    "dot2 (recommended)": 1.5,
}


CLOCK: Callable[[], float] = time.perf_counter


def timed(fn: Callable[[], Any]) -> float:
    t0 = CLOCK()
    fn()
    return CLOCK() - t0


@contextlib.contextmanager
def no_jit() -> Iterator[None]:
    """Every compiled twin switched off (each module's ``_USE_JIT``): the NumPy paths."""
    modules = [m for name, m in sys.modules.items() if name.startswith("varstats.")]
    switched = [m for m in modules if getattr(m, "_USE_JIT", False) is True]
    for m in switched:
        m._USE_JIT = False
    try:
        yield
    finally:
        for m in switched:
            m._USE_JIT = True


def ratio_to_np_var(
    fn: Callable[[], Any], baseline: Callable[[], Any], repeat: int, budget: float = 20.0
) -> tuple[float, float, float]:
    """Median of per-round ratios, with np.var timed right before the algorithm each round.

    Interleaving matters here: np.var's own time on this machine moves by 2x between
    runs (allocation and page faults), so separate best-of-N times give unstable ratios.
    Returns (median ratio, best algorithm time, best np.var time).
    """
    ratios, ours, theirs = [], [], []
    start = time.perf_counter()
    for _ in range(repeat):
        theirs.append(timed(baseline))
        ours.append(timed(fn))
        ratios.append(ours[-1] / theirs[-1])
        if time.perf_counter() - start > budget:
            break
    return float(np.median(ratios)), min(ours), min(theirs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per configuration")
    parser.add_argument("--skip-slow", action="store_true", help="skip one-lane Welford on 1-D")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--no-jit", action="store_true", help="the NumPy paths only (no numba)")
    args = parser.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    with no_jit() if args.no_jit else contextlib.nullcontext():
        rng = np.random.default_rng(0)
        cases = {
            "1-D n=10^6 float64": (rng.normal(size=10**6), None),
            "(1024, 4096) float32, axis=-1": (rng.normal(size=(1024, 4096)).astype(np.float32), -1),
        }
        print("median over rounds of time / np.var time, np.var timed in the same round")
        print(f"{'algorithm':24s}" + "".join(f"{c:>34s}" for c in cases))
        for label, algorithm, options in CONFIGS:
            row = f"{label:24s}"
            for x, axis in cases.values():
                if args.skip_slow and label == "welford" and axis is None:
                    row += f"{'skipped':>34s}"
                    continue
                ratio, t, _ = ratio_to_np_var(
                    lambda x=x, a=axis, alg=algorithm, o=options: vs.var(
                        x, axis=a, algorithm=alg, **o
                    ),
                    lambda x=x, a=axis: np.var(x, axis=a),
                    args.repeat,
                    args.budget,
                )
                target = TARGETS.get(label)
                mark = "" if target is None else (" ok" if ratio <= target else " MISS")
                row += f"{f'{ratio:.2f}x ({t:.3f}s){mark}':>34s}"
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
