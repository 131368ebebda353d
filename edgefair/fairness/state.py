"""What an audit says whatever compression did: the largest gap of tested groups, the
pre-existing gaps and the groups at or below chance; and the label of every interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from edgefair.fairness.result import (
    AbsoluteState,
    AttributeResult,
    ChanceGroup,
    Comparison,
    Interval,
    LargestGap,
    ReferenceResult,
)


def ci_label(alpha: float) -> str:
    """'95% CI' for alpha = 0.05, '90% CI' for 0.1, '99.9% CI' for 0.001."""
    return f"{round(100 * (1 - alpha), 6):g}% CI"


def _pts(x: float) -> str:
    return f"{100 * x:.1f}"


def _ci_pts(ci: Interval | None) -> str:
    return "[n/a]" if ci is None else f"[{_pts(ci[0])}, {_pts(ci[1])}]"


def largest_gap(
    comparisons: Sequence[Comparison],
    *,
    alpha: float,
    interval_at: Callable[[str, str, str, float], Interval],
    min_n: int,
    min_subjects: int,
) -> LargestGap | None:
    """The largest ``pair`` gap between two tested groups over every attribute, with its
    own interval and a Bonferroni-simultaneous one over all candidate pairs."""
    candidates = [c for c in comparisons if c.kind == "pair" and c.tested]
    if not candidates:
        return None
    best = max(candidates, key=lambda c: c.estimate)
    m = len(candidates)
    n_attributes = len({c.attribute for c in candidates})
    label = ci_label(alpha)
    return LargestGap(
        attribute=best.attribute,
        high=best.group,
        low=best.other,
        estimate=best.estimate,
        ci=best.ci,
        ci_simultaneous=interval_at(best.attribute, best.group, best.other, alpha / m),
        p_value=best.p_value,
        p_adjusted=best.p_adjusted,
        candidates=m,
        selection=(
            f"the largest accuracy gap between two tested groups (>= {min_subjects} subjects and >= {min_n} "
            f"images each) over {m} pair(s) in {n_attributes} attribute(s)/intersection(s); ci is this pair's "
            f"{label}, ci_simultaneous holds for all {m} pairs at once (Bonferroni), so also for the one "
            "picked as the largest (the largest of several estimates is biased upward)"
        ),
    )


def _chance_groups(
    attributes: Sequence[AttributeResult],
    chance: float,
    *,
    has_reference: bool,
    accuracy: float,
    accuracy_ci: Interval,
    reference: ReferenceResult | None,
    n: int,
) -> list[ChanceGroup]:
    """Tested groups (and the whole test set) at or below chance, for each model."""
    own = "artefact" if has_reference else "reference"
    out: list[ChanceGroup] = []

    def add(model: str, attribute: str, group: str, acc: float, ci: Interval, size: int, subjects: int | None) -> None:
        if acc <= chance + 1e-12:
            out.append(ChanceGroup(model, attribute, group, acc, ci, size, subjects, ci[1] < chance))

    if reference is not None:
        add("reference", "(all)", "(all)", reference.accuracy, reference.accuracy_ci, n, None)
    add(own, "(all)", "(all)", accuracy, accuracy_ci, n, None)
    for a in attributes:
        for g in a.groups:
            if not g.tested:
                continue
            if g.reference_accuracy is not None and g.reference_accuracy_ci is not None:
                add("reference", a.name, g.group, g.reference_accuracy, g.reference_accuracy_ci, g.n, g.n_subjects)
            add(own, a.name, g.group, g.accuracy, g.accuracy_ci, g.n, g.n_subjects)
    return out


def absolute_state(
    attributes: Sequence[AttributeResult],
    comparisons: Sequence[Comparison],
    *,
    has_reference: bool,
    accuracy: float,
    accuracy_ci: Interval,
    reference: ReferenceResult | None,
    n: int,
    n_classes: int,
    alpha: float,
) -> AbsoluteState:
    """Significant pre-existing gaps (the reference's; the audited model's own when it is
    the reference) and groups at or below chance (1 / n_classes)."""
    chance = 1.0 / n_classes
    kind = "reference-gap" if has_reference else "pair"
    gaps = sorted((c for c in comparisons if c.kind == kind and c.significant), key=lambda c: -c.estimate)
    below = _chance_groups(
        attributes, chance, has_reference=has_reference, accuracy=accuracy, accuracy_ci=accuracy_ci,
        reference=reference, n=n,
    )
    label = ci_label(alpha)
    lines = []
    if gaps:
        shown = "; ".join(
            f"{c.attribute}: {c.group} - {c.other} {_pts(c.estimate)} pts {label} {_ci_pts(c.ci)}, "
            f"adjusted p={c.p_adjusted:.2g}"
            for c in gaps[:3]
        )
        more = f" (+{len(gaps) - 3} more)" if len(gaps) > 3 else ""
        lines.append(f"reference has {len(gaps)} significant pre-existing gap(s): {shown}{more}")
    else:
        lines.append("reference: no significant accuracy gap between tested groups")
    if below:
        shown = "; ".join(
            f"{b.model} {b.attribute}={b.group} {100 * b.accuracy:.1f}% {label} "
            f"[{100 * b.ci[0]:.1f}, {100 * b.ci[1]:.1f}]" for b in below[:4]
        )
        more = f" (+{len(below) - 4} more)" if len(below) > 4 else ""
        lines.append(f"at or below chance (1/{n_classes} = {100 * chance:.1f}%): {shown}{more}")
    else:
        lines.append(f"no tested group at or below chance (1/{n_classes} = {100 * chance:.1f}%)")
    return AbsoluteState(chance=chance, reference_gaps=gaps, below_chance=below, statements=lines)
