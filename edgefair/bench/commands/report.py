"""``bench report`` and ``bench gate``: read the results database, write or judge."""

from __future__ import annotations

from pathlib import Path

import click

from edgefair.bench.console import emit_json, err
from edgefair.bench.options import DEFAULT_DB, DEFAULT_REPORT, command_errors, json_option, parse_fraction, parse_points


@click.command("report")
@click.option("--db", type=click.Path(path_type=Path), default=DEFAULT_DB, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=DEFAULT_REPORT, show_default=True)
@json_option
@command_errors
def report_cmd(db: Path, out: Path, as_json: bool) -> None:
    """Write report.html (self-contained) and report.md from the results database."""
    from edgefair.bench.report import write_report

    info = write_report(db, out)
    if as_json:
        emit_json(info.to_dict())
        return
    err.print(f"wrote {info.html} and {info.markdown} ({info.n_rows} rows)", markup=False)
    for rec in info.recommendations:
        err.print(f"recommendation: {rec.plain()}", markup=False, soft_wrap=True)


@click.command("gate")
@click.option("--baseline", type=click.Path(path_type=Path), required=True,
              help="Results DB, pytest-benchmark JSON or gate JSON.")
@click.option("--current", type=click.Path(path_type=Path), default=DEFAULT_DB, show_default=True,
              help="Results DB, pytest-benchmark JSON or gate JSON.")
@click.option("--max-p90-regression", default="10%", show_default=True)
@click.option("--max-size-regression", default="5%", show_default=True)
@click.option("--max-gap-increase", default="2pt", show_default=True)
@click.option("--min-accuracy-ratio", default="0.99", show_default=True)
@click.option("--max-rss-regression", default=None, help="Also gate peak RSS (e.g. 20%).")
@click.option("--write-baseline", type=click.Path(path_type=Path), default=None,
              help="Also write CURRENT as a gate JSON baseline here.")
@json_option
@command_errors
def gate_cmd(baseline: Path, current: Path, max_p90_regression: str, max_size_regression: str, max_gap_increase: str,
             min_accuracy_ratio: str, max_rss_regression: str | None, write_baseline: Path | None,
             as_json: bool) -> None:
    """Fail (exit 1) when CURRENT is slower, bigger, less accurate or less fair than BASELINE."""
    from edgefair.bench.gate import GateBounds, export_gate_json, format_diff_table, run_gate

    bounds = GateBounds(
        max_p90_regression=parse_fraction(max_p90_regression, "--max-p90-regression"),
        max_size_regression=parse_fraction(max_size_regression, "--max-size-regression"),
        max_gap_increase_pt=parse_points(max_gap_increase, "--max-gap-increase"),
        min_accuracy_ratio=parse_fraction(min_accuracy_ratio, "--min-accuracy-ratio"),
        max_rss_regression=None if max_rss_regression is None else parse_fraction(max_rss_regression,
                                                                                   "--max-rss-regression"),
    )
    result = run_gate(baseline, current, bounds)
    if write_baseline is not None:
        export_gate_json(current, write_baseline)
    if as_json:
        emit_json(result.to_dict())
    else:
        err.print(format_diff_table(result), markup=False, highlight=False)
    if not result.ok:
        raise SystemExit(1)
