"""``bench sweep``: train → export matrix → run on each device → audit → report; resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgefair.bench.commands.farm import executor_options, farm_devices
from edgefair.bench.console import emit_json, err, progress_bar
from edgefair.bench.options import DEFAULT_DB, command_errors, json_option


class _SweepProgress:
    """Turns sweep events into one progress bar whose label names the stage it is in.

    The bar counts stage units (a training, an export, one artefact measured or audited,
    the report); the label says what is running now, with the step's own count where the
    event carries one (training batches, exported artefacts).
    """

    def __init__(self, update: Any, total: int | None = None) -> None:
        self._update, self.done, self.total = update, 0, total

    def update(self, done: int, description: str) -> None:
        """Never full before the sweep returns (the report is the last unit)."""
        self._update(done if self.total is None else min(done, self.total - 1), description=description)

    def __call__(self, kind: str, info: dict) -> None:
        if kind == "stage":
            self._stage(info)
        elif kind == "artifact":
            counted = info["kind"] in ("done", "failed", "cached", "audited", "host-only")
            self.done += counted
            verb = {"run": "measuring", "audit": "auditing"}.get(info["stage"], info["stage"])
            self.update(self.done, description=f"{info['stage']} {info['device']}: {verb} {info['name']}")
        elif kind == "progress":
            self.update(self.done, description=self._progress_label(info))

    def _stage(self, info: dict) -> None:
        label = " ".join(str(x) for x in (info["stage"], info.get("arch"), info.get("device")) if x)
        status = info["status"]
        if status in ("done", "cached") and info["stage"] in ("train", "export", "population"):
            self.done += 1
        words = {"start": "starting", "done": "done", "cached": "cached (nothing to redo)"}
        self.update(self.done, description=f"{label}: {words.get(status, status)}")

    @staticmethod
    def _progress_label(info: dict) -> str:
        stage = " ".join(str(x) for x in (info["stage"], info.get("arch")) if x)
        if info["stage"] == "train" and info.get("total"):
            what = "generating data" if info.get("what") == "data" else "batch"
            return f"{stage}: {what} {int(info['done'])}/{int(info['total'])}"
        args = info.get("args") or []
        if len(args) >= 2 and all(a.isdigit() for a in args[:2]):  # export: (done, total, message)
            return f"{stage}: {args[0]}/{args[1]} {' '.join(args[2:])}"[:70]
        return f"{stage}: {' '.join(args)}"[:70]


@click.command("sweep")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="sweep.toml (default: built-in defaults).")
@click.option("--device", "devices", multiple=True, help="Override the config's devices (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), default=DEFAULT_DB.parent, show_default=True,
              help="Folder of the sweep: results.db (the default database of run/fairness/report/gate), report/, "
                   "runs/, artifacts/.")
@click.option("--seeds", type=int, default=None,
              help="Reference models per arch (overrides the config's seeds); above 1 the report adds population "
                   "figures: CIEs, CEV/SDE averaged over trials, every figure's spread over seeds.")
@click.option("--print-config", is_flag=True, help="Print the effective configuration as TOML and exit.")
@executor_options
@json_option
@command_errors
def sweep_cmd(config_path: Path | None, devices: tuple[str, ...], seeds: int | None, out: Path, print_config: bool,
              executor: str, ray_address: str | None, farm_path: Path | None, as_json: bool) -> None:
    """Train → export matrix → run on each device → audit → report; resumable after a kill."""
    from edgefair.bench.config import load_config, validate
    from edgefair.bench.executor import executor_for
    from edgefair.bench.sweep import matrix_names, run_sweep

    cfg = load_config(config_path)
    if devices:
        cfg.devices = list(devices)
        validate(cfg, "--device")
    if seeds is not None:
        cfg.seeds = seeds
        validate(cfg, "--seeds")
    farm = farm_devices(cfg, farm_path, explicit=bool(devices))
    if print_config:
        if as_json:
            emit_json(cfg.to_dict())
        else:
            click.echo(cfg.to_toml(), nl=False)
        return
    n_art = len(matrix_names(cfg)) * len(cfg.archs)
    total = len(cfg.archs) * (2 + (cfg.seeds > 1)) + n_art * len(cfg.devices) * 2 + 1
    with executor_for(executor, address=ray_address, farm=farm, devices=cfg.devices) as ex, \
            progress_bar("sweep", total) as update:
        outcome = run_sweep(cfg, out=out, on_event=_SweepProgress(update, total), executor=ex)
        update(total, description=f"sweep done: report in {outcome.report}")
    if as_json:
        emit_json(outcome.to_dict())
    else:
        from edgefair.bench.tables import print_sweep_summary

        print_sweep_summary(outcome)
        for f in outcome.failed:
            err.print(f"failed: {f}", markup=False)
    if outcome.failed:
        raise SystemExit(1)
