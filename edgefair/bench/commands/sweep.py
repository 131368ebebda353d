"""``bench sweep``: train → export matrix → run on each device → audit → report; resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgefair.bench.commands.farm import executor_options, farm_devices
from edgefair.bench.console import emit_json, err, progress_bar
from edgefair.bench.options import command_errors, json_option


class _SweepProgress:
    """Turns sweep events into one progress bar whose label names the stage it is in."""

    def __init__(self, update: Any) -> None:
        self.update, self.done = update, 0

    def __call__(self, kind: str, info: dict) -> None:
        if kind == "stage":
            label = f"{info['stage']} {info.get('arch', '')} {info.get('device', '')}".strip()
            if info["status"] in ("done", "cached") and info["stage"] in ("train", "export"):
                self.done += 1
            self.update(self.done, description=f"{label}: {info['status']}")
        elif kind == "artifact" and info["kind"] in ("done", "failed", "cached", "audited", "host-only"):
            self.done += 1
            self.update(self.done, description=f"{info['stage']} {info['device']}: {info['name']}")
        elif kind == "progress":
            what = " ".join(info.get("args", []))[:40]
            self.update(self.done, description=f"{info['stage']} {info.get('arch', '')}: {what}")


@click.command("sweep")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="sweep.toml (default: built-in defaults).")
@click.option("--device", "devices", multiple=True, help="Override the config's devices (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("results/sweep"), show_default=True)
@click.option("--print-config", is_flag=True, help="Print the effective configuration as TOML and exit.")
@executor_options
@json_option
@command_errors
def sweep_cmd(config_path: Path | None, devices: tuple[str, ...], out: Path, print_config: bool,
              executor: str, ray_address: str | None, farm_path: Path | None, as_json: bool) -> None:
    """Train → export matrix → run on each device → audit → report; resumable after a kill."""
    from edgefair.bench.config import load_config, validate
    from edgefair.bench.executor import executor_for
    from edgefair.bench.sweep import run_sweep

    cfg = load_config(config_path)
    if devices:
        cfg.devices = list(devices)
        validate(cfg, "--device")
    farm = farm_devices(cfg, farm_path, explicit=bool(devices))
    if print_config:
        if as_json:
            emit_json(cfg.to_dict())
        else:
            click.echo(cfg.to_toml(), nl=False)
        return
    n_art = len(cfg.targets) * len(cfg.sparsities) * len(cfg.archs)
    total = len(cfg.archs) * 2 + n_art * len(cfg.devices) * 2 + 1
    with executor_for(executor, address=ray_address, farm=farm, devices=cfg.devices) as ex, \
            progress_bar("sweep", total) as update:
        outcome = run_sweep(cfg, out=out, on_event=_SweepProgress(update), executor=ex)
        update(total)
    if as_json:
        emit_json(outcome.to_dict())
    else:
        from edgefair.bench.tables import print_sweep_summary

        print_sweep_summary(outcome)
        for f in outcome.failed:
            err.print(f"failed: {f}", markup=False)
    if outcome.failed:
        raise SystemExit(1)
