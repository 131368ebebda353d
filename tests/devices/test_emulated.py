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

    def boom(dest, progress):
        raise DeviceError("pi4-emu setup: apt-get download failed (simulated)")

    monkeypatch.setattr(emulated, "_ensure_arm64_apt", lambda say: None)
    monkeypatch.setattr(emulated, "_download_debs", boom)
    monkeypatch.setattr(emulated, "find_qemu", lambda qemu="": "/bin/true")
    with pytest.raises(DeviceError, match="simulated"):
        setup_emulated_pi(cache)
    assert not (cache / "sysroot").exists() and not list(cache.glob(".build-*"))
    assert not emulated.is_ready(cache)
