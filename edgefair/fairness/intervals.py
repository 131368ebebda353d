"""Score intervals for proportions and their differences, and p-values that match them.

Everything here is closed-form except :func:`p_from_interval`, which inverts an
interval family numerically so that a p-value and its interval never disagree:
``p < alpha`` exactly when the ``1 - alpha`` interval excludes 0.

References
----------
- Wilson (1927), the score interval for one proportion.
- Newcombe R.G. (1998a) "Interval estimation for the difference between independent
  proportions: comparison of eleven methods", Stat Med 17:873-890 -- method 10, the
  hybrid score interval.
- Newcombe R.G. (1998b) "Improved confidence intervals for the difference between
  binomial proportions based on paired data", Stat Med 17:2635-2650 -- method 10.
- Newcombe R.G. (2001) "Estimating the difference between differences", Stat Med
  20:2885-2893 -- combining two such intervals (the "MOVER" construction of
  Zou & Donner 2008).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from scipy.optimize import brentq
from scipy.stats import norm

Interval = tuple[float, float]

# Beyond this many standard errors a p-value underflows to 0 in double precision.
_Z_MAX = 40.0


def z_for(alpha: float) -> float:
    """Two-sided normal quantile: z such that P(|Z| > z) = alpha."""
    return float(norm.isf(alpha / 2.0))


def wilson_z(k: float, n: float, z: float) -> Interval:
    """Wilson score interval for k successes out of n at normal quantile z (n > 0)."""
    if n <= 0:
        raise ValueError(f"wilson interval needs n > 0, got n={n}")
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = (z / denom) * math.sqrt(max(p * (1.0 - p) / n + z2 / (4.0 * n * n), 0.0))
    return max(0.0, centre - half), min(1.0, centre + half)


def wilson(k: float, n: float, *, alpha: float = 0.05) -> Interval:
    """Wilson score interval for a proportion k/n, at level 1 - alpha."""
    return wilson_z(k, n, z_for(alpha))


def newcombe_z(k1: float, n1: float, k2: float, n2: float, z: float) -> Interval:
    """Newcombe (1998a) method 10 interval for p1 - p2 at normal quantile z."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson_z(k1, n1, z)
    l2, u2 = wilson_z(k2, n2, z)
    d = p1 - p2
    return (
        d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
        d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
    )


def newcombe(k1: float, n1: float, k2: float, n2: float, *, alpha: float = 0.05) -> Interval:
    """Hybrid score interval for the difference of two independent proportions k1/n1 - k2/n2."""
    return newcombe_z(k1, n1, k2, n2, z_for(alpha))


def _paired_phi(e: float, f: float, g: float, h: float) -> float:
    """Newcombe's (1998b) correlation estimate for a paired 2x2 table, with his
    shrinkage: when e*h > f*g the numerator is reduced by n/2 (not below 0)."""
    denom = (e + f) * (g + h) * (e + g) * (f + h)
    if denom == 0:
        return 0.0
    num = e * h - f * g
    if num > 0:
        num = max(num - (e + f + g + h) / 2.0, 0.0)
    return num / math.sqrt(denom)


def newcombe_paired_z(e: float, f: float, g: float, h: float, z: float) -> Interval:
    """Newcombe (1998b) method 10 for paired proportions at normal quantile z.

    The table: e = both successes, f = first only, g = second only, h = neither;
    the estimate is (f - g)/n = p_first - p_second.
    """
    n = e + f + g + h
    pa, pb = (e + f) / n, (e + g) / n
    la, ua = wilson_z(e + f, n, z)
    lb, ub = wilson_z(e + g, n, z)
    phi = _paired_phi(e, f, g, h)
    d = (f - g) / n
    dl, du = pa - la, ua - pa
    el, eu = pb - lb, ub - pb
    lower = math.sqrt(max(dl * dl - 2.0 * phi * dl * eu + eu * eu, 0.0))
    upper = math.sqrt(max(du * du - 2.0 * phi * du * el + el * el, 0.0))
    return d - lower, d + upper


def newcombe_paired(e: float, f: float, g: float, h: float, *, alpha: float = 0.05) -> Interval:
    """Interval for the difference of two paired proportions (table e, f, g, h; see above)."""
    return newcombe_paired_z(e, f, g, h, z_for(alpha))


def mover(est1: float, ci1: Interval, est2: float, ci2: Interval) -> Interval:
    """Interval for est1 - est2 from intervals of two independent estimates
    (Newcombe 2001 / Zou & Donner 2008): each side adds the relevant half-widths
    in quadrature, so asymmetric score intervals stay asymmetric."""
    d = est1 - est2
    return (
        d - math.sqrt((est1 - ci1[0]) ** 2 + (ci2[1] - est2) ** 2),
        d + math.sqrt((ci1[1] - est1) ** 2 + (est2 - ci2[0]) ** 2),
    )


def p_from_interval(estimate: float, interval_at: Callable[[float], Interval]) -> float:
    """Two-sided p-value of H0: difference = 0 by inverting an interval family.

    ``interval_at(z)`` gives the interval at normal quantile z; it must collapse to the
    estimate at z = 0 and widen as z grows (true of every interval in this module).
    The p-value is 2*(1 - Phi(z*)) where z* is the quantile at which the interval's
    near bound reaches 0, so ``p < alpha`` exactly when the 1 - alpha interval
    excludes 0.
    """
    if abs(estimate) < 1e-12:
        return 1.0

    def margin(z: float) -> float:
        lo, hi = interval_at(z)
        return lo if estimate > 0 else -hi

    if margin(_Z_MAX) > 0:
        return float(2.0 * norm.sf(_Z_MAX))
    z_star = brentq(margin, 0.0, _Z_MAX, xtol=1e-9)
    return float(min(1.0, 2.0 * norm.sf(z_star)))


def normal_interval(estimate: float, se: float, *, alpha: float = 0.05) -> Interval:
    """estimate +- z*se (used with a bootstrap standard error)."""
    z = z_for(alpha)
    return estimate - z * se, estimate + z * se


def p_normal(estimate: float, se: float) -> float:
    """Two-sided p-value of H0: 0 for a normal estimate with standard error se.

    A zero se (every bootstrap replicate identical) gives 1 when the estimate is 0
    and 0 otherwise.
    """
    if se <= 0 or not math.isfinite(se):
        return 1.0 if abs(estimate) < 1e-12 else 0.0
    return float(2.0 * norm.sf(abs(estimate) / se))
