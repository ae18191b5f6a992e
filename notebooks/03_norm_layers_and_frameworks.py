# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3. Norm layers and frameworks: the same input, six conventions
#
# BatchNorm, LayerNorm, GroupNorm and InstanceNorm are the same two steps over different
# axes (Wu & He 2018): normalize by the moments of a set of values, then apply a per-channel
# affine map. Frameworks differ in everything around those two steps: the moments
# algorithm and accumulator, where $\epsilon$ goes, how the output is formed, whether the
# running variance carries Bessel's correction. `varstats.conventions.CONVENTIONS` records
# these choices for PyTorch, TensorFlow, Keras, Flax, Caffe2 and ONNX (sources in
# `docs/frameworks.md`; PyTorch's CPU kernels are emulated bit for bit). This notebook shows
#
# 1. the same input through each convention's layers, against the exact output;
# 2. Bessel's correction in the running variance: who uses it, and what it changes at small N;
# 3. $\epsilon$ inside vs outside the square root;
# 4. folding an inference BatchNorm into the preceding convolution, and Caffe2's
#    AffineChannel, per dtype; and GroupNorm's moments at inference in low precision;
# 5. SyncBatchNorm: merging the shards' moments exactly vs PyTorch's rebuild of the variance
#    from $1/\sqrt{\sigma^2+\epsilon}$.
#
# Exact outputs come from `varstats.oracle.exact_normalize` (exact mean and variance, a
# correctly rounded inverse square root).

# %%
import dataclasses
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import varstats as vs
from varstats import conventions, norms, oracle, sweep

QUICK = os.environ.get("VARSTATS_NOTEBOOK_QUICK") == "1"
pd.set_option("display.width", 140)
CONVS = list(conventions.CONVENTIONS)
COLORS = dict(zip(CONVS, plt.get_cmap("tab10").colors, strict=False))


def load_errors() -> pd.DataFrame:
    """The sweep's ``errors.csv``; without one, a small sweep into a temporary directory."""
    frame, shown = sweep.load_or_sweep(quick=QUICK)
    print(f"{len(frame):,} sweep measurements from {shown}")
    return frame


# %% [markdown]
# ## What each framework chooses

# %%
FIELDS = [
    "eps",
    "momentum",
    "momentum_weights",
    "running_var_correction",
    "eps_placement",
    "batch_norm_output_form",
    "fused_multiply_add",
]
choices = pd.DataFrame(
    {name: {f: getattr(c, f) for f in FIELDS} for name, c in conventions.CONVENTIONS.items()}
)
for layer in conventions.LAYERS:
    choices.loc[f"{layer} moments"] = [c.algorithm(layer) for c in conventions.CONVENTIONS.values()]
choices.loc["float16 BN accumulator"] = [
    c.precision("batch_norm", "float16").accumulator for c in conventions.CONVENTIONS.values()
]
choices

# %% [markdown]
# ## The same input through every convention
#
# A float32 batch of shape (N, C, H, W) = (8, 4, 4, 4), standard normal plus an offset
# that grows from 1 to $10^6$ standard deviations. Each panel is one layer in training
# mode, each line one convention; the y axis is the largest absolute error of the output
# (which has unit scale, so $10^{-7}$ is float32 roundoff and 1 is garbage). Every
# convention uses its own default $\epsilon$ for BatchNorm and $10^{-5}$ for the others,
# and the exact output uses the same $\epsilon$.

# %%
SHAPE = (8, 4, 4, 4)
GROUPS = 2
OFFSETS = 10.0 ** np.arange(0, 7)
rng = np.random.default_rng(3)
z = rng.standard_normal(SHAPE)


def exact_output(layer: str, x: np.ndarray, eps: float) -> np.ndarray:
    if layer == "batch_norm":
        return oracle.exact_normalize(x, axis=(0, 2, 3), eps=eps)
    if layer == "layer_norm":
        return oracle.exact_normalize(x, axis=(1, 2, 3), eps=eps)
    if layer == "instance_norm":
        return oracle.exact_normalize(x, axis=(2, 3), eps=eps)
    g = x.reshape(x.shape[0], GROUPS, -1)
    return oracle.exact_normalize(g, axis=-1, eps=eps).reshape(x.shape)


def layer_output(layer: str, x: np.ndarray, convention: str, eps: float) -> np.ndarray:
    if layer == "batch_norm":
        return norms.batch_norm(x, None, None, training=True, eps=eps, convention=convention).y
    if layer == "layer_norm":
        return norms.layer_norm(x, x.shape[1:], eps=eps, convention=convention)
    if layer == "instance_norm":
        return norms.instance_norm(x, eps=eps, convention=convention)
    return norms.group_norm(x, GROUPS, eps=eps, convention=convention)


same_input = []
for offset in OFFSETS:
    x = vs.round_to(offset + z, "float32")
    for layer in conventions.LAYERS:
        for name, conv in conventions.CONVENTIONS.items():
            eps = conv.eps if layer == "batch_norm" else 1e-5
            y = layer_output(layer, x, name, eps).astype(np.float64)
            err = np.abs(y - exact_output(layer, x, eps))
            same_input.append(
                {
                    "offset": offset,
                    "layer": layer,
                    "convention": name,
                    "max abs error": float(np.max(err)) if not np.isnan(err).any() else np.inf,
                    "NaN": int(np.isnan(y).sum()),
                }
            )
same_input = pd.DataFrame(same_input)

fig, axes = plt.subplots(1, 4, figsize=(18, 4.3), sharey=True, layout="constrained")
for ax, layer in zip(axes, conventions.LAYERS, strict=True):
    d = same_input[same_input["layer"] == layer]
    for name in CONVS:
        e = d[d["convention"] == name]
        ax.loglog(
            e["offset"],
            np.clip(e["max abs error"], 1e-8, 1e3),
            "o-",
            ms=3,
            color=COLORS[name],
            label=f"{name} ({conventions.CONVENTIONS[name].algorithm(layer)})",
        )
    ax.set_title(layer)
    ax.set_xlabel("offset / std of the input")
    ax.legend(fontsize=7, title="convention (moments)", title_fontsize=7)
axes[0].set_ylabel("max |output - exact| (clipped to [1e-8, 1e3])")
fig.suptitle("float32 input (8, 4, 4, 4), training mode: output error per framework convention")
plt.show()

# %% [markdown]
# Every convention loses about $\log_{10}(|\mu|/\sigma)$ digits: in float32 the mean itself
# carries an absolute error of about $u|\mu|$, which the output sees divided by $\sigma$, and
# the folded output form $x a + (\beta - \mu a)$ (PyTorch's BatchNorm and InstanceNorm,
# Keras, Caffe2) cancels the same way even with exact moments. The one-pass conventions
# (Flax's `use_fast_variance`, Caffe2) lose twice as many, $\kappa^2 u$, and return garbage
# once the offset passes about $10^3$ standard deviations ($\kappa^2 u \approx 1$).
#
# The sweep runs the same comparison on its norm-layer cases (`kind == "layer"` in
# `results/errors.csv`): median correct digits of the output per convention and layer.

# %%
errors = load_errors()
layer_rows = errors[errors["kind"] == "layer"]
if len(layer_rows):
    sweep_layers = (
        layer_rows.groupby(["layer", "storage", "convention"])["lre_median"]
        .median()
        .unstack("convention")
    )
    display_table = sweep_layers.map(lambda v: f"{v:.1f}")
else:
    display_table = "the sweep in results/ has no norm-layer rows"
display_table

# %% [markdown]
# ## Bessel's correction in the running variance
#
# Every framework normalizes the training batch by its *biased* variance $M_2/n$. They
# disagree on what enters the running average used at inference: PyTorch, TensorFlow and
# Caffe2 store the unbiased $M_2/(n-1)$, Keras, Flax and ONNX the biased one. Since
# $E[M_2/n] = \frac{n-1}{n}\sigma^2$, the biased choice settles at a running variance too
# small by the factor $(n-1)/n$, so inference outputs come out larger by
# $\sqrt{n/(n-1)}$: 41% at $n = 2$, 3% at $n = 16$.
#
# $n$ is the number of values per channel, $N \cdot H \cdot W$: the choice matters for fully
# connected layers (inputs (N, C)) and small feature maps, not for large convolutional
# maps. Below, each convention's `batch_norm` runs in training mode on (N, C) batches of
# standard normal data (true variance 1), with its own momentum; every one of the C
# channels is an independent replica, and the running variance is averaged over channels
# and over the second half of the steps.

# %%
BATCHES = [2, 4, 8, 16, 32, 64]
C_REPLICAS = 64 if QUICK else 256
STEPS = 150 if QUICK else 600


def settled_running_var(name: str, n: int) -> float:
    conv = conventions.CONVENTIONS[name]
    # let the running average forget its start within the run: at least a 2/(1 - weight) horizon
    momentum = conv.momentum
    gen = np.random.default_rng(n)
    rm = np.zeros(C_REPLICAS, np.float32)
    rv = np.ones(C_REPLICAS, np.float32)
    seen = []
    for step in range(STEPS):
        x = gen.standard_normal((n, C_REPLICAS)).astype(np.float32)
        out = norms.batch_norm(x, rm, rv, training=True, momentum=momentum, convention=name)
        rm, rv = out.running_mean, out.running_var
        if step >= STEPS // 2:
            seen.append(rv.astype(np.float64).mean())
    return float(np.mean(seen))


bessel = pd.DataFrame(
    {name: [settled_running_var(name, n) for n in BATCHES] for name in CONVS}, index=BATCHES
)
bessel.index.name = "values per channel n"

fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
for name in CONVS:
    corr = conventions.CONVENTIONS[name].running_var_correction
    ax.semilogx(
        bessel.index,
        bessel[name],
        "o-" if corr else "s--",
        color=COLORS[name],
        label=f"{name} (correction={corr})",
        base=2,
    )
nn = np.array(BATCHES, dtype=float)
ax.semilogx(nn, (nn - 1) / nn, "k:", base=2, label="(n-1)/n")
ax.axhline(1.0, color="grey", lw=0.8)
ax.set_xlabel("values per channel in a training batch, n")
ax.set_ylabel("settled running variance (true variance 1)")
ax.set_title("Running variance after training, by framework convention")
ax.legend(fontsize=8)
plt.show()
bessel.round(3)

# %% [markdown]
# ## $\epsilon$ inside or outside the square root
#
# $1/\sqrt{\sigma^2+\epsilon}$ (every preset here) damps channels whose standard deviation is
# below $\sqrt\epsilon$; $1/(\sqrt{\sigma^2}+\epsilon)$ (used by some hand-written kernels)
# only damps below $\epsilon$ itself, so with $\epsilon = 10^{-5}$ it amplifies a channel of
# standard deviation $10^{-4}$ (numerical noise, often) to unit variance where the inside form
# gives 0.03. Below: the standard deviation of the normalized output of channels with
# standard deviations from $10^{-6}$ to 10, through the ONNX preset and the same preset with
# `eps_placement="outside"`.

# %%
EPS = 1e-5
sigmas = np.logspace(-6, 1, 29)
x_eps = vs.round_to(rng.standard_normal((256, 1)) * sigmas[None, :], "float64")
# standardize every channel exactly to its sigma so the x axis is exact
x_eps = (x_eps - x_eps.mean(axis=0)) / x_eps.std(axis=0) * sigmas
placement = {}
for where in ("inside", "outside"):
    conv = dataclasses.replace(conventions.CONVENTIONS["onnx"], eps_placement=where)
    y = norms.batch_norm(x_eps, None, None, training=True, eps=EPS, convention=conv).y
    placement[where] = y.std(axis=0)

fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
ax.loglog(sigmas, placement["inside"], "o-", ms=3, label=r"inside: $1/\sqrt{\sigma^2+\epsilon}$")
ax.loglog(sigmas, placement["outside"], "s-", ms=3, label=r"outside: $1/(\sigma+\epsilon)$")
ax.axvline(np.sqrt(EPS), color="grey", ls=":", label=r"$\sigma = \sqrt{\epsilon}$")
ax.axvline(EPS, color="grey", ls="--", label=r"$\sigma = \epsilon$")
ax.set_xlabel(r"standard deviation of the channel, $\sigma$")
ax.set_ylabel("standard deviation of the normalized output")
ax.set_title(r"$\epsilon = 10^{-5}$ inside vs outside the square root")
ax.legend()
plt.show()

# %% [markdown]
# ## Folding BatchNorm into the convolution, and AffineChannel, per dtype
#
# At inference a BatchNorm with frozen statistics is a per-channel affine map, which can be
# folded into the preceding convolution (`norms.fold_batch_norm`: $W' = W s$,
# $b' = (b - \mu)s + \beta$ with $s = \gamma/\sqrt{\sigma^2+\epsilon}$) or applied as Caffe2's
# AffineChannel on the stored convolution output (`norms.affine_channel`:
# $z\,a + (\beta - \mu a)$ with $a, \beta - \mu a$ precomputed in float64 and stored).
# GroupNorm cannot be folded: its moments are computed at inference.
#
# Setup: input (2, 8, 8, 8) with mean $r$ and unit spread, a random 3x3 convolution, the
# BatchNorm statistics those of the convolution output. Everything is stored in the dtype;
# the convolution accumulates in float64 (as tensor cores accumulate in at least float32)
# and rounds its output once. Three paths against the float64 evaluation of the same stored
# parameters: the unfolded conv, stored, then BatchNorm in the dtype (ONNX's centered
# form); the folded conv; AffineChannel on the stored conv output. The x axis is
# $|\mu|/\sigma$ of the convolution output.

# %%
FOLD_DTYPES = ("float16", "bfloat16", "float32")
FOLD_OFFSETS = [0.0, 1.0, 3.0, 10.0, 30.0, 100.0]
rng_fold = np.random.default_rng(11)
W64 = rng_fold.standard_normal((8, 8, 3, 3)) * 0.1
Z64 = rng_fold.standard_normal((2, 8, 8, 8))
fold_rows = []
for dtype in FOLD_DTYPES:
    W = vs.round_to(W64, dtype)
    gamma, beta = vs.round_to(np.ones(8), dtype), vs.round_to(np.zeros(8), dtype)
    for r in FOLD_OFFSETS:
        x = vs.round_to(r + Z64, dtype)
        conv64 = norms.conv2d(x.astype(np.float64), W.astype(np.float64))
        rm = vs.round_to(conv64.mean(axis=(0, 2, 3)), dtype)
        rv = vs.round_to(conv64.var(axis=(0, 2, 3)), dtype)
        ch = (1, -1, 1, 1)
        ref = (conv64 - rm.astype(np.float64).reshape(ch)) / np.sqrt(
            rv.astype(np.float64).reshape(ch) + EPS
        )
        z_stored = norms.conv2d(x, W)
        unfolded = norms.batch_norm(
            z_stored, rm, rv, weight=gamma, bias=beta, eps=EPS, convention="onnx"
        ).y
        fw, fb = norms.fold_batch_norm(W, None, rm, rv, gamma, beta, EPS)
        folded = norms.conv2d(x, fw, fb)
        a64 = 1.0 / np.sqrt(rv.astype(np.float64) + EPS)
        affine = norms.affine_channel(
            z_stored, vs.round_to(a64, dtype), vs.round_to(-rm.astype(np.float64) * a64, dtype)
        )
        ratio = float(np.max(np.abs(rm.astype(np.float64)) / np.sqrt(rv.astype(np.float64))))
        for path, y in (
            ("unfolded BN", unfolded),
            ("folded into conv", folded),
            ("AffineChannel", affine),
        ):
            fold_rows.append(
                {
                    "dtype": dtype,
                    "|mean|/std": ratio,
                    "path": path,
                    "max abs error": float(np.max(np.abs(y.astype(np.float64) - ref))),
                }
            )
fold = pd.DataFrame(fold_rows)

fig, axes = plt.subplots(1, 3, figsize=(16, 4.3), layout="constrained")
for ax, dtype in zip(axes, FOLD_DTYPES, strict=True):
    d = fold[fold["dtype"] == dtype]
    for path, style in (("unfolded BN", "o-"), ("folded into conv", "s-"), ("AffineChannel", "^-")):
        e = d[d["path"] == path]
        ax.loglog(e["|mean|/std"], e["max abs error"], style, ms=4, label=path)
    u = vs.finfo(dtype).unit_roundoff
    rr = np.array([d["|mean|/std"].min(), d["|mean|/std"].max()])
    ax.loglog(rr, u * np.maximum(rr, 1), "k:", label=r"$u \cdot |\mu|/\sigma$")
    ax.set_title(f"{dtype}")
    ax.set_xlabel(r"$|\mu|/\sigma$ of the convolution output")
    ax.set_ylabel("max |output - float64 reference|")
    ax.legend(fontsize=8)
fig.suptitle("Inference BatchNorm: unfolded, folded into the convolution, AffineChannel")
plt.show()

# %% [markdown]
# GroupNorm computes its moments at inference. In float16 and bfloat16 the accumulator
# decides how much that costs: the same convolution outputs through `group_norm` with the
# moments accumulated in the storage format and in float32 (Welford, PyTorch's kernel
# algorithm), against the exact output.

# %%
gn_rows = []
for dtype in ("float16", "bfloat16"):
    for r in FOLD_OFFSETS:
        x = vs.round_to(r + Z64, dtype)
        z_stored = norms.conv2d(x, vs.round_to(W64, dtype))
        y_exact = oracle.exact_normalize(z_stored.reshape(2, GROUPS, -1), axis=-1, eps=EPS)
        for acc in (dtype, "float32"):
            y = norms.group_norm(
                z_stored,
                GROUPS,
                eps=EPS,
                convention="onnx",
                algorithm="welford",
                precision=vs.Precision(dtype, acc),
            )
            err = np.abs(y.astype(np.float64).reshape(2, GROUPS, -1) - y_exact)
            gn_rows.append(
                {"dtype": dtype, "input mean r": r, "accumulator": acc, "max abs error": err.max()}
            )
gn = pd.DataFrame(gn_rows).pivot(
    index="input mean r", columns=["dtype", "accumulator"], values="max abs error"
)
gn.map(lambda v: f"{v:.3g}")

# %% [markdown]
# ## SyncBatchNorm: exact merge vs the invstd rebuild
#
# With the batch split over devices, each shard computes its moments and the shards combine
# them. Merging (count, mean, $M_2$) with Chan's update is exact up to one rounding per
# step. PyTorch's `SyncBatchNorm` instead sends (mean, $1/\sqrt{\sigma_k^2+\epsilon}$) and
# rebuilds $\sigma_k^2 = 1/r_k^2 - \epsilon$: a subtraction that cancels when
# $\sigma_k^2 \ll \epsilon$, and $r_k$ carries only float32's digits. Below: 4 shards of
# (2, C, 4, 4) float32 data, channels with standard deviations from $10^{-5}$ to 10, and the
# relative error of the merged unbiased variance (what enters the running variance) against
# the exact variance of the whole batch. Each shard's own moments are computed accurately
# (corrected two-pass, float64 accumulator) so that only the combination differs.

# %%
C_SYNC = 22
sync_sigmas = np.logspace(-5, 1, C_SYNC)
rng_sync = np.random.default_rng(5)
shards = [
    vs.round_to(
        rng_sync.standard_normal((2, C_SYNC, 4, 4)) * sync_sigmas[None, :, None, None],
        "float32",
    )
    for _ in range(4)
]
whole = np.concatenate(shards, axis=0)
exact_unbiased = oracle.exact_var(whole, axis=(0, 2, 3), correction=1)
sync = {}
for scheme in ("merge", "invstd"):
    out = norms.sync_batch_norm(
        shards,
        np.zeros(C_SYNC, np.float32),
        np.ones(C_SYNC, np.float32),
        momentum=1.0,  # running_var becomes the merged unbiased variance itself
        eps=EPS,
        scheme=scheme,
        convention="pytorch",
        algorithm="corrected_two_pass",
        precision=vs.Precision("float32", "float64"),
    )
    sync[scheme] = np.abs(out.running_var.astype(np.float64) / exact_unbiased - 1)

fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
floor = vs.finfo("float32").unit_roundoff / 4
ax.loglog(sync_sigmas**2, np.maximum(sync["merge"], floor), "o-", label="exact merge (Chan)")
ax.loglog(
    sync_sigmas**2, np.maximum(sync["invstd"], floor), "s-", label="PyTorch: rebuild from invstd"
)
ax.axvline(EPS, color="grey", ls=":", label=r"$\sigma^2 = \epsilon$")
ax.set_xlabel(r"channel variance $\sigma^2$")
ax.set_ylabel("relative error of the merged variance (floored at u/4)")
ax.set_title(r"SyncBatchNorm over 4 float32 shards, $\epsilon = 10^{-5}$")
ax.legend()
plt.show()

# %% [markdown]
# ## Conclusion

# %%
big = same_input[same_input["offset"] == 1e4]
worst_bn = big[big["layer"] == "batch_norm"].set_index("convention")["max abs error"]
biased = [c for c in CONVS if not conventions.CONVENTIONS[c].running_var_correction]
unbiased = [c for c in CONVS if conventions.CONVENTIONS[c].running_var_correction]
f16 = fold[fold["dtype"] == "float16"]
top_ratio = f16["|mean|/std"].max()
f16_top = f16[f16["|mean|/std"] == top_ratio].set_index("path")["max abs error"]
small = sync_sigmas**2 < EPS / 10
gn_f16, gn_f32 = gn[("float16", "float16")], gn[("float16", "float32")]
print(
    f"At an offset of 1e4 standard deviations, BatchNorm's output error ranges from "
    f"{worst_bn.min():.1g} ({worst_bn.idxmin()}) to {worst_bn.max():.2g} "
    f"({worst_bn.idxmax()}): the moments algorithm and the output form decide it.\n"
    f"With n = 2 values per channel the biased running variance settles at "
    f"{bessel.loc[2, biased].mean():.2f} and the Bessel-corrected one at "
    f"{bessel.loc[2, unbiased].mean():.2f} (true 1). In float16 at |mean|/std = "
    f"{top_ratio:.0f}, folding gives an error of {f16_top['folded into conv']:.2g} against "
    f"{f16_top['unfolded BN']:.2g} unfolded and {f16_top['AffineChannel']:.2g} for "
    f"AffineChannel.\n"
    f"For channels with variance below eps/10, SyncBatchNorm's invstd rebuild has a median "
    f"relative error of {np.median(sync['invstd'][small]):.1g} against "
    f"{np.median(sync['merge'][small]):.1g} for the exact merge. GroupNorm's moments at "
    f"inference, accumulated in float16, reach an output error of {gn_f16.max():.2g} "
    f"(float32 accumulator: {gn_f32.max():.2g})."
)
