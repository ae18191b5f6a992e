r"""Conformance vectors: exact mean, variance and norm outputs for other frameworks.

``python -m varstats.vectors --out DIR`` writes one JSON file per storage format in
:data:`~varstats.precision.DTYPES` (``DIR/float16.json``, ...). Each holds test inputs as
bit patterns with their exact moments and exact LayerNorm and GroupNorm outputs, from
:mod:`varstats.oracle` (exact rational arithmetic, rounded once to float64). An
implementer in any framework decodes the bits, runs their kernel and compares in ULPs;
see ``docs/conformance.md``.

Inputs cover the public reproduction cases (in the file of their own dtype) and, for
every dtype, benign data, ill-conditioned data (mean up to :math:`1/u` standard
deviations), data whose squares or sums overflow the format, subnormal data, data whose
squares underflow, constant rows and a single outlier. The generator is seeded; the
same command gives the same bytes.

File layout (``version`` 1)::

    {"format": "varstats-conformance-vectors", "version": 1, "dtype": "float32",
     "bits": 32, "notes": [...],
     "cases": [{"name", "source", "shape", "axis", "x",
                "mean": {"bits", "repr"},
                "var": {"0": {"bits", "repr"}, "1": {...} or null},
                "layer_norm": {"normalized_shape", "eps", "eps_bits", "y"},
                "group_norm": {"num_groups", "eps", "eps_bits", "y"}}]}

``x`` lists the input's bit patterns in row-major order, as hexadecimal strings of the
storage width (4, 8 or 16 digits). Results are float64 bit patterns (16 hex digits)
and Python's shortest round-trip decimal ``repr``; per-slice results are row-major over
the axes that are not reduced.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from varstats.cases import PUBLIC_CASES, generate, max_offset_ratio
from varstats.oracle import exact_mean, exact_normalize, exact_var
from varstats.precision import DTYPES, as_dtype, dtype_name, finfo

__all__ = [
    "DEFAULT_EPS",
    "FORMAT",
    "NOTES",
    "VERSION",
    "build",
    "decode",
    "f64_bits",
    "main",
    "write",
]

Array = npt.NDArray[Any]

FORMAT: Final = "varstats-conformance-vectors"
VERSION: Final = 1
#: eps of every norm output unless a public case states its own (as a float64 value)
DEFAULT_EPS: Final = 1e-5

_UINT: Final = {2: np.uint16, 4: np.uint32, 8: np.uint64}

NOTES: Final = (
    "x: bit patterns of the stored inputs, row-major, hex of the storage width.",
    "Every result is the exact value rounded once (to nearest, ties to even) to float64; "
    "compare yours in ULPs of your output format, after rounding the float64 value to it "
    "(that second rounding can differ from a direct correct rounding by one ulp at a tie).",
    "mean/var: one value per slice over `axis`, row-major over the kept axes. var['1'] is "
    "null where a slice has one element.",
    "layer_norm: (x - mean) / sqrt(var + eps) over `axis` (the trailing axes), population "
    "variance, no affine parameters.",
    "group_norm: x viewed as (N, num_groups, -1) and normalized over the last axis, "
    "population variance, no affine parameters.",
    "eps is the float64 value given by eps_bits; a float32 kernel that rounds eps to float32 "
    "first adds a slightly different number.",
)


def f64_bits(values: npt.ArrayLike, /) -> list[str]:
    """Float64 bit patterns as 16-digit lowercase hex strings, row-major."""
    a = np.ascontiguousarray(np.asarray(values, dtype=np.float64)).reshape(-1)
    return [f"{int(b):016x}" for b in a.view(np.uint64)]


def _input_bits(x: Array) -> list[str]:
    width = x.dtype.itemsize
    a = np.ascontiguousarray(x).reshape(-1)
    return [f"{int(b):0{2 * width}x}" for b in a.view(_UINT[width])]


def decode(bits: Sequence[str], dtype: Any, shape: Sequence[int]) -> Array:
    """Inverse of the encoding: hex bit patterns to an array of ``dtype`` and ``shape``."""
    dt = as_dtype(dtype, name="dtype")
    raw = np.array([int(b, 16) for b in bits], dtype=_UINT[dt.itemsize])
    return raw.view(dt).reshape(tuple(shape))


def _results(values: Any) -> dict[str, list[str]]:
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    return {"bits": f64_bits(a), "repr": [repr(float(v)) for v in a]}


def _num_groups(channels: int) -> int:
    return 2 if channels % 2 == 0 and channels >= 4 else 1


def _case(name: str, source: str, x: Array, axis: tuple[int, ...], eps: float) -> dict[str, Any]:
    n = math.prod(x.shape[i] for i in axis)
    var1 = _results(exact_var(x, axis=axis, correction=1)) if n > 1 else None
    groups = _num_groups(x.shape[1])
    grouped = x.reshape(x.shape[0], groups, -1)
    eps_entry = {"eps": repr(float(eps)), "eps_bits": f64_bits(eps)[0]}
    return {
        "name": name,
        "source": source,
        "shape": list(x.shape),
        "axis": list(axis),
        "x": _input_bits(x),
        "mean": _results(exact_mean(x, axis=axis)),
        "var": {"0": _results(exact_var(x, axis=axis, correction=0)), "1": var1},
        "layer_norm": {
            "normalized_shape": [x.shape[i] for i in axis],
            **eps_entry,
            "y": f64_bits(exact_normalize(x, axis=axis, eps=eps)),
        },
        "group_norm": {
            "num_groups": groups,
            **eps_entry,
            "y": f64_bits(exact_normalize(grouped, axis=-1, eps=eps).reshape(x.shape)),
        },
    }


def _generated(dtype: str) -> list[tuple[str, str, Array, tuple[int, ...]]]:
    """(name, source, x, axis) of the generated inputs for one storage format."""
    fi = finfo(dtype)
    top = math.floor(math.log10(max_offset_ratio(dtype)))
    big = math.sqrt(fi.max)

    def rows(n: int, batch: int, seed: int, **kw: Any) -> Array:
        return generate(n, storage=dtype, batch=batch, seed=seed, **kw)

    spec: list[tuple[str, str, Array]] = [
        ("normal", "N(0, 1), 4 rows of 64", rows(64, 4, 1)),
        (
            "offset_mid",
            f"N(0, 1) + 1e{top // 2}: mean 10**{top // 2} standard deviations",
            rows(64, 2, 2, offset=10.0 ** (top // 2)),
        ),
        (
            "ill_conditioned",
            f"N(0, 1) + 1e{top}: condition number near 1/u of {dtype}",
            rows(64, 2, 3, offset=10.0**top),
        ),
        (
            "squares_overflow",
            f"N(0, 1) * sqrt(max)/2: sums of squares overflow {dtype}, the variance does not",
            rows(64, 2, 4, scale=big / 2),
        ),
        (
            "sum_overflow",
            f"max/2 + N(0, 1) * sqrt(max)/4, rounded to {dtype}: the plain sum of 64 values "
            "overflows; rows are constant where the format cannot resolve the spread at max/2 "
            "(all but float16)",
            rows(64, 2, 5, offset=fi.max / 2, scale=big / 4),
        ),
        (
            "subnormal",
            f"N(0, 1) * tiny/8: subnormal values of {dtype}",
            rows(64, 2, 6, scale=fi.tiny / 8),
        ),
        (
            "squares_underflow",
            f"N(0, 1) * 4 tiny: normal values whose squares underflow {dtype}",
            rows(64, 2, 7, scale=4 * fi.tiny),
        ),
        (
            "constant",
            "rows of one value (variance exactly 0)",
            rows(37, 2, 8, scale=1234.0, distribution="constant"),
        ),
        (
            "one_outlier",
            "256 equal values and one outlier, offset 256 standard deviations",
            rows(257, 2, 9, offset=256.0, distribution="one_outlier"),
        ),
    ]
    out: list[tuple[str, str, Array, tuple[int, ...]]] = [
        (name, f"generated: {what}", x, (1,)) for name, what, x in spec
    ]
    cube = generate(48, storage=dtype, batch=2, seed=10, offset=10.0).reshape(2, 4, 12)
    out.append(("layer_3d", "N(0, 1) + 10, shape (N, C, L), reduced over (C, L)", cube, (1, 2)))
    return out


def build(dtype: str, /) -> dict[str, Any]:
    """The conformance document for one storage format (a JSON-ready dict)."""
    dt_name = str(dtype)
    dt = as_dtype(dt_name, name="dtype")
    cases = []
    for name, case in PUBLIC_CASES.items():
        if case.dtype != dt_name:
            continue
        x = np.array(case.x)
        source = f"public: {case.source} <{case.url}>"
        if name == "torch_40302":  # one row of 32768 shows the failure; keep the file small
            x = x[:1]
            source += " (first row)"
        eps = DEFAULT_EPS if case.eps is None else float(case.eps)
        cases.append(_case(name, source, x, (1,), eps))
    for name, source, x, axis in _generated(dt_name):
        cases.append(_case(name, source, x, axis, DEFAULT_EPS))
    return {
        "format": FORMAT,
        "version": VERSION,
        "dtype": dt_name,
        "bits": dt.itemsize * 8,
        "notes": list(NOTES),
        "cases": cases,
    }


def _dumps(doc: dict[str, Any]) -> str:
    """JSON with one line per header field and per case (readable diffs, small files)."""

    def dump(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)

    head = [f" {dump(k)}: {dump(v)}," for k, v in doc.items() if k != "cases"]
    cases = ",\n".join(f"  {dump(case)}" for case in doc["cases"])
    return "{\n" + "\n".join(head) + '\n "cases": [\n' + cases + "\n ]\n}\n"


def _file_in_the_way(root: Path) -> Path | None:
    """``root`` or the first of its parents that exists and is not a directory, if any."""
    return next((p for p in (root, *root.parents) if p.exists() and not p.is_dir()), None)


def write(out: Path | str, /, dtypes: Sequence[str] = DTYPES) -> list[Path]:
    """Write ``<out>/<dtype>.json`` for each dtype; returns the paths.

    ``out`` is created if missing. Raises :class:`NotADirectoryError` naming ``out`` when
    it, or one of its parents, is an existing file.
    """
    if isinstance(dtypes, str):  # iterating would give one dtype per character
        raise TypeError(f"dtypes: expected a sequence of dtype names, got the string {dtypes!r}")
    dtypes = [dtype_name(as_dtype(dtype, name="dtypes")) for dtype in dtypes]
    root = Path(out)
    # mkdir's own FileExistsError says only "File exists"; say which argument is wrong
    blocker = _file_in_the_way(root)
    if blocker is not None:
        raise NotADirectoryError(f"out: {blocker} is a file, not a directory")
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for dtype in dtypes:
        doc = build(dtype)
        path = root / f"{dtype}.json"
        path.write_text(_dumps(doc), encoding="ascii")
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m varstats.vectors --out DIR [--dtype NAME ...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m varstats.vectors",
        description="Write exact conformance vectors (mean, variance, LayerNorm, GroupNorm).",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--dtype",
        action="append",
        choices=DTYPES,
        help="storage format (repeatable; default: all of varstats.DTYPES)",
    )
    args = parser.parse_args(argv)
    blocker = _file_in_the_way(args.out)
    if blocker is not None:
        parser.error(f"--out: {blocker} is a file, not a directory")  # exits with status 2
    try:
        paths = write(args.out, args.dtype or DTYPES)
    except OSError as exc:  # no permission, a full disk: a message, not a traceback
        parser.error(f"--out: cannot write to {args.out}: {exc.strerror or exc}")
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
