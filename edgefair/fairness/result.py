"""The shapes an audit returns, and their JSON form.

Every rate is a fraction in [0, 1] (accuracy 0.84, not 84); gaps are differences of
fractions (0.02 = 2 accuracy points). CEV/SDE inputs are percent changes, as in
Simon Says. ``None`` marks a value that is undefined, never NaN or inf: the keys of
``NULL_MEANS`` say why for each field that can be ``None``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Interval = tuple[float, float]

SCHEMA = "edgefair.fairness/1"

# Why a field can be None; copied into every to_dict() so the JSON explains itself.
NULL_MEANS: dict[str, str] = {
    "recall": "the group has no test sample of this class (recall/TPR undefined)",
    "fpr": "every test sample of the group is of this class (no negatives: FPR undefined)",
    "p_value": "not tested: a group in the comparison has n < min_n (insufficient evidence)",
    "p_holm": "not tested (see p_value)",
    "significant": "not tested (see p_value)",
    "max_min_gap": "fewer than 2 groups",
    "ci": "no interval: a group in the comparison has fewer than 2 subjects to resample",
    "demographic_parity": "fewer than 2 groups with n >= min_n",
    "equalized_odds": "fewer than 2 groups with n >= min_n and the class present",
    "reference": "no reference_pred given",
    "reference_accuracy": "no reference_pred given",
    "accuracy_change": "no reference_pred given",
    "gap_change": (
        "no reference_pred given; or this is best_group or more accurate than it "
        "(possible for a group with n < min_n); or no group has n >= min_n"
    ),
    "relative_accuracy": "reference accuracy is 0",
    "cev": "no class has a non-zero reference FPR and FNR (see excluded_classes)",
    "sde": "no class has a non-zero reference FPR and FNR (see excluded_classes)",
    "share_among_cie": "there are no compression-identified exemplars",
    "representation_ratio": "there are no compression-identified exemplars",
    "accuracy_on_cie": "there are no compression-identified exemplars",
    "accuracy_off_cie": "every example is a compression-identified exemplar",
    "n_subjects": "no subject ids given",
    "n_boot": "no subject ids given: analytic (Newcombe) intervals, no bootstrap",
}


@dataclass
class Comparison:
    """One tested difference of accuracies, with its interval and p-values.

    ``kind`` and the meaning of ``estimate``:

    - ``pair``: acc(group) - acc(other), group being the more accurate of the two.
    - ``vs-rest``: acc(group) - acc(all other groups pooled); only for attributes with
      3+ groups (with 2 it is the pair).
    - ``accuracy-change``: artefact acc(group) - reference acc(group), same samples.
    - ``gap-change``: for every pair of groups, ``other`` being the one more accurate
      under the artefact, the growth of their gap from reference to artefact:
      (acc_art(other) - acc_art(group)) - (acc_ref(other) - acc_ref(group)).

    ``method``: ``newcombe`` (hybrid score, independent), ``newcombe-paired``,
    ``newcombe-mover`` (difference of two paired intervals), ``cluster-bootstrap``
    (normal interval from the stratified subject bootstrap's standard error).
    ``p_value`` inverts the same interval, so p < alpha iff ``ci`` excludes 0;
    ``p_holm`` is Holm-adjusted over every tested comparison of the audit.
    """

    id: str
    kind: str
    attribute: str
    group: str
    other: str
    estimate: float
    ci: Interval | None
    method: str
    n: int
    n_other: int
    p_value: float | None = None
    p_holm: float | None = None
    significant: bool | None = None
    note: str = ""

    @property
    def tested(self) -> bool:
        return self.p_value is not None


@dataclass
class GroupResult:
    """Metrics of one group (of one attribute or intersection)."""

    attribute: str
    group: str
    n: int
    sufficient: bool  # n >= min_n
    accuracy: float
    accuracy_ci: Interval  # Wilson
    macro_f1: float
    balanced_accuracy: float
    recall: dict[str, float | None]  # per class (one-vs-rest TPR)
    fpr: dict[str, float | None]  # per class, one-vs-rest
    selection_rate: dict[str, float]  # per class: share of the group predicted as it
    n_subjects: int | None = None
    reference_accuracy: float | None = None
    reference_accuracy_ci: Interval | None = None
    accuracy_change: Comparison | None = None
    gap_change: Comparison | None = None


@dataclass
class ClassGaps:
    """Per class, max - min across groups with n >= min_n of one per-group rate."""

    rate: str  # "selection_rate" | "tpr" | "fpr"
    per_class: dict[str, float | None]
    max: float | None
    worst_class: str | None


@dataclass
class AttributeResult:
    """All groups of one attribute (or intersection such as ``gender×skin_tone``)."""

    name: str
    members: tuple[str, ...]  # the sensitive attributes it is made of
    groups: list[GroupResult]
    insufficient_groups: list[str]
    max_min_gap: Comparison | None  # the pair (most accurate, least accurate), n >= min_n when possible
    demographic_parity: ClassGaps
    equalized_odds_tpr: ClassGaps
    equalized_odds_fpr: ClassGaps
    equalized_odds: float | None  # max of the two above
    # Most accurate group (n >= min_n) under the artefact; GroupResult.gap_change is
    # each group's gap-change comparison with it.
    best_group: str | None = None

    def group(self, label: str) -> GroupResult:
        for g in self.groups:
            if g.group == label:
                return g
        raise KeyError(f"attribute {self.name!r} has no group {label!r}")


@dataclass
class ErrorShift:
    """Simon Says (Blakeney et al. 2021) CEV and SDE over one-vs-rest class error rates.

    delta_* are percent changes 100*(S - T)/T of the compressed (S, averaged over its
    population) against the reference (T, averaged likewise).
    """

    cev: float | None
    sde: float | None
    classes: list[str]  # classes that entered CEV/SDE
    excluded_classes: dict[str, str]  # class -> why it was left out
    delta_fpr: dict[str, float]
    delta_fnr: dict[str, float]
    reference_fpr: dict[str, float | None]
    reference_fnr: dict[str, float | None]
    compressed_fpr: dict[str, float | None]
    compressed_fnr: dict[str, float | None]
    n_reference_models: int
    n_compressed_models: int


@dataclass
class CIEGroupShare:
    """How one group is represented among the compression-identified exemplars."""

    attribute: str
    group: str
    n: int
    share_of_test: float
    n_cie: int
    share_among_cie: float | None
    share_among_cie_ci: Interval | None  # Wilson
    representation_ratio: float | None  # share_among_cie / share_of_test (>1: over-represented)
    cie_rate: float  # n_cie / n


@dataclass
class CIEResult:
    """Compression-identified exemplars (Hooker et al. 2020)."""

    definition: str  # "disagreement" (one model per side) | "modal-label" (populations)
    n: int
    share: float
    indices: list[int]
    accuracy_on_cie: dict[str, float | None]  # {"compressed": ..., "reference": ...}
    accuracy_off_cie: dict[str, float | None]
    groups: list[CIEGroupShare]
    n_reference_models: int
    n_compressed_models: int


@dataclass
class ReferenceResult:
    """The artefact against the uncompressed reference model on the same samples."""

    accuracy: float
    accuracy_ci: Interval
    relative_accuracy: float | None  # artefact accuracy / reference accuracy
    agreement: float  # share of samples with the same predicted label
    accuracy_change: Comparison
    error_shift: ErrorShift
    cie: CIEResult


@dataclass(frozen=True)
class VerdictThresholds:
    """Knobs of the verdict (alpha and min_n are audit() arguments).

    - ``min_relative_accuracy``: accuracy-drop when artefact accuracy is below this
      times the reference accuracy (MLPerf's 99 % rule).
    - ``gap_widening_points``: gap-widened needs the absolute gap between two groups
      to grow by at least this many accuracy points (and the change to be Holm-significant).
    """

    min_relative_accuracy: float = 0.99
    gap_widening_points: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.min_relative_accuracy <= 1:
            raise ValueError(
                f"min_relative_accuracy must be in (0, 1], got {self.min_relative_accuracy!r}"
            )
        if not self.gap_widening_points >= 0:
            raise ValueError(f"gap_widening_points must be >= 0, got {self.gap_widening_points!r}")


@dataclass
class Verdict:
    """One label per artefact, every label that applied, and the reasons in words.

    Precedence: gap-widened > accuracy-drop > insufficient-evidence > pass.
    """

    label: str
    flags: list[str]
    reasons: list[str]


@dataclass
class AuditSettings:
    alpha: float
    min_n: int
    n_boot: int | None
    seed: int
    interval_method: str  # "newcombe" | "cluster-bootstrap"
    n_tested: int  # size of the Holm family
    thresholds: VerdictThresholds


@dataclass
class AuditResult:
    """Everything one audit found. Same shape whatever the number of attributes."""

    n: int
    class_names: list[str]
    accuracy: float
    accuracy_ci: Interval
    macro_f1: float
    balanced_accuracy: float
    recall: dict[str, float | None]
    attributes: list[AttributeResult]
    comparisons: list[Comparison]
    reference: ReferenceResult | None
    verdict: Verdict
    settings: AuditSettings
    notes: list[str] = field(default_factory=list)

    def attribute(self, name: str) -> AttributeResult:
        for a in self.attributes:
            if a.name == name:
                return a
        raise KeyError(f"no attribute {name!r}; audited: {', '.join(a.name for a in self.attributes)}")

    @property
    def significant(self) -> list[Comparison]:
        """Comparisons whose Holm-adjusted p-value is below alpha."""
        return [c for c in self.comparisons if c.significant]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (json.dumps(..., allow_nan=False) works): None, never NaN/inf."""
        out = jsonable(self)
        out["schema"] = SCHEMA
        out["null_means"] = dict(NULL_MEANS)
        return out


def jsonable(obj: Any) -> Any:
    """Dataclasses, numpy values, tuples and dicts to plain JSON types; NaN/inf -> None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)
