r"""Tables and figures of the study, rebuilt from ``errors.csv`` without recomputing.

``python -m varstats.report results/`` reads ``results/errors.csv`` (written by
:mod:`varstats.sweep`) and writes ``results/summary.md`` and ``results/figures/*.png``.
Everything here is a pure function of the CSV, so the same CSV gives the same bytes.
The report reads results, it never makes them: without ``errors.csv``,
:func:`load_results` and ``main`` name the sweep command that writes it. Every file is
written through a temporary file and a rename (:func:`write_atomic`), under the same
directory lock as the sweep (:func:`output_lock`); the column names and orders come
from :mod:`varstats.schema`, which the sweep shares.

Definitions used in the summary
-------------------------------
**Correct digits (LRE)**: :func:`varstats.metrics.lre`, capped at the accumulator's
digits. A CSV row holds the worst of its ``rows`` data rows (``lre``) and their median
(``lre_median``); "median" in a table is the median of the rows' medians, "worst" the
minimum of their worst.

**Full accuracy**: worst LRE at least ``digits(storage) - 1``, where
``digits(storage)`` is :attr:`varstats.precision.FloatInfo.digits` (3.3 for float16,
2.4 for bfloat16, 7.2 for float32, 16.0 for float64): the result is as good as the
data's own format allows, give or take one decimal digit.

**Cost order** (:data:`COST_ORDER`): passes over the data first (one-pass < two-pass <
two-pass plus a correction sum < compensated sums), then work per element (a division
per element for Welford), then the accumulator width (same as storage < float32 <
float64); pairwise and sequential summation cost the same flops, pairwise is listed
first.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Final

import matplotlib
import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from varstats.cases import ORDERS
from varstats.conventions import CONVENTIONS
from varstats.precision import DTYPES, finfo
from varstats.recommendation import RECOMMENDED_ACCUMULATOR
from varstats.schema import COLUMNS, COST_ORDER
from varstats.schema import PRECISION_ORDER as _PRECISION_ORDER

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "EXIT_BUSY",
    "EXIT_NOT_WRITABLE",
    "HEADLINE_END",
    "HEADLINE_START",
    "KERNEL_SHAPES",
    "ONE_PASS_VARIANTS",
    "FigureSpec",
    "OutputBusyError",
    "OutputNotWritableError",
    "attainable_lre",
    "bound_explanations",
    "bound_section",
    "build_figures",
    "build_report",
    "check_writable",
    "clear_temporaries",
    "failure_by_regime",
    "failure_table",
    "figure_plan",
    "headline_table",
    "kernel_table",
    "layer_tables",
    "layout_check",
    "load_results",
    "main",
    "offset_tables",
    "ordering_table",
    "output_lock",
    "public_tables",
    "read_errors",
    "recommendation_table",
    "recommendations",
    "recommended_ulps_table",
    "results_dir",
    "scale_table",
    "size_tables",
    "summary_markdown",
    "sweep_command",
    "write_atomic",
]

#: Exit status when another process holds the output directory (``EX_TEMPFAIL``).
EXIT_BUSY: Final = 75
#: Exit status when the output directory cannot be written (``EX_CANTCREAT``).
EXIT_NOT_WRITABLE: Final = 73

HEADLINE_START: Final = "<!-- headline:start -->"
HEADLINE_END: Final = "<!-- headline:end -->"

#: Variants that read the data once, as a stream: the one-pass formulas, Welford's
#: update, and ``chan`` (one pass over the stream; a two-pass inside each block of
#: 1024 values it holds in memory).
ONE_PASS_VARIANTS: Final = (
    "naive",
    "naive/seq",
    "shifted",
    "shifted/seq",
    "welford/lanes8",
    "welford",
    "chan",
)

# the variants drawn in the figures: pairwise-summation panel and sequential panel
_PANELS: Final = (
    (
        "pairwise sums and tree/lane variants",
        (
            "naive",
            "shifted",
            "two_pass",
            "corrected_two_pass",
            "welford/lanes8",
            "pairwise",
            "chan",
            "compensated",
        ),
    ),
    (
        "sequential sums and loops",
        (
            "naive/seq",
            "shifted/seq",
            "two_pass/seq",
            "corrected_two_pass/seq",
            "welford",
            "compensated/seq",
        ),
    ),
)


# --------------------------------------------------------------------------- reading


def read_errors(path: str | Path) -> pd.DataFrame:
    """``errors.csv`` as a DataFrame with the dtypes of :data:`COLUMNS`."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    df = pd.DataFrame(index=raw.index)
    for col, kind in COLUMNS.items():
        s = raw[col]
        if kind == "str":
            df[col] = s.astype(str)
        elif kind == "int":
            df[col] = s.astype("int64")
        elif kind == "float":
            df[col] = s.astype("float64")
        else:
            bad = ~s.isin(["True", "False"])
            if bad.any():
                raise ValueError(f"{path}: column {col}: not a bool: {s[bad].iloc[0]!r}")
            df[col] = s == "True"
    return df


def results_dir() -> Path:
    """The ``results/`` directory: ``$VARSTATS_RESULTS``, else the one of the checkout.

    The checkout is the first directory at or above the working directory holding
    ``pyproject.toml`` and ``varstats/``; failing that, the one this module lives in.
    """
    if os.environ.get("VARSTATS_RESULTS"):
        return Path(os.environ["VARSTATS_RESULTS"])
    for d in (Path.cwd(), *Path.cwd().parents):
        if (d / "pyproject.toml").is_file() and (d / "varstats").is_dir():
            return d / "results"
    return Path(__file__).resolve().parents[1] / "results"


def sweep_command(out: str | Path | None = None, /, *, grid: str = "standard") -> str:
    """The command that writes ``errors.csv`` into ``out`` (default: ``results/``)."""
    cmd = "python -m varstats.sweep" + ("" if grid == "standard" else f" --grid {grid}")
    return cmd if out is None else f"{cmd} --out {out}"


def load_results(results: str | Path | None = None, /) -> tuple[pd.DataFrame, Path]:
    """Read ``errors.csv`` of ``results`` (default :func:`results_dir`).

    Returns the typed frame (:func:`read_errors`) and the path it was read from. The
    report never runs the sweep: without the file this raises :class:`FileNotFoundError`
    naming the command that writes it.
    """
    out = Path(results) if results is not None else results_dir()
    path = out / "errors.csv"
    if not path.is_file():
        cmd = sweep_command(None if results is None else out)
        raise FileNotFoundError(f"{path} not found; the sweep writes it: {cmd}")
    return read_errors(path), path


def _precision(df: pd.DataFrame) -> pd.Series:
    return df["storage"] + ":" + df["accumulator"]


def _digits(dtype: str) -> float:
    return finfo(dtype).digits


def _ordered(values: Iterable[Any], order: Sequence[str]) -> list[str]:
    present = {str(v) for v in values}
    return [v for v in order if v in present] + sorted(present - set(order))


def _fmt_digits(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{x:.1f}"


def _fmt_value(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.6g}"


def _offset_label(x: float) -> str:
    if x <= 0 or not math.isfinite(x):
        return str(x)
    k = math.log10(x)
    return f"1e{round(k)}" if abs(k - round(k)) < 1e-9 else f"{x:.3g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def attainable_lre(df: pd.DataFrame) -> pd.Series:
    """``lre``, except that a result below the accumulator's normal range is judged by
    the attainable accuracy there: within one subnormal quantum of the exact value
    counts as full accuracy (the accumulator's digits), however few significant digits
    a subnormal number carries. ``value`` and ``exact`` are those of the worst row (the
    largest relative error), so a CSV row is judged by that row: where its other data
    rows are normal numbers with fewer digits, this overstates them. At the ``low``
    scale point every row of a case has the same magnitude, so this does not arise in
    the sweep's grids; a per-row judgement needs a column from the sweep."""
    out = df["lre"].astype(np.float64).copy()
    for acc in set(df["accumulator"]) & set(DTYPES):
        fi = finfo(acc)
        exact, value = df["exact"], df["value"]
        sub = (
            (df["accumulator"] == acc)
            & (exact.abs() < fi.tiny)
            & ((value - exact).abs() <= fi.smallest_subnormal)
        )
        out[sub] = fi.digits
    return out


def _var_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Generated-data rows, their ``lre`` judged by :func:`attainable_lre`."""
    return _derived(df)[0]


def _accuracy_cases(df: pd.DataFrame) -> pd.DataFrame:
    """Generated data at unit scale with a nonzero variance: where 'accuracy' is defined."""
    return _derived(df)[1]


#: While :func:`summary_markdown` runs: the frame it was given and what
#: :func:`_derived` made of it (its tables ask for the same subsets about ten times and
#: only read them). Empty otherwise, so a caller's later change to a frame is seen.
_DERIVED: list[tuple[pd.DataFrame, tuple[pd.DataFrame, pd.DataFrame] | None]] = []


def _derived(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    cached = _DERIVED[0] if _DERIVED and _DERIVED[0][0] is df else None
    if cached is not None and cached[1] is not None:
        return cached[1]
    v = df[df["kind"] == "var"]
    v = v.assign(lre=attainable_lre(v)) if len(v) else v
    acc = v[(v["scale_point"] == "unit") & (v["distribution"] != "constant")]
    if cached is not None:
        _DERIVED[0] = (df, (v, acc))
    return v, acc


# --------------------------------------------------------------------------- tables


def _med_worst(g: pd.DataFrame) -> str:
    return f"{_fmt_digits(float(g['lre_median'].median()))} / {_fmt_digits(float(g['lre'].min()))}"


def headline_table(df: pd.DataFrame) -> str:
    acc = _accuracy_cases(df).assign(precision=lambda d: _precision(d))
    if acc.empty:
        return "_no generated-data rows_\n"
    precs = _ordered(acc["precision"].unique(), _PRECISION_ORDER)
    variants = _ordered(acc["variant"].unique(), COST_ORDER)
    rows = [
        ["*digits of the storage format*"] + [f"*{_digits(p.split(':')[0]):.1f}*" for p in precs]
    ]
    grouped = dict(tuple(acc.groupby(["variant", "precision"])))
    for v in variants:
        rows.append(
            [f"`{v}`"] + [_med_worst(grouped[(v, p)]) if (v, p) in grouped else "" for p in precs]
        )
    return _table(["algorithm", *[f"`{p}`" for p in precs]], rows)


def offset_tables(df: pd.DataFrame) -> str:
    acc = _accuracy_cases(df).assign(precision=lambda d: _precision(d))
    out = []
    for p in _ordered(acc["precision"].unique(), _PRECISION_ORDER):
        sub = acc[acc["precision"] == p]
        offsets = sorted(sub["offset"].unique())
        variants = _ordered(sub["variant"].unique(), COST_ORDER)
        grouped = dict(tuple(sub.groupby(["variant", "offset"])))
        rows = [
            [f"`{v}`"] + [_med_worst(grouped[(v, o)]) if (v, o) in grouped else "" for o in offsets]
            for v in variants
        ]
        out.append(
            f"#### `{p}`\n\n"
            + _table(["algorithm \\ offset/std", *[_offset_label(o) for o in offsets]], rows)
        )
    return "\n".join(out)


def size_tables(df: pd.DataFrame) -> str:
    acc = _accuracy_cases(df).assign(precision=lambda d: _precision(d))
    if acc.empty:
        return ""
    ns = sorted(acc["n"].unique())
    precs = _ordered(acc["precision"].unique(), _PRECISION_ORDER)
    variants = _ordered(acc["variant"].unique(), COST_ORDER)
    grouped = dict(tuple(acc.groupby(["variant", "precision", "n"])))
    out = []
    for p in precs:
        rows = [
            [f"`{v}`"]
            + [
                _fmt_digits(float(grouped[(v, p, n)]["lre"].min())) if (v, p, n) in grouped else ""
                for n in ns
            ]
            for v in variants
        ]
        out.append(f"#### `{p}`\n\n" + _table(["algorithm \\ n", *[str(n) for n in ns]], rows))
    return "\n".join(out)


def failure_table(df: pd.DataFrame) -> str:
    v = df[df["kind"] == "var"].assign(precision=lambda d: _precision(d))
    if v.empty:
        return ""
    precs = _ordered(v["precision"].unique(), _PRECISION_ORDER)
    variants = _ordered(v["variant"].unique(), COST_ORDER)
    sums = v.groupby(["variant", "precision"])[["negative", "nan", "inf", "rows"]].sum()
    rows = []
    for var in variants:
        cells = []
        for p in precs:
            if (var, p) not in sums.index:
                cells.append("")
                continue
            neg, nan, inf = (int(sums[c].loc[(var, p)]) for c in ("negative", "nan", "inf"))
            cells.append(f"{neg} / {nan} / {inf}")
        rows.append([f"`{var}`", *cells])
    total = int(
        v.drop_duplicates(
            [
                "storage",
                "layout",
                "distribution",
                "scale_point",
                "n",
                "offset",
                "correction",
                "accumulator",
            ]
        )["rows"].sum()
    )
    note = (
        f"Negative / NaN / inf results out of the data rows each algorithm saw "
        f"(up to {total} per precision; all distributions and scale points).\n\n"
    )
    return note + _table(["algorithm", *[f"`{p}`" for p in precs]], rows)


def failure_by_regime(df: pd.DataFrame) -> str:
    v = df[df["kind"] == "var"]
    if v.empty:
        return ""
    regime = np.where(
        v["scale_point"] != "unit",
        "scale " + v["scale_point"],
        np.where(v["distribution"] == "constant", "constant data", "unit scale, spread data"),
    )
    g = v.assign(regime=regime).groupby("regime")[["negative", "nan", "inf", "rows"]].sum()
    rows = [
        [r, *(str(int(g.loc[r, c])) for c in ("rows", "negative", "nan", "inf"))] for r in g.index
    ]
    return _table(["regime", "data rows x variants x precisions", "negative", "NaN", "inf"], rows)


def scale_table(df: pd.DataFrame) -> str:
    v = _var_rows(df)
    v = v[v["distribution"] == "normal"]  # the only data swept at all three scale points
    v = v.assign(precision=_precision(v))
    points = [s for s in ("low", "unit", "high") if s in set(v["scale_point"])]
    if len(points) < 2:
        return ""
    precs = _ordered(v["precision"].unique(), _PRECISION_ORDER)
    variants = _ordered(v["variant"].unique(), COST_ORDER)
    grouped = dict(tuple(v.groupby(["variant", "precision", "scale_point"])))
    rows = []
    for var in variants:
        cells = []
        for p in precs:
            parts = [
                _fmt_digits(float(grouped[(var, p, s)]["lre"].min()))
                if (var, p, s) in grouped
                else ""
                for s in points
            ]
            cells.append(" / ".join(parts))
        rows.append([f"`{var}`", *cells])
    return (
        f"Worst correct digits at the scale points {' / '.join(points)} "
        "(normal data, every offset and n of the slice).\n\n"
        + _table(["algorithm", *[f"`{p}`" for p in precs]], rows)
    )


def _sequential(variant: str) -> bool:
    return variant.endswith("/seq") or variant == "welford"


def bound_explanations(df: pd.DataFrame) -> pd.Series:
    r"""Why each row flagged ``exceeds_bound`` is above its first-order bound.

    Returns a Series of reasons (index of ``df``), in order of precedence:

    - ``count overflow``: n exceeds the accumulator's max (float16 holds n <= 65504),
      so the count itself is inf.
    - ``overflow``: the result is inf/NaN, or the sums of the data or of their squares
      exceed the accumulator's range (``high`` scale point, float16 sums).
    - ``underflow``: the ``low`` scale point (squared deviations below the normal range).
    - ``n·u ≥ 1``: a sequential reduction with :math:`nu \ge 1`, where a first-order
      bound says nothing (the neglected :math:`O((nu)^2)` terms dominate).
    - ``constant factor``: within 10x of the bound: the bound drops its constant
      factors (Higham 2002: ``(n + 3)`` where CGL write ``n``).
    - ``unexplained``: none of the above; a bug to look at.
    """
    reasons: list[str] = []
    for r in df.to_dict("records"):
        fi = finfo(str(r["accumulator"]))
        magnitude = (abs(r["offset"]) + 1.0) * r["scale"]
        if not r["exceeds_bound"]:
            reasons.append("")
        elif r["n"] > fi.max:
            reasons.append("count overflow")
        elif (
            not math.isfinite(r["value"])
            or r["scale_point"] == "high"
            or r["n"] * magnitude**2 > fi.max
        ):
            reasons.append("overflow")
        elif r["scale_point"] == "low":
            reasons.append("underflow")
        elif _sequential(str(r["variant"])) and r["n"] * fi.unit_roundoff >= 1:
            reasons.append("n·u ≥ 1")
        elif r["rel_err"] <= 10 * (r["bound"] + 2 * fi.unit_roundoff):
            reasons.append("constant factor")
        else:
            reasons.append("unexplained")
    return pd.Series(reasons, index=df.index, dtype=object)


def bound_section(df: pd.DataFrame) -> str:
    v = df[df["kind"].isin(["var", "public"]) & np.isfinite(df["bound"])]
    if v.empty:
        return ""
    flagged = v[v["exceeds_bound"]]
    out = [
        f"{len(flagged)} of {len(v)} rows (cases x variants x precisions x corrections) "
        "have a data row whose relative error exceeds its first-order bound "
        "(`metrics.bound` + 2u for the final division and the float64 rounding of the "
        "exact value).\n"
    ]
    if flagged.empty:
        return out[0]
    reasons = bound_explanations(flagged)
    counts = reasons.value_counts()
    out.append(_table(["reason", "rows"], [[str(k), str(int(c))] for k, c in counts.items()]))
    ratio = flagged["rel_err"] / flagged["bound"].where(flagged["bound"] > 0)
    worst = flagged.assign(reason=reasons, ratio=ratio)
    worst = worst[worst["reason"].isin(["constant factor", "unexplained"])]
    # the data: a public case, or a distribution with its reorderings (the same values)
    base = worst["distribution"].map(lambda d: d.partition("/")[0])
    worst = worst.assign(data=np.where(worst["kind"] == "var", base, worst["case"]))
    # one line per (algorithm, precision, data, n, offset): the corrections, layouts and
    # orders of the same values are near-duplicates; keep the largest ratio, count them
    key = ["variant", "storage", "accumulator", "data", "n", "offset"]
    worst = worst.sort_values("ratio", ascending=False, kind="mergesort")
    counts = worst.groupby(key, sort=False)["ratio"].transform("size")
    worst = worst.assign(rows=counts).drop_duplicates(key)
    worst = worst.sort_values(
        ["ratio", "variant", "storage", "accumulator", "n", "offset"],
        ascending=[False, True, True, True, True, True],
        kind="mergesort",
    )
    if not worst.empty:
        out.append(
            "\nThe largest ratios among rows not explained by overflow or underflow, one line "
            "per algorithm, precision, data, n and offset (`rows`: how many CSV rows, i.e. "
            "corrections, layouts and orders of the same values, it stands for):\n"
        )
        rows = [
            [
                f"`{r['variant']}`",
                f"`{r['storage']}:{r['accumulator']}`",
                str(r["data"]),
                str(r["n"]),
                _offset_label(r["offset"]),
                f"{r['rel_err']:.3g}",
                f"{r['bound']:.3g}",
                f"{r['ratio']:.3g}",
                r["reason"],
                str(int(r["rows"])),
            ]
            for _, r in worst.head(12).iterrows()
        ]
        out.append(
            _table(
                [
                    "algorithm",
                    "precision",
                    "data",
                    "n",
                    "offset",
                    "rel. error",
                    "bound",
                    "ratio",
                    "reason",
                    "rows",
                ],
                rows,
            )
        )
    return "\n".join(out)


_PUBLIC_VARIANTS: Final = (
    "naive/seq",
    "naive",
    "two_pass",
    "welford",
    "pairwise",
    "corrected_two_pass",
    "compensated",
    "corrected_two_pass/rescale",
    "dot2",
)


def _public_cell(r: pd.Series, multi: bool) -> str:
    ok = r["lre"] >= _digits(str(r["storage"])) - 1
    text = _fmt_value(float(r["value"]))
    if multi:  # the worst row differs between algorithms: show its exact value too
        text += f" (row {int(r['row'])}: {_fmt_value(float(r['exact']))})"
    return text + ("" if ok else " ✗")


def public_tables(df: pd.DataFrame) -> str:
    p = df[df["kind"] == "public"]
    if p.empty:
        return ""
    p = p.assign(lre=attainable_lre(p))
    native = p[(p["storage"] == p["accumulator"]) & (p["convention"] == "-")]
    cases = list(dict.fromkeys(p["case"]))
    variants = [v for v in _PUBLIC_VARIANTS if v in set(native["variant"])]
    rows = []
    for c in cases:
        sub = native[native["case"] == c].set_index("variant")
        if sub.empty:
            continue
        first = sub.iloc[0]
        multi = int(first["rows"]) > 1
        cells = [
            f"`{c}`",
            f"`{first['storage']}`",
            str(int(first["correction"])),
            f"{int(first['rows'])} rows" if multi else _fmt_value(first["exact"]),
        ]
        cells += [_public_cell(sub.loc[v], multi) if v in sub.index else "" for v in variants]
        rows.append(cells)
    out = [
        "Variance each algorithm returns in the case's own format (storage = accumulator; "
        "for a case of several rows, the worst row and its exact value). ✗: fewer than "
        "`digits(storage) - 1` correct digits.\n",
        _table(["case", "dtype", "c", "exact", *[f"`{v}`" for v in variants]], rows),
    ]
    fw = p[p["convention"] != "-"]
    if not fw.empty:
        convs = list(dict.fromkeys(fw["convention"]))
        rows = []
        for c in cases:
            sub = fw[fw["case"] == c].set_index("convention")
            if sub.empty:
                continue
            first = sub.iloc[0]
            multi = int(first["rows"]) > 1
            cells = [
                f"`{c}`",
                f"`{first['layer']}`",
                f"{int(first['rows'])} rows" if multi else _fmt_value(first["exact"]),
            ]
            cells += [_public_cell(sub.loc[conv], multi) for conv in convs]
            rows.append(cells)
        legend = ", ".join(
            f"{conv}: `{r['algorithm']}` in `{r['storage']}:{r['accumulator']}`"
            for conv, r in fw[fw["case"] == cases[0]].set_index("convention").iterrows()
        )
        out.append(
            "\nThe variance each framework's CPU kernel computes (its convention's "
            f"moments algorithm and accumulator for the layer) — for `{cases[0]}`: "
            f"{legend}.\n"
        )
        out.append(_table(["case", "layer", "exact", *[f"`{c}`" for c in convs]], rows))
    return "\n".join(out)


_Selector = Callable[[pd.Series], pd.Series]
_N_REGIMES: Final[tuple[tuple[str, _Selector], ...]] = (
    ("n ≤ 1000", lambda s: s <= 1000),
    ("n > 1000", lambda s: s > 1000),
)
_OFFSET_REGIMES: Final[tuple[tuple[str, _Selector], ...]] = (
    ("offset ≤ 10", lambda s: s <= 10),
    ("offset > 10", lambda s: s > 10),
)


def recommendations(df: pd.DataFrame) -> pd.DataFrame:
    """Cheapest (variant, accumulator) with full accuracy per storage x regime.

    Regimes: ``n <= 1000`` or ``n > 1000``, crossed with offset/std ``<= 10`` or
    ``> 10``, over generated data at unit scale with a nonzero variance, both
    corrections and every layout, distribution and order. Correct digits are
    :func:`attainable_lre`. Returns one row per regime with the pick, its worst correct
    digits, the digits needed, whether it also keeps full accuracy at the ``low`` and
    ``high`` scale points of the same regime, and the cheapest (or else the best) of the
    :data:`ONE_PASS_VARIANTS` (``one_pass_*`` columns).
    """
    acc = _accuracy_cases(df)
    v = _var_rows(df)
    v = v[v["distribution"] != "constant"]
    rank = {name: i for i, name in enumerate(COST_ORDER)}
    acc_rank = {d: i for i, d in enumerate(DTYPES)}
    acc_rank["bfloat16"] = acc_rank["float16"]
    out = []
    for storage in [d for d in DTYPES if d in set(acc["storage"])]:
        need = _digits(storage) - 1
        for n_label, n_sel in _N_REGIMES:
            for o_label, o_sel in _OFFSET_REGIMES:
                sub = acc[(acc["storage"] == storage) & n_sel(acc["n"]) & o_sel(acc["offset"])]
                if sub.empty:
                    continue
                worst = sub.groupby(["variant", "accumulator"])["lre"].min()
                ext = v[
                    (v["storage"] == storage)
                    & n_sel(v["n"])
                    & o_sel(v["offset"])
                    & (v["scale_point"] != "unit")
                ]
                ext_worst = ext.groupby(["variant", "accumulator"])["lre"].min()
                cands = sorted(
                    worst.index,
                    key=lambda k: (rank.get(k[0], len(rank)), acc_rank[k[1]], k[0]),
                )
                full = [k for k in cands if worst[k] >= need]
                pick = full[0] if full else max(cands, key=lambda k: (worst[k], -cands.index(k)))
                robust = [k for k in full if k in ext_worst.index and ext_worst[k] >= need]
                streaming = [k for k in cands if k[0] in ONE_PASS_VARIANTS]
                one = [k for k in streaming if worst[k] >= need]
                one_pick = (
                    one[0]
                    if one
                    else max(streaming, key=lambda k: (worst[k], -streaming.index(k)))
                    if streaming
                    else None
                )
                out.append(
                    {
                        "storage": storage,
                        "n": n_label,
                        "offset": o_label,
                        "variant": pick[0],
                        "accumulator": pick[1],
                        "worst_lre": float(worst[pick]),
                        "needed": need,
                        "full": bool(full),
                        "extremes_ok": (
                            bool(ext_worst[pick] >= need) if pick in ext_worst.index else None
                        ),
                        "robust_variant": (f"{robust[0][0]} ({robust[0][1]})" if robust else "–"),
                        "one_pass_variant": one_pick[0] if one_pick else "–",
                        "one_pass_accumulator": one_pick[1] if one_pick else "–",
                        "one_pass_lre": float(worst[one_pick]) if one_pick else math.nan,
                        "one_pass_full": bool(one),
                    }
                )
    return pd.DataFrame(out)


def recommendation_table(df: pd.DataFrame) -> str:
    rec = recommendations(df)
    if rec.empty:
        return ""
    rows = []
    for _, r in rec.iterrows():
        pick = f"`{r['variant']}` in `{r['accumulator']}`"
        if not r["full"]:
            pick += " (best available; none reaches full accuracy)"
        ext = {True: "yes", False: "no", None: "not measured"}[r["extremes_ok"]]
        one = "–"
        if r["one_pass_variant"] != "–":
            one = f"`{r['one_pass_variant']}` in `{r['one_pass_accumulator']}`"
            one += f" ({_fmt_digits(r['one_pass_lre'])})"
            if not r["one_pass_full"]:
                one += ", none full"
        rows.append(
            [
                f"`{r['storage']}`",
                r["n"],
                r["offset"],
                pick,
                f"{r['worst_lre']:.1f} (need {r['needed']:.1f})",
                ext,
                r["robust_variant"],
                one,
            ]
        )
    return _table(
        [
            "storage",
            "size",
            "offset/std",
            "cheapest with full accuracy",
            "worst digits",
            "also at low/high scale?",
            "cheapest that also survives low/high scale",
            "one pass (streaming): cheapest with full accuracy (worst digits)",
        ],
        rows,
    )


def _recommended_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``dot2`` in the accumulator :func:`varstats.recommended` picks for the storage."""
    r = df[df["kind"].isin(["var", "public"]) & (df["variant"] == "dot2")]
    return r[r["accumulator"] == r["storage"].map(dict(RECOMMENDED_ACCUMULATOR))]


def _kappa_decade(kappa: pd.Series) -> pd.Series:
    """``floor(log10(kappa))`` (inf for constant data, whose kappa is infinite)."""
    k = np.maximum(kappa.to_numpy(dtype=np.float64), 1.0)
    return pd.Series(np.floor(np.log10(k)), index=kappa.index)


def _decade_label(d: float) -> str:
    if math.isnan(d):
        return "κ undefined (NaN data)"
    return "constant data" if math.isinf(d) else f"1e{int(d)} ≤ κ < 1e{int(d) + 1}"


def recommended_ulps_table(df: pd.DataFrame) -> str:
    """Distribution of the recommended configuration's error in ulps, by condition number.

    ulps are those of the ``ulps`` column: in the accumulator (the format of the
    returned value), of the worst data row of each CSV row, against the exact variance
    rounded to float64. Generated data at every scale point and the public cases.
    """
    r = _recommended_rows(df)
    if r.empty:
        return ""
    r = r.assign(decade=_kappa_decade(r["kappa"]), ulp=r["ulps"].astype(np.float64))
    storages = [d for d in DTYPES if d in set(r["storage"])]
    decades = sorted(set(r["decade"]), key=lambda d: (math.isnan(d), d))
    rows = []
    for d in decades:
        cells = [_decade_label(d)]
        for st in storages:
            g = r[(r["decade"] == d) & (r["storage"] == st)]["ulp"]
            if g.empty:
                cells.append("")
                continue
            over = int((~(g <= 1.0)).sum())
            cells.append(
                f"{len(g)}: {_fmt_ulps(float(g.median()))} / {_fmt_ulps(float(g.max()))}"
                + (f", {over} over 1" if over else "")
            )
        rows.append(cells)
    total = len(r)
    over = int((~(r["ulp"] <= 1.0)).sum())
    half = int((r["ulp"] > 0.5).sum())
    old = df[
        df["kind"].isin(["var", "public"])
        & (df["variant"] == "corrected_two_pass/rescale")
        & (df["accumulator"] == df["storage"].map(dict(RECOMMENDED_ACCUMULATOR)))
    ]
    old_over = int((~(old["ulps"].astype(np.float64) <= 1.0)).sum())
    head = [
        "condition number κ",
        *[f"`{st}:{RECOMMENDED_ACCUMULATOR[st]}`" for st in storages],
    ]
    return (
        f"{total} results (the worst data row of every generated case at every scale "
        "point and order, both corrections, and the public cases) of "
        "`vs.var(x, **vs.recommended(x.dtype))`, in ulps of the returned format (the "
        f"accumulator): **{over} over 1 ulp**, {half} over 0.5 ulp (not correctly "
        "rounded). The previous recommendation, corrected two-pass with pairwise sums and "
        f"rescaling in the same accumulators, is over 1 ulp in {old_over} of {len(old)}. "
        "Cells: results: median / max ulps.\n\n" + _table(head, rows)
    )


def _fmt_ulps(x: float) -> str:
    return "NaN" if math.isnan(x) else ("inf" if math.isinf(x) else f"{x:.2g}")


#: GPU/CPU reduction shapes a kernel writer chooses from: (shape, the study's variant,
#: what the variant does, a real kernel of that shape).
KERNEL_SHAPES: Final = (
    (
        "per-thread Welford, merged across threads with Chan's update (warp shuffles, then "
        "a tree over warps)",
        "welford/lanes8",
        "8 interleaved Welford lanes merged pairwise; a lane is a thread",
        "PyTorch CUDA LayerNorm, `compute_stats` in aten/src/ATen/native/cuda/"
        "layer_norm_kernel.cu (`cuWelfordOnlineSum`, then `WARP_SHFL_DOWN` + "
        "`cuWelfordCombine`)",
    ),
    (
        "per-thread two-pass over a register tile, tree of Chan merges",
        "pairwise",
        "two-pass leaves of 32 strided values, Chan merges in a balanced tree",
        "",
    ),
    (
        "two-pass over shared memory: tree-reduced mean, then tree-reduced squared deviations",
        "two_pass",
        "pairwise sums (32 rows per lane, tree over the lanes)",
        "InfiniTensor `blockLaynormKernel` (src/kernels/cuda/layer_norm.cu): "
        "`cub::BlockReduce` of the sum, then of the squared deviations",
    ),
    (
        "the same plus the correction term Σd (one more tree reduction)",
        "corrected_two_pass",
        "Björck's correction, pairwise sums",
        "",
    ),
    (
        "fused one sweep: Σx and Σx² in two accumulators, then E[x²] − E[x]²",
        "naive",
        "textbook one-pass, pairwise sums",
        "TensorRT-LLM's layernorm plugin with `USE_DIFF_OF_SQUARES` (public case `trtllm_outlier`)",
    ),
    (
        "fused one sweep on x − x₀ (shift by the first value)",
        "shifted",
        "one-pass on shifted data, pairwise sums",
        "`tf.nn.sufficient_statistics` with a `shift`",
    ),
    (
        "streaming chunks merged left to right (Chan)",
        "chan",
        "two-pass per 1024-value block, sequential Chan merges",
        "`varstats.dask`; mini-batch and per-device merges",
    ),
    (
        "error-free: TwoSum deviations, TwoProduct squares, compensated tree sums",
        "dot2",
        "the recommendation (varstats.recommended)",
        "",
    ),
)

_KERNEL_PRECISIONS: Final = (
    "float16:float32",
    "bfloat16:float32",
    "float32:float32",
    "float64:float64",
)


def kernel_table(df: pd.DataFrame) -> str:
    """Worst correct digits of each reduction shape, per precision and offset regime."""
    acc = _accuracy_cases(df).assign(precision=lambda d: _precision(d))
    precs = [p for p in _KERNEL_PRECISIONS if p in set(acc["precision"])]
    if acc.empty or not precs:
        return ""
    rows = [
        ["*full accuracy needs*", "", *[f"*{_digits(p.split(':')[0]) - 1:.1f}*" for p in precs]]
    ]
    for shape, variant, note, example in KERNEL_SHAPES:
        cells = [shape + (f" (e.g. {example})" if example else ""), f"`{variant}`: {note}"]
        for p in precs:
            need = _digits(p.split(":")[0]) - 1
            parts = []
            for _, sel in _OFFSET_REGIMES:
                g = acc[(acc["variant"] == variant) & (acc["precision"] == p) & sel(acc["offset"])]
                if g.empty:
                    parts.append("")
                    continue
                w = float(g["lre"].min())
                parts.append(_fmt_digits(w) + ("" if w >= need else " ✗"))
            cells.append(" / ".join(parts))
        rows.append(cells)
    return (
        "Worst correct digits at unit scale, offset/std ≤ 10 / > 10 (all n, distributions, "
        "orders and both corrections); ✗: below full accuracy.\n\n"
        + _table(["reduction shape", "study variant", *[f"`{p}`" for p in precs]], rows)
    )


def ordering_table(df: pd.DataFrame) -> str:
    """Worst digits on data in drawn order vs the same data reordered adversarially."""
    acc = _accuracy_cases(df)
    dist = acc["distribution"]
    acc = acc.assign(
        base=dist.map(lambda d: d.partition("/")[0]),
        order=dist.map(lambda d: d.partition("/")[2] or "drawn"),
    )
    reordered = acc[acc["order"] != "drawn"]
    if reordered.empty:
        return ""
    key = ["base", "storage", "accumulator", "n", "offset", "variant"]
    cells_of = reordered[key].drop_duplicates()
    drawn = acc[acc["order"] == "drawn"].merge(cells_of, on=key)
    acc_all = pd.concat([drawn, reordered]).assign(precision=lambda d: _precision(d))
    precs = _ordered(acc_all["precision"].unique(), _PRECISION_ORDER)
    variants = _ordered(acc_all["variant"].unique(), COST_ORDER)
    orders = [o for o in ("drawn", *ORDERS[1:]) if o in set(acc_all["order"])]
    worst = acc_all.groupby(["variant", "precision", "order"])["lre"].min()
    rows = []
    for v in variants:
        cells = [f"`{v}`"]
        for p in precs:
            vals = [worst.get((v, p, o), math.nan) for o in orders]
            need = _digits(p.split(":")[0]) - 1
            drop = any(vals[0] >= need > w for w in vals[1:])
            cells.append(" / ".join(_fmt_digits(w) for w in vals) + (" ✗" if drop else ""))
        rows.append(cells)
    legend = " / ".join(orders)
    return (
        f"Worst correct digits per order ({legend}) on the same values (unit scale; "
        "`outlier_first` reorders `one_outlier` data, the others `normal` data; drawn "
        "i.i.d. values are already in random order). ✗: full accuracy in drawn order "
        "but not in some other order.\n\n" + _table(["algorithm", *[f"`{p}`" for p in precs]], rows)
    )


def layer_tables(df: pd.DataFrame) -> str:
    lay = df[df["kind"] == "layer"]
    if lay.empty:
        return ""
    out = [
        "Worst correct digits of the normalized output (normwise: max |y - exact| over "
        "the output's rms) per convention, each with its own moments algorithm, "
        "accumulator and output form; columns are the offset/std ratio of the input. "
        "NaN outputs count as 0 digits.\n",
        "Where each preset's numbers come from (`Convention.verified`): a preset marked "
        "*run* was checked against the installed framework by the tests named; the others "
        "are modelled from the framework's source.\n",
        _table(
            ["convention", "verified"],
            [[f"`{name}`", conv.verified] for name, conv in CONVENTIONS.items()],
        ),
    ]
    for storage in [d for d in DTYPES if d in set(lay["storage"])]:
        sub = lay[lay["storage"] == storage]
        offsets = sorted(sub["offset"].unique())
        rows = []
        for (layer, conv), g in sub.groupby(["layer", "convention"], sort=False):
            g = g.set_index("offset")
            r0 = g.iloc[0]
            rows.append(
                [
                    f"`{layer}`",
                    str(conv),
                    f"`{r0['algorithm']}` ({r0['accumulator']}), {r0['variant']}",
                ]
                + [
                    _fmt_digits(float(g.loc[o, "lre"])) + (" NaN" if g.loc[o, "nan"] else "")
                    if o in g.index
                    else ""
                    for o in offsets
                ]
            )
        out.append(
            f"#### `{storage}` input (output format digits: {_digits(storage):.1f})\n\n"
            + _table(
                [
                    "layer",
                    "convention",
                    "moments / output form",
                    *[_offset_label(o) for o in offsets],
                ],
                rows,
            )
        )
    return "\n".join(out)


def layout_check(df: pd.DataFrame) -> str:
    v = df[df["kind"] == "var"]
    s = v[v["layout"] == "strided"]
    if s.empty:
        return ""
    keys = [
        "variant",
        "storage",
        "accumulator",
        "distribution",
        "scale_point",
        "n",
        "offset",
        "correction",
    ]
    c = v[v["layout"] == "contiguous"]
    m = s.merge(c, on=keys, suffixes=("_s", "_c"))
    same = (m["value_s"].to_numpy() == m["value_c"].to_numpy()) | (
        np.isnan(m["value_s"].to_numpy()) & np.isnan(m["value_c"].to_numpy())
    )
    return (
        f"Strided (non-contiguous, NaN-padded) inputs: {int(same.sum())} of {len(m)} "
        "cases give the same worst-row value bit for bit as the contiguous layout "
        "of the same data (the kernels fix their own reduction order).\n"
    )


def summary_markdown(df: pd.DataFrame, figures: Sequence[str] = ()) -> str:
    _DERIVED[:] = [(df, None)]
    try:
        return _summary_markdown(df, figures)
    finally:
        _DERIVED.clear()


def _summary_markdown(df: pd.DataFrame, figures: Sequence[str]) -> str:
    v = df[df["kind"] == "var"]
    cases = v.drop_duplicates(["storage", "layout", "distribution", "scale_point", "n", "offset"])
    ncases, nrows = len(cases), int(cases["rows"].sum())
    parts = [
        "# varstats: accuracy of variance algorithms against exact ground truth\n",
        "Generated by `python -m varstats.report` from `errors.csv` (written by "
        "`python -m varstats.sweep`); do not edit by hand.\n",
        f"`errors.csv`: {len(df)} rows; {ncases} generated cases "
        f"({nrows} data rows), {df.loc[df['kind'] == 'public', 'case'].nunique()} public cases, "
        f"{len(df[df['kind'] == 'layer'])} norm-layer rows.\n",
        "**Correct digits** are the log relative error (LRE, McCullough 1998) of the "
        "variance against the exact one, capped at the digits of the accumulator (the "
        "format the variance is returned in) everywhere in this summary. A result below the "
        "accumulator's normal range is judged by the accuracy attainable there: within one "
        "subnormal quantum of the exact value counts as full accuracy. **Full accuracy** "
        "means at least `digits(storage) - 1` correct digits (float16 3.3, bfloat16 2.4, "
        "float32 7.2, float64 16.0, minus one). **Cost order** of the algorithms, cheapest "
        "first: "
        + ", ".join(f"`{c}`" for c in COST_ORDER)
        + "; then the accumulator, narrowest first. Labels: without a suffix, the sums of "
        "the sum-based algorithms are pairwise: the n values are viewed as 32 rows of n/32 "
        "lanes, each lane (32 values n/32 apart) is summed sequentially and the n/32 lane "
        "sums are added in a balanced tree; `/seq` is one left-to-right sum. `welford` is "
        "the classic one-lane update, `welford/lanes8` eight interleaved updates merged (as "
        "vectorized CPU kernels do), `corrected_two_pass/rescale` the previous "
        "recommendation (power-of-two rescaling against overflow and underflow), `dot2` the "
        "current one (`varstats.recommended`). Generated data are drawn i.i.d. (a random "
        "order); a distribution label `name/order` holds the same values reordered "
        "(`varstats.cases.ORDERS`).\n",
        "## Headline: correct digits per algorithm and precision\n",
        "Median / worst correct digits over every generated case at unit scale with a "
        "nonzero variance (all n, offsets, distributions, orders, layouts and both "
        "corrections).\n",
        HEADLINE_START,
        headline_table(df),
        HEADLINE_END + "\n",
        "## The recommended configuration\n",
        "`vs.var(x, **vs.recommended(x.dtype))`: the `dot2` kernel (two-pass with "
        "TwoSum deviations, TwoProduct squares and Sum2 sums kept as double words, the "
        "variance rounded once; Ogita, Rump & Oishi 2005) in float32 for float16, bfloat16 "
        "and float32 data and in float64 for float64 data; it scales each slice by a power "
        "of two itself. Argued (`varstats.dot2`): a faithful rounding, so within 1 ulp of "
        "the correctly rounded variance, for n < 2^p of the accumulator and κ far beyond "
        "the offset/std a storage format resolves. Measured:\n",
        recommended_ulps_table(df),
        "## Recommendations\n",
        "For each storage format and regime, the cheapest algorithm and accumulator "
        "whose worst case keeps full accuracy (cost order and full accuracy as defined "
        "above), over every distribution and order, so a pick holds for any order of the "
        "data. The last column is the cheapest algorithm that reads the data once as a "
        "stream (`naive`, `shifted`, `welford`, or `chan`, which holds one 1024-value "
        "block at a time).\n",
        recommendation_table(df),
        "## If you write a kernel\n",
        "The common GPU/CPU reduction shapes, the study variant that rounds the same way "
        "(same formula, same accumulator; the order within a shape is the study's), and "
        "what it keeps in its worst case. `float16:float32` is a half-precision LayerNorm "
        "accumulating in float32. A GPU block runs more chains than the study's 8 Welford "
        "lanes (256 threads: n/256 values each instead of n/8), so its Welford bound "
        "(n/ℓ + log₂ℓ)κu is smaller; the merge tree and the accumulator are the same. "
        "PyTorch's `compute_stats` also divides by the count as a multiplication by its "
        "reciprocal, one more rounding per step than `welford`.\n",
        kernel_table(df),
        "## Adversarial orderings\n",
        ordering_table(df),
        "## Correct digits by offset/std ratio\n",
        "Median / worst correct digits per algorithm, one table per "
        "`storage:accumulator` pair (unit scale, nonzero variance, all n).\n",
        offset_tables(df),
        "## Worst correct digits by n\n",
        size_tables(df),
        "## Failures: negative, NaN and infinite variances\n",
        failure_table(df),
        "\nBy regime (all algorithms and precisions):\n",
        failure_by_regime(df),
        "## Near underflow and overflow\n",
        scale_table(df),
        "## Measured error vs the Chan-Golub-LeVeque bound\n",
        bound_section(df),
        "## Public reproduction cases\n",
        public_tables(df),
        "## Norm layers under each framework convention\n",
        layer_tables(df),
        "## Memory layout\n",
        layout_check(df),
    ]
    if figures:
        parts.append("## Figures\n")
        parts += [f"![{f}](figures/{f})\n" for f in figures]
    return "\n".join(p for p in parts if p).rstrip() + "\n"


# --------------------------------------------------------------------------- figures


def _floor(rel: npt.NDArray[np.float64], acc: str) -> npt.NDArray[np.float64]:
    return np.asarray(np.maximum(rel, finfo(acc).unit_roundoff / 8), dtype=np.float64)


def _core(df: pd.DataFrame) -> pd.DataFrame:
    v = df[df["kind"] == "var"]
    return v[
        (v["distribution"] == "normal")
        & (v["scale_point"] == "unit")
        & (v["layout"] == "contiguous")
        & (v["correction"] == 0)
    ]


def _variant_panels(
    ax: Any, sub: pd.DataFrame, xcol: str, variants: Sequence[str], acc: str
) -> None:
    colors = matplotlib.colormaps["tab10"]
    for i, var in enumerate(variants):
        g = sub[sub["variant"] == var].sort_values(xcol)
        if g.empty:
            continue
        c = colors(i % 10)
        ax.plot(g[xcol], _floor(g["rel_err"].to_numpy(), acc), marker="o", ms=3, color=c, label=var)
        b = g["bound"].to_numpy()
        if np.isfinite(b).any():
            ax.plot(g[xcol], b, ls="--", lw=0.8, color=c)
    u = finfo(acc).unit_roundoff
    ax.axhline(u, color="grey", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(u / 16, 10.0)
    _log_ticks(ax, x=True, y=True)
    ax.grid(True, which="major", lw=0.3)


def _log_ticks(ax: Any, *, x: bool, y: bool) -> None:
    # few major ticks, no minor ones: log axes spanning 20 decades otherwise spend
    # seconds laying out hundreds of tick labels
    for use, axis in ((x, ax.xaxis), (y, ax.yaxis)):
        if use:
            axis.set_major_locator(LogLocator(base=10.0, numticks=7))
            axis.set_minor_locator(NullLocator())
            # plain-text labels: mathtext ones cost milliseconds each to lay out
            axis.set_major_formatter(FuncFormatter(_tick_label))


def _tick_label(x: float, _pos: Any = None) -> str:
    return _offset_label(x) if x > 0 else "0"


def _figure_vs(
    df: pd.DataFrame, precision: str, xcol: str, fixed: str, value: float, path: Path
) -> None:
    storage, acc = precision.split(":")
    sub = _core(df)
    sub = sub[(sub["storage"] == storage) & (sub["accumulator"] == acc) & (sub[fixed] == value)]
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (title, variants) in zip(axes, _PANELS, strict=True):
        _variant_panels(ax, sub, xcol, variants, acc)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("offset / std" if xcol == "offset" else "n (values reduced)")
        ax.legend(fontsize=7, loc="upper left")
    fixed_label = f"n = {int(value)}" if fixed == "n" else f"offset/std = {_offset_label(value)}"
    axes[0].set_ylabel("worst relative error of the variance (floor u/8)")
    fig.suptitle(
        f"{precision}: error vs {'offset' if xcol == 'offset' else 'n'} "
        f"({fixed_label}, normal data); dashed: first-order bound; dotted: u",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})


def _nearest(values: Sequence[float], target: float) -> float:
    return min(values, key=lambda x: (abs(math.log10(x) - math.log10(target)), x))


def _layer_figure(df: pd.DataFrame, layer: str, path: Path) -> None:
    lay = df[(df["kind"] == "layer") & (df["layer"] == layer)]
    storages = [d for d in DTYPES if d in set(lay["storage"])]
    fig = Figure(figsize=(3.2 * len(storages) + 1, 3.8))
    axes = fig.subplots(1, len(storages), sharey=False, squeeze=False)
    colors = matplotlib.colormaps["tab10"]
    for ax, storage in zip(axes[0], storages, strict=True):
        sub = lay[lay["storage"] == storage]
        for i, conv in enumerate(dict.fromkeys(sub["convention"])):
            g = sub[sub["convention"] == conv].sort_values("offset")
            ax.plot(g["offset"], g["lre"], marker="o", ms=3, color=colors(i % 10), label=conv)
        ax.axhline(_digits(storage), color="grey", lw=0.6, ls=":")
        ax.set_xscale("log")
        _log_ticks(ax, x=True, y=False)
        ax.set_xlabel("offset / std of the input")
        ax.set_title(storage, fontsize=9)
        ax.set_ylim(-0.3, _digits(storage) + 0.5)
        ax.grid(True, lw=0.3)
    axes[0][0].set_ylabel("worst correct digits of the output")
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.suptitle(
        f"{layer}: output accuracy per framework convention (dotted: format digits)", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})


# --------------------------------------------------------------------------- writing
#
# Every output is written to a temporary file in its own directory and renamed over the
# old one (os.replace is atomic within a file system), so a reader, or a run killed at
# any instant, sees either the old file or the new one, never a part of either.

#: What one figure is: its file name, the function that draws it and that function's
#: arguments between the frame and the path.
FigureSpec = tuple[str, Callable[..., None], tuple[Any, ...]]


class OutputBusyError(RuntimeError):
    """Another sweep or report holds the output directory."""


class OutputNotWritableError(PermissionError):
    """The output directory (or its ``figures/``) cannot be written."""


def _temporary(path: Path) -> Path:
    # hidden, in the same directory (same file system, so the rename is atomic), named
    # by process so two writers never share one; the suffix keeps the format visible
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def write_atomic(path: str | Path, data: str | bytes, /) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def clear_temporaries(directory: str | Path, /) -> None:
    """Remove what :func:`write_atomic` leaves behind when a run is killed mid-write."""
    for tmp in Path(directory).glob(".*.tmp*"):
        if tmp.is_file():
            tmp.unlink()


@contextlib.contextmanager
def output_lock(out: str | Path, /) -> Iterator[None]:
    """Hold ``out`` for one writer; :class:`OutputBusyError` if another holds it.

    The lock is :func:`fcntl.flock` on the directory itself, so no lock file is left
    in the results, and the kernel releases it when the holder dies, however it dies.
    Where :mod:`fcntl` does not exist (Windows) there is no lock.
    """
    if fcntl is None:
        yield
        return
    fd = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputBusyError(
                f"{out}: another sweep or report is writing here; wait for it to finish "
                "or choose another --out"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def check_writable(out: str | Path, /, *, figures: bool = True) -> None:
    """Raise :class:`OutputNotWritableError` unless ``out`` (and ``out/figures``) take files.

    A file is created and removed in each: permission bits do not tell (root ignores
    them; a read-only mount does not show in them).
    """
    out = Path(out)
    dirs = [out]
    if figures and (out / "figures").exists():
        dirs.append(out / "figures")
    for d in dirs:
        try:
            fd, name = tempfile.mkstemp(prefix=".write-test.", suffix=".tmp", dir=d)
            os.close(fd)
            os.unlink(name)
        except OSError as exc:
            raise OutputNotWritableError(
                f"{d}: cannot write here ({exc.strerror or exc}); choose another --out "
                "or make it writable"
            ) from None


def figure_plan(df: pd.DataFrame) -> list[FigureSpec]:
    """The figures of ``df`` in order: one per precision and axis, one per norm layer."""
    plan: list[FigureSpec] = []
    core = _core(df)
    precs = _ordered((core["storage"] + ":" + core["accumulator"]).unique(), _PRECISION_ORDER)
    for p in precs:
        storage, acc = p.split(":")
        sub = core[(core["storage"] == storage) & (core["accumulator"] == acc)]
        ns = sorted(sub["n"].unique())
        n0 = int(min(ns, key=lambda n: (abs(math.log10(n) - 3), n)))
        plan.append((f"error_vs_offset_{storage}_{acc}.png", _figure_vs, (p, "offset", "n", n0)))
        o0 = _nearest(sorted(sub["offset"].unique()), 100.0)
        plan.append((f"error_vs_n_{storage}_{acc}.png", _figure_vs, (p, "n", "offset", o0)))
    for layer in dict.fromkeys(df.loc[df["kind"] == "layer", "layer"]):
        plan.append((f"layer_{layer}.png", _layer_figure, (layer,)))
    return plan


def _draw(df: pd.DataFrame, spec: FigureSpec, path: Path) -> None:
    _, draw, args = spec
    tmp = _temporary(path)
    try:
        draw(df, *args, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def build_figures(df: pd.DataFrame, out: Path) -> list[str]:
    """Write ``figures/*.png``; returns their file names in order."""
    figdir = Path(out) / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    plan = figure_plan(df)
    for spec in plan:
        _draw(df, spec, figdir / spec[0])
    return [spec[0] for spec in plan]


# one frame per process: the sweep's workers draw several figures of one errors.csv
_FRAME: dict[tuple[str, int, int], pd.DataFrame] = {}


def _cached_errors(path: str) -> pd.DataFrame:
    st = os.stat(path)
    key = (path, st.st_mtime_ns, st.st_size)
    if key not in _FRAME:
        _FRAME.clear()
        _FRAME[key] = read_errors(path)
    return _FRAME[key]


def _figure_task(errors: str, spec: FigureSpec, path: str) -> None:
    _draw(_cached_errors(errors), spec, Path(path))


def _summary_task(errors: str, names: list[str], path: str) -> None:
    write_atomic(path, summary_markdown(_cached_errors(errors), names))


def build_report(out: str | Path, /, *, executor: Executor | None = None) -> None:
    """Read ``out/errors.csv``; write ``out/summary.md`` and ``out/figures/``.

    Every file is written atomically; figures of the report's own kinds
    (``error_vs_*``, ``layer_*``) left from an earlier run that this one does not draw
    are removed last, and other files in ``figures/`` are left alone. With ``executor``
    (the sweep's worker pool) the summary and each figure are separate tasks; the bytes
    are the same.
    """
    out = Path(out)
    errors = out / "errors.csv"
    df = read_errors(errors)
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    clear_temporaries(out)
    clear_temporaries(figdir)
    plan = figure_plan(df)
    names = [spec[0] for spec in plan]
    if executor is None:
        for spec in plan:
            _draw(df, spec, figdir / spec[0])
        write_atomic(out / "summary.md", summary_markdown(df, names))
    else:
        # the summary is the longest task: start it first
        tasks = [executor.submit(_summary_task, str(errors), names, str(out / "summary.md"))]
        tasks += [
            executor.submit(_figure_task, str(errors), spec, str(figdir / spec[0])) for spec in plan
        ]
        for task in tasks:
            task.result()
    # only the report's own kinds of figure: results/figures/ also holds other outputs
    # (batch_size.png from python -m varstats.batch_size)
    for pattern in ("error_vs_*.png", "layer_*.png"):
        for old in figdir.glob(pattern):
            if old.name not in names:
                old.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m varstats.report``."""
    parser = argparse.ArgumentParser(
        prog="python -m varstats.report",
        description="Rebuild summary.md and figures/ from errors.csv.",
    )
    parser.add_argument(
        "out",
        nargs="?",
        type=Path,
        default=Path("results"),
        help="directory holding errors.csv (default results/)",
    )
    args = parser.parse_args(argv)
    if not (args.out / "errors.csv").is_file():
        print(
            f"{parser.prog}: error: {args.out / 'errors.csv'} not found; the sweep writes it: "
            f"{sweep_command(args.out)}",
            file=sys.stderr,
        )
        return 2
    try:
        with output_lock(args.out):
            check_writable(args.out)
            build_report(args.out)
    except OutputBusyError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except OutputNotWritableError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_NOT_WRITABLE
    return 0


if __name__ == "__main__":
    sys.exit(main())
