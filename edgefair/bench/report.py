"""``bench report``: one self-contained HTML page and a Markdown summary from the results DB.

    info = write_report(Path("results/results.db"), Path("report"))
    info.html, info.markdown, info.plots, info.recommendations

The report reads ONLY the database (``edgefair.bench.store.Store``): artefacts, runs
(with the agent's result.json: timing, RSS, environment fingerprint) and audits (the
fairness ``AuditResult.to_dict()``). It holds:

- one table row per stored run (artefact × device × settings): size, gzip size, measured
  sparsity, p50/p90 latency, peak RSS, accuracy, the largest subgroup gap with its
  interval and attribute, the verdict (colour-coded); failed runs with their one-line
  error, emulated devices labelled "emulated: latency not comparable", invalid
  runs flagged with their reason (stop rule not met, throttling, contention);
- per device, Pareto plots of p50 latency vs accuracy and gzip size vs accuracy,
  coloured by the largest gap, Pareto-optimal artefacts ringed and labelled;
- per device, a recommendation by the rule in ``RULE``;
- the fairness section (report_fairness): both statements per artefact and the seed studies' metrics;
- per device and attribute, per-group accuracy of the reference and each artefact with
  Wilson intervals;
- per device, the environment fingerprint of its runs.

``report.html`` embeds its figures as base64 PNG and its CSS inline: no script, no
external URL. ``report.md`` links the same PNGs written to ``out_dir/plots/``. Every file
is written atomically (temporary file + ``os.replace``).
"""

from __future__ import annotations

import base64
import html
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgefair.bench import report_fairness, report_timing, units
from edgefair.bench.store import Store, StoreError
from edgefair.contracts.errors import EdgefairError
from edgefair.contracts.jsonio import atomic_write_bytes, one_line
from edgefair.fairness.summary import AuditSummary

TIE_TOLERANCE = 0.02
RULE = (
    "Among the artefacts with verdict `pass` and a valid run on the device (stop rule met, no throttling or "
    "contention), take the "
    "Pareto-optimal ones (no other passing artefact is at least as fast, as small (gzip) and as accurate, "
    "and better in one of them) and recommend the one with the lowest p50 latency; p50 values within "
    f"{TIE_TOLERANCE:.0%} of the lowest count as a tie, broken by the smaller gzip size. On an emulated "
    "device latencies are not comparable, so the smallest gzip size decides."
)
VERDICTS = {
    "reference": "the uncompressed model every artefact is compared with: no compression verdict",
    "pass": ("compression changed nothing significant: no gap between two tested groups grew by ≥ 2 points "
             "(significant in the verdict family), accuracy ≥ 99% of the reference, every group tested. It does "
             "not mean fair: see the absolute state"),
    "insufficient-evidence": ("some group has fewer than min_n images or min_subjects subjects: its change cannot be "
                              "tested, so the audit cannot call the artefact unchanged for everyone"),
    "accuracy-drop": "accuracy below 99% of the uncompressed reference (MLPerf's rule)",
    "gap-widened": ("the accuracy gap between two tested groups grew by ≥ 2 points, significant after the weighted "
                    "Holm adjustment over the gap changes"),
    "not audited": "the run has no fairness audit",
    "run failed": "the artefact did not run on this device (error shown)",
}
PLOT_PREFIXES = ("pareto-", "groups-")


class ReportError(EdgefairError, ValueError):
    """The report cannot be made (missing or empty database); the message names the file."""


@dataclass
class Recommendation:
    """What the report recommends for one device, in words and as a name."""

    device: str
    artifact: str | None  # None: nothing passes
    text: str  # one paragraph, Markdown
    candidate: str | None = None  # nothing passes: the best candidate ...
    reason: str | None = None  # ... and why it failed
    emulated: bool = False
    rule: str = RULE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def plain(self) -> str:
        """The recommendation as terminal text (no Markdown marks)."""
        return self.text.replace("**", "").replace("`", "")


@dataclass
class ReportInfo:
    html: Path
    markdown: Path
    plots: list[Path]
    recommendations: list[Recommendation]
    n_rows: int
    db_path: Path

    @property
    def recommendation(self) -> Recommendation | None:
        """The first recommendation naming an artefact on a real (not emulated) device,
        else the first one (which then says that nothing passes)."""
        for r in self.recommendations:
            if r.artifact and not r.emulated:
                return r
        return self.recommendations[0] if self.recommendations else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "html": str(self.html),
            "markdown": str(self.markdown),
            "plots": [str(p) for p in self.plots],
            "rows": self.n_rows,
            "db": str(self.db_path),
            "recommendation": self.recommendation.to_dict() if self.recommendation else None,
            "recommendations": [r.to_dict() for r in self.recommendations],
        }


# ------------------------------------------------------------------ reading the DB
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
        target=art.get("target") or manifest.get("target") or "", **fields)


# ------------------------------------------------------------------ the recommendation
def _by_rule(rows: list[ReportRow], emulated: bool) -> tuple[ReportRow, list[ReportRow]]:
    """The pick of RULE among ``rows`` (already filtered), and those it tied with on p50."""
    from edgefair.bench.report_plots import pareto_front

    def gz(r: ReportRow) -> float:
        return float(r.gzip_bytes if r.gzip_bytes is not None else r.size_bytes or 0)

    if emulated:
        front = [r for r, f in zip(rows, pareto_front([(gz(r), -(r.accuracy or 0)) for r in rows]), strict=True) if f]
        return min(front, key=lambda r: (gz(r), -(r.accuracy or 0), r.name)), []
    def p50(r: ReportRow) -> float:  # the caller passes only timed rows here
        return float(r.p50_s if r.p50_s is not None else float("inf"))

    keys = [(p50(r), gz(r), -(r.accuracy or 0)) for r in rows]
    front = [r for r, f in zip(rows, pareto_front(keys), strict=True) if f]
    fastest = min(p50(r) for r in front)
    tied = [r for r in front if p50(r) <= fastest * (1 + TIE_TOLERANCE)]
    pick = min(tied, key=lambda r: (gz(r), p50(r), -(r.accuracy or 0), r.name))
    return pick, [r for r in tied if r is not pick]


def _facts(r: ReportRow, emulated: bool) -> str:
    parts = []
    if not emulated and r.p50_s is not None:
        parts.append(f"p50 {_ms(r.p50_s)} ms")
    parts.append(f"gzip {_size(r.gzip_bytes)}")
    parts.append(f"accuracy {_pct(r.accuracy)}")
    if r.largest_gap is not None:
        parts.append(f"largest gap {_pt(r.largest_gap)} pt in {r.gap_attribute}")
    return ", ".join(parts)


def _skipped_note(skipped: list[ReportRow]) -> str:
    if not skipped:
        return ""
    return " Not considered, their run being invalid: " + ", ".join(f"`{r.name}`" for r in skipped) + "."


def _recommend_passing(device: str, valid_pass: list[ReportRow], emulated: bool, tail: str) -> Recommendation:
    pick, tied = _by_rule(valid_pass, emulated)
    tie = ""
    if tied:
        tie = (f" Its p50 ties (within {TIE_TOLERANCE:.0%}) with "
               + ", ".join(f"`{r.name}` ({_ms(r.p50_s)} ms)" for r in tied) + "; the smaller gzip size wins.")
    text = (f"**{device}: `{pick.name}`** ({_facts(pick, emulated)}), the "
            f"{'smallest' if emulated else 'fastest'} Pareto-optimal artefact with verdict pass "
            f"among {len(valid_pass)}.{tie}{tail}")
    return Recommendation(device=device, artifact=pick.name, text=text, emulated=emulated)


def _recommend_none(device: str, measured: list[ReportRow], emulated: bool, caveat: str,
                    note: str) -> Recommendation:
    audited = [r for r in measured if r.verdict is not None and r.valid]
    if not audited:
        text = (f"**{device}: no artefact passes.** No run on this device has both a valid measurement and a "
                f"fairness audit, so there is no candidate.{note}")
        return Recommendation(device=device, artifact=None, text=text, emulated=emulated)
    best, _ = _by_rule(audited, emulated)
    reason = _reason(best)
    text = (f"**{device}: no artefact passes.** Best candidate: `{best.name}` ({_facts(best, emulated)}), the one "
            f"the rule would pick if the verdict were ignored; it failed with verdict **{best.verdict}**: "
            f"{reason}{caveat}{note}")
    return Recommendation(device=device, artifact=None, text=text, candidate=best.name, reason=reason,
                          emulated=emulated)


def recommend(device: str, rows: list[ReportRow]) -> Recommendation:
    """Apply RULE to one device's rows."""
    emulated = any(r.emulated for r in rows)
    measured = [r for r in rows if r.ok and (emulated or r.p50_s is not None)]
    passing = [r for r in measured if r.verdict == "pass"]
    note = _skipped_note([r for r in passing if not r.valid])
    caveat = " Emulated device: latency is not comparable, so the smallest gzip size decided." if emulated else ""
    valid_pass = [r for r in passing if r.valid]
    if valid_pass:
        return _recommend_passing(device, valid_pass, emulated, caveat + note)
    return _recommend_none(device, measured, emulated, caveat, note)


def _reason(r: ReportRow) -> str:
    mine = [x for x in r.verdict_reasons if x.startswith(f"{r.verdict}:")]
    if mine:
        return mine[0].split(":", 1)[1].strip()
    return r.verdict_reasons[0] if r.verdict_reasons else f"verdict {r.verdict}"


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


# ------------------------------------------------------------------ environment
def _max_temp(zones: Any) -> float | None:
    temps = [float(z["temp_c"]) for z in (zones or {}).values() if isinstance(z, dict) and z.get("temp_c") is not None]
    return max(temps) if temps else None


def _freq(e: dict[str, Any]) -> str | None:
    cf = e.get("cpufreq") or {}
    cur, mx = cf.get("cur_freq_khz"), cf.get("max_freq_khz") or cf.get("cpuinfo_max_freq_khz")
    if cur is None and mx is None:
        return None
    return f"{(cur or 0) / 1000:.0f} MHz" + (f" (max {mx / 1000:.0f} MHz)" if mx else "")


def _throttle(e: dict[str, Any]) -> str | None:
    if e.get("throttled_before") is None and e.get("throttled_after") is None:
        return None
    flags = sorted(set((e.get("throttled_before_flags") or []) + (e.get("throttled_after_flags") or [])))
    return (f"{e.get('throttled_before_hex') or e.get('throttled_before')} → "
            f"{e.get('throttled_after_hex') or e.get('throttled_after')}" + (f" ({'; '.join(flags)})" if flags else ""))


def _runtime(e: dict[str, Any]) -> str | None:
    rt = e.get("runtime")
    if isinstance(rt, dict):
        return " ".join(str(x) for x in (rt.get("name"), rt.get("version")) if x) or None
    return str(rt) if rt else None


def _cpu_id(e: dict[str, Any]) -> str | None:
    c = e.get("cpu") or {}
    parts = [f"{k} {c[k]}" for k in ("vendor", "family", "model", "stepping", "variant") if c.get(k)]
    return ", ".join(parts) or None


def _isa(e: dict[str, Any]) -> str | None:
    isa = (e.get("cpu") or {}).get("isa")
    return " ".join(isa) if isa else None


def _cores(e: dict[str, Any]) -> str | None:
    types = (e.get("cpu") or {}).get("core_types")
    return None if not types else ", ".join(f"{k}: {v}" for k, v in types.items())


ENV_FIELDS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("CPU", lambda e: e.get("cpu_model")),
    ("CPU identity", _cpu_id),
    ("ISA (kernel selection)", _isa),
    ("core types", _cores),
    ("board", lambda e: e.get("board_model")),
    ("cores", lambda e: None if e.get("cores") is None else
        f"{e['cores']}" + (f" (affinity {len(e['affinity'])})" if e.get("affinity") else "")),
    ("governor", lambda e: (e.get("cpufreq") or {}).get("governor")),
    ("frequency", _freq),
    ("throttling (vcgencmd)", _throttle),
    ("OS", lambda e: e.get("os")),
    ("kernel / machine", lambda e: " / ".join(str(x) for x in (e.get("kernel"), e.get("machine")) if x) or None),
    ("Python", lambda e: " ".join(str(x) for x in (e.get("python_implementation"), e.get("python")) if x) or None),
    ("numpy", lambda e: e.get("numpy")),
    ("runtimes", _runtime),
    ("threads", lambda e: e.get("threads")),
    ("emulated", lambda e: None if "emulated" not in e else
        ("yes: " + "; ".join(e.get("emulation_evidence") or []) if e.get("emulated") else "no")),
    ("virtualised", lambda e: None if "virtualised" not in e else ("yes" if e["virtualised"] else "no")),
]


def _field_value(label: str, get: Callable[[dict[str, Any]], Any], envs: list[dict[str, Any]]) -> str | None:
    """One fingerprint field over a device's runs: the value, or how it varied."""
    counts: dict[str, int] = {}
    for e in envs:
        try:
            v = get(e)
        except (TypeError, ValueError, AttributeError, KeyError):
            v = None
        if v is not None:
            counts[str(v)] = counts.get(str(v), 0) + 1
    if not counts:
        return None
    if len(counts) == 1:
        return next(iter(counts))
    if label == "runtimes":  # one per format: not a variation
        return " · ".join(counts)
    return "varies: " + " · ".join(f"{v} ({n} run{'s' if n > 1 else ''})" for v, n in counts.items())


def _temperatures(envs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    out = []
    for key, label in (("temperature_before", "temperature before"), ("temperature_after", "temperature after")):
        temps = [t for t in (_max_temp(e.get(key)) for e in envs) if t is not None]
        if temps:
            rng = f"{min(temps):.1f} °C" if min(temps) == max(temps) else f"{min(temps):.1f}–{max(temps):.1f} °C"
            out.append((label, f"{rng} (hottest zone; over {len(temps)} runs)"))
    return out


def _runtime_evidence(rows: list[ReportRow]) -> list[tuple[str, str]]:
    """Which kernels ran: the XNNPACK delegate's share of TFLite nodes, onnxruntime's providers."""
    out = []
    tfl = [r for r in rows if "xnnpack_applied" in r.runtime_evidence]
    if tfl:
        took = [r for r in tfl if r.runtime_evidence.get("xnnpack_applied")]
        partial = [f"{r.name} ({r.runtime_evidence.get('delegated_nodes')}/{r.runtime_evidence.get('nodes')})"
                   for r in took if r.runtime_evidence.get("delegated_nodes") != r.runtime_evidence.get("nodes")]
        text = f"XNNPACK delegate applied in {len(took)} of {len(tfl)} TFLite runs"
        out.append(("TFLite kernels", text + ("; partly: " + ", ".join(partial) if partial else "; all nodes")))
    providers = sorted({p for r in rows for p in r.runtime_evidence.get("providers") or []})
    if providers:
        out.append(("onnxruntime providers", ", ".join(providers)))
    return out


def environment(rows: list[ReportRow]) -> list[tuple[str, str]]:
    """(field, value) pairs of one device's runs; distinct values across runs are joined."""
    envs = [r.env for r in rows if r.env]
    out: list[tuple[str, str]] = [("runs", f"{len(rows)} ({len(envs)} with a fingerprint)")]
    if not envs:
        return out
    for label, get in ENV_FIELDS:
        value = _field_value(label, get, envs)
        if value is not None:
            out.append((label, value))
    out += _temperatures(envs)
    out += _runtime_evidence(rows)
    methods = sorted({r.percentile_method for r in rows if r.percentile_method})
    if methods:
        out.append(("percentile method", ", ".join(methods)))
    return out


# ------------------------------------------------------------------ figures
@dataclass
class Plot:
    slug: str
    title: str
    png: bytes
    caption: str


def _pareto_plots(devices: dict[str, list[ReportRow]], slugs: dict[str, str],
                  recs: dict[str, Recommendation], gap_max: float) -> list[Plot]:
    from edgefair.bench.report_plots import ParetoPoint, pareto_figure

    plots = []
    for device, rows in devices.items():
        pts = [ParetoPoint(name=r.name, p50_ms=None if r.p50_s is None else 1000 * r.p50_s,
                           gzip_kib=None if r.gzip_bytes is None else r.gzip_bytes / 1024,
                           accuracy=r.accuracy, gap_pt=None if r.largest_gap is None else 100 * r.largest_gap,
                           verdict=r.verdict, valid=r.valid, recommended=recs[device].artifact == r.name)
               for r in rows if r.ok and r.accuracy is not None]
        if not pts:
            continue
        emulated = any(r.emulated for r in rows)
        png = pareto_figure(device, pts, emulated=emulated, gap_max=gap_max)
        cap = (f"{device}: p50 latency and gzip size against accuracy, {len(pts)} artefacts; colour: largest "
               "subgroup gap; ring: Pareto-optimal; circle: verdict pass; triangle: other verdict; "
               "x: invalid run (stop rule, throttling or contention).")
        if emulated:
            cap += " Emulated device: latency not comparable."
        plots.append(Plot(f"pareto-{slugs[device]}", f"Pareto fronts: {device}", png, cap))
    return plots


def _latest_audited(devices: dict[str, list[ReportRow]]) -> dict[str, list[ReportRow]]:
    """Per artefact name, its newest audited row on each device."""
    latest: dict[tuple[str, str], ReportRow] = {}
    for device, rows in devices.items():
        for r in rows:
            key = (r.name, device)
            if r.audit and (key not in latest or r.created_at >= latest[key].created_at):
                latest[key] = r
    by_name: dict[str, list[ReportRow]] = {}
    for (name, _), r in sorted(latest.items()):
        by_name.setdefault(name, []).append(r)
    return by_name


def _attribute(r: ReportRow, attr: str) -> dict[str, Any] | None:
    return next((x for x in (r.audit or {}).get("attributes") or [] if x["name"] == attr), None)


def _group_values(a: dict[str, Any], groups: dict[str, int]) -> dict[str, tuple[float, float, float, bool]]:
    vals = {}
    for g in a.get("groups") or []:
        groups.setdefault(g["group"], g["n"])
        lo, hi = g["accuracy_ci"]
        vals[g["group"]] = (g["accuracy"], lo, hi, bool(g.get("tested", g.get("sufficient", True))))
    return vals


def _reference_values(a: dict[str, Any]) -> dict[str, tuple[float, float, float, bool]]:
    return {g["group"]: (g["reference_accuracy"], *g["reference_accuracy_ci"],
                         bool(g.get("tested", g.get("sufficient", True))))
            for g in a.get("groups") or []
            if g.get("reference_accuracy") is not None and g.get("reference_accuracy_ci")}


@dataclass
class _AttributeSeries:
    """What one attribute's forest plot shows."""

    series: list[Any] = field(default_factory=list)
    groups: dict[str, int] = field(default_factory=dict)
    reference: tuple[str, dict[str, tuple[float, float, float, bool]]] | None = None
    min_n: int = 30
    ci_label: str = "95% CI"


def _collect_series(by_name: dict[str, list[ReportRow]], attr: str) -> _AttributeSeries:
    from edgefair.bench.report_plots import GroupSeries

    out = _AttributeSeries()
    for name, rs in by_name.items():
        distinct: dict[str, list[tuple[ReportRow, dict[str, Any]]]] = {}
        for r in rs:
            a = _attribute(r, attr)
            if a is not None:
                distinct.setdefault(json.dumps(a["groups"], sort_keys=True), []).append((r, a))
        for same in distinct.values():
            r, a = same[0]
            out.min_n = (r.audit or {}).get("settings", {}).get("min_n", out.min_n)
            out.ci_label = r.audit_summary.ci_label if r.audit_summary else out.ci_label
            label = name if len(distinct) == 1 else f"{name} @ {', '.join(x.device for x, _ in same)}"
            out.series.append(GroupSeries(label=label, verdict=r.verdict, values=_group_values(a, out.groups)))
            refs = _reference_values(a)
            if out.reference is None and refs:
                out.reference = (r.reference or "reference", refs)
    return out


def _group_plot(by_name: dict[str, list[ReportRow]], attr: str) -> Plot | None:
    from edgefair.bench.report_plots import GroupSeries, group_figure

    got = _collect_series(by_name, attr)
    if not got.series:
        return None
    series = got.series
    if got.reference is not None:  # the reference's own audit may be among the rows: do not draw it twice
        series = [s for s in series if s.label != got.reference[0]]
        series.insert(0, GroupSeries(label=f"reference ({got.reference[0]})", verdict=None, values=got.reference[1]))
    png = group_figure(f"Accuracy by {attr}: reference and artefacts ({got.ci_label}s)", series,
                       list(got.groups.items()), got.min_n)
    cap = (f"Accuracy by {attr}: the reference and each artefact, {got.ci_label}s (Wilson on the effective sample "
           "size: images of one subject count less); dotted lines: the "
           f"reference's accuracy per group; hollow: an untested group (fewer than min_n = {got.min_n} images or "
           "min_subjects subjects). An artefact audited identically on every "
           "device is drawn once; otherwise its devices are named. The label's colour is the verdict.")
    return Plot("groups-" + re.sub(r"[^A-Za-z0-9._-]+", "_", attr), f"Per-group accuracy: {attr}", png, cap)


def _group_plots(devices: dict[str, list[ReportRow]]) -> list[Plot]:
    """Per attribute, one forest plot: the reference then each artefact's audit.

    An artefact whose audits are identical on every device (the same predictions) is
    drawn once; otherwise once per device, labelled ``name @ device``.
    """
    by_name = _latest_audited(devices)
    attrs: list[str] = []
    for rs in by_name.values():
        for r in rs:
            attrs += [a["name"] for a in (r.audit or {}).get("attributes") or [] if a["name"] not in attrs]
    plots = [_group_plot(by_name, attr) for attr in attrs]
    return [p for p in plots if p is not None]


# ------------------------------------------------------------------ writing
def write_report(db_path: Path, out_dir: Path) -> ReportInfo:
    """Write ``out_dir/report.html``, ``out_dir/report.md`` and ``out_dir/plots/*.png``.

    Raises ReportError (a ValueError) naming the database when it is missing, unreadable
    or holds no run.
    """
    db_path, out_dir = Path(db_path), Path(out_dir)
    rows = load_rows(db_path)
    devices: dict[str, list[ReportRow]] = {}
    for r in rows:
        devices.setdefault(r.device, []).append(r)
    taken: set[str] = set()
    slugs = {d: _slug(d, taken) for d in devices}
    recs = {d: recommend(d, rs) for d, rs in devices.items()}
    gaps = [100 * r.largest_gap for r in rows if r.largest_gap is not None]
    pareto = _pareto_plots(devices, slugs, recs, max(gaps, default=1.0))
    groups = _group_plots(devices)
    ctx = _Context(db_path=db_path, rows=rows, devices=devices, recs=recs, pareto=pareto, groups=groups,
                   generated=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    plot_dir = out_dir / "plots"
    written = []
    for p in pareto + groups:
        path = plot_dir / f"{p.slug}.png"
        atomic_write_bytes(path, p.png)
        written.append(path)
    if plot_dir.is_dir():  # figures of an earlier report that this one no longer has
        for old in plot_dir.glob("*.png"):
            if old.name.startswith(PLOT_PREFIXES) and old not in written:
                old.unlink()
    md, page = out_dir / "report.md", out_dir / "report.html"
    atomic_write_bytes(md, _markdown(ctx).encode())
    atomic_write_bytes(page, _html(ctx).encode())
    return ReportInfo(html=page, markdown=md, plots=written, recommendations=list(recs.values()),
                      n_rows=len(rows), db_path=db_path)


@dataclass
class _Context:
    db_path: Path
    rows: list[ReportRow]
    devices: dict[str, list[ReportRow]]
    recs: dict[str, Recommendation]
    pareto: list[Plot]
    groups: list[Plot]
    generated: str

    @property
    def fairness(self) -> list[report_fairness.FairnessEntry]:
        return report_fairness.entries(self.rows)

    @property
    def ci_label(self) -> str:
        return next((r.audit_summary.ci_label for r in self.rows if r.audit_summary), "95% CI")

    @property
    def op_tables(self) -> list[report_timing.OpTable]:
        return report_timing.op_tables(self.rows, {d: r.artifact for d, r in self.recs.items()})

    @property
    def scaling(self) -> dict[tuple[str, str], dict[int, float]]:
        return report_timing.thread_scaling(self.rows)

    @property
    def many_settings(self) -> bool:
        return len({json.dumps(r.settings, sort_keys=True) for r in self.rows}) > 1

    @property
    def counts(self) -> str:
        n_art = len({r.artifact_id for r in self.rows})
        failed = sum(not r.ok for r in self.rows)
        invalid = sum(r.ok and not r.valid for r in self.rows)
        return (f"{n_art} artefacts × {len(self.devices)} devices: {len(self.rows)} runs, {failed} failed, "
                f"{invalid} invalid (stop rule, throttling or contention)")


COLUMNS = ["artefact", "device", "size", "gzip", "sparsity", "p50 ms", "p90 ms", "peak RSS MiB", "accuracy",
           "largest gap [CI]", "verdict"]


# ------------------------------------------------------------------ Markdown
def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_row(r: ReportRow, ctx: _Context) -> str:
    device = r.device + (" (emulated: latency not comparable)" if r.emulated else "")
    head = [f"`{r.name}`", device] + ([_settings_text(r.settings)] if ctx.many_settings else []) + [
        _size(r.size_bytes), _size(r.gzip_bytes), _sparsity(r)]
    if not r.ok:
        cells = head + [f"run failed: {r.error}", "", "", "", "", "**run failed**"]
    else:
        gap, attr = _gap_text(r)
        lat = [_ms(r.p50_s), _ms(r.p90_s)]
        if not r.valid:
            lat = [f"{v} ⚠ invalid" for v in lat]
        cells = head + lat + [_rss(r.peak_rss_kb), _pct(r.accuracy), f"{gap} {attr}".strip(),
                              f"**{r.verdict_label}**"]
    return "| " + " | ".join(_md_cell(c) for c in cells) + " |"


def _md_results(ctx: _Context) -> list[str]:
    cols = COLUMNS[:2] + (["settings"] if ctx.many_settings else []) + COLUMNS[2:]
    out = ["## Artefacts × devices", "", "| " + " | ".join(cols) + " |",
           "|" + "|".join("---" if c in ("artefact", "device", "settings", "verdict") else "---:" for c in cols) + "|"]
    out += [_md_row(r, ctx) for r in ctx.rows]
    flagged = [r for r in ctx.rows if r.ok and not r.valid]
    if flagged:
        out += ["", "Invalid runs (latency not trusted):", ""]
        out += [f"- `{r.name}` on {r.device}: {'; '.join(r.invalid_reasons) or 'flagged invalid'}" for r in flagged]
    out += ["", "Gaps are in accuracy points: the largest difference in accuracy between two tested groups of one "
            f"attribute, with its {ctx.ci_label}. Verdicts:", ""]
    return out + [f"- **{k}**: {v}" for k, v in VERDICTS.items()]


def _md_figures(title: str, plots: list[Plot], empty: str) -> list[str]:
    return [f"## {title}", ""] + ([f"![{p.title}](plots/{p.slug}.png)\n\n{p.caption}\n" for p in plots]
                                   or [empty, ""])


def _markdown(ctx: _Context) -> str:
    out = ["# edgefair benchmark report", "",
           f"Generated {ctx.generated} from `{ctx.db_path}`: {ctx.counts}. "
           f"The same report with embedded figures: [report.html](report.html).", "",
           "## Recommendation", "", f"Rule: {RULE}", ""]
    out += [f"- {r.text}" for r in ctx.recs.values()] + [""]
    out += _md_results(ctx) + [""]
    out += _md_figures("Pareto fronts", ctx.pareto, "No successful run with an accuracy.")
    out += report_fairness.markdown(ctx.fairness)
    out += _md_figures("Per-group accuracy", ctx.groups, "No audits stored.")
    out += report_timing.markdown(ctx.op_tables, ctx.scaling)
    out += ["## Environment", ""]
    for device, rows in ctx.devices.items():
        out += [f"### {device}", "", "| field | value |", "|---|---|"]
        out += [f"| {_md_cell(k)} | {_md_cell(v)} |" for k, v in environment(rows)]
        out.append("")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ HTML
CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --bg:#ffffff; --alt:#f6f8fa; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: var(--fg); background: var(--bg);
       margin: 0 auto; padding: 20px 28px 60px; max-width: 1360px; font-size: 14px; line-height: 1.45; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: var(--muted); margin: 0 0 14px; } code { font-family: "DejaVu Sans Mono", monospace; font-size: 12.5px; }
.recs { list-style: none; padding: 0; margin: 0; }
.recs li { border: 1px solid var(--line); border-left: 6px solid #1a7f37; background: #f4fbf6; padding: 8px 12px;
           margin: 0 0 8px; border-radius: 4px; }
.recs li.none { border-left-color: #cf222e; background: #fff6f5; }
.rule { color: var(--muted); font-size: 13px; }
.tablewrap { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
table.results { border-collapse: collapse; width: 100%; font-size: 12.5px; }
table.results th { position: sticky; top: 0; background: #eef1f4; text-align: left; padding: 6px 7px;
                   border-bottom: 1px solid var(--line); white-space: nowrap; }
table.results td { padding: 5px 7px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
table.results tbody tr:nth-child(even) { background: var(--alt); }
table.results td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
table.results td.name { white-space: nowrap; font-family: "DejaVu Sans Mono", monospace; font-size: 12px; }
tr.devstart td { border-top: 2px solid #8c959f; }
.small { display: block; color: var(--muted); font-size: 11px; }
.badge { display: inline-block; padding: 1px 6px; border-radius: 10px; font-size: 11px; white-space: nowrap; }
.b-emu { background: #ddf4ff; color: #0550ae; } .b-invalid { background: #fff1e5; color: #953800; font-weight: bold; }
.b-rec { background: #dafbe1; color: #116329; font-weight: bold; }
.verdict { display: inline-block; padding: 2px 8px; border-radius: 4px; font-weight: bold; font-size: 12px;
           white-space: nowrap; }
.v-pass { background: #dafbe1; color: #116329; } .v-insufficient-evidence { background: #fff8c5; color: #7d4e00; }
.v-accuracy-drop { background: #ffe7d1; color: #953800; } .v-gap-widened { background: #ffebe9; color: #a40e26; }
.v-reference { background: #ddf4ff; color: #0550ae; }
.v-not-audited { background: #eaeef2; color: #59636e; } .v-run-failed { background: #59636e; color: #ffffff; }
td.error { color: #a40e26; font-family: "DejaVu Sans Mono", monospace; font-size: 11.5px; word-break: break-word; }
td.emu { color: #8c959f; }
td.invalid { color: #953800; text-decoration: line-through; text-decoration-color: #bc4c00; }
figure { margin: 14px 0 22px; } figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figcaption { color: var(--muted); font-size: 12.5px; }
table.env { border-collapse: collapse; font-size: 12.5px; margin-bottom: 8px; }
table.env th { text-align: left; padding: 3px 14px 3px 0; color: var(--muted); font-weight: normal; white-space: nowrap;
               vertical-align: top; }
table.env td { padding: 3px 0; word-break: break-word; }
.envgrid { display: grid; grid-template-columns: repeat(auto-fit, minmax(400px, 1fr)); gap: 6px 28px; }
dl.legend { display: grid; grid-template-columns: max-content 1fr; gap: 3px 10px; font-size: 12.5px; margin: 10px 0; }
dl.legend dd { margin: 0; color: var(--muted); }
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _md_inline(text: str) -> str:
    """The few Markdown marks the recommendation text uses (** and `), as HTML."""
    out = _e(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def _verdict_badge(label: str, title: str = "") -> str:
    cls = "v-" + re.sub(r"[^a-z-]", "-", label.lower())
    t = f' title="{_e(title)}"' if title else ""
    return f'<span class="verdict {cls}"{t}>{_e(label)}</span>'


def _html_row(r: ReportRow, ctx: _Context, first_of_device: bool) -> str:
    rec = ctx.recs[r.device].artifact == r.name
    name = f'<td class="name">{_e(r.name)}'
    if rec:
        name += ' <span class="badge b-rec">recommended</span>'
    name += f'<span class="small">{_e(r.target)}</span></td>'
    dev = f"<td>{_e(r.device)}"
    if r.emulated:
        dev += '<br><span class="badge b-emu">emulated: latency not comparable</span>'
    if r.ok and not r.valid:
        dev += (f'<br><span class="badge b-invalid" title="{_e("; ".join(r.invalid_reasons))}">'
                f"invalid: {_e(r.invalid_kind)}</span>")
    dev += "</td>"
    cells = [name, dev]
    if ctx.many_settings:
        cells.append(f'<td class="small">{_e(_settings_text(r.settings))}</td>')
    cells += [f'<td class="num">{_e(_size(r.size_bytes))}</td>', f'<td class="num">{_e(_size(r.gzip_bytes))}</td>',
              f'<td class="num">{_e(_sparsity(r))}</td>']
    if not r.ok:
        cells.append(f'<td class="error" colspan="5">run failed: {_e(r.error)}</td>')
        cells.append(f"<td>{_verdict_badge('run failed')}</td>")
    else:
        lat_cls = "num invalid" if not r.valid else "num emu" if r.emulated else "num"
        title = f' title="{_e("; ".join(r.invalid_reasons))}"' if not r.valid else ""
        gap, attr = _gap_text(r)
        acc = _e(_pct(r.accuracy))
        if r.reference_accuracy is not None and r.accuracy is not None:
            acc += f'<span class="small">ref {_e(_pct(r.reference_accuracy))}</span>'
        cells += [f'<td class="{lat_cls}"{title}>{_e(_ms(r.p50_s))}</td>',
                  f'<td class="{lat_cls}"{title}>{_e(_ms(r.p90_s))}</td>',
                  f'<td class="num">{_e(_rss(r.peak_rss_kb))}</td>',
                  f'<td class="num">{acc}</td>',
                  f'<td class="num">{_e(gap)}' + (f'<span class="small">{_e(attr)}</span>' if attr else "") + "</td>",
                  f"<td>{_verdict_badge(r.verdict_label, '; '.join(r.verdict_reasons))}</td>"]
    cls = ' class="devstart"' if first_of_device else ""
    return f"<tr{cls}>" + "".join(cells) + "</tr>"


def _figure(p: Plot) -> str:
    data = base64.b64encode(p.png).decode("ascii")
    return (f'<figure id="{_e(p.slug)}"><img alt="{_e(p.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(p.caption)}</figcaption></figure>")


def _html(ctx: _Context) -> str:
    cols = COLUMNS[:2] + (["settings"] if ctx.many_settings else []) + COLUMNS[2:]
    recs = "".join(
        f'<li class="{"" if r.artifact else "none"}">{_md_inline(r.text)}</li>' for r in ctx.recs.values())
    rows, last = [], None
    for r in ctx.rows:
        rows.append(_html_row(r, ctx, last is not None and r.device != last))
        last = r.device
    legend = "".join(f"<dt>{_verdict_badge(k)}</dt><dd>{_e(v)}</dd>" for k, v in VERDICTS.items())
    envs = "".join(
        f'<div><h3>{_e(d)}</h3><table class="env">'
        + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in environment(rs))
        + "</table></div>"
        for d, rs in ctx.devices.items())
    groups = "".join(_figure(p) for p in ctx.groups) or "<p>No audits stored.</p>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgefair benchmark report</title>
<style>{CSS}</style></head>
<body>
<h1>edgefair benchmark report</h1>
<p class="meta">Generated {_e(ctx.generated)} from <code>{_e(ctx.db_path)}</code> &middot; {_e(ctx.counts)}</p>
<h2>Recommendation</h2>
<ul class="recs" id="recommendations">{recs}</ul>
<p class="rule">Rule: {_md_inline(RULE)}</p>
<h2>Artefacts × devices</h2>
<div class="tablewrap"><table class="results" id="results">
<thead><tr>{"".join(f"<th>{_e(c)}</th>" for c in cols)}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table></div>
<p class="rule">Sizes are of the model file; sparsity is the measured share of zero weights; p50/p90 are
percentiles of the raw per-inference samples; peak RSS is the largest VmHWM over the agent's phases. Gaps are
in accuracy points: the largest difference in accuracy between two tested groups of one attribute (named below
the value), with its {_e(ctx.ci_label)}. Hover a verdict for the audit's reasons; the fairness section below gives
both statements per artefact.</p>
<dl class="legend">{legend}</dl>
<h2>Pareto fronts</h2>
{"".join(_figure(p) for p in ctx.pareto) or "<p>No successful run with an accuracy.</p>"}
{report_fairness.html(ctx.fairness, _e)}
<h2>Per-group accuracy</h2>
{groups}
{report_timing.html(ctx.op_tables, ctx.scaling, _e)}
<h2>Environment</h2>
<div class="envgrid">{envs}</div>
</body></html>
"""
