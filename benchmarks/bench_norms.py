"""Speed of the pytorch-preset norm layers as a ratio to ``torch.nn.functional`` (1 thread).

Run: ``python benchmarks/bench_norms.py`` (``--clock cpu`` on a shared machine). Each
round times torch's layer and then ours on the same float32 input, so every ratio comes
from one run on one machine; the table shows the median of the per-round ratios. Before
timing, each row checks that the two outputs are bit-identical (the claim the speed must
not cost). With numba (the ``jit`` extra) torch's kernels run compiled; the rows here
are smaller than ``python -m benchmarks``'s, so the fixed cost of a call weighs more.

Target (issue 15): every layer <= 5x torch at one thread, still bit-identical.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import varstats.norms as vn

TARGET = 5.0


def _cases(rng: np.random.Generator) -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    import torch
    import torch.nn.functional as F

    def data(*shape: int) -> np.ndarray[Any, Any]:
        return (rng.standard_normal(shape) + 1.0).astype(np.float32)

    x4 = data(16, 32, 16, 16)
    x2 = data(256, 64)
    ln_small, ln_wide = data(64, 256), data(8, 4096)
    w32, b32 = data(32), data(32)
    w_ln, b_ln = data(256), data(256)
    rm, rv = np.zeros(32, np.float32), np.ones(32, np.float32)
    t = torch.from_numpy
    return [
        (
            "batch_norm (16,32,16,16) train",
            lambda: F.batch_norm(t(x4), t(rm.copy()), t(rv.copy()), t(w32), t(b32), True),
            lambda: vn.batch_norm(x4, rm, rv, weight=w32, bias=b32, training=True).y,
        ),
        (
            "batch_norm (256,64) train",
            lambda: F.batch_norm(t(x2), None, None, training=True),
            lambda: vn.batch_norm(x2, None, None, training=True).y,
        ),
        (
            "batch_norm (16,32,16,16) eval",
            lambda: F.batch_norm(t(x4), t(rm), t(rv), t(w32), t(b32), False),
            lambda: vn.batch_norm(x4, rm, rv, weight=w32, bias=b32).y,
        ),
        (
            "layer_norm (64,256) affine",
            lambda: F.layer_norm(t(ln_small), (256,), t(w_ln), t(b_ln)),
            lambda: vn.layer_norm(ln_small, 256, weight=w_ln, bias=b_ln),
        ),
        (
            "layer_norm (8,4096)",
            lambda: F.layer_norm(t(ln_wide), (4096,)),
            lambda: vn.layer_norm(ln_wide, 4096),
        ),
        (
            "group_norm (16,32,16,16) G=8 affine",
            lambda: F.group_norm(t(x4), 8, t(w32), t(b32)),
            lambda: vn.group_norm(x4, 8, weight=w32, bias=b32),
        ),
        (
            "instance_norm (16,32,16,16)",
            lambda: F.instance_norm(t(x4)),
            lambda: vn.instance_norm(x4),
        ),
        (
            "local_response_norm (16,32,16,16) size 5",
            lambda: F.local_response_norm(t(x4), 5),
            lambda: vn.local_response_norm(x4, 5),
        ),
    ]


def _timed(fn: Callable[[], Any], clock: Callable[[], float] = time.perf_counter) -> float:
    t0 = clock()
    fn()
    return clock() - t0


def ratio(
    ours: Callable[[], Any],
    theirs: Callable[[], Any],
    repeat: int,
    budget: float,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Median over rounds of (our time / torch's time), both timed in the same round."""
    ratios = []
    start = time.perf_counter()
    for _ in range(repeat):
        t_theirs = _timed(theirs, clock)
        ratios.append(_timed(ours, clock) / t_theirs)
        if time.perf_counter() - start > budget:
            break
    return float(np.median(ratios))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--budget", type=float, default=10.0, help="seconds per row at most")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall clock, or this process's CPU time (a shared machine)",
    )
    args = parser.parse_args(argv)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    print(
        f"torch {torch.__version__}, 1 thread; median of per-round ratios ({args.clock} "
        f"clock); target <= {TARGET}x"
    )
    print(f"{'layer':42s} {'bits':>9s} {'ratio':>8s}")
    worst = 0.0
    for label, theirs, ours in _cases(rng):
        same = np.array_equal(np.asarray(ours()), theirs().numpy(), equal_nan=True)
        r = ratio(ours, theirs, args.repeat, args.budget, clock)
        worst = max(worst, r)
        print(f"{label:42s} {'identical' if same else 'DIFFER':>9s} {r:7.1f}x")
    print(f"worst ratio {worst:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
