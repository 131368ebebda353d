"""``bench farm status``: a Ray device farm's nodes, devices and what each device is doing.

Also the options every command that can run on Ray shares (``--executor``, ``--ray-address``,
``--farm``) and how a farm file narrows a sweep's devices.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edgefair.bench.console import CLIError, emit_json, err
from edgefair.bench.options import command_errors, json_option


def executor_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--executor local|ray``, ``--ray-address ADDR`` and ``--farm farm.toml``."""
    from edgefair.bench.executor import EXECUTORS

    @click.option("--executor", type=click.Choice(EXECUTORS), default="local", show_default=True,
                  help="Where the work runs: this process, or a Ray cluster.")
    @click.option("--ray-address", default=None, help="Ray cluster to join (default: start a local Ray instance).")
    @click.option("--farm", "farm_path", type=click.Path(path_type=Path), default=None,
                  help="farm.toml: the devices and the Ray node each is attached to (with --executor ray).")
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


def farm_devices(cfg: Any, farm_path: Path | None, *, explicit: bool) -> Any:
    """The farm (None without ``--farm``); its devices become the sweep's unless ``--device`` chose some."""
    if farm_path is None:
        return None
    from edgefair.bench.farm import load_farm

    farm = load_farm(farm_path)
    specs = [d.spec for d in farm.devices]
    if explicit:
        missing = [d for d in cfg.devices if d not in specs]
        if missing:
            raise CLIError(f"--device {missing[0]}: not in {farm_path} (have: {', '.join(specs)})")
    else:
        cfg.devices = specs
    return farm


# ----------------------------------------------------------------------------- status
def _connect(address: str | None) -> Any:
    import ray

    try:
        ray.init(address=address or "auto", log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise CLIError(f"--ray-address {address or 'auto'}: no Ray cluster to join ({str(e).splitlines()[0]})") \
            from None
    return ray


def _nodes(ray: Any) -> list[dict[str, Any]]:
    out = []
    for n in ray.nodes():
        res = n.get("Resources", {})
        out.append({"node_id": n["NodeID"], "alive": bool(n.get("Alive")), "address": n.get("NodeManagerAddress"),
                    "hostname": n.get("NodeManagerHostname"), "cpus": res.get("CPU", 0),
                    "devices": sorted(k.removeprefix("device:") for k in res if k.startswith("device:"))})
    return out


def _running_tasks() -> dict[str, str] | None:
    """Running measurement tasks by device resource (Ray's state API; None when it is not served)."""
    try:
        from ray.util.state import list_tasks

        tasks = list_tasks(filters=[("state", "=", "RUNNING")], timeout=5, raise_on_missing_output=False)
    except Exception:  # noqa: BLE001 - the state API needs the dashboard (ray[default]); fall back
        return None
    out = {}
    for t in tasks:
        name = getattr(t, "name", "") or ""
        if name.startswith("measure "):
            _, resource, artifact = name.split(" ", 2)
            out[resource] = artifact
    return out


def _driver_record(db: Path | None) -> dict[str, dict[str, Any]]:
    """What the driver last wrote about each device (``farm:<resource>`` stages of its database)."""
    if db is None:
        return {}
    from edgefair.bench.store import Store

    with Store(db, readonly=True) as store:
        return {s["key"].removeprefix("farm:"): {"status": s["status"], **s["detail"]}
                for s in store.stages() if s["kind"] == "farm"}


def _device_rows(ray: Any, nodes: list[dict[str, Any]], farm: Any, db: Path | None) -> list[dict[str, Any]]:
    from edgefair.bench.farm import device_resource

    named = {d.name: d for d in farm.devices} if farm else {}
    names = list(named) + sorted({d for n in nodes for d in n["devices"]} - set(named))
    available = ray.available_resources()
    running, record = _running_tasks(), _driver_record(db)
    rows = []
    for name in names:
        res = device_resource(name)
        hosts = [n for n in nodes if n["alive"] and name in n["devices"]]
        dev = named.get(name)
        state = "no node" if not hosts else ("busy" if available.get(res, 0) < 1 else "idle")
        rows.append({"device": name, "spec": dev.spec if dev else None, "resource": res,
                     "node": hosts[0]["address"] if hosts else None, "node_id": hosts[0]["node_id"] if hosts else None,
                     "expected_node": dev.node if dev else None,
                     "node_mismatch": bool(dev and dev.node and hosts and dev.node not in
                                           (hosts[0]["address"], hosts[0]["hostname"])),
                     "state": state, "running": (running or {}).get(res), "driver": record.get(res),
                     "source": "ray state API" if running is not None else "resources + driver record"})
    return rows


def _print_status(doc: dict[str, Any]) -> None:
    from rich.table import Table

    nodes = Table(title="nodes")
    for c in ("node", "alive", "address", "CPUs", "devices"):
        nodes.add_column(c)
    for n in doc["nodes"]:
        nodes.add_row(n["node_id"][:12], "alive" if n["alive"] else "dead", str(n["address"]), f"{n['cpus']:g}",
                      ", ".join(n["devices"]) or "-")
    devices = Table(title="devices")
    for c in ("device", "spec", "node", "state", "doing"):
        devices.add_column(c)
    for d in doc["devices"]:
        doing = d["running"] or (json.dumps(d["driver"]) if d["driver"] else "-")
        node = (d["node"] or "-") + (f" (farm.toml says {d['expected_node']})" if d["node_mismatch"] else "")
        devices.add_row(d["device"], d["spec"] or "-", node, d["state"], doing)
    err.print(nodes)
    err.print(devices)


@click.group("farm")
def farm_cmd() -> None:
    """A Ray device farm (see README: Device farm on Ray)."""


@farm_cmd.command("status")
@click.option("--farm", "farm_path", type=click.Path(path_type=Path), default=None, help="farm.toml to check.")
@click.option("--ray-address", default=None, help="Ray cluster (default: the one this host runs, 'auto').")
@click.option("--db", type=click.Path(path_type=Path), default=None,
              help="A sweep's results.db: show what its driver last recorded per device.")
@json_option
@command_errors
def farm_status_cmd(farm_path: Path | None, ray_address: str | None, db: Path | None, as_json: bool) -> None:
    """The cluster's nodes (alive, CPUs, devices), the devices, their node and what each is doing."""
    from edgefair.bench.farm import load_farm

    farm = load_farm(farm_path) if farm_path else None
    ray = _connect(ray_address)
    try:
        nodes = _nodes(ray)
        doc = {"nodes": nodes, "devices": _device_rows(ray, nodes, farm, db),
               "farm": farm.to_dict() if farm else None}
    finally:
        ray.shutdown()
    if as_json:
        emit_json(doc)
    else:
        _print_status(doc)
