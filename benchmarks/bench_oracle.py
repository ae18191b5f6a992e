"""Speed of the exact oracle: ``method="fast"`` vs ``method="reference"``, one run.

Run ``python benchmarks/bench_oracle.py``. Every ratio is measured here, in the same
process, never copied from elsewhere. Targets (issue 4): fast >= 100x reference at
n = 10^5 float64; the 1024 row variances of a (1024, 4096) float32 array in <= 2 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from varstats.oracle import exact_normalize, exact_var


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Smallest wall time of ``repeat`` calls, and the last result."""
    best = float("inf")
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> int:
    rng = np.random.default_rng(2024)

    # 1. one variance of n = 10^5 float64 values (ill-conditioned: offset 1e4, std 3)
    x = rng.standard_normal(10**5) * 3 + 1e4
    t_fast, v_fast = best_of(lambda: exact_var(x), 5)
    t_ref, v_ref = best_of(lambda: exact_var(x, method="reference"), 1)
    t_np, _ = best_of(lambda: np.var(x), 20)
    assert v_fast == v_ref, "fast and reference disagree"
    print("exact_var, n = 10^5 float64")
    print(f"  fast      {t_fast * 1e3:9.2f} ms")
    print(f"  reference {t_ref * 1e3:9.2f} ms")
    print(f"  np.var    {t_np * 1e3:9.2f} ms (inexact, for scale)")
    print(f"  reference / fast = {t_ref / t_fast:.0f}x (target >= 100x)")

    # 1b. the same size, standard normal: many binades, so the bucketed (bincount) path
    xn = rng.standard_normal(10**5)
    t_fast_n, v_fast_n = best_of(lambda: exact_var(xn), 5)
    t_ref_n, v_ref_n = best_of(lambda: exact_var(xn, method="reference"), 1)
    assert v_fast_n == v_ref_n, "fast and reference disagree"
    print("exact_var, n = 10^5 float64 standard normal (many binades)")
    print(f"  fast      {t_fast_n * 1e3:9.2f} ms")
    print(f"  reference {t_ref_n * 1e3:9.2f} ms")
    print(f"  reference / fast = {t_ref_n / t_fast_n:.0f}x")

    # 2. 1024 exact row variances of a (1024, 4096) float32 array
    a = (rng.standard_normal((1024, 4096)) * 0.01 + 100).astype(np.float32)
    t_rows, rows = best_of(lambda: exact_var(a, axis=1), 3)
    t_ref4, ref4 = best_of(lambda: exact_var(a[:4], axis=1, method="reference"), 1)
    assert np.array_equal(rows[:4], ref4), "fast and reference disagree"
    print("exact_var(axis=1), (1024, 4096) float32")
    print(f"  fast      {t_rows:9.3f} s for 1024 rows (target <= 2 s)")
    print(
        f"  reference {t_ref4 / 4 * 1024:9.3f} s for 1024 rows "
        f"(extrapolated from 4 rows: {t_ref4:.3f} s)"
    )

    # 3. exact layer-norm output, (64, 256) float32, eps = float32(1e-5)
    b = (rng.standard_normal((64, 256)) + 2000).astype(np.float32)
    eps = np.float32(1e-5)
    t_nf, y_fast = best_of(lambda: exact_normalize(b, axis=-1, eps=eps), 3)
    t_nr, y_ref = best_of(lambda: exact_normalize(b, axis=-1, eps=eps, method="reference"), 1)
    assert np.array_equal(y_fast, y_ref), "fast and reference disagree"
    print("exact_normalize(axis=-1), (64, 256) float32")
    print(f"  fast      {t_nf:9.3f} s ({t_nf / b.size * 1e6:.1f} us per element)")
    print(f"  reference {t_nr:9.3f} s ({t_nr / b.size * 1e6:.1f} us per element)")
    print(f"  reference / fast = {t_nr / t_nf:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
