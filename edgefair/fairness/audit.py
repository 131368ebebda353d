"""audit(): one artefact's predictions -> per-group metrics, gaps, comparison with the
reference, CEV/SDE, CIEs, the absolute state and a verdict.

Imports numpy, pandas and (through groups) fairlearn; no I/O.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgefair.contracts.audit import MIN_SUBJECTS  # chosen by simulation: see its comment
from edgefair.fairness.cie import compression_identified_exemplars
from edgefair.fairness.clusters import cluster_layout, design_effect
from edgefair.fairness.compression import error_shift
from edgefair.fairness.family import comparison_weights, procedure_text, weighted_holm
from edgefair.fairness.gaps import REST, Estimates, GroupEvidence
from edgefair.fairness.groups import (
    ConfusionStats,
    GroupTable,
    confusion,
    confusion_stats,
    group_tables,
)
from edgefair.fairness.inputs import LEFT_OUT, AuditInputs, check_settings, validate
from edgefair.fairness.intervals import quantile, wilson_q
from edgefair.fairness.metrics import MetricInputs, group_metrics
from edgefair.fairness.parity import parity
from edgefair.fairness.result import (
    FAMILIES,
    AttributeResult,
    AuditResult,
    AuditSettings,
    Comparison,
    GroupResult,
    Metric,
    ReferenceResult,
    VerdictThresholds,
)
from edgefair.fairness.state import absolute_state, ci_label, largest_gap
from edgefair.fairness.verdict import decide

OVERALL = "(all)"


def _rng(seed: int, name: str) -> np.random.Generator:
    """A stream keyed by the seed and a name (an attribute), never by position: adding,
    removing or reordering attributes leaves every other attribute's draws unchanged."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(zlib.crc32(name.encode("utf-8")),)))


def _per_class(names: Sequence[str], values: np.ndarray) -> dict[str, float | None]:
    return {n: (float(v) if np.isfinite(v) else None) for n, v in zip(names, values, strict=False)}


def _interval(lo: float, hi: float) -> tuple[float, float]:
    return float(lo), float(hi)


class _AttributeAudit:
    """Builds one AttributeResult and its comparisons."""

    def __init__(
        self, table: GroupTable, inp: AuditInputs, correct: np.ndarray, ref_correct: np.ndarray | None, *,
        min_n: int, min_subjects: int, alpha: float, n_boot: int, seed: int,
    ) -> None:
        self.t, self.inp, self.alpha = table, inp, alpha
        self.min_n, self.min_subjects, self.n_boot, self.seed = min_n, min_subjects, n_boot, seed
        self.mask = table.included
        self.layout = cluster_layout(table.codes[self.mask], inp.subject_codes[self.mask], len(table.labels))
        self.ev = GroupEvidence(
            self.layout, correct[self.mask], None if ref_correct is None else ref_correct[self.mask], alpha=alpha
        )
        self.stats = [confusion_stats(cm) for cm in table.confusion]
        self.ref_stats: list[ConfusionStats] | None = (
            [confusion_stats(cm) for cm in table.reference_confusion] if table.reference_confusion else None
        )
        self.subjects = self.layout.subjects
        self.reasons = [self._untested(g) for g in range(len(table.labels))]
        self.ok = np.array([r is None for r in self.reasons], dtype=bool)
        self.comparisons: list[Comparison] = []

    def _untested(self, g: int) -> str | None:
        why = []
        if self.stats[g].n < self.min_n:
            why.append(f"n={self.stats[g].n} < min_n={self.min_n}")
        if self.subjects[g] < self.min_subjects:
            unit = "subjects" if self.inp.subjects is not None else "images (no subject ids)"
            why.append(f"{self.subjects[g]} {unit} < min_subjects={self.min_subjects}")
        return "; ".join(why) or None

    def _why(self, *groups: int) -> str:
        labels = self.t.labels
        return "; ".join(
            f"{labels[g]!r} has {self.reasons[g]}" for g in dict.fromkeys(groups) if g != REST and not self.ok[g]
        )

    def _record(
        self, kind: str, a: np.ndarray, b: np.ndarray, est: Estimates, other: str | None = None
    ) -> list[Comparison]:
        """One Comparison per element: group a vs b (an index or REST)."""
        labels, n, subj = self.t.labels, self.ev.n, self.subjects
        out = []
        for i, (ga, gb) in enumerate(zip(a.tolist(), b.tolist(), strict=False)):
            why = self._why(ga, gb)
            n_other = int(n.sum() - n[ga]) if gb == REST else int(n[gb])
            s_other = int(subj.sum() - subj[ga]) if gb == REST else int(subj[gb])
            name = other or ("rest" if gb == REST else labels[gb])
            c = Comparison(
                id=f"{kind}:{self.t.name}:{labels[ga]}|{name}",
                kind=kind,
                family=FAMILIES[kind],
                attribute=self.t.name,
                group=labels[ga],
                other=name,
                estimate=float(est.estimate[i]),
                ci=_interval(est.lo[i], est.hi[i]),
                method=est.method,
                n=int(n[ga]),
                n_other=n_other if kind != "accuracy-change" else int(n[ga]),
                subjects=int(subj[ga]) if self.inp.subjects is not None else None,
                subjects_other=(s_other if kind != "accuracy-change" else int(subj[ga]))
                if self.inp.subjects is not None else None,
                design_effect=est.deff[i],
                df=float(est.df[i]) if np.isfinite(est.df[i]) else None,
                p_value=None if why else float(est.p[i]),
                note=f"insufficient evidence: {why}" if why else "",
            )
            out.append(c)
        self.comparisons.extend(out)
        return out

    def _ordered_pairs(self, acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every pair (a < b) as (more accurate, less accurate) by ``acc`` (ties: lower index first)."""
        k = len(self.t.labels)
        a, b = np.triu_indices(k, 1)
        swap = acc[b] > acc[a]
        return np.where(swap, b, a), np.where(swap, a, b)

    def _groups(self) -> list[GroupResult]:
        names, ev = self.inp.class_names, self.ev
        lo, hi = ev.accuracy_ci("artefact")
        ref_ci = ev.accuracy_ci("reference") if self.ref_stats is not None else None
        metrics, self.attr_metrics = group_metrics(
            MetricInputs(
                layout=self.layout,
                y_true=self.inp.y_true[self.mask],
                y_pred=self.inp.y_pred[self.mask],
                reference_pred=None if self.inp.reference_pred is None else self.inp.reference_pred[self.mask],
                confusion=self.t.confusion,
                reference_confusion=self.t.reference_confusion,
                tested=self.ok,
                class_names=names,
            ),
            n_boot=self.n_boot,
            rng=_rng(self.seed, self.t.name),
            alpha=self.alpha,
        )
        out = []
        for g, (label, s) in enumerate(zip(self.t.labels, self.stats, strict=False)):
            r = self.ref_stats[g] if self.ref_stats else None
            out.append(
                GroupResult(
                    attribute=self.t.name,
                    group=label,
                    n=s.n,
                    tested=bool(self.ok[g]),
                    accuracy=s.accuracy,
                    accuracy_ci=_interval(lo[g], hi[g]),
                    macro_f1=s.macro_f1,
                    balanced_accuracy=s.balanced_accuracy,
                    recall=_per_class(names, s.recall),
                    fpr=_per_class(names, s.fpr),
                    selection_rate={k: float(v) for k, v in zip(names, s.selection_rate, strict=False)},
                    n_subjects=int(self.subjects[g]) if self.inp.subjects is not None else None,
                    design_effect=float(ev.deff[g]),
                    untested_reason=self.reasons[g],
                    reference_accuracy=r.accuracy if r else None,
                    reference_accuracy_ci=_interval(ref_ci[0][g], ref_ci[1][g]) if r and ref_ci else None,
                    metrics=metrics[g],
                )
            )
        return out

    def build(self) -> AttributeResult:
        groups = self._groups()
        ev, k = self.ev, len(groups)
        acc = np.array([s.accuracy for s in self.stats])
        hi, lo = self._ordered_pairs(acc)
        pairs = self._record("pair", hi, lo, ev.difference(hi, lo))
        pair_of = {frozenset((int(a), int(b))): c for a, b, c in zip(hi, lo, pairs, strict=False)}
        if k >= 3:
            every = np.arange(k)
            self._record("vs-rest", every, np.full(k, REST), ev.difference(every, np.full(k, REST)))

        tested = np.flatnonzero(self.ok)
        max_min = None
        best = None
        if tested.size >= 2:
            ranked = tested[np.argsort(acc[tested], kind="stable")]
            max_min = pair_of[frozenset((int(ranked[0]), int(ranked[-1])))]
        if tested.size:
            best = int(tested[np.argmax(acc[tested])])
        if self.ref_stats is not None:
            every = np.arange(k)
            for g, c in enumerate(self._record("accuracy-change", every, every, ev.change(every), other="reference")):
                groups[g].accuracy_change = c
            ref_acc = np.array([s.accuracy for s in self.ref_stats])
            r_hi, r_lo = self._ordered_pairs(ref_acc)
            self._record("reference-gap", r_hi, r_lo, ev.difference(r_hi, r_lo, "reference"))
            # Oriented by the artefact's more accurate group ``hi``; the test is two-sided,
            # so the orientation does not bias it.
            for a, b, c in zip(hi, lo, self._record("gap-change", lo, hi, ev.gap_change(hi, lo)), strict=False):
                if best is not None and int(a) == best:
                    groups[int(b)].gap_change = c

        dp, eo_tpr, eo_fpr, eo = parity([self.stats[g] for g in tested], self.inp.class_names)
        return AttributeResult(
            name=self.t.name,
            members=self.t.members,
            groups=groups,
            insufficient_groups=[groups[g].group for g in range(k) if not self.ok[g]],
            n_missing=self.t.n_missing,
            max_min_gap=max_min,
            demographic_parity=dp,
            equalized_odds_tpr=eo_tpr,
            equalized_odds_fpr=eo_fpr,
            equalized_odds=eo,
            best_group=groups[best].group if best is not None else None,
            metrics=self.attr_metrics,
        )


def _adjust(comparisons: Sequence[Comparison], intersections: set[str], alpha: float) -> int:
    """Weighted Holm within each kind (the overall change alone); returns the verdict family size."""
    size = 0
    for kind in FAMILIES:
        family = [c for c in comparisons if c.kind == kind and c.tested and c.attribute != OVERALL]
        if kind == "gap-change":
            size = len(family)
        weights = comparison_weights([c.attribute for c in family], intersections)
        for c, adjusted in zip(family, weighted_holm([float(c.p_value or 0.0) for c in family], weights), strict=False):
            c.p_adjusted = adjusted
            c.significant = adjusted < alpha
    for c in comparisons:
        if c.attribute == OVERALL and c.tested:
            c.p_adjusted = c.p_value
            c.significant = bool(c.p_value is not None and c.p_value < alpha)
    return size


def _reference(
    inp: AuditInputs, tables: Sequence[GroupTable], reference_pred: np.ndarray, overall_acc: float,
    *, alpha: float, n_boot: int, seed: int,
) -> ReferenceResult:
    """The artefact against the reference on all samples: accuracy change, churn, CEV/SDE, CIE."""
    names, c = inp.class_names, inp.n_classes
    correct, ref_correct = inp.y_pred == inp.y_true, reference_pred == inp.y_true
    ref_stats = confusion_stats(confusion(inp.y_true, reference_pred, n_classes=c))
    layout = cluster_layout(np.zeros(inp.n, dtype=np.int64), inp.subject_codes, 1)
    ev = GroupEvidence(layout, correct, ref_correct, alpha=alpha)
    est = ev.change(np.array([0]))
    change = Comparison(
        id=f"accuracy-change:{OVERALL}:{OVERALL}|reference", kind="accuracy-change", family="descriptive",
        attribute=OVERALL, group=OVERALL, other="reference", estimate=float(est.estimate[0]),
        ci=_interval(est.lo[0], est.hi[0]), method=est.method, n=inp.n, n_other=inp.n,
        subjects=int(layout.subjects[0]) if inp.subjects is not None else None,
        subjects_other=int(layout.subjects[0]) if inp.subjects is not None else None,
        design_effect=est.deff[0], df=float(est.df[0]) if np.isfinite(est.df[0]) else None,
        p_value=float(est.p[0]),
    )
    differ = inp.y_pred != reference_pred
    deff = float(design_effect(layout, differ)[0])
    df = np.inf if not ev.clustered else max(float(layout.subjects[0]) - 1.0, 1.0)
    lo, hi = wilson_q(differ.sum() / deff, inp.n / deff, quantile(alpha, df))
    ref_preds = inp.reference_population or [reference_pred]
    comp_preds = inp.compressed_population or [inp.y_pred]
    ref_lo, ref_hi = ev.accuracy_ci("reference")
    return ReferenceResult(
        accuracy=ref_stats.accuracy,
        accuracy_ci=_interval(ref_lo[0], ref_hi[0]),
        relative_accuracy=(overall_acc / ref_stats.accuracy) if ref_stats.accuracy > 0 else None,
        agreement=float(1.0 - differ.mean()),
        accuracy_change=change,
        error_shift=error_shift(
            inp.y_true, ref_preds, comp_preds, names, subject_codes=inp.subject_codes, n_boot=n_boot,
            rng=_rng(seed, OVERALL), alpha=alpha,
        ),
        cie=compression_identified_exemplars(inp.y_true, ref_preds, comp_preds, tables, c, alpha=alpha),
        churn=Metric(value=float(differ.mean()), ci=_interval(float(lo), float(hi))),
    )


def _notes(inp: AuditInputs, tables: Sequence[GroupTable], keep_missing: bool, intersections: Any) -> list[str]:
    notes: list[str] = []
    if intersections is True and not inp.intersections:
        notes.append("intersections=True with a single attribute: nothing to intersect")
    for table in tables:
        if len(table.members) > 1:
            cells = int(np.prod([len(set(inp.sensitive[m]) - {LEFT_OUT}) for m in table.members]))
            if cells > len(table.labels):
                notes.append(f"{table.name}: {cells - len(table.labels)} empty combination(s) not reported")
    for name, count in inp.n_missing.items():
        if count and keep_missing:
            notes.append(f"{name}: {count} missing value(s) (None/NaN/''/'unknown') audited as the group 'unknown'")
        elif count:
            notes.append(
                f"{name}: {count} sample(s) with a missing value (None/NaN/''/'unknown') left out of its audit "
                "and of its intersections (keep_missing=True audits them as a group 'unknown')"
            )
    if inp.subjects is None:
        notes.append("no subject ids: every image is its own subject (independent images)")
    elif inp.n_without_subject:
        notes.append(f"subjects: {inp.n_without_subject} sample(s) without a subject id, each its own subject")
    return notes


def _interval_method(inp: AuditInputs) -> str:
    if inp.subjects is None or np.bincount(inp.subject_codes).max() <= 1:
        return "score intervals (Wilson, Newcombe) with normal quantiles: independent images"
    return (
        "score intervals (Wilson, Newcombe) on effective sample sizes n/deff (subject design effect, "
        "intra-subject correlation pooled over each attribute's subjects) with Student t quantiles, "
        "df = subjects - groups"
    )


def audit(
    *,
    y_true: Any,
    y_pred: Any,
    sensitive: Mapping[str, Any],
    class_names: Sequence[str],
    subjects: Any = None,
    reference_pred: Any = None,
    reference_population: Sequence[Any] | None = None,
    compressed_population: Sequence[Any] | None = None,
    min_n: int = 30,
    min_subjects: int = MIN_SUBJECTS,
    keep_missing: bool = False,
    intersections: bool | Sequence[Sequence[str]] = False,
    alpha: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
    thresholds: VerdictThresholds | None = None,
) -> AuditResult:
    """Audit one model's predictions for subgroup accuracy gaps, against a reference.

    y_true, y_pred: class ids 0..len(class_names)-1, one per test sample.
    sensitive: attribute name -> per-sample group label (any type; compared as str).
        Missing values (None, NaN, '', 'unknown') are left out of that attribute's
        audit and counted, or audited as the group 'unknown' with ``keep_missing``.
    subjects: per-sample subject id (an empty id: the image is its own subject). With
        ids, every interval accounts for images of one subject being alike.
    reference_pred: the uncompressed model's predictions on the same samples; enables
        accuracy changes, gap changes (the verdict), CEV/SDE, CIEs and churn. Without
        it the audited model is treated as the reference (verdict ``reference``).
    reference_population / compressed_population: prediction arrays of several models
        per side (seeds); CEV/SDE average their error rates and CIEs use modal labels.
        They need reference_pred (per-group changes are paired with one model).
    min_n, min_subjects: a group is tested only with at least min_n images and
        min_subjects subjects (images when no subject ids); an untested group makes
        the verdict at best insufficient-evidence.
    intersections: True for every pair of attributes, or explicit tuples of names.
    alpha: level of every interval (1 - alpha) and of every family (weighted Holm).
    n_boot, seed: the subject bootstrap of the descriptive intervals (macro-F1, recall,
        parity, CEV/SDE); deterministic for a given seed, per attribute name.
    Raises AuditInputError (a ValueError) on bad input.
    """
    check_settings(
        min_n=min_n, min_subjects=min_subjects, keep_missing=keep_missing, alpha=alpha, n_boot=n_boot, seed=seed,
        thresholds=thresholds,
    )
    inp = validate(
        y_true=y_true, y_pred=y_pred, sensitive=sensitive, class_names=class_names, subjects=subjects,
        reference_pred=reference_pred, reference_population=reference_population,
        compressed_population=compressed_population, intersections=intersections, keep_missing=keep_missing,
    )
    thresholds = thresholds or VerdictThresholds()
    names, c = inp.class_names, inp.n_classes
    correct = inp.y_pred == inp.y_true
    ref_correct = None if inp.reference_pred is None else inp.reference_pred == inp.y_true

    member_sets = [(name,) for name in inp.sensitive] + inp.intersections
    tables = group_tables(member_sets, inp.sensitive, inp.y_true, inp.y_pred, inp.reference_pred, c)
    attributes: list[AttributeResult] = []
    comparisons: list[Comparison] = []
    builders: dict[str, _AttributeAudit] = {}
    for table in tables:
        builder = _AttributeAudit(
            table, inp, correct, ref_correct, min_n=min_n, min_subjects=min_subjects, alpha=alpha, n_boot=n_boot,
            seed=seed,
        )
        attributes.append(builder.build())
        comparisons.extend(builder.comparisons)
        builders[table.name] = builder

    def interval_at(attribute: str, high: str, low: str, level: float) -> tuple[float, float]:
        b = builders[attribute]
        est = b.ev.difference(np.array([b.t.labels.index(high)]), np.array([b.t.labels.index(low)]), alpha=level)
        return _interval(est.lo[0], est.hi[0])

    overall = confusion_stats(confusion(inp.y_true, inp.y_pred, n_classes=c))
    reference = None
    if inp.reference_pred is not None:
        reference = _reference(inp, tables, inp.reference_pred, overall.accuracy, alpha=alpha, n_boot=n_boot, seed=seed)
        comparisons.append(reference.accuracy_change)

    crossed = {t.name for t in tables if len(t.members) > 1}
    n_verdict = _adjust(comparisons, crossed, alpha)
    layout = cluster_layout(np.zeros(inp.n, dtype=np.int64), inp.subject_codes, 1)
    overall_ev = GroupEvidence(layout, correct, None, alpha=alpha)
    acc_lo, acc_hi = overall_ev.accuracy_ci("artefact")
    accuracy_ci = _interval(acc_lo[0], acc_hi[0])
    settings = AuditSettings(
        alpha=alpha, min_n=min_n, min_subjects=min_subjects, keep_missing=bool(keep_missing), n_boot=n_boot,
        seed=seed, interval_method=_interval_method(inp), family_procedure=procedure_text(),
        n_verdict_tests=n_verdict, ci_label=ci_label(alpha), thresholds=thresholds,
    )
    gap = largest_gap(comparisons, alpha=alpha, interval_at=interval_at, min_n=min_n, min_subjects=min_subjects)
    state = absolute_state(
        attributes, comparisons, has_reference=reference is not None, accuracy=overall.accuracy,
        accuracy_ci=accuracy_ci, reference=reference, n=inp.n, n_classes=c, alpha=alpha,
    )
    verdict = decide(
        accuracy=overall.accuracy, reference_accuracy=reference.accuracy if reference else None,
        attributes=attributes, comparisons=comparisons, thresholds=thresholds, alpha=alpha, min_n=min_n,
        min_subjects=min_subjects, n_verdict=n_verdict,
    )
    return AuditResult(
        n=inp.n, class_names=list(names), accuracy=overall.accuracy, accuracy_ci=accuracy_ci,
        macro_f1=overall.macro_f1, balanced_accuracy=overall.balanced_accuracy,
        recall=_per_class(names, overall.recall), attributes=attributes, comparisons=comparisons,
        reference=reference, verdict=verdict, settings=settings, state=state, largest_gap=gap,
        has_subjects=inp.subjects is not None, notes=_notes(inp, tables, bool(keep_missing), intersections),
    )
