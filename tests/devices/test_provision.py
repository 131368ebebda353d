"""``bench devices setup`` end to end: a FRESH device (Debian's own /usr/bin/python3, nothing installed,
behind a real OpenSSH server on 127.0.0.1) provisioned, then measured with ``bench run``.

One session fixture provisions it once: a new venv, the host's runtime versions installed from
wheels this host downloaded for the device's platform and pushed (``--wheels``; the device's pip
runs with ``--no-index``), verified by the agent's probe. The wheels are cached in
$EDGEFAIR_CACHE_DIR/device-wheels, so later sessions need no package index at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from edgefair.devices import DeviceError, resolve_device
from edgefair.devices.provision import DevicePlatform, pip_plan, satisfied, setup_device

from .conftest import HERE, REPO, ensure_system_packages

pytestmark = pytest.mark.slow

DEBIAN_PYTHON = "/usr/bin/python3"
FAST_FLAGS = ["--min-runs", "20", "--min-seconds", "0.02", "--max-seconds", "5"]


def bench(*args: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgefair", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=timeout)


@dataclass
class Fresh:
    name: str
    env: dict[str, str]
    venv: Path
    setup: dict
    setup_connections: int
    again: dict
    again_seconds: float


@pytest.fixture(scope="session")
def fresh_device(sshd, tmp_path_factory) -> Fresh:
    why = ensure_system_packages(DEBIAN_PYTHON)
    if why:
        pytest.skip(why)
    if subprocess.run([DEBIAN_PYTHON, "-c", "import ensurepip, venv"], capture_output=True).returncode != 0:
        pytest.skip(f"{DEBIAN_PYTHON} has no venv module (apt-get install python3-venv)")
    base = tmp_path_factory.mktemp("fresh device")
    cfg = base / "config"
    cfg.mkdir()
    alias = sshd.alias_config(base / "ssh_config", "edgefair-fresh-pi")
    venv = base / "edgefair venv"
    (cfg / "freshpi.toml").write_text("\n".join([
        'description = "a fresh Debian box behind the loopback sshd"', 'transport = "ssh"',
        f'python = "{DEBIAN_PYTHON}"', f"workdir = {json.dumps(str(base / 'work dir'))}",
        f"venv = {json.dumps(str(venv))}", "timeout_s = 300", "[ssh]", 'host = "edgefair-fresh-pi"',
        f"ssh_config = {json.dumps(str(alias))}", ""]))
    env = dict(os.environ, EDGEFAIR_CONFIG_DIR=str(cfg), COLUMNS="200")
    wheels = Path(os.environ["EDGEFAIR_CACHE_DIR"]) / "device-wheels"
    before = sshd.connections()
    r = bench("devices", "setup", "freshpi", "--wheels", str(wheels), "--json", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    setup_connections = sshd.connections() - before
    t0 = time.perf_counter()
    again = bench("devices", "setup", "freshpi", "--json", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    return Fresh("freshpi", env, venv, json.loads(r.stdout), setup_connections, json.loads(again.stdout),
                 time.perf_counter() - t0)


def test_setup_provisions_a_fresh_device(fresh_device):
    doc = fresh_device.setup
    host = {n: metadata.version(n) for n in ("numpy", "onnxruntime", "ai-edge-litert")}
    assert doc["status"] == "provisioned" and doc["transport"] == "ssh"
    assert doc["installed"] == host == doc["wanted"]
    assert doc["source"].startswith("wheels pushed from")
    assert doc["platform"]["machine"] == os.uname().machine and doc["platform"]["libc"] == "glibc"
    assert doc["runtimes"]["onnx"]["version"] == host["onnxruntime"]
    tflite = {"importable": True, "name": "ai_edge_litert", "version": host["ai-edge-litert"]}
    assert doc["runtimes"]["tflite"] == tflite
    assert doc["python"] == [str(fresh_device.venv / "bin" / "python")]
    assert doc["connections"] == 1 and fresh_device.setup_connections == 1  # one SSH connection for the setup
    record = json.loads((fresh_device.venv / "edgefair-setup.json").read_text())
    assert record["installed"] == host and record["venv"] == str(fresh_device.venv)
    # Debian's own Python is untouched (PEP 668): the runtimes live in the venv only.
    bare = subprocess.run([DEBIAN_PYTHON, "-c", "import onnxruntime"], capture_output=True, text=True)
    assert bare.returncode != 0


def test_setup_is_idempotent(fresh_device):
    again = fresh_device.again
    assert again["status"] == "already-provisioned" and again["installed"] == fresh_device.setup["installed"]
    assert not [a for a in again["actions"] if a.startswith(("creating", "installing", "pushing"))]
    assert again["runtimes"]["onnx"]["importable"] and again["runtimes"]["tflite"]["importable"]


def test_provisioned_device_measures_the_matrix(fresh_device, sshd, tiny_artifacts, tmp_path):
    """Every non-torch artefact of the exported matrix measured on the device, torch rows host-only,
    one SSH connection for the whole run, exit 0."""
    before = sshd.connections()
    r = bench("run", "--device", fresh_device.name, "--artifacts", str(tiny_artifacts), "--eval",
              "--db", str(tmp_path / "results.db"), *FAST_FLAGS, "--json", env=fresh_device.env)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    statuses = {a["name"]: a["status"] for a in doc["artifacts"]}
    assert statuses and doc["failed"] == 0 and doc["ok"]
    for name, status in statuses.items():
        assert status == ("host-only" if name.startswith("torch-") else "measured"), (name, status)
    assert {"torch-fp32-s0", "onnx-int8-s0.5", "tflite-int8-s0"} <= set(statuses)
    assert sshd.connections() - before == 1
    # the device predicts as this machine does
    only = ["--only", "onnx-int8-s0.5", "--only", "tflite-int8-s0"]
    loc = bench("run", "--device", "local", "--artifacts", str(tiny_artifacts), "--eval", *only,
                "--db", str(tmp_path / "local.db"), *FAST_FLAGS, "--json", env=fresh_device.env)
    assert loc.returncode == 0, loc.stderr[-3000:]
    for a in json.loads(loc.stdout)["artifacts"]:
        assert a["accuracy"] is not None
        assert a["accuracy"] == next(d["accuracy"] for d in doc["artifacts"] if d["name"] == a["name"])


def test_unprovisioned_device_says_how_to_provision(sshd, tiny, tmp_path):
    """Debian's bare python3 has no runtime: the failure names `bench devices setup`."""
    from edgefair.devices import run_artifact

    spec = (f"ssh://{sshd.user}@127.0.0.1:{sshd.port}?python={DEBIAN_PYTHON}&workdir={tmp_path / 'w'}"
            f"&venv={tmp_path / 'no-venv'}&identity_file={sshd.user_key}&known_hosts={sshd.known_hosts}")
    with pytest.raises(DeviceError) as ei:
        run_artifact(resolve_device(spec), tiny / "onnx-fp32-s0", tiny / "batch.npz")
    assert "No module named 'numpy'" in str(ei.value) and "bench devices setup" in str(ei.value)
    assert "\n" not in str(ei.value)


def test_setup_errors_are_one_line(sshd, tmp_path):
    spec = (f"ssh://{sshd.user}@127.0.0.1:{sshd.port}?python=/no/such/python3&workdir={tmp_path / 'w'}"
            f"&venv={tmp_path / 'v'}&identity_file={sshd.user_key}&known_hosts={sshd.known_hosts}")
    with pytest.raises(DeviceError) as ei:
        setup_device(resolve_device(spec))
    assert "/no/such/python3 not found on the device" in str(ei.value) and "\n" not in str(ei.value)
    with pytest.raises(DeviceError, match="names no venv"):
        setup_device(resolve_device(spec.replace(f"&venv={tmp_path / 'v'}", "&venv=")))
    with pytest.raises(DeviceError, match="--benchmark-model applies to adb"):
        setup_device(resolve_device(spec), benchmark_model=tmp_path / "bm")


# --------------------------------------------------------------------------- units (fast)
def test_platform_tags_for_pip_download():
    p = DevicePlatform(machine="aarch64", python="3.11.2", libc="glibc", libc_version="2.36")
    tags = p.platform_tags()
    assert tags[0] == "manylinux_2_36_aarch64" and tags[-2:] == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]
    args = p.pip_download_args()
    assert args[:3] == ["--only-binary=:all:", "--python-version", "311"] and "cp311" in args
    with pytest.raises(DeviceError, match="musl"):
        DevicePlatform(machine="aarch64", python="3.11.2", libc="musl", libc_version="1.2").platform_tags()


class _Out:
    def __init__(self, ok: bool, line: str = ""):
        self.ok, self.exit_code, self._line = ok, 0 if ok else 1, line

    def last_error_line(self) -> str:
        return self._line


def test_pip_plan_falls_back_to_tflite_runtime():
    """No ai-edge-litert wheel for the device: numpy and onnxruntime still go in, tflite-runtime instead."""
    calls: list[list[str]] = []

    def pip(reqs: list[str]):
        calls.append(reqs)
        return _Out(not any(r.startswith("ai-edge-litert") for r in reqs), "ERROR: No matching distribution")

    res = pip_plan(pip, {"numpy": "1.26.4", "onnxruntime": "1.23.0", "ai-edge-litert": "2.1.0"})
    assert res.done == ["numpy==1.26.4", "onnxruntime==1.23.0", "tflite-runtime"]
    assert res.failed == {"ai-edge-litert==2.1.0": "ERROR: No matching distribution"}
    assert calls[0] == ["numpy==1.26.4", "onnxruntime==1.23.0", "ai-edge-litert==2.1.0"]  # one pip call first
    wanted = {"numpy": "1.26.4", "onnxruntime": "1.23.0", "ai-edge-litert": "2.1.0"}
    assert satisfied({"numpy": "1.26.4", "onnxruntime": "1.23.0", "tflite-runtime": "2.14.0"}, wanted)
    assert not satisfied({"numpy": "1.26.3", "onnxruntime": "1.23.0", "ai-edge-litert": "2.1.0"}, wanted)


# --------------------------------------------------------------------------- adb: benchmark_model
def test_adb_setup_checks_or_pushes_benchmark_model(fake_adb, tmp_path):
    profile = resolve_device("adb:STANDIN01?mode=benchmark_model")
    with pytest.raises(DeviceError) as ei:
        setup_device(profile)
    assert "no benchmark_model at /data/local/tmp/benchmark_model" in str(ei.value)
    assert "--benchmark-model FILE" in str(ei.value) and "\n" not in str(ei.value)
    binary = tmp_path / "benchmark_model"
    binary.write_text("#!/bin/sh\n# STAND-IN for TFLite benchmark_model (test double)\n"
                      f"exec '{sys.executable}' '{HERE / 'fake_benchmark_model.py'}' \"$@\"\n")
    first = setup_device(profile, benchmark_model=binary)
    assert first.status == "provisioned" and first.detail["benchmark_model"]["present"]
    pushed = fake_adb / "device/data/local/tmp/benchmark_model"
    assert pushed.read_bytes() == binary.read_bytes() and os.access(pushed, os.X_OK)
    again = setup_device(profile, benchmark_model=binary)
    assert again.status == "checked" and again.actions == [f"/data/local/tmp/benchmark_model already matches {binary}"]
    assert setup_device(profile).status == "checked"  # present: only checked


def test_local_and_emulated_setup(emu_sysroot, monkeypatch):
    """local: nothing to install, the probe says what is there; pi4-emu: the (cached) pinned sysroot."""
    local = setup_device(resolve_device("local"))
    assert local.status == "checked" and local.runtimes["onnx"]["importable"] and not local.warnings
    monkeypatch.setenv("EDGEFAIR_CACHE_DIR", str(emu_sysroot.parent.parent))
    emu = setup_device(resolve_device("pi4-emu"))
    assert emu.status == "provisioned" and emu.target == str(emu_sysroot)
    assert emu.installed == {"ai-edge-litert": "2.1.0", "numpy": "1.26.4", "onnxruntime": "1.23.0"}
