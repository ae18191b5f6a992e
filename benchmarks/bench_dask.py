"""Out-of-core variance: varstats.dask.var against dask.array.var on 10^8 float32 values.

Run: ``python benchmarks/bench_dask.py`` (``--n``, ``--chunk``, ``--workers``). The array
(400 MB at 10^8 float32) is never materialized: each 10^7-element chunk is generated on
demand by ``map_blocks`` from a per-chunk seed, reduced, and dropped. Both timings come
from this run (best of ``--repeat``), so the ratio does not depend on the machine.

Target (issue 8): wall time <= 2x ``dask.array.var``; peak memory well under the array's
size. Peak memory is reported two ways: the peak of traced Python/NumPy allocations
during the varstats run (``tracemalloc``), and the process's peak resident set size
(``ru_maxrss``, which includes the interpreter and libraries; use ``--only`` to measure
one reduction alone).
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc
from typing import Any

import dask
import dask.array as da
import numpy as np

import varstats as vs
from varstats import dask as vd


def _block(block_id: tuple[int], chunk: int, offset: float) -> np.ndarray[Any, Any]:
    # each chunk from its own seed: the same data every time, no chunk held in memory
    rng = np.random.default_rng(block_id[0])
    x = rng.standard_normal(chunk, dtype=np.float32)
    x += np.float32(offset)
    return x


def lazy_array(n: int, chunk: int, offset: float) -> da.Array:
    blocks = n // chunk
    return da.map_blocks(
        _block,
        chunk=chunk,
        offset=offset,
        chunks=((chunk,) * blocks,),
        dtype=np.float32,
        meta=np.empty(0, np.float32),
    )


def best(fn: Any, repeat: int) -> tuple[float, Any]:
    t, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        t = min(t, time.perf_counter() - t0)
    return t, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10**8)
    parser.add_argument("--chunk", type=int, default=10**7)
    parser.add_argument("--workers", type=int, default=2, help="threads of the dask scheduler")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--offset", type=float, default=1e4, help="mean / std of the data")
    parser.add_argument(
        "--only",
        help="run only the reduction with this label (so that the process's "
        "peak RSS is theirs alone)",
    )
    args = parser.parse_args(argv)
    x = lazy_array(args.n, args.chunk, args.offset)
    size_mb = args.n * 4 / 1e6
    configs = {
        "dask.array.var": lambda: da.var(x).compute(),
        "vs.dask two_pass": lambda: vd.var(x).compute(),
        "vs.dask corrected_two_pass": lambda: vd.var(x, algorithm="corrected_two_pass").compute(),
        "vs.dask two_pass f32:f64": lambda: vd.var(x, precision="float32:float64").compute(),
    }
    if args.only:
        configs = {k: v for k, v in configs.items() if k == args.only}
    print(
        f"n = {args.n:.0e} float32 ({size_mb:.0f} MB, never materialized), chunks of "
        f"{args.chunk:.0e}, {args.workers} threads, offset {args.offset:g} std"
    )
    print(
        f"{'reduction':30s} {'time (s)':>9s} {'ratio':>6s} {'traced peak (MB)':>17s} {'value':>14s}"
    )
    with dask.config.set(scheduler="threads", num_workers=args.workers):
        base = None
        for label, fn in configs.items():
            t, value = best(fn, args.repeat)
            tracemalloc.start()
            fn()
            peak = tracemalloc.get_traced_memory()[1] / 1e6
            tracemalloc.stop()
            base = t if base is None else base
            print(f"{label:30s} {t:9.3f} {t / base:6.2f} {peak:17.1f} {float(value):14.8g}")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the whole process: {rss_mb:.0f} MB (array: {size_mb:.0f} MB)")
    print(f"varstats version: {vs.__version__}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
