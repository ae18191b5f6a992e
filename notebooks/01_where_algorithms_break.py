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
# # 1. Where each variance algorithm breaks
#
# A variance algorithm loses accuracy as the data's mean grows relative to its spread. The
# condition number $\kappa = \sqrt{1 + n\bar x^2/S}$ (Chan, Golub & LeVeque 1983, with
# $S = \sum (x_i - \bar x)^2$) measures this: for data with offset/std ratio $r$,
# $\kappa \approx \sqrt{1 + r^2}$. This notebook shows
#
# 1. the textbook one-pass formula $\sum x^2 - (\sum x)^2/n$ cancelling catastrophically on a
#    four-number example, next to Knuth's running update (TAOCP vol. 2, section 4.2.2) and
#    the two-pass algorithm;
# 2. from the sweep (`results/errors.csv`), the correct digits of every algorithm against
#    $\kappa$ and against $n$, for every storage/accumulator precision, with the first-order
#    error bounds of Chan, Golub & LeVeque drawn as the digits each algorithm is guaranteed;
# 3. where each algorithm breaks (keeps less than one correct digit), and whether any
#    measured error exceeds its bound.
#
# Errors are measured against `varstats.oracle`: the exact variance of the stored values,
# rounded once to float64. "Correct digits" is the log relative error (LRE), capped at the
# digits of the accumulator (3.3 float16, 2.4 bfloat16, 7.2 float32, 16.0 float64).

# %%
import os
from fractions import Fraction

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import varstats as vs
from varstats import cases, metrics, oracle, report, sweep

QUICK = os.environ.get("VARSTATS_NOTEBOOK_QUICK") == "1"  # nothing here is expensive
pd.set_option("display.width", 140)


def load_errors() -> pd.DataFrame:
    """The sweep's ``errors.csv``; without one, a small sweep into a temporary directory."""
    frame, shown = sweep.load_or_sweep(quick=QUICK)
    print(f"{len(frame):,} sweep measurements from {shown}")
    return frame


errors = load_errors()

# %% [markdown]
# ## The textbook formula on four numbers
#
# Take the float32 data $x = (40000, 40001, 40002, 40003)$ (the onnxruntime #28463 input).
# The variance is exactly $1.25$. The one-pass formula forms $\sum x_i^2 \approx 6.4\times
# 10^9$ and $(\sum x_i)^2/n$ of the same size and subtracts them. In float32 each carries
# an absolute error of up to half an ulp, $2^{-24}\cdot 6.4\times 10^9 \approx 256$: two
# hundred times the answer. Every float32 step, rounded as the hardware rounds it:

# %%
x4 = np.array([40000, 40001, 40002, 40003], dtype=np.float32)
n4 = len(x4)


def f32_sum(values: np.ndarray) -> np.float32:
    """Left-to-right float32 sum (every partial sum rounded to float32)."""
    s = np.float32(0)
    for v in values:
        s = np.float32(s + v)
    return s


exact_x = [Fraction(float(v)) for v in x4]
steps = {
    "sum x": (f32_sum(x4), sum(exact_x)),
    "sum x^2": (f32_sum(x4 * x4), sum(v * v for v in exact_x)),
}
steps["(sum x)^2 / n"] = (
    np.float32(steps["sum x"][0] * steps["sum x"][0]) / np.float32(n4),
    steps["sum x"][1] ** 2 / n4,
)
steps["S = sum x^2 - (sum x)^2/n"] = (
    np.float32(steps["sum x^2"][0] - steps["(sum x)^2 / n"][0]),
    steps["sum x^2"][1] - steps["(sum x)^2 / n"][1],
)
steps["variance S/n"] = (np.float32(steps["S = sum x^2 - (sum x)^2/n"][0] / n4), None)
steps["variance S/n"] = (steps["variance S/n"][0], steps["S = sum x^2 - (sum x)^2/n"][1] / n4)
pd.DataFrame(
    {
        "float32": {k: f"{float(v[0]):.10g}" for k, v in steps.items()},
        "exact": {k: f"{float(v[1]):.10g}" for k, v in steps.items()},
        "float32 ulp at this size": {
            k: metrics.ulp(float(v[1]), "float32")[()] for k, v in steps.items()
        },
    }
)

# %% [markdown]
# The float32 variance is negative: a normalization layer taking its square root returns
# NaN. `varstats` emulates the same arithmetic (`algorithm="naive"`), and the oracle agrees
# with the exact column:

# %%
{
    "vs.var(naive, sequential)": float(vs.var(x4, algorithm="naive", summation="sequential")),
    "vs.var(two_pass)": float(vs.var(x4)),
    "oracle.exact_var": float(oracle.exact_var(x4)),
}

# %% [markdown]
# ### Knuth's running update
#
# Knuth (TAOCP vol. 2, 4.2.2, after Welford 1962) updates the mean and the sum of squared
# deviations one value at a time,
# $M_k = M_{k-1} + (x_k - M_{k-1})/k$, $S_k = S_{k-1} + (x_k - M_{k-1})(x_k - M_k)$,
# so it only ever squares deviations from the current mean, never the raw values. The same
# four numbers, in float32:

# %%
mean_k, s_k, trace = np.float32(0), np.float32(0), []
for k, xk in enumerate(x4, start=1):
    delta = np.float32(xk - mean_k)
    mean_k = np.float32(mean_k + np.float32(delta / np.float32(k)))
    s_k = np.float32(s_k + np.float32(delta * np.float32(xk - mean_k)))
    trace.append({"k": k, "x_k": float(xk), "M_k": float(mean_k), "S_k": float(s_k)})
trace_df = pd.DataFrame(trace).set_index("k")
assert float(s_k / np.float32(n4)) == float(vs.var(x4, algorithm="welford"))
trace_df

# %% [markdown]
# ### The same data, shifted further and further
#
# Below, $x = c + (0, 1, 2, 3)$ stored in float32 and in float64 for offsets $c$ from 1 to
# $10^{15}$ (float32 stops where it can no longer hold four distinct values). The exact
# variance stays 1.25. The one-pass formula is wrong once $\kappa^2 u \gtrsim 1$, i.e.
# $c \gtrsim 2^{p/2}$: about $4\times 10^3$ in float32 and $7\times 10^7$ in float64.

# %%
offsets = 10.0 ** np.arange(0, 16)
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
for ax, dtype in zip(axes, ("float32", "float64"), strict=True):
    limit = cases.max_offset_ratio(dtype)
    cs = offsets[offsets < limit]
    data = vs.round_to(cs[:, None] + np.arange(4.0), dtype)
    exact_v = oracle.exact_var(data, axis=-1)
    for algorithm, style in (("naive", "o-"), ("welford", "s-"), ("two_pass", "^-")):
        v = (
            vs.var(data, axis=-1, algorithm=algorithm, summation="sequential")
            if algorithm != "welford"
            else vs.var(data, axis=-1, algorithm=algorithm)
        )
        err = np.maximum(metrics.rel_err(v, exact_v), vs.finfo(dtype).unit_roundoff / 4)
        ax.loglog(cs, err, style, label=algorithm)
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.axvline(
        2.0 ** (vs.finfo(dtype).mant / 2),
        color="grey",
        lw=0.8,
        ls="--",
        label=r"$c = 2^{p/2}$ ($\kappa^2 u \approx 1$)",
    )
    ax.set_xlabel("offset c (data = c + [0, 1, 2, 3])")
    ax.set_ylabel("relative error of the variance (floored at u/4)")
    ax.set_title(f"{dtype} storage and arithmetic")
    ax.legend()
plt.show()

# %% [markdown]
# ## Correct digits against the condition number, for every precision
#
# From the sweep: normal data of $n \approx 1000$ values with offset/std ratio from 1 up to
# what the storage format can still resolve, contiguous layout, population variance. Each
# line is the median over the sweep's rows at one offset; dashed lines are the digits the
# first-order bound guarantees, $\max(0, -\log_{10}\text{bound})$, drawn for the four
# algorithms of Chan, Golub & LeVeque's table. A measured line below its own dashed line
# would be a bound violation. A point where most results are NaN or infinite (the sum of
# squares overflows float16's range, which no rounding bound covers) is drawn as a cross
# on the axis and breaks its line, so it is not mistaken for a result with 0 correct digits.

# %%
ALGOS = list(vs.ALGORITHMS)
COLORS = dict(zip(ALGOS, plt.get_cmap("tab10").colors, strict=False))
BOUNDED = ("naive", "two_pass", "corrected_two_pass", "welford")
PRECISIONS = [(p.storage, p.accumulator) for p in vs.PRECISIONS]

# one CSV row = one case (several data rows): lre_median is the median correct digits over
# them, bound the first-order bound at the worst row's kappa; "offset" is the offset/std ratio
var_rows = errors[errors["kind"] == "var"]
base = var_rows[
    (var_rows["distribution"] == "normal")
    & (var_rows["layout"] == "contiguous")
    & (var_rows["scale_point"] == "unit")
    & (var_rows["correction"] == 0)
    & var_rows["variant"].isin(ALGOS)  # each algorithm with its default options
    & np.isfinite(var_rows["kappa"])
]
base = base.assign(ratio=base["offset"], guaranteed=np.clip(-np.log10(base["bound"]), 0, None))


def nearest(values: pd.Series, target: float) -> float:
    """The available value closest to ``target`` on a log scale."""
    v = np.unique(values)
    return float(v[np.argmin(np.abs(np.log(v) - np.log(target)))])


def precision_axes(title: str):  # type: ignore[no-untyped-def]
    fig, axes = plt.subplots(2, 4, figsize=(17, 8), layout="constrained")
    fig.suptitle(title)
    return fig, axes.ravel()


def legend_panel(axes) -> None:  # type: ignore[no-untyped-def]
    """The last (spare) panel holds the legend shared by all panels."""
    handles, labels = axes[0].get_legend_handles_labels()
    axes[-1].axis("off")
    axes[-1].legend(
        [
            *handles,
            plt.Line2D([], [], ls="--", color="k"),
            plt.Line2D([], [], ls="", marker="x", mew=2, color="k"),
        ],
        [*labels, "bound (guaranteed digits)", "most results NaN or inf (overflow)"],
        loc="center",
        title="algorithm",
    )


def medians(g) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """Median digits per point, and whether most of its results are NaN or infinite."""
    med = g[["kappa", "lre_median", "guaranteed"]].median()
    # lre scores NaN and inf as 0 digits; a point whose median comes from them is an
    # overflow, not a loss of accuracy: flag it rather than plot it as 0
    med["nonfinite"] = g["nonfinite"].sum() / g["rows"].sum() >= 0.5
    return med


def plot_digits(
    ax: plt.Axes, x: np.ndarray, med: pd.DataFrame, algorithm: str, digits: float
) -> None:
    """One algorithm's measured line, its NaN/inf points as crosses, and its bound."""
    bad = med["nonfinite"].to_numpy()
    measured = np.where(bad, np.nan, med["lre_median"])  # NaN breaks the line there
    ax.semilogx(x, measured, "o-", ms=3, color=COLORS[algorithm], label=algorithm)
    ax.semilogx(x[bad], np.zeros(bad.sum()), "x", ms=7, mew=2, color=COLORS[algorithm])
    if algorithm in BOUNDED:
        ax.semilogx(x, np.minimum(med["guaranteed"], digits), "--", lw=1, color=COLORS[algorithm])


N_FIXED = nearest(base["n"], 1000)
fig, axes = precision_axes(f"Correct digits vs condition number (normal data, n = {N_FIXED:.0f})")
for ax, (storage, acc) in zip(axes, PRECISIONS, strict=False):
    sel = base[(base["storage"] == storage) & (base["accumulator"] == acc) & (base["n"] == N_FIXED)]
    digits = vs.finfo(acc).digits
    for algorithm in ALGOS:
        g = sel[sel["algorithm"] == algorithm].groupby("ratio")
        if not len(g):
            continue
        med = medians(g)
        plot_digits(ax, med["kappa"].to_numpy(), med, algorithm, digits)
    ax.set_title(f"storage {storage}, accumulator {acc}")
    ax.set_xlabel(r"condition number $\kappa$")
    ax.set_ylabel("correct decimal digits (LRE)")
    ax.set_ylim(-0.2, digits + 0.5)
legend_panel(axes)
plt.show()

# %% [markdown]
# ## Correct digits against n
#
# The same measurements at a fixed offset/std ratio of 100 ($\kappa \approx 100$), against
# the number of values. Sequential error bounds grow like $n$; the pairwise sums
# varstats uses by default grow like $\log_2 n$, which is why most lines stay flat.

# %%
RATIO_FIXED = nearest(base["ratio"], 100)
fig, axes = precision_axes(f"Correct digits vs n (normal data, offset/std = {RATIO_FIXED:g})")
for ax, (storage, acc) in zip(axes, PRECISIONS, strict=False):
    sel = base[
        (base["storage"] == storage) & (base["accumulator"] == acc) & (base["ratio"] == RATIO_FIXED)
    ]
    digits = vs.finfo(acc).digits
    for algorithm in ALGOS:
        g = sel[sel["algorithm"] == algorithm].groupby("n")
        if not len(g):
            continue
        med = medians(g)
        plot_digits(ax, med.index.to_numpy(), med, algorithm, digits)
    ax.set_title(f"storage {storage}, accumulator {acc}")
    ax.set_xlabel("n (values per variance)")
    ax.set_ylabel("correct decimal digits (LRE)")
    ax.set_ylim(-0.2, digits + 0.5)
legend_panel(axes)
plt.show()

# %% [markdown]
# ## Where each algorithm breaks
#
# The smallest condition number at which an algorithm's median result keeps less than one
# correct digit, a NaN or infinite result included (normal data, $n \approx 1000$ as in the
# first figure); "-" means it never breaks within the range the storage format can
# represent. The last column gives the largest condition number swept (offset/std up to
# $\approx 1/u$ of the storage format).

# %%
BREAK_DIGITS = 1.0
per_offset = base.groupby(["storage", "accumulator", "algorithm", "n", "ratio"])[
    ["kappa", "lre_median"]
].median()
broken = per_offset[per_offset["lre_median"] < BREAK_DIGITS].reset_index()
broken = broken[broken["n"] == N_FIXED]
first_break = broken.groupby(["storage", "accumulator", "algorithm"])["kappa"].min()
breaks = (
    first_break.unstack("algorithm")
    .reindex(
        index=pd.MultiIndex.from_tuples(PRECISIONS, names=["storage", "accumulator"]), columns=ALGOS
    )
    .map(lambda v: "-" if pd.isna(v) else f"{v:.2g}")
)
at_n = base[base["n"] == N_FIXED]
breaks["max kappa swept"] = [
    f"{at_n[(at_n['storage'] == s) & (at_n['accumulator'] == a)]['kappa'].max():.2g}"
    for s, a in PRECISIONS
]
breaks

# %% [markdown]
# ## Are the bounds respected?
#
# The bounds are on $S$ in the accumulator; the variance $S/(n-c)$ takes one more rounding,
# so the sweep flags a case (`exceeds_bound`) when some row's relative error exceeds
# bound + $2u$. Below, over the sweep's generated cases of unit scale (every distribution,
# layout, $n$, offset and both corrections) whose bound promises something (bound < 1), the
# flagged cases per algorithm variant and precision, and the worst ratio of measured error
# to bound + $2u$. Left out: cases with a non-finite result (counted in the next table) and
# the near-underflow and near-overflow scales, where the bounds' assumption that nothing
# underflows or overflows does not hold.

# %%
finite = var_rows[
    np.isfinite(var_rows["rel_err"])
    & (var_rows["bound"] < 1)
    & (var_rows["nonfinite"] == 0)
    & (var_rows["scale_point"] == "unit")
]
u_acc = finite["accumulator"].map(lambda a: vs.finfo(a).unit_roundoff)
ratio_to_bound = finite["rel_err"] / (finite["bound"] + 2 * u_acc)
check = (
    finite.assign(ratio_to_bound=ratio_to_bound)
    .groupby(["variant", "storage", "accumulator"])
    .agg(
        cases=("ratio_to_bound", "size"),
        exceeds_bound=("exceeds_bound", "sum"),
        worst_ratio=("ratio_to_bound", "max"),
    )
)
check.sort_values("worst_ratio", ascending=False).head(12)

# %% [markdown]
# Every flagged case has a cause outside the first-order analysis; `report.bound_explanations`
# (the classification `results/summary.md` uses) names it: a float16 accumulator that cannot
# hold the count or whose squared deviations fall into its subnormal range, $nu \ge 1$,
# or the constant factor the first-order bounds drop.

# %%
reasons = report.bound_explanations(finite[finite["exceeds_bound"]]).value_counts()
reasons

# %%
counts = var_rows.groupby(["variant", "storage", "accumulator"])[["negative", "nan", "inf"]].sum()
counts = counts[counts.sum(axis=1) > 0]
failures = (
    counts.astype(int)
    .astype(str)
    .agg(" / ".join, axis=1)
    .unstack(["storage", "accumulator"])
    .fillna("-")
)
print("data rows with a negative / NaN / infinite variance, over every generated case")
failures

# %% [markdown]
# ## Conclusion

# %%
f32 = base[
    (base["storage"] == "float32") & (base["accumulator"] == "float32") & (base["n"] == N_FIXED)
]


def digits_at(algorithm: str, ratio: float) -> float:
    sel = f32[(f32["algorithm"] == algorithm) & (f32["ratio"] == nearest(f32["ratio"], ratio))]
    return float(sel["lre_median"].median())


top = float(f32["ratio"].max())
naive_break = first_break.get(("float32", "float32", "naive"), np.nan)
n_above = int(finite["exceeds_bound"].sum())
worst_alg = check["worst_ratio"].idxmax()
d = {a: digits_at(a, top) for a in ("two_pass", "welford", "corrected_two_pass")}
print(
    f"In float32 the textbook one-pass formula keeps {digits_at('naive', 1e2):.1f} correct "
    f"digits at "
    f"offset/std 100 and none from kappa = {naive_break:.2g} on, while two-pass keeps "
    f"{digits_at('two_pass', 1e2):.1f} there; at offset/std {top:.2g} (the most float32 can "
    f"resolve) two-pass keeps {d['two_pass']:.1f}, Welford {d['welford']:.1f} and "
    f"corrected two-pass {d['corrected_two_pass']:.1f} digits.\n"
    f"The four-number example loses everything: float32 one-pass gives "
    f"{steps['variance S/n'][0]:g} for an exact 1.25.\n"
    f"{n_above} of {len(finite):,} finite cases exceed their bound + 2u "
    f"({', '.join(f'{c} {r}' for r, c in reasons.items())}); the largest ratio of "
    f"error to bound, {check['worst_ratio'].max():.2g}, is {worst_alg[0]} in "
    f"{worst_alg[1]}/{worst_alg[2]}."
)
