"""``bench fairness``: audit every artefact's test predictions against the reference.

The steps: find the artefacts and the reference -> load the test split their manifests
name -> make sure each artefact has stored predictions (evaluating on the host where the
device gave none) -> audit each one -> store each audit -> plots.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefair.bench.console import CLIError
from edgefair.bench.measure import Artifact, discover_artifacts, eval_dataset, load_eval_dataset, measure_artifacts
from edgefair.bench.store import Store
from edgefair.contracts.measurement import RunSettings
from edgefair.contracts.targets import REFERENCE_ORDER

# Host-side evaluation needs predictions, not timings.
EVAL_SETTINGS = RunSettings(profile="quick", threads=1, mode="eval")
Event = Callable[[str, str, dict], None]


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


@dataclass
class AuditData:
    """The test split every artefact is audited on, in a fixed order."""

    spec: str
    ids: list[str]
    y_true: np.ndarray
    sensitive: dict[str, np.ndarray]
    subjects: np.ndarray | None
    class_names: list[str]
    attributes: list[str]


@dataclass
class AuditRequest:
    """What ``bench fairness`` was asked for."""

    artifacts: Path
    db: Path
    device: str = "local"
    dataset: str | None = None
    attributes: list[str] | None = None
    intersections: bool = False
    reference: str | None = None
    min_n: int = 30
    thresholds: Any = None
    plots_dir: Path | None = None
    resume: bool = False

    def settings(self, reference: str, attributes: list[str]) -> dict[str, Any]:
        return {"reference": reference, "attributes": attributes, "intersections": self.intersections,
                "min_n": self.min_n}


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


def _pick_reference(by_name: dict[str, Artifact], reference: str | None, root: Path) -> str:
    ref_name = reference or next((r for r in REFERENCE_ORDER if r in by_name), None)
    if ref_name is None or ref_name not in by_name:
        raise CLIError(f"reference artefact '{reference or ' or '.join(REFERENCE_ORDER)}' not found in {root} "
                       f"(have: {', '.join(sorted(by_name))})")
    return ref_name


def load_test_data(found: list[Artifact], dataset: str | None, attributes: list[str] | None) -> AuditData:
    """The test split named by the artefacts' manifests (or ``dataset``), with the audited attributes."""
    ref = eval_dataset(found, dataset)
    ds = load_eval_dataset(ref)
    test = ds.split("test")
    attrs = attributes or ds.attribute_names
    missing = [a for a in attrs if a not in ds.attribute_names]
    if missing:
        raise CLIError(f"dataset {ref.spec} has no attribute {', '.join(missing)} "
                       f"(have: {', '.join(ds.attribute_names) or 'none'})")
    if not attrs:
        raise CLIError(f"dataset {ref.spec} has no sensitive attributes to audit")
    return AuditData(spec=ref.spec, ids=[s.sample_id for s in test], y_true=np.array([s.label for s in test]),
                    sensitive={a: np.array([s.attributes.get(a, "unknown") for s in test]) for a in attrs},
                    subjects=np.array([s.subject for s in test]) if all(s.subject for s in test) else None,
                    class_names=list(ds.class_names), attributes=attrs)


def _stored_predictions(store: Store, aid: str, device: str) -> dict[str, int] | None:
    """Predictions by sample id from the newest stored eval run of this artefact on ``device``."""
    for rec in store.runs_for(aid, device):
        if rec["status"] != "ok":
            continue
        ev = json.loads(rec["result_json"]).get("eval")
        if ev and ev.get("ids"):
            return dict(zip(ev["ids"], ev["pred"], strict=True))
    return None


def _ensure_predictions(req: AuditRequest, by_name: dict[str, Artifact], spec: str, event: Event) -> None:
    """Evaluate on the host every artefact that has no stored predictions on the device."""
    with Store(req.db) as store:
        need = [n for n, a in by_name.items() if _stored_predictions(store, a.artifact_id, req.device) is None]
    if not need:
        return
    if req.device != "local":
        event("note", "", {"message": f"no eval results on {req.device} for {len(need)} artefacts: "
                                      "evaluating them on the host"})
    measure_artifacts(artifacts=req.artifacts, device="local", db=req.db, settings=EVAL_SETTINGS, dataset=spec,
                      only=need, on_event=lambda k, n, i: event(f"eval-{k}", n, i))


def _predictions(store: Store, by_name: dict[str, Artifact], device: str, ids: list[str],
                 event: Event) -> dict[str, np.ndarray]:
    preds: dict[str, np.ndarray] = {}
    for name, art in by_name.items():
        got = _stored_predictions(store, art.artifact_id, device) or _stored_predictions(store, art.artifact_id,
                                                                                          "local")
        if got is None:
            event("failed", name, {"error": "no predictions (its evaluation run failed)"})
            continue
        absent = [i for i in ids if i not in got]
        if absent:
            raise CLIError(f"{name}: stored predictions miss {len(absent)} test ids (dataset changed?); "
                           "re-run bench run --eval")
        preds[name] = np.array([got[i] for i in ids])
    return preds


def _audit_one(req: AuditRequest, data: AuditData, pred: np.ndarray, ref_pred: np.ndarray | None) -> Any:
    from edgefair.fairness import audit

    return audit(y_true=data.y_true, y_pred=pred, sensitive=data.sensitive, class_names=data.class_names,
                 subjects=data.subjects, reference_pred=ref_pred, min_n=req.min_n, intersections=req.intersections,
                 thresholds=req.thresholds)


def _plots(plots_dir: Path, results: dict[str, Any], ref_name: str, attrs: list[str]) -> None:
    from edgefair.fairness import plot_group_accuracy

    plots_dir.mkdir(parents=True, exist_ok=True)
    ordered = {ref_name: results[ref_name], **{k: v for k, v in results.items() if k != ref_name}}
    for a in attrs:
        plot_group_accuracy(ordered, plots_dir / f"group-accuracy-{a}.png", attribute=a)


def audit_artifacts(req: AuditRequest, *, on_event: Event | None = None) -> tuple[list[AuditSummary], dict[str, Any]]:
    """Audit all artefacts under ``req.artifacts``; store each audit; return summaries and full results.

    With ``req.resume`` an artefact whose audit with the same settings is already stored is
    not audited again (its stored summary is returned; ``results`` holds only new audits).
    """
    event = on_event or (lambda kind, name, info: None)
    found = discover_artifacts(req.artifacts)
    by_name = {a.name: a for a in found}
    ref_name = _pick_reference(by_name, req.reference, req.artifacts)
    data = load_test_data(found, req.dataset, req.attributes)
    _ensure_predictions(req, by_name, data.spec, event)
    summaries: list[AuditSummary] = []
    results: dict[str, Any] = {}
    with Store(req.db) as store:
        preds = _predictions(store, by_name, req.device, data.ids, event)
        if ref_name not in preds:
            raise CLIError(f"reference artefact {ref_name} has no predictions (its evaluation failed)")
        settings = req.settings(ref_name, data.attributes)
        for name in sorted(preds):
            is_ref, aid = name == ref_name, by_name[name].artifact_id
            if req.resume and store.has_audit(aid, req.device, settings):
                summaries.append(_stored_summary(store, name, aid, req.device, settings, is_ref))
                event("cached", name, {})
                continue
            res = _audit_one(req, data, preds[name], None if is_ref else preds[ref_name])
            summ = summarise(res, name, aid, is_ref)
            store.put_audit(artifact_id=aid, device=req.device, settings=settings, reference=ref_name,
                            audit=res.to_dict(), summary=summ.to_dict())
            summaries.append(summ)
            results[name] = res
            event("audited", name, summ.to_dict())
    if req.plots_dir is not None and ref_name in results:
        _plots(req.plots_dir, results, ref_name, data.attributes)
    missing = sorted(set(by_name) - set(preds))
    return summaries, {"reference": ref_name, "dataset": data.spec, "attributes": data.attributes, "results": results,
                       "missing": missing}


def _stored_summary(store: Store, name: str, aid: str, device: str, settings: dict, is_ref: bool) -> AuditSummary:
    rec = store.get_audit(aid, device, settings)
    assert rec is not None
    verdict = json.loads(rec["audit_json"]).get("verdict") or {}
    return AuditSummary(name=name, artifact_id=aid, verdict=rec["verdict"], accuracy=rec["accuracy"],
                        largest_gap=rec["largest_gap"], gap_lo=rec["gap_lo"], gap_hi=rec["gap_hi"],
                        gap_attribute=rec["gap_attribute"], reasons=list(verdict.get("reasons") or []),
                        is_reference=is_ref)
