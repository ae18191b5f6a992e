r"""Exact ground truth: the mean, variance and normalized output of *stored* values.

Every finite binary floating-point number is an integer times a power of two, so
the sum, the sum of squares, the mean and the variance of stored values are exact
rationals. This module computes them exactly and rounds **once**, to nearest with
ties to even, to float64:

.. math::
    \bar x = \frac{1}{n}\sum_i x_i,\qquad
    M_2 = \sum_i (x_i - \bar x)^2 = \frac{n \sum_i x_i^2 - \left(\sum_i x_i\right)^2}{n},
    \qquad \operatorname{var} = \frac{M_2}{n - c}.

Decimal literals are not the ground truth: the variance of ``[0.1, 0.2, 0.3]`` is the
variance of the three stored doubles nearest those decimals.

Two paths compute the same numbers (``method=``):

``"fast"`` (default)
    Vectorized exact integer arithmetic with no Python object per element. Each reduced
    slice is cut into blocks of at most :math:`2^{16}` elements, and each block gets a
    *window* of up to four 26-bit limbs below its largest magnitude :math:`2^{e}`.
    Adding the magic constant :math:`\sigma_j = 1.5 \cdot 2^{t_j + 52}` rounds a value to
    the grid :math:`2^{t_j}` (:math:`t_j = e - 25 - 26 j`), and the bit pattern of the
    sum minus that of :math:`\sigma_j` is the integer limb :math:`l_j`; the residual
    :math:`x - l_j 2^{t_j}` is exact (the extraction of Rump, Ogita & Oishi [4]_).
    :math:`\sum x = \sum_j 2^{t_j} \sum_i l_{ij}` and
    :math:`\sum x^2 = \sum_{j,j'} 2^{t_j + t_{j'}} \sum_i l_{ij} l_{ij'}` are then int64
    sums and dot products (:math:`|l_{ij} l_{ij'}| \le 2^{50}`, :math:`2^{12}` terms per
    dot), combined in Python integers and rounded once by :func:`round_ratio`. A block
    is captured whole when no non-zero value is below :math:`2^{p - 103}` times its
    largest magnitude, ``p`` the format's significand bits (float64 :math:`2^{-50}`,
    float32 :math:`2^{-79}`, bfloat16 :math:`2^{-95}`, float16 always).
    Values below the window take the *bucket path*, and so does a whole block when more
    than one in 32 of a sample of its values lies below the window's reach (data spread
    over many binades, e.g. uniformly random bit patterns) or when its largest magnitude
    is below :math:`2^{-960}` (the window would scale subnormals, and arithmetic on
    subnormals is slow): one bucket per (slice, sign, exponent field), the top 12 bits of
    the float64 pattern, and ``np.add.at`` adds the fraction fields and the products of
    their halves, small enough for every uint64 sum to be exact (a crowded bucket splits
    by four more bits), into all buckets at once; the buckets become Python integers
    through :meth:`int.from_bytes` (:class:`_Binades`). Memory is O(block), the buckets
    (as many for every n) and O(the values the window misses). Neither path's cost
    depends on the number of binades; ``python -m benchmarks --only oracle`` measures
    both.
``"reference"``
    Obviously correct and slow: one :class:`fractions.Fraction` per element for the
    moments, :mod:`mpmath` interval arithmetic for the normalized output.

Input
    The rules of :func:`varstats.var` (:mod:`varstats.validation`): data stored in one of
    the four formats, in either byte order, as a NumPy array or an array of another
    Array API library (read on the host; a ``torch.Tensor`` that requires grad is
    detached). Masked arrays, integer, boolean, complex and object data are a
    ``TypeError``. Where :math:`n - c \le 0` the variance (and the normalized output)
    is NaN with one ``RuntimeWarning`` naming ``correction``, as the Array API standard
    specifies; the mean of an empty slice is NaN.
Non-finite input (the IEEE result of the exact computation)
    Per reduced slice: any NaN makes the mean and the variance NaN. Both ``+inf``
    and ``-inf`` make the mean NaN (``inf - inf``); ``+inf`` (``-inf``) alone makes the
    mean ``+inf`` (``-inf``). Any infinity makes the variance NaN, because the
    deviation of the infinite element, :math:`\infty - \infty`, is NaN (as in
    ``np.var``). The normalized output of such a slice is NaN throughout.
Signed zeros
    An exact zero result is ``+0.0``, except the mean of a slice whose elements are all
    ``-0.0``, which is ``-0.0`` (the IEEE sum of negative zeros).

References
----------
.. [1] T. F. Chan, G. H. Golub, R. J. LeVeque, "Algorithms for computing the sample
       variance: analysis and recommendations", The American Statistician 37(3), 1983.
.. [2] J.-M. Muller et al., *Handbook of Floating-Point Arithmetic*, 2nd ed.,
       Birkhäuser 2018, section 2.2 (rounding) and 10.5 (Ziv's strategy).
.. [3] A. Ziv, "Fast evaluation of elementary mathematical functions with correctly
       rounded last bit", ACM TOMS 17(3), 1991.
.. [4] S. M. Rump, T. Ogita, S. Oishi, "Accurate floating-point summation part I:
       faithful rounding", SIAM J. Sci. Comput. 31(1), 2008 (ExtractScalar).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from mpmath import iv, libmp

from varstats.precision import as_dtype, finfo
from varstats.validation import (
    check_correction,
    host_float_array,
    normalize_axes,
    warn_no_degrees_of_freedom,
)

__all__ = [
    "ExactMoments",
    "exact_mean",
    "exact_moments",
    "exact_normalize",
    "exact_var",
    "round_ratio",
]

Array = npt.NDArray[Any]
Float64Array = npt.NDArray[np.float64]
ObjectArray = npt.NDArray[np.object_]
Method = Literal["fast", "reference"]
Axis = int | Sequence[int] | None

_METHODS: Final = ("fast", "reference")

# float64 layout
_P64: Final = 53  # significand bits incl. the implicit one
_EMIN_Q: Final = -1074  # exponent of the smallest subnormal (the quantum of subnormals)

# The fast path works on blocks of at most _BLOCK elements (several short rows or a piece
# of one long row), so that every temporary stays in cache.
_BLOCK: Final = 1 << 16
# Window limbs: a value captured by a row's window is sum_j l_j 2**t_j with integer limbs
# |l_j| <= 2**(_LIMB - 1) and t_j = t_0 - _LIMB j. A product l_i l_j is at most 2**50, so
# _DOT of them sum to at most 2**62: exact in int64.
_LIMB: Final = 26
_DOT: Final = 1 << 12
_MAX_LIMBS: Final = 4  # a window of 104 bits below the row's largest magnitude
# Values the window misses (residual non-zero) go to the bucket path; more limbs are
# tried while they are more than this fraction of the block.
_OUTLIER_FRACTION: Final = 1 / 64
# A row whose largest magnitude lies outside 2**±_SAFE_EXPONENT is scaled by a power of
# two first: the magic constants 1.5 * 2**(t_j + 52) must neither overflow nor fall below
# the normal range.
_SAFE_EXPONENT: Final = 960
# Rows of one block whose largest magnitudes lie within this many binades share a window
_SHARED_SPREAD: Final = 8
# A block whose sample has more than this fraction of its values below the window's
# reach (2**(p - 103) times the row's largest) skips the window and goes to the buckets.
_SPREAD_FRACTION: Final = 1 / 32
_SAMPLE: Final = 1 << 10  # values per row sampled for that test
# The bucket path (_Binades): one bucket per (slice, top 12 bits of the float64 pattern,
# i.e. sign and exponent field), whose uint64 sums of the fraction field f < 2**52 and of
# the products of its halves (< 2**52) are exact for 2**12 values; a bucket more crowded
# than that splits into 16 fine buckets by 4 more bits (48 left: exact for 2**16 values).
_KEY_BITS: Final = 12
_HALF: Final = 26
_FINE_BITS: Final = 4
_FINE_HALF: Final = 24
_COARSE_LIMIT: Final = 1 << 12
_FINE_LIMIT: Final = 1 << 16
_U48: Final = np.uint64(48)
_U52: Final = np.uint64(52)
_FRACTION: Final = np.uint64((1 << 52) - 1)
_MASK48: Final = np.uint64((1 << 48) - 1)
_FINE_MASK: Final = np.uint64((1 << _FINE_BITS) - 1)
# Up to this many buckets (slices x 4096) are indexed directly; beyond, np.unique
# numbers the buckets present.
_DENSE_BUCKETS: Final = 1 << 16


# ---------------------------------------------------------------------------------------
# The one rounding
# ---------------------------------------------------------------------------------------


def round_ratio(num: int, den: int, exp2: int = 0, /) -> float:
    r"""Round :math:`\frac{num}{den}\,2^{exp2}` once to float64, to nearest, ties to even.

    Parameters
    ----------
    num, den : int
        Numerator and positive denominator (Python integers of any size).
    exp2 : int
        Power of two scaling the ratio.

    Returns
    -------
    float
        The correctly rounded value: subnormal results are rounded at the subnormal
        quantum :math:`2^{-1074}`, results at or beyond
        :math:`(2 - 2^{-53})\,2^{1023}` (the rounding boundary past the largest
        double) become ``±inf``, an exact zero is ``+0.0``.

    Notes
    -----
    Let :math:`2^{e} \le |v| < 2^{e+1}`. The result is an integer multiple of the quantum
    :math:`2^{q}`, :math:`q = \max(e - 52, -1074)`; the integer is the quotient
    :math:`\lfloor |v| / 2^q \rfloor` rounded up when the remainder exceeds half the
    divisor, or equals half and the quotient is odd. All of it is integer arithmetic.
    ``float(Fraction(num, den) * 2**exp2)`` computes the same value and is what the
    tests compare against.
    """
    if den <= 0:
        raise ValueError(f"den: must be positive, got {den}")
    if num == 0:
        return 0.0
    negative = num < 0
    a = -num if negative else num
    # e is t or t - 1
    e = a.bit_length() - den.bit_length() + exp2
    lhs, rhs = (a << (exp2 - e), den) if exp2 >= e else (a, den << (e - exp2))
    if lhs < rhs:
        e -= 1
    q = max(e - (_P64 - 1), _EMIN_Q)
    shift = exp2 - q
    if shift >= 0:
        quotient, remainder = divmod(a << shift, den)
        divisor = den
    else:
        divisor = den << -shift
        quotient, remainder = divmod(a, divisor)
    twice = remainder << 1
    if twice > divisor or (twice == divisor and quotient & 1):
        quotient += 1
    # quotient <= 2**53 is exact in a float; ldexp then scales exactly or overflows
    try:
        value = math.ldexp(float(quotient), q)
    except OverflowError:
        value = math.inf
    return -value if negative else value


def _fraction_to_float(value: Fraction) -> float:
    # Python's int/int true division (used by float(Fraction)) is correctly rounded,
    # ties to even; it raises on overflow instead of returning inf.
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


# ---------------------------------------------------------------------------------------
# Validation and layout
# ---------------------------------------------------------------------------------------


def _as_float_array(x: Any, /, *, name: str) -> Array:
    # the reductions' rules (varstats.validation): masked arrays refused, any byte order
    # and any Array API library accepted, the values read on the host
    return host_float_array(x, name=name)


def _check_method(method: Any) -> Method:
    if not isinstance(method, str) or method not in _METHODS:
        raise ValueError(f"method: expected one of {_METHODS}, got {method!r}")
    return method  # type: ignore[return-value]


def _reduced_axes(axis: Axis, ndim: int) -> tuple[int, ...]:
    return normalize_axes(axis, ndim)


def _to_slices(a: Array, axes: tuple[int, ...]) -> tuple[Array, tuple[int, ...]]:
    """``a`` shaped ``(slices, n)`` with the reduced axes last (a copy if needed)."""
    kept = tuple(i for i in range(a.ndim) if i not in axes)
    out_shape = tuple(a.shape[i] for i in kept)
    n = math.prod(a.shape[i] for i in axes)
    moved = np.transpose(a, kept + axes)
    return moved.reshape(math.prod(out_shape), n), out_shape


def _check_correction(correction: Any, n: int, slices: int = 1) -> Fraction | None:
    r"""The exact correction :math:`c`, or ``None`` (after one warning) where :math:`n - c \le 0`.

    The rule of :func:`varstats.var` (the Array API standard): the variance of a slice
    with no degrees of freedom left, an empty one included, is NaN.
    """
    c = check_correction(correction)
    # no slices, nothing to warn about (as for the reductions)
    counts = np.full(min(slices, 1), n)
    if warn_no_degrees_of_freedom(correction, counts):
        return None
    # an integer correction is exact as it is; a float's stored value is
    return (
        Fraction(operator.index(correction))
        if isinstance(correction, int | np.integer)
        else Fraction(c)
    )


def _finish(values: list[float], shape: tuple[int, ...]) -> Any:
    out = np.array(values, dtype=np.float64).reshape(shape)
    # 0-d -> numpy scalar, like NumPy reductions
    return out[()] if out.ndim == 0 else out


# ---------------------------------------------------------------------------------------
# Exact sums: the fast path
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sums:
    """Per slice: :math:`\\sum x = total\\,2^{k}`, :math:`\\sum x^2 = squares\\,2^{2k}`."""

    count: int
    total: list[int]
    squares: list[int]
    k: int
    nan: npt.NDArray[np.bool_]
    posinf: npt.NDArray[np.bool_]
    neginf: npt.NDArray[np.bool_]
    all_negzero: npt.NDArray[np.bool_]


@dataclass(frozen=True)
class _Format:
    """What the sums need of the stored format: ``x = m 2**(e - p)``, ``e >= e_floor``."""

    p: int
    e_floor: int
    want_squares: bool

    @property
    def k(self) -> int:
        # the quantum of the format's subnormals: every stored value is a multiple of 2**k
        return self.e_floor - self.p


def _shifted(value: int, shift: int) -> int:
    # value * 2**shift; a negative shift only ever drops zero bits (see _window_sums)
    return value << shift if shift >= 0 else value >> -shift


def _place(
    rows: npt.NDArray[np.intp],
    terms: list[tuple[npt.NDArray[np.uint64], int]],
    exponent: npt.NDArray[np.int64],
    negative: npt.NDArray[np.bool_] | None,
) -> tuple[list[int], list[int]]:
    r"""Per slice, the Python integer :math:`\sum \pm v\,2^{e + s}` over buckets and terms.

    ``rows`` (ascending), ``exponent`` and ``negative`` give each bucket's slice, power of
    two and sign; every term is one uint64 value :math:`v` per bucket and a shift
    :math:`s`. Returns the slices present and their sums.

    The values are cut into 32-bit pieces, each added, shifted by less than 16 bits, into
    the int64 digit of base :math:`2^{16}` it starts in. At most :math:`2^{12}` pieces,
    each below :math:`2^{47}`, meet in a digit (16 exponents per digit, two signs, 16
    fine buckets, 11 pieces of terms), so nothing overflows. The digits
    :math:`i \equiv j \pmod 4` lie 64 bits apart and become one Python integer each
    through :meth:`int.from_bytes`: a few calls per slice instead of a Python operation
    per bucket.
    """
    first = np.flatnonzero(np.diff(rows, prepend=-1))  # rows ascending: where each starts
    slices = rows[first]
    lowest = min(s for _, s in terms)
    # each slice's digits start at its smallest power of two
    base = np.minimum.reduceat(exponent, first) + lowest
    where = np.repeat(np.arange(slices.size), np.diff(np.append(first, rows.size)))
    offset = exponent - base[where]
    digits = -(-(int(offset.max()) + max(s for _, s in terms) + 64) // 64) * 4 + 4
    acc = np.zeros(slices.size * digits, dtype=np.int64)
    row_start = where * digits
    for value, shift in terms:
        for k in range(0, int(value.max()).bit_length(), 32):
            piece = ((value >> np.uint64(k)) & np.uint64(0xFFFFFFFF)).astype(np.int64)
            bit = offset + (shift + k)
            piece <<= bit & 15
            if negative is not None:
                np.negative(piece, out=piece, where=negative)
            np.add.at(acc, row_start + (bit >> 4), piece)
    # digit + 2**63 as uint64 (two's complement): the 64-bit words of a non-negative number
    table = (acc.view(np.uint64) + np.uint64(1 << 63)).reshape(slices.size, digits // 4, 4)
    # (slice, j, word) little-endian bytes: one contiguous run per Python integer
    table = np.ascontiguousarray(table.transpose(0, 2, 1), dtype="<u8")
    words = digits // 4
    bias = ((1 << (64 * words)) - 1) // ((1 << 64) - 1) << 63  # 2**63 per word
    sums: list[int] = []
    for i in range(slices.size):
        total = 0
        for j in range(4):
            part = int.from_bytes(table[i, j].tobytes(), "little")
            total += (part - bias) << (16 * j)
        sums.append(total << int(base[i]))
    return slices.tolist(), sums


class _HalfSums:
    """Per bucket: the count and the uint64 sums of ``g``, ``h*h``, ``h*l``, ``l*l``."""

    def __init__(self, buckets: int) -> None:
        self.count = np.zeros(buckets, dtype=np.int64)
        self.sums = np.zeros((4, buckets), dtype=np.uint64)

    def add(
        self,
        key: npt.NDArray[np.intp],
        count: npt.NDArray[np.int64],
        low: int,
        g: npt.NDArray[np.uint64],
        split: int,
        squares: bool,
    ) -> None:
        # count: per bucket from low on; g = h 2**split + l; the caller keeps every sum
        # below 2**64
        self.count[low : low + count.size] += count
        np.add.at(self.sums[0], key, g)
        if squares:
            h, rest = g >> np.uint64(split), g & np.uint64((1 << split) - 1)
            np.add.at(self.sums[1], key, h * h)
            np.add.at(self.sums[2], key, h * rest)
            np.add.at(self.sums[3], key, rest * rest)

    def clear(self, used: int) -> None:
        self.count[:used] = 0
        self.sums[:, :used] = 0


class _Binades:
    r"""Exact sums of finite float64 values per (slice, sign, binade), whatever their range.

    A float64 with sign bit :math:`s`, exponent field :math:`E` and fraction field
    :math:`f < 2^{52}` is :math:`(-1)^s (I\,2^{52} + f)\,2^{\max(E, 1) - 1075}`, with
    :math:`I = 1` for a normal number and 0 for a subnormal. The top 12 bits of its
    pattern (:math:`s` and :math:`E`) name its *bucket*, and ``np.add.at`` adds every
    value of a segment into its bucket at once: the count, :math:`\sum f` and, with
    :math:`f = h\,2^{26} + l`, :math:`\sum h^2, \sum hl, \sum l^2`. Every term is below
    :math:`2^{52}`, so the uint64 sums are exact while a bucket holds at most
    :math:`2^{12}` values. A segment that would crowd a bucket beyond that goes to
    *fine* buckets, named by four more bits of the pattern:
    :math:`m = q\,2^{48} + g` with :math:`q < 32` fixed per fine bucket and
    :math:`g = h\,2^{24} + l < 2^{48}`, exact up to :math:`2^{16}` values. Per bucket

    .. math::
        \sum m = c\,q\,2^{s} + \sum g,\qquad
        \sum m^2 = c\,q^2\,2^{2s} + q \sum g\;2^{s + 1} + \sum g^2,

    with the count :math:`c` and :math:`q\,2^{s} = I\,2^{52}` or :math:`q\,2^{48}`.
    :meth:`flush` turns the buckets into Python integers (:func:`_place`) and adds them
    to the slices' ``total`` and ``squares``. A segment costs a few passes and five
    scatter-adds, whatever its exponents.
    """

    def __init__(self, fmt: _Format, total: list[int], squares: list[int]) -> None:
        self.fmt, self.total, self.squares = fmt, total, squares
        self._reset(0, 0, None)

    def _reset(self, first: int, buckets: int, key_of: npt.NDArray[np.intp] | None) -> None:
        self.first = first  # slice of bucket 0
        self.key_of = key_of  # bucket -> (slice - first) << 12 | top bits; None: identity
        self.used = 0  # buckets [0, used) may be non-zero
        self.coarse = _HalfSums(buckets)
        self.fine: _HalfSums | None = None  # 16 per bucket, made when one is crowded

    def add(self, values: Float64Array, rows: int | npt.NDArray[np.intp]) -> None:
        """Add 1-D finite ``values`` of slice ``rows`` (an int, or ascending, one per value)."""
        if not values.size:
            return
        lo, hi = (rows, rows) if isinstance(rows, int) else (int(rows[0]), int(rows[-1]))
        if (hi - lo + 1) << _KEY_BITS > _DENSE_BUCKETS:  # many slices: number the buckets
            self.flush()
            keys = ((rows - lo) << _KEY_BITS) + _top_bits(values)
            key_of, bucket = np.unique(keys, return_inverse=True)
            self._reset(lo, key_of.size, key_of)
            self._accumulate(
                values, key_of.size, lambda start, stop: (bucket[start:stop], 0, key_of.size)
            )
            self.flush()
            return
        # consecutive slices share the dense buckets (one flush for several slices)
        if self.key_of is not None or not self.first <= lo <= hi < self.first + (
            self.coarse.count.size >> _KEY_BITS
        ):
            self.flush()
            self._reset(lo, _DENSE_BUCKETS, None)

        def buckets(start: int, stop: int) -> tuple[npt.NDArray[np.intp], int, int]:
            top = _top_bits(values[start:stop])
            if isinstance(rows, int):
                low = (rows - self.first) << _KEY_BITS
                return (top + low if low else top), low, low + (1 << _KEY_BITS)
            low = (int(rows[start]) - self.first) << _KEY_BITS
            high = (int(rows[stop - 1]) - self.first + 1) << _KEY_BITS
            return top + ((rows[start:stop] - self.first) << _KEY_BITS), low, high

        self._accumulate(values, (hi - self.first + 1) << _KEY_BITS, buckets)

    def _accumulate(
        self,
        values: Float64Array,
        used: int,
        buckets: Callable[[int, int], tuple[npt.NDArray[np.intp], int, int]],
    ) -> None:
        """Add ``values``: their buckets below ``used``, from ``buckets(start, stop)``.

        ``buckets`` also returns the range of buckets the segment can touch: counts and
        limits are checked over that range only.
        """
        squares = self.fmt.want_squares
        self.used = used = max(used, self.used)
        for start in range(0, values.size, _BLOCK):
            stop = min(start + _BLOCK, values.size)
            key, low, high = buckets(start, stop)
            u = values[start:stop].view(np.uint64)
            count = np.bincount(key - low if low else key, minlength=high - low)
            if int((self.coarse.count[low:high] + count).max()) <= _COARSE_LIMIT:
                self.coarse.add(key, count, low, u & _FRACTION, _HALF, squares)
                continue
            # crowded: four more bits of the pattern in the key leave g < 2**48
            if self.fine is None:  # zeroed lazily by the system: only used pages cost
                self.fine = _HalfSums(self.coarse.count.size << _FINE_BITS)
            key = (key << _FINE_BITS) | ((u >> _U48) & _FINE_MASK).view(np.intp)
            low, high = low << _FINE_BITS, high << _FINE_BITS
            count = np.bincount(key - low if low else key, minlength=high - low)
            if int((self.fine.count[low:high] + count).max()) > _FINE_LIMIT:
                self.flush()  # every sum back to zero
                self.used = used
            self.fine.add(key, count, low, u & _MASK48, _FINE_HALF, squares)

    def flush(self) -> None:
        """Add the buckets' sums to ``total`` and ``squares``; every bucket back to zero."""
        used, self.used = self.used, 0
        self._flush(self.coarse, used, 0)
        self.coarse.clear(used)
        if self.fine is not None:
            self._flush(self.fine, used << _FINE_BITS, _FINE_BITS)
            self.fine.clear(used << _FINE_BITS)

    def _flush(self, sums: _HalfSums, used: int, fine_bits: int) -> None:
        nz = np.flatnonzero(sums.count[:used])
        if not nz.size:
            return
        bucket = nz >> fine_bits
        key = bucket if self.key_of is None else self.key_of[bucket]
        rows = (key >> _KEY_BITS) + self.first
        top = key & ((1 << _KEY_BITS) - 1)
        exponent_field = top & 0x7FF
        normal = exponent_field > 0
        # x = +-m 2**(max(E, 1) - 1075): in units of 2**-1074, m 2**e
        e = (np.maximum(exponent_field, 1) - 1).astype(np.int64)
        # m = q 2**shift + g: the implicit bit, and the fine bucket's four pattern bits
        q = (normal.astype(np.uint64) << np.uint64(fine_bits)) | (
            nz & ((1 << fine_bits) - 1)
        ).astype(np.uint64)
        shift = _P64 - 1 - fine_bits
        split = _HALF - fine_bits // 2
        c = sums.count[nz].astype(np.uint64) * q
        total, h2, hl, l2 = sums.sums[:, nz]
        slices, values = _place(rows, [(c, shift), (total, 0)], e, top >= 1 << 11)
        # the stored values are multiples of 2**k: exact shifts into the format's units
        unit = -1074 - self.fmt.k
        for r, v in zip(slices, values, strict=True):
            self.total[r] += _shifted(v, unit)
        if self.fmt.want_squares:
            square_terms = [
                (c * q, 2 * shift),  # c q**2 2**(2 shift)
                ((total & np.uint64(0xFFFFFFFF)) * q, shift + 1),  # q sum g 2**(shift + 1)
                ((total >> np.uint64(32)) * q, shift + 33),
                (h2, 2 * split),  # sum g**2 = sum h**2 2**(2 split) + 2 sum h l 2**split + ...
                (hl, split + 1),
                (l2, 0),
            ]
            slices, values = _place(rows, square_terms, 2 * e, None)
            for r, v in zip(slices, values, strict=True):
                self.squares[r] += _shifted(v, 2 * unit)


def _top_bits(values: Float64Array) -> npt.NDArray[np.intp]:
    # sign and exponent field of each float64: its bucket within a slice (below 2**12, so
    # reading the uint64 as an intp is exact and, unlike a cast, free)
    return (values.view(np.uint64) >> _U52).view(np.intp)


@dataclass(frozen=True)
class _Workspace:
    """Buffers every block of one call reuses (fresh large arrays would page-fault)."""

    converted: Float64Array
    rounded: Float64Array
    residual: Float64Array
    missed: npt.NDArray[np.bool_]
    limbs: npt.NDArray[np.int64]

    @classmethod
    def for_blocks(cls, rows: int, cols: int) -> _Workspace:
        size = rows * cols
        padded = cols if cols <= _DOT else -(-cols // _DOT) * _DOT
        return cls(
            np.empty(size),
            np.empty(size),
            np.empty(size),
            np.empty(size, dtype=bool),
            np.empty((_MAX_LIMBS, rows * padded), dtype=np.int64),
        )


def _row_dots(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> list[int]:
    """Exact ``sum(a * b)`` per row; ``|a b| <= 2**50`` elementwise."""
    rows, cols = a.shape
    if cols <= _DOT:
        return np.einsum("rc,rc->r", a, b).tolist()  # type: ignore[no-any-return]
    # rows padded to a multiple of _DOT: int64 dots of _DOT products cannot overflow
    part = np.einsum("qc,qc->q", a.reshape(-1, _DOT), b.reshape(-1, _DOT)).reshape(rows, -1)
    return [sum(r) for r in part.tolist()]


def _window_sums(
    x: Float64Array,
    top: Float64Array,
    r0: int,
    fmt: _Format,
    total: list[int],
    squares: list[int],
    ws: _Workspace,
) -> tuple[Float64Array, npt.NDArray[np.intp]] | None:
    r"""Add the exact sums of a block's rows (finite float64 ``x``) to ``total``/``squares``.

    Every row gets a window of limbs below its largest magnitude ``top`` :math:`< 2^{e}`:
    with :math:`t_0 = e - 25` and :math:`t_j = t_0 - 26 j`, the magic constant
    :math:`\sigma_j = 1.5 \cdot 2^{t_j + 52}` rounds the residual :math:`r_j`
    (:math:`|r_j| \le 2^{t_j + 25}`) to the grid :math:`2^{t_j}`:
    :math:`\operatorname{fl}(r_j + \sigma_j)` lies in :math:`\sigma_j`'s binade, so its
    bit pattern minus :math:`\sigma_j`'s is the integer limb
    :math:`l_j = (\operatorname{fl}(r_j + \sigma_j) - \sigma_j) / 2^{t_j}`, and
    :math:`r_{j+1} = r_j - l_j 2^{t_j}` is exact (the extraction of Rump, Ogita & Oishi).
    The sums :math:`\sum l_j` and the dot products :math:`\sum l_i l_j` are exact int64
    arithmetic. Values whose residual stays non-zero (far below the row's largest) are
    taken out of the limbs and returned with their rows, for :class:`_Binades`.
    ``x`` is not written.
    """
    r, c = x.shape
    size = r * c
    e_top = np.frexp(top)[1].astype(np.int64)  # top < 2**e_top (0 for an all-zero row)
    scale = np.zeros(r, dtype=np.int64)
    original = x
    far = np.abs(e_top) > _SAFE_EXPONENT
    lost: npt.NDArray[np.bool_] | None = None
    if far.any():
        # exact, except that scaling down may round values far below the row's largest
        # into the subnormals or to zero: those become outliers, summed unscaled
        scale = np.where(far, -e_top, 0)
        x = np.ldexp(x, scale[:, None])
        e_top = np.where(far, 0, e_top)
        if (scale < 0).any():
            lost = (original != 0) & (x == 0)
    if r > 1 and not far.any() and int(e_top.max()) - int(e_top.min()) <= _SHARED_SPREAD:
        # one window for rows of similar size: a scalar constant takes NumPy's fast path,
        # a column of them (one per row) runs about half as fast
        e_top = np.full(r, e_top.max())
    shared = bool((e_top == e_top[0]).all())
    t0 = e_top - (_LIMB - 1)
    padded = c if c <= _DOT else -(-c // _DOT) * _DOT
    # the window first checked covers the format's significand and 8 binades below the top
    first_check = -(-(fmt.p + 8) // _LIMB)
    rounded = ws.rounded[:size].reshape(r, c)
    residual = x
    limbs: list[npt.NDArray[np.int64]] = []
    # a boolean mask, not the float residual, for counting and indexing: several times faster
    miss = ws.missed[:size].reshape(r, c)
    misses = 0
    for j in range(_MAX_LIMBS):
        sigma: Any = np.ldexp(1.5, t0 - _LIMB * j + 52)[:, None]
        if shared:
            sigma = sigma[0, 0]  # a NumPy scalar
        limb = ws.limbs[j, : r * padded].reshape(r, padded)
        if padded > c:
            limb[:, c:] = 0
        np.add(residual, sigma, out=rounded)
        np.subtract(rounded.view(np.int64), sigma.view(np.int64), out=limb[:, :c])
        rounded -= sigma  # exact: both in [2**k, 2**(k+1)]
        residual = np.subtract(residual, rounded, out=ws.residual[:size].reshape(r, c))
        limbs.append(limb)
        if j + 1 < first_check:
            continue
        np.not_equal(residual, 0, out=miss)
        misses = int(np.count_nonzero(miss))
        if misses <= _OUTLIER_FRACTION * size or j + 1 == _MAX_LIMBS:
            break
    if lost is not None and lost.any():
        miss |= lost
        misses = int(np.count_nonzero(miss))
    missed = None
    if misses:
        outliers = np.flatnonzero(miss)
        out_rows, out_cols = np.divmod(outliers, c)
        if 8 * misses < size:
            for limb in limbs:
                limb[out_rows, out_cols] = 0
        else:  # most of the block: one multiply per limb beats a scatter
            keep = np.logical_not(miss, out=miss)
            for limb in limbs:
                limb[:, :c] *= keep
        missed = (original.reshape(-1)[outliers], out_rows + r0)

    count = len(limbs)
    limb_sums = np.stack([limb.sum(axis=1) for limb in limbs], axis=1).tolist()
    # x**2 = sum_d c_d 2**(2 t_0 - 26 d), c_d = sum over i + j = d of l_i l_j
    coefficients: list[list[list[int]]] = []
    if fmt.want_squares:
        for d in range(2 * count - 1):
            terms = []
            for i in range(max(0, d - count + 1), d // 2 + 1):
                dot = _row_dots(limbs[i], limbs[d - i])
                terms.append(dot if 2 * i == d else [2 * v for v in dot])
            coefficients.append(terms)
    unit = (t0 - _LIMB * (count - 1) - scale).tolist()  # exponent of the last limb, unscaled
    for row in range(r):
        a = 0
        for s in limb_sums[row]:
            a = (a << _LIMB) + s
        # a 2**unit is a sum of the format's values, so a multiple of 2**k: exact shift
        total[r0 + row] += _shifted(a, unit[row] - fmt.k)
        if fmt.want_squares:
            b = 0
            for terms in coefficients:
                b = (b << _LIMB) + sum(t[row] for t in terms)
            squares[r0 + row] += _shifted(b, 2 * (unit[row] - fmt.k))
    return missed


def _beyond_window(block: Float64Array, top: Float64Array, fmt: _Format) -> bool:
    """Whether a sample of ``block`` has many non-zero values below any window's reach."""
    step = max(1, block.shape[1] // _SAMPLE)
    sample = block[:, ::step]
    if 0 < top.max() < 2.0**-_SAFE_EXPONENT:
        # the window would scale subnormals up: arithmetic on them runs far slower
        return True
    reach = top * 2.0 ** (fmt.p - 103)
    below = np.count_nonzero((np.abs(sample) < reach[:, None]) & (sample != 0))
    return bool(below > _SPREAD_FRACTION * sample.size)


def _fast_sums(rows: Array, *, want_squares: bool = True) -> _Sums:
    slices, n = rows.shape
    info = finfo(rows.dtype)
    # x = m 2**(e - p) with an integer |m| < 2**p and e >= e_floor (subnormals included)
    fmt = _Format(info.mant, round(math.log2(info.smallest_subnormal)) + 1, want_squares)
    total = [0] * slices
    squares = [0] * slices
    nan = np.zeros(slices, dtype=bool)
    posinf = np.zeros(slices, dtype=bool)
    neginf = np.zeros(slices, dtype=bool)
    rows_per_block = max(1, _BLOCK // n)
    cols_per_block = min(n, _BLOCK)
    ws = _Workspace.for_blocks(min(rows_per_block, slices), cols_per_block)
    binades = _Binades(fmt, total, squares)
    missed_values: list[Float64Array] = []
    missed_rows: list[npt.NDArray[np.intp]] = []
    for r0 in range(0, slices, rows_per_block):
        for c0 in range(0, n, cols_per_block):
            block = rows[r0 : r0 + rows_per_block, c0 : c0 + cols_per_block]
            if block.dtype != np.float64:
                # float64 holds every value of DTYPES exactly
                converted = ws.converted[: block.size].reshape(block.shape)
                np.copyto(converted, block)
                block = converted
            # NaN propagates through max and min; inf shows as an infinite top
            top = np.maximum(block.max(axis=1), -block.min(axis=1))
            if not np.isfinite(top).all():
                block = block.copy()
                bad_rows, bad_cols = np.nonzero(~np.isfinite(block))
                bad = block[bad_rows, bad_cols]
                nan[r0 + bad_rows[np.isnan(bad)]] = True
                posinf[r0 + bad_rows[bad == np.inf]] = True
                neginf[r0 + bad_rows[bad == -np.inf]] = True
                block[bad_rows, bad_cols] = 0.0
                top = np.abs(block).max(axis=1)
            if _beyond_window(block, top, fmt):
                if block.shape[0] == 1:
                    binades.add(block[0], r0)
                else:
                    of = np.repeat(np.arange(r0, r0 + len(block)), block.shape[1])
                    binades.add(block.reshape(-1), of)
                continue
            missed = _window_sums(block, top, r0, fmt, total, squares, ws)
            if missed is not None:
                missed_values.append(missed[0])
                missed_rows.append(missed[1])
    binades.flush()
    if missed_values:
        binades.add(np.concatenate(missed_values), np.concatenate(missed_rows))
        binades.flush()

    all_negzero = np.zeros(slices, dtype=bool)
    zero_rows = [i for i in range(slices) if total[i] == 0 and squares[i] == 0]
    if zero_rows:
        # only a slice of zeros (and non-finite values) can be all -0.0
        all_negzero[zero_rows] = np.signbit(rows[zero_rows].astype(np.float64)).all(axis=1)
    return _Sums(n, total, squares, fmt.k, nan, posinf, neginf, all_negzero)


def _nonfinite_mean(nan: bool, posinf: bool, neginf: bool) -> float | None:
    if nan or (posinf and neginf):
        return math.nan
    if posinf:
        return math.inf
    if neginf:
        return -math.inf
    return None


def _fast_mean(s: _Sums) -> list[float]:
    out = []
    for i, total in enumerate(s.total):
        special = _nonfinite_mean(bool(s.nan[i]), bool(s.posinf[i]), bool(s.neginf[i]))
        if special is not None:
            out.append(special)
        elif s.all_negzero[i]:
            out.append(-0.0)
        else:
            out.append(round_ratio(total, s.count, s.k))
    return out


def _fast_m2(s: _Sums, i: int) -> tuple[int, int, int]:
    """:math:`M_2 = num / den \\cdot 2^{exp}` of slice ``i`` (finite input)."""
    n = s.count
    return n * s.squares[i] - s.total[i] * s.total[i], n, 2 * s.k


def _fast_var(s: _Sums, correction: Fraction) -> list[float]:
    out = []
    for i in range(len(s.total)):
        if s.nan[i] or s.posinf[i] or s.neginf[i]:
            out.append(math.nan)
            continue
        num, den, exp = _fast_m2(s, i)
        # var = M2 / (n - c), with n - c = (n * c.den - c.num) / c.den
        dof = s.count * correction.denominator - correction.numerator
        out.append(round_ratio(num * correction.denominator, den * dof, exp))
    return out


# ---------------------------------------------------------------------------------------
# Exact sums: the reference path
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RefSlice:
    values: list[float]
    mean: Fraction | float  # a float only for non-finite slices (policy value)
    m2: Fraction | float


def _reference_slice(row: Array) -> _RefSlice:
    values = row.astype(np.float64).tolist()  # exact: DTYPES are all subsets of float64
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < len(values):
        nan = any(math.isnan(v) for v in values)
        mean = _nonfinite_mean(nan, math.inf in values, -math.inf in values)
        assert mean is not None
        return _RefSlice(values, mean, math.nan)
    exact = [Fraction(v) for v in values]
    mean_q = sum(exact, Fraction(0)) / len(exact)
    m2 = sum(((v - mean_q) ** 2 for v in exact), Fraction(0))
    return _RefSlice(values, mean_q, m2)


def _reference_mean_value(r: _RefSlice) -> float:
    if isinstance(r.mean, float):
        return r.mean
    if r.mean == 0 and all(v == 0 and math.copysign(1.0, v) < 0 for v in r.values):
        return -0.0
    return _fraction_to_float(r.mean)


def _reference_var_value(r: _RefSlice, correction: Fraction) -> float:
    if isinstance(r.m2, float):
        return r.m2
    return _fraction_to_float(r.m2 / (len(r.values) - correction))


# ---------------------------------------------------------------------------------------
# Public moments
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ExactMoments:
    r"""Exact count, mean and :math:`M_2` of every reduced slice.

    Attributes
    ----------
    count : int
        Number of values in each slice (the same for every slice).
    mean : ndarray of object
        :class:`fractions.Fraction` per slice, shaped like the reduction's output
        (0-d for ``axis=None``). A slice holding NaN or inf has the float that the
        non-finite policy of :mod:`varstats.oracle` gives instead.
    m2 : ndarray of object
        :math:`M_2 = \sum_i (x_i - \bar x)^2` as a :class:`~fractions.Fraction` per
        slice (float NaN for a non-finite slice).
    """

    count: int
    mean: ObjectArray
    m2: ObjectArray

    def var(self, correction: float = 0) -> ObjectArray:
        r"""Exact variance :math:`M_2 / (n - c)` per slice (object array of Fraction).

        Where :math:`n - c \le 0` every slice is float NaN, after one ``RuntimeWarning``
        naming ``correction`` (the rule of :func:`exact_var`).
        """
        c = _check_correction(correction, self.count, self.m2.size)
        out = np.empty(self.m2.shape, dtype=object)
        for idx, m2 in np.ndenumerate(self.m2):
            if c is None:
                out[idx] = math.nan
            else:
                out[idx] = m2 / (self.count - c) if isinstance(m2, Fraction) else m2
        return out


def _object_array(values: list[Any], shape: tuple[int, ...]) -> ObjectArray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out.reshape(shape)


def exact_moments(
    x: npt.ArrayLike, /, *, axis: Axis = None, method: Method = "fast"
) -> ExactMoments:
    r"""Exact rational count, mean and :math:`M_2` of the stored values of ``x``.

    Parameters
    ----------
    x : array_like
        float16, bfloat16, float32 or float64 data (a list becomes float64).
    axis : None, int or tuple of ints
        Axes reduced (``None``: all of them). Negative axes count from the end.
    method : {"fast", "reference"}
        Exact integer bucket sums or one :class:`~fractions.Fraction` per element.

    Returns
    -------
    ExactMoments
        ``mean`` and ``m2`` are object arrays of :class:`~fractions.Fraction`.

    Notes
    -----
    .. math::
        \bar x = \frac{1}{n}\sum_i x_i,\qquad
        M_2 = \frac{n\sum_i x_i^2 - (\sum_i x_i)^2}{n}

    are evaluated in exact rational arithmetic, so there is no cancellation error.
    """
    method = _check_method(method)
    a = _as_float_array(x, name="x")
    rows, shape = _to_slices(a, _reduced_axes(axis, a.ndim))
    n = rows.shape[1]
    means: list[Any] = []
    m2s: list[Any] = []
    if rows.size == 0:  # the mean of nothing is NaN; its M2, an empty sum, is 0
        means, m2s = [math.nan] * len(rows), [Fraction(0)] * len(rows)
    elif method == "reference":
        for row in rows:
            r = _reference_slice(row)
            means.append(r.mean)
            m2s.append(r.m2)
    else:
        s = _fast_sums(rows)
        for i, total in enumerate(s.total):
            special = _nonfinite_mean(bool(s.nan[i]), bool(s.posinf[i]), bool(s.neginf[i]))
            if special is not None:
                means.append(special)
                m2s.append(math.nan)
                continue
            num, den, exp = _fast_m2(s, i)
            means.append(Fraction(total, n) * Fraction(2) ** s.k)
            m2s.append(Fraction(num, den) * Fraction(2) ** exp)
    return ExactMoments(n, _object_array(means, shape), _object_array(m2s, shape))


def exact_mean(x: npt.ArrayLike, /, *, axis: Axis = None, method: Method = "fast") -> Any:
    r"""Mean of the stored values, exact, rounded once to float64.

    .. math::
        \operatorname{fl}_{64}\!\left(\frac{1}{n}\sum_{i=1}^n x_i\right)

    Parameters
    ----------
    x : array_like
        float16, bfloat16, float32 or float64 data; a list becomes float64.
        Integer, boolean, complex and object data raise ``TypeError``.
    axis : None, int or tuple of ints
        Axes to reduce; ``None`` reduces all of them. Negative axes count from the end.
    method : {"fast", "reference"}
        ``"fast"``: vectorized exact integer sums. ``"reference"``: one
        :class:`~fractions.Fraction` per element. Both give the same bits.

    Returns
    -------
    numpy.float64 or ndarray of float64
        Round to nearest, ties to even. The mean of finite values always lies in
        float64's range. NaN/inf follow the policy in :mod:`varstats.oracle`.

    Raises
    ------
    TypeError
        Non-floating or masked ``x``.
    ValueError
        Unknown ``method``; ``numpy.exceptions.AxisError`` for a bad axis. The mean of
        an empty slice is NaN (Array API standard), without a warning.

    Examples
    --------
    >>> float(exact_mean([1e16, 1e16 + 2]))  # 1e16 + 1 is not a double: ties to even
    1e+16
    """
    method = _check_method(method)
    a = _as_float_array(x, name="x")
    rows, shape = _to_slices(a, _reduced_axes(axis, a.ndim))
    if rows.size == 0:  # the mean of nothing is NaN (Array API standard)
        values = [math.nan] * len(rows)
    elif method == "reference":
        values = [_reference_mean_value(_reference_slice(row)) for row in rows]
    else:
        values = _fast_mean(_fast_sums(rows, want_squares=False))
    return _finish(values, shape)


def exact_var(
    x: npt.ArrayLike, /, *, axis: Axis = None, correction: float = 0, method: Method = "fast"
) -> Any:
    r"""Variance of the stored values, exact, rounded once to float64.

    .. math::
        \operatorname{fl}_{64}\!\left(\frac{1}{n - c}\sum_{i=1}^n (x_i - \bar x)^2\right)
        = \operatorname{fl}_{64}\!\left(
          \frac{n\sum_i x_i^2 - (\sum_i x_i)^2}{n\,(n - c)}\right)

    The right-hand form is evaluated in exact integer arithmetic, so it has none of the
    cancellation that makes it the worst floating-point algorithm (Chan, Golub &
    LeVeque 1983).

    Parameters
    ----------
    x : array_like
        float16, bfloat16, float32 or float64 data; a list becomes float64.
    axis : None, int or tuple of ints
        Axes to reduce; ``None`` reduces all of them.
    correction : float
        Degrees-of-freedom correction :math:`c` (``ddof``); ``1`` is Bessel's. Its
        exact value is used (``0.5`` is one half). A finite
        number >= 0; where :math:`n - c \le 0` (an empty slice, ``axis=()`` with
        ``c >= 1``) the variance is NaN, with one ``RuntimeWarning`` naming
        ``correction``: the rule of :func:`varstats.var` and of the Array API standard.
    method : {"fast", "reference"}
        See :func:`exact_mean`.

    Returns
    -------
    numpy.float64 or ndarray of float64
        Round to nearest, ties to even; ``inf`` where the exact variance exceeds
        float64's range (e.g. ``[-1e308, 1e308]``); subnormal results are correctly
        rounded too. NaN/inf input follow the module's policy (variance NaN).

    Raises
    ------
    TypeError
        Non-floating or masked ``x``, a non-real ``correction``.
    ValueError
        A negative, non-finite or huge ``correction``, unknown ``method``;
        ``numpy.exceptions.AxisError`` for a bad axis.

    Examples
    --------
    >>> float(exact_var([1e16, 1e16 + 2]))
    1.0

    References
    ----------
    .. [1] T. F. Chan, G. H. Golub, R. J. LeVeque, "Algorithms for computing the sample
           variance: analysis and recommendations", The American Statistician 37(3), 1983.
    """
    method = _check_method(method)
    a = _as_float_array(x, name="x")
    rows, shape = _to_slices(a, _reduced_axes(axis, a.ndim))
    c = _check_correction(correction, rows.shape[1], len(rows))
    if c is None or rows.size == 0:  # no degrees of freedom left (warned), or no slices
        values = [math.nan] * len(rows)
    elif method == "reference":
        values = [_reference_var_value(_reference_slice(row), c) for row in rows]
    else:
        values = _fast_var(_fast_sums(rows), c)
    return _finish(values, shape)


# ---------------------------------------------------------------------------------------
# Exact normalized output
# ---------------------------------------------------------------------------------------


def _exact_scalar(value: Any, /, *, name: str) -> Fraction:
    if isinstance(value, np.generic) and not isinstance(value, (np.bool_, np.integer)):
        # a stored scalar of one of DTYPES (bfloat16 is not an np.floating subclass)
        try:
            as_dtype(value.dtype, name=name)
        except (TypeError, ValueError):
            raise TypeError(f"{name}: expected a real number, got {value.dtype}") from None
    elif isinstance(value, bool) or not isinstance(value, (int, float, np.integer)):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    try:
        v = float(value)  # exact for every DTYPES scalar and for Python floats
    except OverflowError:  # an int beyond float64's range
        raise ValueError(
            f"{name}: must be a finite number >= 0, got an int of {value.bit_length()} bits"
        ) from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name}: must be a finite number >= 0, got {value!r}")
    return Fraction(int(value)) if isinstance(value, (int, np.integer)) else Fraction(v)


def _affine(value: Any, shape: tuple[int, ...], /, *, name: str, default: float) -> Float64Array:
    if value is None:
        return np.full(shape, default)
    a = _as_float_array(value, name=name)
    try:
        return np.broadcast_to(a.astype(np.float64), shape)
    except ValueError:
        raise ValueError(
            f"{name}: shape {a.shape} does not broadcast against x's shape {shape}"
        ) from None


def _zero_output(w: float, b: float) -> float:
    # (x - mean) = +0 exactly; +0 / r = +0; +0 * w and then + b under IEEE
    return (0.0 * w) + b


def _special_output(sign: int, w: float, b: float) -> float:
    # a non-finite weight or bias: the IEEE result from the sign of the exact product
    with np.errstate(invalid="ignore", over="ignore"):
        return float(np.float64(sign) * np.float64(w) + np.float64(b))


def _perfect_square(q: Fraction) -> Fraction | None:
    rn, rd = math.isqrt(q.numerator), math.isqrt(q.denominator)
    if rn * rn == q.numerator and rd * rd == q.denominator:
        return Fraction(rn, rd)
    return None


_ZIV_START: Final = 128  # guard bits of the first attempt
_ZIV_MAX: Final = 1 << 16  # never reached for irrational results (see exact_normalize)


def _normalize_slice_fast(
    xs: list[float], ws: list[float], bs: list[float], mean: Fraction, denom: Fraction
) -> list[float]:
    """Rounded ``(x - mean) / sqrt(denom) * w + b`` for one slice (``denom > 0``)."""
    out: list[float] = []
    mn, md = mean.numerator, mean.denominator
    root = _perfect_square(denom)
    # 1/sqrt(a/b) = sqrt(b/a): enclosure R/2**K <= sqrt(b/a) < (R+1)/2**K, R = isqrt(b 4**K // a)
    a, b = denom.numerator, denom.denominator
    guard = _ZIV_START + max(0, (a.bit_length() - b.bit_length()) // 2 + 1)
    cache: dict[int, int] = {}

    def inv_sqrt(bits: int) -> int:
        if bits not in cache:
            cache[bits] = math.isqrt((b << (2 * bits)) // a)
        return cache[bits]

    for xv, wv, bv in zip(xs, ws, bs, strict=True):
        xn, xd = xv.as_integer_ratio()
        # P = (x - mean) * w, exactly
        dn = xn * md - mn * xd
        if dn == 0:
            out.append(_zero_output(wv, bv))
            continue
        if not (math.isfinite(wv) and math.isfinite(bv)):
            out.append(_special_output(1 if dn > 0 else -1, wv, bv))
            continue
        wn, wd = wv.as_integer_ratio()
        bn, bd = bv.as_integer_ratio()
        pn, pd = dn * wn, xd * md * wd
        if pn == 0:
            out.append(_zero_output(wv if dn > 0 else -wv, bv))
            continue
        if root is not None:
            # rational result: y = P * rd/rn + b exactly
            num = pn * root.denominator * bd + bn * pd * root.numerator
            out.append(round_ratio(num, pd * root.numerator * bd))
            continue
        # Ziv: y lies strictly between the two bounds; an irrational y is never a
        # rounding boundary, so a fine enough enclosure rounds unambiguously
        bits = guard
        while True:
            r = inv_sqrt(bits)
            den = pd * bd
            lo = round_ratio(pn * r * bd + (bn * pd << bits), den, -bits)
            hi = round_ratio(pn * (r + 1) * bd + (bn * pd << bits), den, -bits)
            if lo == hi:
                out.append(lo)
                break
            bits *= 2
            if bits > _ZIV_MAX:  # pragma: no cover - irrational results always terminate
                raise RuntimeError("exact_normalize: Ziv iteration did not converge")
    return out


def _mpf_to_fraction(value: Any) -> Fraction:
    p, q = libmp.to_rational(value)
    return Fraction(p, q)


def _normalize_slice_reference(
    xs: list[float], ws: list[float], bs: list[float], mean: Fraction, denom: Fraction
) -> list[float]:
    """Per element mpmath interval arithmetic with Ziv's precision doubling."""
    out: list[float] = []
    root = _perfect_square(denom)
    saved = iv.prec
    try:
        for xv, wv, bv in zip(xs, ws, bs, strict=True):
            p = (Fraction(xv) - mean) if math.isfinite(xv) else None
            assert p is not None
            if p == 0:
                out.append(_zero_output(wv, bv))
                continue
            if not (math.isfinite(wv) and math.isfinite(bv)):
                out.append(_special_output(1 if p > 0 else -1, wv, bv))
                continue
            pw = p * Fraction(wv)
            if pw == 0:
                out.append(_zero_output(wv if p > 0 else -wv, bv))
                continue
            if root is not None:
                out.append(_fraction_to_float(pw / root + Fraction(bv)))
                continue
            prec = 80
            while True:
                iv.prec = prec
                y = (iv.mpf(pw.numerator) / pw.denominator) / iv.sqrt(
                    iv.mpf(denom.numerator) / denom.denominator
                ) + iv.mpf(bv)
                lo_raw, hi_raw = y._mpi_
                lo = _fraction_to_float(_mpf_to_fraction(lo_raw))
                hi = _fraction_to_float(_mpf_to_fraction(hi_raw))
                if lo == hi:
                    out.append(lo)
                    break
                prec *= 2
                if prec > _ZIV_MAX:  # pragma: no cover
                    raise RuntimeError("exact_normalize: Ziv iteration did not converge")
    finally:
        iv.prec = saved
    return out


def exact_normalize(
    x: npt.ArrayLike,
    /,
    *,
    axis: Axis,
    eps: float = 0.0,
    correction: float = 0,
    weight: npt.ArrayLike | None = None,
    bias: npt.ArrayLike | None = None,
    method: Method = "fast",
) -> Float64Array:
    r"""Exact normalized output, rounded once to float64 per element.

    .. math::
        y_i = \operatorname{fl}_{64}\!\left(
            \frac{x_i - \bar x}{\sqrt{\operatorname{var}_c(x) + \varepsilon}}\,w_i + b_i\right)

    with the exact mean and variance of each slice over ``axis``. BatchNorm reduces
    axes ``(0, 2, 3, ...)``, LayerNorm the trailing axes, InstanceNorm ``(2, 3, ...)``,
    GroupNorm the axes ``(2, 3, ...)`` of ``x.reshape(N, G, -1, ...)``.

    Parameters
    ----------
    x : array_like
        float16, bfloat16, float32 or float64 data.
    axis : None, int or tuple of ints
        The reduced axes (required keyword).
    eps : float
        Added to the variance inside the square root, taken at its stored value: a
        Python float is its float64 value, a NumPy scalar (e.g. ``np.float32(1e-5)``)
        its value in that dtype. Must be finite and >= 0.
    correction : float
        Degrees-of-freedom correction of the variance (0 for every norm layer's output).
    weight, bias : array_like, optional
        Broadcastable against ``x``; their stored values are used exactly. Default 1 and 0.
    method : {"fast", "reference"}
        ``"fast"``: exact integer arithmetic, the inverse square root enclosed by
        :func:`math.isqrt` per slice. ``"reference"``: :mod:`mpmath` interval
        arithmetic per element. Both are exact and agree bit for bit.

    Returns
    -------
    ndarray of float64
        Same shape as ``x``.

    Notes
    -----
    The final rounding is made certain with **Ziv's strategy** (not an a-priori
    precision bound). The exact value is enclosed in an interval
    :math:`[y_{lo}, y_{hi}]` (``"fast"``: :math:`R\,2^{-K} \le 1/\sqrt{D} < (R+1)\,2^{-K}`
    with :math:`R = \lfloor\sqrt{\lfloor 4^K b / a\rfloor}\rfloor` for
    :math:`D = a/b`; ``"reference"``: mpmath interval arithmetic at ``prec`` bits).
    When both ends round to the same double that double is the answer; otherwise the
    precision is doubled. This terminates: if :math:`\sqrt{D}` is irrational and
    :math:`(x_i-\bar x)w_i \ne 0`, :math:`y_i` is irrational, so it is neither a double
    nor a midpoint between two, and a narrow enough interval avoids both. If
    :math:`\sqrt D` is rational (both parts of the reduced fraction are perfect squares)
    the result is computed as an exact rational and rounded once.

    Special values, IEEE results of the exact computation: a slice with NaN or inf, or
    with :math:`D = \operatorname{var} + \varepsilon = 0` (a constant slice and
    ``eps=0``: :math:`0/0`), is NaN throughout. An element equal to the mean gives
    ``(+0 * w) + b``, i.e. exactly ``b`` for non-zero ``b``. Results beyond float64's
    range are ``±inf``.

    Per element the fast path does a few Python integer operations (microseconds), so
    it suits the small and moderate inputs the study normalizes (up to ~10^5 elements
    per call); the per-slice work (mean, variance, square root) is shared.

    References
    ----------
    .. [1] A. Ziv, "Fast evaluation of elementary mathematical functions with correctly
           rounded last bit", ACM TOMS 17(3), 1991.
    .. [2] Y. Wu, K. He, "Group Normalization", ECCV 2018 (the norm layers as one
           normalization over different sets of axes).
    """
    method = _check_method(method)
    a = _as_float_array(x, name="x")
    axes = _reduced_axes(axis, a.ndim)
    eps_q = _exact_scalar(eps, name="eps")
    w = _affine(weight, a.shape, name="weight", default=1.0)
    b = _affine(bias, a.shape, name="bias", default=0.0)
    rows, _ = _to_slices(a, axes)
    c = _check_correction(correction, rows.shape[1], len(rows))
    kept = tuple(i for i in range(a.ndim) if i not in axes)
    order = kept + axes
    w_rows = np.transpose(w, order).reshape(rows.shape)
    b_rows = np.transpose(b, order).reshape(rows.shape)
    em = exact_moments(a, axis=axes, method=method)
    means, m2_all = em.mean.reshape(-1), em.m2.reshape(-1)
    kernel = _normalize_slice_reference if method == "reference" else _normalize_slice_fast
    out = np.empty(rows.shape, dtype=np.float64)
    for i in range(rows.shape[0]):
        mean, m2 = means[i], m2_all[i]
        if c is None or not isinstance(m2, Fraction) or not isinstance(mean, Fraction):
            out[i] = math.nan
            continue
        denom = m2 / (rows.shape[1] - c) + eps_q
        if denom == 0:
            out[i] = math.nan
            continue
        xs = rows[i].astype(np.float64).tolist()
        out[i] = kernel(xs, w_rows[i].tolist(), b_rows[i].tolist(), mean, denom)
    # back to x's layout
    shaped = out.reshape(tuple(a.shape[i] for i in order))
    # (np.ascontiguousarray would turn a 0-d result into shape (1,))
    return np.transpose(shaped, np.argsort(order)).copy(order="C")
