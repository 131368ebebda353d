"""report.md: the report as Markdown, linking the PNGs under plots/."""

from __future__ import annotations

from typing import Any

from edgefair.bench import report_compression, report_fairness, report_timing
from edgefair.bench.report_context import COLUMNS, ReportContext
from edgefair.bench.report_env import environment
from edgefair.bench.report_figures import Plot
from edgefair.bench.report_rows import ReportRow, _gap_text, _ms, _pct, _rss, _settings_text, _size, _sparsity
from edgefair.bench.report_rule import RULE, VERDICTS


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_row(r: ReportRow, ctx: ReportContext) -> str:
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


def _md_results(ctx: ReportContext) -> list[str]:
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


def _markdown(ctx: ReportContext) -> str:
    out = ["# edgefair benchmark report", "",
           f"Generated {ctx.generated} from `{ctx.db_path}`: {ctx.counts}. "
           f"The same report with embedded figures: [report.html](report.html).", "",
           "## Recommendation", "", f"Rule: {RULE}", ""]
    out += [f"- {r.text}" for r in ctx.recs.values()] + [""]
    out += _md_results(ctx) + [""]
    out += _md_figures("Pareto fronts", ctx.pareto, "No successful run with an accuracy.")
    out += report_fairness.markdown(ctx.fairness)
    out += report_compression.markdown(ctx.fairness, ctx.populations)
    out += _md_figures("Per-group accuracy", ctx.groups, "No audits stored.")
    out += report_timing.markdown(ctx.op_tables, ctx.scaling)
    out += ["## Environment", ""]
    for device, rows in ctx.devices.items():
        out += [f"### {device}", "", "| field | value |", "|---|---|"]
        out += [f"| {_md_cell(k)} | {_md_cell(v)} |" for k, v in environment(rows)]
        out.append("")
    return "\n".join(out) + "\n"


