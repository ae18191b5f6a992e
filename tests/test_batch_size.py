"""The batch-size experiment: its statistics, its layers, its quick mode and its committed run.

The confidence intervals are checked against closed-form Student-t quantiles and exact
rational arithmetic; the normalization layers against :mod:`varstats.oracle` and
``torch``'s own kernels; the committed ``results/batch_size.csv`` against the schema
and the numbers notebook 04 states.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from varstats import batch_size as bs
from varstats import oracle

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "batch_size.csv"
FIGURE = ROOT / "results" / "figures" / "batch_size.png"
NOTEBOOK = ROOT / "notebooks" / "04_batch_size.py"
F32_EPS = float(np.finfo(np.float32).eps)


def test_all_names_exist() -> None:
    assert sorted(bs.__all__) == sorted(set(bs.__all__))
    for name in bs.__all__:
        assert hasattr(bs, name), name


# ------------------------------------------------------------------ confidence intervals


def _t_closed_form(p: float, df: int) -> float:
    """Student-t quantiles with a closed form (df = 1, 2, 4)."""
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    assert df == 4
    alpha = 4 * p * (1 - p)
    q = math.cos(math.acos(math.sqrt(alpha)) / 3) / math.sqrt(alpha)
    return math.copysign(2 * math.sqrt(q - 1), p - 0.5)


@pytest.mark.parametrize("df", [1, 2, 4])
@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995, 0.025])
def test_t_quantile_matches_closed_form(p: float, df: int) -> None:
    got = bs.student_t_quantile(p, df=df)
    want = _t_closed_form(p, df)
    assert got == pytest.approx(want, rel=64 * np.finfo(np.float64).eps), "closed form"


def test_t_quantile_published_value() -> None:
    # t_{0.975, 4} = 2.776445105... (e.g. Abramowitz & Stegun table 26.10)
    assert bs.student_t_quantile(0.975, df=4) == pytest.approx(2.7764451051977987, rel=1e-15)


@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=5, max_size=5))
def test_t_interval_equals_exact_formula_for_five_seeds(values: list[float]) -> None:
    mean, half = bs.t_interval(values)
    xs = [Fraction(v) for v in values]
    m = sum(xs, Fraction(0)) / 5
    s2 = sum(((x - m) ** 2 for x in xs), Fraction(0)) / 4
    assert mean == float(m)
    want = _t_closed_form(0.975, 4) * math.sqrt(s2 / 5)
    assert half == pytest.approx(want, rel=16 * np.finfo(np.float64).eps, abs=1e-300)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: bs.t_interval([1.0]), "values"),
        (lambda: bs.t_interval([1.0, 2.0], confidence=1.0), "confidence"),
        (lambda: bs.student_t_quantile(1.5, df=3), "p"),
        (lambda: bs.student_t_quantile(0.5, df=0), "df"),
        (lambda: bs.make_images(0, seed=0), "n"),
    ],
)
def test_bad_input_names_the_argument(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]


# ------------------------------------------------------------------------------ the task


def test_images_are_deterministic_and_balanced() -> None:
    x, y = bs.make_images(2000, seed=3)
    x2, y2 = bs.make_images(2000, seed=3)
    assert x.shape == (2000, 1, bs.IMAGE, bs.IMAGE)
    assert x.dtype == np.float32
    assert np.array_equal(x, x2)
    assert np.array_equal(y, y2)
    counts = np.bincount(y, minlength=bs.CLASSES)
    assert counts.min() > 150, counts  # 200 expected per class


# ---------------------------------------------------------------------------- the layers


@pytest.fixture
def torch():  # type: ignore[no-untyped-def]
    return pytest.importorskip("torch")


def _batch(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    offset = rng.normal(3.0, 1.0, (1, shape[1], 1, 1))
    return (offset + rng.standard_normal(shape)).astype(np.float32)


def test_sync_batch_norm_matches_exact_batch_norm_over_all_devices(torch) -> None:  # type: ignore[no-untyped-def]
    device_bn = bs._layers()[0]
    x = _batch((4 * 3, 5, 4, 4), 0)  # 4 devices x 3 samples
    layer = device_bn(5, devices=4, sync=True).train()
    y = layer(torch.from_numpy(x)).detach().numpy()
    want = oracle.exact_normalize(x, axis=(0, 2, 3), eps=bs.EPS)
    # Chan's merge in float32: a few roundings of relative size eps per output
    assert np.max(np.abs(y - want)) <= 64 * F32_EPS, "Chan merge vs exact BatchNorm"


def test_per_device_batch_norm_normalizes_each_device_alone(torch) -> None:  # type: ignore[no-untyped-def]
    device_bn = bs._layers()[0]
    x = _batch((4 * 2, 3, 4, 4), 1)
    layer = device_bn(3, devices=4, sync=False).train()
    y = layer(torch.from_numpy(x)).detach().numpy()
    for k in range(4):
        chunk = x[2 * k : 2 * k + 2]
        want = oracle.exact_normalize(chunk, axis=(0, 2, 3), eps=bs.EPS)
        assert np.max(np.abs(y[2 * k : 2 * k + 2] - want)) <= 64 * F32_EPS, f"device {k}"
    # running statistics follow device 0, with torch's n - 1 in the variance
    chunk0 = x[:2].astype(np.float64)
    count = chunk0[:, 0].size
    var0 = chunk0.var(axis=(0, 2, 3)) * count / (count - 1)
    want_rv = 0.9 + 0.1 * var0
    assert np.allclose(layer.running_var.numpy(), want_rv, rtol=64 * F32_EPS)


def test_affine_channel_equals_eval_mode_batch_norm(torch) -> None:  # type: ignore[no-untyped-def]
    device_bn, affine_channel, _, _ = bs._layers()
    bn = device_bn(3, devices=1, sync=False)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        bn.running_var.copy_(torch.tensor([4.0, 0.25, 1.0]))
        bn.weight.copy_(torch.tensor([1.5, 0.5, -1.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    x = torch.from_numpy(_batch((2, 3, 4, 4), 2))
    want = bn.eval()(x).detach().numpy()
    got = affine_channel(bn)(x).detach().numpy()
    assert np.max(np.abs(got - want)) <= 16 * F32_EPS * np.max(np.abs(want))


# -------------------------------------------------------------------------- the runs


@pytest.mark.slow
def test_quick_mode_is_deterministic(torch) -> None:  # type: ignore[no-untyped-def]
    kwargs = {"quick": True, "variants": ["bn", "ac+gn4"], "batch_sizes": [2], "seeds": 1}
    first = bs.run(**kwargs)  # type: ignore[arg-type]
    second = bs.run(**kwargs)  # type: ignore[arg-type]
    assert first == second


@pytest.mark.slow
def test_quick_mode_writes_the_schema(torch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert bs.main(["--quick", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "batch_size.csv").read_text()
    assert str(tmp_path) not in text
    _check_schema(pd.read_csv(tmp_path / "batch_size.csv"), bs.QUICK_BATCH_SIZES, 2)
    assert (tmp_path / "figures" / "batch_size.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.rglob("*.tmp")), "temporary files left behind"


def _check_schema(df: pd.DataFrame, sizes: tuple[int, ...], seeds: int) -> None:
    assert tuple(df.columns) == bs.COLUMNS
    assert set(df["variant"]) == {v.name for v in bs.VARIANTS}
    assert set(df["batch_size"]) == set(sizes)
    assert not df.duplicated(["variant", "batch_size", "seed"]).any()
    assert (df.groupby(["variant", "batch_size"]).size() == seeds).all()
    assert df["eval_accuracy"].between(0, 1).all()
    assert df["batch_stat_accuracy"].between(0, 1).all()
    assert (df["eval_loss"] > 0).all()
    assert (df["global_batch"] == df["devices"] * df["batch_size"]).all()
    assert (df["samples"] == df["steps"] * df["global_batch"]).all()
    # the linear scaling rule
    assert np.allclose(df["lr"], bs.BASE_LR * df["global_batch"] / bs.BASE_BATCH)


# ---------------------------------------------------------------- the committed full run


@pytest.fixture(scope="module")
def committed() -> pd.DataFrame:
    return pd.read_csv(RESULTS)


def test_committed_run_has_the_full_grid(committed: pd.DataFrame) -> None:
    _check_schema(committed, bs.BATCH_SIZES, bs.SEEDS)
    assert bs.SEEDS >= 5
    assert (committed["samples"] - bs.SAMPLE_BUDGET).abs().max() < max(bs.BATCH_SIZES) * 4
    assert FIGURE.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _cell(committed: pd.DataFrame, variant: str, n: int, column: str = "eval_accuracy") -> str:
    mean, half = bs.t_interval(
        committed[(committed["variant"] == variant) & (committed["batch_size"] == n)][column]
    )
    if column.endswith("loss"):
        return f"{mean:.3f} ± {half:.3f}"
    return f"{100 * mean:.1f} ± {100 * half:.1f}%"


def _stated(key: str) -> str:
    """The value the notebook states for ``key``: written as ``[key: VALUE]``."""
    found = re.findall(rf"\[{re.escape(key)}: ([^\]]+)\]", NOTEBOOK.read_text())
    assert found, f"notebook 04 states no [{key}: ...]"
    assert len(set(found)) == 1, f"notebook 04 states {key} differently: {found}"
    return found[0]


def _claim_keys() -> list[str]:
    return sorted(set(re.findall(r"\[([a-z0-9+]+ N=\d+(?: [a-z_]+)?): ", NOTEBOOK.read_text())))


def test_notebook_states_claims() -> None:
    assert len(_claim_keys()) >= 6, _claim_keys()


@pytest.mark.parametrize("key", _claim_keys())
def test_notebook_claim_matches_committed_table(committed: pd.DataFrame, key: str) -> None:
    variant, n_text, *column = key.split(" ")
    n = int(n_text.removeprefix("N="))
    want = _cell(committed, variant, n, *(column or ["eval_accuracy"]))
    assert _stated(key) == want, f"notebook 04 [{key}] vs results/batch_size.csv"


def _means(committed: pd.DataFrame) -> pd.DataFrame:
    return committed.groupby(["variant", "batch_size"])["eval_accuracy"].mean().unstack()


def test_readme_finding_matches_committed_table(committed: pd.DataFrame) -> None:
    readme = (ROOT / "README.md").read_text()
    sentence = " ".join(readme[readme.index("In the batch-size experiment") :].split()[:40])
    assert f"BatchNorm does not fail at batch 2 ({_cell(committed, 'bn', 2)}" in sentence
    assert f"against {_cell(committed, 'syncbn', 2)} with SyncBatchNorm" in sentence
    means = _means(committed)
    lead = 100 * (means.loc["gn16"] - means.loc["bn"])
    assert lead.between(1.0, 3.0).all(), f"GroupNorm-16 lead over BatchNorm: {lead.to_dict()}"
    largest = max(bs.BATCH_SIZES)
    for variant in ("gn1", "gn4"):  # GroupNorm with few groups loses at large batches
        assert means.loc[variant, largest] < means.loc["bn", largest], variant
    gap = means.loc["gn4", 2] - means.loc["bn", 2]  # the "within about 1 point" at N = 2
    assert abs(gap) < 0.015, gap


def test_affine_channel_is_behind_batch_norm_at_every_batch_size(committed: pd.DataFrame) -> None:
    # notebook 04 and the README: "AffineChannel is far behind" / "worst at N <= 16"
    means = _means(committed)
    assert (means.loc["ac"] < means.loc["bn"] - 0.05).all()
    for n in (b for b in bs.BATCH_SIZES if b <= 16):
        assert means[n].idxmin() == "ac", n
    # GroupNorm everywhere vs only in the head (same 4 groups): 9.4 points at N = 2
    assert f"{100 * (means.loc['gn4', 2] - means.loc['ac+gn4', 2]):.1f}" == "9.4"
    # "2.6 points above BatchNorm at N = 2", Wu & He's published gap 34.7 - 24.1 = 10.6
    assert f"{100 * (means.loc['gn16', 2] - means.loc['bn', 2]):.1f}" == "2.6"
    assert "2.6 points\n#   above BatchNorm at N = 2" in NOTEBOOK.read_text()
