"""audit() rejects bad input with exact, stable messages."""

from __future__ import annotations

import re

import numpy as np
import pytest

from edgefair.fairness import AuditInputError, VerdictThresholds, audit

NAMES = ["neg", "neu", "pos"]


def good(**over):
    kw = dict(
        y_true=[0, 1, 2, 1, 0, 2],
        y_pred=[0, 1, 1, 1, 0, 2],
        sensitive={"gender": ["f", "m", "f", "m", "f", "m"]},
        class_names=NAMES,
    )
    kw.update(over)
    return kw


def fails(message: str, **over) -> None:
    with pytest.raises(AuditInputError, match=f"^{re.escape(message)}$"):
        audit(**good(**over))


def test_good_input_runs():
    r = audit(**good())
    assert r.n == 6 and r.class_names == NAMES


def test_error_is_a_value_error():
    assert issubclass(AuditInputError, ValueError)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"y_true": []}, "y_true is empty: nothing to audit"),
        ({"y_true": [[0, 1], [1, 0]]}, "y_true must be 1-D, got shape (2, 2)"),
        ({"y_pred": [0, 1, 2]}, "y_pred has 3 entries but y_true has 6"),
        ({"y_pred": [0, 1, 3, 1, -1, 7]}, "y_pred holds labels outside 0..2 (3 class_names): -1, 3, 7"),
        ({"y_true": [0, 1, 2, 1, 0, 9]}, "y_true holds labels outside 0..2 (3 class_names): 9"),
        ({"y_pred": [0, 1, 1.5, 1, 0, 2]}, "y_pred must hold integer class ids; got non-integer value 1.5"),
        (
            {"y_true": ["a", "b", "c", "a", "b", "c"]},
            "y_true must hold integer class ids 0..2; got <U1 values such as 'a'",
        ),
        ({"y_pred": None}, "y_pred is required"),
        ({"class_names": "neg"}, "class_names must be a sequence of names, not a single string"),
        ({"class_names": ["only"]}, "class_names needs at least 2 names, got 1"),
        ({"class_names": ["a", "b", "a"]}, "class_names has duplicates: 'a'"),
        (
            {"sensitive": ["f"] * 6},
            "sensitive must be a mapping of attribute name to per-sample group labels, got list",
        ),
        ({"sensitive": {}}, "sensitive needs at least one attribute"),
        ({"sensitive": {"gender": ["f", "m"]}}, "sensitive['gender'] has 2 entries but y_true has 6"),
        ({"sensitive": {"": ["f"] * 6}}, "sensitive attribute names must be non-empty strings, got ''"),
        (
            {"sensitive": {"age": [None, np.nan, "", " Unknown ", "nan", "unknown"]}},
            "sensitive['age'] has no value that is not missing (None/NaN/''/'unknown')",
        ),
        ({"subjects": ["s1", "s2"]}, "subjects has 2 entries but y_true has 6"),
        ({"reference_pred": [0, 1, 2, 3, 0, 2]}, "reference_pred holds labels outside 0..2 (3 class_names): 3"),
        ({"reference_pred": [0, 1]}, "reference_pred has 2 entries but y_true has 6"),
        (
            {"reference_pred": [0] * 6, "compressed_population": []},
            "compressed_population is empty: give at least one prediction array",
        ),
        (
            {"reference_pred": [0] * 6, "reference_population": [[0] * 6, [0] * 5]},
            "reference_population[1] has 5 entries but y_true has 6",
        ),
        (
            {"reference_pred": [0] * 6, "reference_population": "abc"},
            "reference_population must be a list of prediction arrays",
        ),
        (
            {"compressed_population": [[0] * 6]},
            "compressed_population needs reference_pred as well "
            "(group accuracy changes are paired against one reference model)",
        ),
        (
            {"intersections": [("gender", "race")]},
            "intersections names unknown attribute 'race'; sensitive has: gender",
        ),
        ({"intersections": [("gender",)]}, "an intersection needs at least 2 attributes, got ('gender',)"),
        (
            {"intersections": "gender"},
            "intersections must be True, False or a list of attribute-name tuples such as [('gender', 'skin_tone')]",
        ),
        ({"min_n": 0}, "min_n must be an integer >= 1, got 0"),
        ({"min_n": 2.5}, "min_n must be an integer >= 1, got 2.5"),
        ({"min_subjects": 1}, "min_subjects must be an integer >= 2, got 1"),
        ({"min_subjects": 5.0}, "min_subjects must be an integer >= 2, got 5.0"),
        ({"min_subjects": True}, "min_subjects must be an integer >= 2, got True"),
        ({"keep_missing": "yes"}, "keep_missing must be True or False, got 'yes'"),
        ({"keep_missing": 1}, "keep_missing must be True or False, got 1"),
        ({"alpha": 1.5}, "alpha must be in (0, 1), got 1.5"),
        ({"alpha": 0}, "alpha must be in (0, 1), got 0"),
        ({"n_boot": 10}, "n_boot must be an integer >= 100, got 10"),
        ({"seed": -1}, "seed must be a non-negative integer, got -1"),
        ({"thresholds": {"gap_widening_points": 1}}, "thresholds must be a VerdictThresholds, got dict"),
    ],
)
def test_exact_error_messages(over, message):
    fails(message, **over)


def test_float_labels_that_are_integers_are_accepted():
    r = audit(**good(y_true=np.array([0.0, 1.0, 2.0, 1.0, 0.0, 2.0])))
    assert r.n == 6


def test_group_labels_compare_as_strings():
    r = audit(**good(sensitive={"age_bin": [0, 1, 0, 1, 0, 1]}))
    assert [g.group for g in r.attribute("age_bin").groups] == ["0", "1"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_relative_accuracy": 1.5}, "min_relative_accuracy must be in (0, 1], got 1.5"),
        ({"gap_widening_points": -1.0}, "gap_widening_points must be >= 0, got -1.0"),
    ],
)
def test_threshold_validation(kwargs, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        VerdictThresholds(**kwargs)


def test_missing_values_are_left_out_and_counted_by_default():
    r = audit(**good(sensitive={"gender": ["f", "m", None, "m", "", "unknown"]}))
    a = r.attribute("gender")
    assert [g.group for g in a.groups] == ["f", "m"] and a.n_missing == 3
    assert sum(g.n for g in a.groups) == 3
    assert (
        "gender: 3 sample(s) with a missing value (None/NaN/''/'unknown') left out of its audit and of its "
        "intersections (keep_missing=True audits them as a group 'unknown')" in r.notes
    )


def test_keep_missing_audits_them_as_one_group():
    r = audit(**good(sensitive={"gender": ["f", "m", None, "m", np.nan, "Unknown"]}, keep_missing=True))
    a = r.attribute("gender")
    assert [g.group for g in a.groups] == ["f", "m", "unknown"] and a.n_missing == 0
    assert a.group("unknown").n == 3
    assert "gender: 3 missing value(s) (None/NaN/''/'unknown') audited as the group 'unknown'" in r.notes


def test_missing_values_leave_intersections_too():
    sens = {"gender": ["f", "m", None, "m", "f", "m"], "age": ["a", "a", "b", "", "b", "b"]}
    r = audit(**good(sensitive=sens, intersections=True))
    cross = r.attribute("gender×age")
    assert cross.n_missing == 2 and sum(g.n for g in cross.groups) == 4
    assert r.attribute("age").n_missing == 1


def test_empty_subject_ids_are_each_their_own_subject():
    r = audit(**good(subjects=["s1", "s1", None, "", "s2", "s2"], min_subjects=2))
    groups = {g.group: g for g in r.attribute("gender").groups}
    # f: s1, s2 and the image without an id (index 2); m: s1, its own (3), s2
    assert groups["f"].n_subjects == 3 and groups["m"].n_subjects == 3
    assert "subjects: 2 sample(s) without a subject id, each its own subject" in r.notes


def test_single_attribute_with_intersections_true_is_a_note():
    r = audit(**good(intersections=True))
    assert "intersections=True with a single attribute: nothing to intersect" in r.notes
