"""The ``bench`` command line (also ``python -m edgefair``).

Every command takes ``--json`` (one JSON document on stdout, logs on stderr) and exits
non-zero with a one-line reason on failure.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import click

from edgefair.bench.console import CLIError, emit_json, err, progress_bar

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Error types whose message is already a one-line reason for the user."""
    from edgefair.data.sample import DatasetError
    from edgefair.models.checkpoint import CheckpointError

    types: list[type[BaseException]] = [CLIError, DatasetError, CheckpointError, FileNotFoundError, PermissionError]
    for mod, name in (("edgefair.export.errors", "ExportError"), ("edgefair.devices.base", "DeviceError"),
                      ("edgefair.fairness.inputs", "AuditInputError"), ("edgefair.bench.config", "ConfigError"),
                      ("edgefair.bench.store", "StoreError"), ("edgefair.bench.report", "ReportError"),
                      ("edgefair.bench.gate", "GateError")):
        try:
            types.append(getattr(__import__(mod, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(types)


def command_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected exceptions into one line on stderr and a non-zero exit code.

    An unexpected exception still gets one line; its traceback goes to a log file.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        name = fn.__name__.removesuffix("_cmd").replace("_", " ")
        try:
            return fn(*args, **kwargs)
        except click.exceptions.Exit:
            raise
        except click.ClickException:
            raise
        except KeyboardInterrupt:
            err.print(f"bench {name}: interrupted; finished results are kept")
            sys.exit(130)
        except _expected_errors() as e:
            code = getattr(e, "exit_code", 1)
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            err.print(f"bench {name}: error: {msg}", markup=False, soft_wrap=True)
            sys.exit(code)
        except Exception as e:  # a bug: one line for the user, the traceback in a file
            from edgefair.paths import cache_dir

            log = (cache_dir("logs") or Path("/tmp")) / "last-error.txt"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(traceback.format_exc())
            first = str(e).splitlines()[0] if str(e) else ""
            err.print(f"bench {name}: internal error: {type(e).__name__}: {first} (traceback in {log})", markup=False, soft_wrap=True)
            sys.exit(70)

    return wrapper


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout; logs stay on stderr.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgefair")
def main() -> None:
    """edgefair: benchmark compressed FER models for size, speed, RSS and subgroup fairness."""


# ---------------------------------------------------------------- data
@main.group()
def data() -> None:
    """Write or preview datasets (the embedded synthfer generator)."""


@data.command("synthfer")
@click.option("--n", "n", type=click.IntRange(min=24), default=8000, show_default=True, help="Number of samples.")
@click.option("--preset", type=click.Choice(["default", "balanced"]), default="default", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", type=click.IntRange(min=16), default=48, show_default=True)
@click.option("--rgb", is_flag=True, help="Render RGB instead of grey.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output folder (generic folder format).")
@json_option
@command_errors
def data_synthfer_cmd(n: int, preset: str, seed: int, size: int, rgb: bool, out: Path, as_json: bool) -> None:
    """Generate synthfer and write it as images + labels.csv (the generic folder format)."""
    from edgefair.data.folder import write_folder
    from edgefair.data.synthfer import SynthConfig, generate_dataset

    cfg = SynthConfig.from_preset(preset).replace(n=n, seed=seed, size=size, rgb=rgb)
    with progress_bar("generating synthfer", n) as update:
        ds = generate_dataset(cfg, progress=lambda d, t: update(d))
    path = write_folder(ds, out)
    doc = {"out": str(path), "counts": ds.counts(), "config": cfg.to_dict(), "fingerprint": ds.fingerprint()}
    if as_json:
        emit_json(doc)
    else:
        err.print(f"wrote {sum(ds.counts().values())} samples to {path} ({ds.counts()}); load with --dataset folder:{path}")


@data.command("preview")
@click.option("--dataset", default="synthfer", show_default=True, help="Dataset spec, e.g. synthfer, synthfer:balanced, folder:PATH.")
@click.option("--attribute", default="skin_tone", show_default=True, help="Attribute whose groups form the columns.")
@click.option("--per-cell", type=click.IntRange(1, 8), default=3, show_default=True)
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="train", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("preview.png"), show_default=True)
@json_option
@command_errors
def data_preview_cmd(dataset: str, attribute: str, per_cell: int, split: str, out: Path, as_json: bool) -> None:
    """Save a PNG grid of samples: one row per expression, columns per group of an attribute."""
    from edgefair.data.preview import save_preview
    from edgefair.data.registry import load_dataset

    with progress_bar("loading dataset", None) as update:
        ds = load_dataset(dataset, progress=lambda d, t: update(d, total=t))
    info = save_preview(ds, out, attribute=attribute, per_cell=per_cell, split=split)
    if as_json:
        emit_json(info)
    else:
        err.print(f"wrote {out}: {len(info['rows'])} expressions × {len(info['groups'])} {attribute} groups")


# ---------------------------------------------------------------- train
@main.command("train")
@click.option("--dataset", default="synthfer", show_default=True, help="synthfer[:balanced] | fer2013:PATH | rafdb:PATH | ckplus:PATH | affectnet:PATH | folder:PATH")
@click.option("--arch", type=click.Choice(["cnn", "mobilenetv2", "resnet18"]), default="cnn", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=12, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/base"), show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", type=click.IntRange(min=16), default=48, show_default=True, help="Input size in pixels.")
@click.option("--channels", type=click.Choice(["1", "3"]), default="1", show_default=True)
@click.option("--width", type=float, default=None, help="Width multiplier (mobilenetv2, resnet18).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", type=float, default=3e-3, show_default=True)
@click.option("--threads", type=click.IntRange(min=0), default=0, help="torch threads (0: all cores).")
@click.option("--teacher", type=click.Path(path_type=Path), default=None, help="Run directory of a teacher for knowledge distillation.")
@click.option("--kd-temperature", type=float, default=4.0, show_default=True)
@click.option("--kd-alpha", type=click.FloatRange(0, 1), default=0.9, show_default=True, help="Weight of the distillation (KL) term.")
@json_option
@command_errors
def train_cmd(dataset: str, arch: str, epochs: int, out: Path, seed: int, size: int, channels: str, width: float | None,
              batch_size: int, lr: float, threads: int, teacher: Path | None, kd_temperature: float, kd_alpha: float,
              as_json: bool) -> None:
    """Train a FER model; keep the best validation checkpoint; report test accuracy per group."""
    from edgefair.models.run import TrainRequest, train_run
    from edgefair.models.training import TrainConfig

    kwargs: dict[str, Any] = {}
    if width is not None:
        if arch == "cnn":
            raise CLIError("--width applies to mobilenetv2 and resnet18; the cnn's widths are fixed")
        kwargs["width"] = width
    req = TrainRequest(dataset=dataset, arch=arch, out=out, epochs=epochs, seed=seed, size=size, channels=int(channels),
                       arch_kwargs=kwargs, teacher=teacher,
                       train=TrainConfig(batch_size=batch_size, lr=lr, threads=threads, kd_temperature=kd_temperature, kd_alpha=kd_alpha))
    with progress_bar("preparing data", None) as update:
        def on_progress(stage: str, done: float, total: float) -> None:
            update(done, description="generating data" if stage == "data" else f"training {arch}", total=total)

        result = train_run(req, progress=on_progress)
    if as_json:
        emit_json(result)
        return
    from edgefair.bench.tables import print_train_summary

    print_train_summary(result)


def _register_optional_commands() -> None:
    """Commands that live in their own modules (imported lazily to keep start-up fast)."""
    from edgefair.bench import commands  # noqa: F401  (registers on import)


_register_optional_commands()
