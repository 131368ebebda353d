"""Design effects, and that an audit's randomness is keyed by name, never by position."""

from __future__ import annotations

import numpy as np
import pytest

from edgefair.fairness import audit
from edgefair.fairness.clusters import cluster_layout, design_effect
from tests.fairness.synth import CLASSES, groups, labels, perturb, predict


def test_independent_images_have_design_effect_one():
    codes = np.repeat([0, 1], 50)
    layout = cluster_layout(codes, np.arange(100), 2)
    y = np.random.default_rng(0).random(100) < 0.7
    assert design_effect(layout, y).tolist() == [1.0, 1.0]
    assert layout.subjects.tolist() == [50, 50] and layout.mean_size.tolist() == [1.0, 1.0]


def test_identical_images_of_a_subject_have_design_effect_m():
    # every subject's 8 images agree: rho = 1, deff = m = 8
    rng = np.random.default_rng(1)
    subj = np.repeat(np.arange(60), 8)
    codes = (subj >= 30).astype(np.int64)
    y = np.repeat(rng.random(60) < 0.6, 8)
    deff = design_effect(cluster_layout(codes, subj, 2), y)
    assert deff == pytest.approx([8.0, 8.0])


def test_design_effect_recovers_a_random_intercept():
    # beta-binomial subjects: rho = 1 / (a + b + 1) = 0.2 -> deff = 1 + 9 * 0.2 = 2.8
    rng = np.random.default_rng(2)
    subj = np.repeat(np.arange(2000), 10)
    p = rng.beta(2.0, 2.0, 2000)[subj]
    y = rng.random(subj.size) < p
    deff = design_effect(cluster_layout(np.zeros(subj.size, dtype=np.int64), subj, 1), y)
    assert deff[0] == pytest.approx(2.8, abs=0.15)


def test_a_group_more_clustered_than_the_rest_keeps_its_own_design_effect():
    rng = np.random.default_rng(3)
    subj = np.repeat(np.arange(80), 10)
    codes = (subj >= 40).astype(np.int64)
    p = np.where(np.arange(80) >= 40, rng.choice([0.05, 0.95], 80), 0.7)[subj]  # group 1: all-or-nothing subjects
    y = rng.random(subj.size) < p
    deff = design_effect(cluster_layout(codes, subj, 2), y)
    assert deff[1] > 6 and deff[1] > deff[0]


def _data(seed: int = 4):
    rng = np.random.default_rng(seed)
    g = groups({"f": 300, "m": 300})
    race = np.array(["a", "b", "c"], dtype=object)[rng.integers(0, 3, g.size)]
    subj = np.array([f"s{i // 6}" for i in range(g.size)], dtype=object)
    yt = labels(g.size, rng)
    ref = predict(yt, g, {"f": 0.8, "m": 0.75}, rng)
    art = perturb(ref, 0.08, rng)
    return g, race, subj, yt, ref, art


def _by_id(result):
    return {c.id: c for c in result.comparisons}


def test_identical_predictions_get_identical_p_values_and_intervals():
    g, race, subj, yt, ref, art = _data()
    kw = dict(y_true=yt, reference_pred=ref, class_names=CLASSES, subjects=subj, n_boot=200)
    a = audit(y_pred=art, sensitive={"gender": g, "race": race}, **kw)
    b = audit(y_pred=art.copy(), sensitive={"gender": g, "race": race}, **kw)
    assert a.to_dict() == b.to_dict()


def test_attribute_order_and_other_attributes_do_not_move_an_attribute():
    g, race, subj, yt, ref, art = _data()
    kw = dict(y_true=yt, y_pred=art, reference_pred=ref, class_names=CLASSES, subjects=subj, n_boot=200)
    one = audit(sensitive={"gender": g}, **kw)
    both = audit(sensitive={"race": race, "gender": g}, **kw)
    x, y = _by_id(one), _by_id(both)
    for cid, c in x.items():
        if c.attribute == "gender":
            assert (y[cid].p_value, y[cid].ci) == (c.p_value, c.ci)  # raw p and interval: only the data
    ga, gb = one.attribute("gender"), both.attribute("gender")
    assert ga.metrics == gb.metrics  # the bootstrap stream is keyed by the attribute's name
    assert [gr.metrics for gr in ga.groups] == [gr.metrics for gr in gb.groups]
    # the family adjustment does depend on the family (gender now shares alpha with race)
    gap = next(c for c in one.family("verdict"))
    assert y[gap.id].p_adjusted >= gap.p_adjusted


def test_seed_moves_only_the_bootstrap():
    g, race, subj, yt, ref, art = _data()
    kw = dict(y_true=yt, y_pred=art, reference_pred=ref, class_names=CLASSES, subjects=subj, n_boot=200,
              sensitive={"gender": g})
    a, b = audit(**kw, seed=0), audit(**kw, seed=1)
    assert [(c.p_value, c.ci) for c in a.comparisons] == [(c.p_value, c.ci) for c in b.comparisons]
    assert a.verdict == b.verdict
    assert a.attribute("gender").groups[0].metrics.macro_f1.ci != b.attribute("gender").groups[0].metrics.macro_f1.ci
