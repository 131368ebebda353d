"""CEV and SDE (Simon Says) by hand and by invariants; CIEs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefair.fairness.cie import compression_identified_exemplars, modal_labels
from edgefair.fairness.compression import cev_sde, error_shift
from edgefair.fairness.groups import group_tables
from tests.fairness.synth import from_confusion

NAMES3 = ["a", "b", "c"]

# Reference T, rows = true class, columns = predicted (4 samples per class, n = 12):
#   class a: [3, 1, 0]   class b: [0, 3, 1]   class c: [1, 0, 3]
# Each class: FN = 1 of 4 -> FNR_T = 0.25; FP = 1 of the 8 others -> FPR_T = 0.125.
REF_CM = np.array([[3, 1, 0], [0, 3, 1], [1, 0, 3]])
# Compressed S:
#   class a: [2, 2, 0]   class b: [0, 3, 1]   class c: [2, 0, 2]
# FN: a 2, b 1, c 2 -> FNR_S = 0.5, 0.25, 0.5
# column sums 4, 5, 3 minus TP 2, 3, 2 -> FP = 2, 2, 1 -> FPR_S = 0.25, 0.25, 0.125
COMP_CM = np.array([[2, 2, 0], [0, 3, 1], [2, 0, 2]])


def _pair(ref_cm, comp_cm):
    yt, ref = from_confusion(ref_cm)
    yt2, comp = from_confusion(comp_cm)
    assert (yt == yt2).all()  # same row sums -> same y_true in the same order
    return yt, ref, comp


def test_cev_sde_by_hand():
    yt, ref, comp = _pair(REF_CM, COMP_CM)
    es = error_shift(yt, [ref], [comp], NAMES3)
    # dFPR = 100*(S - T)/T: a 100*(0.25-0.125)/0.125 = 100, b 100, c 0
    # dFNR:                 a 100*(0.5-0.25)/0.25   = 100, b 0,   c 100
    assert es.delta_fpr == pytest.approx({"a": 100.0, "b": 100.0, "c": 0.0})
    assert es.delta_fnr == pytest.approx({"a": 100.0, "b": 0.0, "c": 100.0})
    # points (100,100), (100,0), (0,100); mu = (200/3, 200/3)
    # ||p_a - mu||^2 = 2*(100/3)^2 = 20000/9; ||p_b - mu||^2 = (100/3)^2 + (200/3)^2 = 50000/9 = ||p_c - mu||^2
    # CEV = (1/(2*3)) * (20000 + 50000 + 50000)/9 = 20000/9 = 2222.2
    assert es.cev == pytest.approx(20000 / 9)
    # SDE = (1/3) * (|100-100| + |100-0| + |0-100|) / sqrt(2) = 200/(3*sqrt(2)) = 47.14
    assert es.sde == pytest.approx(200 / (3 * math.sqrt(2)))
    assert es.classes == NAMES3 and es.excluded_classes == {}
    assert es.reference_fpr == pytest.approx({"a": 0.125, "b": 0.125, "c": 0.125})


def test_identical_models_have_zero_cev_and_sde():
    yt, ref, _ = _pair(REF_CM, COMP_CM)
    es = error_shift(yt, [ref], [ref.copy()], NAMES3)
    assert es.cev == 0.0 and es.sde == 0.0


def test_zero_reference_rate_class_is_excluded_and_listed():
    # class d: the reference never predicts it (FPR_T = 0) and gets all 4 right (FNR_T = 0)
    ref_cm = np.zeros((4, 4), int)
    ref_cm[:3, :3] = REF_CM
    ref_cm[3, 3] = 4
    comp_cm = np.zeros((4, 4), int)
    comp_cm[:3, :3] = COMP_CM
    comp_cm[3, 3], comp_cm[3, 0] = 3, 1  # the compressed model errs on d: Δ would be inf
    yt, ref, comp = _pair(ref_cm, comp_cm)
    es = error_shift(yt, [ref], [comp], NAMES3 + ["d"])
    assert es.excluded_classes == {"d": "reference FPR and FNR are 0: percent change undefined"}
    assert es.classes == NAMES3
    assert "d" not in es.delta_fpr and "d" not in es.delta_fnr
    assert all(math.isfinite(v) for v in [es.cev, es.sde])
    # the other classes' rates changed only through the extra negatives: still finite numbers
    assert es.compressed_fnr["d"] == pytest.approx(0.25)


def test_class_without_test_samples_and_all_classes_excluded():
    yt = np.array([0, 0, 1, 1])
    ref = np.array([0, 0, 1, 1])  # perfect: every reference rate is 0
    comp = np.array([0, 1, 1, 1])
    es = error_shift(yt, [ref], [comp], ["x", "y", "z"])
    assert es.excluded_classes["z"] == "no test sample of this class: FNR undefined"
    assert es.excluded_classes["x"] == "reference FPR and FNR are 0: percent change undefined"
    assert es.cev is None and es.sde is None and es.classes == []


def test_populations_average_rates():
    yt, ref, comp = _pair(REF_CM, COMP_CM)
    # averaging S over {COMP, REF}: FPR_S = mean -> dFPR halves
    es = error_shift(yt, [ref], [comp, ref], NAMES3)
    assert es.delta_fpr == pytest.approx({"a": 50.0, "b": 50.0, "c": 0.0})
    assert es.n_compressed_models == 2 and es.n_reference_models == 1


finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(finite, finite), min_size=1, max_size=20))
def test_cev_non_negative(points):
    cev, sde = cev_sde([p[0] for p in points], [p[1] for p in points])
    assert cev >= 0.0 and sde >= 0.0


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=1, max_size=20))
def test_sde_zero_when_fpr_and_fnr_changes_equal(deltas):
    _, sde = cev_sde(deltas, deltas)
    assert sde == 0.0


@st.composite
def three_models(draw):
    c = draw(st.integers(2, 6))
    n = draw(st.integers(c, 60))
    ints = st.lists(st.integers(0, c - 1), min_size=n, max_size=n)
    yt = np.array(draw(ints))
    yt[:c] = np.arange(c)  # every class present
    ref, comp = np.array(draw(ints)), np.array(draw(ints))
    perm = np.array(draw(st.permutations(list(range(c)))))
    return c, yt, ref, comp, perm


@settings(max_examples=150, deadline=None)
@given(three_models())
def test_cev_sde_invariant_under_class_relabelling(data):
    c, yt, ref, comp, perm = data
    names = [f"class{i}" for i in range(c)]
    # relabel class i as perm[i] everywhere, and carry its name along
    renamed = [""] * c
    for i in range(c):
        renamed[perm[i]] = names[i]
    a = error_shift(yt, [ref], [comp], names)
    b = error_shift(perm[yt], [perm[ref]], [perm[comp]], renamed)
    assert a.excluded_classes == b.excluded_classes
    assert set(a.classes) == set(b.classes)
    if a.cev is None:
        assert b.cev is None and b.sde is None
    else:
        assert b.cev == pytest.approx(a.cev, rel=1e-9, abs=1e-9)
        assert b.sde == pytest.approx(a.sde, rel=1e-9, abs=1e-9)
        assert a.cev >= 0


# -- CIE ------------------------------------------------------------------------------


def test_modal_labels_ties_go_to_smallest_id():
    preds = [np.array([0, 1, 2, 2]), np.array([1, 1, 0, 2]), np.array([1, 2, 1, 0])]
    assert modal_labels(preds, 3).tolist() == [1, 1, 0, 2]


def test_cie_single_models_are_disagreements():
    yt = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    ref = np.array([0, 1, 2, 0, 1, 2, 0, 0])
    comp = np.array([0, 1, 1, 0, 2, 2, 0, 0])  # differs at 2 and 4
    sens = {"g": np.array(["x", "x", "y", "y", "y", "y", "x", "x"], dtype=object)}
    (table,) = group_tables([("g",)], sens, yt, comp, ref, 3)
    cie = compression_identified_exemplars(yt, [ref], [comp], [table], 3)
    assert cie.definition == "disagreement"
    assert cie.indices == [2, 4] and cie.n == 2 and cie.share == pytest.approx(0.25)
    assert cie.accuracy_on_cie == {"compressed": 0.0, "reference": 1.0}
    assert cie.accuracy_off_cie["reference"] == pytest.approx(5 / 6)
    y = next(s for s in cie.groups if s.group == "y")
    # both CIEs are in y: share among CIEs 1.0 vs share of the test set 0.5 -> ratio 2
    assert (y.n, y.n_cie, y.share_among_cie, y.share_of_test, y.representation_ratio) == (4, 2, 1.0, 0.5, 2.0)
    assert y.cie_rate == 0.5
    x = next(s for s in cie.groups if s.group == "x")
    assert x.n_cie == 0 and x.representation_ratio == 0.0


def test_cie_modal_label_with_populations():
    yt = np.array([0, 1, 2, 0])
    refs = [np.array([0, 1, 2, 0]), np.array([0, 1, 2, 1]), np.array([0, 2, 2, 0])]  # modal 0 1 2 0
    comps = [np.array([0, 2, 2, 1]), np.array([0, 2, 1, 1]), np.array([1, 1, 2, 0])]  # modal 0 2 2 1
    sens = {"g": np.array(["x", "x", "y", "y"], dtype=object)}
    (table,) = group_tables([("g",)], sens, yt, comps[0], refs[0], 3)
    cie = compression_identified_exemplars(yt, refs, comps, [table], 3)
    assert cie.definition == "modal-label" and cie.indices == [1, 3]
    assert cie.n_reference_models == 3 and cie.n_compressed_models == 3


def test_no_cie():
    yt = np.array([0, 1, 0, 1])
    sens = {"g": np.array(["x", "x", "y", "y"], dtype=object)}
    (table,) = group_tables([("g",)], sens, yt, yt, yt, 2)
    cie = compression_identified_exemplars(yt, [yt], [yt], [table], 2)
    assert cie.n == 0 and cie.accuracy_on_cie == {"compressed": None, "reference": None}
    assert all(g.share_among_cie is None and g.share_among_cie_ci is None for g in cie.groups)
