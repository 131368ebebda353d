"""``bench fairness``: audit every artefact for subgroup accuracy gaps against the reference."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from edgefair.bench.console import emit_json, err, progress_bar
from edgefair.bench.options import DEFAULT_DB, command_errors, json_option
from edgefair.contracts.audit import MIN_SUBJECTS


class AuditProgress:
    """One bar step per artefact audited (or found audited); evaluations on the host named in the label."""

    def __init__(self, update: Callable[..., None]) -> None:
        self.update, self.done = update, 0

    def __call__(self, kind: str, name: str, info: dict) -> None:
        if kind in ("audited", "cached", "failed"):
            self.done += 1
            self.update(self.done, description=f"audit: {name}"[:60])
        elif kind.startswith("eval-"):
            self.update(self.done, description=f"evaluating on the host: {name}"[:60])
        elif kind == "note":
            err.print(info.get("message", ""), markup=False)


@click.command("fairness")
@click.option("--artifacts", type=click.Path(path_type=Path), default=Path("artifacts"), show_default=True)
@click.option("--dataset", default=None, help="Labelled test data (default: the dataset named in the manifests).")
@click.option("--device", default="local", show_default=True,
              help="Use predictions from bench run --eval on this device.")
@click.option("--attributes", default=None, help="Comma-separated, e.g. gender,skin_tone,age (default: all).")
@click.option("--intersections", is_flag=True, help="Also audit every pair of attributes (e.g. skin_tone×gender).")
@click.option("--reference", default=None, help="Reference artefact (default: torch-fp32-s0, else onnx-fp32-s0).")
@click.option("--min-n", type=click.IntRange(min=1), default=30, show_default=True,
              help="A group with fewer images is not tested (verdict at best insufficient-evidence).")
@click.option("--min-subjects", type=click.IntRange(min=2), default=MIN_SUBJECTS, show_default=True,
              help="A group with fewer subjects (where the data has subject ids) is not tested.")
@click.option("--keep-missing", is_flag=True,
              help="Audit images without an attribute value as a group 'unknown' (default: left out, counted).")
@click.option("--alpha", type=click.FloatRange(0, 0.5, min_open=True), default=0.05, show_default=True,
              help="Level of every interval (1 - alpha) and of the verdict family.")
@click.option("--n-boot", type=click.IntRange(min=100), default=1000, show_default=True,
              help="Subject bootstrap resamples of the descriptive intervals (macro-F1, parity, CEV/SDE).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--gap-points", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Gap growth (points) that counts as widened.")
@click.option("--min-accuracy-ratio", type=click.FloatRange(0, 1, min_open=True), default=0.99, show_default=True)
@click.option("--db", type=click.Path(path_type=Path), default=DEFAULT_DB, show_default=True)
@click.option("--plots", type=click.Path(path_type=Path), default=Path("results/plots"), show_default=True)
@click.option("--fail-on-verdict", is_flag=True, help="Exit 1 when any artefact's verdict is not pass (for CI).")
@click.option("--verbose", is_flag=True, help="Print every artefact's full audit, not only the summary table.")
@json_option
@command_errors
def fairness_cmd(artifacts: Path, dataset: str | None, device: str, attributes: str | None, intersections: bool,
                 reference: str | None, min_n: int, min_subjects: int, keep_missing: bool, alpha: float, n_boot: int,
                 seed: int, gap_points: float, min_accuracy_ratio: float, db: Path, plots: Path,
                 fail_on_verdict: bool, verbose: bool, as_json: bool) -> None:
    """Audit every artefact for subgroup accuracy gaps against the uncompressed reference."""
    from edgefair.bench.audit_run import AuditRequest, audit_artifacts
    from edgefair.bench.tables import print_audit_table
    from edgefair.fairness import VerdictThresholds, format_table

    req = AuditRequest(artifacts=artifacts, db=db, device=device, dataset=dataset,
                       attributes=[a.strip() for a in attributes.split(",") if a.strip()] if attributes else None,
                       intersections=intersections, reference=reference, min_n=min_n, min_subjects=min_subjects,
                       keep_missing=keep_missing, alpha=alpha, n_boot=n_boot, seed=seed,
                       thresholds=VerdictThresholds(min_relative_accuracy=min_accuracy_ratio,
                                                    gap_widening_points=gap_points), plots_dir=plots)
    from edgefair.bench.measure import discover_artifacts

    total = len(discover_artifacts(artifacts))
    with progress_bar("auditing", total) as update:
        summaries, full = audit_artifacts(req, on_event=AuditProgress(update))
    if as_json:
        emit_json({"ok": not full["missing"], "not_audited": full["missing"], "reference": full["reference"],
                   "dataset": full["dataset"], "device": device,
                   "attributes": full["attributes"], "summaries": [s.to_dict() for s in summaries],
                   "audits": {k: v.to_dict() for k, v in full["results"].items()}, "plots": str(plots)})
    else:
        for name, res in full["results"].items() if verbose else ():
            err.print(f"\n{name}" + (" (reference)" if name == full["reference"] else ""), markup=False)
            err.print(format_table(res), markup=False, highlight=False)
        print_audit_table(summaries, reference=full["reference"])
        err.print(f"plots in {plots}/group-accuracy-*.png; audits stored in {db}", markup=False)
    if full["missing"]:
        err.print(f"bench fairness: error: {len(full['missing'])} artefact(s) not audited, their evaluation run "
                  f"failed: {', '.join(full['missing'])} (see bench run --eval)", markup=False)
        raise SystemExit(1)
    if fail_on_verdict and any(s.verdict != "pass" for s in summaries if not s.is_reference):
        raise SystemExit(1)
