"""audit(): one artefact's predictions -> per-group metrics, gaps, comparison with the
reference, CEV/SDE, CIEs and a verdict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from edgefair.fairness.cie import compression_identified_exemplars
from edgefair.fairness.compression import error_shift
from edgefair.fairness.gaps import REST, Estimate, GroupEvidence
from edgefair.fairness.groups import ConfusionStats, GroupTable, confusion, confusion_stats, group_tables
from edgefair.fairness.holm import holm
from edgefair.fairness.inputs import AuditInputs, check_settings, validate
from edgefair.fairness.intervals import wilson
from edgefair.fairness.parity import parity
from edgefair.fairness.result import (
    AttributeResult,
    AuditResult,
    AuditSettings,
    Comparison,
    GroupResult,
    ReferenceResult,
    VerdictThresholds,
)
from edgefair.fairness.verdict import decide

# Below this many subjects a group's bootstrap interval is flagged in the notes.
FEW_SUBJECTS = 10
OVERALL = "(all)"


def _per_class(names: Sequence[str], values: np.ndarray) -> dict[str, float | None]:
    return {n: (float(v) if np.isfinite(v) else None) for n, v in zip(names, values)}


def _comparison(
    kind: str, attribute: str, group: str, other: str, est: Estimate, n: int, n_other: int, why_untested: str
) -> Comparison:
    """Wrap an Estimate; ``why_untested`` (non-empty) withholds the p-value."""
    untested = why_untested or (est.note if est.p_value is None else "")
    return Comparison(
        id=f"{kind}:{attribute}:{group}|{other}",
        kind=kind,
        attribute=attribute,
        group=group,
        other=other,
        estimate=est.estimate,
        ci=est.ci,
        method=est.method,
        n=n,
        n_other=n_other,
        p_value=None if untested else est.p_value,
        note=f"insufficient evidence: {untested}" if untested else "",
    )


class _AttributeAudit:
    """Builds one AttributeResult and its comparisons."""

    def __init__(
        self, table: GroupTable, evidence: GroupEvidence, inputs: AuditInputs, min_n: int, alpha: float
    ) -> None:
        self.t, self.ev, self.inp, self.min_n, self.alpha = table, evidence, inputs, min_n, alpha
        self.stats = [confusion_stats(cm) for cm in table.confusion]
        self.ref_stats: list[ConfusionStats] | None = (
            [confusion_stats(cm) for cm in table.reference_confusion] if table.reference_confusion else None
        )
        self.ok = [s.n >= min_n for s in self.stats]
        self.comparisons: list[Comparison] = []

    def _why(self, *groups: int) -> str:
        small = [g for g in dict.fromkeys(groups) if g != REST and not self.ok[g]]
        return "; ".join(
            f"{self.t.labels[g]!r} has n={self.stats[g].n} < min_n={self.min_n}" for g in small
        )

    def _add(self, kind: str, a: int, b: int, est: Estimate, other: str | None = None) -> Comparison:
        """Record a comparison of group a with b (a group index or REST)."""
        labels, n = self.t.labels, self.ev.n
        other = other or ("rest" if b == REST else labels[b])
        n_other = int(n.sum() - n[a]) if b == REST else int(n[b])
        c = _comparison(kind, self.t.name, labels[a], other, est, int(n[a]), n_other, self._why(a, b))
        self.comparisons.append(c)
        return c

    def _groups(self) -> list[GroupResult]:
        names, subjects = self.inp.class_names, self.inp.subjects
        out = []
        for g, (label, s) in enumerate(zip(self.t.labels, self.stats)):
            r = self.ref_stats[g] if self.ref_stats else None
            n_subj = None
            if subjects is not None:
                n_subj = int(np.unique(subjects[self.t.codes == g]).size)
            out.append(
                GroupResult(
                    attribute=self.t.name,
                    group=label,
                    n=s.n,
                    sufficient=self.ok[g],
                    accuracy=s.accuracy,
                    accuracy_ci=wilson(s.correct, s.n, alpha=self.alpha),
                    macro_f1=s.macro_f1,
                    balanced_accuracy=s.balanced_accuracy,
                    recall=_per_class(names, s.recall),
                    fpr=_per_class(names, s.fpr),
                    selection_rate={k: float(v) for k, v in zip(names, s.selection_rate)},
                    n_subjects=n_subj,
                    reference_accuracy=r.accuracy if r else None,
                    reference_accuracy_ci=wilson(r.correct, r.n, alpha=self.alpha) if r else None,
                )
            )
        return out

    def build(self) -> AttributeResult:
        groups = self._groups()
        acc = np.array([s.accuracy for s in self.stats])
        k = len(groups)
        pairs: dict[frozenset[int], Comparison] = {}
        for a in range(k):
            for b in range(a + 1, k):
                hi, lo = (a, b) if acc[a] >= acc[b] else (b, a)
                pairs[frozenset((a, b))] = self._add("pair", hi, lo, self.ev.difference(hi, lo))
        if k >= 3:
            for g in range(k):
                self._add("vs-rest", g, REST, self.ev.difference(g, REST))

        pool = [g for g in range(k) if self.ok[g]]
        pool = pool if len(pool) >= 2 else list(range(k))
        max_min = None
        if len(pool) >= 2:
            ranked = sorted(pool, key=lambda g: acc[g])
            max_min = pairs[frozenset((ranked[0], ranked[-1]))]

        best = None
        eligible = [g for g in range(k) if self.ok[g]]
        if eligible:
            best = max(eligible, key=lambda g: acc[g])
        if self.ref_stats is not None:
            for g, gr in enumerate(groups):
                gr.accuracy_change = self._add("accuracy-change", g, g, self.ev.change(g), other="reference")
            # Every pair, oriented by the artefact's more accurate group ``hi``: the test is
            # two-sided, so the orientation does not bias it.
            for a in range(k):
                for b in range(a + 1, k):
                    hi, lo = (a, b) if acc[a] >= acc[b] else (b, a)
                    c = self._add("gap-change", lo, hi, self.ev.gap_change(hi, lo))
                    if best is not None and hi == best:
                        groups[lo].gap_change = c

        dp, eo_tpr, eo_fpr, eo = parity([self.stats[g] for g in range(k) if self.ok[g]], self.inp.class_names)
        return AttributeResult(
            name=self.t.name,
            members=self.t.members,
            groups=groups,
            insufficient_groups=[groups[g].group for g in range(k) if not self.ok[g]],
            max_min_gap=max_min,
            demographic_parity=dp,
            equalized_odds_tpr=eo_tpr,
            equalized_odds_fpr=eo_fpr,
            equalized_odds=eo,
            best_group=groups[best].group if best is not None else None,
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
    intersections: bool | Sequence[Sequence[str]] = False,
    alpha: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
    thresholds: VerdictThresholds | None = None,
) -> AuditResult:
    """Audit one model's predictions for subgroup accuracy gaps, against a reference.

    y_true, y_pred: class ids 0..len(class_names)-1, one per test sample.
    sensitive: attribute name -> per-sample group label (any type; compared as str).
    subjects: per-sample subject id; when given, gap intervals come from a bootstrap
        that resamples subjects within each group instead of Newcombe intervals.
    reference_pred: the uncompressed model's predictions on the same samples; enables
        accuracy changes, gap changes, CEV/SDE, CIEs and the accuracy-drop /
        gap-widened verdicts.
    reference_population / compressed_population: prediction arrays of several models
        per side (seeds); CEV/SDE average their error rates and CIEs use modal labels.
        They need reference_pred (per-group changes are paired with one model).
    min_n: groups smaller than this are reported, never tested, and make the verdict
        at best insufficient-evidence.
    intersections: True for every pair of attributes, or explicit tuples of names.
    alpha: for every interval (1 - alpha) and for Holm over all tested comparisons.
    n_boot, seed: the subject bootstrap (deterministic for a given seed).
    Raises AuditInputError (a ValueError) on bad input.
    """
    check_settings(min_n=min_n, alpha=alpha, n_boot=n_boot, seed=seed, thresholds=thresholds)
    inp = validate(
        y_true=y_true,
        y_pred=y_pred,
        sensitive=sensitive,
        class_names=class_names,
        subjects=subjects,
        reference_pred=reference_pred,
        reference_population=reference_population,
        compressed_population=compressed_population,
        intersections=intersections,
    )
    thresholds = thresholds or VerdictThresholds()
    names, c = inp.class_names, inp.n_classes
    notes: list[str] = []
    correct = inp.y_pred == inp.y_true
    ref_correct = None if inp.reference_pred is None else inp.reference_pred == inp.y_true
    subject_codes = None if inp.subjects is None else pd.factorize(inp.subjects)[0].astype(np.int64)

    member_sets = [(name,) for name in inp.sensitive] + inp.intersections
    if intersections is True and not inp.intersections:
        notes.append("intersections=True with a single attribute: nothing to intersect")
    seeds = np.random.SeedSequence(seed).spawn(len(member_sets) + 1)

    tables = group_tables(member_sets, inp.sensitive, inp.y_true, inp.y_pred, inp.reference_pred, c)
    attributes: list[AttributeResult] = []
    comparisons: list[Comparison] = []
    for members, table, ss in zip(member_sets, tables, seeds):
        if len(members) > 1:
            cells = int(np.prod([len(set(inp.sensitive[m])) for m in members]))
            if cells > len(table.labels):
                notes.append(f"{table.name}: {cells - len(table.labels)} empty combination(s) not reported")
        evidence = GroupEvidence(
            table.codes,
            len(table.labels),
            correct,
            ref_correct,
            alpha=alpha,
            subject_codes=subject_codes,
            n_boot=n_boot,
            rng=np.random.default_rng(ss),
        )
        builder = _AttributeAudit(table, evidence, inp, min_n, alpha)
        attributes.append(builder.build())
        comparisons.extend(builder.comparisons)

    overall = confusion_stats(confusion(inp.y_true, inp.y_pred, n_classes=c))
    reference = None
    if inp.reference_pred is not None:
        ref_stats = confusion_stats(confusion(inp.y_true, inp.reference_pred, n_classes=c))
        ev = GroupEvidence(
            np.zeros(inp.n, dtype=np.int64),
            1,
            correct,
            ref_correct,
            alpha=alpha,
            subject_codes=subject_codes,
            n_boot=n_boot,
            rng=np.random.default_rng(seeds[-1]),
        )
        change = _comparison("accuracy-change", OVERALL, OVERALL, "reference", ev.change(0), inp.n, inp.n, "")
        comparisons.append(change)
        ref_preds = inp.reference_population or [inp.reference_pred]
        comp_preds = inp.compressed_population or [inp.y_pred]
        reference = ReferenceResult(
            accuracy=ref_stats.accuracy,
            accuracy_ci=wilson(ref_stats.correct, ref_stats.n, alpha=alpha),
            relative_accuracy=(overall.accuracy / ref_stats.accuracy) if ref_stats.accuracy > 0 else None,
            agreement=float((inp.y_pred == inp.reference_pred).mean()),
            accuracy_change=change,
            error_shift=error_shift(inp.y_true, ref_preds, comp_preds, names),
            cie=compression_identified_exemplars(inp.y_true, ref_preds, comp_preds, tables, c, alpha=alpha),
        )

    # Holm over every tested comparison of this audit (one family).
    tested = [cmp for cmp in comparisons if cmp.p_value is not None]
    for cmp, adjusted in zip(tested, holm([cmp.p_value for cmp in tested])):
        cmp.p_holm = adjusted
        cmp.significant = adjusted < alpha

    if inp.subjects is not None:
        notes.append(
            f"subject ids given: gap and change intervals resample subjects within each group "
            f"(stratified cluster bootstrap, n_boot={n_boot}, normal interval from its standard error); "
            "per-group accuracy intervals are Wilson intervals, which treat images as independent"
        )
        few = [
            f"{g.attribute}={g.group} ({g.n_subjects})"
            for a in attributes
            for g in a.groups
            if g.n_subjects is not None and g.n_subjects < FEW_SUBJECTS
        ]
        if few:
            notes.append(f"fewer than {FEW_SUBJECTS} subjects, bootstrap intervals unreliable: " + ", ".join(few))

    verdict = decide(
        accuracy=overall.accuracy,
        reference_accuracy=reference.accuracy if reference else None,
        attributes=attributes,
        comparisons=comparisons,
        thresholds=thresholds,
        alpha=alpha,
        min_n=min_n,
    )
    return AuditResult(
        n=inp.n,
        class_names=list(names),
        accuracy=overall.accuracy,
        accuracy_ci=wilson(overall.correct, overall.n, alpha=alpha),
        macro_f1=overall.macro_f1,
        balanced_accuracy=overall.balanced_accuracy,
        recall=_per_class(names, overall.recall),
        attributes=attributes,
        comparisons=comparisons,
        reference=reference,
        verdict=verdict,
        settings=AuditSettings(
            alpha=alpha,
            min_n=min_n,
            n_boot=n_boot if inp.subjects is not None else None,
            seed=seed,
            interval_method="cluster-bootstrap" if inp.subjects is not None else "newcombe",
            n_tested=len(tested),
            thresholds=thresholds,
        ),
        notes=notes,
    )
