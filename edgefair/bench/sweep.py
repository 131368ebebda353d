"""``bench sweep``: train → export matrix → run on each device → audit → report, resumable.

Every finished unit of work is in the results database (or, for training and export,
in content-addressed folders) before the next starts, so a sweep killed at any point and
started again redoes nothing that finished.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgefair.bench.config import SweepConfig

Event = Callable[[str, dict], None]


@dataclass
class SweepOutcome:
    """Where everything went and what happened at each stage."""

    out: str
    db: str
    report: str | None
    stages: list[dict[str, Any]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    recommendations: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _train_key(cfg: SweepConfig, arch: str) -> str:
    blob = json.dumps({"dataset": cfg.dataset, "arch": arch, "epochs": cfg.epochs, "seed": cfg.seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _trained(run_dir: Path, key: str) -> bool:
    mj = run_dir / "model.json"
    if not mj.exists() or not (run_dir / "model.pt").exists():
        return False
    try:
        return json.loads(mj.read_text()).get("metrics", {}).get("sweep_key") == key
    except (OSError, json.JSONDecodeError):
        return False


def run_sweep(cfg: SweepConfig, *, out: Path, on_event: Event | None = None) -> SweepOutcome:
    """Run (or resume) the whole study described by ``cfg`` under ``out``."""
    from edgefair.bench.audit_run import audit_artifacts
    from edgefair.bench.measure import RunSettings, measure_artifacts
    from edgefair.bench.store import Store
    from edgefair.export.matrix import export_matrix
    from edgefair.fairness import VerdictThresholds
    from edgefair.models.checkpoint import read_meta
    from edgefair.models.run import TrainRequest, train_run

    t0 = time.perf_counter()
    event = on_event or (lambda kind, info: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    db = out / "results.db"
    (out / "sweep.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    outcome = SweepOutcome(out=str(out), db=str(db), report=None)
    overrides: dict[str, Any] = {}
    if cfg.min_runs is not None:
        overrides["min_runs"] = cfg.min_runs
    if cfg.min_seconds is not None:
        overrides["min_seconds"] = cfg.min_seconds
    settings = RunSettings(profile=cfg.profile, threads=cfg.threads, mode="both", overrides=overrides)
    thresholds = VerdictThresholds(min_relative_accuracy=cfg.min_accuracy_ratio, gap_widening_points=cfg.gap_points)

    for arch in cfg.archs:
        # 1. train (skipped when this exact training already finished)
        key = _train_key(cfg, arch)
        run_dir = out / "runs" / f"{arch}-{key}"
        if _trained(run_dir, key):
            event("stage", {"stage": "train", "arch": arch, "status": "cached", "run": str(run_dir)})
        else:
            event("stage", {"stage": "train", "arch": arch, "status": "start"})
            res = train_run(TrainRequest(dataset=cfg.dataset, arch=arch, out=run_dir, epochs=cfg.epochs, seed=cfg.seed,
                                         tags={"sweep_key": key}),
                            progress=lambda st, d, t, arch=arch: event("progress", {"stage": "train", "arch": arch, "done": d, "total": t, "what": st}))
            event("stage", {"stage": "train", "arch": arch, "status": "done", "accuracy": res["test"]["accuracy"]})
        outcome.stages.append({"stage": "train", "arch": arch, "run": str(run_dir),
                               "test_accuracy": read_meta(run_dir).metrics["test"]["accuracy"]})

        # 2. export matrix (content-hash cached inside export_matrix)
        art_dir = out / "artifacts" / arch
        event("stage", {"stage": "export", "arch": arch, "status": "start"})
        report = export_matrix(run_dir, targets=cfg.targets, sparsities=cfg.sparsities, out=art_dir,
                               pruning=cfg.pruning, finetune_epochs=cfg.finetune_epochs, calib=cfg.calib, qat=cfg.qat,
                               progress=lambda *a, arch=arch, **k: event("progress", {"stage": "export", "arch": arch, "args": [str(x) for x in a]}))
        exp = report.to_dict()
        failed_exports = [r for r in exp.get("results", []) if r.get("status") == "failed"]
        outcome.failed += [f"export {r.get('name')}: {r.get('reason') or r.get('error')}" for r in failed_exports]
        outcome.stages.append({"stage": "export", "arch": arch, "artifacts": str(art_dir), "seconds": exp.get("seconds"),
                               "statuses": _count(r.get("status") for r in exp.get("results", []))})
        event("stage", {"stage": "export", "arch": arch, "status": "done"})

        # 3. run on every device (stored per artefact; resumed from the database)
        for device in cfg.devices:
            event("stage", {"stage": "run", "arch": arch, "device": device, "status": "start"})
            t_run = time.perf_counter()
            rows = measure_artifacts(artifacts=art_dir, device=device, db=db, settings=settings, dataset=cfg.dataset,
                                     on_event=lambda k, n, i, d=device: event("artifact", {"stage": "run", "device": d, "kind": k, "name": n}))
            outcome.failed += [f"run {r.name} on {device}: {r.error}" for r in rows if r.status == "failed"]
            outcome.stages.append({"stage": "run", "arch": arch, "device": device, "seconds": time.perf_counter() - t_run,
                                   "statuses": _count(r.status for r in rows)})

            # 4. audit against the uncompressed reference
            event("stage", {"stage": "audit", "arch": arch, "device": device, "status": "start"})
            summaries, _ = audit_artifacts(artifacts=art_dir, db=db, device=device, dataset=cfg.dataset,
                                           attributes=cfg.attributes or None, intersections=cfg.intersections,
                                           min_n=cfg.min_n, thresholds=thresholds, plots_dir=None, resume=True,
                                           on_event=lambda k, n, i, d=device: event("artifact", {"stage": "audit", "device": d, "kind": k, "name": n}))
            outcome.stages.append({"stage": "audit", "arch": arch, "device": device,
                                   "verdicts": _count(s.verdict for s in summaries if not s.is_reference)})

    # 5. report (reads only the database)
    from edgefair.bench.report import write_report

    event("stage", {"stage": "report", "status": "start"})
    info = write_report(db, out / "report")
    outcome.report = str(info.html)
    outcome.recommendations = [f"{r.device}: {r.text}" for r in info.recommendations]
    with Store(db) as store:
        store.put_stage("sweep", "sweep", "done", {"config": cfg.to_dict(), "failed": outcome.failed})
    outcome.seconds = time.perf_counter() - t0
    return outcome


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[str(x)] = out.get(str(x), 0) + 1
    return out
