"""tanh and its slope from one exponential an entry, for the truth's training loop in longdouble.

NumPy has no vector loop for ``longdouble``: ``np.tanh`` and ``np.cosh`` each call the C library once an entry,
and the loop needs both, the output and the slope sech^2 z. Both follow from one
exponential of -2|z|: with p = e^{-2|z|} and m = 1 - p,

    tanh |z| = m / (1 + p),        sech^2 z = 4 p / (1 + p)^2,

where p and m are each taken from whichever of ``expm1`` and ``exp`` gives it without cancelling: up to
|z| = ln 2 / 2 (p >= 1/2), m = -expm1(-2|z|) and p = 1 + that; above it (p < 1/2), p = exp(-2|z|) and m = 1 - p.
After the exponential come only sums that cannot cancel (1 + p, and 1 - p where p < 1/2), products and
quotients, so each result stays within a few longdouble ulps of the exact value, relatively
(tests/test_kernels.py measures it against mpmath), at every |z|, saturated or not; overflow cannot happen (p <= 1), and p underflows to 0 only where sech^2 does.

The oracle's other paths, and with them the complex-step check of its reverse mode, keep the C library's own
functions, so this formula is never checked against itself.
"""
from __future__ import annotations

import numpy as np

HALF_LN2 = np.log(np.longdouble(2)) / 2  # |z| where e^{-2|z|} = 1/2: the switch from expm1 to exp
FUSED_MIN = 4096  # entries from which the loop uses tanh_and_slope (smaller layers keep NumPy's calls: at a few
# entries the extra passes cost more than the call they save, and the default run's numbers stay as they were)


def tanh_and_slope(z: np.ndarray, out: np.ndarray, slope: np.ndarray) -> None:
    """Write tanh z into ``out`` and sech^2 z = d tanh / dz into ``slope`` (real arrays of z's shape and dtype)."""
    minus_2a = np.abs(z)
    minus_2a *= -2  # exact: a power of two
    near = minus_2a >= -2 * HALF_LN2
    far = ~near
    p, m = np.empty_like(z), np.empty_like(z)
    with np.errstate(under="ignore"):
        np.expm1(minus_2a, out=m, where=near)  # u = p - 1, in (-1/2, 0]
        np.exp(minus_2a, out=p, where=far)
    np.add(m, 1, out=p, where=near)
    np.negative(m, out=m, where=near)
    np.subtract(1, p, out=m, where=far)
    q = np.add(p, 1, out=minus_2a)  # 1 + p, in (1, 2]
    np.divide(m, q, out=out)
    np.copysign(out, z, out=out)  # tanh is odd (and keeps -0 and NaN's sign)
    np.multiply(q, q, out=q)
    np.multiply(p, 4, out=p)
    np.divide(p, q, out=slope)
