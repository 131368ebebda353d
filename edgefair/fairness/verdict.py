"""The verdict on one artefact: what compression changed, from an audit's numbers.

- ``reference``: no reference_pred, so there is no compression to judge; the audited
  model is the reference and AuditResult.state says how it stands.
- ``gap-widened``: for some attribute, the gap between two tested groups grew: with
  ``hi`` the pair's more accurate group under the artefact, the change of the gap
  D = (acc_art(hi) - acc_art(lo)) - (acc_ref(hi) - acc_ref(lo)) is significant in the
  verdict family (the gap changes of every attribute, weighted Holm, see family.py)
  AND the absolute gap grew by at least ``gap_widening_points`` accuracy points:
  |gap_art| - |gap_ref| >= points/100 (a gap that merely changed sign is not "widened").
  Every pair of tested groups is tested rather than "each group vs the best", because
  the best group is itself a noisy pick when groups are small.
- ``accuracy-drop``: accuracy < ``min_relative_accuracy`` x reference accuracy (a
  point-estimate gate, as MLPerf's 99 % rule).
- ``insufficient-evidence``: some group is untested (fewer than min_subjects subjects
  or min_n images) or an attribute has fewer than 2 tested groups: its change cannot be
  judged, so the audit cannot say compression left everyone alone.
- ``pass``: none of the above. It means "compression changed nothing significant",
  never "fair": a pre-existing gap or a group at chance is reported in the state.

One label, by precedence gap-widened > accuracy-drop > insufficient-evidence > pass;
``flags`` keeps every label that applied.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgefair.fairness.result import AttributeResult, Comparison, Verdict, VerdictThresholds
from edgefair.fairness.state import ci_label

PRECEDENCE = ("gap-widened", "accuracy-drop", "insufficient-evidence")


def _pts(x: float) -> str:
    return f"{100 * x:.1f}"


def gaps_of(c: Comparison, attributes: Sequence[AttributeResult]) -> tuple[float, float]:
    """(reference gap, artefact gap) of a gap-change comparison: acc(other) - acc(group)."""
    attr = next(a for a in attributes if a.name == c.attribute)
    hi, lo = attr.group(c.other), attr.group(c.group)
    ref_gap = (hi.reference_accuracy or 0.0) - (lo.reference_accuracy or 0.0)
    return ref_gap, hi.accuracy - lo.accuracy


def widened(c: Comparison, attributes: Sequence[AttributeResult], thresholds: VerdictThresholds) -> bool:
    """A significant gap change whose absolute gap grew by at least the threshold."""
    if c.kind != "gap-change" or not c.significant:
        return False
    ref_gap, art_gap = gaps_of(c, attributes)
    return 100 * (abs(art_gap) - abs(ref_gap)) >= thresholds.gap_widening_points - 1e-9


def _gap_reason(c: Comparison, ref_gap: float, art_gap: float, alpha: float) -> str:
    ci = f"{ci_label(alpha)} {_pts(c.ci[0])} to {_pts(c.ci[1])}, " if c.ci else ""
    return (
        f"gap-widened: {c.attribute}: gap {c.other} - {c.group} grew from {_pts(ref_gap)} to "
        f"{_pts(art_gap)} points (change {_pts(c.estimate)}, {ci}adjusted p={c.p_adjusted:.2g})"
    )


def _insufficient(attributes: Sequence[AttributeResult]) -> list[str]:
    out = []
    for a in attributes:
        untested = [g for g in a.groups if not g.tested]
        if untested:
            named = ", ".join(f"{g.group!r} ({g.untested_reason})" for g in untested)
            out.append(f"insufficient-evidence: {a.name}: untested group(s) {named}")
        n_tested = len(a.groups) - len(untested)
        if len(a.groups) < 2:
            out.append(f"insufficient-evidence: {a.name}: only one group ({a.groups[0].group!r}), nothing to compare")
        elif n_tested < 2:
            out.append(f"insufficient-evidence: {a.name}: fewer than 2 tested groups, no gap can be tested")
    return out


def decide(
    *,
    accuracy: float,
    reference_accuracy: float | None,
    attributes: Sequence[AttributeResult],
    comparisons: Sequence[Comparison],
    thresholds: VerdictThresholds,
    alpha: float,
    min_n: int,
    min_subjects: int,
    n_verdict: int,
) -> Verdict:
    """Apply the rules above; every triggered rule adds a reason."""
    insufficient = _insufficient(attributes)
    if reference_accuracy is None:
        flags = ["reference"] + (["insufficient-evidence"] if insufficient else [])
        note = (
            "reference: no reference_pred, so no compression effect to judge (gap-widened and accuracy-drop "
            "were not checked); the absolute state says how this model stands"
        )
        return Verdict(label="reference", flags=flags, reasons=[note, *insufficient])

    reasons: dict[str, list[str]] = {label: [] for label in PRECEDENCE}
    for c in comparisons:
        if widened(c, attributes, thresholds):
            reasons["gap-widened"].append(_gap_reason(c, *gaps_of(c, attributes), alpha))
    floor = thresholds.min_relative_accuracy * reference_accuracy
    if accuracy < floor:
        reasons["accuracy-drop"].append(
            f"accuracy-drop: accuracy {accuracy:.4f} < {thresholds.min_relative_accuracy:g} x "
            f"reference {reference_accuracy:.4f} = {floor:.4f}"
        )
    reasons["insufficient-evidence"] = insufficient

    flags = [label for label in PRECEDENCE if reasons[label]]
    out = [r for f in flags for r in reasons[f]]
    if not flags:
        out.append(
            f"pass: no gap between two tested groups grew by >= {thresholds.gap_widening_points:g} points "
            f"with adjusted p < {alpha:g} ({n_verdict} gap change(s) in the verdict family); accuracy "
            f"{accuracy:.4f} >= {thresholds.min_relative_accuracy:g} x reference {reference_accuracy:.4f}; "
            f"every group tested (>= {min_subjects} subjects and >= {min_n} images). pass means compression "
            "changed nothing significant, not that the model is fair: see the absolute state"
        )
    return Verdict(label=flags[0] if flags else "pass", flags=flags or ["pass"], reasons=out)
