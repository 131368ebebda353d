"""The shapes an audit returns, and their JSON form (both ways).

Every rate is a fraction in [0, 1] (accuracy 0.84, not 84); gaps are differences of
fractions (0.02 = 2 accuracy points). CEV/SDE inputs are percent changes, as in
Simon Says. ``None`` marks a value that is undefined, never NaN or inf: the keys of
``NULL_MEANS`` say why for each field that can be ``None``. ``AuditResult.from_dict``
reads ``to_dict()`` back into these classes. Imports numpy only.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Interval = tuple[float, float]

SCHEMA = "edgefair.fairness/2"

# Why a field can be None; copied into every to_dict() so the JSON explains itself.
NULL_MEANS: dict[str, str] = {
    "recall": "the group has no test sample of this class (recall/TPR undefined)",
    "fpr": "every test sample of the group is of this class (no negatives: FPR undefined)",
    "p_value": "not tested: a group in the comparison is untested (fewer than min_subjects subjects or min_n images)",
    "p_adjusted": "not tested (see p_value)",
    "significant": "not tested (see p_value)",
    "df": "normal quantile: every subject has one image (independent images)",
    "max_min_gap": "fewer than 2 tested groups",
    "largest_gap": "no attribute has 2 tested groups",
    "ci": "no interval (see the field's note)",
    "demographic_parity": "fewer than 2 tested groups",
    "equalized_odds": "fewer than 2 tested groups with the class present",
    "value": "undefined for this group (e.g. no sample of the class, or fewer than 2 tested groups)",
    "reference": "no reference_pred given",
    "reference_ci": "no reference_pred given, or the reference value is undefined",
    "change": "no reference_pred given, or a value is undefined",
    "change_ci": "no reference_pred given, or a value is undefined",
    "reference_accuracy": "no reference_pred given",
    "reference_accuracy_ci": "no reference_pred given",
    "accuracy_change": "no reference_pred given",
    "churn": "no reference_pred given",
    "gap_change": "no reference_pred given; or the group is best_group or more accurate than it, or no group is tested",
    "best_group": "no group is tested",
    "relative_accuracy": "reference accuracy is 0",
    "cev": "no class has a non-zero reference FPR and FNR (see excluded_classes)",
    "sde": "no class has a non-zero reference FPR and FNR (see excluded_classes)",
    "cev_ci": "cev is undefined, or fewer than 2 bootstrap replicates had every used class defined",
    "sde_ci": "sde is undefined, or fewer than 2 bootstrap replicates had every used class defined",
    "cev_noise": "cev is undefined, n_boot was 0, or the two populations differ in size (no exchange null)",
    "sde_noise": "sde is undefined, n_boot was 0, or the two populations differ in size (no exchange null)",
    "cev_p": "see cev_noise",
    "sde_p": "see sde_noise",
    "share_among_cie": "there are no compression-identified exemplars",
    "representation_ratio": "there are no compression-identified exemplars",
    "accuracy_on_cie": "there are no compression-identified exemplars",
    "accuracy_off_cie": "every example is a compression-identified exemplar",
    "n_subjects": "no subject ids given (every image is its own subject)",
    "untested_reason": "the group is tested",
}

# Comparison families: each is adjusted on its own (see family.py); only "verdict" drives
# the verdict, "reference-state" the statement on pre-existing gaps.
FAMILIES = {
    "gap-change": "verdict",
    "reference-gap": "reference-state",
    "pair": "state",
    "vs-rest": "descriptive",
    "accuracy-change": "descriptive",
}


@dataclass
class Comparison:
    """One difference of accuracies, with its interval and p-values.

    ``kind`` and the meaning of ``estimate``:

    - ``gap-change`` (family ``verdict``): for a pair of groups, ``other`` being the one
      more accurate under the artefact, the growth of their gap from reference to
      artefact: (acc_art(other) - acc_art(group)) - (acc_ref(other) - acc_ref(group)).
    - ``reference-gap`` (family ``reference-state``): acc_ref(group) - acc_ref(other),
      ``group`` the more accurate under the reference: a gap that existed before compression.
    - ``pair`` (family ``state``): acc(group) - acc(other) of the audited model,
      ``group`` the more accurate.
    - ``vs-rest`` (descriptive): acc(group) - acc(all other groups pooled), 3+ groups.
    - ``accuracy-change`` (descriptive): acc_art(group) - acc_ref(group), same samples.

    ``method``: ``newcombe`` (hybrid score, independent groups), ``newcombe-paired``,
    ``newcombe-mover`` (difference of two paired intervals); with subject ids the counts
    are divided by each group's design effect (``design_effect``) and the quantile is
    Student t with ``df`` = subjects - groups. ``p_value`` inverts the reported
    interval (p < alpha iff ``ci`` excludes 0); ``p_adjusted`` is adjusted within the
    comparison's ``family`` (weighted Holm, see AuditSettings.family_procedure) and
    ``significant`` is p_adjusted < alpha.
    """

    id: str
    kind: str
    family: str
    attribute: str
    group: str
    other: str
    estimate: float
    ci: Interval | None
    method: str
    n: int
    n_other: int
    subjects: int | None = None
    subjects_other: int | None = None
    design_effect: list[float] = field(default_factory=list)
    df: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    significant: bool | None = None
    note: str = ""

    @property
    def tested(self) -> bool:
        return self.p_value is not None

    @property
    def descriptive(self) -> bool:
        return self.family not in ("verdict", "reference-state")


@dataclass
class Metric:
    """A value with its interval, the reference model's value and the change under
    compression (artefact - reference, paired: the same resampled subjects)."""

    value: float | None
    ci: Interval | None = None
    reference: float | None = None
    reference_ci: Interval | None = None
    change: float | None = None
    change_ci: Interval | None = None


@dataclass
class GroupMetrics:
    """The seed studies' per-group metrics: macro-F1 (Fan et al.), per-class recall and
    prediction churn (share of the group's samples whose prediction differs from the
    reference's; ``None`` without a reference)."""

    macro_f1: Metric
    recall: dict[str, Metric]
    churn: Metric | None = None


@dataclass
class GroupResult:
    """Metrics of one group (of one attribute or intersection)."""

    attribute: str
    group: str
    n: int
    tested: bool  # >= min_n images and >= min_subjects subjects
    accuracy: float
    accuracy_ci: Interval  # Wilson on the effective sample size (subject design effect)
    macro_f1: float
    balanced_accuracy: float
    recall: dict[str, float | None]  # per class (one-vs-rest TPR)
    fpr: dict[str, float | None]  # per class, one-vs-rest
    selection_rate: dict[str, float]  # per class: share of the group predicted as it
    n_subjects: int | None = None
    design_effect: float = 1.0  # of the artefact's correctness
    untested_reason: str | None = None
    reference_accuracy: float | None = None
    reference_accuracy_ci: Interval | None = None
    accuracy_change: Comparison | None = None
    gap_change: Comparison | None = None  # vs best_group
    metrics: GroupMetrics | None = None


@dataclass
class ClassGaps:
    """Per class, max - min across tested groups of one per-group rate."""

    rate: str  # "selection_rate" | "tpr" | "fpr"
    per_class: dict[str, float | None]
    max: float | None
    worst_class: str | None


@dataclass
class AttributeMetrics:
    """Multiclass demographic parity (largest across classes of the spread of per-class
    prediction rates across tested groups) and the equalised-odds gap (largest across
    classes of the TPR or FPR spread), each with interval, reference value and change."""

    demographic_parity: Metric
    equalized_odds: Metric


@dataclass
class AttributeResult:
    """All groups of one attribute (or intersection such as ``gender×skin_tone``)."""

    name: str
    members: tuple[str, ...]  # the sensitive attributes it is made of
    groups: list[GroupResult]
    insufficient_groups: list[str]  # untested groups
    n_missing: int  # samples left out: a missing value in a member attribute
    max_min_gap: Comparison | None  # the pair (most, least accurate) of tested groups
    demographic_parity: ClassGaps
    equalized_odds_tpr: ClassGaps
    equalized_odds_fpr: ClassGaps
    equalized_odds: float | None  # max of the two above
    # Most accurate tested group under the artefact; GroupResult.gap_change is each
    # group's gap-change comparison with it.
    best_group: str | None = None
    metrics: AttributeMetrics | None = None

    def group(self, label: str) -> GroupResult:
        for g in self.groups:
            if g.group == label:
                return g
        raise KeyError(f"attribute {self.name!r} has no group {label!r}")


@dataclass
class LargestGap:
    """The largest accuracy gap of the audited model between two tested groups, over
    every audited attribute and intersection: ``high`` - ``low`` >= 0.

    ``ci`` is the pair's own interval; ``ci_simultaneous`` holds for all ``candidates``
    pairs at once (Bonferroni), so it stays valid for the pair picked as the largest.
    """

    attribute: str
    high: str
    low: str
    estimate: float
    ci: Interval | None
    ci_simultaneous: Interval | None
    p_value: float | None
    p_adjusted: float | None
    candidates: int
    selection: str


@dataclass
class ChanceGroup:
    """A tested group whose accuracy is at or below chance (1 / number of classes)."""

    model: str  # "artefact" | "reference"
    attribute: str
    group: str
    accuracy: float
    ci: Interval
    n: int
    n_subjects: int | None
    below_chance_significant: bool  # the interval's upper bound is below chance


@dataclass
class AbsoluteState:
    """What holds whatever compression did: significant pre-existing gaps (the
    reference's own gaps, family ``reference-state``; the audited model's when no
    reference is given) and tested groups at or below chance accuracy."""

    chance: float
    reference_gaps: list[Comparison]
    below_chance: list[ChanceGroup]
    statements: list[str]


@dataclass
class ErrorShift:
    """Simon Says (Blakeney et al. 2021) CEV and SDE over one-vs-rest class error rates.

    delta_* are percent changes 100*(S - T)/T of the compressed (S, averaged over its
    population) against the reference (T, averaged likewise). ``cev_ci``/``sde_ci``:
    percentile intervals of a bootstrap over subjects (images when no subject ids);
    ``cev_noise``/``sde_noise``: what noise alone reaches (1 - alpha quantile when each
    subject's predictions are swapped between the two models at random) and
    ``cev_p``/``sde_p`` the p-value of that paired permutation test.
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
    cev_ci: Interval | None = None
    sde_ci: Interval | None = None
    n_boot_valid: int = 0  # bootstrap replicates with every used class defined
    cev_noise: float | None = None
    sde_noise: float | None = None
    cev_p: float | None = None
    sde_p: float | None = None


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
    churn: Metric | None = None  # 1 - agreement, with its interval


@dataclass(frozen=True)
class VerdictThresholds:
    """Knobs of the verdict (alpha, min_n and min_subjects are audit() arguments).

    - ``min_relative_accuracy``: accuracy-drop when artefact accuracy is below this
      times the reference accuracy (MLPerf's 99 % rule).
    - ``gap_widening_points``: gap-widened needs the absolute gap between two groups
      to grow by at least this many accuracy points (and the change to be significant
      in the verdict family).
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

    Labels: ``reference`` (no reference_pred: nothing to compare, the audited model is
    the reference), else by precedence gap-widened > accuracy-drop >
    insufficient-evidence > pass. ``pass`` means "compression changed nothing
    significant", never "fair": see AuditResult.state.
    """

    label: str
    flags: list[str]
    reasons: list[str]


@dataclass
class AuditSettings:
    alpha: float
    min_n: int
    min_subjects: int
    keep_missing: bool
    n_boot: int
    seed: int
    interval_method: str
    family_procedure: str
    n_verdict_tests: int  # size of the verdict family
    ci_label: str
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
    state: AbsoluteState
    largest_gap: LargestGap | None
    has_subjects: bool
    notes: list[str] = field(default_factory=list)

    def attribute(self, name: str) -> AttributeResult:
        for a in self.attributes:
            if a.name == name:
                return a
        raise KeyError(f"no attribute {name!r}; audited: {', '.join(a.name for a in self.attributes)}")

    @property
    def significant(self) -> list[Comparison]:
        """Comparisons significant within their family (any family)."""
        return [c for c in self.comparisons if c.significant]

    def family(self, name: str) -> list[Comparison]:
        """The comparisons of one family: verdict, reference-state, state, descriptive."""
        return [c for c in self.comparisons if c.family == name]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (json.dumps(..., allow_nan=False) works): None, never NaN/inf."""
        out = jsonable(self)
        out["schema"] = SCHEMA
        out["null_means"] = dict(NULL_MEANS)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditResult:
        """Read ``to_dict()`` back; raises ValueError on another schema."""
        schema = data.get("schema")
        if schema != SCHEMA:
            raise ValueError(f"audit schema {schema!r} is not {SCHEMA!r}")
        return from_jsonable(cls, data)


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


def _decode(tp: Any, value: Any) -> Any:
    """One JSON value as type ``tp`` (a resolved annotation)."""
    if value is None or tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decode(options[0], value) if len(options) == 1 else value
    if dataclasses.is_dataclass(tp):
        return from_jsonable(tp, value)
    if origin is list:
        (item,) = typing.get_args(tp)
        return [_decode(item, v) for v in value]
    if origin is tuple:
        args = typing.get_args(tp)
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        return tuple(_decode(a, v) for a, v in zip(items, value, strict=False))
    if origin is dict:
        _, item = typing.get_args(tp)
        return {k: _decode(item, v) for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def from_jsonable(cls: Any, data: dict[str, Any]) -> Any:
    """Build dataclass ``cls`` from its ``jsonable`` dict (unknown keys are ignored)."""
    hints = typing.get_type_hints(cls)
    kwargs = {f.name: _decode(hints[f.name], data[f.name]) for f in dataclasses.fields(cls) if f.name in data}
    return cls(**kwargs)
