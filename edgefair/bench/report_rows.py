"""The report's rows: every stored run joined with its artefact and audit (reads only the database)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefair.bench import units
from edgefair.bench.store import Store, StoreError
from edgefair.contracts.errors import EdgefairError
from edgefair.contracts.jsonio import one_line
from edgefair.fairness.summary import AuditSummary


class ReportError(EdgefairError, ValueError):
    """The report cannot be made (missing or empty database); the message names the file."""



@dataclass
class ReportRow:
    """One stored run joined with its artefact and its audit."""

    artifact_id: str
    name: str
    target: str
    device: str
    settings: dict[str, Any]
    status: str
    error: str | None
    size_bytes: int | None
    gzip_bytes: int | None
    sparsity_requested: float | None
    sparsity_measured: float | None
    p50_s: float | None
    p90_s: float | None
    peak_rss_kb: int | None
    accuracy: float | None
    valid: bool
    emulated: bool
    invalid_reasons: list[str]
    verdict: str | None
    verdict_reasons: list[str]
    largest_gap: float | None
    gap_lo: float | None
    gap_hi: float | None
    gap_attribute: str | None
    reference: str | None
    reference_accuracy: float | None
    audit: dict[str, Any] | None
    audit_summary: AuditSummary | None
    env: dict[str, Any]
    percentile_method: str | None
    created_at: float = 0.0
    threads: int | None = None
    rss_method: str | None = None
    model_rss_kb: int | None = None
    runtime_evidence: dict[str, Any] = field(default_factory=dict)
    op_profile: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    sparsity_method: str | None = None  # the manifest's: none | unstructured | structured
    sha256: str | None = None  # of the model file

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def invalid_kind(self) -> str:
        """The first invalid reason's rule, e.g. 'contention' or 'stop rule not met'."""
        return self.invalid_reasons[0].split(":")[0][:48] if self.invalid_reasons else "flagged invalid"

    @property
    def verdict_label(self) -> str:
        if not self.ok:
            return "run failed"
        return self.verdict or "not audited"


def load_rows(db_path: Path) -> list[ReportRow]:
    """Every run of the database joined with its artefact and audit, by device then name.

    Raises ReportError when the file is missing, not a results database, or holds no run.
    """
    db_path = Path(db_path)
    if not db_path.is_file():
        raise ReportError(f"{db_path}: no results database there (run `bench sweep` or `bench run` first)")
    try:
        with Store(db_path, readonly=True) as store:
            artifacts = {a["artifact_id"]: a for a in store.artifacts()}
            runs = store.runs()
            audits = store.widest_audits()
    except StoreError as e:
        raise ReportError(str(e)) from None
    if not runs:
        raise ReportError(f"{db_path}: the results database holds no runs, nothing to report "
                          "(run `bench sweep` or `bench run` first)")
    # An eval-only run (predictions for an audit, no timing) is shown only when the
    # artefact has no timed run on that device.
    timed = {(r["artifact_id"], r["device"]) for r in runs if r.get("p50_s") is not None}
    runs = [r for r in runs if r.get("p50_s") is not None or (r["artifact_id"], r["device"]) not in timed]
    rows = []
    for r in runs:
        rows.append(_row(r, artifacts.get(r["artifact_id"]), audits.get((r["artifact_id"], r["device"]))))
    rows.sort(key=lambda x: (x.emulated, x.device, x.name, json.dumps(x.settings, sort_keys=True)))
    return rows


def _loads(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _run_fields(run: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    ok = run["status"] == "ok"
    env = result.get("env") or {}
    return {"device": run["device"], "settings": _loads(run.get("settings_json")) or {}, "status": run["status"],
            "error": one_line(run.get("error") or "unknown error") if not ok else None,
            "p50_s": run.get("p50_s"), "p90_s": run.get("p90_s"), "peak_rss_kb": run.get("peak_rss_kb"),
            "valid": bool(run.get("valid")) if ok else True,
            "emulated": bool(run.get("emulated")) or bool(env.get("emulated")),
            "invalid_reasons": [str(x) for x in result.get("invalid_reasons") or []], "env": env,
            "percentile_method": (result.get("timing") or {}).get("percentile_method"),
            "created_at": run.get("created_at") or 0.0,
            "threads": run.get("threads") if run.get("threads") is not None else result.get("threads"),
            "rss_method": run.get("rss_method") or (result.get("rss") or {}).get("method"),
            "model_rss_kb": run.get("model_rss_kb"),
            "runtime_evidence": (result.get("runtime") or {}).get("evidence") or {},
            "op_profile": result.get("op_profile"), "warnings": [str(w) for w in result.get("warnings") or []]}


def _stored_audit_summary(au: dict[str, Any] | None) -> AuditSummary | None:
    """The stored fairness summary of an audit; None without one (an audit stored before summaries were)."""
    doc = _loads(au.get("summary_json")) if au else None
    if not doc:
        return None
    try:
        return AuditSummary.from_dict(doc)
    except (ValueError, TypeError, KeyError):
        return None


def _audit_fields(run: dict[str, Any], au: dict[str, Any] | None) -> dict[str, Any]:
    """The audit's columns; the widest audit of this artefact on this device (``Store.widest_audits``)."""
    summary = _stored_audit_summary(au)
    accuracy = au.get("accuracy") if au else None
    return {"accuracy": run.get("accuracy") if accuracy is None else accuracy,
            "verdict": au.get("verdict") if au else None,
            "verdict_reasons": list(summary.verdict_reasons) if summary else [],
            **{k: au.get(k) if au else None for k in ("largest_gap", "gap_lo", "gap_hi", "gap_attribute")},
            "reference": au.get("reference") if au else None,
            "reference_accuracy": summary.reference_accuracy if summary else None,
            "audit": _loads(au.get("audit_json")) if au else None, "audit_summary": summary}


def _row(run: dict[str, Any], art: dict[str, Any] | None, au: dict[str, Any] | None) -> ReportRow:
    result = _loads(run.get("result_json")) or {}
    art = art or {}
    manifest = _loads(art.get("manifest_json")) or {}
    fields: dict[str, Any] = {k: art.get(k) for k in ("size_bytes", "gzip_bytes", "sparsity_requested",
                                                      "sparsity_measured")}
    fields.update(_run_fields(run, result))
    fields.update(_audit_fields(run, au))
    return ReportRow(
        artifact_id=run["artifact_id"],
        name=art.get("name") or (result.get("artifact") or {}).get("name") or run["artifact_id"],
        target=art.get("target") or manifest.get("target") or "", **fields,
        sparsity_method=(manifest.get("sparsity") or {}).get("method"),
        sha256=(manifest.get("file") or {}).get("sha256"))


# ------------------------------------------------------------------ formatting
_pct, _pt, _ms, _size = units.pct, units.points, units.ms, units.size


def _rss(kb: int | None) -> str:
    return units.DASH if kb is None else f"{kb / 1024:.1f}"


def _sparsity(r: ReportRow) -> str:
    if r.sparsity_measured is None:
        return "—" if r.sparsity_requested is None else f"({r.sparsity_requested:.0%})"
    return f"{r.sparsity_measured:.1%}"


def _gap_text(r: ReportRow) -> tuple[str, str]:
    """('3.1 pt [0.4, 5.8]', 'gender') or ('—', '')."""
    if r.largest_gap is None:
        return "—", ""
    ci = f" [{_pt(r.gap_lo)}, {_pt(r.gap_hi)}]" if r.gap_lo is not None and r.gap_hi is not None else ""
    return f"{_pt(r.largest_gap)} pt{ci}", r.gap_attribute or ""


def _settings_text(s: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(s.items()))


def _slug(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.") or "device"
    slug, i = base, 2
    while slug in taken:
        slug, i = f"{base}-{i}", i + 1
    taken.add(slug)
    return slug


