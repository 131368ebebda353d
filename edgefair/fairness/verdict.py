"""The verdict on one artefact, from an audit's numbers.

- ``gap-widened``: for some attribute, the accuracy gap between two groups (both
  n >= min_n) grew: with ``hi`` the pair's more accurate group under the artefact,
  the change of the gap D = (acc_art(hi) - acc_art(lo)) - (acc_ref(hi) - acc_ref(lo))
  has a Holm-adjusted p < alpha over every comparison of the audit (equivalently its
  interval at the Holm step's level excludes 0) AND the absolute gap grew by at
  least ``gap_widening_points`` accuracy points: |gap_art| - |gap_ref| >= points/100
  (which implies D >= points/100; a gap that merely changed sign is not "widened").
  Every pair is tested rather than "each group vs the best", because the best group
  is itself a noisy pick when groups are small.
- ``accuracy-drop``: accuracy < ``min_relative_accuracy`` x reference accuracy (a
  point-estimate gate, as MLPerf's 99 % rule).
- ``insufficient-evidence``: some group has n < min_n (or an attribute has a single
  group), so the audit cannot call the artefact fair for everyone.
- ``pass``: none of the above.

One label, by precedence gap-widened > accuracy-drop > insufficient-evidence > pass;
``flags`` keeps every label that applied.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgefair.fairness.result import AttributeResult, Comparison, Verdict, VerdictThresholds

PRECEDENCE = ("gap-widened", "accuracy-drop", "insufficient-evidence")


def _pts(x: float) -> str:
    return f"{100 * x:.1f}"


def _gaps(c: Comparison, attributes: Sequence[AttributeResult]) -> tuple[float, float]:
    """(reference gap, artefact gap) of a gap-change comparison: acc(other) - acc(group)."""
    attr = next(a for a in attributes if a.name == c.attribute)
    hi, lo = attr.group(c.other), attr.group(c.group)
    ref_gap = (hi.reference_accuracy or 0.0) - (lo.reference_accuracy or 0.0)
    return ref_gap, hi.accuracy - lo.accuracy


def _gap_reason(c: Comparison, ref_gap: float, art_gap: float) -> str:
    ci = f"95% CI {_pts(c.ci[0])} to {_pts(c.ci[1])}, " if c.ci else ""
    return (
        f"gap-widened: {c.attribute}: gap {c.other} - {c.group} grew from {_pts(ref_gap)} to "
        f"{_pts(art_gap)} points (change {_pts(c.estimate)}, {ci}Holm p={c.p_holm:.2g})"
    )


def decide(
    *,
    accuracy: float,
    reference_accuracy: float | None,
    attributes: Sequence[AttributeResult],
    comparisons: Sequence[Comparison],
    thresholds: VerdictThresholds,
    alpha: float,
    min_n: int,
) -> Verdict:
    """Apply the rules above; every triggered rule adds a reason."""
    reasons: dict[str, list[str]] = {label: [] for label in PRECEDENCE}
    info: list[str] = []

    if reference_accuracy is None:
        info.append("no reference_pred: accuracy-drop and gap-widened were not checked")
    else:
        for c in comparisons:
            if c.kind != "gap-change" or not c.significant:
                continue
            ref_gap, art_gap = _gaps(c, attributes)
            if 100 * (abs(art_gap) - abs(ref_gap)) >= thresholds.gap_widening_points - 1e-9:
                reasons["gap-widened"].append(_gap_reason(c, ref_gap, art_gap))
        floor = thresholds.min_relative_accuracy * reference_accuracy
        if accuracy < floor:
            reasons["accuracy-drop"].append(
                f"accuracy-drop: accuracy {accuracy:.4f} < {thresholds.min_relative_accuracy:g} x "
                f"reference {reference_accuracy:.4f} = {floor:.4f}"
            )

    for a in attributes:
        if len(a.groups) < 2:
            reasons["insufficient-evidence"].append(
                f"insufficient-evidence: {a.name}: only one group ({a.groups[0].group!r}), nothing to compare"
            )
        for label in a.insufficient_groups:
            g = a.group(label)
            reasons["insufficient-evidence"].append(
                f"insufficient-evidence: {a.name}: group {label!r} has n={g.n} < min_n={min_n}"
            )

    flags = [label for label in PRECEDENCE if reasons[label]]
    label = flags[0] if flags else "pass"
    out = [r for f in flags for r in reasons[f]]
    if not flags:
        checks = [f"every group has n >= {min_n}"]
        if reference_accuracy is not None:
            checks.insert(
                0,
                f"no gap between two groups grew by >= {thresholds.gap_widening_points:g} points "
                f"with Holm-adjusted p < {alpha:g}; accuracy {accuracy:.4f} >= "
                f"{thresholds.min_relative_accuracy:g} x reference {reference_accuracy:.4f}",
            )
        out.append("pass: " + "; ".join(checks))
    significant_gaps = [c for c in comparisons if c.significant and c.kind in ("pair", "vs-rest")]
    if significant_gaps:
        info.append(
            f"{len(significant_gaps)} significant between-group gap(s) (Holm p < {alpha:g}); "
            "a verdict concerns what compression changed, see comparisons"
        )
    return Verdict(label=label, flags=flags or ["pass"], reasons=out + info)
