"""``bench export``: a trained run to every target × sparsity (or a foreign file wrapped as one artefact)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from edgefair.bench.console import CLIError, emit_json, err, progress_bar
from edgefair.bench.options import command_errors, json_option
from edgefair.contracts.errors import UsageError
from edgefair.contracts.targets import TARGET_NAMES
from edgefair.export.import_options import ImportOptions


def _import(import_file: Path, out: Path, force: bool, as_json: bool, options: ImportOptions, parity_n: int) -> None:
    from edgefair.export.importer import import_artifact

    res = import_artifact(import_file, out=out, options=options, force=force, parity_n=parity_n)
    if as_json:
        emit_json(res.to_dict(full=True))
        return
    parity = (res.manifest.parity if res.manifest else None) or {}
    acc = parity.get("val_accuracy")
    shown = f"; accuracy {acc:.1%} on {parity.get('n')} labelled images" if acc is not None else ""
    verdict = "imported with warnings" if res.warnings else "imported"
    err.print(f"{verdict}: {import_file} as {res.path} ({res.target}{shown})", markup=False)
    for w in res.warnings:
        err.print(f"  [yellow]warning[/]: {escape(w)}")


def _import_options(like_run: Path | None, size: int | None, channels: int | None, mean: float | None,
                    std: float | None, classes: str | None, prep_file: Path | None,
                    dataset: str | None) -> ImportOptions:
    from edgefair.export.import_options import parse_classes

    return ImportOptions(size=size, channels=channels, mean=mean, std=std,
                         classes=parse_classes(classes) if classes is not None else None,
                         preprocessing_file=prep_file, like_run=like_run, dataset=dataset)


def _number(value: str, flag: str, allowed: str, kind: type = float) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise UsageError(f"{flag}: '{value}' is not a number; allowed range: {allowed}") from None


def _compression_options(clustering: str | None, mitigation: str, kd_alpha: str, kd_temperature: str,
                         prune_scope: str) -> dict[str, Any]:
    """The compression flags, parsed and range-checked (UsageError, exit 2, naming the flag)."""
    from edgefair.export.matrix import check_compression_options

    k = None
    if clustering is not None and clustering.strip().lower() not in ("none", "0", ""):
        k = _number(clustering, "--clustering", "an integer K >= 2 (or none)", int)
    opts = {"clustering": k, "mitigation": mitigation.strip().lower(),
            "kd_alpha": _number(kd_alpha, "--kd-alpha", "[0, 1]"),
            "kd_temperature": _number(kd_temperature, "--kd-temperature", "(0, inf)"), "prune_scope": prune_scope}
    check_compression_options(**opts)
    return opts


@click.command("export")
@click.option("--model", "run_dir", type=click.Path(path_type=Path), default=None,
              help="Run directory written by bench train.")
@click.option("--target", "targets", multiple=True,
              help=f"Target (repeatable) or 'all': {' '.join(TARGET_NAMES)}.")
@click.option("--sparsity", default="0", show_default=True,
              help="Comma-separated levels in [0, 1), e.g. 0,0.5,0.75,0.9.")
@click.option("--pruning", type=click.Choice(["unstructured", "structured"]), default="unstructured",
              show_default=True)
@click.option("--prune-scope", type=click.Choice(["global", "layer"]), default="global", show_default=True,
              help="Unstructured pruning: one magnitude threshold for all layers, or the level in every layer.")
@click.option("--finetune-epochs", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--clustering", default=None, metavar="K",
              help="Weight clustering: K >= 2 shared values per Conv/Linear kernel (default: none).")
@click.option("--mitigation", default="none", show_default=True, metavar="none|kd",
              help="kd: every fine-tune distils from the uncompressed model.")
@click.option("--kd-alpha", default="0.9", show_default=True, metavar="A",
              help="With --mitigation kd: weight of the KL term, in [0, 1].")
@click.option("--kd-temperature", default="4", show_default=True, metavar="T",
              help="With --mitigation kd: softmax temperature, > 0.")
@click.option("--calib", type=click.IntRange(min=1), default=256, show_default=True,
              help="Calibration images for int8.")
@click.option("--qat", is_flag=True, help="Quantisation-aware fine-tuning before the int8 exports.")
@click.option("--parity-n", type=click.IntRange(min=1), default=512, show_default=True,
              help="Validation images for the parity check (with --import: for its accuracy).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("artifacts"), show_default=True)
@click.option("--force", is_flag=True,
              help="Convert again even when a cached artefact matches (with --import: replace the artefact).")
@click.option("--import", "import_file", type=click.Path(path_type=Path), default=None,
              help="Wrap your own .onnx/.tflite file as an artefact (no training run needed).")
@click.option("--like", "like_run", type=click.Path(path_type=Path), default=None,
              help="With --import: take preprocessing, classes and test data from this run.")
@click.option("--size", type=click.IntRange(min=1), default=None, help="With --import: input image size.")
@click.option("--channels", type=click.IntRange(min=1), default=None, help="With --import: 1 grey, 3 RGB.")
@click.option("--mean", type=float, default=None, help="With --import: x = (pixel/255 - mean)/std.")
@click.option("--std", type=click.FloatRange(min=0, min_open=True), default=None, help="With --import: see --mean.")
@click.option("--classes", default=None, help="With --import: class names in output order, comma-separated.")
@click.option("--preprocessing", "prep_file", type=click.Path(path_type=Path), default=None,
              help="With --import: a TOML file with size, channels, mean, std, classes.")
@click.option("--dataset", default=None,
              help="With --import: labelled data to measure the import on (recorded as its test data).")
@json_option
@command_errors
def export_cmd(run_dir: Path | None, targets: tuple[str, ...], sparsity: str, pruning: str, prune_scope: str,
               finetune_epochs: int, clustering: str | None, mitigation: str, kd_alpha: str, kd_temperature: str,
               calib: int, qat: bool, parity_n: int, out: Path, force: bool, import_file: Path | None,
               like_run: Path | None, size: int | None, channels: int | None, mean: float | None,
               std: float | None, classes: str | None, prep_file: Path | None, dataset: str | None,
               as_json: bool) -> None:
    """Export a trained model to every target × sparsity, with manifests and parity checks."""
    from edgefair.bench.tables import print_export_table
    from edgefair.export.matrix import export_matrix

    if import_file is not None:
        _import(import_file, out, force, as_json,
                _import_options(like_run, size, channels, mean, std, classes, prep_file, dataset), parity_n)
        return
    import_only = {"--like": like_run, "--size": size, "--channels": channels, "--mean": mean, "--std": std,
                   "--classes": classes, "--preprocessing": prep_file, "--dataset": dataset}
    given = [k for k, v in import_only.items() if v is not None]
    if given:
        raise UsageError(f"{', '.join(given)} only apply with --import FILE")
    compression = _compression_options(clustering, mitigation, kd_alpha, kd_temperature, prune_scope)
    if run_dir is None:
        raise CLIError("--model runs/NAME is required (or --import FILE)")
    if not targets:
        raise CLIError("name at least one --target (or --target all)")
    with progress_bar("export", None) as update:
        def on_progress(done: int, total: int, msg: str) -> None:
            update(done, total=total, description=str(msg)[:50])

        report = export_matrix(run_dir, targets=list(targets), sparsities=sparsity, out=out, pruning=pruning,
                               finetune_epochs=finetune_epochs, calib=calib, qat=qat, force=force, parity_n=parity_n,
                               progress=on_progress, **compression)
    if as_json:
        emit_json(report.to_dict())
    else:
        print_export_table(report)
    if not report.ok:
        raise SystemExit(1)
