"""Intervals and p-values against published worked examples; Holm and weighted Holm by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from edgefair.fairness.family import attribute_shares, comparison_weights, weighted_holm
from edgefair.fairness.holm import holm
from edgefair.fairness.intervals import (
    mover,
    mover_v,
    newcombe,
    newcombe_paired,
    newcombe_paired_q,
    newcombe_paired_z,
    newcombe_q,
    newcombe_z,
    p_from_interval,
    p_invert,
    p_normal,
    p_two_sided,
    quantile,
    wilson,
    wilson_q,
    wilson_z,
    z_for,
)

TOL = 1e-4  # published values are given to 4 decimals


def close(actual: tuple[float, float], expected: tuple[float, float]) -> bool:
    return abs(actual[0] - expected[0]) < TOL and abs(actual[1] - expected[1]) < TOL


# Newcombe R.G. (1998) "Two-sided confidence intervals for the single proportion:
# comparison of seven methods", Stat Med 17:857-872, Table I, method 3 (score/Wilson).
@pytest.mark.parametrize(
    ("k", "n", "expected"),
    [(81, 263, (0.2553, 0.3662)), (15, 148, (0.0624, 0.1605))],
)
def test_wilson_matches_newcombe_1998_single_proportion(k, n, expected):
    assert close(wilson(k, n), expected)


def test_wilson_edges():
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and 0.27 < hi < 0.28  # 0.2775 (Newcombe 1998, 0/10)
    lo, hi = wilson(10, 10)
    assert hi == 1.0 and 0.72 < lo < 0.73
    with pytest.raises(ValueError):
        wilson(0, 0)


# Newcombe R.G. (1998) "Interval estimation for the difference between independent
# proportions: comparison of eleven methods", Stat Med 17:873-890, Table II,
# method 10 (hybrid score, no continuity correction).
# Example (a): 56/70 - 48/80 = 0.2000 (not 0.1833), 95% CI 0.0524 to 0.3339.
@pytest.mark.parametrize(
    ("k1", "n1", "k2", "n2", "expected"),
    [(56, 70, 48, 80, (0.0524, 0.3339)), (9, 10, 3, 10, (0.1705, 0.8090))],
)
def test_newcombe_matches_newcombe_1998_table_ii(k1, n1, k2, n2, expected):
    assert close(newcombe(k1, n1, k2, n2), expected)


# Newcombe R.G. (1998) "Improved confidence intervals for the difference between
# binomial proportions based on paired data", Stat Med 17:2635-2650, method 10.
# Table (e, f, g, h): both, first only, second only, neither.
@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ((36, 12, 2, 0), (0.0569, 0.3404)),
        ((18, 12, 2, 18), (0.0562, 0.3290)),
        ((53, 0, 0, 1), (-0.0729, 0.0729)),
        ((0, 30, 0, 0), (0.8395, 1.0)),
    ],
)
def test_paired_matches_newcombe_1998_paired(table, expected):
    assert close(newcombe_paired(*table), expected)


# Newcombe R.G. (2001) "Estimating the difference between differences: measurement of
# additive scale interaction for proportions", Stat Med 20:2885-2893, sections 4.2-4.4:
# difference between two paired differences in independent groups (= our gap change).
@pytest.mark.parametrize(
    ("t1", "t2", "expected"),
    [
        ((294, 36, 59, 57), (209, 19, 32, 50), (-0.0721, 0.0529)),
        ((2, 12, 3, 17), (4, 1, 2, 25), (0.0430, 0.5269)),
        ((11, 6, 1, 3), (9, 4, 5, 1), (-0.0973, 0.6475)),
    ],
)
def test_mover_of_paired_matches_newcombe_2001(t1, t2, expected):
    d1 = (t1[1] - t1[2]) / sum(t1)
    d2 = (t2[1] - t2[2]) / sum(t2)
    assert close(mover(d1, newcombe_paired(*t1), d2, newcombe_paired(*t2)), expected)


def test_p_value_inverts_interval_newcombe_example():
    # 56/70 vs 48/80: the pooled two-proportion z test gives z = 2.650, p = 0.0081;
    # inverting the hybrid score interval gives nearly the same p.
    p = p_from_interval(0.2, lambda z: newcombe_z(56, 70, 48, 80, z))
    assert p == pytest.approx(0.0081, abs=0.0005)
    # and at that p the interval touches 0
    assert newcombe_z(56, 70, 48, 80, z_for(p))[0] == pytest.approx(0.0, abs=1e-7)


@settings(max_examples=150, deadline=None)
@given(
    n1=st.integers(1, 400),
    n2=st.integers(1, 400),
    f1=st.floats(0, 1),
    f2=st.floats(0, 1),
    alpha=st.sampled_from([0.001, 0.01, 0.05, 0.2]),
)
def test_p_below_alpha_iff_interval_excludes_zero(n1, n2, f1, f2, alpha):
    k1, k2 = round(f1 * n1), round(f2 * n2)
    est = k1 / n1 - k2 / n2
    lo, hi = newcombe(k1, n1, k2, n2, alpha=alpha)
    assert lo <= est <= hi
    p = p_from_interval(est, lambda z: newcombe_z(k1, n1, k2, n2, z))
    assert 0.0 <= p <= 1.0
    excludes = lo > 0 or hi < 0
    if abs(p - alpha) > 1e-6:  # away from the boundary the two must agree
        assert (p < alpha) == excludes


@settings(max_examples=100, deadline=None)
@given(cells=st.tuples(*[st.integers(0, 60)] * 4).filter(lambda t: sum(t) > 0))
def test_paired_interval_contains_estimate_and_p_consistent(cells):
    n = sum(cells)
    est = (cells[1] - cells[2]) / n
    lo, hi = newcombe_paired(*cells)
    assert -1.0 - 1e-12 <= lo <= est <= hi <= 1.0 + 1e-12
    p = p_from_interval(est, lambda z: newcombe_paired_z(*cells, z))
    if abs(p - 0.05) > 1e-6:
        assert (p < 0.05) == (lo > 0 or hi < 0)


def test_p_normal():
    assert p_normal(0.0, 0.0) == 1.0
    assert p_normal(0.1, 0.0) == 0.0
    assert p_normal(1.96, 1.0) == pytest.approx(0.05, abs=1e-4)
    assert p_normal(-0.3, 0.1) == pytest.approx(2 * norm.sf(3.0))


def test_holm_hand_example():
    # m = 4. Sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04,
    # raised to the running maximum 0.06). Back in input order:
    p = [0.01, 0.04, 0.03, 0.005]
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # at alpha = 0.05 only the two smallest are rejected (Bonferroni would reject only 0.005)
    assert [a < 0.05 for a in holm(p)] == [True, False, False, True]


def test_holm_caps_at_one_and_handles_ties_and_empty():
    assert holm([]) == []
    assert holm([0.5, 0.5]) == [1.0, 1.0]
    assert holm([0.02, 0.02, 0.9]) == pytest.approx([0.06, 0.06, 0.9])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=30))
def test_holm_properties(p):
    adj = holm(p)
    assert all(a >= x - 1e-15 and a <= 1.0 for a, x in zip(adj, p, strict=False))
    order = sorted(range(len(p)), key=lambda i: p[i])
    assert all(adj[order[i]] <= adj[order[i + 1]] for i in range(len(p) - 1))
    assert min(adj) == pytest.approx(min(1.0, len(p) * min(p)))


def test_z_for():
    assert z_for(0.05) == pytest.approx(1.959964, abs=1e-6)
    assert math.isclose(z_for(0.01), 2.575829, abs_tol=1e-6)


# -- vectorised forms, t quantiles, weighted Holm --------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    cells=st.lists(st.tuples(*[st.integers(0, 40)] * 4).filter(lambda t: sum(t) > 0), min_size=1, max_size=8),
    z=st.floats(0.5, 4.0),
)
def test_vectorised_intervals_equal_the_scalar_ones(cells, z):
    arr = np.array(cells, dtype=float)
    lo, hi = newcombe_paired_q(*arr.T, z)
    for i, c in enumerate(cells):
        assert (lo[i], hi[i]) == pytest.approx(newcombe_paired_z(*c, z), abs=1e-12)
    k1, n1 = arr[:, 0], arr[:, 0] + arr[:, 1] + 1
    k2, n2 = arr[:, 2], arr[:, 2] + arr[:, 3] + 1
    lo, hi = newcombe_q(k1, n1, k2, n2, z)
    for i in range(len(cells)):
        assert (lo[i], hi[i]) == pytest.approx(newcombe_z(k1[i], n1[i], k2[i], n2[i], z), abs=1e-12)
    wl, wh = wilson_q(k1, n1, z)
    assert (wl[0], wh[0]) == pytest.approx(wilson_z(k1[0], n1[0], z), abs=1e-12)
    e1 = (arr[:, 1] - arr[:, 2]) / arr.sum(1)
    ci = newcombe_paired_q(*arr.T, z)
    m = mover_v(e1, ci, e1[::-1], (ci[0][::-1], ci[1][::-1]))
    for i in range(len(cells)):
        j = len(cells) - 1 - i
        ref = mover(e1[i], (ci[0][i], ci[1][i]), e1[j], (ci[0][j], ci[1][j]))
        assert (m[0][i], m[1][i]) == pytest.approx(ref, abs=1e-12)


def test_p_invert_matches_the_scalar_inversion_and_its_interval():
    k1, n1, k2, n2 = np.array([56.0, 9, 30, 5]), np.array([70.0, 10, 60, 5]), np.array([48.0, 3, 30, 0]), np.array(
        [80.0, 10, 60, 7])
    est = k1 / n1 - k2 / n2
    p = p_invert(est, lambda q: newcombe_q(k1, n1, k2, n2, q), np.full(4, np.inf))
    for i in range(4):
        expected = p_from_interval(est[i], lambda z, i=i: newcombe_z(k1[i], n1[i], k2[i], n2[i], z))
        assert p[i] == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert p[2] == 1.0  # estimate 0
    # with t quantiles, the interval at quantile(p) touches 0
    df = np.array([8.0, 8.0, 8.0, 3.0])
    pt = p_invert(est, lambda q: newcombe_q(k1, n1, k2, n2, q), df)
    lo, _ = newcombe_q(k1, n1, k2, n2, quantile(float(pt[0]), df[0]))
    assert lo[0] == pytest.approx(0.0, abs=1e-7)
    assert (pt[[0, 1, 3]] > p[[0, 1, 3]]).all()  # t is wider than normal


def test_quantile_and_p_two_sided():
    assert quantile(0.05, np.inf) == pytest.approx(1.959964, abs=1e-6)
    assert quantile(0.05, 4.0) == pytest.approx(2.776445, abs=1e-6)  # t_{4, 0.975}
    assert p_two_sided(np.array([2.776445, 1.959964]), np.array([4.0, np.inf])) == pytest.approx([0.05, 0.05], abs=1e-6)


def test_weighted_holm_hand_example():
    # weights 0.5, 0.25, 0.25; p/w = 0.02, 0.04, 0.2 -> step 1: 0.02 * 1 = 0.02;
    # step 2: 0.04 * 0.5 = 0.02 -> running max 0.02; step 3: 0.2 * 0.25 = 0.05
    assert weighted_holm([0.01, 0.01, 0.05], [0.5, 0.25, 0.25]) == pytest.approx([0.02, 0.02, 0.05])
    assert weighted_holm([], []) == []
    with pytest.raises(ValueError, match="positive weights"):
        weighted_holm([0.1], [0.0])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=30))
def test_weighted_holm_with_equal_weights_is_holm(p):
    assert weighted_holm(p, [1.0] * len(p)) == pytest.approx(holm(p), abs=1e-12)


def test_attribute_shares():
    shares = attribute_shares({"gender": 1, "race": 3, "age": 10, "race×age": 15, "empty": 0}, {"race×age"})
    assert shares == pytest.approx({"gender": 0.8 / 3, "race": 0.8 / 3, "age": 0.8 / 3, "race×age": 0.2})
    assert attribute_shares({"gender": 1, "g×r": 0}, {"g×r"}) == {"gender": 1.0}  # nothing tested: no share
    w = comparison_weights(["gender", "race", "race", "race"], set())
    assert w == pytest.approx([0.5, 0.5 / 3, 0.5 / 3, 0.5 / 3])
