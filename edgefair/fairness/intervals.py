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

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import brentq
from scipy.special import ndtr, ndtri, stdtr, stdtrit
from scipy.stats import norm

Interval = tuple[float, float]

# Beyond this many standard errors a p-value underflows to 0 in double precision.
_Z_MAX = 40.0
# Most root-finding steps of p_invert (Illinois converges in about 10).
_ROOT_STEPS = 60


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


# -- vectorised forms --------------------------------------------------------------
# The same intervals on numpy arrays (one comparison per element), at quantile ``q``
# (a normal or t quantile, scalar or array). Counts may be fractional: the audit
# divides them by a design effect (effective sample sizes, Kish 1965).

Bounds = tuple[np.ndarray, np.ndarray]


def wilson_q(k: ArrayLike, n: ArrayLike, q: ArrayLike) -> Bounds:
    """Wilson interval of k/n at quantile q, elementwise (n > 0)."""
    k, n, q = (np.asarray(v, dtype=np.float64) for v in (k, n, q))
    p = k / n
    q2 = q * q
    denom = 1.0 + q2 / n
    centre = (p + q2 / (2.0 * n)) / denom
    half = (q / denom) * np.sqrt(np.maximum(p * (1.0 - p) / n + q2 / (4.0 * n * n), 0.0))
    return np.maximum(0.0, centre - half), np.minimum(1.0, centre + half)


def newcombe_q(k1: ArrayLike, n1: ArrayLike, k2: ArrayLike, n2: ArrayLike, q: ArrayLike) -> Bounds:
    """Newcombe (1998a) method 10 for k1/n1 - k2/n2, elementwise."""
    k1, n1, k2, n2 = (np.asarray(v, dtype=np.float64) for v in (k1, n1, k2, n2))
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson_q(k1, n1, q)
    l2, u2 = wilson_q(k2, n2, q)
    d = p1 - p2
    return d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def _paired_phi_v(e: np.ndarray, f: np.ndarray, g: np.ndarray, h: np.ndarray) -> np.ndarray:
    denom = (e + f) * (g + h) * (e + g) * (f + h)
    num = e * h - f * g
    num = np.where(num > 0, np.maximum(num - (e + f + g + h) / 2.0, 0.0), num)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, num / np.sqrt(np.where(denom > 0, denom, 1.0)), 0.0)


def newcombe_paired_q(e: ArrayLike, f: ArrayLike, g: ArrayLike, h: ArrayLike, q: ArrayLike) -> Bounds:
    """Newcombe (1998b) method 10 for paired (f - g)/n, elementwise (see newcombe_paired_z)."""
    e, f, g, h = (np.asarray(v, dtype=np.float64) for v in (e, f, g, h))
    return _paired_bounds(e, f, g, h, q)


def paired_table_q(cells: np.ndarray, q: ArrayLike) -> Bounds:
    """newcombe_paired_q of an (n, 4) array of tables (both, first only, second only, neither)."""
    cells = np.asarray(cells, dtype=np.float64)
    return _paired_bounds(cells[:, 0], cells[:, 1], cells[:, 2], cells[:, 3], q)


def _paired_bounds(e: np.ndarray, f: np.ndarray, g: np.ndarray, h: np.ndarray, q: ArrayLike) -> Bounds:
    n = e + f + g + h
    pa, pb = (e + f) / n, (e + g) / n
    la, ua = wilson_q(e + f, n, q)
    lb, ub = wilson_q(e + g, n, q)
    phi = _paired_phi_v(e, f, g, h)
    d = (f - g) / n
    dl, du, el, eu = pa - la, ua - pa, pb - lb, ub - pb
    lower = np.sqrt(np.maximum(dl * dl - 2.0 * phi * dl * eu + eu * eu, 0.0))
    upper = np.sqrt(np.maximum(du * du - 2.0 * phi * du * el + el * el, 0.0))
    return d - lower, d + upper


def mover_v(est1: ArrayLike, ci1: Bounds, est2: ArrayLike, ci2: Bounds) -> Bounds:
    """MOVER interval for est1 - est2 (Newcombe 2001), elementwise."""
    est1, est2 = np.asarray(est1, dtype=np.float64), np.asarray(est2, dtype=np.float64)
    d = est1 - est2
    return (
        d - np.sqrt((est1 - ci1[0]) ** 2 + (ci2[1] - est2) ** 2),
        d + np.sqrt((ci1[1] - est1) ** 2 + (est2 - ci2[0]) ** 2),
    )


def quantile(alpha: float, df: ArrayLike) -> np.ndarray:
    """Two-sided quantile at level 1 - alpha: Student t with ``df`` (inf = normal)."""
    df = np.asarray(df, dtype=np.float64)
    finite = np.isfinite(df)
    return np.where(finite, -stdtrit(np.where(finite, df, 1.0), alpha / 2.0), -ndtri(alpha / 2.0))


def p_two_sided(q: ArrayLike, df: ArrayLike) -> np.ndarray:
    """P(|T| > q) for Student t with ``df`` (inf = normal)."""
    q, df = np.asarray(q, dtype=np.float64), np.asarray(df, dtype=np.float64)
    finite = np.isfinite(df)
    return np.where(finite, 2.0 * stdtr(np.where(finite, df, 1.0), -q), 2.0 * ndtr(-q))


def p_invert(estimate: ArrayLike, interval_at: Callable[[np.ndarray], Bounds], df: ArrayLike) -> np.ndarray:
    """Two-sided p-values by inverting an interval family, elementwise.

    ``interval_at(q)`` gives the bounds at quantile array q (one per element); the
    p-value is P(|T_df| > q*) where q* is where the near bound reaches 0, so p < alpha
    exactly when the interval at ``quantile(alpha, df)`` excludes 0. The root is found
    by the Illinois variant of regula falsi on [0, 40] (the near bound is the estimate
    at q = 0 and moves monotonically towards and past 0). An estimate of 0 has p = 1.
    """
    est = np.atleast_1d(np.asarray(estimate, dtype=np.float64))
    sign = np.where(est > 0, 1.0, -1.0)

    def margin(q: np.ndarray) -> np.ndarray:
        low, high = interval_at(q)
        return np.where(est > 0, low, -high)

    a, b = np.zeros_like(est), np.full_like(est, _Z_MAX)
    fa, fb = sign * est, margin(b)
    beyond = fb > 0
    fb = np.where(beyond, -1.0, fb)  # dummy bracket where the interval excludes 0 even at 40
    side = np.zeros_like(est)
    for _ in range(_ROOT_STEPS):
        c = np.clip(b - fb * (b - a) / np.where(fb != fa, fb - fa, 1.0), np.minimum(a, b), np.maximum(a, b))
        fc = margin(c)
        left = fc > 0  # root between c and b
        a, fa = np.where(left, c, a), np.where(left, fc, fa)
        b, fb = np.where(left, b, c), np.where(left, fb, fc)
        # Illinois: halve the stale end's value when the same end moved twice
        fb = np.where(left & (side > 0), fb / 2.0, fb)
        fa = np.where(~left & (side < 0), fa / 2.0, fa)
        side = np.where(left, 1.0, -1.0)
        if float(np.max(np.abs(b - a), initial=0.0)) < 1e-10 or float(np.max(np.abs(fc), initial=0.0)) < 1e-13:
            break
    root = np.where(np.abs(margin(a)) < np.abs(margin(b)), a, b)
    p = np.minimum(1.0, p_two_sided(root, df))
    p = np.where(beyond, p_two_sided(np.full_like(est, _Z_MAX), df), p)
    return np.where(np.abs(est) < 1e-12, 1.0, p)
