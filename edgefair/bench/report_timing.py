"""Report sections that explain a latency: per-operator profiles and thread scaling.

Per-op profiles are shown for the recommended artefact of each device and for every int8
artefact that is slower than its fp32 sibling (same format and sparsity): the question a
reader asks when quantisation did not pay off. Thread scaling is shown where an artefact
was measured with several thread counts on one device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TOP_OPS = 12


Row = Any  # edgefair.bench.report.ReportRow (not imported: report imports this module)


@dataclass
class OpTable:
    """One artefact's per-operator table, and why the report shows it."""

    device: str
    name: str
    why: str
    method: str
    note: str | None
    rows: list[dict[str, Any]]


def _sibling(r: Row, rows: list[Row]) -> Row | None:
    fmt = r.target.split("-")[0]
    for s in rows:
        if s.device == r.device and s.target == f"{fmt}-fp32" and s.sparsity_requested == r.sparsity_requested \
                and s.threads == r.threads and s.ok and s.p50_s is not None:
            return s
    return None


def _slow_int8(rows: list[Row]) -> list[tuple[Row, str]]:
    out = []
    for r in rows:
        if not (r.ok and r.target.endswith("-int8") and r.p50_s is not None and not r.emulated):
            continue
        sib = _sibling(r, rows)
        if sib is not None and sib.p50_s is not None and r.p50_s > sib.p50_s:
            out.append((r, f"int8 slower than {sib.name}: p50 {1e3 * r.p50_s:.3f} vs {1e3 * sib.p50_s:.3f} ms "
                           f"({r.p50_s / sib.p50_s:.2f}x)"))
    return out


def op_tables(rows: list[Row], recommended: dict[str, str | None]) -> list[OpTable]:
    """The per-op tables the report shows (only where a profile was stored: bench run --profile-ops)."""
    picks: list[tuple[Row, str]] = [(r, "recommended") for r in rows if recommended.get(r.device) == r.name]
    picks += _slow_int8(rows)
    out, seen = [], set()
    for r, why in picks:
        key = (r.device, r.name, r.threads)
        if key in seen:
            continue
        seen.add(key)
        prof = r.op_profile
        if not prof:
            out.append(OpTable(r.device, r.name, why, "none", "no per-op profile stored: measure with "
                               "bench run --profile-ops N", []))
            continue
        out.append(OpTable(r.device, r.name, why, str(prof.get("method")), prof.get("note"),
                           list(prof.get("ops") or [])[:TOP_OPS]))
    return out


def thread_scaling(rows: list[Row]) -> dict[tuple[str, str], dict[int, float]]:
    """(device, artefact) -> {threads: p50} where more than one thread count was measured."""
    by: dict[tuple[str, str], dict[int, float]] = {}
    for r in rows:
        if r.ok and r.p50_s is not None and r.threads is not None:
            by.setdefault((r.device, r.name), {})[int(r.threads)] = r.p50_s
    return {k: dict(sorted(v.items())) for k, v in by.items() if len(v) > 1}


def _op_cells(op: dict[str, Any]) -> list[str]:
    mean = op.get("mean_us")
    share = op.get("share")
    return [str(op.get("name", "")), str(op.get("op", "")), "—" if mean is None else f"{mean:.1f}",
            "—" if share is None else f"{100 * share:.1f}%", str(op.get("kernel") or op.get("provider") or "")]


OP_COLUMNS = ["node", "op", "mean µs", "share", "kernel / provider"]


def markdown(tables: list[OpTable], scaling: dict[tuple[str, str], dict[int, float]]) -> list[str]:
    out = ["## Per-operator profiles", ""]
    if not tables:
        out += ["No artefact needs one (none recommended, no int8 slower than its fp32 sibling).", ""]
    for t in tables:
        out += [f"### {t.device}: `{t.name}` ({t.why})", "", f"Method: {t.method}." + (f" {t.note}" if t.note else ""),
                ""]
        if t.rows:
            out += ["| " + " | ".join(OP_COLUMNS) + " |", "|---|---|---:|---:|---|"]
            out += ["| " + " | ".join(c.replace("|", "\\|") for c in _op_cells(op)) + " |" for op in t.rows]
            out.append("")
    if scaling:
        out += ["## Thread scaling (p50 ms)", "", "| device | artefact | " + " | ".join(
            f"{n} threads" for n in sorted({n for v in scaling.values() for n in v})) + " |"]
        counts = sorted({n for v in scaling.values() for n in v})
        out.append("|---|---|" + "---:|" * len(counts))
        for (device, name), v in sorted(scaling.items()):
            out.append(f"| {device} | `{name}` | " + " | ".join(
                "—" if n not in v else f"{1e3 * v[n]:.3f}" for n in counts) + " |")
        out.append("")
    return out


def html(tables: list[OpTable], scaling: dict[tuple[str, str], dict[int, float]], esc: Any) -> str:
    parts = ["<h2>Per-operator profiles</h2>"]
    if not tables:
        parts.append("<p>No artefact needs one (none recommended, no int8 slower than its fp32 sibling).</p>")
    for t in tables:
        parts.append(f'<h3 id="ops-{esc(t.device)}-{esc(t.name)}">{esc(t.device)}: <code>{esc(t.name)}</code> '
                     f"({esc(t.why)})</h3><p class=\"rule\">Method: {esc(t.method)}."
                     + (f" {esc(t.note)}" if t.note else "") + "</p>")
        if t.rows:
            head = "".join(f"<th>{esc(c)}</th>" for c in OP_COLUMNS)
            body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in _op_cells(op)) + "</tr>" for op in t.rows)
            parts.append(f'<div class="tablewrap"><table class="results"><thead><tr>{head}</tr></thead>'
                         f"<tbody>{body}</tbody></table></div>")
    if scaling:
        counts = sorted({n for v in scaling.values() for n in v})
        head = "<th>device</th><th>artefact</th>" + "".join(f"<th>{n} threads</th>" for n in counts)
        body = "".join(f"<tr><td>{esc(d)}</td><td>{esc(n)}</td>" + "".join(
            f'<td class="num">{"—" if c not in v else f"{1e3 * v[c]:.3f}"}</td>' for c in counts) + "</tr>"
            for (d, n), v in sorted(scaling.items()))
        parts.append(f'<h2>Thread scaling (p50 ms)</h2><div class="tablewrap"><table class="results" id="threads">'
                     f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")
    return "\n".join(parts)
