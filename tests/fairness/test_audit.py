"""audit(): per-group metrics, power, false alarms, verdicts, subject-aware intervals."""

from __future__ import annotations

import os

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score

from edgefair.fairness import VerdictThresholds, audit
from edgefair.fairness.bootstrap import stratified_cluster_bootstrap
from tests.fairness.synth import CLASSES, groups, labels, perturb, predict

TONE = {"light": 700, "dark": 300}


def _planted(seed: int = 0, dark: float = 0.70, light: float = 0.90):
    rng = np.random.default_rng(seed)
    g = groups(TONE)
    yt = labels(g.size, rng)
    return rng, g, yt, predict(yt, g, {"light": light, "dark": dark}, rng, exact=True)


def test_group_metrics_match_scikit_learn():
    rng = np.random.default_rng(3)
    g = groups({"a": 150, "b": 90})
    yt = labels(g.size, rng)
    yp = predict(yt, g, {"a": 0.8, "b": 0.6}, rng)
    r = audit(y_true=yt, y_pred=yp, sensitive={"grp": g}, class_names=CLASSES)
    for label in ("a", "b"):
        m = g == label
        gr = r.attribute("grp").group(label)
        assert gr.n == m.sum()
        assert gr.accuracy == pytest.approx((yt[m] == yp[m]).mean())
        assert gr.macro_f1 == pytest.approx(f1_score(yt[m], yp[m], average="macro"))
        with pytest.warns(UserWarning) if set(yp[m]) - set(yt[m]) else _nothing():
            assert gr.balanced_accuracy == pytest.approx(balanced_accuracy_score(yt[m], yp[m]))
        rec = recall_score(yt[m], yp[m], average=None, labels=range(len(CLASSES)), zero_division=0)
        assert [gr.recall[c] for c in CLASSES] == pytest.approx(list(rec))
        lo, hi = gr.accuracy_ci
        assert lo < gr.accuracy < hi
    assert r.accuracy == pytest.approx((yt == yp).mean())


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_planted_gap_is_flagged_with_interval_excluding_zero():
    # dark 0.70 (n=300) vs light 0.90 (n=700), exactly
    _, g, yt, yp = _planted()
    r = audit(y_true=yt, y_pred=yp, sensitive={"skin_tone": g}, class_names=CLASSES)
    gap = r.attribute("skin_tone").max_min_gap
    assert (gap.group, gap.other) == ("light", "dark")
    assert gap.estimate == pytest.approx(0.20)
    assert gap.ci[0] > 0.0 and gap.ci[1] < 0.30
    assert gap.significant and gap.p_adjusted < 1e-6 and gap.family == "state"
    assert gap.method == "newcombe"
    print(f"planted gap: {gap.estimate:.3f} CI {gap.ci[0]:.3f}..{gap.ci[1]:.3f} adjusted p={gap.p_adjusted:.2g}")


def test_power_over_seeds_with_random_predictions():
    hits = 0
    for seed in range(10):
        rng = np.random.default_rng(1000 + seed)
        g = groups({"light": 500, "dark": 200})
        yt = labels(g.size, rng)
        yp = predict(yt, g, {"light": 0.9, "dark": 0.7}, rng)
        gap = audit(y_true=yt, y_pred=yp, sensitive={"skin_tone": g}, class_names=CLASSES).attribute(
            "skin_tone"
        ).max_min_gap
        hits += bool(gap.significant and gap.ci[0] > 0)
    assert hits == 10


# Each audit runs fairlearn's MetricFrame (~0.1 s for 1000 rows), so 100 seeds keep this
# test under 10 s; EDGEFAIR_FALSE_ALARM_SEEDS=1000 measures the rate more precisely.
N_FALSE_ALARM_SEEDS = int(os.environ.get("EDGEFAIR_FALSE_ALARM_SEEDS", "100"))


def test_false_alarm_rate_without_true_gap():
    """No true gap (every group 0.8 accurate), realistic sizes 700/200/100: the share of
    audits claiming a significant gap in the state family (3 pairs, weighted Holm) must
    stay near alpha."""
    sizes = {"light": 700, "medium": 200, "dark": 100}
    g = groups(sizes)
    alarms = 0
    for seed in range(N_FALSE_ALARM_SEEDS):
        rng = np.random.default_rng(seed)
        yt = labels(g.size, rng)
        yp = predict(yt, g, dict.fromkeys(sizes, 0.8), rng)
        r = audit(y_true=yt, y_pred=yp, sensitive={"skin_tone": g}, class_names=CLASSES, n_boot=100)
        alarms += any(c.significant for c in r.family("state"))
    rate = alarms / N_FALSE_ALARM_SEEDS
    print(f"false-alarm rate (Newcombe, weighted Holm, 3 pairs): {rate:.3f} over {N_FALSE_ALARM_SEEDS} seeds")
    assert rate <= 0.10


def test_small_group_is_insufficient_evidence_never_fair():
    rng = np.random.default_rng(5)
    g = groups({"a": 400, "b": 300, "tiny": 12})
    yt = labels(g.size, rng)
    yp = predict(yt, g, {"a": 0.85, "b": 0.85, "tiny": 0.2}, rng)
    r = audit(y_true=yt, y_pred=yp, sensitive={"age": g}, class_names=CLASSES, reference_pred=yp)
    attr = r.attribute("age")
    assert attr.insufficient_groups == ["tiny"]
    assert not attr.group("tiny").tested and attr.group("tiny").untested_reason == "n=12 < min_n=30"
    assert r.verdict.label == "insufficient-evidence"
    assert "insufficient-evidence: age: untested group(s) 'tiny' (n=12 < min_n=30)" in r.verdict.reasons
    involving = [c for c in r.comparisons if "tiny" in (c.group, c.other)]
    assert involving and all(c.p_value is None and c.significant is None for c in involving)
    assert all(c.note.startswith("insufficient evidence: 'tiny' has n=12 < min_n=30") for c in involving)
    # a huge gap to 'tiny' is reported but never claimed; max-min uses groups with n >= min_n
    assert {attr.max_min_gap.group, attr.max_min_gap.other} == {"a", "b"}
    # demographic parity / equalised odds ignore 'tiny'
    assert attr.equalized_odds is not None and attr.equalized_odds < 0.5
    # and so does the largest gap (it used to fall back to untested groups)
    assert {r.largest_gap.high, r.largest_gap.low} == {"a", "b"}


def test_min_n_is_configurable():
    rng = np.random.default_rng(5)
    g = groups({"a": 400, "tiny": 12})
    yt = labels(g.size, rng)
    yp = predict(yt, g, {"a": 0.85, "tiny": 0.85}, rng)
    r = audit(y_true=yt, y_pred=yp, sensitive={"age": g}, class_names=CLASSES, min_n=10)
    assert r.attribute("age").insufficient_groups == [] and r.verdict.flags == ["reference"]


def test_gap_widened_verdict():
    rng, g, yt, yp = _planted(seed=1, dark=0.72, light=0.90)
    ref = predict(yt, g, {"light": 0.90, "dark": 0.89}, rng, exact=True)
    r = audit(y_true=yt, y_pred=yp, sensitive={"skin_tone": g}, class_names=CLASSES, reference_pred=ref)
    assert r.verdict.label == "gap-widened"
    assert "gap-widened" in r.verdict.flags and "accuracy-drop" in r.verdict.flags
    reason = next(x for x in r.verdict.reasons if x.startswith("gap-widened"))
    assert reason.startswith("gap-widened: skin_tone: gap light - dark grew from 1.0 to 18.0 points")
    gc = r.attribute("skin_tone").group("dark").gap_change
    assert gc.kind == "gap-change" and gc.significant and gc.ci[0] > 0
    assert gc.estimate == pytest.approx(0.17)
    assert r.attribute("skin_tone").group("dark").accuracy_change.estimate == pytest.approx(-0.17)


def test_gap_widening_threshold_in_points():
    # the gap grows by about 5 points with n large enough to be significant
    rng = np.random.default_rng(2)
    g = groups({"light": 4000, "dark": 4000})
    yt = labels(g.size, rng)
    ref = predict(yt, g, {"light": 0.90, "dark": 0.90}, rng, exact=True)
    art = predict(yt, g, {"light": 0.90, "dark": 0.85}, rng, exact=True)
    kwargs = dict(y_true=yt, y_pred=art, sensitive={"skin_tone": g}, class_names=CLASSES, reference_pred=ref)
    assert audit(**kwargs).verdict.flags[0] == "gap-widened"
    strict = audit(**kwargs, thresholds=VerdictThresholds(gap_widening_points=6.0, min_relative_accuracy=0.9))
    assert strict.verdict.label == "pass"


def test_accuracy_drop_without_gap_change():
    rng = np.random.default_rng(4)
    g = groups({"f": 600, "m": 600})
    yt = labels(g.size, rng)
    ref = predict(yt, g, {"f": 0.90, "m": 0.90}, rng, exact=True)
    art = predict(yt, g, {"f": 0.86, "m": 0.86}, rng, exact=True)
    r = audit(y_true=yt, y_pred=art, sensitive={"gender": g}, class_names=CLASSES, reference_pred=ref)
    assert r.verdict.label == "accuracy-drop" and r.verdict.flags == ["accuracy-drop"]
    assert r.verdict.reasons[0] == "accuracy-drop: accuracy 0.8600 < 0.99 x reference 0.9000 = 0.8910"
    assert r.reference.relative_accuracy == pytest.approx(0.86 / 0.90)


def test_pass_when_compression_changes_little():
    rng = np.random.default_rng(6)
    g = groups({"f": 500, "m": 450})
    yt = labels(g.size, rng)
    ref = predict(yt, g, {"f": 0.85, "m": 0.83}, rng)
    art = perturb(ref, 0.005, rng)  # ~0.4 points lost: under the 1 % relative gate
    r = audit(y_true=yt, y_pred=art, sensitive={"gender": g}, class_names=CLASSES, reference_pred=ref)
    assert r.verdict.label == "pass" and r.verdict.flags == ["pass"]
    assert r.verdict.reasons[0].startswith("pass: no gap between two tested groups grew by >= 2 points")
    assert r.verdict.reasons[0].endswith("not that the model is fair: see the absolute state")
    assert r.reference.agreement == pytest.approx(0.995, abs=0.002)
    assert r.reference.cie.n == int((art != ref).sum())


def test_no_reference_is_the_reference_and_states_its_gap():
    _, g, yt, yp = _planted()
    r = audit(y_true=yt, y_pred=yp, sensitive={"skin_tone": g}, class_names=CLASSES)
    assert r.verdict.label == "reference" and r.verdict.flags == ["reference"]
    assert r.verdict.reasons[0].startswith("reference: no reference_pred, so no compression effect to judge")
    assert r.reference is None
    (gap,) = r.state.reference_gaps  # its own 20-point gap is the pre-existing gap
    assert (gap.group, gap.other, gap.kind) == ("light", "dark", "pair")
    assert r.state.statements[0].startswith(
        "reference has 1 significant pre-existing gap(s): skin_tone: light - dark 20.0"
    )


def test_verdict_family_is_the_gap_changes_only():
    rng = np.random.default_rng(8)
    g = groups({"a": 300, "b": 300, "c": 300})
    s = np.array(["x", "y"], dtype=object)[rng.integers(0, 2, g.size)]
    yt = labels(g.size, rng)
    ref = predict(yt, g, {"a": 0.8, "b": 0.8, "c": 0.8}, rng)
    art = perturb(ref, 0.05, rng)
    r = audit(
        y_true=yt, y_pred=art, sensitive={"g": g, "s": s}, class_names=CLASSES, reference_pred=ref, intersections=True,
        n_boot=100,
    )
    verdict = r.family("verdict")
    assert {c.kind for c in verdict} == {"gap-change"}
    # g: 3 pairs; s: 1; g×s (6 groups): 15
    assert r.settings.n_verdict_tests == len(verdict) == 3 + 1 + 15
    assert {c.kind for c in r.comparisons} == {"pair", "vs-rest", "accuracy-change", "gap-change", "reference-gap"}
    assert {c.family for c in r.comparisons if c.kind in ("pair", "vs-rest", "accuracy-change")} == {
        "state", "descriptive"}
    # weights: g and s share 80 % of alpha, g×s 20 %; inside an attribute equal. The
    # smallest p/w is adjusted to p/w (all weight remaining).
    w = {"g": 0.4 / 3, "s": 0.4, "g×s": 0.2 / 15}
    first = min(verdict, key=lambda c: c.p_value / w[c.attribute])
    assert first.p_adjusted == pytest.approx(min(1.0, first.p_value / w[first.attribute]))
    assert [a.name for a in r.attributes] == ["g", "s", "g×s"]
    assert r.attribute("g×s").members == ("g", "s")
    assert {gr.group for gr in r.attribute("g×s").groups} == {f"{a}×{b}" for a in "abc" for b in "xy"}


def test_adding_attributes_does_not_dilute_the_gender_test():
    """The gender gap change keeps its raw p-value and gets at worst 1/3 of alpha with two
    more attributes (not 1/14 as a flat Holm over 14 gap changes)."""
    rng = np.random.default_rng(21)
    g = groups({"f": 700, "m": 700})
    race = np.array(["r1", "r2", "r3"], dtype=object)[rng.integers(0, 3, g.size)]
    age = np.array(list("12345"), dtype=object)[rng.integers(0, 5, g.size)]
    yt = labels(g.size, rng)
    ref = predict(yt, g, {"f": 0.85, "m": 0.85}, rng, exact=True)
    art = predict(yt, g, {"f": 0.85, "m": 0.79}, rng, exact=True)
    kw = dict(y_true=yt, y_pred=art, reference_pred=ref, class_names=CLASSES, n_boot=100)
    alone = audit(sensitive={"gender": g}, **kw)
    three = audit(sensitive={"gender": g, "race": race, "age": age}, **kw)
    (c1,) = [c for c in alone.family("verdict")]
    c3 = next(c for c in three.family("verdict") if c.attribute == "gender")
    assert c1.p_value == c3.p_value and c1.p_adjusted == c1.p_value
    assert c3.p_adjusted <= 3 * c3.p_value + 1e-12


def test_parity_by_hand():
    # group u: 40 samples, true 0 x20, 1 x20; predicted 0 for 30 (all true 0 and 10 of true 1)
    # group v: 40 samples, true 0 x20, 1 x20; predicted 0 for 20 (exactly the true 0s)
    yt = np.array([0] * 20 + [1] * 20 + [0] * 20 + [1] * 20)
    yp = np.array([0] * 20 + [0] * 10 + [1] * 10 + [0] * 20 + [1] * 20)
    g = groups({"u": 40, "v": 40})
    a = audit(y_true=yt, y_pred=yp, sensitive={"g": g}, class_names=["neg", "pos"]).attribute("g")
    # selection rate of class 0: u 30/40 = 0.75, v 0.5 -> 0.25; class 1 likewise
    assert a.demographic_parity.per_class == pytest.approx({"neg": 0.25, "pos": 0.25})
    # TPR of class 1 (recall): u 10/20 = 0.5, v 1.0 -> 0.5; FPR of class 0 likewise 0.5
    assert a.equalized_odds_tpr.per_class == pytest.approx({"neg": 0.0, "pos": 0.5})
    assert a.equalized_odds_fpr.per_class == pytest.approx({"neg": 0.5, "pos": 0.0})
    assert a.equalized_odds == pytest.approx(0.5)
    assert a.group("u").fpr == pytest.approx({"neg": 0.5, "pos": 0.0})


# -- subject ids: design effect and t quantiles -----------------------------------------


def _with_subjects(seed: int, accuracy: dict[str, float], per_subject: int = 4, spread: float = 0.1):
    """Groups of subjects with per_subject images each; each subject has its own
    accuracy around the group's (clustered errors)."""
    rng = np.random.default_rng(seed)
    g = groups({"light": 600, "dark": 240})
    subj = np.array([f"{lab}{i // per_subject}" for i, lab in enumerate(g)], dtype=object)
    yt = labels(g.size, rng)
    subj_ids, inverse = np.unique(subj, return_inverse=True)
    base = np.array([accuracy[s.rstrip("0123456789")] for s in subj_ids])
    p = np.clip(base + rng.uniform(-spread, spread, subj_ids.size), 0, 1)[inverse]
    correct = rng.random(g.size) < p
    yp = np.where(correct, yt, (yt + rng.integers(1, len(CLASSES), g.size)) % len(CLASSES))
    return g, subj, yt, yp


def test_bootstrap_keeps_every_group_size_fixed():
    # 3 subjects x 2 images in group 0, 2 subjects x 3 images in group 1
    codes = np.array([0] * 6 + [1] * 6)
    subj = np.array([0, 0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 4])
    ok = np.array([1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 0, 0], bool)
    reps = stratified_cluster_bootstrap(codes, subj, {"art": ok}, n_groups=2, n_boot=500, rng=np.random.default_rng(0))
    assert (reps.total == 6).all()  # stratified: group sizes never vary
    assert set(np.unique(reps.correct["art"][:, 1])) <= {0.0, 3.0, 6.0}  # whole subjects move together
    assert reps.n_clusters.tolist() == [3, 2]


def test_subject_ids_flag_planted_gap_with_t_quantiles():
    g, subj, yt, yp = _with_subjects(0, {"light": 0.9, "dark": 0.7})
    kw = dict(y_true=yt, y_pred=yp, sensitive={"skin_tone": g}, class_names=CLASSES, subjects=subj, n_boot=200)
    r = audit(**kw)
    gap = r.attribute("skin_tone").max_min_gap
    assert gap.method == "newcombe" and gap.df == 150 + 60 - 2 and len(gap.design_effect) == 2
    assert "design effect" in r.settings.interval_method
    assert gap.significant and gap.ci[0] > 0
    assert r.attribute("skin_tone").group("dark").n_subjects == 60
    assert audit(**kw, seed=1).attribute("skin_tone").max_min_gap.ci == gap.ci  # no randomness in the tests


def test_subject_intervals_are_wider_than_independent_ones_for_clustered_errors():
    g, subj, yt, yp = _with_subjects(1, {"light": 0.8, "dark": 0.8}, per_subject=6, spread=0.2)
    kw = dict(y_true=yt, y_pred=yp, sensitive={"skin_tone": g}, class_names=CLASSES, n_boot=100)
    with_ids = audit(**kw, subjects=subj).attribute("skin_tone")
    analytic = audit(**kw).attribute("skin_tone")
    def width(ci):
        return ci[1] - ci[0]

    assert width(with_ids.max_min_gap.ci) > width(analytic.max_min_gap.ci)
    for a, b in zip(with_ids.groups, analytic.groups, strict=False):
        assert a.design_effect > 1.0 and b.design_effect == 1.0
        assert (a.accuracy_ci[1] - a.accuracy_ci[0]) > (b.accuracy_ci[1] - b.accuracy_ci[0])


def test_subject_false_alarms():
    alarms = 0
    seeds = 20
    for seed in range(seeds):
        g, subj, yt, yp = _with_subjects(100 + seed, {"light": 0.8, "dark": 0.8})
        ref = perturb(yp, 0.02, np.random.default_rng(seed))
        r = audit(
            y_true=yt, y_pred=yp, sensitive={"skin_tone": g}, class_names=CLASSES, subjects=subj,
            reference_pred=ref, n_boot=100, seed=seed,
        )
        alarms += bool([c for c in r.significant if c.kind in ("pair", "gap-change")])
    print(f"false-alarm rate (subject design effect): {alarms / seeds:.3f} over {seeds} seeds")
    assert alarms / seeds <= 0.15


def test_one_subject_group_that_collapsed_is_insufficient_evidence_not_pass():
    """Issue 10, item 2: 60 images of one subject fall from 90 % to 50 % while the
    overall accuracy stays the same: never pass."""
    rng = np.random.default_rng(0)
    g = groups({"a": 60, "b": 600})
    subj = np.array(["s1"] * 60 + [f"t{i // 10}" for i in range(600)], dtype=object)
    yt = labels(g.size, rng)
    ref = predict(yt, g, {"a": 0.9, "b": 0.8}, rng, exact=True)
    art = predict(yt, g, {"a": 0.5, "b": 0.84}, rng, exact=True)
    r = audit(y_true=yt, y_pred=art, sensitive={"g": g}, class_names=CLASSES, subjects=subj, reference_pred=ref,
              n_boot=100)
    attr = r.attribute("g")
    assert r.verdict.label == "insufficient-evidence"
    assert "insufficient-evidence: g: untested group(s) 'a' (1 subjects < min_subjects=5)" in r.verdict.reasons
    assert attr.max_min_gap is None and r.largest_gap is None  # fewer than 2 tested groups
    change = next(c for c in r.comparisons if c.kind == "gap-change")
    assert change.p_value is None and change.note == "insufficient evidence: 'a' has 1 subjects < min_subjects=5"
    assert change.estimate == pytest.approx(0.44)  # still reported


def test_intersection_metrics_match_direct_computation_and_empty_cells_are_noted():
    rng = np.random.default_rng(9)
    g = groups({"a": 200, "b": 200, "c": 100})
    s = np.where(np.arange(g.size) % 2 == 0, "x", "y").astype(object)
    s[g == "c"] = "x"  # c×y is empty
    yt = labels(g.size, rng)
    yp = predict(yt, g, {"a": 0.9, "b": 0.7, "c": 0.8}, rng)
    ref = perturb(yp, 0.05, rng)
    r = audit(
        y_true=yt, y_pred=yp, sensitive={"g": g, "s": s}, class_names=CLASSES, reference_pred=ref,
        intersections=[("g", "s")],
    )
    inter = r.attribute("g×s")
    assert [x.group for x in inter.groups] == ["a×x", "a×y", "b×x", "b×y", "c×x"]
    assert "g×s: 1 empty combination(s) not reported" in r.notes
    for gr in inter.groups:
        a, b = gr.group.split("×")
        m = (g == a) & (s == b)
        assert gr.n == m.sum()
        assert gr.accuracy == pytest.approx((yt[m] == yp[m]).mean())
        assert gr.reference_accuracy == pytest.approx((yt[m] == ref[m]).mean())


def test_single_group_attribute_and_pandas_inputs():
    import pandas as pd

    rng = np.random.default_rng(10)
    n = 200
    df = pd.DataFrame({"y": labels(n, rng), "site": ["lab"] * n, "gender": rng.choice(["f", "m"], n)})
    df["pred"] = predict(df["y"].to_numpy(), df["gender"].to_numpy(), {"f": 0.8, "m": 0.8}, rng)
    r = audit(
        y_true=df["y"], y_pred=df["pred"], sensitive={"site": df["site"], "gender": df["gender"]},
        class_names=CLASSES,
    )
    assert r.attribute("site").max_min_gap is None
    assert r.verdict.label == "reference" and "insufficient-evidence" in r.verdict.flags
    assert "insufficient-evidence: site: only one group ('lab'), nothing to compare" in r.verdict.reasons
    assert r.attribute("site").demographic_parity.max is None


def test_overall_accuracy_change_is_paired_and_descriptive():
    rng = np.random.default_rng(12)
    g = groups({"f": 400, "m": 400})
    yt = labels(g.size, rng)
    ref = predict(yt, g, {"f": 0.85, "m": 0.85}, rng, exact=True)
    art = ref.copy()
    art[:40] = (yt[:40] + 1) % len(CLASSES)  # 40 predictions made wrong
    r = audit(y_true=yt, y_pred=art, sensitive={"gender": g}, class_names=CLASSES, reference_pred=ref)
    change = r.reference.accuracy_change
    assert change.attribute == "(all)" and change.method == "newcombe-paired" and change.family == "descriptive"
    assert change.estimate == pytest.approx(-(ref[:40] == yt[:40]).sum() / 800)
    assert change.significant and change.ci[1] < 0 and change.p_adjusted == change.p_value
    assert change in r.comparisons and change not in r.family("verdict")
