r"""The study: every variance algorithm, precision and input regime against exact ground truth.

Run ``python -m varstats.sweep`` (or ``varstats-sweep``); ``--help`` lists the options.
The sweep writes to ``--out`` (default ``results/``):

``errors.csv``
    One row per (case, algorithm variant, precision, correction); columns in
    :data:`varstats.schema.COLUMNS`. A *case* is one set of generator parameters
    (storage, distribution, layout, n, offset, scale) drawn as ``rows`` independent
    rows; the CSV row reports the worst of them (``value``, ``exact``, ``rel_err``,
    ``ulps``, ``lre``, ``kappa`` and ``bound`` of that row, its index in ``row``) and
    the median correct digits over all of them (``lre_median``), so that the file stays
    small enough to commit.
``summary.md``, ``figures/*.png``
    Built from ``errors.csv`` by :mod:`varstats.report`.

How the grid is cut
-------------------
The work is cut into *units*: one unit is one storage format x distribution x layout x
scale point x n, with every offset, every accumulator of that storage, every algorithm
variant and both corrections inside it. Within a unit all offsets are stacked into one
``(offsets * rows, n)`` array, so each kernel runs once per (variant, precision) and
vectorizes over every row, and the exact oracle runs once per unit (the data do not
depend on the accumulator). Public reproduction cases and norm layers are units too.

Determinism and resumption
--------------------------
Every case's seed is derived (SHA-256) from its parameters and ``--seed``, never from
the order or the process it runs in; floats are written with ``repr`` (shortest
round-trip, :func:`varstats.schema.format_field`), and every derived column (``lre``,
``kappa``, ``bound``) is computed from IEEE-754 operations only, never libm's
logarithms, so the same command gives the same bytes on any machine; units are
concatenated in grid order. Each finished unit is written atomically (temporary file,
then :func:`os.replace`) to ``OUT/.partial/KEY.csv``, where ``KEY`` hashes everything the
unit computes, under a first line holding its row count and SHA-256. ``--resume`` keeps
every unit whose file passes that check and recomputes the rest (missing, emptied,
truncated or altered files alike), so a killed run restarted with ``--resume`` ends with
the same bytes as an uninterrupted run; without ``--resume`` the partial store is cleared
first. It is removed after the last output is written.

Faults
------
- Every output (``errors.csv``, ``summary.md``, each figure) is written to a temporary
  file in its own directory and renamed: a kill at any instant leaves old or new files,
  never a part of one, and ``--resume`` completes the set.
- One writer per output directory: :func:`varstats.report.output_lock` (``flock`` on the
  directory). A second sweep (or ``python -m varstats.report``) exits with
  :data:`EXIT_BUSY` and a message.
- The output directory (and ``figures/``) is checked by writing a file into it before
  anything is computed; if it cannot be written the sweep exits with
  :data:`EXIT_NOT_WRITABLE`.
- Local workers die with the sweep (``PR_SET_PDEATHSIG`` on Linux, a watcher thread
  elsewhere) and ignore SIGINT; on Ctrl-C the sweep kills them, keeps the finished
  units, prints the command that resumes and exits with :data:`EXIT_INTERRUPTED`.
- ``--jobs`` is capped at the number of tasks; above the core count it warns.
- Only the full standard study writes to ``results/`` by default: a filtered or other
  grid needs ``--out`` (or ``--force``).

Where the work runs
-------------------
``--jobs J`` runs the units on ``J`` local processes, longest first, and then the
report's summary and figures as tasks on the same processes. ``--scheduler ADDRESS``
sends the units to an existing dask.distributed cluster instead
(``distributed`` is needed only then); the workers send back the CSV rows, this process
stores them and writes the report, so the bytes are the same as with ``--jobs``.

Scale points
------------
``unit``: standard deviation 1. ``low``: standard deviation :math:`2\sqrt{\text{tiny}}`
of the storage format, so squared deviations fall to the bottom of the normal range and
underflow in a same-width accumulator. ``high``: standard deviation
:math:`\min(\sqrt{\max}/4,\ 2^{-8}\max/(1 + r))` for offset ratio :math:`r`: the data sit
in the top binades, their squares and sums of squares overflow, the variance itself
(at most :math:`\max/16`) does not. The offset/std ratio ``offset`` runs over
:func:`varstats.cases.offset_ratios`, up to where the storage format stops resolving the
spread (:func:`varstats.cases.max_offset_ratio`); the absolute offset is
``offset * scale``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import hashlib
import json
import math
import multiprocessing
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from varstats import cases as vcases
from varstats import metrics, norms, oracle
from varstats import report as _report
from varstats.algorithms import ALGORITHMS
from varstats.conventions import CONVENTIONS, LAYERS
from varstats.precision import DTYPES, PRECISIONS, Precision, finfo
from varstats.reductions import mean_var
from varstats.reductions import moments as compute_moments
from varstats.schema import COLUMNS, format_field

__all__ = [
    "EXIT_BUSY",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_WRITABLE",
    "EXIT_UNAVAILABLE",
    "GRIDS",
    "GRID_HELP",
    "LAYER_EPS",
    "LAYER_GROUPS",
    "MAX_JOBS",
    "PARTIAL_DIR",
    "SCALE_POINTS",
    "VARIANTS",
    "Grid",
    "RunStats",
    "SchedulerError",
    "Unit",
    "Variant",
    "build_grid",
    "case_seed",
    "compute_unit",
    "format_rows",
    "load_or_sweep",
    "main",
    "make_parser",
    "run",
    "scale_for",
    "strided",
    "unit_text",
]

Array = npt.NDArray[Any]

#: Grid sizes understood by ``--grid`` (``tiny`` is a seconds-long slice for the tests).
GRIDS: Final = ("tiny", "quick", "standard", "full")

#: Scale points (see the module docstring).
SCALE_POINTS: Final = ("low", "unit", "high")

PARTIAL_DIR: Final = ".partial"


# --------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    """An algorithm with fixed kernel options, as one column of the study.

    ``sequential_loop`` marks kernels that loop in Python over the reduction length
    (seconds per call at n = 10**6); the grid keeps them to a thin slice at large n.
    """

    label: str
    algorithm: str
    options: tuple[tuple[str, Any], ...] = ()
    sequential_loop: bool = False

    @property
    def summation(self) -> str:
        return str(dict(self.options).get("summation", "-"))

    @property
    def rescale(self) -> bool:
        return bool(dict(self.options).get("rescale", False))

    def kernel_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.options if k != "rescale"}


def _variants() -> dict[str, Variant]:
    out: list[Variant] = []
    for name in ALGORITHMS:
        if name in ("naive", "shifted", "two_pass", "corrected_two_pass", "compensated"):
            out.append(Variant(name, name, (("summation", "pairwise"),)))
            seq_loop = name == "compensated"  # Neumaier's loop; the others use add.accumulate
            out.append(Variant(f"{name}/seq", name, (("summation", "sequential"),), seq_loop))
        elif name == "welford":
            out.append(Variant("welford", "welford", (("lanes", 1),), True))
            out.append(Variant("welford/lanes8", "welford", (("lanes", 8),)))
        else:
            out.append(Variant(name, name))
    # corrected two-pass with power-of-two rescaling (the recommendation before dot2)
    out.append(
        Variant(
            "corrected_two_pass/rescale",
            "corrected_two_pass",
            (("summation", "pairwise"), ("rescale", True)),
        )
    )
    # the recommended kernel (varstats.recommended); registered, not in ALGORITHMS
    out.append(Variant("dot2", "dot2"))
    return {v.label: v for v in out}


#: Every algorithm variant the sweep knows, by label, in table order.
VARIANTS: Final[dict[str, Variant]] = _variants()


# --------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class Unit:
    """One resumable piece of work; see the module docstring.

    ``kind`` is ``"var"`` (generated data), ``"public"`` (a reproduction case, named
    in ``case``) or ``"layer"`` (a norm layer, named in ``layer``, under every
    convention in ``conventions``).
    """

    kind: str
    storage: str
    n: int
    rows: int
    precisions: tuple[str, ...]
    variants: tuple[str, ...] = ()
    distribution: str = "-"
    layout: str = "contiguous"
    scale_point: str = "unit"
    offsets: tuple[float, ...] = ()
    case: str = "-"
    layer: str = "-"
    conventions: tuple[str, ...] = ()
    seed: int = 0

    @property
    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    @property
    def cost(self) -> float:
        """Rough relative cost, to start the longest units first."""
        loops = sum(VARIANTS[v].sequential_loop for v in self.variants)
        per_call = 2e-5 * self.n  # a Python-level step per element
        volume = self.n * self.rows * max(len(self.offsets), 1)
        return volume * 1e-6 * len(self.precisions) + loops * per_call * len(self.precisions)


@dataclass(frozen=True)
class Grid:
    """Parameters of one grid size (see :func:`build_grid`)."""

    name: str
    ns: tuple[int, ...]
    rows: dict[int, int]
    slices: tuple[tuple[str, str, str, int], ...]  # (distribution, layout, scale point, max n)
    loop_max_n: int  # sequential-loop variants above this n: core slice only
    loop_top_precisions: tuple[str, ...]  # ... and at the largest n only these precisions
    offset_step: int = 1  # use every k-th power of ten
    layer_offsets_step: int = 2
    layer_shape: tuple[int, ...] = (4, 8, 4, 4)
    public: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _ordered_slices(max_n: int) -> tuple[tuple[str, str, str, int], ...]:
    # adversarial orders (cases.ORDERS) of the same values: "distribution/order"
    return tuple(
        (label, "contiguous", "unit", max_n)
        for label in (
            "one_outlier/outlier_first",
            "normal/ascending",
            "normal/descending",
            "normal/shuffled",
        )
    )


def _grid_spec(name: str) -> Grid:
    core = ("normal", "contiguous", "unit")
    if name == "tiny":
        return Grid(
            name,
            ns=(2, 50),
            rows={2: 4, 50: 4},
            slices=(
                (*core, 50),
                ("constant", "contiguous", "unit", 50),
                ("normal", "strided", "unit", 50),
                ("normal", "contiguous", "high", 50),
            ),
            loop_max_n=50,
            loop_top_precisions=(),
            offset_step=4,
            layer_shape=(2, 4, 2, 2),
            layer_offsets_step=8,
        )
    if name == "quick":
        return Grid(
            name,
            ns=(2, 10, 1000, 10**5),
            rows={2: 32, 10: 32, 1000: 8, 10**5: 1},
            slices=(
                (*core, 10**5),
                ("one_outlier", "contiguous", "unit", 1000),
                ("constant", "contiguous", "unit", 1000),
                ("normal", "strided", "unit", 1000),
                ("normal", "contiguous", "low", 1000),
                ("normal", "contiguous", "high", 1000),
                *_ordered_slices(1000),
            ),
            loop_max_n=1000,
            loop_top_precisions=(),
            offset_step=2,
            layer_shape=(2, 4, 4, 4),
            layer_offsets_step=4,
        )
    dists = ("uniform", "lognormal", "one_outlier", "constant")
    if name == "standard":
        big = 10**5
        return Grid(
            name,
            ns=(2, 10, 100, 1000, 10**4, 10**5, 10**6),
            rows={2: 64, 10: 64, 100: 64, 1000: 16, 10**4: 8, 10**5: 2, 10**6: 1},
            slices=(
                (*core, 10**6),
                *((d, "contiguous", "unit", big) for d in dists),
                ("normal", "contiguous", "low", big),
                ("normal", "contiguous", "high", big),
                ("normal", "strided", "unit", 10**4),
                *_ordered_slices(big),
            ),
            loop_max_n=10**4,
            loop_top_precisions=("float32:float32", "float64:float64"),
            layer_offsets_step=1,
        )
    if name == "full":
        return Grid(
            name,
            ns=(2, 3, 10, 100, 1000, 10**4, 10**5, 10**6),
            rows={2: 256, 3: 256, 10: 256, 100: 128, 1000: 64, 10**4: 16, 10**5: 4, 10**6: 2},
            slices=(
                *((d, "contiguous", "unit", 10**6) for d in ("normal", *dists)),
                *(("normal", "contiguous", s, 10**6) for s in ("low", "high")),
                *((d, "contiguous", s, 10**5) for d in dists[:3] for s in ("low", "high")),
                ("normal", "strided", "unit", 10**5),
                *_ordered_slices(10**5),
            ),
            loop_max_n=10**5,
            loop_top_precisions=tuple(str(p) for p in PRECISIONS),
            layer_shape=(8, 16, 8, 8),
            layer_offsets_step=1,
        )
    raise ValueError(f"grid: unknown {name!r}; expected one of {GRIDS}")


def build_grid(
    name: str = "standard",
    *,
    algorithms: Sequence[str] | None = None,
    precisions: Sequence[Precision] | None = None,
    layers: Sequence[str] | None = None,
    seed: int = 0,
) -> list[Unit]:
    """The units of a grid, in output order.

    Parameters
    ----------
    name : {"tiny", "quick", "standard", "full"}
    algorithms : sequence of str, optional
        Keep only variants of these algorithms (registry names such as ``"welford"``)
        or these variant labels (``"two_pass/seq"``). Default: all of :data:`VARIANTS`.
    precisions : sequence of Precision, optional
        Default: :data:`varstats.PRECISIONS`.
    layers : sequence of str, optional
        Norm layers to sweep under every convention. Default: none.
    seed : int
        Base seed, mixed into every case's seed.
    """
    spec = _grid_spec(name)
    if algorithms is None:
        labels = tuple(VARIANTS)
    else:
        wanted = set(algorithms)
        labels = tuple(lab for lab, v in VARIANTS.items() if lab in wanted or v.algorithm in wanted)
    precs = tuple(str(p) for p in (PRECISIONS if precisions is None else precisions))
    units: list[Unit] = []
    top_n = max(spec.ns)
    core = ("normal", "contiguous", "unit")
    for distribution, layout, scale_point, max_n in spec.slices:
        for storage in DTYPES:
            sprecs = tuple(p for p in precs if p.split(":")[0] == storage)
            if not sprecs or not labels:
                continue
            offsets = vcases.offset_ratios(storage)[:: spec.offset_step]
            for n in spec.ns:
                if n > max_n:
                    continue
                loops_ok = n <= spec.loop_max_n or (distribution, layout, scale_point) == core
                unit_variants = tuple(
                    lab for lab in labels if loops_ok or not VARIANTS[lab].sequential_loop
                )
                base = Unit(
                    "var",
                    storage,
                    n,
                    spec.rows[n],
                    sprecs,
                    unit_variants,
                    distribution,
                    layout,
                    scale_point,
                    offsets,
                    seed=seed,
                )
                if n == top_n and loops_ok and n > spec.loop_max_n:
                    # thin slice: the sequential loops only at the listed precisions
                    fast = tuple(v for v in unit_variants if not VARIANTS[v].sequential_loop)
                    slow = tuple(v for v in unit_variants if VARIANTS[v].sequential_loop)
                    top = tuple(p for p in sprecs if p in spec.loop_top_precisions)
                    units.append(_replace(base, variants=fast))
                    # one unit per (precision, loop): the loops are the grid's longest
                    # units and run side by side this way; the rows keep their order
                    units += [
                        _replace(base, variants=(v,), precisions=(p,)) for p in top for v in slow
                    ]
                else:
                    units.append(base)
    if spec.public:
        for case in vcases.PUBLIC_CASES.values():
            cprecs = tuple(p for p in precs if p.split(":")[0] == case.dtype)
            if labels and cprecs:
                units.append(
                    Unit(
                        "public",
                        case.dtype,
                        case.x.shape[1],
                        case.x.shape[0],
                        cprecs,
                        labels,
                        case=case.name,
                        conventions=tuple(CONVENTIONS),
                        seed=seed,
                    )
                )
    for layer in layers or ():
        for storage in DTYPES:
            if not any(p.split(":")[0] == storage for p in precs):
                continue
            offsets = vcases.offset_ratios(storage)[:: spec.layer_offsets_step]
            units.append(
                Unit(
                    "layer",
                    storage,
                    int(np.prod(spec.layer_shape)),
                    1,
                    (),
                    distribution="normal",
                    offsets=offsets,
                    layer=layer,
                    conventions=tuple(CONVENTIONS),
                    seed=seed,
                    case="x".join(str(s) for s in spec.layer_shape),
                )
            )
    return units


def _replace(unit: Unit, **changes: Any) -> Unit:
    return Unit(**{**asdict(unit), **changes})


# --------------------------------------------------------------------------- data


def case_seed(*parts: Any) -> int:
    """A 63-bit seed from the parameters of a case (SHA-256; independent of process)."""
    text = "|".join(repr(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def scale_for(storage: str, scale_point: str, offset: float) -> float:
    """Standard deviation of the data at a scale point and offset ratio (module docstring)."""
    fi = finfo(storage)
    if scale_point == "unit":
        return 1.0
    if scale_point == "low":
        return 2.0 * math.sqrt(fi.tiny)
    if scale_point == "high":
        return min(math.sqrt(fi.max) / 4.0, vcases.scale_range(storage)[1] / (1.0 + offset))
    raise ValueError(f"scale_point: unknown {scale_point!r}; expected one of {SCALE_POINTS}")


def strided(x: Array) -> Array:
    """The same values as a non-contiguous view laid out as ``generate(layout="strided")``."""
    batch, n = x.shape
    buf = np.full((n, 2 * batch), np.nan, dtype=x.dtype)
    buf[:, ::2] = x.T
    return buf[:, ::2].T


def _to_float(q: Any) -> float:
    if isinstance(q, Fraction):
        return oracle.round_ratio(q.numerator, q.denominator)
    return float(q)


@dataclass
class _Exact:
    mean: Array  # float64, rounded
    var: dict[int, Array]  # correction -> float64, rounded
    kappa: Array
    shifted_kappa: Array  # for the shift by the first value


def _exact(x: Array, corrections: Iterable[int]) -> _Exact:
    em = oracle.exact_moments(x, axis=-1)
    n = x.shape[-1]
    means = list(em.mean.reshape(-1))
    m2s = list(em.m2.reshape(-1))

    # each ratio rounded once from its unreduced numerator and denominator: the same
    # rational as the Fraction arithmetic, without a gcd of large integers per row
    def var_of(c: int) -> Array:
        return np.array(
            [
                oracle.round_ratio(m2.numerator, m2.denominator * (n - c))
                if isinstance(m2, Fraction)
                else math.nan
                for m2 in m2s
            ]
        )

    def shifted(m: Any, f: float) -> float:
        if not isinstance(m, Fraction):
            return math.nan
        a, b = f.as_integer_ratio()
        return oracle.round_ratio(m.numerator * b - a * m.denominator, m.denominator * b)

    var = {c: var_of(c) for c in corrections}
    var0 = var[0] if 0 in var else var_of(0)
    mean = np.array([_to_float(m) for m in means])
    first = x[:, 0].astype(np.float64).tolist()
    shift = np.array([shifted(m, f) for m, f in zip(means, first, strict=True)])
    # kappa depends on S only through S/n: pass the variance so S cannot overflow
    return _Exact(mean, var, vcases.kappa(1, mean, var0), vcases.kappa(1, shift, var0))


# --------------------------------------------------------------------------- rows


def _worst(rel: Array) -> Any:
    """Index of the worst row along the last axis: NaN counts as worst, the first one wins ties."""
    return np.argmax(np.where(np.isnan(rel), np.inf, rel), axis=-1)


def _row(unit: Unit, **cols: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "kind": unit.kind,
        "case": unit.case,
        "layer": unit.layer,
        "convention": "-",
        "algorithm": "-",
        "variant": "-",
        "summation": "-",
        "storage": unit.storage,
        "accumulator": "-",
        "layout": unit.layout,
        "distribution": unit.distribution,
        "scale_point": unit.scale_point,
        "n": unit.n,
        "offset": math.nan,
        "scale": math.nan,
        "correction": 0,
        "seed": 0,
        "rows": unit.rows,
    }
    base.update(cols)
    return base


def _metrics(value: Array, exact: Array, acc: str, bnd: Array) -> dict[str, Array]:
    u = finfo(acc).unit_roundoff
    rel = metrics.rel_err(value, exact)
    # the bound is on S; the division by n - c rounds once more, and `exact` is float64
    exceeds = np.where(np.isnan(rel), np.inf, rel) > bnd + 2.0 * u
    v64 = value.astype(np.float64)
    return {
        "value": v64,
        "rel_err": rel,
        "ulps": metrics.ulps(value, exact, acc),
        "lre": metrics.lre(value, exact, acc),
        "exceeds": exceeds,
        "negative": np.isfinite(v64) & (v64 < 0),
        "nan": np.isnan(v64),
        "inf": np.isinf(v64),
    }


def _aggregate_slices(
    m: dict[str, Array], exact: Array, kappa: Array, bnd: Array, count: int
) -> list[dict[str, Any]]:
    """The aggregate columns of the rows split into ``count`` equal consecutive slices.

    One vector operation per column over all slices (``(count, rows)`` views) instead of
    one per slice: the sweep calls this about 10^5 times.
    """

    def view(a: Array) -> Array:
        return a.reshape(count, -1)

    rel = view(m["rel_err"])
    w = _worst(rel)
    pick = np.arange(count), w
    nan = np.count_nonzero(view(m["nan"]), axis=1)
    inf = np.count_nonzero(view(m["inf"]), axis=1)
    lre = view(m["lre"])
    cols = {
        "row": w,
        "kappa": view(kappa)[pick],
        "value": view(m["value"])[pick],
        "exact": view(exact)[pick],
        "rel_err": rel[pick],
        "ulps": view(m["ulps"])[pick],
        "lre": np.min(lre, axis=1),
        "lre_median": np.median(lre, axis=1),
        "bound": view(bnd)[pick],
        "exceeds_bound": np.any(view(m["exceeds"]), axis=1),
        "negative": np.count_nonzero(view(m["negative"]), axis=1),
        "nan": nan,
        "inf": inf,
        "nonfinite": nan + inf,
    }
    # plain Python scalars: the CSV writer formats them by type
    lists = {k: v.tolist() for k, v in cols.items()}
    return [{k: v[i] for k, v in lists.items()} for i in range(count)]


def _variant_var(
    x: Array, variant: Variant, precision: str, corrections: Sequence[int]
) -> dict[int, Array]:
    """The variant's variance of every row of ``x`` for each correction (accumulator dtype)."""
    opts = variant.kernel_options()
    if variant.rescale:
        return {
            c: np.asarray(
                mean_var(
                    x,
                    axis=-1,
                    correction=c,
                    algorithm=variant.algorithm,
                    precision=precision,
                    rescale=True,
                    **opts,
                )[1]
            ).reshape(-1)
            for c in corrections
        }
    m = compute_moments(x, axis=-1, algorithm=variant.algorithm, precision=precision, **opts)
    return {c: np.asarray(m.var(c)).reshape(-1) for c in corrections}


def _variant_bound(variant: Variant, n: int, kappa: Array, shifted_kappa: Array, acc: str) -> Array:
    opts = dict(variant.options)
    return metrics.bound(
        variant.algorithm,
        n,
        kappa,
        finfo(acc).unit_roundoff,
        str(opts.get("summation", "pairwise")),
        lanes=opts.get("lanes"),
        block=opts.get("block"),
        shifted_kappa=shifted_kappa if variant.algorithm == "shifted" else None,
    )


def _var_unit(unit: Unit) -> list[dict[str, Any]]:
    blocks, scales, seeds = [], [], []
    for offset in unit.offsets:
        scale = scale_for(unit.storage, unit.scale_point, offset)
        # the layout is not part of the seed: strided data equal the contiguous data
        # "one_outlier/outlier_first": the values of "one_outlier" (same seed), reordered
        distribution, _, order = unit.distribution.partition("/")
        seed = case_seed(unit.seed, unit.storage, distribution, unit.scale_point, unit.n, offset)
        blocks.append(
            vcases.generate(
                unit.n,
                storage=unit.storage,
                distribution=distribution,
                offset=offset * scale,
                scale=scale,
                batch=unit.rows,
                seed=seed,
                order=order or "drawn",
            )
        )
        scales.append(scale)
        seeds.append(seed)
    x = np.concatenate(blocks, axis=0)
    if unit.layout == "strided":
        x = strided(x)
    corrections = (0, 1) if unit.n > 1 else (0,)
    ex = _exact(np.ascontiguousarray(x), corrections)
    out: list[dict[str, Any]] = []
    for precision in unit.precisions:
        acc = Precision.parse(precision).accumulator
        for label in unit.variants:
            variant = VARIANTS[label]
            values = _variant_var(x, variant, precision, corrections)
            bnd = _variant_bound(variant, unit.n, ex.kappa, ex.shifted_kappa, acc)
            for c in corrections:
                m = _metrics(values[c], ex.var[c], acc, bnd)
                aggs = _aggregate_slices(m, ex.var[c], ex.kappa, bnd, len(unit.offsets))
                for i, offset in enumerate(unit.offsets):
                    out.append(
                        _row(
                            unit,
                            algorithm=variant.algorithm,
                            variant=label,
                            summation=variant.summation,
                            accumulator=acc,
                            offset=offset,
                            scale=scales[i],
                            correction=c,
                            seed=seeds[i],
                            **aggs[i],
                        )
                    )
    return out


def _framework_stats(
    case: Any, conventions: Sequence[str]
) -> list[tuple[str, str, str, str, Array]]:
    """(convention, layer, algorithm, precision, variance) of each framework's moments kernel."""
    layer = case.op if case.op in ("layer_norm", "batch_norm") else "layer_norm"
    out = []
    for name in conventions:
        conv = CONVENTIONS[name]
        precision = str(conv.precision(layer, case.dtype))
        algorithm = conv.algorithm(layer)
        m = compute_moments(case.x, axis=-1, algorithm=algorithm, precision=precision)
        variance = np.asarray(m.var(case.correction)).reshape(-1)
        out.append((name, layer, str(algorithm), precision, variance))
    return out


def _public_unit(unit: Unit) -> list[dict[str, Any]]:
    case = vcases.PUBLIC_CASES[unit.case]
    x = case.x
    c = case.correction
    ex = _exact(x, (c,))
    std = math.sqrt(ex.var[c][0]) if math.isfinite(ex.var[c][0]) else math.nan
    where = {"offset": abs(ex.mean[0]) / std if std > 0 else math.inf, "scale": std}
    out: list[dict[str, Any]] = []
    for precision in unit.precisions:
        acc = Precision.parse(precision).accumulator
        for label in unit.variants:
            variant = VARIANTS[label]
            values = _variant_var(x, variant, precision, (c,))
            bnd = _variant_bound(variant, unit.n, ex.kappa, ex.shifted_kappa, acc)
            m = _metrics(values[c], ex.var[c], acc, bnd)
            out.append(
                _row(
                    unit,
                    algorithm=variant.algorithm,
                    variant=label,
                    summation=variant.summation,
                    accumulator=acc,
                    correction=c,
                    **where,
                    **_aggregate_slices(m, ex.var[c], ex.kappa, bnd, 1)[0],
                )
            )
    for conv, layer, algorithm, precision, fw_values in _framework_stats(case, unit.conventions):
        acc = Precision.parse(precision).accumulator
        nan_bound = np.full(x.shape[0], math.nan)
        m = _metrics(fw_values, ex.var[c], acc, nan_bound)
        out.append(
            _row(
                unit,
                layer=layer,
                convention=conv,
                algorithm=algorithm,
                variant=algorithm,
                accumulator=acc,
                correction=c,
                **where,
                **_aggregate_slices(m, ex.var[c], ex.kappa, nan_bound, 1)[0],
            )
        )
    return out


#: Norm-layer eps for LayerNorm, GroupNorm and InstanceNorm (BatchNorm: the convention's).
LAYER_EPS: Final = 1e-5
#: Groups of GroupNorm in the layer grid.
LAYER_GROUPS: Final = 2


def _apply_layer(layer: str, x: Array, convention: str) -> tuple[Array, float, Array]:
    """Output of ``layer`` under ``convention`` (its own algorithm and precision), the eps
    it used, and the exact output (float64)."""

    if layer == "batch_norm":
        eps = CONVENTIONS[convention].eps
        y = norms.batch_norm(x, None, None, training=True, convention=convention).y
        exact = oracle.exact_normalize(x, axis=(0, 2, 3), eps=eps)
    elif layer == "layer_norm":
        eps = LAYER_EPS
        y = norms.layer_norm(x, x.shape[1:], eps=eps, convention=convention)
        exact = oracle.exact_normalize(x, axis=(1, 2, 3), eps=eps)
    elif layer == "group_norm":
        eps = LAYER_EPS
        y = norms.group_norm(x, LAYER_GROUPS, eps=eps, convention=convention)
        g = x.reshape(x.shape[0], LAYER_GROUPS, -1)
        exact = oracle.exact_normalize(g, axis=2, eps=eps).reshape(x.shape)
    elif layer == "instance_norm":
        eps = LAYER_EPS
        y = norms.instance_norm(x, eps=eps, convention=convention)
        exact = oracle.exact_normalize(x, axis=(2, 3), eps=eps)
    else:
        raise ValueError(f"layer: unknown {layer!r}")
    return np.asarray(y), eps, exact


def _layer_unit(unit: Unit) -> list[dict[str, Any]]:
    r"""Output error of one norm layer under every convention, per offset.

    The error of a normalized output is measured against its own scale: with
    :math:`\hat y` exact, ``rel_err`` is :math:`\max_i |y_i - \hat y_i| / \mathrm{rms}(\hat y)`
    (normwise; :math:`\mathrm{rms}(\hat y) \approx 1` without affine parameters), ``ulps``
    the same error in ulps of 1 in the output format, ``lre`` its correct digits capped
    at the output format's, ``lre_median`` the median over elements of
    :math:`-\log_{10}(|y_i - \hat y_i| / \mathrm{rms}(\hat y))`. ``value``/``exact`` are
    the worst element, ``row`` its flat index, ``rows`` the number of elements.
    """

    shape = tuple(int(s) for s in unit.case.split("x"))
    out: list[dict[str, Any]] = []
    fi = finfo(unit.storage)
    for offset in unit.offsets:
        seed = case_seed(unit.seed, "layer", unit.storage, unit.case, offset)
        x = vcases.generate(
            unit.n, storage=unit.storage, offset=offset, scale=1.0, seed=seed
        ).reshape(shape)
        xm = x.reshape(1, -1)
        ex = _exact(xm, (0,))
        for name in unit.conventions:
            conv = CONVENTIONS[name]
            y, _, exact = _apply_layer(unit.layer, x, name)
            y64 = y.astype(np.float64).reshape(-1)
            e64 = exact.reshape(-1)
            rms = float(np.sqrt(np.mean(e64**2))) if np.all(np.isfinite(e64)) else math.nan
            err = np.abs(y64 - e64) / (rms if rms > 0 else 1.0)
            w = _worst(err)
            worst = float(np.where(np.isnan(err), np.inf, err)[w])
            digits = metrics.correct_digits(err, unit.storage)  # NaN error: 0 digits
            nan = int(np.count_nonzero(np.isnan(y64)))
            inf = int(np.count_nonzero(np.isinf(y64)))
            out.append(
                _row(
                    unit,
                    convention=name,
                    algorithm=conv.algorithm(unit.layer),
                    variant=conv.output_form(unit.layer),
                    accumulator=conv.precision(unit.layer, unit.storage).accumulator,
                    offset=offset,
                    scale=1.0,
                    seed=seed,
                    rows=y64.size,
                    row=w,
                    kappa=float(ex.kappa[0]),
                    value=float(y64[w]),
                    exact=float(e64[w]),
                    rel_err=worst,
                    ulps=worst / fi.eps,
                    lre=float(digits[w]) + 0.0,
                    lre_median=float(np.median(digits)) + 0.0,
                    bound=math.nan,
                    exceeds_bound=False,
                    negative=0,
                    nan=nan,
                    inf=inf,
                    nonfinite=nan + inf,
                )
            )
    return out


def compute_unit(unit: Unit) -> list[dict[str, Any]]:
    """Every CSV row of one unit, in a fixed order."""
    with np.errstate(all="ignore"):
        if unit.kind == "var":
            return _var_unit(unit)
        if unit.kind == "public":
            return _public_unit(unit)
        if unit.kind == "layer":
            return _layer_unit(unit)
    raise ValueError(f"unit: unknown kind {unit.kind!r}")


# --------------------------------------------------------------------------- storage


def format_rows(rows: Iterable[dict[str, Any]]) -> str:
    """CSV text (no header) of rows in :data:`varstats.schema.COLUMNS` order."""
    cols = tuple(COLUMNS)
    lines = []
    for r in rows:
        # exact types only (np.float64 is a float subclass whose repr differs)
        fields = [_FAST_FORMAT.get(type(v), format_field)(v) for v in map(r.__getitem__, cols)]
        lines.append(",".join(fields) + "\n")
    return "".join(lines)


#: Formatters that give :func:`~varstats.schema.format_field`'s text for these exact
#: types, without its checks (``str(True) == "True"``, ``repr`` of a float).
_FAST_FORMAT: Final[dict[type, Callable[[Any], str]]] = {
    float: repr,
    int: str,
    bool: str,
    # the few distinct labels (kind, variant, storage, ...) are checked once each
    str: functools.lru_cache(maxsize=4096)(format_field),
}


def unit_text(unit: Unit) -> str:
    """The CSV rows of one unit; what a worker (local or on a cluster) sends back."""
    return format_rows(compute_unit(unit))


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def _unit_header(key: str, body: str) -> str:
    # the row count and checksum make an emptied, truncated or foreign file detectable
    return f"# varstats unit {key} rows={body.count(chr(10))} sha256={_digest(body)}\n"


def _store_unit(partial: Path, unit: Unit, body: str) -> None:
    _report.write_atomic(partial / f"{unit.key}.csv", _unit_header(unit.key, body) + body)


def _load_unit(partial: Path, unit: Unit) -> str | None:
    """The stored rows of ``unit``, or None when absent or not exactly what was written."""
    try:
        text = (partial / f"{unit.key}.csv").read_bytes().decode()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    header, _, body = text.partition("\n")
    return body if header + "\n" == _unit_header(unit.key, body) else None


class SchedulerError(RuntimeError):
    """The dask.distributed scheduler given to ``--scheduler`` cannot be used."""


@dataclass
class RunStats:
    """What :func:`run` did: units in the grid, computed, taken from ``.partial``, ..."""

    units: int
    computed: int
    resumed: int
    rows: int
    seconds: float
    jobs: int = 1
    invalid: int = 0  # stored units that failed their check and were recomputed


_PR_SET_PDEATHSIG: Final = 1  # from <linux/prctl.h>


def _worker_init(parent: int) -> None:
    """Runs first in every local worker: die with the parent, leave Ctrl-C to it."""
    # a terminal's Ctrl-C reaches the whole process group; the parent stops the workers
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # PR_SET_PDEATHSIG: the kernel kills this process when its parent dies, even by
    # SIGKILL, which no handler in the parent can see; elsewhere a thread watches
    linux = sys.platform.startswith("linux")
    if not linux or ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


@contextlib.contextmanager
def _local_pool(jobs: int) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``jobs`` spawned workers that never outlive this process.

    On any exception (Ctrl-C included) the workers are killed at once instead of
    finishing the queued units, as ``ProcessPoolExecutor.__exit__`` would.
    """
    pool = ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(os.getpid(),),
    )
    try:
        yield pool
    except BaseException:
        # the executor has no public way to stop running tasks: kill its processes
        workers = list((pool._processes or {}).values())
        for w in workers:
            w.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        for w in workers:
            w.join(timeout=2.0)
        raise
    pool.shutdown(wait=True)


def _compute_local(
    todo: Sequence[Unit], pool: ProcessPoolExecutor | None
) -> Iterator[tuple[Unit, str]]:
    if pool is None:
        for u in todo:
            yield u, unit_text(u)
        return
    futures = {pool.submit(unit_text, u): u for u in todo}
    pending: set[Future[str]] = set(futures)
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for f in done:
            yield futures[f], f.result()


def _compute_cluster(todo: Sequence[Unit], scheduler: str) -> Iterator[tuple[Unit, str]]:
    """Units computed on the dask.distributed cluster at ``scheduler``; rows come back."""
    try:
        from distributed import Client, as_completed  # optional: the dask extra
    except ImportError:
        raise SchedulerError(
            "--scheduler needs dask.distributed (pip install varstats[dask])"
        ) from None
    from distributed.comm.addressing import parse_address
    from distributed.comm.registry import get_backend

    try:
        # a malformed address fails here, before a half-made Client lingers on close
        get_backend(parse_address(scheduler)[0])
        client = Client(scheduler, set_as_default=False, timeout="10s")  # type: ignore[no-untyped-call]
    except (OSError, ValueError) as exc:
        raise SchedulerError(f"--scheduler: cannot reach {scheduler}: {exc}") from None
    with client:
        # key: the unit's own hash, so a resubmitted unit is the same task
        futures = {
            client.submit(unit_text, u, key=f"varstats-unit-{u.key}", pure=False): u for u in todo
        }
        try:
            for f in as_completed(futures, loop=client.loop):  # type: ignore[no-untyped-call]
                yield futures[f], f.result()
        except BaseException:  # Ctrl-C included: the cluster stops too
            client.cancel(list(futures), force=True)  # type: ignore[no-untyped-call]
            raise


def run(
    units: Sequence[Unit],
    out: Path,
    *,
    jobs: int = 1,
    resume: bool = False,
    progress: bool = True,
    finalize: bool = True,
    report: bool = True,
    scheduler: str | None = None,
) -> RunStats:
    """Compute ``units`` (skipping valid stored ones if ``resume``), then write the outputs.

    Raises :class:`varstats.report.OutputBusyError` if another run holds ``out`` and
    :class:`varstats.report.OutputNotWritableError` if ``out`` cannot be written, both
    before anything is computed. ``scheduler`` is the address of a dask.distributed
    scheduler to compute the units on instead of ``jobs`` local processes.
    """
    t0 = time.perf_counter()
    out = Path(out)
    keys = [u.key for u in units]
    if len(set(keys)) != len(keys):
        raise ValueError("units: the grid holds the same unit twice")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _report.OutputNotWritableError(
            f"{out}: cannot create it ({exc.strerror or exc}); choose another --out"
        ) from None
    with _report.output_lock(out):
        _report.check_writable(out, figures=finalize and report)
        partial = out / PARTIAL_DIR
        if partial.exists() and not resume:
            shutil.rmtree(partial)
        partial.mkdir(exist_ok=True)
        for d in (out, partial):  # what a killed run was writing
            _report.clear_temporaries(d)
        bodies: dict[str, str] = {}
        invalid = 0
        for u in units:
            body = _load_unit(partial, u) if resume else None
            if body is not None:
                bodies[u.key] = body
            elif (partial / f"{u.key}.csv").exists():
                invalid += 1
        todo = [u for u in units if u.key not in bodies]
        todo.sort(key=lambda u: -u.cost)  # longest first; output order does not depend on it
        resumed = len(units) - len(todo)
        # more workers than tasks would only start idle processes
        tasks = len(todo) + (_REPORT_TASKS if finalize and report else 0)
        jobs = max(1, min(jobs, tasks)) if scheduler is None else 1
        bar = tqdm(
            total=len(units),
            initial=resumed,
            unit="unit",
            file=sys.stderr,
            disable=not progress,
            mininterval=1.0,
            dynamic_ncols=True,
        )
        with contextlib.ExitStack() as stack:
            pool = stack.enter_context(_local_pool(jobs)) if jobs > 1 else None
            try:
                results = (
                    _compute_cluster(todo, scheduler)
                    if scheduler is not None
                    else _compute_local(todo, pool)
                )
                for unit, body in results:
                    _store_unit(partial, unit, body)
                    bodies[unit.key] = body
                    bar.update(1)
            finally:
                bar.close()
            nrows = sum(b.count("\n") for b in bodies.values())
            if finalize:
                header = ",".join(COLUMNS) + "\n"
                _report.write_atomic(out / "errors.csv", header + "".join(bodies[k] for k in keys))
                if report:
                    _report.build_report(out, executor=pool)
                shutil.rmtree(partial)
    return RunStats(len(units), len(todo), resumed, nrows, time.perf_counter() - t0, jobs, invalid)


#: The most tasks the report adds to the pool: the summary and its figures.
_REPORT_TASKS: Final = 1 + 2 * len(PRECISIONS) + len(LAYERS)


# --------------------------------------------------------------------------- CLI

#: Exit status after Ctrl-C (SIGINT), as a shell reports a command killed by it.
EXIT_INTERRUPTED: Final = 130
#: Exit status when another sweep holds the output directory (``EX_TEMPFAIL``).
EXIT_BUSY: Final = _report.EXIT_BUSY
#: Exit status when the output directory cannot be written (``EX_CANTCREAT``).
EXIT_NOT_WRITABLE: Final = _report.EXIT_NOT_WRITABLE
#: Exit status when the ``--scheduler`` cannot be reached (``EX_UNAVAILABLE``).
EXIT_UNAVAILABLE: Final = 69
#: The largest ``--jobs`` accepted (the pool is capped at the number of units anyway).
MAX_JOBS: Final = 1024

#: What each ``--grid`` is for and about how long it takes with ``--jobs 2`` on two idle
#: cores (``benchmarks/bench_sweep.py`` measures it; ``full`` is scaled from the cost model).
GRID_HELP: Final = {
    "tiny": ("a few seconds", "a slice for the tests"),
    "quick": ("about 15 s", "every axis at small n, for CI"),
    "standard": ("about 1 min", "the committed study, the default"),
    "full": ("about 5-10 min", "more rows, n = 3, the extremes up to n = 10**6"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit status 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _csv_list(kind: str, allowed: Sequence[str] | None) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(t.strip() for t in text.split(",") if t.strip())
        if not items:
            raise argparse.ArgumentTypeError(f"empty {kind} list")
        if allowed is not None:
            bad = [t for t in items if t not in allowed]
            if bad:
                raise argparse.ArgumentTypeError(
                    f"unknown {kind} {', '.join(bad)}; expected some of {', '.join(allowed)}"
                )
        return items

    return parse


def _precision_list(text: str) -> tuple[Precision, ...]:
    out = []
    for item in _csv_list("precision", None)(text):
        try:
            out.append(Precision.parse(item))
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(f"bad precision {item!r}: {exc}") from None
    return tuple(out)


def _jobs(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if not 1 <= v <= MAX_JOBS:
        raise argparse.ArgumentTypeError(
            f"expected an integer from 1 to {MAX_JOBS}, got {text if len(text) < 30 else 'more'}"
        )
    return v


def _seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return v


def make_parser() -> argparse.ArgumentParser:
    layers = tuple(LAYERS)
    grids = "; ".join(f"{g} ({GRID_HELP[g][0]}): {GRID_HELP[g][1]}" for g in GRIDS)
    p = _Parser(
        prog="varstats-sweep",
        description="Measure every variance algorithm, precision and norm-layer convention "
        "against exact ground truth; write errors.csv, summary.md and figures/.",
        epilog=f"Exit status: 0 done, 2 usage, {EXIT_NOT_WRITABLE} output not writable, "
        f"{EXIT_BUSY} another sweep is writing the same --out, {EXIT_UNAVAILABLE} "
        f"--scheduler unreachable, {EXIT_INTERRUPTED} "
        "interrupted (rerun with --resume).",
    )
    p.add_argument(
        "--grid",
        choices=GRIDS,
        default="standard",
        help=f"grid size, with its time for --jobs 2 on two idle cores: {grids}",
    )
    p.add_argument(
        "--algorithms",
        type=_csv_list("algorithm", tuple(dict.fromkeys((*ALGORITHMS, *VARIANTS)))),
        help="comma-separated algorithms or variant labels (default: all)",
    )
    p.add_argument(
        "--precisions",
        type=_precision_list,
        help="comma-separated storage:accumulator pairs, e.g. float16:float32 "
        "(default: the 7 standard pairs)",
    )
    p.add_argument(
        "--layers",
        type=_csv_list("layer", (*layers, "all", "none")),
        default=("all",),
        help=f"norm layers to sweep under every convention: all (default), none, "
        f"or some of {', '.join(layers)}",
    )
    p.add_argument(
        "--jobs",
        type=_jobs,
        default=os.cpu_count() or 1,
        help="worker processes (default: all cores; at most one per unit)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="compute the units on this dask.distributed scheduler (e.g. tcp://host:8786) "
        "instead of local processes; same bytes out",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default: results/, for the full standard study only)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="let a filtered or non-standard run replace results/ when --out is not given",
    )
    p.add_argument(
        "--resume", action="store_true", help="keep the units an interrupted run already wrote"
    )
    p.add_argument("--seed", type=_seed, default=0, help="base seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _resume_command(argv: Sequence[str]) -> str:
    args = [a for a in argv if a != "--resume"]
    return shlex.join(["python", "-m", "varstats.sweep", *args, "--resume"])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m varstats.sweep`` and ``varstats-sweep``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    args = parser.parse_args(argv)
    layers: tuple[str, ...] = args.layers
    if "none" in layers:
        if len(layers) > 1:
            parser.error("--layers: 'none' cannot be combined with layer names")
        layers = ()
    elif "all" in layers:
        layers = tuple(LAYERS)
    standard = (
        args.grid == "standard"
        and args.algorithms is None
        and args.precisions is None
        and layers == tuple(LAYERS)
        and args.seed == 0
    )
    out: Path = args.out if args.out is not None else Path("results")
    if args.out is None and not standard and not args.force:
        parser.error(
            "--out: only the full standard study goes to results/ by default; "
            "give --out DIR for this run (or --force to replace results/)"
        )
    if out.exists() and not out.is_dir():
        parser.error(f"--out: {out} is not a directory")
    units = build_grid(
        args.grid,
        algorithms=args.algorithms,
        precisions=args.precisions,
        layers=layers,
        seed=args.seed,
    )
    if not units:
        parser.error("the selection is empty (no unit matches --algorithms/--precisions)")
    cores = os.cpu_count() or 1
    if args.scheduler is None and args.jobs > cores:
        print(
            f"varstats-sweep: warning: --jobs {args.jobs} is more than the {cores} cores; "
            "the workers will share them",
            file=sys.stderr,
        )
    try:
        stats = run(
            units,
            out,
            jobs=args.jobs,
            resume=args.resume,
            progress=not args.no_progress,
            scheduler=args.scheduler,
        )
    except _report.OutputBusyError as exc:
        print(f"varstats-sweep: error: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except (_report.OutputNotWritableError, PermissionError) as exc:
        print(f"varstats-sweep: error: {exc}", file=sys.stderr)
        return EXIT_NOT_WRITABLE
    except SchedulerError as exc:
        print(f"varstats-sweep: error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        print(
            f"\nvarstats-sweep: interrupted; finished units are kept in {out / PARTIAL_DIR}. "
            f"Resume with: {_resume_command(argv)}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if stats.invalid:
        print(
            f"varstats-sweep: {stats.invalid} stored units failed their checksum and were "
            "recomputed",
            file=sys.stderr,
        )
    where = f"scheduler {args.scheduler}" if args.scheduler else f"jobs {stats.jobs}"
    print(
        f"varstats-sweep: grid {args.grid}, {stats.units} units ({stats.computed} computed, "
        f"{stats.resumed} resumed), {stats.rows} rows, {where}, "
        f"wall {stats.seconds:.1f} s -> {out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())


def load_or_sweep(*, quick: bool = False) -> tuple[Any, str]:
    """The committed ``results/errors.csv``, or a small sweep where a checkout has none.

    For the notebooks: returns the typed frame (:func:`varstats.report.load_results`)
    and where it came from, said without any absolute path (outputs must not name the
    machine). Without ``results/errors.csv`` the ``quick`` grid (``tiny`` with
    ``quick=True``) is swept once into the system's temporary directory and reused.
    """
    results = _report.results_dir()
    shown = f"{results.name}/errors.csv"
    if not (results / "errors.csv").is_file():
        grid = "tiny" if quick else "quick"
        results = Path(tempfile.gettempdir()) / f"varstats-sweep-{grid}"
        if not (results / "errors.csv").is_file():
            main(["--grid", grid, "--out", str(results), "--no-progress"])
        shown = f"a {grid} sweep in a temporary directory"
    frame, _ = _report.load_results(results)
    return frame, shown
