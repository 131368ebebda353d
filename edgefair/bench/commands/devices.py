"""``bench devices``: device profiles, probes, and building the emulated Pi."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgefair.bench.console import emit_json, err, progress_bar
from edgefair.bench.options import command_errors, json_option


@click.group("devices", invoke_without_command=True)
@json_option
@click.pass_context
@command_errors
def devices_cmd(ctx: click.Context, as_json: bool) -> None:
    """List device profiles (built-in and ~/.config/edgefair/devices/*.toml)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.markup import escape
    from rich.table import Table

    from edgefair.devices import list_profiles
    from edgefair.devices.emulated import is_ready

    profiles = list_profiles()
    docs = []
    for p in profiles:
        d = p.to_dict()
        d["target"] = p.target()
        if p.emulated:
            d["ready"] = is_ready()
        docs.append(d)
    if as_json:
        emit_json({"devices": docs})
        return
    table = Table(title="device profiles (also: ssh://user@host:port, adb:SERIAL)")
    for col in ("name", "transport", "target", "description", "source"):
        table.add_column(col)
    for p, d in zip(profiles, docs, strict=True):
        extra = "" if "ready" not in d else (
            " [green](ready)[/]" if d["ready"] else " [yellow](run: bench devices setup pi4-emu)[/]")
        table.add_row(escape(p.name), p.transport, escape(p.target()) + extra, escape(p.description),
                      escape(str(p.source)))
    err.print(table)


def _scalar(key: str, value: Any) -> tuple[str, str]:
    """One value as text: None '—', booleans yes/no, kHz as MHz, floats with two decimals."""
    if value is None:
        return key, "—"
    if isinstance(value, bool):
        return key, "yes" if value else "no"
    if isinstance(value, (int, float)) and key.endswith("_khz"):
        return key.removesuffix("_khz") + " (MHz)", f"{value / 1000:.0f}"
    return key, f"{value:.2f}" if isinstance(value, float) else str(value)


def flatten(doc: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as ``a.b: value`` lines (lists of dicts as ``a[0].b``); plain lists joined."""
    if isinstance(doc, dict):
        if not doc:
            return [(prefix, "—")]
        return [row for k, v in doc.items() for row in flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(doc, (list, tuple)):
        if doc and any(isinstance(x, (dict, list, tuple)) for x in doc):
            return [row for i, x in enumerate(doc) for row in flatten(x, f"{prefix}[{i}]")]
        return [(prefix, ", ".join(_scalar(prefix, x)[1] for x in doc) if doc else "—")]
    return [_scalar(prefix, doc)]


@devices_cmd.command("probe")
@click.argument("name")
@json_option
@command_errors
def devices_probe_cmd(name: str, as_json: bool) -> None:
    """Print a device's fingerprint and which runtimes it has."""
    from edgefair.devices import open_transport, probe_device, resolve_device

    profile = resolve_device(name)
    transport = open_transport(profile, setup=False)
    try:
        info = probe_device(transport)
    finally:
        transport.close()
    if as_json:
        emit_json(info)
        return
    from rich.markup import escape
    from rich.table import Table

    from edgefair.bench.tables import cell

    table = Table(title=f"device {escape(name)}: fingerprint and runtimes", show_header=False)
    table.add_column("field", style="bold", justify="right")
    table.add_column("value")
    for key, value in flatten(info.get("env", info)) + flatten(info.get("runtimes") or {}, "runtime"):
        table.add_row(cell(key), cell(value))
    err.print(table)


@devices_cmd.command("setup")
@click.argument("name")
@click.option("--wheels", "wheels", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="SSH devices without a package index: download wheels for the device's platform into DIR "
                   "(files there are reused) and push them.")
@click.option("--benchmark-model", "benchmark_model", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="adb devices: push this benchmark_model binary to the path the profile names.")
@click.option("--force", is_flag=True, help="Rebuild / reinstall even when the device is provisioned.")
@json_option
@command_errors
def devices_setup_cmd(name: str, wheels: Path | None, benchmark_model: Path | None, force: bool,
                      as_json: bool) -> None:
    """Provision a device from zero: NAME (a profile), ssh://user@host:port, adb:SERIAL or pi4-emu.

    SSH devices get a venv (the profile's venv, default ~/edgefair/venv) holding the runtime
    versions this host uses, verified with the agent's probe; runs then use its python.
    """
    from edgefair.devices import resolve_device
    from edgefair.devices.provision import setup_device

    profile = resolve_device(name)
    with progress_bar(f"setup {name}", None) as update:
        report = setup_device(profile, wheels=wheels, force=force, benchmark_model=benchmark_model,
                              progress=lambda msg: update(0, description=str(msg)[:60]))
    if as_json:
        emit_json(report.to_dict())
        return
    _print_setup(report)


def _print_setup(report: Any) -> None:
    for action in report.actions:
        err.print(f"  {action}", markup=False)
    for w in report.warnings:
        err.print(f"  warning: {w}", markup=False)
    versions = ", ".join(f"{k} {v}" for k, v in sorted(report.installed.items())) or "nothing installed"
    where = f" in {report.venv}" if report.venv else ""
    err.print(f"{report.device}: {report.status}{where} ({versions}; {report.seconds:.1f} s)", markup=False)
