"""Every speed and memory target of issue 15 in one table: ``python -m benchmarks``.

Each row is measured in this run, never copied from elsewhere:

- a **time ratio** is the median over rounds of ``time / baseline time``, the baseline
  (``np.var``, ``torch.nn.functional`` with one thread, or the other ``--jobs``) timed
  right before the measured call in the same round
  (:func:`bench_algorithms.ratio_to_np_var`), so a slow or shared machine moves both;
  ``--clock cpu`` times the same rounds on the process's CPU clock instead, which a
  machine shared with other jobs disturbs far less;
- a **memory ratio** is the peak of traced allocations (``tracemalloc``) during one call,
  divided by the input's size: ``1.0x input`` is one input-sized temporary.

The machine's load average is printed before and after; the table and the context are
written to ``results/benchmarks.md`` (``--out``; ``--no-write`` only prints). Its
structure is fixed, its numbers are this run's. Rows whose call would take longer than
``--budget`` seconds at the stated size are measured on a smaller input, and say so.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import varstats as vs
from benchmarks.bench_algorithms import no_jit, ratio_to_np_var
from benchmarks.bench_sweep import run_grid
from varstats import jit, norms, oracle


@dataclass(frozen=True)
class Row:
    """One line of the table: a measured value against the issue's goal."""

    what: str
    baseline: str
    value: float
    unit: str  # "x" (time ratio), "x input" (memory ratio) or "s"
    goal: float | None  # upper bound in the same unit; None: reported, no target
    note: str = ""

    @property
    def met(self) -> str:
        if self.goal is None or math.isnan(self.value):
            return ""
        return "yes" if self.value <= self.goal else "NO"

    def cells(self) -> list[str]:
        value = "n/a" if math.isnan(self.value) else f"{self.value:.3g}{self.unit}"
        goal = "" if self.goal is None else f"<= {self.goal:g}{self.unit}"
        what = f"{self.what} ({self.note})" if self.note else self.what
        return [what, self.baseline, value, goal, self.met]


@dataclass(frozen=True)
class Settings:
    rounds: int  # rounds per time ratio (fewer if the budget runs out)
    budget: float  # seconds a single measured call may take at the stated size
    full: bool  # also the standard sweep grid (minutes)
    clock: str = "wall"  # "wall" (perf_counter) or "cpu" (this process's CPU time)


def _ratio(fn: Callable[[], Any], baseline: Callable[[], Any], s: Settings) -> float:
    # at least one round; more while the budget for this row lasts
    if s.clock == "wall":
        ratio, _, _ = ratio_to_np_var(fn, baseline, s.rounds, budget=s.budget)
        return ratio
    # the same rounds on the process's CPU clock: on a shared machine, time spent waiting
    # for a core is not counted against either side
    ratios = []
    start = time.perf_counter()
    for _ in range(s.rounds):
        t0 = time.process_time()
        baseline()
        t1 = time.process_time()
        fn()
        t2 = time.process_time()
        ratios.append((t2 - t1) / max(t1 - t0, 1e-9))
        if time.perf_counter() - start > s.budget:
            break
    return float(np.median(ratios))


def _peak(fn: Callable[[], Any], nbytes: int) -> float:
    """Peak of traced allocations during ``fn()``, in units of ``nbytes``."""
    tracemalloc.start()
    try:
        fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak / nbytes


def _affordable(fn: Callable[[int], Any], n: int, budget: float, smallest: int = 10**4) -> int:
    """The largest of n, n/10, ... whose single call, extrapolated from ``smallest``, fits."""
    calls = []
    for _ in range(3):  # the fastest of three: a load spike must not shrink the input
        t0 = time.perf_counter()
        fn(smallest)
        calls.append(time.perf_counter() - t0)
    per_element = min(calls) / smallest
    while n > smallest and per_element * n > budget:
        n //= 10
    return n


def _quiet_var(x: Any) -> Any:
    with np.errstate(over="ignore", invalid="ignore"):  # random bit patterns overflow
        return np.var(x)


def _size(n: int) -> str:
    return f"10^{round(math.log10(n))}" if n == 10 ** round(math.log10(n)) else str(n)


# ---------------------------------------------------------------------------------------
# the rows of issue 15
# ---------------------------------------------------------------------------------------


def recommended_rows(s: Settings) -> Iterator[Row]:
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        x = rng.standard_normal(10**6).astype(dtype)
        name = np.dtype(dtype).name
        yield Row(
            f"`vs.var(x, **vs.RECOMMENDED)`, n = 10^6 {name}",
            "np.var",
            _ratio(lambda x=x: vs.var(x, **vs.RECOMMENDED), lambda x=x: np.var(x), s),
            "x",
            1.5,
        )
        if jit.numba_module() is not None:
            with no_jit():
                ratio = _ratio(lambda x=x: vs.var(x, **vs.RECOMMENDED), lambda x=x: np.var(x), s)
            yield Row(
                f"`vs.var(x, **vs.RECOMMENDED)`, n = 10^6 {name}, without numba (NumPy path)",
                "np.var",
                ratio,
                "x",
                None,
            )
        yield Row(
            f"`vs.var(x, **vs.RECOMMENDED)`, n = 10^6 {name}, peak memory",
            "input size",
            _peak(lambda x=x: vs.var(x, **vs.RECOMMENDED), x.nbytes),
            "x input",
            0.2,
            "extra memory",
        )


def default_rows(s: Settings) -> Iterator[Row]:
    rng = np.random.default_rng(1)
    for n, goal in ((10**6, 1.0), (10**7, 0.7), (10**4, 3.0)):
        x = rng.standard_normal(n)
        yield Row(
            f"default `vs.var(x)`, n = {_size(n)}",
            "np.var",
            _ratio(lambda x=x: vs.var(x), lambda x=x: np.var(x), s),
            "x",
            goal,
        )
    if jit.numba_module() is not None:
        # what a user without the jit extra gets (informational: the goals assume it)
        for n in (10**6, 10**4):
            x = rng.standard_normal(n)
            with no_jit():
                ratio = _ratio(lambda x=x: vs.var(x), lambda x=x: np.var(x), s)
            yield Row(
                f"default `vs.var(x)`, n = {_size(n)}, without numba (NumPy path)",
                "np.var",
                ratio,
                "x",
                None,
            )
    x = rng.standard_normal(10**6)
    yield Row(
        "`x.sum()`, n = 10^6 (the floor of any variance)",
        "np.var",
        _ratio(lambda: x.sum(), lambda: np.var(x), s),
        "x",
        None,
    )


def sequential_rows(s: Settings) -> Iterator[Row]:
    rng = np.random.default_rng(2)
    configs = [
        ('`algorithm="welford"`, 1-D', {"algorithm": "welford"}, 10.0),
        (
            '`algorithm="compensated", summation="sequential"`, 1-D',
            {"algorithm": "compensated", "summation": "sequential"},
            None,
        ),
    ]
    for label, options, goal in configs:
        n = _affordable(lambda m, o=options: vs.var(rng.standard_normal(m), **o), 10**6, s.budget)
        x = rng.standard_normal(n)
        note = "" if n == 10**6 else f"measured at n = {_size(n)}: 10^6 exceeds the budget"
        yield Row(
            f"{label}, n = 10^6",
            "np.var",
            _ratio(lambda x=x, o=options: vs.var(x, **o), lambda x=x: np.var(x), s),
            "x",
            goal,
            note,
        )


def oracle_rows(s: Settings) -> Iterator[Row]:
    rng = np.random.default_rng(3)
    normal = rng.standard_normal(10**6)
    bits = rng.integers(0, 2**64, size=10**6, dtype=np.uint64, endpoint=False).view(np.float64)
    bits = np.where(np.isfinite(bits), bits, 0.0)  # uniform bit patterns: every binade
    cases = [
        ("N(0,1) float64", normal, 10.0),
        ("narrow exponents (1e4 + N(0,1)) float64", normal + 1e4, 10.0),
        ("N(0,1) float32", normal.astype(np.float32), 10.0),
        ("N(0,1) float16", normal.astype(np.float16), 10.0),
        ("random bit patterns (all 2046 binades) float64", bits, 10.0),
    ]
    for label, x, goal in cases:
        # np.var of float16 data is itself slow; the float64 copy is the same values
        wide = x.astype(np.float64)
        yield Row(
            f"`oracle.exact_var`, {label}, n = 10^6",
            "np.var of the float64 values",
            _ratio(lambda x=x: oracle.exact_var(x), lambda w=wide: _quiet_var(w), s),
            "x",
            goal,
        )
    x = normal[: 10**5]
    yield Row(
        "`oracle.exact_var`, N(0,1) float64, n = 10^5",
        'method="reference" (Fraction)',
        _ratio(lambda: oracle.exact_var(x), lambda: oracle.exact_var(x, method="reference"), s),
        "x",
        None,
    )


def norm_rows(s: Settings) -> Iterator[Row]:
    try:
        import torch
        import torch.nn.functional as tf
    except ImportError:  # the torch extra is not installed
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(4)
        x = rng.standard_normal((16, 32, 28, 28)).astype(np.float32)
        t = torch.from_numpy(x)
        zeros, ones = np.zeros(32, np.float32), np.ones(32, np.float32)
        cases: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
            (
                "batch_norm (training)",
                lambda: norms.batch_norm(x, zeros.copy(), ones.copy(), training=True).y,
                lambda: tf.batch_norm(
                    t, torch.zeros(32), torch.ones(32), training=True, momentum=0.1, eps=1e-5
                ),
            ),
            (
                "layer_norm over (C, H, W)",
                lambda: norms.layer_norm(x, (32, 28, 28)),
                lambda: tf.layer_norm(t, (32, 28, 28)),
            ),
            (
                "layer_norm over W",
                lambda: norms.layer_norm(x, 28),
                lambda: tf.layer_norm(t, (28,)),
            ),
            ("group_norm, 8 groups", lambda: norms.group_norm(x, 8), lambda: tf.group_norm(t, 8)),
        ]
        for label, ours, theirs in cases:
            same = np.array_equal(np.asarray(ours()), theirs().numpy())
            yield Row(
                f"`norms.{label}`, pytorch preset, (16, 32, 28, 28) float32",
                "torch.nn.functional, 1 thread",
                _ratio(ours, theirs, s),
                "x",
                5.0,
                "bit-identical" if same else "NOT bit-identical",
            )
    finally:
        torch.set_num_threads(threads)


def half_precision_rows(s: Settings) -> Iterator[Row]:
    import ml_dtypes

    rng = np.random.default_rng(5)
    x = rng.standard_normal(10**6)
    for storage, precision in (
        (np.float16, "float16:float16"),
        (np.float16, "float16:float32"),
        (ml_dtypes.bfloat16, "bfloat16:float32"),
    ):
        stored = x.astype(storage)
        wide = stored.astype(np.float64)  # the same values
        yield Row(
            f'`vs.var(x, precision="{precision}")`, n = 10^6',
            "np.var of the same values in float64",
            _ratio(
                lambda st=stored, p=precision: vs.var(st, precision=p),
                lambda w=wide: np.var(w),
                s,
            ),
            "x",
            3.0,
        )


def sweep_rows(s: Settings) -> Iterator[Row]:
    for grid, goal in (("quick", None), ("standard", 30.0)):
        if grid == "standard" and not s.full:
            continue
        # the checkout this file belongs to, whatever the working directory
        source = Path(__file__).resolve().parents[1]
        serial, _, _ = run_grid(grid, 1, source)
        parallel, _, _ = run_grid(grid, 2, source)
        yield Row(f"{grid} sweep, `--jobs 2`", "wall time", parallel, " s", goal)
        yield Row(
            f"{grid} sweep, `--jobs 1` / `--jobs 2`", "speed-up", serial / parallel, "x", None
        )


def memory_rows(s: Settings) -> Iterator[Row]:
    # the goal is np.var's own single input-sized temporary, with 10% for small buffers
    rng = np.random.default_rng(6)
    n_goal = 10**7
    x = rng.standard_normal(n_goal)
    yield Row(
        "`np.var(x)`, n = 10^7 float64, peak memory",
        "input size",
        _peak(lambda: np.var(x), x.nbytes),
        "x input",
        None,
        "the reference: one temporary",
    )
    del x
    for algorithm in vs.ALGORITHMS:
        for fn in (vs.var, vs.mean_var):
            # tracemalloc slows a Python-level loop several times: a fifth of the budget
            n = _affordable(
                lambda m, f=fn, a=algorithm: f(rng.standard_normal(m), algorithm=a),
                n_goal,
                s.budget / 5,
            )
            x = rng.standard_normal(n)
            note = "" if n == n_goal else f"measured at n = {_size(n)}: 10^7 exceeds the budget"
            yield Row(
                f'`vs.{fn.__name__}(x, algorithm="{algorithm}")`, n = 10^7 float64, peak memory',
                "input size",
                _peak(lambda x=x, f=fn, a=algorithm: f(x, algorithm=a), x.nbytes),
                "x input",
                1.1,
                note,
            )


SECTIONS: dict[str, Callable[[Settings], Iterator[Row]]] = {
    "recommended": recommended_rows,
    "default": default_rows,
    "sequential": sequential_rows,
    "oracle": oracle_rows,
    "norms": norm_rows,
    "half": half_precision_rows,
    "sweep": sweep_rows,
    "memory": memory_rows,
}


# ---------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------

HEADER = ["what", "baseline", "measured", "goal", "met"]


def table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def context(load_before: tuple[float, ...], load_after: tuple[float, ...], s: Settings) -> str:
    import importlib.metadata

    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = "not installed"
    try:
        numba_version = importlib.metadata.version("numba")
    except importlib.metadata.PackageNotFoundError:
        numba_version = "not installed"
    cores = os.cpu_count() or 1
    shared = max(load_before[0], load_after[0]) > 0.5 * cores
    lines = [
        f"varstats {vs.__version__}, numpy {np.__version__}, torch {torch_version}, "
        f"numba {numba_version} (the `jit` extra), "
        f"Python {platform.python_version()}, {cores} cores, {s.rounds} rounds per ratio, "
        f"{s.budget:g} s budget per call, time ratios on the "
        + ("wall clock." if s.clock == "wall" else "process's CPU time (`--clock cpu`)."),
        "",
        f"Load average (1, 5, 15 min) before: {', '.join(f'{v:.2f}' for v in load_before)}; "
        f"after: {', '.join(f'{v:.2f}' for v in load_after)}.",
    ]
    if shared:
        lines += [
            "",
            "**The machine was shared while this ran** (load above half the cores): every "
            "ratio is a same-round median, so both sides slowed down together, but the "
            "numbers are noisier than on an idle machine. Re-run `python -m benchmarks` on "
            "an idle machine before quoting them.",
        ]
    return "\n".join(lines)


METHOD = """\
- A **time ratio** (`x`) is the median over rounds of time / baseline time, the baseline
  timed right before the measured call in the same round, so a slow or shared machine
  slows both; `--clock cpu` counts the process's CPU time instead of wall time. Sweep
  rows are wall time.
- A **memory ratio** (`x input`) is the peak of traced allocations (`tracemalloc`)
  during one call divided by the input's size: `1x input` is one input-sized temporary.
  Issue 15's goal for every algorithm, at most one such temporary (`np.var`'s own), is
  written `<= 1.1x input`: the tenth is for small buffers.
- A row measured on a smaller input than its label (its one call would exceed the
  budget) says so in parentheses."""


def report(rows: list[Row], ctx: str) -> str:
    return "\n".join(
        [
            "# Benchmarks",
            "",
            "Written by `python -m benchmarks` (issue 15's targets); the structure is fixed, "
            "the numbers are one run's and vary between runs and machines.",
            "",
            ctx,
            "",
            METHOD,
            "",
            table(rows),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="rounds per time ratio")
    parser.add_argument(
        "--budget", type=float, default=20.0, help="seconds one call and one row may take"
    )
    parser.add_argument("--full", action="store_true", help="also the standard sweep grid")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="time ratios on the wall clock, or on this process's CPU time (a shared machine)",
    )
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated sections of {list(SECTIONS)}"
    )
    parser.add_argument("--out", type=Path, default=Path("results") / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    sections = args.only.split(",")
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"--only: unknown sections {unknown}; choose from {list(SECTIONS)}")
    settings = Settings(args.rounds, args.budget, args.full, args.clock)
    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    widths = [72, 32, 12, 12, 4]
    print("  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)))
    rows: list[Row] = []
    for name in sections:
        for row in SECTIONS[name](settings):
            rows.append(row)
            print(
                "  ".join(c.ljust(w) for c, w in zip(row.cells(), widths, strict=True)), flush=True
            )
    load_after = os.getloadavg()
    print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report(rows, context(load_before, load_after, settings)))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
