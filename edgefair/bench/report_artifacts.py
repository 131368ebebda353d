"""Per-artefact sections of the HTML report, and what sparsity buys on the measured kernels.

Each artefact gets one collapsible section: its file (target, sparsity, sizes, sha256),
one line per device run (latency, RSS, accuracy, verdict, validity reasons, fingerprint),
the audit's reasons, overall and per-group tables (accuracy, macro-F1, per-class recall,
in report group order) and, where ``bench run --profile-ops`` stored one, its per-op profile.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edgefair.bench import report_fairness, report_timing
from edgefair.bench.report_env import environment
from edgefair.bench.report_rows import ReportRow, _ms, _pct, _rss, _size, _sparsity

Escape = Callable[[Any], str]
FINGERPRINT_FIELDS = ("CPU", "cores", "governor", "frequency", "OS", "runtimes", "threads", "emulated",
                      "temperature after", "TFLite kernels", "onnxruntime providers")


def anchor(name: str) -> str:
    """The id of an artefact's section."""
    return "a-" + (re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "artefact")


def by_artifact(rows: Sequence[ReportRow]) -> dict[str, list[ReportRow]]:
    """Rows per artefact name, in the table's order."""
    out: dict[str, list[ReportRow]] = {}
    for r in rows:
        out.setdefault(r.name, []).append(r)
    return out


# ------------------------------------------------------------------ the sparsity note
@dataclass
class SparsityFinding:
    device: str
    target: str
    method: str
    levels: list[tuple[float, float]]  # (measured sparsity, p50 s), by sparsity

    @property
    def spread(self) -> float:
        """(slowest - fastest) / fastest p50 over the levels."""
        p = [v for _, v in self.levels]
        return (max(p) - min(p)) / min(p)

    @property
    def speedup(self) -> float:
        """p50 of the densest level / p50 of the sparsest."""
        return self.levels[0][1] / self.levels[-1][1]


def sparsity_findings(rows: Sequence[ReportRow], *, valid_only: bool = True) -> list[SparsityFinding]:
    """Per real device, target and pruning method: the p50 at each measured sparsity level (>= 2 levels),
    from valid runs only unless ``valid_only`` is False."""
    series: dict[tuple[str, str, str], dict[float, float]] = {}
    for r in rows:
        if not (r.ok and (r.valid or not valid_only) and not r.emulated and r.p50_s is not None
                and r.sparsity_measured is not None):
            continue
        level = r.sparsity_requested if r.sparsity_requested is not None else r.sparsity_measured
        for method in ([r.sparsity_method] if level > 0 else ["unstructured", "structured"]):
            series.setdefault((r.device, r.target, method or "unstructured"), {})[round(r.sparsity_measured, 4)] = \
                r.p50_s
    out = [SparsityFinding(d, t, m, sorted(v.items())) for (d, t, m), v in series.items()
           if len(v) > 1 and any(s > 0 for s in v)]
    return sorted(out, key=lambda f: (f.device, f.method, f.target))


def _range(levels: list[tuple[float, float]]) -> str:
    return f"s{levels[0][0]:.2g}–s{levels[-1][0]:.2g}"


def sparsity_note(rows: Sequence[ReportRow]) -> list[str]:
    """Sentences, computed from the rows, on what sparsity does and does not buy here."""
    found, out = sparsity_findings(rows), []
    if not found:
        found = sparsity_findings(rows, valid_only=False)
        if not found:
            return ["No target was measured at more than one sparsity level on a real device, so the report "
                    "cannot say what sparsity buys here."]
        out.append("Indicative only: no target has valid runs at two sparsity levels, so these figures come from "
                   "runs flagged invalid (see their reasons in the table).")
    for device in dict.fromkeys(f.device for f in found):
        unst = [f for f in found if f.device == device and f.method == "unstructured"]
        struct = [f for f in found if f.device == device and f.method == "structured"]
        if unst:
            worst = max(unst, key=lambda f: f.spread)
            flat = [f for f in unst if f.spread <= 0.05]
            text = (f"{device}, unstructured (zeroed weights, dense kernels): on {len(flat)} of {len(unst)} targets "
                    f"the p50 of every sparsity level lies within 5 % of each other; the largest spread is "
                    f"{100 * worst.spread:.1f} % on {worst.target} ({_range(worst.levels)}: "
                    + ", ".join(f"{_ms(p)}" for _, p in worst.levels) + " ms). ")
            best = max(unst, key=lambda f: f.speedup)
            text += (f"The best sparsest-vs-densest ratio is {best.speedup:.2f}× ({best.target}); zeroed weights "
                     "shrink the gzip size, not the work of a dense kernel.")
            out.append(text)
        if struct:
            best = max(struct, key=lambda f: f.speedup)
            out.append(f"{device}, structured (channels removed): p50 speed-up up to {best.speedup:.2f}× on "
                       f"{best.target} ({_range(best.levels)}: " + ", ".join(_ms(p) for _, p in best.levels) + " ms).")
        else:
            out.append(f"{device}: no structured-pruning artefact was measured (a sweep with pruning = "
                       "\"structured\" removes channels, which is what shortens a dense kernel's work).")
    return out


# ------------------------------------------------------------------ one artefact
def _run_line(r: ReportRow, e: Escape) -> str:
    if not r.ok:
        state = f'<span class="bad">run failed: {e(r.error)}</span>'
    elif not r.valid:
        state = f'<span class="bad">invalid: {e("; ".join(r.invalid_reasons) or "flagged invalid")}</span>'
    else:
        state = "valid"
    if r.emulated:
        state += " · emulated: latency not comparable"
    cells = [r.device, _ms(r.p50_s), _ms(r.p90_s), _rss(r.peak_rss_kb), _pct(r.accuracy), r.verdict_label]
    warn = "".join(f"<br><small>warning: {e(w)}</small>" for w in r.warnings)
    return "<tr>" + "".join(f"<td>{e(c)}</td>" for c in cells) + f"<td>{state}{warn}</td></tr>"


def _fingerprints(rows: Sequence[ReportRow], e: Escape) -> str:
    parts = []
    for r in rows:
        pairs = [(k, v) for k, v in environment([r]) if k in FINGERPRINT_FIELDS]
        if pairs:
            parts.append(f"<dt>{e(r.device)}</dt><dd>" + "; ".join(f"{e(k)}: {e(v)}" for k, v in pairs) + "</dd>")
    return f'<dl class="fp">{"".join(parts)}</dl>' if parts else "<p>No environment fingerprint stored.</p>"


def _class_recall(result: Any, e: Escape) -> str:
    recall = getattr(result, "recall", None) or {}
    if not recall:
        return ""
    head = "".join(f"<th>{e(k)}</th>" for k in recall)
    body = "".join(f'<td class="num">{e(_pct(v))}</td>' for v in recall.values())
    return (f'<h4>Per-class recall (all test images)</h4><div class="tablewrap"><table class="results recall">'
            f"<thead><tr>{head}</tr></thead><tbody><tr>{body}</tr></tbody></table></div>")


def _audit_part(r: ReportRow, e: Escape) -> str:
    result = report_fairness._result(r.audit)
    reasons = "".join(f"<li>{e(x)}</li>" for x in r.verdict_reasons)
    out = f"<h4>Verdict: {e(r.verdict_label)}</h4>" + (f"<ul>{reasons}</ul>" if reasons else "")
    if result is None:
        return out + "<p>No readable audit stored.</p>"
    out += _class_recall(result, e)
    for attr, parity, rows in report_fairness.attribute_tables(result):
        out += f'<h4>{e(attr)}</h4><p class="rule">{e(parity)}</p>'
        out += report_fairness.html_table(report_fairness.METRIC_COLUMNS, rows, e, "metrics")
    return out


def _ops_part(rows: Sequence[ReportRow], e: Escape) -> str:
    out = ""
    for r in rows:
        prof = r.op_profile
        if not prof or not prof.get("ops"):
            continue
        head = "".join(f"<th>{e(c)}</th>" for c in report_timing.OP_COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in report_timing._op_cells(op)) + "</tr>"
                       for op in list(prof["ops"])[:report_timing.TOP_OPS])
        out += (f"<h4>Per-op profile on {e(r.device)} ({e(prof.get('method'))})</h4><div class=\"tablewrap\">"
                f'<table class="results ops"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')
    return out or "<p class=\"rule\">No per-op profile measured (bench run --profile-ops N).</p>"


def section(name: str, rows: Sequence[ReportRow], e: Escape, *, recommended_on: Sequence[str]) -> str:
    """The collapsible section of one artefact (open when it is recommended somewhere)."""
    first = rows[0]
    audited = next((r for r in rows if r.audit), None)
    rec = f' <span class="badge b-rec">recommended on {e(", ".join(recommended_on))}</span>' if recommended_on else ""
    verdicts = ", ".join(dict.fromkeys(r.verdict_label for r in rows))
    facts = (f"target {e(first.target)} · sparsity {e(_sparsity(first))}"
             + (f" ({e(first.sparsity_method)})" if first.sparsity_method else "")
             + f" · size {e(_size(first.size_bytes))}, gzip {e(_size(first.gzip_bytes))}"
             + (f" · sha256 <code>{e(first.sha256[:16])}…</code>" if first.sha256 else ""))
    runs = "".join(_run_line(r, e) for r in rows)
    head = "".join(f"<th>{c}</th>" for c in ("device", "p50 ms", "p90 ms", "peak RSS MiB", "accuracy", "verdict",
                                               "validity"))
    return (f'<details class="artefact" id="{anchor(name)}"{" open" if recommended_on else ""}>'
            f"<summary><code>{e(name)}</code> · {e(verdicts)}{rec}</summary>"
            f'<p class="rule">{facts}</p><div class="tablewrap"><table class="results runs"><thead><tr>{head}</tr>'
            f"</thead><tbody>{runs}</tbody></table></div>"
            f"<h4>Environment fingerprint</h4>{_fingerprints(rows, e)}"
            + (_audit_part(audited, e) if audited else "<p>Not audited.</p>") + _ops_part(rows, e) + "</details>")


def html(rows: Sequence[ReportRow], recommended: dict[str, str | None], e: Escape) -> str:
    """Every artefact's section, in the table's order."""
    parts = ['<h2 id="artefacts">Per artefact</h2>']
    for name, rs in by_artifact(rows).items():
        on = [d for d, a in recommended.items() if a == name]
        parts.append(section(name, rs, e, recommended_on=on))
    return "\n".join(parts)
