"""``bench study``: predefined experiments of the seed papers, end to end, resumable.

``run_study(cfg, out=...)`` trains the population, compresses (or re-balances), predicts on the
host, and writes ``study.html`` + ``study.json`` in ``out``.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefair.bench.study import analysis, report
from edgefair.bench.study.config import StudyConfig
from edgefair.bench.study.runner import run_balance, run_compression, run_train_job, train_jobs


@dataclass
class StudyOutcome:
    """Where the report went and what happened."""

    study: str
    out: str
    html: str
    json: str
    seconds: float
    cpu_seconds: float
    findings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _compression_plots(rows: list[dict[str, Any]], plots: Path) -> list[Path]:
    def key(r: dict[str, Any]) -> str:
        return f"{r['pruning']} c{r['clustering'] or '-'} {r['mitigation']} {r['target']}"

    out = []
    for metric, ylabel, scale in (("gap_change", "change of the group accuracy gap (pt)", 100.0),
                                  ("accuracy_change", "accuracy change (pt)", 100.0),
                                  ("cev", "CEV (squared %)", 1.0), ("sde", "SDE (%)", 1.0),
                                  ("gzip_ratio", "× smaller (gzipped) than fp32 dense", 1.0)):
        series: report.Series = {}
        for r in rows:
            series.setdefault(key(r), []).append((r["sparsity"], r[metric]))
        out.append(report.line_plot(plots / f"{metric}.png", series, xlabel="sparsity", ylabel=ylabel,
                                    title=f"{metric} over seeds (mean, 95 % t interval)", scale=scale))
    out += _group_plots(rows, plots)
    return out


def _group_plots(rows: list[dict[str, Any]], plots: Path) -> list[Path]:
    """Per-group accuracy and CIE share against sparsity for the first arm's targets."""
    first = rows[0] if rows else None
    out = []
    for target in sorted({r["target"] for r in rows}):
        mine = [r for r in rows if first and r["target"] == target and r["pruning"] == first["pruning"]
                and not r["clustering"] and r["mitigation"] == "none"]
        acc: report.Series = {}
        cie: report.Series = {}
        for r in mine:
            for g, d in r["group_accuracy"].items():
                acc.setdefault(g, []).append((r["sparsity"], d))
            for g in r["cie"]["groups"]:
                ci = g["share_among_cie_ci"] or (None, None)
                cie.setdefault(f"{g['group']} (test {g['share_of_test'] * 100:.0f} %)", []).append(
                    (r["sparsity"], {"mean": g["share_among_cie"], "lo": ci[0], "hi": ci[1], "n": 1, "values": []}))
        if mine:
            out.append(report.line_plot(plots / f"group_accuracy_{target}.png", acc, xlabel="sparsity",
                                        ylabel="accuracy (%)", title=f"accuracy per group, {target}", scale=100))
            out.append(report.line_plot(plots / f"cie_share_{target}.png", cie, xlabel="sparsity",
                                        ylabel="share of the CIEs (%)", title=f"CIE share per group, {target} "
                                        "(Wilson 95 %)", scale=100))
    return out


def _balance_plots(rows: list[dict[str, Any]], plots: Path) -> list[Path]:
    out = []
    for metric, ylabel in (("macro_f1", "macro-F1 (%)"), ("dp_max", "demographic-parity difference, max (pt)"),
                           ("gap", "accuracy gap best − worst group (pt)")):
        series: report.Series = {metric: [(r["smallest_share"], r[metric]) for r in rows]}
        out.append(report.line_plot(plots / f"{metric}.png", series, xlabel="share of the smallest group in training",
                                    ylabel=ylabel, title=f"{metric} against training balance", scale=100))
    acc: report.Series = {}
    for r in rows:
        for g, d in r["group_accuracy"].items():
            acc.setdefault(g, []).append((r["smallest_share"], d))
    out.append(report.line_plot(plots / "group_accuracy.png", acc, xlabel="share of the smallest group in training",
                                ylabel="accuracy (%)", title="accuracy per group against training balance", scale=100))
    return out


def run_study(cfg: StudyConfig, *, out: Path, say: Callable[[str], None] | None = None,
              executor: Any = None) -> StudyOutcome:
    """Run (or resume) the study and write its report in ``out``.

    ``executor`` (an ``edgefair.bench.executor`` executor, e.g. Ray): the population's
    trainings run first as independent host tasks on it; the rest then finds them cached.
    ``out`` must then be a folder every node sees.
    """
    t0, c0 = time.perf_counter(), _cpu_seconds()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = say or (lambda msg: None)
    if executor is not None:
        jobs = train_jobs(cfg, out)
        log(f"training {len(jobs)} model(s) on the {type(executor).__name__}")
        executor.map_host(run_train_job, jobs)
    if cfg.kind == "compression":
        col = run_compression(cfg, out, log)
        rows = analysis.compression_rows(cfg, col)
        tables = report.compression_tables(rows)
        findings = analysis.compression_findings(cfg, rows)
        if "kd" in cfg.mitigations:
            findings += analysis.distillation_findings(rows)
        plots = _compression_plots(rows, out / "plots")
    else:
        col, runs = run_balance(cfg, out, log)
        rows = analysis.balance_rows(cfg, col.test, runs)
        tables = report.balance_tables(rows)
        findings = analysis.balance_findings(rows)
        plots = _balance_plots(rows, out / "plots")
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    doc = {"study": cfg.name, "title": cfg.title, "paper": cfg.paper, "config": cfg.to_dict(), "rows": rows,
           "findings": findings, "notes": col.notes, "failed": col.failed, "runs": col.runs,
           "test": {"n": int(col.test.labels.size), "groups": {g: int((col.test.groups == g).sum())
                                                                for g in sorted(set(col.test.groups.tolist()))}},
           "seconds": seconds, "cpu_seconds": cpu}
    html_path, json_path = report.write_report(out, doc, tables, plots)
    return StudyOutcome(cfg.name, str(out), str(html_path), str(json_path), seconds, cpu, findings, col.notes,
                        col.failed)
