r"""A framework's rounded (mean, variance) pair, carried as :class:`Moments`.

Most framework kernels do not keep :math:`M_2`: they round a mean and a variance,
e.g. :math:`\operatorname{fl}(S_2 \cdot \operatorname{fl}(1/n))`. The layers of
:mod:`varstats.norms` read the variance back as ``Moments.var(0)`` =
:math:`\operatorname{fl}(M_2 / n)`, so an emulation kernel returns the :math:`M_2`
whose quotient by :math:`n` rounds to the framework's variance bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from varstats.moments import Moments

__all__ = ["moments_from_mean_var"]

Array = npt.NDArray[Any]


def moments_from_mean_var(mean: Array, var: Array, n: int, /, *, acc: np.dtype[Any]) -> Moments:
    r""":class:`Moments` with ``mean`` and an :math:`M_2` for which ``var(0)`` returns ``var``.

    :math:`M_2` starts at :math:`\operatorname{fl}(n\,v)` and moves by up to two
    ulps to a value whose rounded quotient :math:`\operatorname{fl}(M_2/n)` equals
    :math:`v`. Such a value need not exist (the quotients of consecutive floats
    :math:`M_2` can be more than one ulp of :math:`v` apart when :math:`n\,v` lies
    just above a power of two); then :math:`\operatorname{fl}(n\,v)` is kept and
    ``var(0)`` is within one ulp of :math:`v`. Kernels that need the exact bits
    expose their ``(mean, var)`` pair directly.
    """
    acc = np.dtype(acc)
    v = np.asarray(var, dtype=acc)
    divisor = acc.type(n)
    with np.errstate(all="ignore"):
        m2 = np.asarray(v * divisor, dtype=acc)
        best = m2.copy()
        found = np.asarray(m2 / divisor == v)
        for step in (1, 2):
            for direction in (np.inf, -np.inf):
                cand = m2
                for _ in range(step):
                    cand = np.nextafter(cand, acc.type(direction))
                hit = ~found & (cand / divisor == v)
                best = np.where(hit, cand, best)
                found = found | hit
    return Moments(
        np.full(v.shape, n, dtype=np.int64), np.asarray(mean, dtype=acc), best.astype(acc)
    )
