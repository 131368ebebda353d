"""``farm.toml``: the devices of a Ray device farm and the node each is attached to.

    # farm.toml
    [devices.pi4-lab-01]
    spec = "ssh://pi@10.0.0.21:22"   # what `bench run --device` takes: a profile name, ssh://, adb:
    node = "10.0.0.21"               # optional: the address of the Ray node the device hangs off

Each device is the Ray custom resource ``device:<name>`` (amount 1): only the node it is
attached to advertises it (``ray start ... --resources '{"device:pi4-lab-01": 1}'``), so a
measurement on it runs there, one at a time. ``node``, when given, is checked by
``bench farm status`` against the node that advertises the resource.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefair.contracts.errors import EdgefairError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_KEYS = ("spec", "node")


class FarmError(EdgefairError, ValueError):
    """One line naming the farm file, the key and the problem."""


@dataclass(frozen=True)
class FarmDevice:
    """One device of the farm: its name (the Ray resource ``device:<name>``), spec and node."""

    name: str
    spec: str
    node: str | None = None

    @property
    def resource(self) -> str:
        return device_resource(self.name)


@dataclass(frozen=True)
class Farm:
    """The farm file's devices, in file order."""

    path: str
    devices: tuple[FarmDevice, ...]

    def by_spec(self) -> dict[str, FarmDevice]:
        return {d.spec: d for d in self.devices}

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "devices": [{"name": d.name, "spec": d.spec, "node": d.node,
                                                 "resource": d.resource} for d in self.devices]}


def device_resource(name: str) -> str:
    """The Ray custom resource a device is: ``device:<name>``."""
    return f"device:{name}"


def _device(src: str, name: str, table: Any) -> FarmDevice:
    where = f"{src}: devices.{name}"
    if not _NAME.match(name):
        raise FarmError(f"{where}: a device name is letters, digits, '.', '_' or '-' (at most 64)")
    if not isinstance(table, dict):
        raise FarmError(f"{where}: expected a table with spec = \"...\"")
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise FarmError(f"{where}: unknown key '{unknown[0]}'; allowed keys: {', '.join(_KEYS)}")
    spec, node = table.get("spec"), table.get("node")
    if not isinstance(spec, str) or not spec.strip():
        raise FarmError(f"{where}.spec: missing or not a string (a device spec as bench run --device takes it)")
    if node is not None and (not isinstance(node, str) or not node.strip()):
        raise FarmError(f"{where}.node: expected a non-empty string (the node's address), got {node!r}")
    _check_spec(f"{where}.spec", spec.strip())
    return FarmDevice(name=name, spec=spec.strip(), node=node.strip() if node else None)


def _check_spec(where: str, spec: str) -> None:
    from edgefair.devices import DeviceError, resolve_device

    try:
        resolve_device(spec)
    except DeviceError as e:
        raise FarmError(f"{where}: {e}") from None


def load_farm(path: Path) -> Farm:
    """Read and check ``farm.toml``; every problem is a FarmError naming the file and key."""
    src = str(path)
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FarmError(f"{src}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise FarmError(f"{src}: cannot read ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise FarmError(f"{src}: not valid TOML ({e})") from None
    unknown = sorted(set(raw) - {"devices"})
    if unknown:
        raise FarmError(f"{src}: unknown key '{unknown[0]}'; allowed keys: devices")
    tables = raw.get("devices")
    if not isinstance(tables, dict) or not tables:
        raise FarmError(f"{src}: devices: no devices (add [devices.NAME] with spec = \"...\")")
    devices = tuple(_device(src, name, table) for name, table in tables.items())
    specs = [d.spec for d in devices]
    twice = sorted({s for s in specs if specs.count(s) > 1})
    if twice:
        raise FarmError(f"{src}: devices: spec '{twice[0]}' is named by two devices (one device, one resource)")
    return Farm(path=src, devices=devices)
