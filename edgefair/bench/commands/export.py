"""``bench export``: a trained run to every target × sparsity (or a foreign file wrapped as one artefact)."""

from __future__ import annotations

from pathlib import Path

import click

from edgefair.bench.console import CLIError, emit_json, err, progress_bar
from edgefair.bench.options import command_errors, json_option
from edgefair.contracts.targets import TARGET_NAMES


def _import(import_file: Path, like_run: Path | None, out: Path, force: bool, as_json: bool) -> None:
    from edgefair.export.importer import import_artifact

    if like_run is None:
        raise CLIError("--import needs --like runs/NAME (the run whose preprocessing and class names it uses)")
    res = import_artifact(import_file, like_run, out, force=force)
    if as_json:
        emit_json(res.to_dict(full=True))
    else:
        err.print(f"imported {import_file} as {res.path}", markup=False)


@click.command("export")
@click.option("--model", "run_dir", type=click.Path(path_type=Path), default=None,
              help="Run directory written by bench train.")
@click.option("--target", "targets", multiple=True,
              help=f"Target (repeatable) or 'all': {' '.join(TARGET_NAMES)}.")
@click.option("--sparsity", default="0", show_default=True,
              help="Comma-separated levels in [0, 1), e.g. 0,0.5,0.75,0.9.")
@click.option("--pruning", type=click.Choice(["unstructured", "structured"]), default="unstructured",
              show_default=True)
@click.option("--finetune-epochs", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--calib", type=click.IntRange(min=1), default=256, show_default=True,
              help="Calibration images for int8.")
@click.option("--qat", is_flag=True, help="Quantisation-aware fine-tuning before the int8 exports.")
@click.option("--parity-n", type=click.IntRange(min=1), default=512, show_default=True,
              help="Validation images for the parity check.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("artifacts"), show_default=True)
@click.option("--force", is_flag=True, help="Convert again even when a cached artefact matches.")
@click.option("--import", "import_file", type=click.Path(path_type=Path), default=None,
              help="Wrap your own .onnx/.tflite file as an artefact.")
@click.option("--like", "like_run", type=click.Path(path_type=Path), default=None,
              help="With --import: the run whose preprocessing and classes it shares.")
@json_option
@command_errors
def export_cmd(run_dir: Path | None, targets: tuple[str, ...], sparsity: str, pruning: str, finetune_epochs: int,
               calib: int, qat: bool, parity_n: int, out: Path, force: bool, import_file: Path | None,
               like_run: Path | None, as_json: bool) -> None:
    """Export a trained model to every target × sparsity, with manifests and parity checks."""
    from edgefair.bench.tables import print_export_table
    from edgefair.export.matrix import export_matrix

    if import_file is not None:
        _import(import_file, like_run, out, force, as_json)
        return
    if run_dir is None:
        raise CLIError("--model runs/NAME is required (or --import FILE --like runs/NAME)")
    if not targets:
        raise CLIError("name at least one --target (or --target all)")
    with progress_bar("export", None) as update:
        def on_progress(done: int, total: int, msg: str) -> None:
            update(done, total=total, description=str(msg)[:50])

        report = export_matrix(run_dir, targets=list(targets), sparsities=sparsity, out=out, pruning=pruning,
                               finetune_epochs=finetune_epochs, calib=calib, qat=qat, force=force, parity_n=parity_n,
                               progress=on_progress)
    if as_json:
        emit_json(report.to_dict())
    else:
        print_export_table(report)
    if not report.ok:
        raise SystemExit(1)
