r"""The configuration the study recommends, complete for each storage format.

``vs.var(x, **vs.recommended(x.dtype))`` computes the variance with the ``dot2``
kernel (:mod:`varstats.dot2`) in the accumulator of :data:`RECOMMENDED_ACCUMULATOR`:

=============  ===========  =========================================================
storage        accumulator  the returned value
=============  ===========  =========================================================
float16        float32      float32, within 1 float32 ulp of the exact variance
bfloat16       float32      float32, within 1 float32 ulp
float32        float32      float32, within 1 float32 ulp
float64        float64      float64, within 1 float64 ulp
=============  ===========  =========================================================

"Within 1 ulp" is measured in the format of the returned value (the accumulator),
against the exact variance of :func:`varstats.oracle.exact_var` correctly rounded to
float64: :func:`varstats.metrics.ulps` ``(value, exact, accumulator) <= 1``.

What is guaranteed and what is measured
---------------------------------------
*Argued* (:mod:`varstats.dot2`, from Ogita, Rump & Oishi 2005): the result is a
faithful rounding of the exact variance, hence within 1 ulp of the correctly rounded
one, whenever :math:`n < 2^p` of the accumulator (16,777,216 for float32),
:math:`\kappa \lesssim u^{-3/2}/L` (far beyond the offset/std ratio at which a storage
format still resolves the spread, :func:`varstats.cases.max_offset_ratio`) and the
variance lies in the normal range of the accumulator. Below it the result is within one
unit of the subnormal quantum (attainable accuracy); above it, ``inf``. Constant data
give exactly 0. The argument is first order in the constants, not machine-checked.

*Measured* (``tests/test_recommendation.py``, ``results/summary.md``): within 1 ulp
on every public reproduction case with both corrections, and on generated data of
every storage format at every offset/std up to the format's limit, with the outlier
first, sorted ascending or descending, or shuffled.

Summation order and rescaling are not options of ``dot2``: its sums run down 32 lanes
and then a balanced tree, compensated throughout, and it scales every slice by a
power of two (exactly) where its magnitude calls for it. Cost: about 50 operations
per element against 4 for the plain two-pass (:mod:`varstats.dot2`), in exchange for
the last bits; the one-pass and kernel-writer tables of ``results/summary.md`` say
what the cheaper variants keep.

``dot2`` is a NumPy kernel: torch and other Array API arrays raise a ``ValueError``
naming it (convert with ``np.asarray`` first), and :mod:`varstats.dask` runs it per
chunk only, merging the chunks with the rounded Chan update.

The float16 and bfloat16 accumulators never appear: a sum of more than 2048 (float16)
or 256 (bfloat16) values of one sign stalls in them, whatever the algorithm.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Final

from varstats.precision import DTYPES, Precision, as_dtype, dtype_name

__all__ = ["RECOMMENDED", "RECOMMENDED_ACCUMULATOR", "recommended"]

#: Accumulator of the recommended configuration, per storage format.
RECOMMENDED_ACCUMULATOR: Final = MappingProxyType(
    {"float16": "float32", "bfloat16": "float32", "float32": "float32", "float64": "float64"}
)

#: The recommended algorithm, for ``var(x, **RECOMMENDED, precision=...)``; without a
#: precision it computes in the data's own format, which for float16 and bfloat16 data
#: is not the recommendation: prefer :func:`recommended`.
RECOMMENDED: Final = MappingProxyType({"algorithm": "dot2"})


def recommended(dtype: Any, /) -> dict[str, Any]:
    """Keyword arguments of :func:`varstats.var` for data stored in ``dtype``.

    Parameters
    ----------
    dtype : str or dtype
        Storage format, one of :data:`~varstats.precision.DTYPES`.

    Returns
    -------
    dict
        ``{"algorithm": "dot2", "precision": Precision(dtype, accumulator)}`` with the
        accumulator of :data:`RECOMMENDED_ACCUMULATOR`.

    Examples
    --------
    >>> import numpy as np, varstats as vs
    >>> vs.recommended("float16")
    {'algorithm': 'dot2', 'precision': Precision(storage='float16', accumulator='float32')}
    >>> float(vs.var(np.array([2.0, 4.0, 8.0, 16.0, 32.0]), **vs.recommended("float64")))
    119.04
    """
    storage = dtype_name(as_dtype(dtype, name="dtype"))
    assert storage in DTYPES
    return {**RECOMMENDED, "precision": Precision(storage, RECOMMENDED_ACCUMULATOR[storage])}
