"""What ``bench export`` reports: one TargetResult per artefact, an ExportReport per call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgefair.contracts.manifest import Manifest

STATUSES = ("converted", "cached", "failed", "imported")


@dataclass
class TargetResult:
    """What happened to one artefact (one target at one sparsity)."""

    name: str
    target: str
    sparsity: float
    status: str  # converted | cached | failed | imported
    path: str | None = None
    reason: str | None = None  # one line, for failed
    seconds: float = 0.0
    manifest: Manifest | None = field(default=None, repr=False)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def to_dict(self, *, full: bool = False) -> dict[str, Any]:
        m = self.manifest
        par = (m.parity if m else None) or {}
        d: dict[str, Any] = {
            "name": self.name, "target": self.target, "sparsity": self.sparsity, "status": self.status,
            "path": self.path, "reason": self.reason, "seconds": round(self.seconds, 3), "warnings": self.warnings,
            "artifact_id": m.artifact_id if m else None, "size_bytes": m.file.size_bytes if m else None,
            "gzip_bytes": m.file.gzip_bytes if m else None, "zip_bytes": m.file.zip_bytes if m else None,
            "measured_sparsity": m.sparsity.measured if m else None, "params": m.params.total if m else None,
            **{k: par.get(k) for k in ("agreement", "max_abs_logit_diff", "val_accuracy", "reference_val_accuracy",
                                       "passed", "gate_kind")}, "gate_reason": par.get("reason")}
        if full:
            d["manifest"] = m.to_dict() if m else None
        return d


@dataclass
class ExportReport:
    """All results of one ``export_matrix`` call."""

    run: str
    out: str
    targets: list[str]
    sparsities: list[float]
    pruning: str
    finetune_epochs: int
    calib: int
    qat: bool
    results: list[TargetResult]
    seconds: float
    log: str
    clustering: int | None = None
    mitigation: str = "none"
    prune_scope: str = "global"

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> list[TargetResult]:
        return [r for r in self.results if r.status == "failed"]

    def counts(self) -> dict[str, int]:
        c = {"converted": 0, "cached": 0, "failed": 0}
        for r in self.results:
            c[r.status] = c.get(r.status, 0) + 1
        return c

    def to_dict(self, *, full: bool = False) -> dict[str, Any]:
        return {"ok": self.ok, "run": self.run, "out": self.out, "targets": self.targets,
                "sparsities": self.sparsities, "pruning": self.pruning, "finetune_epochs": self.finetune_epochs,
                "calib": self.calib, "qat": self.qat, "clustering": self.clustering, "mitigation": self.mitigation,
                "prune_scope": self.prune_scope, "counts": self.counts(), "seconds": round(self.seconds, 3),
                "log": self.log, "results": [r.to_dict(full=full) for r in self.results]}
