"""pi4-emu end to end: the arm64 Debian sysroot under qemu-aarch64-static.

The sysroot is built once into $EDGEFAIR_CACHE_DIR/pi4-emu (default
~/.cache/edgefair/pi4-emu) and reused by later runs; these tests are marked slow but run
by default.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from edgefair.devices import DeviceError, emulated, open_transport, probe_device, resolve_device, run_artifact
from edgefair.devices.emulated import EmulatedArm64Transport, setup_emulated_pi

from .conftest import FAST

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_results(tiny):
    return {a: run_artifact("local", tiny / a, tiny / "batch.npz", overrides=FAST)
            for a in ("onnx-fp32-s0", "tflite-int8-s0")}


@pytest.fixture(scope="module")
def emu_results(emu_sysroot, tiny):
    with EmulatedArm64Transport(sysroot=emu_sysroot) as t:
        return {a: run_artifact(t, tiny / a, tiny / "batch.npz", overrides=FAST)
                for a in ("onnx-fp32-s0", "tflite-int8-s0")}


def test_setup_is_cached_and_recorded(emu_sysroot):
    t0 = time.perf_counter()
    again = setup_emulated_pi(emu_sysroot.parent)
    assert again == emu_sysroot and time.perf_counter() - t0 < 1.0
    marker = json.loads((emu_sysroot / emulated.MARKER).read_text())
    assert marker["spec"]["wheels"] == {"ai-edge-litert": "2.1.0", "numpy": "1.26.4",
                                        "onnxruntime": "1.23.0"}
    assert marker["check"]["machine"] == "aarch64" and marker["check"]["python"].startswith("3.11")
    assert any(d.startswith("python3.11-minimal_") for d in marker["debs"])
    assert not list(emu_sysroot.parent.glob(".build-*"))  # no half-built leftovers


def test_onnx_fp32_same_predictions_as_x86(local_results, emu_results):
    x86, arm = local_results["onnx-fp32-s0"], emu_results["onnx-fp32-s0"]
    assert arm["ok"] and arm["emulated"] is True and arm["transport"] == "emulated"
    assert arm["env"]["machine"] == "aarch64" and x86["env"]["machine"] == "x86_64"
    assert (arm["runtime"]["name"], arm["runtime"]["version"]) == ("onnxruntime", "1.23.0")
    assert arm["eval"]["ids"] == x86["eval"]["ids"]
    assert arm["eval"]["pred"] == x86["eval"]["pred"]
    diff = np.abs(np.array(arm["eval"]["logits"]) - np.array(x86["eval"]["logits"])).max()
    assert diff <= 1e-4, diff
    assert any("emulat" in w for w in arm["warnings"])


def test_tflite_int8_bit_exact_with_x86(local_results, emu_results):
    x86, arm = local_results["tflite-int8-s0"], emu_results["tflite-int8-s0"]
    assert arm["ok"] and arm["runtime"]["name"] == "ai_edge_litert"
    assert arm["env"]["machine"] == "aarch64"
    assert arm["runtime"]["input"]["dtype"] == "int8"
    assert arm["eval"]["pred"] == x86["eval"]["pred"]
    assert arm["eval"]["logits"] == x86["eval"]["logits"]  # dequantised int8: bit-exact
    assert len(set(x86["eval"]["pred"])) > 1  # the batch really exercises the model


def test_profile_and_probe(emu_sysroot, monkeypatch):
    monkeypatch.setenv("EDGEFAIR_CACHE_DIR", str(emu_sysroot.parent.parent))
    profile = resolve_device("pi4-emu")
    with open_transport(profile) as t:
        assert t.emulated and t.python[0].endswith("qemu-aarch64-static")
        p = probe_device(t)
    assert p["ok"] and p["env"]["machine"] == "aarch64" and p["emulated"]
    assert p["runtimes"]["onnx"]["version"] == "1.23.0"
    assert p["runtimes"]["tflite"]["version"] == "2.1.0"


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    """Atomic: a failure during the build leaves neither a sysroot nor a temp dir."""
    cache = tmp_path / "cache"

    def boom(dest, progress, apt_root):
        raise DeviceError("pi4-emu setup: apt-get download failed (simulated)")

    monkeypatch.setattr(emulated, "_need_dpkg", lambda: None)
    monkeypatch.setattr(emulated, "_download_debs", boom)
    monkeypatch.setattr(emulated, "find_qemu", lambda qemu="": "/bin/true")
    with pytest.raises(DeviceError, match="simulated"):
        setup_emulated_pi(cache)
    assert not (cache / "sysroot").exists() and not list(cache.glob(".build-*"))
    assert not emulated.is_ready(cache)


# --------------------------------------------------------------------------- pins (pi4-emu.lock.json)
def test_lock_pins_every_file_and_the_marker_records_them(emu_sysroot):
    from edgefair.devices.sysroot_lock import read_lock

    lock = read_lock()
    assert lock.suite == "bookworm" and lock.snapshot and lock.architecture == "arm64"
    assert {p.name for p in lock.debs} == set(emulated.DEBIAN_PACKAGES) and len(lock.debs) == 30
    assert all(len(p.sha256) == 64 and p.file.endswith("_arm64.deb") for p in lock.debs)
    assert {p.name: p.version for p in lock.wheels} == emulated.WHEELS
    marker = json.loads((emu_sysroot / emulated.MARKER).read_text())
    assert marker["spec"]["pins_sha256"] == lock.sha256
    assert marker["sha256"] == {p.file: p.sha256 for p in (*lock.debs, *lock.wheels)}


def _fake_sysroot(cache):
    root = cache / "sysroot"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin" / emulated.PYTHON).write_text("")
    (root / emulated.WRAPPER).write_text("")
    (root / emulated.MARKER).write_text(json.dumps({"spec": emulated._wanted_spec()}))
    return root


def test_a_changed_pin_means_a_rebuild(tmp_path, monkeypatch):
    """The cached sysroot is reused while the pins are unchanged, and not once any pin changes."""
    from dataclasses import replace

    from edgefair.devices import sysroot_lock

    _fake_sysroot(tmp_path)
    assert emulated.is_ready(tmp_path)
    lock = sysroot_lock.read_lock()
    for changed in (replace(lock.debs[0], version=lock.debs[0].version + "+1"),
                    replace(lock.debs[0], sha256="0" * 64)):
        doc = json.loads(sysroot_lock.LOCK_FILE.read_text())
        doc["debian"]["packages"][0].update(version=changed.version, sha256=changed.sha256)
        other = sysroot_lock.parse_lock(doc)
        monkeypatch.setattr(emulated, "read_lock", lambda other=other: other)
        assert not emulated.is_ready(tmp_path)
    monkeypatch.setattr(emulated, "read_lock", sysroot_lock.read_lock)
    assert emulated.is_ready(tmp_path)


def test_sources_are_the_locks_own(tmp_path):
    from edgefair.devices.sysroot_lock import PrivateApt, read_lock, requirements, sources_list

    lock = read_lock()
    text = sources_list(lock)
    assert "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] " \
           "http://deb.debian.org/debian bookworm main" in text
    assert "bookworm-security main" in text and "bookworm-updates main" in text
    snap = sources_list(lock, snapshot=True)
    assert f"http://snapshot.debian.org/archive/debian/{lock.snapshot} bookworm main" in snap
    assert f"http://snapshot.debian.org/archive/debian-security/{lock.snapshot} bookworm-security main" in snap
    assert "check-valid-until=no" in snap
    opts = PrivateApt(tmp_path, lock).options()
    assert f"Dir::Etc::SourceList={tmp_path}/etc/sources.list" in opts
    assert any(o.startswith("Dir::State=") and str(tmp_path) in o for o in opts)
    assert "APT::Architecture=arm64" in opts  # no dpkg --add-architecture on the host
    req = requirements(lock)
    assert all(f"{p.name}=={p.version} --hash=sha256:{p.sha256}" in req for p in lock.wheels)


def test_a_file_with_another_sha256_is_refused(tmp_path):
    from edgefair.devices.sysroot_lock import Pin, verify

    (tmp_path / "libx_1_arm64.deb").write_bytes(b"not the pinned bytes")
    pin = Pin("libx", "1", "libx_1_arm64.deb", "ab" * 32)
    with pytest.raises(DeviceError) as ei:
        verify(tmp_path, (pin,))
    assert "libx_1_arm64.deb has sha256" in str(ei.value) and "refused" in str(ei.value)
    with pytest.raises(DeviceError, match="was not downloaded"):
        verify(tmp_path, (Pin("liby", "2", "liby_2_arm64.deb", "cd" * 32),))


def test_pinned_deb_download_from_the_private_apt(tmp_path):
    """One small pinned package fetched for real through the private apt config and checked."""
    from dataclasses import replace

    from edgefair.devices.sysroot_lock import download_debs, read_lock

    lock = read_lock()
    small = [p for p in lock.debs if p.name == "libuuid1"]
    one = replace(lock, debs=tuple(small))
    (tmp_path / "dl").mkdir()
    got = download_debs(tmp_path / "dl", tmp_path / "apt", one, lambda m: None)
    assert got == {small[0].file: small[0].sha256}
    tampered = replace(lock, debs=(replace(small[0], sha256="0" * 64),))
    (tmp_path / "dl2").mkdir()
    with pytest.raises(DeviceError, match="refused"):
        download_debs(tmp_path / "dl2", tmp_path / "apt", tampered, lambda m: None)
