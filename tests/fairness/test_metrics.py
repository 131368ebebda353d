"""Per-group macro-F1, recall, churn, demographic parity, equalised odds; CEV/SDE intervals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from edgefair.fairness import audit
from edgefair.fairness.compression import error_shift
from tests.fairness.synth import CLASSES, groups, labels, perturb, predict


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(30)
    g = groups({"a": 400, "b": 300})
    subj = np.array([f"s{i // 5}" for i in range(g.size)], dtype=object)
    yt = labels(g.size, rng)
    ref = predict(yt, g, {"a": 0.85, "b": 0.8}, rng)
    art = perturb(ref, 0.1, rng)
    r = audit(y_true=yt, y_pred=art, reference_pred=ref, sensitive={"g": g}, class_names=CLASSES, subjects=subj,
              n_boot=300)
    return g, yt, ref, art, r


def test_group_macro_f1_and_recall_with_reference_and_change(pair):
    g, yt, ref, art, r = pair
    for label in ("a", "b"):
        m = g == label
        gm = r.attribute("g").group(label).metrics
        f1 = f1_score(yt[m], art[m], average="macro")
        f1_ref = f1_score(yt[m], ref[m], average="macro")
        assert gm.macro_f1.value == pytest.approx(f1) and gm.macro_f1.reference == pytest.approx(f1_ref)
        assert gm.macro_f1.change == pytest.approx(f1 - f1_ref)
        lo, hi = gm.macro_f1.ci
        assert lo < f1 < hi and gm.macro_f1.change_ci[0] < gm.macro_f1.change < gm.macro_f1.change_ci[1]
        c0 = yt[m] == 0
        assert gm.recall["angry"].value == pytest.approx((art[m][c0] == 0).mean())
        assert gm.recall["angry"].reference == pytest.approx((ref[m][c0] == 0).mean())


def test_churn_is_the_share_of_changed_predictions(pair):
    g, yt, ref, art, r = pair
    for label in ("a", "b"):
        churn = r.attribute("g").group(label).metrics.churn
        m = g == label
        assert churn.value == pytest.approx((art[m] != ref[m]).mean())
        assert churn.ci[0] < churn.value < churn.ci[1]
    assert r.reference.churn.value == pytest.approx((art != ref).mean()) == pytest.approx(1 - r.reference.agreement)


def test_parity_metrics_with_interval_reference_and_change(pair):
    _, _, _, _, r = pair
    a = r.attribute("g")
    dp, eo = a.metrics.demographic_parity, a.metrics.equalized_odds
    assert dp.value == pytest.approx(a.demographic_parity.max)
    assert eo.value == pytest.approx(a.equalized_odds)
    for m in (dp, eo):
        # basic bootstrap intervals of a spread: bias removed, never below 0
        assert 0.0 <= m.ci[0] <= m.ci[1] and 0.0 <= m.reference_ci[0] <= m.reference_ci[1]
        assert m.reference is not None and m.change == pytest.approx(m.value - m.reference)
        assert m.change_ci[0] <= m.change_ci[1]


def test_no_reference_means_no_reference_values_and_no_churn():
    rng = np.random.default_rng(31)
    g = groups({"a": 100, "b": 100})
    yt = labels(g.size, rng)
    r = audit(y_true=yt, y_pred=predict(yt, g, {"a": 0.8, "b": 0.8}, rng), sensitive={"g": g}, class_names=CLASSES,
              n_boot=100)
    gm = r.attribute("g").groups[0].metrics
    assert gm.churn is None and gm.macro_f1.reference is None and gm.macro_f1.change is None
    assert r.attribute("g").metrics.demographic_parity.reference is None


def test_cev_sde_interval_separates_noise_from_a_real_shift():
    rng = np.random.default_rng(32)
    yt = labels(3000, rng)
    g = np.array(["x"] * 3000, dtype=object)
    ref = predict(yt, g, {"x": 0.8}, rng)
    same_ish = perturb(ref, 0.01, rng)
    shifted = ref.copy()
    hit = (yt == 2) & (rng.random(3000) < 0.5)  # class 2 loses half its recall: FNR up, others' FPR up
    shifted[hit] = 3
    kw = dict(n_boot=300, rng=np.random.default_rng(0), alpha=0.05)
    small = error_shift(yt, [ref], [same_ish], CLASSES, **kw)
    big = error_shift(yt, [ref], [shifted], CLASSES, **kw)
    print(small.cev, small.cev_ci, small.cev_noise, small.cev_p, big.cev, big.cev_ci, big.cev_noise, big.cev_p)
    assert small.cev_p > 0.05 and small.cev < small.cev_noise  # within noise
    assert big.cev_p < 0.01 and big.cev > 10 * big.cev_noise and big.sde_p < 0.01
    assert big.cev_ci[0] > small.cev_ci[1] and big.sde_ci[0] > small.sde_ci[1]
    assert small.n_boot_valid == 300
    same = error_shift(yt, [ref], [ref.copy()], CLASSES, **kw)
    assert same.cev == 0 and same.cev_p == 1.0  # identical models: nothing beyond noise
    assert error_shift(yt, [ref], [same_ish], CLASSES).cev_ci is None  # no bootstrap without n_boot
