"""What the Markdown and HTML writers of the report share."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from edgefair.bench import report_fairness, report_timing
from edgefair.bench.report_compression import Population
from edgefair.bench.report_figures import Plot
from edgefair.bench.report_rows import ReportRow
from edgefair.bench.report_rule import Recommendation


@dataclass
class ReportContext:
    db_path: Path
    rows: list[ReportRow]
    devices: dict[str, list[ReportRow]]
    recs: dict[str, Recommendation]
    pareto: list[Plot]
    groups: list[Plot]
    generated: str
    populations: list[Population] = field(default_factory=list)  # bench sweep --seeds K

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


