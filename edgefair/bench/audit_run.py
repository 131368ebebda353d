"""``bench fairness``: audit every artefact's test predictions against the reference.

The steps: find the artefacts and the reference -> load the test split their manifests
name -> make sure each artefact has stored predictions (evaluating on the host where the
device gave none) -> audit each one -> store each audit -> plots.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefair.bench.console import CLIError
from edgefair.bench.measure import Artifact, discover_artifacts, eval_dataset, load_eval_dataset, measure_artifacts
from edgefair.bench.store import Store
from edgefair.contracts.audit import AuditKey
from edgefair.contracts.measurement import RunSettings
from edgefair.contracts.targets import REFERENCE_ORDER
from edgefair.fairness import MIN_SUBJECTS, AuditSummary, VerdictThresholds, summarize

# Host-side evaluation needs predictions, not timings.
EVAL_SETTINGS = RunSettings(profile="quick", threads=1, mode="eval")
Event = Callable[[str, str, dict], None]
MapHost = Callable[[Callable[[Any], Any], list[Any]], list[Any]]


@dataclass
class AuditRow:
    """One artefact's audit in a row: the fairness summary (both statements) with the artefact's name."""

    name: str
    artifact_id: str
    summary: AuditSummary

    @property
    def verdict(self) -> str:
        return self.summary.verdict

    @property
    def is_reference(self) -> bool:
        return self.summary.is_reference

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "artifact_id": self.artifact_id, **self.summary.to_dict()}


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
    """What ``bench fairness`` was asked for (the audit's knobs: ``edgefair.fairness.audit``)."""

    artifacts: Path
    db: Path
    device: str = "local"
    dataset: str | None = None
    attributes: list[str] | None = None
    intersections: bool = False
    reference: str | None = None
    min_n: int = 30
    min_subjects: int = MIN_SUBJECTS
    keep_missing: bool = False
    alpha: float = 0.05
    n_boot: int = 1000
    seed: int = 0
    thresholds: VerdictThresholds = field(default_factory=VerdictThresholds)
    plots_dir: Path | None = None
    resume: bool = False

    def key(self, reference: str, data: AuditData) -> AuditKey:
        """Everything that changes the audits of this request: what they are stored under."""
        return AuditKey(reference=reference, dataset=data.spec, attributes=tuple(data.attributes),
                        intersections=self.intersections, min_n=self.min_n, min_subjects=self.min_subjects,
                        keep_missing=self.keep_missing, alpha=self.alpha, n_boot=self.n_boot, seed=self.seed,
                        thresholds=asdict(self.thresholds))


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
    # A missing value (None) is left out of that attribute's audit (or audited as 'unknown' with
    # keep_missing); an empty subject id makes that image its own subject: the audit says so.
    subjects = [s.subject or "" for s in test]
    return AuditData(spec=ref.spec, ids=[s.sample_id for s in test], y_true=np.array([s.label for s in test]),
                     sensitive={a: np.array([s.attributes.get(a) for s in test], dtype=object) for a in attrs},
                     subjects=np.array(subjects, dtype=object) if any(subjects) else None,
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
                 subjects=data.subjects, reference_pred=ref_pred, min_n=req.min_n, min_subjects=req.min_subjects,
                 keep_missing=req.keep_missing, intersections=req.intersections, alpha=req.alpha, n_boot=req.n_boot,
                 seed=req.seed, thresholds=req.thresholds)


def _plots(plots_dir: Path, results: dict[str, Any], ref_name: str, attrs: list[str]) -> None:
    from edgefair.fairness import plot_group_accuracy

    plots_dir.mkdir(parents=True, exist_ok=True)
    ordered = {ref_name: results[ref_name], **{k: v for k, v in results.items() if k != ref_name}}
    for a in attrs:
        plot_group_accuracy(ordered, plots_dir / f"group-accuracy-{a}.png", attribute=a)


def _serial_map(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    return [fn(x) for x in items]


def _audit_task(job: tuple[AuditRequest, AuditData, np.ndarray, np.ndarray | None]) -> Any:
    """One audit, no database (an executor may run it on another node)."""
    req, data, pred, ref_pred = job
    return _audit_one(req, data, pred, ref_pred)


def audit_artifacts(req: AuditRequest, *, on_event: Event | None = None,
                    map_host: MapHost | None = None) -> tuple[list[AuditRow], dict[str, Any]]:
    """Audit all artefacts under ``req.artifacts``; store each audit; return summaries and full results.

    With ``req.resume`` an artefact whose audit with the same settings is already stored is
    not audited again (its stored summary is returned; ``results`` holds only new audits).
    The audits themselves are computed by ``map_host(fn, items)`` (default: in this process,
    in order; an executor's ``map_host`` spreads them over a cluster); only this process writes
    the database, one transaction per audit.
    """
    event = on_event or (lambda kind, name, info: None)
    found = discover_artifacts(req.artifacts)
    by_name = {a.name: a for a in found}
    ref_name = _pick_reference(by_name, req.reference, req.artifacts)
    data = load_test_data(found, req.dataset, req.attributes)
    _ensure_predictions(req, by_name, data.spec, event)
    summaries: list[AuditRow] = []
    results: dict[str, Any] = {}
    with Store(req.db) as store:
        preds = _predictions(store, by_name, req.device, data.ids, event)
        if ref_name not in preds:
            raise CLIError(f"reference artefact {ref_name} has no predictions (its evaluation failed)")
        key = req.key(ref_name, data)
        todo = []
        for name in sorted(preds):
            aid = by_name[name].artifact_id
            stored = _stored_summary(store, aid, req.device, key) if req.resume else None
            if stored is not None:
                summaries.append(AuditRow(name, aid, stored))
                event("cached", name, {})
            else:
                todo.append(name)
        jobs = [(req, data, preds[n], None if n == ref_name else preds[ref_name]) for n in todo]
        for name, res in zip(todo, (map_host or _serial_map)(_audit_task, jobs), strict=True):
            aid = by_name[name].artifact_id
            row = AuditRow(name, aid, summarize(res, is_reference=name == ref_name))
            store.put_audit(artifact_id=aid, device=req.device, key=key, audit=res.to_dict(), summary=row.summary)
            summaries.append(row)
            results[name] = res
            event("audited", name, row.to_dict())
    summaries.sort(key=lambda r: r.name)  # the order of sorted(preds), cached or not
    if req.plots_dir is not None and ref_name in results:
        _plots(req.plots_dir, results, ref_name, data.attributes)
    missing = sorted(set(by_name) - set(preds))
    return summaries, {"reference": ref_name, "dataset": data.spec, "attributes": data.attributes, "results": results,
                       "missing": missing}


def _stored_summary(store: Store, aid: str, device: str, key: AuditKey) -> AuditSummary | None:
    """The stored summary of this audit, None when absent or stored before summaries were (re-audit)."""
    rec = store.get_audit(aid, device, key.to_dict())
    if rec is None or not rec.get("summary_json"):
        return None
    try:
        return AuditSummary.from_dict(json.loads(rec["summary_json"]))
    except (ValueError, TypeError, KeyError):
        return None
