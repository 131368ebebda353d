"""adb transport through the STAND-IN adb (tests/devices/fake_adb.py), both modes, and a
real-hardware test that runs only when EDGEFAIR_ADB_SERIAL names an attached phone."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from edgefair.devices import CommandRequest, DeviceError, open_transport, probe_device, resolve_device, run_artifact
from edgefair.devices.adb import parse_state

from .conftest import FAST, HERE

SERIAL = "STANDIN01"


def _calls(root: Path) -> list[list[str]]:
    return [json.loads(line) for line in (root / "adb.log").read_text().splitlines()]


def _agent_spec(**extra) -> str:
    q = {"mode": "agent", "python": sys.executable, "threads": "1", **extra}
    return f"adb:{SERIAL}?" + "&".join(f"{k}={quote(str(v), safe='/')}" for k, v in q.items())


def test_quoting_through_adb_shell(fake_adb, tmp_path):
    t = open_transport(resolve_device(_agent_spec()))
    src = tmp_path / "f.txt"
    src.write_text("payload")
    name = "sub dir/$(touch PWNED) 'q' \"dq\" *.txt"
    t.put(src, name)
    args = ["with space", "it's", "$(touch PWNED2)", "`id`", "$HOME", "a;b", "*", ""]
    out = t.run(CommandRequest([sys.executable, "-c",
                                "import json,sys; print(json.dumps(sys.argv[1:]))", *args],
                               env={"EF_X": "$(touch PWNED3)"}, timeout_s=60))
    assert out.ok, out.stderr
    assert json.loads(out.stdout) == args
    t.get(name, tmp_path / "back.txt")
    assert (tmp_path / "back.txt").read_text() == "payload"
    assert not list(fake_adb.rglob("PWNED*")) and not list(tmp_path.rglob("PWNED*"))
    # push/pull take device paths verbatim; only `adb shell` sees a shell.
    pushes = [c for c in _calls(fake_adb) if "push" in c]
    assert pushes and pushes[0][:3] == ["-s", SERIAL, "push"]
    assert pushes[0][-1] == f"/data/local/tmp/edgefair/{name}"


def test_agent_mode_records_device_state(fake_adb, tiny):
    profile = resolve_device(_agent_spec(taskset="f0"))
    r = run_artifact(profile, tiny / "tflite-int8-s0", tiny / "batch.npz", overrides=FAST)
    assert r["ok"] and r["transport"] == "adb" and r["runtime"]["name"] == "ai_edge_litert"
    assert len(r["eval"]["pred"]) == 32
    st = r["device_state"]
    assert st["taskset"] == "f0"
    for when in ("before", "after"):
        s = st[when]
        assert s["model"] == "Stand-in Phone 8" and s["android"] == "14"
        assert s["battery_temperature_c"] == pytest.approx(31.2)
        assert s["governor"]["cpu0"] == "schedutil" and s["freq_khz"]["cpu7"] == 2841600
    # the agent ran pinned: `taskset f0` prefixed to its command
    assert (fake_adb / "taskset.log").read_text().split() == ["f0"]
    assert r["host"]["command"][:3] == ["taskset", "f0", sys.executable]
    assert (fake_adb / "device/data/local/tmp/edgefair/result.json").is_file()
    # same predictions as the local run
    loc = run_artifact("local", tiny / "tflite-int8-s0", tiny / "batch.npz", mode="eval")
    assert loc["eval"]["pred"] == r["eval"]["pred"]
    assert loc["eval"]["logits"] == r["eval"]["logits"]


def _install_benchmark_model(fake_adb: Path) -> str:
    """Put the benchmark_model STAND-IN where the android profile expects the binary."""
    dst = fake_adb / "device/data/local/tmp/benchmark_model"
    dst.write_text("#!/bin/sh\n# STAND-IN for TFLite benchmark_model (test double)\n"
                   f"exec '{sys.executable}' '{HERE / 'fake_benchmark_model.py'}' \"$@\"\n")
    dst.chmod(0o755)
    return "/data/local/tmp/benchmark_model"


def test_benchmark_model_mode(fake_adb, tiny):
    binary = _install_benchmark_model(fake_adb)
    profile = resolve_device(f"adb:{SERIAL}?mode=benchmark_model&threads=2")
    assert profile.adb.benchmark_model == binary and profile.adb.taskset == "f0"
    r = run_artifact(profile, tiny / "tflite-int8-s0", tiny / "batch.npz", overrides=FAST)
    assert r["ok"] and r["runtime"]["name"] == "benchmark_model"
    tm = r["timing"]
    assert tm["mean_s"] > 0 and tm["load_s"] > 0 and tm["first_inference_s"] > 0
    assert tm["p50_s"] is None and tm["p99_s"] is None and tm["samples_s"] == []
    assert "no percentiles" in tm["note"]
    assert tm["n"] >= FAST["min_runs"]
    assert "approximate" in r["rss"]["method"] and r["rss"]["steady_kb"] > 0
    assert r["accuracy"]["evaluated_on"] == "host" and "eval" not in r
    assert r["artifact"]["sha256"] == json.loads(
        (tiny / "tflite-int8-s0" / "manifest.json").read_text())["file"]["sha256"]
    assert r["device_state"]["before"]["battery_temperature_c"] == pytest.approx(31.2)
    # the flags follow the protocol, and the run was pinned with the profile's mask
    cmd = r["host"]["command"]
    assert cmd[:3] == ["taskset", "f0", binary]
    assert "--num_threads=2" in cmd and f"--num_runs={FAST['min_runs']}" in cmd
    assert any(c.startswith("--graph=/data/local/tmp/edgefair/artifact/") for c in cmd)
    assert (fake_adb / "taskset.log").read_text().split() == ["f0"]
    # ONNX cannot go through benchmark_model; eval-only makes no sense there
    with pytest.raises(DeviceError, match="only TFLite"):
        run_artifact(profile, tiny / "onnx-fp32-s0", tiny / "batch.npz")
    with pytest.raises(DeviceError, match="host"):
        run_artifact(profile, tiny / "tflite-int8-s0", tiny / "batch.npz", mode="eval")


def test_benchmark_model_failures(fake_adb, tiny, monkeypatch):
    profile = resolve_device(f"adb:{SERIAL}?mode=benchmark_model")
    with pytest.raises(DeviceError) as ei:  # binary not pushed yet
        run_artifact(profile, tiny / "tflite-int8-s0", tiny / "batch.npz", overrides=FAST)
    assert "benchmark_model" in str(ei.value) and "not found" in str(ei.value)
    _install_benchmark_model(fake_adb)
    monkeypatch.setenv("FAKE_ADB_CORRUPT", "1")  # a transfer that damages the model
    with pytest.raises(DeviceError, match="sha256 mismatch on the device"):
        run_artifact(profile, tiny / "tflite-int8-s0", tiny / "batch.npz", overrides=FAST)
    monkeypatch.delenv("FAKE_ADB_CORRUPT")
    probe = probe_device(profile)
    assert probe["mode"] == "benchmark_model" and probe["benchmark_model"]["present"]


def test_device_gone_and_wrong_serial(fake_adb, tiny, monkeypatch):
    with pytest.raises(DeviceError) as ei:
        run_artifact(resolve_device("adb:NOPE?mode=agent"), tiny / "tflite-int8-s0",
                     tiny / "batch.npz")
    assert "adb NOPE" in str(ei.value) and "unreachable" in str(ei.value)
    assert "\n" not in str(ei.value)
    monkeypatch.setenv("FAKE_ADB_OFFLINE", "1")
    with pytest.raises(DeviceError, match="unreachable"):
        probe_device(resolve_device(_agent_spec()))


def test_agent_mode_probe(fake_adb):
    p = probe_device(resolve_device(_agent_spec()))
    assert p["ok"] and p["transport"] == "adb" and p["runtimes"]["tflite"]["importable"]
    assert p["device_state"]["model"] == "Stand-in Phone 8"


def test_parse_state():
    s = parse_state("model=Pixel 8\nandroid=14\ngovernor.0=schedutil\nfreq_khz.0=1700000\n"
                    "battery_temperature=-15\nnproc=8\nsoc=\n")
    assert s["model"] == "Pixel 8" and s["governor"] == {"cpu0": "schedutil"}
    assert s["freq_khz"] == {"cpu0": 1700000} and s["battery_temperature_c"] == -1.5
    assert s["nproc"] == 8 and s["soc"] is None


# --------------------------------------------------------------------------- real hardware
@pytest.mark.skipif(not os.environ.get("EDGEFAIR_ADB_SERIAL"),
                    reason="no Android device: set EDGEFAIR_ADB_SERIAL (and optionally "
                           "EDGEFAIR_ADB_BENCHMARK_MODEL, the benchmark_model path on the phone)")
def test_real_android_device(tiny):
    if shutil.which("adb") is None:
        pytest.fail("EDGEFAIR_ADB_SERIAL is set but no adb binary is on PATH")
    serial = os.environ["EDGEFAIR_ADB_SERIAL"]
    binary = os.environ.get("EDGEFAIR_ADB_BENCHMARK_MODEL", "/data/local/tmp/benchmark_model")
    profile = resolve_device(f"adb:{serial}?mode=benchmark_model&benchmark_model={binary}")
    probe = probe_device(profile)
    assert probe["device_state"]["model"]
    if not probe["benchmark_model"]["present"]:
        pytest.skip(f"no benchmark_model binary at {binary} on {serial}")
    r = run_artifact(profile, tiny / "tflite-int8-s0", tiny / "batch.npz", overrides=FAST)
    assert r["ok"] and r["timing"]["mean_s"] > 0
    assert r["device_state"]["before"]["governor"]


def test_a_phone_that_heats_up_is_invalid_with_its_numbers(fake_adb, tiny, monkeypatch):
    """The stand-in reports a thermal status and battery temperature that climb with every reading:
    the host compares its readings before, during and after, and says why the run is invalid."""
    _install_benchmark_model(fake_adb)
    monkeypatch.setenv("FAKE_ADB_HEAT", "1")
    profile = resolve_device(f"adb:{SERIAL}?mode=benchmark_model")
    r = run_artifact(profile, tiny / "tflite-int8-s0", tiny / "batch.npz", overrides=FAST)
    assert r["ok"] and r["valid"] is False
    assert re.fullmatch(r"thermal throttling: Android thermal status [0-2] -> 3 \(severe\) at .+",
                        r["invalid_reasons"][0])
    assert any(w.startswith("battery temperature rose 31.2 -> ") for w in r["warnings"])
    monkeypatch.delenv("FAKE_ADB_HEAT")
    (fake_adb / "heat").unlink()
    cool = run_artifact(profile, tiny / "tflite-int8-s0", tiny / "batch.npz", overrides=FAST)
    assert cool["valid"] is True and not cool["invalid_reasons"]


def test_benchmark_model_stop_rule_and_op_profile(fake_adb, tiny):
    _install_benchmark_model(fake_adb)
    profile = resolve_device(f"adb:{SERIAL}?mode=benchmark_model")
    r = run_artifact(profile, tiny / "tflite-int8-s0", tiny / "batch.npz", profile_ops=10,
                     overrides={"min_runs": 10_000_000, "min_seconds": 0, "max_seconds": 0.3, "warmup_runs": 1,
                                "warmup_seconds": 0})
    assert r["valid"] is False
    assert r["invalid_reasons"][0].startswith("stop rule not met: benchmark_model ran n=")
    assert "--enable_op_profiling=true" in r["host"]["command"]
    ops = r["op_profile"]["ops"]
    assert r["op_profile"]["method"] == "benchmark_model --enable_op_profiling"
    assert ops and ops[0]["op"] == "CONV_2D" and abs(sum(o["share"] for o in ops) - 1) < 0.01
