r"""Inputs for the study: seeded generators and the named public reproduction cases.

Generators
----------
:func:`generate` draws ``batch`` independent rows of ``n`` values,

.. math::
    x_{bi} = \operatorname{round}_{\text{storage}}
             \bigl(\text{offset} + \text{scale}\cdot z_{bi}\bigr),

where :math:`z` has mean 0 and (population) standard deviation 1 for every
distribution except ``"constant"``. The offset/std ratio ``offset / scale`` then
sets the condition number of the data,
:math:`\kappa = \sqrt{1 + n\bar x^2/S} \approx \sqrt{1 + (\text{offset}/\text{scale})^2}`
(Chan, Golub & LeVeque 1983), which is what decides how much of the variance a
one-pass algorithm loses. Rows are laid out ``(batch, n)`` and are reduced along
the last axis, so one vectorized call reduces every row.

The helpers :func:`max_offset_ratio`, :func:`offset_ratios` and
:func:`scale_range` derive the sweep's limits from the storage format
(:func:`varstats.precision.finfo`), never from typed-in constants.

Public cases
------------
:data:`PUBLIC_CASES` holds the eleven reproduction cases of DESIGN.md, each taken
from a public bug report and cited in :attr:`PublicCase.source`. Their data are
stored exactly as the report stores them: a decimal literal in a report is the
binary value nearest to it in the report's dtype (``float("0.1")`` is the ground
truth, not 1/10).

References
----------
.. [1] T. F. Chan, G. H. Golub and R. J. LeVeque, "Algorithms for computing the
       sample variance: analysis and recommendations", The American Statistician
       37(3), 242-247, 1983.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import mpmath
import numpy as np
import numpy.typing as npt

from varstats.precision import as_dtype, dtype_name, finfo, round_to

__all__ = [
    "DISTRIBUTIONS",
    "LAYOUTS",
    "ORDERS",
    "PUBLIC_CASES",
    "PublicCase",
    "generate",
    "kappa",
    "max_offset_ratio",
    "offset_ratios",
    "scale_range",
]

Array = npt.NDArray[Any]

#: Distributions of the unit-spread part :math:`z` understood by :func:`generate`.
DISTRIBUTIONS: Final = ("normal", "uniform", "lognormal", "constant", "one_outlier")

#: Memory layouts understood by :func:`generate`.
LAYOUTS: Final = ("contiguous", "strided")

#: Orders of the values within a row understood by :func:`generate` (``order=``):
#: as drawn (i.i.d. draws are already in random order), the value farthest from the
#: row's mean moved to the front (the outlier of ``"one_outlier"``), sorted ascending,
#: sorted descending, or randomly permuted once more.
ORDERS: Final = ("drawn", "outlier_first", "ascending", "descending", "shuffled")

# Headroom below the format's max for the largest scale: 2**8 keeps every value of a
# normal or lognormal(sigma=1) sample of up to 10**6 draws finite (|z| < 256).
_OVERFLOW_HEADROOM: Final = 2.0**8


# --------------------------------------------------------------------------- generators
# e**0.5 correctly rounded to float64 (a literal: libm's exp is not the same everywhere)
_SQRT_E: Final = 1.6487212707001282


def _exp_float32(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """``exp(z)`` correctly rounded to float32: the same bits on every machine.

    NumPy's vectorized ``exp`` differs between CPUs (SIMD paths) by an ulp of
    float64, which changed the lognormal test data, and so the study's rows,
    between machines. Rounding to float32 hides that difference except within a
    few float64 ulps of a float32 rounding boundary; those rare values are
    recomputed with mpmath and rounded once.
    """
    with np.errstate(all="ignore"):
        y64 = np.exp(z)
    y32 = y64.astype(np.float32)
    center = y32.astype(np.float64)
    up = np.nextafter(y32, np.float32(np.inf)).astype(np.float64)
    down = np.nextafter(y32, np.float32(0)).astype(np.float64)
    gap = np.minimum(np.abs(y64 - (center + up) / 2), np.abs(y64 - (center + down) / 2))
    risky = np.flatnonzero(gap <= 64 * np.spacing(y64))
    flat_z, flat_y = z.reshape(-1), y32.reshape(-1)
    for i in risky:
        with mpmath.workprec(200):
            e = mpmath.exp(mpmath.mpf(float(flat_z[i])))
        with mpmath.workprec(24):  # one rounding to float32's 24 bits
            flat_y[i] = np.float32(float(+e))
    return y32


def _unit_spread(
    rng: np.random.Generator, distribution: str, shape: tuple[int, int]
) -> npt.NDArray[np.float64]:
    """Draw ``z`` with mean 0 and population standard deviation 1 (float64)."""
    batch, n = shape
    if distribution == "normal":
        return rng.standard_normal(shape)
    if distribution == "uniform":
        # U(-sqrt 3, sqrt 3) has variance 1
        return rng.uniform(-math.sqrt(3.0), math.sqrt(3.0), shape)
    if distribution == "lognormal":
        # exp(N(0, 1)) has mean e^(1/2) and variance (e - 1) e; standardize it
        y = _exp_float32(rng.standard_normal(shape)).astype(np.float64)
        return (y - _SQRT_E) / math.sqrt((math.e - 1.0) * math.e)
    if distribution == "constant":
        # every value is offset + scale: zero variance, kappa infinite
        return np.ones(shape)
    if distribution == "one_outlier":
        # n - 1 equal values and one outlier at a random position, standardized:
        # bulk at -1/sqrt(n-1), outlier at +sqrt(n-1) (mean 0, variance 1).
        # With n == 1 the single value is 0.
        z = np.full(shape, -1.0 / math.sqrt(n - 1) if n > 1 else 0.0)
        where = rng.integers(0, n, size=batch)
        z[np.arange(batch), where] = math.sqrt(n - 1)
        return z
    raise ValueError(f"distribution: unknown {distribution!r}; expected one of {DISTRIBUTIONS}")


def generate(
    n: int,
    /,
    *,
    storage: Any,
    distribution: str = "normal",
    offset: float = 0.0,
    scale: float = 1.0,
    layout: str = "contiguous",
    batch: int = 1,
    seed: int = 0,
    order: str = "drawn",
) -> Array:
    r"""Seeded test data stored in ``storage``: ``batch`` rows of ``n`` values.

    .. math::
        x = \operatorname{round}_{\text{storage}}(\text{offset} + \text{scale}\cdot z)

    ``z`` is drawn in float64 from ``numpy.random.default_rng(seed)`` with mean 0
    and standard deviation 1 (``"constant"``: :math:`z \equiv 1`, so every value
    is ``offset + scale``), then rounded once to the storage format with
    :func:`~varstats.precision.round_to`.

    Parameters
    ----------
    n : int
        Length of each row (the reduced axis), at least 1.
    storage : str or dtype
        Storage format, one of :data:`~varstats.precision.DTYPES`.
    distribution : {"normal", "uniform", "lognormal", "constant", "one_outlier"}
        ``uniform`` is :math:`U(-\sqrt3, \sqrt3)`; ``lognormal`` is the
        standardized :math:`e^{N(0,1)}` (right-skewed); ``one_outlier`` has n-1
        equal values and one at a random position, standardized so that the
        outlier sits :math:`\sqrt{n-1} + 1/\sqrt{n-1}` standard deviations
        from the bulk (the shape of the TensorRT-LLM case).
    offset : float
        Added to every value; ``offset / scale`` is the offset/std ratio.
    scale : float
        Standard deviation of the row before rounding, at least 0. Use
        :func:`scale_range` for the span from near-underflow to near-overflow.
    layout : {"contiguous", "strided"}
        ``"strided"`` returns a non-contiguous view whose reduced (last) axis
        has a stride of ``2 * batch`` elements: the data are stored transposed
        (batch axis fastest, as in a channels-last tensor) and interleaved with
        NaN padding, so a kernel that reads outside the view poisons its result.
        The values equal those of the contiguous layout for the same seed.
    batch : int
        Number of independent rows, at least 1.
    seed : int
        Seed of the generator; the same arguments give the same bytes.
    order : {"drawn", "outlier_first", "ascending", "descending", "shuffled"}
        Order of the values within each row (:data:`ORDERS`). Every order holds the
        same values as ``"drawn"`` for the same seed, so the exact variance is the
        same and only the reduction order changes: ``"outlier_first"`` moves the
        value farthest from the row's mean (the first such, in float64) to position
        0 and keeps the rest in drawn order; ``"shuffled"`` permutes with a
        generator seeded from ``seed`` after the draws.

    Returns
    -------
    ndarray, shape (batch, n), dtype ``storage``

    Notes
    -----
    Values beyond the storage format's range saturate at :math:`\pm` max instead of
    becoming infinite. Below ``scale_range(storage)[1]`` that only happens in the
    far tails (|z| > 256: lognormal or one_outlier at large n); the stored values,
    which are what the oracle sees, stay finite either way.

    Examples
    --------
    >>> x = generate(4, storage="float16", offset=1000.0, batch=2, seed=1)
    >>> x.shape, x.dtype
    ((2, 4), dtype('float16'))
    """
    dt = as_dtype(storage, name="storage")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n!r}")
    if isinstance(batch, bool) or not isinstance(batch, int | np.integer) or batch < 1:
        raise ValueError(f"batch: expected an integer >= 1, got {batch!r}")
    offset, scale = _real(offset, "offset"), _real(scale, "scale")
    if not math.isfinite(offset):
        raise ValueError(f"offset: expected a finite float, got {offset!r}")
    if not (math.isfinite(scale) and scale >= 0):
        raise ValueError(f"scale: expected a finite float >= 0, got {scale!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed: expected an integer, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout: unknown {layout!r}; expected one of {LAYOUTS}")
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution: unknown {distribution!r}; expected one of {DISTRIBUTIONS}")
    if order not in ORDERS:
        raise ValueError(f"order: unknown {order!r}; expected one of {ORDERS}")

    rng = np.random.default_rng(seed)
    z = _unit_spread(rng, distribution, (int(batch), int(n)))
    big = finfo(dt).max
    with np.errstate(over="ignore"):
        # float64 arithmetic may overflow only for float64 storage near its max;
        # clip saturates both that and values beyond a narrower format's range
        x64 = np.clip(offset + scale * z, -big, big)
    x = _reorder(round_to(x64, dt), order, seed)
    if layout == "contiguous":
        return np.ascontiguousarray(x)
    buf = np.full((int(n), 2 * int(batch)), np.nan, dtype=dt)
    buf[:, ::2] = x.T
    return buf[:, ::2].T


def _real(value: Any, name: str) -> float:
    """``value`` as a float, for a real number (an int beyond float64's range is a ValueError)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{name}: {value!r} is beyond float64's range") from None


def _reorder(x: Array, order: str, seed: int) -> Array:
    """The rows of ``x`` (batch, n) in ``order``; ``"drawn"`` returns ``x`` itself."""
    if order == "drawn":
        return x
    if order in ("ascending", "descending"):
        s = np.sort(x, axis=-1)
        return s if order == "ascending" else s[:, ::-1].copy()
    if order == "shuffled":
        # a generator of its own: the draws (and so the values) stay those of `seed`
        return np.random.default_rng([seed, 1]).permuted(x, axis=-1)
    x64 = x.astype(np.float64)
    far = np.argmax(np.abs(x64 - x64.mean(axis=-1, keepdims=True)), axis=-1)
    out = x.copy()
    for b, k in enumerate(far):
        out[b] = np.concatenate([x[b, k : k + 1], x[b, :k], x[b, k + 1 :]])
    return out


def scale_range(storage: Any, /) -> tuple[float, float]:
    """Smallest and largest scale worth sweeping for ``storage``.

    Returns ``(tiny, max / 2**8)`` of the format: at ``tiny`` (the smallest
    normal number) data sit at the edge of the subnormal range, where squares
    underflow; at ``max / 2**8`` the data fill the top binades, where squares
    and sums of squares overflow, yet a sample of up to 10**6 normal draws stays
    finite.
    """
    fi = finfo(storage)
    return fi.tiny, fi.max / _OVERFLOW_HEADROOM


def max_offset_ratio(storage: Any, /) -> float:
    r"""Largest offset/std ratio at which ``storage`` still resolves the spread.

    Data ``offset + std * z`` are rounded to a grid whose spacing at the offset is
    :math:`\operatorname{ulp}(\text{offset}) \le 2u\cdot\text{offset}`. For
    ``offset / std`` below :math:`1/u = 2^p` that spacing is at most the
    standard deviation, so the stored values remain distinct at the resolution of
    the spread; beyond it the data collapse onto a handful of grid points and
    their variance is set by the rounding, not the distribution. The sweep stops
    here: 2048 for float16, 256 for bfloat16, about 1.7e7 for float32 and 9.0e15
    for float64.
    """
    return 1.0 / finfo(storage).unit_roundoff


def offset_ratios(storage: Any, /) -> tuple[float, ...]:
    """Powers of ten ``1, 10, ..., 10**k`` up to :func:`max_offset_ratio`."""
    top = math.floor(math.log10(max_offset_ratio(storage)))
    return tuple(10.0**k for k in range(top + 1))


def kappa(n: npt.ArrayLike, mean: npt.ArrayLike, m2: npt.ArrayLike) -> npt.NDArray[np.float64]:
    r"""Condition number of the sum of squared deviations (Chan, Golub & LeVeque 1983).

    .. math::
        \kappa = \sqrt{1 + n\bar x^2 / S} = \frac{\lVert x\rVert_2}{\sqrt S}

    Pass the *exact* mean and :math:`S = M_2` (from :mod:`varstats.oracle`); a
    computed mean or S measures the algorithm, not the data.

    Parameters
    ----------
    n, mean, m2 : array_like
        Broadcast together; evaluated in float64.

    Returns
    -------
    ndarray of float64
        :math:`\kappa \ge 1`; ``inf`` where ``m2 == 0`` and ``mean != 0``
        (constant data), 1 where both are 0, NaN where an input is NaN.

    Notes
    -----
    :math:`\kappa` depends on :math:`S` only through :math:`S/n`, and is computed
    as ``sqrt(1 + r*r)``, ``r = abs(mean) / sqrt(m2 / n)``, so that :math:`n\bar x^2` never
    overflows, from IEEE operations only (the same bits on every machine).
    When :math:`S` itself overflows float64 (``overflow_sq``), pass the
    population variance instead: ``kappa(1, mean, var)`` is the same number.
    """
    n_ = np.asarray(n, dtype=np.float64)
    mean_ = np.asarray(mean, dtype=np.float64)
    m2_ = np.asarray(m2, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = np.abs(mean_) / np.sqrt(m2_ / n_)
        ratio = np.where((mean_ == 0) & (m2_ == 0), 0.0, ratio)
        # sqrt(1 + r*r) from IEEE operations, which round the same on every machine
        # (libm's hypot does not); r*r overflows only where kappa = r to the last bit
        kappa = np.where(ratio > 2.0**500, ratio, np.sqrt(1.0 + ratio * ratio))
        return np.asarray(kappa, dtype=np.float64)


# --------------------------------------------------------------------- public cases


@dataclass(frozen=True, eq=False)
class PublicCase:
    """A reproduction case from a public bug report.

    Attributes
    ----------
    name : str
        Key in :data:`PUBLIC_CASES`.
    x : ndarray, shape (batch, n)
        The input, stored in the dtype of the report, reduced along the last axis.
        Read-only.
    op : str
        What the report computed: ``"var"`` (a variance/moments reduction),
        ``"layer_norm"`` (normalize each row over its last axis) or
        ``"batch_norm"`` (inference-mode normalization with given statistics, see
        ``norm_mean`` / ``norm_var``).
    correction : int
        0 for the population variance, 1 where the report uses the sample variance.
    eps : float or None
        The epsilon the report's norm layer adds to the variance.
    source : str
        The bug report: project, number, reporter's setup.
    url : str
    failure : str
        What went wrong, in the report's numbers.
    norm_mean, norm_var : float or None
        For ``op == "batch_norm"``: the statistics the report passes in.
    """

    name: str
    x: Array
    op: str
    correction: int
    eps: float | None
    source: str
    url: str
    failure: str
    norm_mean: float | None = None
    norm_var: float | None = None

    def __post_init__(self) -> None:
        x = np.array(self.x, dtype=as_dtype(np.asarray(self.x).dtype, name="x"), ndmin=2)
        x.flags.writeable = False
        object.__setattr__(self, "x", x)

    @property
    def dtype(self) -> str:
        """Name of the storage dtype of :attr:`x`."""
        return dtype_name(self.x.dtype)


def _f32(values: npt.ArrayLike) -> Array:
    return round_to(np.asarray(values, dtype=np.float64), "float32")


def _torch_51102() -> Array:
    # torch.randn(5, 4) + 2000 in float32. numpy stands in for torch's generator
    # (seed = issue number); the float32 addition is emulated exactly: the sum of
    # two float32 values is exact in float64, so one round_to is one float32 rounding.
    z = _f32(np.random.default_rng(51102).standard_normal((5, 4)))
    return _f32(z.astype(np.float64) + 2000.0)


def _torch_40302(rows: int = 4) -> Array:
    # torch.randn(M, 32768) * 0.01 + 100.0 in float32 (the report has M = 1024; four
    # rows keep the case small and show the same failure). Each float32 op rounds once:
    # the float32 product of two float32 values is exact in float64.
    z = _f32(np.random.default_rng(40302).standard_normal((rows, 32768)))
    scaled = _f32(z.astype(np.float64) * float(np.float32(0.01)))
    return _f32(scaled.astype(np.float64) + 100.0)


def _trtllm_outlier() -> Array:
    x = np.full((1, 10240), 256.0)
    x[0, -1] = 255.0
    return _f32(x)


def _build_public_cases() -> dict[str, PublicCase]:
    cases = [
        PublicCase(
            name="ort_28463",
            x=_f32([[40000.0, 40001.0, 40002.0, 40003.0]]),
            op="layer_norm",
            correction=0,
            eps=1e-5,
            source="microsoft/onnxruntime#28463 (CPUExecutionProvider LayerNormalization, "
            "opset 17, axis=-1, float32)",
            url="https://github.com/microsoft/onnxruntime/issues/28463",
            failure="all-NaN output; the one-pass E[x^2] - E[x]^2 in float32 gives "
            "variance -128 (exact 1.25), and rsqrt of a negative number is NaN",
        ),
        PublicCase(
            name="ort_21935",
            x=_f32(np.full((1, 256), 1234.0)),
            op="layer_norm",
            correction=0,
            eps=1e-5,
            source="microsoft/onnxruntime#21935 (ORT 1.19 CPU LayerNormalization of a "
            "torch.nn.LayerNorm(256) exported with dynamo_export, float32)",
            url="https://github.com/microsoft/onnxruntime/issues/21935",
            failure="NaN output for a constant row: the variance (exactly 0) comes out "
            "negative from the one-pass formula",
        ),
        PublicCase(
            name="trtllm_outlier",
            x=_trtllm_outlier(),
            op="layer_norm",
            correction=0,
            eps=1e-5,
            source="NVIDIA/trt-samples-for-hackathon-cn#88 (TensorRT-LLM layernorm plugin "
            "with USE_DIFF_OF_SQUARES, TensorRT 9.0, float32 on CUDA)",
            url="https://github.com/NVIDIA/trt-samples-for-hackathon-cn/issues/88",
            failure="E[x^2] - E[x]^2 = -0.0039 (exact 9.5e-5) for 10239 values 256 and one "
            "255; rsqrt gives NaN and the layer norm output is NaN",
        ),
        PublicCase(
            name="torch_51102",
            x=_torch_51102(),
            op="layer_norm",
            correction=0,
            eps=1e-5,
            source="pytorch/pytorch#51102 (torch 1.7.1 CPU nn.LayerNorm(4, eps=1e-5, "
            "elementwise_affine=False) on torch.randn(5, 4) + 2000; numpy's generator "
            "with seed 51102 stands in for torch.randn)",
            url="https://github.com/pytorch/pytorch/issues/51102",
            failure="normalized rows have variance from 0.05 to 48426 instead of 1: the "
            "one-pass float32 variance of data with mean 2000 and std 1 is noise",
        ),
        PublicCase(
            name="torch_40302",
            x=_torch_40302(),
            op="layer_norm",
            correction=0,
            eps=1e-5,
            source="pytorch/pytorch#40302 (LayerNorm/GroupNorm one-pass variance; input "
            "torch.randn(1024, 32768) * 0.01 + 100 in float32; 4 rows here, numpy "
            "generator with seed 40302)",
            url="https://github.com/pytorch/pytorch/issues/40302",
            failure="the internal row variance is 0 (or 0.000977) instead of about 1e-4",
        ),
        PublicCase(
            name="tf_118179",
            x=_f32([[7.5e10, 7.5e10, 7.5e10]]),
            op="var",
            correction=0,
            eps=None,
            source="tensorflow/tensorflow#118179 (TF 2.21 tf.nn.moments under "
            "jit_compile=True, CPU, float32)",
            url="https://github.com/tensorflow/tensorflow/issues/118179",
            failure="variance 6.711e7 (= 2**26) instead of 0 for three identical values: "
            "XLA's mean is one float32 ulp (8192) off, and the two-pass squares that error",
        ),
        PublicCase(
            name="tf_117318",
            x=_f32([[1e15, 1e15, 1e15]]),
            op="batch_norm",
            correction=0,
            eps=1e-5,
            source="tensorflow/tensorflow#117318 (TF 2.22 nightly tf.nn.batch_normalization "
            "under jit_compile=True, float32, mean 1e15, variance 0, epsilon 1e-5)",
            url="https://github.com/tensorflow/tensorflow/issues/117318",
            failure="output -1.14e10 instead of 0 for x equal to the mean: the folded form "
            "x * inv + (-mean * inv) with an FMA cancels catastrophically",
            norm_mean=float(np.float32(1e15)),
            norm_var=0.0,
        ),
        PublicCase(
            name="daft_7468",
            x=np.array([[1e9 + 1, 1e9 + 2, 1e9 + 3]], dtype=np.float64),
            op="var",
            correction=1,
            eps=None,
            source="Eventual-Inc/Daft#7468 (daft 0.7.24 var/stddev, lowered to "
            "sum(x^2), sum(x), count, float64)",
            url="https://github.com/Eventual-Inc/Daft/issues/7468",
            failure="sample variance 0 instead of 1: E(x^2) - E(x)^2 at mean 1e9",
        ),
        PublicCase(
            name="comet_6044",
            x=np.array([[1e16, np.float64(1e16) + 2]], dtype=np.float64),
            op="var",
            correction=0,
            eps=None,
            source="apache/datafusion-comet#6044 (Comet native var_pop/var_samp via "
            "welford::variance_update, Spark 3.5.9/4.1.3, DOUBLE)",
            url="https://github.com/apache/datafusion-comet/issues/6044",
            failure="var_pop 2 instead of 1 (var_samp 4 instead of 2): the mean 1e16 + 1 "
            "is not representable, and the update loses the half",
        ),
        PublicCase(
            name="pg_15307",
            x=np.array([[1000000.01, 999999.99]], dtype=np.float64),
            op="var",
            correction=1,
            eps=None,
            source="PostgreSQL bug #15307, 'Low numerical precision of (Co-) Variance' "
            "(Erich Schubert, PostgreSQL 9.6.6, VAR_SAMP(x::float8))",
            url="https://www.postgresql.org/message-id/"
            "153313051300.1397.9594490737341194671%40wrigleys.postgresql.org",
            failure="sample variance 0.000244140625 instead of about 0.0002: the "
            "E[XY] - E[X]E[Y] formula in float8",
        ),
        PublicCase(
            name="overflow_sq",
            x=np.array([[1e154, 2e154, 3e154], [1.4e154, 1.5e154, 1.6e154]], dtype=np.float64),
            op="var",
            correction=0,
            eps=None,
            source="constructed for varstats (DESIGN.md); the failure class is reported in "
            "statsmodels/statsmodels#10252 (intermediate sumsquares overflow) and "
            "pytorch/pytorch#180156 (two-pass squared values overflow float32)",
            url="https://github.com/statsmodels/statsmodels/issues/10252",
            failure="row 0: the squared deviations (1e308 each) sum past float64's max, so "
            "two-pass returns inf though the variance 6.7e307 is finite; row 1: the "
            "squares (about 2e308) overflow, so the one-pass formula returns inf or NaN",
        ),
    ]
    return {case.name: case for case in cases}


#: The public reproduction cases of DESIGN.md, by name.
PUBLIC_CASES: Final[dict[str, PublicCase]] = _build_public_cases()
