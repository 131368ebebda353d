"""``bench fairness``: audit every artefact's test predictions against the reference."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgefair.bench.console import CLIError
from edgefair.bench.measure import RunSettings, dataset_spec_for, discover_artifacts, measure_artifacts
from edgefair.bench.store import Store

# Host-side evaluation needs predictions, not timings: a short bench phase is enough.
EVAL_SETTINGS = RunSettings(profile="quick", threads=1, mode="eval")
REFERENCE_ORDER = ("torch-fp32-s0", "onnx-fp32-s0", "tflite-fp32-s0")


@dataclass
class AuditSummary:
    """One artefact's audit in a row: what the report table and the gate read."""

    name: str
    artifact_id: str
    verdict: str
    accuracy: float
    largest_gap: float | None
    gap_lo: float | None
    gap_hi: float | None
    gap_attribute: str | None
    reasons: list[str] = field(default_factory=list)
    is_reference: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _predictions(store: Store, aid: str, device: str) -> dict[str, int] | None:
    """Predictions by sample id from the newest stored eval run of this artefact on ``device``."""
    for rec in store.runs_for(aid, device):
        if rec["status"] != "ok":
            continue
        ev = json.loads(rec["result_json"]).get("eval")
        if ev and ev.get("ids"):
            return dict(zip(ev["ids"], ev["pred"]))
    return None


def summarise(result: Any, name: str, aid: str, is_reference: bool) -> AuditSummary:
    """Largest max−min accuracy gap over the attributes, with its interval."""
    worst = None
    for attr in result.attributes:
        c = attr.max_min_gap
        if c is not None and (worst is None or c.estimate > worst[1].estimate):
            worst = (attr.name, c)
    return AuditSummary(
        name=name, artifact_id=aid, verdict=result.verdict.label, accuracy=float(result.accuracy),
        largest_gap=None if worst is None else float(worst[1].estimate),
        gap_lo=None if worst is None or worst[1].ci is None else float(worst[1].ci[0]),
        gap_hi=None if worst is None or worst[1].ci is None else float(worst[1].ci[1]),
        gap_attribute=None if worst is None else f"{worst[0]}: {worst[1].group} vs {worst[1].other}",
        reasons=list(result.verdict.reasons), is_reference=is_reference,
    )


def audit_artifacts(
    *,
    artifacts: Path,
    db: Path,
    device: str = "local",
    dataset: str | None = None,
    attributes: list[str] | None = None,
    intersections: bool = False,
    reference: str | None = None,
    min_n: int = 30,
    thresholds: Any = None,
    plots_dir: Path | None = None,
    resume: bool = False,
    on_event: Callable[[str, str, dict], None] | None = None,
) -> tuple[list[AuditSummary], dict[str, Any]]:
    """Audit all artefacts under ``artifacts``; store each audit; return summaries and full results.

    With ``resume`` an artefact whose audit with the same settings is already stored is
    not audited again (its stored summary is returned; ``results`` holds only new audits).
    """
    from edgefair.data.registry import load_dataset
    from edgefair.fairness import audit, plot_group_accuracy

    event = on_event or (lambda kind, name, info: None)
    found = discover_artifacts(artifacts)
    by_name = {m.get("name", p.name): (p, m) for p, m in found}
    ref_name = reference or next((r for r in REFERENCE_ORDER if r in by_name), None)
    if ref_name is None or ref_name not in by_name:
        raise CLIError(f"reference artefact '{reference or ' or '.join(REFERENCE_ORDER)}' not found in {artifacts} "
                       f"(have: {', '.join(sorted(by_name))})")
    spec = dataset_spec_for([m for _, m in found], dataset)
    ds = load_dataset(spec)
    test = ds.split("test")
    ids = [s.sample_id for s in test]
    y_true = np.array([s.label for s in test])
    attrs = attributes or ds.attribute_names
    missing = [a for a in attrs if a not in ds.attribute_names]
    if missing:
        raise CLIError(f"dataset {spec} has no attribute {', '.join(missing)} (have: {', '.join(ds.attribute_names) or 'none'})")
    if not attrs:
        raise CLIError(f"dataset {spec} has no sensitive attributes to audit")
    sensitive = {a: np.array([s.attributes.get(a, "unknown") for s in test]) for a in attrs}
    subjects = np.array([s.subject for s in test]) if all(s.subject for s in test) else None

    preds: dict[str, np.ndarray] = {}
    with Store(db) as store:
        need = [n for n, (p, m) in by_name.items() if _predictions(store, m["artifact_id"], device) is None]
    if need:
        if device != "local":
            event("note", "", {"message": f"no eval results on {device} for {len(need)} artefacts: evaluating them on the host"})
        measure_artifacts(artifacts=artifacts, device="local", db=db, settings=EVAL_SETTINGS, dataset=spec,
                          only=need, on_event=lambda k, n, i: event(f"eval-{k}", n, i))
    with Store(db) as store:
        for name, (p, m) in by_name.items():
            got = _predictions(store, m["artifact_id"], device) or _predictions(store, m["artifact_id"], "local")
            if got is None:
                event("failed", name, {"error": "no predictions (its evaluation run failed)"})
                continue
            absent = [i for i in ids if i not in got]
            if absent:
                raise CLIError(f"{name}: stored predictions miss {len(absent)} test ids (dataset changed?); re-run bench run --eval")
            preds[name] = np.array([got[i] for i in ids])
        if ref_name not in preds:
            raise CLIError(f"reference artefact {ref_name} has no predictions (its evaluation failed)")
        summaries: list[AuditSummary] = []
        results: dict[str, Any] = {}
        audit_settings = {"reference": ref_name, "attributes": attrs, "intersections": intersections, "min_n": min_n}
        for name in sorted(preds):
            is_ref = name == ref_name
            aid = by_name[name][1]["artifact_id"]
            if resume and store.has_audit(aid, device, audit_settings):
                summaries.append(_stored_summary(store, name, aid, device, audit_settings, is_ref))
                event("cached", name, {})
                continue
            res = audit(y_true=y_true, y_pred=preds[name], sensitive=sensitive, class_names=list(ds.class_names),
                        subjects=subjects, reference_pred=None if is_ref else preds[ref_name], min_n=min_n,
                        intersections=intersections, thresholds=thresholds)
            summ = summarise(res, name, aid, is_ref)
            store.put_audit(artifact_id=aid, device=device, settings=audit_settings,
                            reference=ref_name, audit=res.to_dict(), summary=summ.to_dict())
            summaries.append(summ)
            results[name] = res
            event("audited", name, summ.to_dict())
    if plots_dir is not None and results and ref_name in results:
        plots_dir.mkdir(parents=True, exist_ok=True)
        ordered = {ref_name: results[ref_name], **{k: v for k, v in results.items() if k != ref_name}}
        for a in attrs:
            plot_group_accuracy(ordered, plots_dir / f"group-accuracy-{a}.png", attribute=a)
    return summaries, {"reference": ref_name, "dataset": spec, "attributes": attrs, "results": results}


def _stored_summary(store: Store, name: str, aid: str, device: str, settings: dict, is_ref: bool) -> AuditSummary:
    rec = store.get_audit(aid, device, settings)
    verdict = json.loads(rec["audit_json"]).get("verdict") or {}
    return AuditSummary(name=name, artifact_id=aid, verdict=rec["verdict"], accuracy=rec["accuracy"],
                        largest_gap=rec["largest_gap"], gap_lo=rec["gap_lo"], gap_hi=rec["gap_hi"],
                        gap_attribute=rec["gap_attribute"], reasons=list(verdict.get("reasons") or []), is_reference=is_ref)
