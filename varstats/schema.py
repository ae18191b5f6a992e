"""The facts the sweep and the report share: the columns of ``errors.csv`` and the orders.

:mod:`varstats.sweep` writes ``errors.csv`` and :mod:`varstats.report` reads it; both
import this module, neither imports the other's copy of these facts (the report never
runs the sweep). Nothing here computes: it holds names, types and orders, and the one
rule that turns a value into the text of a CSV field.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

__all__ = [
    "COLUMNS",
    "COLUMN_TYPES",
    "COST_ORDER",
    "PRECISION_ORDER",
    "format_field",
]

#: The types a column may have, as written in :data:`COLUMNS`.
COLUMN_TYPES: Final = ("str", "int", "float", "bool")

#: Columns of ``errors.csv``, in file order, and their types (one of :data:`COLUMN_TYPES`).
COLUMNS: Final[dict[str, str]] = {
    "kind": "str",  # "var" (generated data), "public" (reproduction case), "layer"
    "case": "str",  # public case name; layer shape for "layer"; "-" otherwise
    "layer": "str",  # norm layer, or "-"
    "convention": "str",  # framework preset, or "-"
    "algorithm": "str",  # registry name of the moments algorithm
    "variant": "str",  # algorithm + options label (sweep.VARIANTS); output form for layers
    "summation": "str",  # "pairwise", "sequential" or "-"
    "storage": "str",
    "accumulator": "str",
    "layout": "str",  # "contiguous" or "strided"
    "distribution": "str",
    "scale_point": "str",  # "low", "unit", "high"
    "n": "int",  # values per reduction (per layer input for "layer")
    "offset": "float",  # offset/std ratio (absolute offset = offset * scale)
    "scale": "float",  # standard deviation before rounding to storage
    "correction": "int",
    "seed": "int",  # seed of cases.generate for this case
    "rows": "int",  # independent data rows (output elements for "layer")
    "row": "int",  # index of the worst row (element)
    "kappa": "float",  # condition number of the worst row, from exact moments
    "value": "float",  # computed variance of the worst row (accumulator dtype, exactly)
    "exact": "float",  # exact variance, correctly rounded to float64
    "rel_err": "float",  # worst relative error
    "ulps": "float",  # worst row's error in ulps of the accumulator
    "lre": "float",  # worst correct digits
    "lre_median": "float",  # median correct digits over the rows
    "bound": "float",  # first-order CGL bound (metrics.bound) of the worst row
    "exceeds_bound": "bool",  # some row has rel_err > bound + 2u
    "negative": "int",  # rows with a negative variance
    "nan": "int",  # rows with a NaN result
    "inf": "int",  # rows with an infinite result
    "nonfinite": "int",  # nan + inf
}

#: Algorithm variants (labels of ``varstats.sweep.VARIANTS``) from cheapest to dearest:
#: passes over the data first (one-pass < two-pass < two-pass plus a correction sum <
#: compensated sums), then work per element (a division per element for Welford);
#: pairwise and sequential summation cost the same flops, pairwise is listed first.
COST_ORDER: Final = (
    "naive",
    "naive/seq",
    "shifted",
    "shifted/seq",
    "welford/lanes8",
    "welford",
    "two_pass",
    "two_pass/seq",
    "pairwise",
    "chan",
    "corrected_two_pass",
    "corrected_two_pass/seq",
    "corrected_two_pass/rescale",
    "compensated",
    "compensated/seq",
    "dot2",
)

#: ``storage:accumulator`` pairs in table order: by storage, narrowest accumulator first.
PRECISION_ORDER: Final = (
    "float16:float16",
    "float16:float32",
    "bfloat16:bfloat16",
    "bfloat16:float32",
    "float32:float32",
    "float32:float64",
    "float64:float64",
)


def format_field(value: Any, /) -> str:
    """The text of one CSV field: the same value gives the same text on every machine.

    Floats are written with :func:`repr` (the shortest string that reads back to the
    same float64, from CPython's own correctly rounded conversion, never the C
    library's ``printf``); ``bool`` as ``True``/``False``; integers in decimal.

    Examples
    --------
    >>> format_field(0.1), format_field(np.float32(0.1)), format_field(np.True_), format_field(3)
    ('0.1', '0.10000000149011612', 'True', '3')
    """
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    text = str(value)
    if any(ch in text for ch in ',"\n\r'):
        raise ValueError(f"value: {text!r} cannot be a CSV field without quoting")
    return text
