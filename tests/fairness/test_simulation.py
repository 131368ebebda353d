"""The fast part of scripts/fairness_sim.py: false alarms where the audit before issue 10
raised them, power that survives extra attributes and intersections, coverage of the
per-group accuracy intervals. The bounds leave room for simulation noise (the audit
crosses each by chance with probability < 1 %) yet the audit before this change
(d8060bd) crosses them: its gap-change test rejects in 13.5 % and 16 % of the null audits
with 2 and 3 subjects per group, catches 26 % of the widenings with intersections, and
its plain Wilson intervals cover 81.5 % (docs/fairness.md, same designs and seeds)."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

from edgefair.fairness import simulate as sim

LOWERED = {"min_subjects": 2, "min_n": 1}  # every group tested


def test_gap_change_test_keeps_its_level_with_few_subjects():
    """The verdict's test itself (unadjusted p of the one gap change), every group tested."""
    for subjects in (2, 3):
        t = sim.run(sim.Design(f"null-{subjects}x10", subjects=(subjects, subjects), images=10), audits=120,
                    **LOWERED)
        assert t.rate("raw_gap_test")[0] <= 0.06, t


def test_ck_plus_shape_keeps_its_level_and_is_tested_at_the_defaults():
    t = sim.run(sim.Design("null-CK+-12f-6m-x10", subjects=(12, 6), images=10), audits=150)
    assert t.insufficient == 0  # 6 subjects >= min_subjects: tested
    assert t.rate("gap_widened")[0] <= 0.06 and t.rate("raw_gap_test")[0] <= 0.06, t


def test_two_subjects_per_group_is_insufficient_evidence_at_the_defaults():
    t = sim.run(sim.Design("null-2x10", subjects=(2, 2), images=10), audits=10)
    assert t.insufficient == 10 and t.gap_widened == 0


def test_power_survives_three_attributes_and_intersections():
    base = replace(sim.POWER_BASE, widen=0.05)
    alone = sim.run(replace(base, name="power-5pt-gender"), audits=40)
    crossed = sim.run(replace(base, name="power-5pt-3 + intersections", attributes=3, intersections=True), audits=60)
    # about 0.85 alone and 0.57 with intersections (the old audit: 0.86 and 0.26)
    assert alone.rate("gender_widened")[0] >= 0.6, alone
    assert crossed.rate("gender_widened")[0] >= 0.38, crossed
    assert crossed.verdict_tests / crossed.audits > 150  # the family really holds every gap change


def test_accuracy_intervals_cover_with_subjects():
    t = sim.coverage(sim.Design("coverage-40x8", subjects=(40, 40), images=8), audits=150)
    covered, _ = t.rate("covered")
    wilson, _ = t.rate("covered_wilson")
    assert covered >= 0.91, t  # nominal 0.95; plain Wilson (the old interval) about 0.86 here
    assert wilson < covered


def test_simulation_is_deterministic():
    d = sim.Design("det", subjects=(5, 5), images=3, widen=0.2)
    a, b = sim.run(d, audits=4, seed=3, **LOWERED), sim.run(d, audits=4, seed=3, **LOWERED)
    assert a == b
    ts = sim.sample(d, sim._rng(0, d, 0))
    assert ts.y_true.size == 30 and set(ts.sensitive["gender"]) == {"g0", "g1"}


def test_script_builds_its_tables():
    path = Path(__file__).resolve().parents[2] / "scripts" / "fairness_sim.py"
    spec = importlib.util.spec_from_file_location("fairness_sim", path)
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = script.parse(["--quick", "--audits", "4", "--power-audits", "2"])
    text, results = script.build(args, log=lambda s: None)
    assert "**False alarms**" in text and "**Power**" in text and "**Coverage**" in text
    assert "| 12×6 | 10 | yes |" in text and "no: < min_subjects=5" in text
    assert results["min_subjects_default"] == 5 and len(results["power"]) == 3
