r"""The batch-size experiment: BatchNorm, GroupNorm and AffineChannel trained at N = 2..32.

Run ``python -m varstats.batch_size --jobs 2`` (full run: 175 trainings, about 800 s of
CPU time, so about 7 minutes on two free cores) or ``python -m varstats.batch_size --quick``
(the CI subset, under a minute). It writes ``results/batch_size.csv`` (one row per
variant, batch size and seed; columns :data:`COLUMNS`) and
``results/figures/batch_size.png`` (mean eval accuracy per cell with its 95%
t-interval), both atomically and byte-identical on a rerun with the same arguments.

What it measures
----------------
The claim under test (Wu & He 2018): BatchNorm degrades when each device sees few samples,
because its training-time moments are estimated from those N samples, while GroupNorm
does not depend on N. Every run trains the same small CNN (a *backbone* of three conv
blocks, then a *head* of two conv blocks standing in for the FPN and a linear classifier
on the 4 x 4 feature map) on the same procedurally generated image task, and reports the
accuracy and loss on a held-out set **in eval mode** (BatchNorm with its running
statistics).

Training is data-parallel over :data:`DEVICES` simulated devices, as Wu & He's ImageNet
runs were (8 GPUs, BatchNorm per GPU): the batch-size axis is the per-device batch ``N``,
a step sees ``DEVICES * N`` samples, and the variants differ *only* in which set of
values each normalization layer takes its moments over, so the optimization (gradient
noise, number of steps, learning rate) is identical across variants at a given ``N``:

``batch_norm``
    Moments over the ``N`` samples (and ``H x W``) of each device; the running
    statistics follow device 0, as a data-parallel checkpoint saves rank 0's buffers.
``sync_batch_norm``
    SyncBatchNorm's effect: the per-device moments merged across the devices with Chan's
    pairwise update (written in torch ops so that it back-propagates), i.e. moments over
    ``DEVICES * N`` samples.
``group_norm``
    Moments per sample over groups of channels (:data:`GROUP_COUNTS`); ``torch``'s
    ``group_norm``.
``affine_channel``
    Detectron's frozen BatchNorm: the first :data:`PRE_RUN_FRACTION` of the sample budget
    is a pre-run with batch-wide BatchNorm at the largest batch (its own warm-up and
    cosine schedule), after which every
    BatchNorm becomes a per-channel affine map :math:`y = s x + b` with
    :math:`s = \gamma / \sqrt{\hat\sigma^2 + \epsilon}`, :math:`b = \beta - s \hat\mu`
    from the pre-run's running statistics; training continues at batch ``N`` with the
    statistics frozen and :math:`s, b` trainable, as in Detectron's
    ``DetectionModelHelper.AffineChannel`` (``detectron/modeling/detector.py``), which
    "replaces BN during fine tuning".
``*_head`` (placement ``head``)
    GroupNorm only in the head, AffineChannel in the backbone (Detectron's FPN setup);
    placement ``everywhere`` puts the variant's normalization in every layer.

The number of samples seen is the same at every ``N`` (:data:`SAMPLE_BUDGET`); the
learning rate follows the linear scaling rule :math:`\eta = \eta_0 \cdot B / B_0` for
the global batch :math:`B = \text{DEVICES} \cdot N` with a linear warm-up over the first
:data:`WARMUP_FRACTION` of the samples and a cosine decay (Goyal et al. 2017).

The task
--------
Ten classes of shapes (disk, square, triangle, ring, plus, cross, bars, ...) drawn at a
random position, size and rotation on a 16 x 16 canvas, under a per-image gain and
offset, a random background gradient and pixel noise (:func:`make_images`). It needs no
download, can be made as hard as wanted (it is tuned so that no variant saturates), and
fixes a train and a test set for every run. The per-image gain and offset are what
GroupNorm removes per sample and BatchNorm does not, a difference between the methods
that exists at every batch size.

Determinism
-----------
Each run seeds torch with its seed, uses ``torch.use_deterministic_algorithms(True)``
and one thread; runs may go to a process pool (``--jobs``) and the rows are sorted
before writing, so the output does not depend on the pool.

References
----------
.. [1] Y. Wu and K. He, "Group Normalization", ECCV 2018.
.. [2] S. Ioffe and C. Szegedy, "Batch Normalization", ICML 2015.
.. [3] P. Goyal et al., "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
       arXiv:1706.02677, 2017.
.. [4] T. F. Chan, G. H. Golub and R. J. LeVeque, "Updating formulae and a pairwise
       algorithm for computing sample variances", COMPSTAT 1982.
"""

from __future__ import annotations

import argparse
import functools
import io
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BASE_BATCH",
    "BASE_LR",
    "BATCH_SIZES",
    "CLASSES",
    "COLUMNS",
    "DATA_SEED",
    "DEVICES",
    "EPS",
    "GROUP_COUNTS",
    "IMAGE",
    "MOMENTUM",
    "PRE_RUN_FRACTION",
    "QUICK_BATCH_SIZES",
    "QUICK_SAMPLE_BUDGET",
    "QUICK_SEEDS",
    "SAMPLE_BUDGET",
    "SEEDS",
    "TEST_SIZE",
    "TRAIN_SIZE",
    "VARIANTS",
    "WARMUP_FRACTION",
    "WEIGHT_DECAY",
    "Variant",
    "cell_summary",
    "format_csv",
    "main",
    "make_images",
    "run",
    "student_t_quantile",
    "t_interval",
    "train_one",
]

DEVICES = 4
BATCH_SIZES = (2, 4, 8, 16, 32)
QUICK_BATCH_SIZES = (2, 8)
GROUP_COUNTS = (1, 4, 16)
SEEDS = 5
QUICK_SEEDS = 2
SAMPLE_BUDGET = 24_576
QUICK_SAMPLE_BUDGET = 1_024
PRE_RUN_FRACTION = 0.25
WARMUP_FRACTION = 0.1
BASE_LR = 0.1  # for the global batch BASE_BATCH
BASE_BATCH = 128
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
TRAIN_SIZE = 8_192
TEST_SIZE = 2_048
DATA_SEED = 2018
IMAGE = 16
CLASSES = 10
EPS = 1e-5

COLUMNS = (
    "variant",
    "norm",
    "groups",
    "placement",
    "batch_size",
    "devices",
    "global_batch",
    "seed",
    "lr",
    "steps",
    "samples",
    "eval_accuracy",
    "eval_loss",
    "batch_stat_accuracy",
    "train_loss",
)


@dataclass(frozen=True)
class Variant:
    """One normalization setup: what the backbone and the head normalize with.

    ``backbone`` and ``head`` are ``"batch_norm"``, ``"sync_batch_norm"``,
    ``"group_norm"`` or ``"affine_channel"``; ``groups`` is GroupNorm's group count.
    """

    name: str
    norm: str
    placement: str
    backbone: str
    head: str
    groups: int = 0

    @property
    def pre_run(self) -> bool:
        """Whether some layer is AffineChannel, i.e. needs the large-batch pre-run."""
        return "affine_channel" in (self.backbone, self.head)


VARIANTS: tuple[Variant, ...] = (
    Variant("bn", "batch_norm", "everywhere", "batch_norm", "batch_norm"),
    Variant("syncbn", "sync_batch_norm", "everywhere", "sync_batch_norm", "sync_batch_norm"),
    *(
        Variant(f"gn{g}", "group_norm", "everywhere", "group_norm", "group_norm", g)
        for g in GROUP_COUNTS
    ),
    Variant("ac", "affine_channel", "everywhere", "affine_channel", "affine_channel"),
    Variant("ac+gn4", "group_norm", "head", "affine_channel", "group_norm", 4),
)
_BY_NAME = {v.name: v for v in VARIANTS}


# --------------------------------------------------------------------------- the task


def make_images(n: int, /, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    r"""``n`` images ``(n, 1, 16, 16)`` float32 of the ten shape classes, and their labels.

    Each image: a shape of its class at a random centre (within 3 pixels of the middle),
    radius 3.5-6.5 pixels and rotation, drawn with amplitude 1 on a background with a
    random linear gradient, plus pixel noise of standard deviation 0.2-0.6; then a
    per-image gain :math:`e^{g}`, :math:`g \sim N(0, 0.4^2)`, and offset
    :math:`N(0, 1)`. The labels are balanced in expectation.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    centre = rng.uniform(-3.0, 3.0, (n, 2, 1, 1))
    radius = rng.uniform(3.5, 6.5, (n, 1, 1))
    angle = rng.uniform(-0.4, 0.4, (n, 1, 1))
    grid = np.arange(IMAGE) - (IMAGE - 1) / 2
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    dy, dx = yy[None] - centre[:, 0], xx[None] - centre[:, 1]
    cos, sin = np.cos(angle), np.sin(angle)
    u = (cos * dx + sin * dy) / radius  # shape coordinates: the shape spans [-1, 1]
    v = (-sin * dx + cos * dy) / radius
    r = np.hypot(u, v)
    au, av = np.abs(u), np.abs(v)
    shapes = [
        r <= 1.0,  # disk
        np.maximum(au, av) <= 0.8,  # square
        (v <= 0.7) & (v >= 2.0 * au - 1.0),  # triangle
        (r <= 1.0) & (r >= 0.6),  # ring
        ((au <= 0.25) | (av <= 0.25)) & (np.maximum(au, av) <= 1.0),  # plus
        (np.abs(au - av) <= 0.25) & (np.maximum(au, av) <= 0.9),  # cross
        (np.abs(av - 0.5) <= 0.2) & (au <= 0.9),  # two horizontal bars
        (np.abs(au - 0.5) <= 0.2) & (av <= 0.9),  # two vertical bars
        (au + av <= 1.0) & (au + av >= 0.55),  # diamond outline
        ((u + 0.4) ** 2 + v**2 <= 0.16) | ((u - 0.4) ** 2 + v**2 <= 0.16),  # two dots
    ]
    mask = np.choose(labels[:, None, None], shapes).astype(np.float64)
    slope = rng.normal(0.0, 0.08, (n, 2, 1, 1))
    background = slope[:, 0] * yy[None] + slope[:, 1] * xx[None]
    noise = rng.uniform(0.2, 0.6, (n, 1, 1)) * rng.standard_normal((n, IMAGE, IMAGE))
    gain = np.exp(rng.normal(0.0, 0.4, (n, 1, 1)))
    offset = rng.normal(0.0, 1.0, (n, 1, 1))
    images = gain * (mask + background + noise) + offset
    return images[:, None].astype(np.float32), labels.astype(np.int64)


# --------------------------------------------------------------------- confidence intervals


@functools.lru_cache(maxsize=256)
def student_t_quantile(p: float, /, *, df: int) -> float:
    r"""The ``p`` quantile of Student's t distribution with ``df`` degrees of freedom.

    Solves :math:`F(t) = p` with :math:`1 - F(t) = \tfrac12 I_{df/(df+t^2)}(df/2, 1/2)`
    for :math:`t > 0` (the regularized incomplete beta function, evaluated by mpmath to 30
    digits) by bisection; accurate to far below float64's resolution.
    """
    if not isinstance(df, int) or df < 1:
        raise ValueError(f"df must be a positive integer, got {df!r}")
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie in (0, 1), got {p!r}")
    import mpmath  # a core dependency; imported here to keep torch-free imports light

    if p < 0.5:
        return -student_t_quantile(1.0 - p, df=df)
    if p == 0.5:
        return 0.0
    with mpmath.workdps(30):
        tail = mpmath.mpf(1) - mpmath.mpf(p)

        def upper(t: Any) -> Any:
            return (
                mpmath.betainc(df / mpmath.mpf(2), 0.5, 0, df / (df + t * t), regularized=True) / 2
            )

        lo, hi = mpmath.mpf(0), mpmath.mpf(1)
        while upper(hi) > tail:
            hi *= 2
        for _ in range(200):  # 2^-200 of the bracket: past any float64
            mid = (lo + hi) / 2
            if upper(mid) > tail:
                lo = mid
            else:
                hi = mid
        return float((lo + hi) / 2)


def t_interval(values: Sequence[float], /, *, confidence: float = 0.95) -> tuple[float, float]:
    r"""Mean and half-width of the Student-t confidence interval of ``values``.

    .. math::
        \bar x \pm t_{1-\alpha/2,\,n-1}\, s / \sqrt n,\qquad
        s^2 = \frac{1}{n-1}\sum (x_i - \bar x)^2

    The mean and :math:`s` are computed exactly (``fractions.Fraction``) and rounded once.
    Needs at least two values.
    """
    xs = [Fraction(float(x)) for x in values]
    if len(xs) < 2:
        raise ValueError(f"values must hold at least 2 numbers, got {len(xs)}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    n = len(xs)
    mean = sum(xs, Fraction(0)) / n
    s2 = sum(((x - mean) ** 2 for x in xs), Fraction(0)) / (n - 1)
    t = student_t_quantile(0.5 + confidence / 2, df=n - 1)
    return float(mean), t * math.sqrt(s2 / n)


def cell_summary(rows: Iterable[dict[str, Any]], /, *, column: str = "eval_accuracy") -> Any:
    """Per (variant, batch size): mean, 95% t half-width and count of ``column``.

    Returns a pandas DataFrame indexed by (variant, batch_size) in :data:`VARIANTS` and
    batch-size order.
    """
    import pandas as pd

    df = pd.DataFrame(list(rows))
    if column not in df.columns:
        raise ValueError(f"column {column!r} not in the rows")
    out = []
    order = {v.name: i for i, v in enumerate(VARIANTS)}
    for _, g in df.groupby(["variant", "batch_size"], sort=False):
        mean, half = t_interval(list(g[column]))
        first = g.iloc[0]
        out.append(
            {
                "variant": str(first["variant"]),
                "batch_size": int(first["batch_size"]),
                "mean": mean,
                "ci95": half,
                "count": len(g),
            }
        )
    table = pd.DataFrame(out)
    table["_o"] = table["variant"].map(order)
    table = table.sort_values(["_o", "batch_size"]).drop(columns="_o")
    return table.set_index(["variant", "batch_size"])


# ----------------------------------------------------------------------------- the model


def _torch() -> Any:
    import torch  # optional dependency: the [experiments] extra

    return torch


@functools.cache
def _layers() -> Any:
    """The torch modules, built on first use so that importing this module needs no torch."""
    torch = _torch()
    nn = torch.nn
    functional = torch.nn.functional

    class DeviceBatchNorm(nn.Module):  # type: ignore[misc,name-defined,unused-ignore]
        """BatchNorm over each simulated device's samples, or over all of them (sync)."""

        def __init__(self, channels: int, *, devices: int, sync: bool) -> None:
            super().__init__()
            self.devices, self.sync = devices, sync
            self.weight = nn.Parameter(torch.ones(channels))
            self.bias = nn.Parameter(torch.zeros(channels))
            self.register_buffer("running_mean", torch.zeros(channels))
            self.register_buffer("running_var", torch.ones(channels))

        def forward(self, x: Any) -> Any:
            if not self.training:
                return functional.batch_norm(
                    x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, EPS
                )
            k = self.devices
            n, c, h, w = x.shape
            xs = x.reshape(k, n // k, c, h, w)
            count = (n // k) * h * w
            mean = xs.mean(dim=(1, 3, 4), keepdim=True)  # (k, 1, c, 1, 1)
            var = (xs - mean).square().mean(dim=(1, 3, 4), keepdim=True)
            if self.sync:
                # Chan's merge of k equal-count moments: the mean of the means, and the
                # within-device M2 plus the between-device spread of the means
                merged = mean.mean(dim=0, keepdim=True)
                var = (var + (mean - merged).square()).mean(dim=0, keepdim=True)
                mean, count = merged, count * k
            with torch.no_grad():  # torch's convention: running variance with n - 1
                m0, v0 = mean[0].reshape(c), var[0].reshape(c) * count / (count - 1)
                self.running_mean.mul_(0.9).add_(0.1 * m0)
                self.running_var.mul_(0.9).add_(0.1 * v0)
            scale = self.weight.reshape(1, 1, c, 1, 1) * torch.rsqrt(var + EPS)
            y = (xs - mean) * scale + self.bias.reshape(1, 1, c, 1, 1)
            return y.reshape(n, c, h, w)

    class AffineChannel(nn.Module):  # type: ignore[misc,name-defined,unused-ignore]
        """``y = scale * x + bias`` per channel: BatchNorm with its statistics frozen."""

        def __init__(self, bn: Any) -> None:
            super().__init__()
            with torch.no_grad():
                s = bn.weight / torch.sqrt(bn.running_var + EPS)
                self.scale = nn.Parameter(s.clone())
                self.shift = nn.Parameter((bn.bias - bn.running_mean * s).clone())

        def forward(self, x: Any) -> Any:
            c = x.shape[1]
            return x * self.scale.reshape(1, c, 1, 1) + self.shift.reshape(1, c, 1, 1)

    class GroupNorm(nn.Module):  # type: ignore[misc,name-defined,unused-ignore]
        def __init__(self, channels: int, groups: int) -> None:
            super().__init__()
            self.groups = groups
            self.weight = nn.Parameter(torch.ones(channels))
            self.bias = nn.Parameter(torch.zeros(channels))

        def forward(self, x: Any) -> Any:
            return functional.group_norm(x, self.groups, self.weight, self.bias, EPS)

    class Net(nn.Module):  # type: ignore[misc,name-defined,unused-ignore]
        """Backbone 1-16-32-32 (two stride-2 convs), head 32-32-32, linear on the 4 x 4 map."""

        BACKBONE = ((1, 16, 1), (16, 32, 2), (32, 32, 2))
        HEAD = ((32, 32, 1), (32, 32, 1))

        def __init__(self, backbone: Callable[[int], Any], head: Callable[[int], Any]) -> None:
            super().__init__()
            convs, norms = [], []
            for specs, make in ((self.BACKBONE, backbone), (self.HEAD, head)):
                for cin, cout, stride in specs:
                    convs.append(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False))
                    norms.append(make(cout))
            self.convs = nn.ModuleList(convs)
            self.norms = nn.ModuleList(norms)
            self.fc = nn.Linear(32 * (IMAGE // 4) ** 2, CLASSES)

        def forward(self, x: Any) -> Any:
            for conv, norm in zip(self.convs, self.norms, strict=True):
                x = functional.relu(norm(conv(x)))
            return self.fc(x.flatten(1))

    return DeviceBatchNorm, AffineChannel, GroupNorm, Net


def _norm_factory(kind: str, *, groups: int, devices: int) -> Callable[[int], Any]:
    device_bn, _, group_norm, _ = _layers()
    if kind == "group_norm":
        return lambda c: group_norm(c, groups)
    # AffineChannel layers start as batch-wide BatchNorm for the pre-run
    sync = kind in ("sync_batch_norm", "affine_channel")
    return lambda c: device_bn(c, devices=devices, sync=sync)


@dataclass(frozen=True)
class _Data:
    train_x: Any
    train_y: Any
    test_x: Any
    test_y: Any


def _data(train: int, test: int) -> _Data:
    torch = _torch()
    tx, ty = make_images(train, seed=DATA_SEED)
    vx, vy = make_images(test, seed=DATA_SEED + 1)
    return _Data(
        torch.from_numpy(tx), torch.from_numpy(ty), torch.from_numpy(vx), torch.from_numpy(vy)
    )


def _lr(sample: int, *, budget: int, peak: float) -> float:
    """Linear warm-up over the first WARMUP_FRACTION of the samples, then cosine to 0."""
    warm = WARMUP_FRACTION * budget
    if sample < warm:
        return peak * (sample + 1) / warm
    return peak * 0.5 * (1.0 + math.cos(math.pi * (sample - warm) / (budget - warm)))


def _train(
    net: Any,
    data: _Data,
    *,
    global_batch: int,
    start: int,
    stop: int,
    budget: int,
    order: Any,
    autocast: bool,
) -> float:
    """SGD over samples [start, stop) of the schedule; returns the mean loss of the last 10%."""
    torch = _torch()
    peak = BASE_LR * global_batch / BASE_BATCH
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=peak, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    net.train()
    losses = []
    for s in range(start, stop, global_batch):
        for group in opt.param_groups:
            group["lr"] = _lr(s, budget=budget, peak=peak)
        idx = order[s % len(order) : s % len(order) + global_batch]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = torch.nn.functional.cross_entropy(net(data.train_x[idx]), data.train_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses[-max(1, len(losses) // 10) :]))


def _evaluate(net: Any, data: _Data, *, batch: int | None, autocast: bool) -> tuple[float, float]:
    """Accuracy and mean loss on the test set: eval mode if batch is None, else
    training-mode normalization over consecutive test batches of that size."""
    torch = _torch()
    size = len(data.test_y)
    step = 512 if batch is None else batch
    correct, total_loss = 0, 0.0
    net.train(batch is not None)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        saved = {k: v.clone() for k, v in net.state_dict().items()}
        for i in range(0, size - size % step, step):
            logits = net(data.test_x[i : i + step]).float()
            y = data.test_y[i : i + step]
            correct += int((logits.argmax(dim=1) == y).sum())
            total_loss += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
        net.load_state_dict(saved)  # training-mode passes must not move the running stats
    counted = size - size % step
    return correct / counted, total_loss / counted


def train_one(
    variant: str | Variant,
    batch_size: int,
    seed: int,
    /,
    *,
    budget: int = SAMPLE_BUDGET,
    devices: int = DEVICES,
    autocast: bool = False,
    train_size: int = TRAIN_SIZE,
    test_size: int = TEST_SIZE,
) -> dict[str, Any]:
    """Train one network and return its CSV row (:data:`COLUMNS`).

    ``batch_size`` is the per-device batch; a step sees ``devices * batch_size`` samples.
    ``autocast=True`` runs forward passes under ``torch.autocast("cpu", torch.bfloat16)``.
    """
    v = _BY_NAME.get(variant) if isinstance(variant, str) else variant
    if v is None:
        raise ValueError(f"variant must be one of {sorted(_BY_NAME)}, got {variant!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    torch = _torch()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    data = _data(train_size, test_size)
    global_batch = devices * batch_size
    steps = budget // global_batch
    budget = steps * global_batch
    gen = torch.Generator().manual_seed(seed)
    epochs = -(-budget // train_size) + 1
    order = torch.cat([torch.randperm(train_size, generator=gen) for _ in range(epochs)])
    torch.manual_seed(seed)
    _, affine_channel, _, net_class = _layers()
    net = net_class(
        _norm_factory(v.backbone, groups=v.groups, devices=devices),
        _norm_factory(v.head, groups=v.groups, devices=devices),
    )
    start = 0
    if v.pre_run:
        # the pre-run at the largest global batch, batch-wide BatchNorm, then freeze
        big = devices * max(BATCH_SIZES)
        start = int(PRE_RUN_FRACTION * budget) // big * big
        _train(
            net,
            data,
            global_batch=big,
            start=0,
            stop=start,
            budget=start,
            order=order,
            autocast=autocast,
        )
        layers = list(net.norms)
        n_backbone = len(net.BACKBONE)
        for i, kind in enumerate([v.backbone] * n_backbone + [v.head] * (len(layers) - n_backbone)):
            if kind == "affine_channel":
                net.norms[i] = affine_channel(layers[i])
        start = -(-start // global_batch) * global_batch
    train_loss = _train(
        net,
        data,
        global_batch=global_batch,
        start=start,
        stop=budget,
        budget=budget,
        order=order,
        autocast=autocast,
    )
    accuracy, loss = _evaluate(net, data, batch=None, autocast=autocast)
    batch_acc, _ = _evaluate(net, data, batch=global_batch, autocast=autocast)
    return {
        "variant": v.name,
        "norm": v.norm,
        "groups": v.groups,
        "placement": v.placement,
        "batch_size": batch_size,
        "devices": devices,
        "global_batch": global_batch,
        "seed": seed,
        "lr": BASE_LR * global_batch / BASE_BATCH,
        "steps": steps,
        "samples": budget,
        "eval_accuracy": accuracy,
        "eval_loss": loss,
        "batch_stat_accuracy": batch_acc,
        "train_loss": train_loss,
    }


# --------------------------------------------------------------------------------- output


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"  # fixed significant digits: same bytes on every rerun
    return str(value)


def format_csv(rows: Iterable[dict[str, Any]], /) -> str:
    """CSV text with a header, one line per row, columns :data:`COLUMNS`."""
    lines = [",".join(COLUMNS)]
    lines += [",".join(_fmt(r[c]) for c in COLUMNS) for r in rows]
    return "\n".join(lines) + "\n"


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _figure(rows: list[dict[str, Any]], /) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.4))
    axes = fig.subplots(1, 2)
    columns = (("eval_accuracy", "eval-mode test accuracy"), ("eval_loss", "eval-mode test loss"))
    for ax, (column, label) in zip(axes, columns, strict=True):
        table = cell_summary(rows, column=column)
        for i, v in enumerate(VARIANTS):
            if v.name not in table.index.get_level_values(0):
                continue
            cell = table.loc[v.name]
            shift = 1.0 + 0.025 * (i - len(VARIANTS) / 2)  # spread the error bars apart
            ax.errorbar(
                cell.index * shift,
                cell["mean"],
                yerr=cell["ci95"],
                marker="o",
                ms=4,
                capsize=2.5,
                lw=1.2,
                ls="--" if v.placement == "head" else "-",
                label=f"{v.name} ({v.placement})",
            )
        sizes = sorted({int(r["batch_size"]) for r in rows})
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
        ax.set_xlabel(f"per-device batch N ({rows[0]['devices']} simulated devices)")
        ax.set_ylabel(label)
        ax.grid(True, lw=0.3)
    axes[0].legend(fontsize=7)
    seeds = len({r["seed"] for r in rows})
    fig.suptitle(
        f"Shapes task, same samples seen at every N: mean over {seeds} seeds, 95% t-interval",
        fontsize=10,
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _cell(args: tuple[str, int, int, int, int, int]) -> dict[str, Any]:
    name, n, seed, budget, train_size, test_size = args
    return train_one(name, n, seed, budget=budget, train_size=train_size, test_size=test_size)


def run(
    *,
    quick: bool = False,
    variants: Sequence[str] | None = None,
    batch_sizes: Sequence[int] | None = None,
    seeds: int | None = None,
    jobs: int = 1,
) -> list[dict[str, Any]]:
    """Train every (variant, batch size, seed) cell and return the rows, sorted.

    ``quick`` uses :data:`QUICK_BATCH_SIZES`, two seeds, a 1024-sample budget and smaller
    data sets; a cell's row does not depend on ``jobs`` or on which other cells run.
    """
    names = [v.name for v in VARIANTS] if variants is None else list(variants)
    for name in names:
        if name not in _BY_NAME:
            raise ValueError(f"variants must be among {sorted(_BY_NAME)}, got {name!r}")
    sizes = list(
        (QUICK_BATCH_SIZES if quick else BATCH_SIZES) if batch_sizes is None else batch_sizes
    )
    count = (QUICK_SEEDS if quick else SEEDS) if seeds is None else seeds
    if count < 1:
        raise ValueError(f"seeds must be positive, got {count}")
    budget = QUICK_SAMPLE_BUDGET if quick else SAMPLE_BUDGET
    train_size, test_size = (2_048, 512) if quick else (TRAIN_SIZE, TEST_SIZE)
    # the slowest cells (small batches) first, so the pool ends together
    tasks = [
        (name, n, seed, budget, train_size, test_size)
        for n in sorted(sizes)
        for name in names
        for seed in range(count)
    ]
    if jobs > 1:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(jobs) as pool:
            rows = pool.map(_cell, tasks, chunksize=1)
    else:
        rows = [_cell(t) for t in tasks]
    order = {v.name: i for i, v in enumerate(VARIANTS)}
    return sorted(rows, key=lambda r: (order[r["variant"]], r["batch_size"], r["seed"]))


def _cpu(t: os.times_result) -> float:
    return t.user + t.system + t.children_user + t.children_system


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m varstats.batch_size [--quick] [--out DIR] [--jobs J]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="the CI subset (under a minute)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output directory")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per cell")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be positive")
    wall, before = time.perf_counter(), os.times()
    rows = run(quick=args.quick, jobs=args.jobs, seeds=args.seeds)
    _atomic_write(args.out / "batch_size.csv", format_csv(rows).encode())
    _atomic_write(args.out / "figures" / "batch_size.png", _figure(rows))
    print(
        f"{len(rows)} runs in {time.perf_counter() - wall:.0f} s wall, "
        f"{_cpu(os.times()) - _cpu(before):.0f} s CPU (this process and its workers)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
