"""One artefact's audit in one record, shared by the CLI table, the report and the gate.

Two statements per artefact: the compression effect (``verdict``, ``gap_change``,
``accuracy_change``) and the absolute state (``reference_gaps``: significant
pre-existing gaps of the reference; ``below_chance``: tested groups at or below 1/C,
in the artefact or the reference). ``to_dict``/``from_dict`` make a JSON round trip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgefair.fairness.compression import CEV_EXPLAINED, SDE_EXPLAINED
from edgefair.fairness.result import AuditResult, Comparison, Interval, from_jsonable, jsonable
from edgefair.fairness.verdict import gaps_of, widened

SUMMARY_SCHEMA = "edgefair.fairness.summary/1"
VERDICTS = ("reference", "pass", "gap-widened", "accuracy-drop", "insufficient-evidence")


@dataclass
class Change:
    """An accuracy change vs the reference (artefact - reference, paired)."""

    estimate: float
    ci: Interval | None
    p_value: float | None


@dataclass
class GapSummary:
    """The largest accuracy gap between two tested groups (see LargestGap)."""

    attribute: str
    high: str
    low: str
    estimate: float
    ci: Interval | None
    ci_simultaneous: Interval | None
    p_adjusted: float | None
    selection: str


@dataclass
class GapChangeSummary:
    """The largest widening: growth of the gap ``other`` - ``group`` under compression."""

    attribute: str
    group: str  # the group that fell behind
    other: str  # the more accurate group under the artefact
    estimate: float
    ci: Interval | None
    p_value: float | None
    p_adjusted: float | None
    significant: bool | None
    widened: bool  # significant and the absolute gap grew by >= the threshold
    reference_gap: float
    artefact_gap: float
    selection: str


@dataclass
class StateGap:
    """A significant pre-existing gap: acc(high) - acc(low) of the reference."""

    attribute: str
    high: str
    low: str
    estimate: float
    ci: Interval | None
    p_adjusted: float | None


@dataclass
class ChanceSummary:
    model: str  # "artefact" | "reference"
    attribute: str
    group: str
    accuracy: float
    ci: Interval
    below_chance_significant: bool


@dataclass
class AuditSummary:
    """What the CLI table, the report and the gate show of one artefact."""

    verdict: str  # reference | pass | gap-widened | accuracy-drop | insufficient-evidence
    flags: list[str]
    verdict_reasons: list[str]
    is_reference: bool
    n: int
    n_classes: int
    chance: float
    alpha: float
    ci_label: str
    accuracy: float
    accuracy_ci: Interval
    reference_accuracy: float | None
    accuracy_change: Change | None
    largest_gap: GapSummary | None
    gap_change: GapChangeSummary | None
    reference_gaps: list[StateGap]
    below_chance: list[ChanceSummary]
    cev: float | None
    cev_ci: Interval | None
    cev_noise: float | None  # what noise alone reaches (exchange null, 1 - alpha quantile)
    cev_p: float | None
    sde: float | None
    sde_ci: Interval | None
    sde_noise: float | None
    sde_p: float | None
    churn: float | None
    churn_ci: Interval | None
    untested: list[str]
    statements: list[str]  # compression effect first, then the absolute state
    cev_explained: str = CEV_EXPLAINED
    sde_explained: str = SDE_EXPLAINED
    schema: str = SUMMARY_SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (None, never NaN)."""
        out: dict[str, Any] = jsonable(self)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditSummary:
        if data.get("schema") != SUMMARY_SCHEMA:
            raise ValueError(f"summary schema {data.get('schema')!r} is not {SUMMARY_SCHEMA!r}")
        out: AuditSummary = from_jsonable(cls, data)
        return out


def _gap_change(result: AuditResult) -> GapChangeSummary | None:
    tested = [c for c in result.comparisons if c.kind == "gap-change" and c.tested]
    if not tested:
        return None
    th = result.settings.thresholds
    grown = [c for c in tested if widened(c, result.attributes, th)]
    pick: Comparison = max(grown or tested, key=lambda c: c.estimate)
    selection = (
        f"the widened gap with the largest growth ({len(grown)} widened of {len(tested)} tested gap changes)"
        if grown else f"the largest gap growth among {len(tested)} tested gap changes (none widened)"
    )
    ref_gap, art_gap = gaps_of(pick, result.attributes)
    return GapChangeSummary(
        attribute=pick.attribute, group=pick.group, other=pick.other, estimate=pick.estimate, ci=pick.ci,
        p_value=pick.p_value, p_adjusted=pick.p_adjusted, significant=pick.significant, widened=bool(grown),
        reference_gap=ref_gap, artefact_gap=art_gap, selection=selection,
    )


def _compression_statement(verdict: str, reasons: list[str], is_reference: bool) -> str:
    if is_reference:
        return "reference: the uncompressed model the others are compared with (no compression verdict)"
    first = reasons[0] if reasons else verdict
    return f"compression effect: {first}"


def _shift_fields(es: Any) -> dict[str, Any]:
    """CEV/SDE with their intervals, noise levels and p-values (None without a reference)."""
    names = ("cev", "cev_ci", "cev_noise", "cev_p", "sde", "sde_ci", "sde_noise", "sde_p")
    return {k: getattr(es, k) if es is not None else None for k in names}


def _reference_fields(ref: Any) -> dict[str, Any]:
    """Accuracy change and churn against the reference (None without one)."""
    if ref is None:
        return {"reference_accuracy": None, "accuracy_change": None, "churn": None, "churn_ci": None}
    change = ref.accuracy_change
    return {"reference_accuracy": ref.accuracy,
            "accuracy_change": Change(change.estimate, change.ci, change.p_value),
            "churn": ref.churn.value if ref.churn is not None else None,
            "churn_ci": ref.churn.ci if ref.churn is not None else None}


def _largest_gap(lg: Any) -> GapSummary | None:
    if lg is None:
        return None
    return GapSummary(lg.attribute, lg.high, lg.low, lg.estimate, lg.ci, lg.ci_simultaneous, lg.p_adjusted,
                      lg.selection)


def summarize(result: AuditResult, *, is_reference: bool) -> AuditSummary:
    """The summary of one audit; ``is_reference`` labels the reference artefact."""
    ref = result.reference
    verdict = "reference" if is_reference else result.verdict.label
    reasons = list(result.verdict.reasons)
    return AuditSummary(
        verdict=verdict,
        flags=list(result.verdict.flags),
        verdict_reasons=reasons,
        is_reference=is_reference,
        n=result.n,
        n_classes=len(result.class_names),
        chance=result.state.chance,
        alpha=result.settings.alpha,
        ci_label=result.settings.ci_label,
        accuracy=result.accuracy,
        accuracy_ci=result.accuracy_ci,
        largest_gap=_largest_gap(result.largest_gap),
        gap_change=None if is_reference else _gap_change(result),
        reference_gaps=[
            StateGap(c.attribute, c.group, c.other, c.estimate, c.ci, c.p_adjusted) for c in result.state.reference_gaps
        ],
        below_chance=[
            ChanceSummary(b.model, b.attribute, b.group, b.accuracy, b.ci, b.below_chance_significant)
            for b in result.state.below_chance
        ],
        untested=[f"{a.name}={g.group} ({g.untested_reason})" for a in result.attributes for g in a.groups
                  if not g.tested],
        statements=[_compression_statement(verdict, reasons, is_reference), *result.state.statements],
        **_reference_fields(ref),
        **_shift_fields(ref.error_shift if ref is not None else None),
    )
