"""Speed of every variance algorithm as a ratio to ``np.var`` on the same array.

Run: ``python benchmarks/bench_algorithms.py``. Both timings come from this run
(best of several repeats), so the ratios do not depend on the machine's speed.

Targets (issue 3): two_pass and pairwise <= 2x np.var; welford and chan <= 10x.
Welford's default is the classic one-lane recurrence: on a 1-D array that is a
Python-level loop of n steps, so the table also lists ``welford(lanes=1024)``,
the vectorized form frameworks use.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import varstats as vs

# (label, algorithm, options); sequential variants are listed for the study's cost
CONFIGS: list[tuple[str, str, dict[str, Any]]] = [
    *((name, name, {}) for name in vs.ALGORITHMS),
    ("welford(lanes=1024)", "welford", {"lanes": 1024}),
    ("two_pass(sequential)", "two_pass", {"summation": "sequential"}),
]
TARGETS = {"two_pass": 2.0, "pairwise": 2.0, "welford": 10.0, "chan": 10.0}


def best_time(fn: Callable[[], Any], repeat: int, budget: float = 20.0) -> float:
    best = float("inf")
    start = time.perf_counter()
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() - start > budget:
            break
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--skip-slow", action="store_true", help="skip one-lane Welford on 1-D")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    cases = {
        "1-D n=10^6 float64": (rng.normal(size=10**6), None),
        "(1024, 4096) float32, axis=-1": (rng.normal(size=(1024, 4096)).astype(np.float32), -1),
    }
    print(f"{'algorithm':24s}" + "".join(f"{c:>34s}" for c in cases))
    base = {
        c: best_time(lambda x=x, a=a: np.var(x, axis=a), args.repeat) for c, (x, a) in cases.items()
    }
    print(f"{'np.var (s)':24s}" + "".join(f"{base[c]:>34.4f}" for c in cases))
    for label, algorithm, options in CONFIGS:
        row = f"{label:24s}"
        for c, (x, axis) in cases.items():
            if args.skip_slow and label == "welford" and axis is None:
                row += f"{'skipped':>34s}"
                continue
            t = best_time(
                lambda x=x, a=axis, alg=algorithm, o=options: vs.var(x, axis=a, algorithm=alg, **o),
                1 if label in ("welford", "compensated") and axis is None else args.repeat,
            )
            target = TARGETS.get(label)
            mark = "" if target is None else (" ok" if t / base[c] <= target else " MISS")
            row += f"{f'{t / base[c]:.2f}x ({t:.3f}s){mark}':>34s}"
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
