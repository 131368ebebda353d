"""``bench devices``: device profiles, probes, and building the emulated Pi."""

from __future__ import annotations

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


def flatten(doc: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as ``a.b: value`` lines; None shown as '—', lists joined."""
    if isinstance(doc, dict):
        return [row for k, v in doc.items() for row in flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(doc, (list, tuple)):
        text = ", ".join(str(x) for x in doc) if doc else "—"
        return [(prefix, text)]
    return [(prefix, "—" if doc is None else str(doc))]


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
    rows = flatten(info.get("env", info)) + flatten(info.get("runtimes") or {}, "runtime")
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        err.print(f"{key:>{width}}: {value}", markup=False)


@devices_cmd.command("setup")
@click.argument("name", type=click.Choice(["pi4-emu"]))
@click.option("--force", is_flag=True, help="Rebuild even when the cached sysroot is ready.")
@json_option
@command_errors
def devices_setup_cmd(name: str, force: bool, as_json: bool) -> None:
    """Build the emulated Raspberry Pi (arm64 Debian sysroot under qemu) once into the cache."""
    import time

    from edgefair.devices.emulated import describe_sysroot, setup_emulated_pi

    t0 = time.perf_counter()
    with progress_bar("building pi4-emu sysroot", None) as update:
        path = setup_emulated_pi(progress=lambda msg: update(0, description=str(msg)[:60]), force=force)
    doc = {"sysroot": str(path), "seconds": time.perf_counter() - t0, **describe_sysroot()}
    if as_json:
        emit_json(doc)
    else:
        err.print(f"pi4-emu sysroot ready at {path} ({doc['seconds']:.1f} s)", markup=False)
