"""The PyTorch CPU kernel emulations, bounded against the oracle (vs torch: test_norms)."""

import numpy as np
import pytest

import varstats.torch_cpu as vt
from varstats import oracle
from varstats.precision import finfo, round_to


def test_all_matches_module():
    assert sorted(vt.__all__) == ["torch_cpu_two_pass", "torch_cpu_welford"]


@pytest.mark.parametrize("n", [2, 7, 8, 9, 100, 257, 1000])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_welford_within_updating_bound(n, dtype):
    rng = np.random.default_rng(n)
    x = round_to(rng.standard_normal((3, n)) + 10, dtype)
    m = vt.torch_cpu_welford(x, acc=np.dtype(dtype))
    exact = oracle.exact_var(x, axis=-1)
    u = finfo(dtype).unit_roundoff
    kappa = np.sqrt(1 + 100 * n)  # offset 10, unit spread
    rel = np.abs(m.var(0).astype(np.float64) - exact) / exact
    assert np.all(rel <= 4 * np.log2(n + 1) * kappa * u + 1e-300), "updating bound log2(n) kappa u"


def test_torch_two_pass_rounds_deviations_in_storage():
    x = np.array([[40000, 40001, 40002, 40003]], dtype=np.float32)
    m = vt.torch_cpu_two_pass(x, acc=np.dtype(np.float64))
    assert float(m.var(0)[0]) == 1.25
    assert m.mean.dtype == np.float64
