"""summarize(): the two statements per artefact, shared by the CLI table, report and gate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgefair.fairness import AuditSummary, audit, format_summary_table, summarize
from edgefair.fairness.summary import SUMMARY_SCHEMA
from tests.fairness.synth import CLASSES, groups, labels, perturb, predict


@pytest.fixture(scope="module")
def audits():
    """Issue 10, item 6: the reference itself has an 18-point skin-tone gap with the dark
    group near chance; one artefact changes little, one widens a gender gap."""
    rng = np.random.default_rng(40)
    tone = groups({"light": 900, "dark": 300})
    gender = np.array(["f", "m"], dtype=object)[rng.integers(0, 2, tone.size)]
    yt = labels(tone.size, rng)
    ref = predict(yt, tone, {"light": 0.84, "dark": 0.10}, rng, exact=True)
    little = perturb(ref, 0.004, rng)
    widened = ref.copy()
    hit = np.flatnonzero((gender == "m") & (ref == yt))
    widened[hit[: len(hit) // 5]] = (yt[hit[: len(hit) // 5]] + 1) % len(CLASSES)
    kw = dict(y_true=yt, sensitive={"skin_tone": tone, "gender": gender}, class_names=CLASSES, n_boot=200)
    return {
        "torch-fp32": audit(y_pred=ref, **kw),
        "onnx-int8": audit(y_pred=little, reference_pred=ref, **kw),
        "tflite-int8-s0.5": audit(y_pred=widened, reference_pred=ref, **kw),
    }


def test_reference_is_labelled_reference_with_its_absolute_state(audits):
    s = summarize(audits["torch-fp32"], is_reference=True)
    assert s.verdict == "reference" and s.is_reference
    assert s.accuracy_change is None and s.gap_change is None and s.cev is None and s.churn is None
    (gap,) = [g for g in s.reference_gaps if g.attribute == "skin_tone"]
    assert (gap.high, gap.low) == ("light", "dark") and gap.estimate == pytest.approx(0.74)
    assert {(b.model, b.attribute, b.group) for b in s.below_chance} == {("reference", "skin_tone", "dark")}
    assert s.chance == pytest.approx(1 / 7)
    assert s.statements[0].startswith("reference: the uncompressed model")
    assert any(x.startswith("at or below chance (1/7 = 14.3%): reference skin_tone=dark 10.0%") for x in s.statements)


def test_pass_says_compression_changed_nothing_and_keeps_the_state(audits):
    s = summarize(audits["onnx-int8"], is_reference=False)
    assert s.verdict == "pass"
    assert s.statements[0].startswith("compression effect: pass: no gap between two tested groups grew")
    # the absolute state comes with the pass: the reference's gap and the dark group near chance
    assert any(g.attribute == "skin_tone" and g.low == "dark" for g in s.reference_gaps)
    assert {b.model for b in s.below_chance} == {"reference", "artefact"}
    assert s.gap_change is not None and not s.gap_change.widened
    assert s.gap_change.selection.startswith("the largest gap growth among")
    assert s.churn == pytest.approx(1 - audits["onnx-int8"].reference.agreement)
    assert s.cev_ci is not None and s.cev_explained.startswith("CEV (compression error variance")


def test_widened_gap_is_the_reported_gap_change(audits):
    s = summarize(audits["tflite-int8-s0.5"], is_reference=False)
    assert s.verdict == "gap-widened"
    c = s.gap_change
    assert c.widened and c.significant and c.attribute == "gender" and (c.group, c.other) == ("m", "f")
    assert c.ci[0] > 0 and c.p_adjusted < 0.05
    assert c.artefact_gap - c.reference_gap == pytest.approx(c.estimate)
    assert s.largest_gap.attribute == "skin_tone" and s.largest_gap.selection.startswith("the largest accuracy gap")


def test_summary_json_round_trip(audits):
    for name, r in audits.items():
        s = summarize(r, is_reference=name == "torch-fp32")
        d = json.loads(json.dumps(s.to_dict(), allow_nan=False))
        assert d["schema"] == SUMMARY_SCHEMA
        back = AuditSummary.from_dict(d)
        assert back == s or back.to_dict() == d
        assert isinstance(back.accuracy_ci, tuple)
    with pytest.raises(ValueError, match="summary schema"):
        AuditSummary.from_dict({"schema": "x"})


def test_summary_table_has_one_row_per_artefact(audits):
    rows = {name: summarize(r, is_reference=name == "torch-fp32") for name, r in audits.items()}
    text = format_summary_table(rows)
    lines = text.splitlines()
    assert lines[0].startswith("artefact") and "acc [95% CI]" in lines[0]
    body = lines[1:4]
    assert [ln.split()[0] for ln in body] == list(audits)
    assert [ln.split()[1] for ln in body] == ["reference", "pass", "gap-widened"]
    assert "ref skin_tone=dark" in body[0]
    assert len(lines) < 10  # compact: the full audit is format_table (--verbose)
    assert "pass: nothing significant; it does not mean fair" in text


def test_a_stored_audit_summarises_like_the_live_one(audits):
    from edgefair.fairness import AuditResult

    for name, r in audits.items():
        stored = AuditResult.from_dict(json.loads(json.dumps(r.to_dict(), allow_nan=False)))
        ref = name == "torch-fp32"
        assert summarize(stored, is_reference=ref).to_dict() == summarize(r, is_reference=ref).to_dict()
