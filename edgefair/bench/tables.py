"""Rich tables printed at the end of commands (stderr). Names are escaped; units are binary."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from edgefair.bench import units
from edgefair.bench.console import err

VERDICT_COLOURS = {"reference": "cyan", "pass": "green", "gap-widened": "red", "accuracy-drop": "red",
                   "insufficient-evidence": "yellow"}


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def plain(text: object) -> str:
    """Untrusted text on one line: control characters (newlines, ESC, ...) shown as '?', runs of spaces as one."""
    return " ".join(_CONTROL.sub(lambda m: " " if m.group() in "\t\n\r" else "?", str(text)).split())


def cell(text: object) -> str:
    """A table cell from untrusted text: one line (``plain``), rich markup escaped."""
    return escape(plain(text))


def print_train_summary(result: dict[str, Any]) -> None:
    """Overall test accuracy and macro-F1, then accuracy with n for each group of each attribute."""
    test = result["test"]
    err.print(f"[bold]{cell(result['arch'])}[/] on {cell(result['dataset'])}: {result['params']:,} parameters, "
              f"{result['epochs']} epochs in {result['train_seconds']:.0f} s; best val accuracy "
              f"{units.pct(result['best_val_accuracy'])} at epoch {result['best_epoch']}")
    err.print(f"test accuracy [bold]{units.pct(test['accuracy'])}[/], macro-F1 {test['macro_f1']:.3f} (n={test['n']})")
    table = Table(title="test accuracy by group", show_lines=False)
    for col in ("attribute", "group", "n", "accuracy", "gap to best"):
        table.add_column(col, justify="right" if col in ("n", "accuracy", "gap to best") else "left")
    for attr, groups in test["groups"].items():
        best = max(g["accuracy"] for g in groups.values())
        for name, g in sorted(groups.items(), key=lambda kv: -kv[1]["n"]):
            table.add_row(cell(attr), cell(name), str(g["n"]), units.pct(g["accuracy"]),
                          f"{units.points(best - g['accuracy'])} pt")
    err.print(table)
    for w in result.get("warnings") or []:
        err.print(f"[yellow]warning[/]: {cell(w)}")
    err.print(f"wrote {result['run']}/model.pt and model.json", markup=False)


def _status(r: Any) -> str:
    if r.status == "failed":
        return f"[red]failed[/]: {cell(r.error)}"
    if r.valid is False:
        reasons = "; ".join(r.invalid_reasons or []) or "see result"
        return f"{r.status} [yellow](invalid: {cell(reasons)})[/]"
    return r.status


def print_run_table(rows: list, *, device: str, with_accuracy: bool) -> None:
    """artefact, size, p50/p90 ms, peak RSS (and accuracy with --eval)."""
    table = Table(title=f"bench run on {cell(device)}")
    cols = ["artefact", "size", "p50 ms", "p90 ms", "peak RSS", "status"]
    if with_accuracy:
        cols.insert(5, "accuracy")
    for c in cols:
        table.add_column(c, justify="left" if c in ("artefact", "status") else "right")
    for r in rows:
        vals = [cell(r.name), units.size(r.size_bytes), units.ms(None if r.p50_ms is None else r.p50_ms / 1e3),
                units.ms(None if r.p90_ms is None else r.p90_ms / 1e3),
                units.rss_mib(None if r.peak_rss_mb is None else r.peak_rss_mb * 1024), _status(r)]
        if with_accuracy:
            vals.insert(5, units.pct(r.accuracy))
        table.add_row(*vals)
    err.print(table)


def print_audit_table(rows: list, *, reference: str) -> None:
    """One line per artefact: both statements (the verdict: what compression changed; the state:
    pre-existing gaps and groups at chance), accuracy, the largest gap and the largest widening."""
    from edgefair.bench.report_fairness import short_state

    label = rows[0].summary.ci_label if rows else "95% CI"
    table = Table(title=f"fairness audit (reference: {cell(reference)}; intervals: {label})")
    for c in ("artefact", "verdict", "accuracy", "change", "largest gap", "largest widening", "absolute state"):
        table.add_column(c, justify="right" if c in ("accuracy", "change") else "left")
    for r in rows:
        s = r.summary
        verdict = f"[{VERDICT_COLOURS.get(s.verdict, 'white')}]{s.verdict}[/]"
        change = units.DASH if s.accuracy_change is None else f"{100 * s.accuracy_change.estimate:+.1f} pt"
        table.add_row(cell(r.name), verdict, units.pct(s.accuracy), change, escape(_largest_gap(s)),
                      escape(_widening(s)), cell(short_state(s)))
    err.print(table)
    err.print("verdict = what compression changed (pass: nothing significant, not 'fair'); absolute state = how "
              "the reference and the artefact stand. Full audits: --verbose.", markup=False)


def _largest_gap(s: Any) -> str:
    g = s.largest_gap
    if g is None:
        return units.DASH
    ci = "" if g.ci is None else f" [{units.points(g.ci[0])}, {units.points(g.ci[1])}]"
    return f"{units.points(g.estimate)} pt{ci} {g.attribute}: {g.high} vs {g.low}"


def _widening(s: Any) -> str:
    w = s.gap_change
    if w is None:
        return units.DASH
    p = "" if w.p_adjusted is None else f" p_adj {w.p_adjusted:.2g}"
    return f"{100 * w.estimate:+.1f} pt {w.attribute}: {w.other} vs {w.group}{p}"


def print_export_table(report: Any) -> None:
    """Per artefact: status, size, gzip size, measured sparsity, agreement with torch, val accuracy."""
    table = Table(title=f"bench export: {cell(report.run)} → {cell(report.out)} ({report.seconds:.1f} s)")
    for c in ("artefact", "status", "size", "gzip", "sparsity", "agreement", "val acc"):
        table.add_column(c, justify="left" if c in ("artefact", "status") else "right")
    for r in report.results:
        d = r.to_dict()
        status = d["status"] if d["status"] != "failed" else f"[red]failed[/]: {cell(d['reason'])}"
        sp = units.DASH if d["measured_sparsity"] is None else f"{d['measured_sparsity']:.3f}"
        table.add_row(cell(d["name"]), status, units.size(d["size_bytes"]), units.size(d["gzip_bytes"]), sp,
                      units.pct(d["agreement"]), units.pct(d["val_accuracy"]))
    err.print(table)
    for r in report.results:
        for w in r.warnings:
            err.print(f"[yellow]warning[/]: {cell(r.name)}: {cell(w)}")
    c = report.counts()
    if c.get("cached") and not c.get("converted"):
        err.print(f"all {c['cached']} artefacts were cached: nothing converted (use --force to redo)")
    err.print(f"converter logs: {report.log}", markup=False)


def _gap_cell(r: dict[str, Any]) -> str:
    if r["largest_gap"] is None:
        return units.DASH
    ci = "" if r["gap_lo"] is None else f" [{units.points(r['gap_lo'])}, {units.points(r['gap_hi'])}]"
    return escape(f"{units.points(r['largest_gap'])} pt{ci}")


def _sweep_row(r: dict[str, Any]) -> list[str]:
    acc = r["audit_accuracy"] if r["audit_accuracy"] is not None else r["run_accuracy"]
    v = r["verdict"] or ("failed: " + (r["error"] or "") if r["status"] == "failed" else units.DASH)
    return [cell(r["name"]), cell(r["device"]) + (" (emulated)" if r["emulated"] else ""), units.size(r["size_bytes"]),
            units.size(r["gzip_bytes"]),
            units.DASH if r["sparsity_measured"] is None else f"{r['sparsity_measured']:.2f}",
            units.ms(r["p50_s"]), units.ms(r["p90_s"]), units.rss_mib(r["peak_rss_kb"]), units.pct(acc), _gap_cell(r),
            f"[{VERDICT_COLOURS.get(v, 'white')}]{cell(v)}[/]", cell(_state_cell(r.get("audit_summary")))]


def _state_cell(summary: dict[str, Any] | None) -> str:
    from edgefair.bench.report_fairness import short_state
    from edgefair.fairness.summary import AuditSummary

    if not summary:
        return units.DASH
    try:
        return short_state(AuditSummary.from_dict(summary))
    except (ValueError, TypeError, KeyError):
        return units.DASH


def print_sweep_summary(outcome: Any) -> None:
    """Training per-group table, the run table with verdicts, and the recommendation."""
    from edgefair.bench.store import Store

    for st in outcome.stages:
        if st["stage"] == "train":
            meta = json.loads((Path(st["run"]) / "model.json").read_text())
            m = meta["metrics"]
            print_train_summary({"arch": meta["arch"], "dataset": meta["dataset"]["spec"], "params": m["params"],
                                 "epochs": meta["epochs"], "train_seconds": m["train_seconds"],
                                 "best_val_accuracy": m["best_val_accuracy"], "best_epoch": m["best_epoch"],
                                 "test": m["test"], "run": st["run"]})
    with Store(Path(outcome.db), readonly=True) as store:
        rows = store.summary_rows()
    table = Table(title="sweep results (p50/p90 in ms)")
    for c in ("artefact", "device", "size", "gzip", "sparsity", "p50", "p90", "peak RSS", "accuracy",
              "largest gap [CI]", "verdict", "absolute state"):
        table.add_column(c, justify="left" if c in ("artefact", "device", "verdict") else "right")
    for r in rows:
        table.add_row(*_sweep_row(r))
    err.print(table)
    for st in outcome.stages:
        if st["stage"] == "population":
            err.print(f"population {st['arch']}: {st['cells']} cells over seeds {st['seeds']}: CIEs, CEV/SDE over "
                      "trials and each figure's spread in the report's 'Populations over seeds'", markup=False)
    err.print(f"report: {outcome.report}  database: {outcome.db}  ({outcome.seconds:.0f} s)", markup=False)
    for rec in outcome.recommendations:
        err.print(f"recommendation: {rec}", markup=False, soft_wrap=True)
