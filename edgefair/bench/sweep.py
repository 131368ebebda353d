"""``bench sweep``: train → export matrix → run on each device → audit → report, resumable.

Every finished unit of work is in the results database (or, for training and export,
in content-addressed folders) before the next starts, so a sweep killed at any point and
started again redoes nothing that finished.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefair.bench.config import SweepConfig
from edgefair.contracts.jsonio import atomic_write_json

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


def _count(items: Iterable[Any]) -> dict[str, int]:
    return dict(Counter(str(x) for x in items))


def export_grid(cfg: SweepConfig, run_dir: Path, art_dir: Path, *, progress: Any = None) -> list[Any]:
    """The config's export matrix of one trained run, once per (clustering, mitigation); export
    reports in that order (content-hash cached inside export_matrix)."""
    from edgefair.export.matrix import export_matrix

    return [export_matrix(run_dir, targets=cfg.targets, sparsities=cfg.sparsities, out=art_dir, pruning=cfg.pruning,
                          finetune_epochs=cfg.finetune_epochs, calib=cfg.calib, qat=cfg.qat, clustering=k or None,
                          mitigation=mitigation, kd_alpha=cfg.kd_alpha, kd_temperature=cfg.kd_temperature,
                          prune_scope=cfg.prune_scope, progress=progress)
            for k in sorted(set(cfg.clusterings or [0])) for mitigation in cfg.mitigations]


def matrix_names(cfg: SweepConfig) -> set[str]:
    """The artefact names one arch's export grid makes (distilled only where something is fine-tuned)."""
    from edgefair.contracts.targets import TARGETS, artefact_name

    return {artefact_name(t, s, clustering=k or None,
                          kd=m == "kd" and (s > 0 or bool(k) or (cfg.qat and TARGETS[t].is_int8)))
            for t in cfg.targets for s in cfg.sparsities for k in set(cfg.clusterings or [0]) for m in cfg.mitigations}


class _Sweep:
    """The stages of one sweep; each records what it did in the outcome."""

    def __init__(self, cfg: SweepConfig, out: Path, event: Event) -> None:
        from edgefair.fairness import VerdictThresholds

        self.cfg, self.out, self.event = cfg, out, event
        self.db = out / "results.db"
        self.outcome = SweepOutcome(out=str(out), db=str(self.db), report=None)
        self.overrides = {k: getattr(cfg, k) for k in ("min_runs", "min_seconds") if getattr(cfg, k) is not None}
        self.thresholds = VerdictThresholds(min_relative_accuracy=cfg.min_accuracy_ratio,
                                            gap_widening_points=cfg.gap_points)
        self.map_host: Any = None  # where audits are computed (None: here); set by an executor

    def train(self, arch: str) -> Path:
        """Train (skipped when this exact training already finished)."""
        from edgefair.models.checkpoint import read_meta
        from edgefair.models.run import TrainRequest, finished_training, run_dir_for, train_cached

        req = TrainRequest(dataset=self.cfg.dataset, arch=arch, epochs=self.cfg.epochs, seed=self.cfg.seed)
        run_dir, key = run_dir_for(self.out / "runs", req)
        if finished_training(run_dir, key):
            self.event("stage", {"stage": "train", "arch": arch, "status": "cached", "run": str(run_dir)})
        else:
            self.event("stage", {"stage": "train", "arch": arch, "status": "start"})
            train_cached(self.out / "runs", req, progress=lambda st, d, t: self.event(
                "progress", {"stage": "train", "arch": arch, "done": d, "total": t, "what": st}))
            self.event("stage", {"stage": "train", "arch": arch, "status": "done",
                                 "accuracy": read_meta(run_dir).metrics["test"]["accuracy"]})
        self.outcome.stages.append({"stage": "train", "arch": arch, "run": str(run_dir),
                                    "test_accuracy": read_meta(run_dir).metrics["test"]["accuracy"]})
        return run_dir

    def export(self, arch: str, run_dir: Path) -> Path:
        """The export matrix (content-hash cached inside export_matrix)."""
        art_dir = self.out / "artifacts" / arch
        self.event("stage", {"stage": "export", "arch": arch, "status": "start"})
        for report in export_grid(self.cfg, run_dir, art_dir, progress=lambda *a, **kw: self.event(
                "progress", {"stage": "export", "arch": arch, "args": [str(x) for x in a]})):
            self.outcome.failed += [f"export {r.name}: {r.reason}" for r in report.failed]
            self.outcome.stages.append({"stage": "export", "arch": arch, "artifacts": str(art_dir),
                                        "clustering": report.clustering, "mitigation": report.mitigation,
                                        "seconds": report.seconds,
                                        "statuses": _count(r.status for r in report.results)})
        self.event("stage", {"stage": "export", "arch": arch, "status": "done"})
        return art_dir

    def settings(self, device: str) -> Any:
        """How every artefact is measured on ``device`` (part of each result's key)."""
        from edgefair.contracts.measurement import RunSettings
        from edgefair.devices import resolve_device

        threads = self.cfg.threads if self.cfg.threads is not None else resolve_device(device).threads
        return RunSettings(profile=self.cfg.profile, threads=threads, mode="both", overrides=self.overrides)

    def artifact_event(self, stage: str, device: str) -> Callable[[str, str, dict], None]:
        return lambda k, n, i: self.event("artifact", {"stage": stage, "device": device, "kind": k, "name": n})

    def run(self, arch: str, art_dir: Path, device: str) -> None:
        """Measure on one device (stored per artefact; resumed from the database)."""
        from edgefair.bench.measure import measure_artifacts

        self.event("stage", {"stage": "run", "arch": arch, "device": device, "status": "start"})
        t0 = time.perf_counter()
        rows = measure_artifacts(artifacts=art_dir, device=device, db=self.db, settings=self.settings(device),
                                 on_event=self.artifact_event("run", device), retries=self.cfg.retries)
        self.ran(arch, device, rows, time.perf_counter() - t0)

    def ran(self, arch: str, device: str, rows: list[Any], seconds: float) -> None:
        """Record one device's run of one arch's artefacts in the outcome."""
        self.outcome.failed += [f"run {r.name} on {device}: {r.error}" for r in rows if r.status == "failed"]
        skipped = [r for r in rows if r.status == "not-measured"]
        if skipped:
            self.outcome.failed.append(f"run on {device}: stopped after a device failure, {len(skipped)} "
                                       "artefact(s) not measured")
        self.outcome.stages.append({"stage": "run", "arch": arch, "device": device,
                                    "seconds": seconds, "statuses": _count(r.status for r in rows)})

    def audit(self, arch: str, art_dir: Path, device: str) -> None:
        """Audit against the uncompressed reference (resumed from the database)."""
        from edgefair.bench.audit_run import AuditRequest, audit_artifacts

        self.event("stage", {"stage": "audit", "arch": arch, "device": device, "status": "start"})
        req = AuditRequest(artifacts=art_dir, db=self.db, device=device, attributes=self.cfg.attributes or None,
                           intersections=self.cfg.intersections, min_n=self.cfg.min_n,
                           min_subjects=self.cfg.min_subjects, alpha=self.cfg.alpha, seed=self.cfg.seed,
                           thresholds=self.thresholds, resume=True)
        summaries, _ = audit_artifacts(req, on_event=self.artifact_event("audit", device), map_host=self.map_host)
        self.outcome.stages.append({"stage": "audit", "arch": arch, "device": device,
                                    "verdicts": _count(s.verdict for s in summaries if not s.is_reference)})

    def populations(self, map_host: Any) -> None:
        """With ``seeds`` > 1: each arch's population figures over seeds, stored as a stage."""
        from edgefair.bench import sweep_population as pop
        from edgefair.bench.store import Store

        for st in [s for s in list(self.outcome.stages) if s["stage"] == "train"]:
            arch, out = st["arch"], self.out / "population" / st["arch"]
            seeds = pop.population_seeds(self.cfg)
            self.event("stage", {"stage": "population", "arch": arch, "status": "start"})
            self.event("progress", {"stage": "population", "arch": arch,
                                    "args": [f"training seeds {seeds[1]}-{seeds[-1]}"]})
            runs = pop.train_population(self.cfg, arch, out, Path(st["run"]), map_host)
            art_dirs = [self.out / "artifacts" / arch, *(out / "artifacts" / f"seed{k}" for k in seeds[1:])]
            self.event("progress", {"stage": "population", "arch": arch,
                                    "args": ["exporting and predicting every seed's matrix"]})
            col = pop.dedupe(pop.collect(self.cfg, runs, art_dirs, out))
            by_attribute = {a: pop.population_rows(self.cfg, arch, col, a) for a in pop.attributes_of(self.cfg, col)}
            self.outcome.failed += col.failed
            detail = {"arch": arch, "seeds": seeds, "runs": [str(r) for r in runs], "attributes": by_attribute,
                      "failed": col.failed}
            with Store(self.db) as store:
                store.put_stage(f"{pop.STAGE_KIND}:{arch}", pop.STAGE_KIND, "done", detail)
            self.outcome.stages.append({"stage": "population", "arch": arch, "seeds": seeds,
                                        "cells": len(next(iter(by_attribute.values()), []))})
            self.event("stage", {"stage": "population", "arch": arch, "status": "done"})

    def report(self) -> None:
        """The report (reads only the database)."""
        from edgefair.bench.report import write_report
        from edgefair.bench.store import Store

        self.event("stage", {"stage": "report", "status": "start"})
        info = write_report(self.db, self.out / "report")
        self.outcome.report = str(info.html)
        self.outcome.recommendations = [r.plain() for r in info.recommendations]
        with Store(self.db) as store:
            store.put_stage("sweep", "sweep", "done", {"config": self.cfg.to_dict(), "failed": self.outcome.failed})


def run_sweep(cfg: SweepConfig, *, out: Path, on_event: Event | None = None, executor: Any = None) -> SweepOutcome:
    """Run (or resume) the whole study described by ``cfg`` under ``out``.

    ``executor`` (``edgefair.bench.executor``): where the stages run; default in this process."""
    from edgefair.bench.executor import LocalExecutor

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "sweep.json", cfg.to_dict())
    sweep = _Sweep(cfg, out, on_event or (lambda kind, info: None))
    ex = executor or LocalExecutor()
    ex.run_sweep(sweep)
    if cfg.seeds > 1:
        sweep.populations(ex.map_host)
    sweep.report()
    sweep.outcome.seconds = time.perf_counter() - t0
    return sweep.outcome
