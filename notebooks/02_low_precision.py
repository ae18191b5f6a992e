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
# # 2. Low precision: float16 and bfloat16 storage, and where the accumulator matters
#
# Mixed-precision training stores activations in float16 (11 significant bits) or bfloat16
# (8 bits). A variance kernel can accumulate in that same format or in float32. This
# notebook shows
#
# 1. where a sum in the storage format stalls: adding 1 to 2048 in float16 (256 in bfloat16)
#    rounds back to 2048, so the float16 sum of 10,000 ones is 2048;
# 2. what that does to each variance algorithm, as a function of $n$, with sequential sums,
#    with pairwise sums, and with a float32 accumulator;
# 3. from the sweep (`results/errors.csv`), correct digits and failures (negative, NaN,
#    infinite variances) per algorithm for the four low-precision storage/accumulator pairs.
#
# Correct digits are the log relative error against the exact variance of the stored values
# (`varstats.oracle`), capped at the *accumulator's* digits (3.3 for float16, 2.4 for
# bfloat16, 7.2 for float32), as everywhere in `results/summary.md`. The variance comes back
# in the accumulator's format, and the exact variance of float16 values is in general not a
# float16 number, so with a float32 accumulator a result can be right to more digits than
# float16 itself carries. "Full accuracy", as in the summary, is at least the storage
# format's digits minus one.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import varstats as vs
from varstats import cases, metrics, oracle, sweep

QUICK = os.environ.get("VARSTATS_NOTEBOOK_QUICK") == "1"
pd.set_option("display.width", 140)


def load_errors() -> pd.DataFrame:
    """The sweep's ``errors.csv``; without one, a small sweep into a temporary directory."""
    frame, shown = sweep.load_or_sweep(quick=QUICK)
    print(f"{len(frame):,} sweep measurements from {shown}")
    return frame


LOW = ("float16", "bfloat16")
P = {d: vs.finfo(d).mant for d in vs.DTYPES}  # significant bits, implicit bit included
print({d: f"p = {P[d]} bits, u = 2^-{P[d]}, {vs.finfo(d).digits:.1f} digits" for d in vs.DTYPES})

# %% [markdown]
# ## Where the sum stalls
#
# A running sum $s$ in a format with $p$ significant bits has spacing $2^{e-p+1}$ in the
# binade $[2^e, 2^{e+1})$. At $s = 2^p$ the spacing is 2, so $s + 1$ is a tie and rounds
# to even: back to $s$. From then on adding ones changes nothing. Below, the running
# left-to-right sum of 10,000 ones in each format (`np.add.accumulate` rounds every partial
# sum in the array's dtype).

# %%
N_ONES = 10_000
k = np.arange(1, N_ONES + 1)
fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
stall = {}
for dtype in ("float16", "bfloat16", "float32"):
    running = np.add.accumulate(np.ones(N_ONES, dtype=vs.as_dtype(dtype))).astype(np.float64)
    stall[dtype] = running[-1]
    ax.loglog(k, running, label=f"{dtype}: final sum {running[-1]:g}")
for dtype, style in (("float16", ":"), ("bfloat16", "--")):
    ax.axhline(
        2.0 ** P[dtype], color="grey", lw=0.8, ls=style, label=f"$2^{{{P[dtype]}}}$ ({dtype} p)"
    )
ax.set_xlabel("number of ones added, k")
ax.set_ylabel("running sum (log scale)")
ax.set_title("Sequential sum of 10,000 ones, every partial sum rounded")
ax.legend()
plt.show()
assert stall["float16"] == 2.0 ** P["float16"]
assert stall["bfloat16"] == 2.0 ** P["bfloat16"]

# %% [markdown]
# The mean a kernel reports is that sum over $n$. Pairwise summation avoids the stall for
# ones (its partial sums stay small until the last levels of the tree, where they are
# exact multiples of the block), and a float32 accumulator avoids it altogether:

# %%
ones_rows = []
for storage in LOW:
    ones = np.ones(N_ONES, dtype=vs.as_dtype(storage))
    for acc in (storage, "float32"):
        for summation in ("sequential", "pairwise"):
            mean, var = vs.mean_var(
                ones, algorithm="naive", summation=summation, precision=vs.Precision(storage, acc)
            )
            ones_rows.append(
                {
                    "storage": storage,
                    "accumulator": acc,
                    "summation": summation,
                    "mean (exact 1)": float(mean),
                    "one-pass variance (exact 0)": float(var),
                }
            )
pd.DataFrame(ones_rows).set_index(["storage", "accumulator", "summation"])

# %% [markdown]
# ## What the stall does to each algorithm
#
# Normal data with mean 1 and standard deviation 0.1 (offset/std 10, $\kappa \approx 10$),
# stored in float16 or bfloat16, for $n$ from 16 to 32,768. Sum-based algorithms (naive,
# shifted, two-pass, corrected two-pass, compensated) are run with sequential sums and with
# pairwise sums; Welford, pairwise (tree of merges) and Chan (blocked merges) have no sum
# to choose. The stall sets in at $n \approx 2^p/\bar x$: 2048 for float16, 256 for
# bfloat16 (dotted lines). (Beyond $n = 65504$ a float16 accumulator cannot even hold the
# count: $n$ rounds to infinity and every mean becomes 0.)

# %%
SUMMED = ("naive", "shifted", "two_pass", "corrected_two_pass", "compensated")
ALGOS = list(vs.ALGORITHMS)
COLORS = dict(zip(ALGOS, plt.get_cmap("tab10").colors, strict=False))
NS = 2 ** np.arange(4, 14 if QUICK else 16)  # up to 32768: float16 counts stop at 65504
ROWS = 4  # independent samples per n; the median is plotted


def lre_vs_n(storage: str, acc: str, summation: str) -> pd.DataFrame:
    out = []
    for n in NS:
        x = cases.generate(int(n), storage=storage, offset=1.0, scale=0.1, batch=ROWS, seed=int(n))
        exact_v = oracle.exact_var(x, axis=-1)
        for algorithm in ALGOS:
            options = {"summation": summation} if algorithm in SUMMED else {}
            v = vs.var(
                x, axis=-1, algorithm=algorithm, precision=vs.Precision(storage, acc), **options
            )
            digits = metrics.lre(v, exact_v, acc)  # capped at the accumulator's digits
            out.append({"algorithm": algorithm, "n": int(n), "lre": float(np.median(digits))})
    return pd.DataFrame(out)


PANELS = [("sequential", "same"), ("pairwise", "same"), ("sequential", "float32")]
curves = {
    (storage, summation, which): lre_vs_n(storage, storage if which == "same" else which, summation)
    for storage in LOW
    for summation, which in PANELS
}

fig, axes = plt.subplots(2, 3, figsize=(16, 8), sharex=True, layout="constrained")
for i, storage in enumerate(LOW):
    for j, (summation, which) in enumerate(PANELS):
        ax = axes[i, j]
        acc = storage if which == "same" else which
        df = curves[(storage, summation, which)]
        for algorithm in ALGOS:
            d = df[df["algorithm"] == algorithm]
            ax.semilogx(d["n"], d["lre"], "o-", ms=3, color=COLORS[algorithm], label=algorithm)
        ax.axvline(2.0 ** P[storage], color="grey", ls=":", lw=1, label="$n = 2^p$ (stall)")
        ax.set_title(f"{storage} storage, {acc} accumulator, {summation} sums")
        ax.set_xlabel("n (values per variance)")
        ax.set_ylabel(f"correct digits (of {vs.finfo(acc).digits:.1f})")
        ax.set_ylim(-0.1, vs.finfo(acc).digits + 0.2)
axes[0, 0].legend(fontsize=8, loc="lower left")
fig.suptitle("Variance of N(1, 0.1^2) data in low precision: median correct digits of 4 samples")
plt.show()

# %% [markdown]
# What happens, algorithm by algorithm, at $n = 8192$ in float16 with float16 arithmetic and
# sequential sums (the mean is where the damage starts):

# %%
N_SHOW = 8192
x = cases.generate(N_SHOW, storage="float16", offset=1.0, scale=0.1, seed=N_SHOW)
exact_mean = float(oracle.exact_mean(x))
exact_var = float(oracle.exact_var(x))
show = []
for algorithm in ALGOS:
    options = {"summation": "sequential"} if algorithm in SUMMED else {}
    for acc in ("float16", "float32"):
        m, v = vs.mean_var(
            x, algorithm=algorithm, precision=vs.Precision("float16", acc), **options
        )
        show.append(
            {
                "algorithm": algorithm,
                "accumulator": acc,
                "mean": float(m),
                "variance": float(v),
                "correct digits": float(metrics.lre(v, exact_var, acc)),
            }
        )
table = pd.DataFrame(show).pivot(index="algorithm", columns="accumulator")
print(f"exact mean {exact_mean:.6g}, exact variance {exact_var:.6g}")
table

# %% [markdown]
# ## From the sweep: every algorithm, the four low-precision pairs
#
# Median correct digits (capped at the accumulator's digits) over the sweep's normal
# data of unit scale at every $n$ and offset, and the number of negative or non-finite
# variances over every generated case (variants ending in `/seq` use sequential sums).
# Non-finite results in float16 come from its range, not its precision: the largest
# float16 is 65504, so a sum of squares of 1000 values near 10 overflows, and a count
# $n > 65504$ is itself infinite.

# %%
errors = load_errors()
low = errors[(errors["kind"] == "var") & errors["storage"].isin(LOW)].copy()
low["pair"] = low["storage"] + " / " + low["accumulator"]
# median correct digits over each case's rows; the sweep caps them at the accumulator's
low["digits"] = low["lre_median"]
normal = low[(low["distribution"] == "normal") & (low["scale_point"] == "unit")]
summary = (
    normal[normal["variant"].isin(ALGOS)]
    .groupby(["variant", "pair"])["digits"]
    .median()
    .unstack("pair")
    .reindex(ALGOS)
)

fig, ax = plt.subplots(figsize=(11, 4.5), layout="constrained")
pairs = list(summary.columns)
width = 0.8 / len(pairs)
for i, pair in enumerate(pairs):
    ax.bar(np.arange(len(ALGOS)) + i * width, summary[pair], width, label=pair)
ax.set_xticks(np.arange(len(ALGOS)) + 0.4 - width / 2, ALGOS, rotation=30, ha="right")
ax.set_ylabel("median correct digits (of the accumulator's)")
ax.set_title("Low-precision storage: median correct digits over the sweep (normal data)")
ax.legend(title="storage / accumulator")
plt.show()

# %%
fails = low.groupby(["pair", "variant"])[["negative", "nan", "inf"]].sum().astype(int)
fails = fails[fails.sum(axis=1) > 0].unstack("pair").fillna(0).astype(int)
print("data rows with a negative, NaN or infinite variance (every distribution and scale)")
fails

# %% [markdown]
# ## Conclusion

# %%
seq16 = curves[("float16", "sequential", "same")]
pair16 = curves[("float16", "pairwise", "same")]
wide16 = curves[("float16", "sequential", "float32")]
n_big = int(NS[-1])


def at(df: pd.DataFrame, algorithm: str, n: int) -> float:
    return float(df[(df["algorithm"] == algorithm) & (df["n"] == n)]["lre"].iloc[0])


deficit = summary.sub([vs.finfo(p.split(" / ")[0]).digits for p in summary.columns], axis=1)
same_pairs = [c for c in summary.columns if c.split(" / ")[0] == c.split(" / ")[1]]
wide_pairs = [c for c in summary.columns if c.endswith("/ float32")]
worst_same = deficit[same_pairs].min(axis=1)
lowest_wide = summary[wide_pairs].stack().idxmin()  # (algorithm, pair)
print(
    f"A float16 running sum stalls at {stall['float16']:g} and a bfloat16 one at "
    f"{stall['bfloat16']:g}; with sequential float16 sums, two-pass keeps "
    f"{at(seq16, 'two_pass', n_big):.1f} of 3.3 correct digits at n = {n_big} "
    f"(one-pass {at(seq16, 'naive', n_big):.1f}), against {at(pair16, 'two_pass', n_big):.1f} "
    f"with pairwise sums and {at(wide16, 'two_pass', n_big):.1f} of 7.2 with a float32 "
    "accumulator.\n"
    f"Over the sweep, with a float32 accumulator every algorithm's median keeps at least "
    f"{summary[wide_pairs].min().min():.1f} correct digits (the lowest: {lowest_wide[0]}, "
    f"{lowest_wide[1]}), {deficit.stack()[lowest_wide]:+.1f} against that storage format's "
    "own digits; "
    f"accumulating in float16/bfloat16 itself, the worst median falls "
    f"{max(0.0, -worst_same.min()):.1f} digits short ({worst_same.idxmin()})."
)
