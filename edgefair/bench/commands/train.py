"""``bench train``: a FER model from a dataset, best validation checkpoint kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgefair.bench.console import CLIError, emit_json, progress_bar
from edgefair.bench.options import command_errors, json_option

ARCHS = ("cnn", "mobilenetv2", "resnet18")


@click.command("train")
@click.option("--dataset", default="synthfer", show_default=True,
              help="synthfer[:balanced] | fer2013:PATH | rafdb:PATH | ckplus:PATH | affectnet:PATH | folder:PATH")
@click.option("--arch", type=click.Choice(ARCHS), default="cnn", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=12, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/base"), show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", type=click.IntRange(min=16), default=48, show_default=True, help="Input size in pixels.")
@click.option("--channels", type=click.Choice(["1", "3"]), default="1", show_default=True)
@click.option("--width", type=float, default=None, help="Width multiplier (mobilenetv2, resnet18).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", type=float, default=3e-3, show_default=True)
@click.option("--threads", type=click.IntRange(min=0), default=0, help="torch threads (0: all cores).")
@click.option("--teacher", type=click.Path(path_type=Path), default=None,
              help="Run directory of a teacher for knowledge distillation.")
@click.option("--kd-temperature", type=float, default=4.0, show_default=True)
@click.option("--kd-alpha", type=click.FloatRange(0, 1), default=0.9, show_default=True,
              help="Weight of the distillation (KL) term.")
@json_option
@command_errors
def train_cmd(dataset: str, arch: str, epochs: int, out: Path, seed: int, size: int, channels: str,
              width: float | None, batch_size: int, lr: float, threads: int, teacher: Path | None,
              kd_temperature: float, kd_alpha: float, as_json: bool) -> None:
    """Train a FER model; keep the best validation checkpoint; report test accuracy per group."""
    from edgefair.models.run import TrainRequest, train_run
    from edgefair.models.training import TrainConfig

    kwargs: dict[str, Any] = {}
    if width is not None:
        if arch == "cnn":
            raise CLIError("--width applies to mobilenetv2 and resnet18; the cnn's widths are fixed")
        kwargs["width"] = width
    req = TrainRequest(dataset=dataset, arch=arch, out=out, epochs=epochs, seed=seed, size=size,
                       channels=int(channels), arch_kwargs=kwargs, teacher=teacher,
                       train=TrainConfig(batch_size=batch_size, lr=lr, threads=threads,
                                         kd_temperature=kd_temperature, kd_alpha=kd_alpha))
    with progress_bar("preparing data", None) as update:
        def on_progress(stage: str, done: float, total: float) -> None:
            update(done, description="generating data" if stage == "data" else f"training {arch}: batches",
                   total=total)

        result = train_run(req, progress=on_progress)
    if as_json:
        emit_json(result)
        return
    from edgefair.bench.tables import print_train_summary

    print_train_summary(result)
