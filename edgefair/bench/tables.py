"""Rich tables printed at the end of commands (stderr)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from edgefair.bench.console import err


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def print_train_summary(result: dict[str, Any]) -> None:
    """Overall test accuracy and macro-F1, then accuracy with n for each group of each attribute."""
    test = result["test"]
    err.print(f"[bold]{result['arch']}[/] on {result['dataset']}: {result['params']:,} parameters, "
              f"{result['epochs']} epochs in {result['train_seconds']:.0f} s; best val accuracy "
              f"{_pct(result['best_val_accuracy'])} at epoch {result['best_epoch']}")
    err.print(f"test accuracy [bold]{_pct(test['accuracy'])}[/], macro-F1 {test['macro_f1']:.3f} (n={test['n']})")
    table = Table(title="test accuracy by group", show_lines=False)
    for col in ("attribute", "group", "n", "accuracy", "gap to best"):
        table.add_column(col, justify="right" if col in ("n", "accuracy", "gap to best") else "left")
    for attr, groups in test["groups"].items():
        best = max(g["accuracy"] for g in groups.values())
        for name, g in sorted(groups.items(), key=lambda kv: -kv[1]["n"]):
            table.add_row(attr, name, str(g["n"]), _pct(g["accuracy"]), f"{100 * (best - g['accuracy']):.1f} pt")
    err.print(table)
    err.print(f"wrote {result['run']}/model.pt and model.json")


def _mb(b: float | None) -> str:
    return "—" if b is None else f"{b / 1e6:.3f}"


def print_run_table(rows: list, *, device: str, with_accuracy: bool) -> None:
    """artefact, size, p50/p90 ms, peak RSS MB (and accuracy with --eval)."""
    table = Table(title=f"bench run on {device}")
    cols = ["artefact", "size MB", "p50 ms", "p90 ms", "peak RSS MB", "status"]
    if with_accuracy:
        cols.insert(5, "accuracy")
    for c in cols:
        table.add_column(c, justify="left" if c in ("artefact", "status") else "right")
    for r in rows:
        f = lambda v, d=3: "—" if v is None else f"{v:.{d}f}"  # noqa: E731
        status = r.status if r.status != "failed" else f"[red]failed[/]: {r.error}"
        if r.valid is False:
            status += " [yellow](invalid: throttled)[/]"
        vals = [r.name, _mb(r.size_bytes), f(r.p50_ms), f(r.p90_ms), f(r.peak_rss_mb, 1), status]
        if with_accuracy:
            vals.insert(5, _pct(r.accuracy))
        table.add_row(*vals)
    err.print(table)


def print_audit_table(summaries: list, *, reference: str) -> None:
    """One line per artefact: verdict, accuracy, largest gap with its interval."""
    table = Table(title=f"fairness audit (reference: {reference})")
    for c in ("artefact", "verdict", "accuracy", "largest gap", "95% CI", "where"):
        table.add_column(c, justify="right" if c in ("accuracy", "largest gap") else "left")
    colours = {"pass": "green", "gap-widened": "red", "accuracy-drop": "red", "insufficient-evidence": "yellow"}
    for s in summaries:
        verdict = "reference" if s.is_reference else f"[{colours.get(s.verdict, 'white')}]{s.verdict}[/]"
        gap = "—" if s.largest_gap is None else f"{100 * s.largest_gap:.1f} pt"
        ci = "—" if s.gap_lo is None else f"[{100 * s.gap_lo:.1f}, {100 * s.gap_hi:.1f}]"
        table.add_row(s.name, verdict, _pct(s.accuracy), gap, ci, s.gap_attribute or "")
    err.print(table)


def print_export_table(report) -> None:
    """Per artefact: status, size, gzip size, measured sparsity, agreement with torch, val accuracy."""
    table = Table(title=f"bench export: {report.run} → {report.out} ({report.seconds:.1f} s)")
    for c in ("artefact", "status", "size KB", "gzip KB", "sparsity", "agreement", "val acc"):
        table.add_column(c, justify="left" if c in ("artefact", "status") else "right")
    for r in report.results:
        d = r.to_dict()
        kb = lambda v: "—" if v is None else f"{v / 1024:.1f}"  # noqa: E731
        status = d["status"] if d["status"] != "failed" else f"[red]failed[/]: {d['reason']}"
        sp = "—" if d["measured_sparsity"] is None else f"{d['measured_sparsity']:.3f}"
        table.add_row(d["name"], status, kb(d["size_bytes"]), kb(d["gzip_bytes"]), sp, _pct(d["agreement"]), _pct(d["val_accuracy"]))
    err.print(table)
    c = report.counts()
    if c.get("cached") and not c.get("converted"):
        err.print(f"all {c['cached']} artefacts were cached: nothing converted (use --force to redo)")
    err.print(f"converter logs: {report.log}")
