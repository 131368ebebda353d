"""Local transport, the runner's checks and failures, shell quoting, benchmark_model parsing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgefair.devices import CommandRequest, DeviceError, open_transport, probe_device, resolve_device, run_artifact
from edgefair.devices.base import shell_script
from edgefair.devices.benchmark_model import BenchmarkModelParseError, benchmark_argv, parse_benchmark_output
from edgefair.devices.local import LocalTransport
from edgefair.devices.runner import RunFailed

from .conftest import FAST

NASTY = ["with space", "it's", 'dq"uote', "$(touch PWNED)", "`touch PWNED2`", "$HOME",
         "semi;colon", "a\nnewline", "*", "back\\slash", "-n", ""]


def test_shell_script_passes_arguments_verbatim(tmp_path):
    """The script ssh/adb send to a remote sh: every argument and env value arrives as is."""
    workdir = tmp_path / "work dir $(x) 'q'"
    workdir.mkdir()
    req = CommandRequest([sys.executable, "-c", "import json,os,sys; "
                          "print(json.dumps([sys.argv[1:], os.environ['EF_V'], os.getcwd()]))",
                          *NASTY], env={"EF_V": "$(touch PWNED3) 'x'"}, timeout_s=30)
    script = shell_script(req, str(workdir))
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    args, val, cwd = json.loads(out.stdout)
    assert args == NASTY
    assert val == "$(touch PWNED3) 'x'"
    assert cwd == str(workdir)
    assert not list(tmp_path.rglob("PWNED*"))


def test_shell_script_rejects_bad_requests():
    with pytest.raises(TypeError):
        CommandRequest("ls -l")  # a string, not an argv list
    with pytest.raises(ValueError):
        CommandRequest(["ls"], env={"A B": "1"})


def test_local_transport_put_run_get(tmp_path):
    src = tmp_path / "src dir"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f.txt").write_text("hello")
    with LocalTransport() as t:
        t.put(src, "in")
        t.put(src / "sub" / "f.txt", "single/copy.txt")
        out = t.run(CommandRequest(["cat", "in/sub/f.txt", "single/copy.txt"], timeout_s=10))
        assert out.ok and out.stdout == "hellohello" and out.duration_s >= 0
        t.get("in/sub/f.txt", tmp_path / "back.txt")
        assert (tmp_path / "back.txt").read_text() == "hello"
        with pytest.raises(DeviceError, match="not found"):
            t.get("nope.json", tmp_path / "x")
        slow = t.run(CommandRequest(["sleep", "5"], timeout_s=0.5))
        assert slow.timed_out and not slow.ok
        missing = t.run(CommandRequest(["/no/such/binary"], timeout_s=5))
        assert missing.exit_code == 127
        wd = Path(t.workdir)
    assert not wd.exists()  # its own temp dir is removed on close


def test_local_run_and_host_fields(tiny):
    r = run_artifact("local", tiny / "onnx-fp32-s0", tiny / "batch.npz", overrides=FAST)
    assert r["ok"] and r["device"] == "local" and r["transport"] == "local"
    assert r["emulated"] is False
    assert r["artifact"]["sha256"] == json.loads(
        (tiny / "onnx-fp32-s0" / "manifest.json").read_text())["file"]["sha256"]
    assert len(r["eval"]["pred"]) == 32 and r["timing"]["n"] >= FAST["min_runs"]
    assert "--expect-sha256" in r["host"]["command"]
    assert r["host"]["push_s"] >= 0 and r["host"]["run_s"] > 0


def test_probe_local():
    p = probe_device("local")
    assert p["ok"] and p["device"] == "local" and p["runtimes"]["onnx"]["importable"]


def test_host_side_sha_check(tiny, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(tiny / "onnx-fp32-s0", art)
    data = bytearray((art / "model.onnx").read_bytes())
    data[-1] ^= 1
    (art / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(DeviceError, match="does not match the manifest"):
        run_artifact("local", art, tiny / "batch.npz", overrides=FAST)


class CorruptingTransport(LocalTransport):
    """A transfer that damages model files on the way: the device-side check must catch it."""

    def put(self, local_path_, remote_path):
        super().put(local_path_, remote_path)
        for p in Path(self.remote(remote_path)).rglob("model.*"):
            p.write_bytes(p.read_bytes() + b"\0")


def test_device_side_sha_check(tiny):
    with CorruptingTransport() as t:
        with pytest.raises(RunFailed) as ei:
            run_artifact(t, tiny / "tflite-int8-s0", tiny / "batch.npz", overrides=FAST)
    msg = str(ei.value)
    assert "sha256 mismatch" in msg and "\n" not in msg
    assert ei.value.result["ok"] is False  # the agent refused before loading


def test_failures_are_one_line_device_errors(tiny, tmp_path):
    with LocalTransport(python=["/no/such/python3"]) as t:
        with pytest.raises(DeviceError) as ei:
            run_artifact(t, tiny / "onnx-fp32-s0", tiny / "batch.npz", overrides=FAST)
        assert "not found" in str(ei.value) and "\n" not in str(ei.value)
    with LocalTransport() as t:
        with pytest.raises(DeviceError, match="timed out"):
            run_artifact(t, tiny / "onnx-fp32-s0", tiny / "batch.npz", mode="bench",
                         timeout_s=1.5, overrides={"min_seconds": 30, "max_seconds": 30})
        # the same transport still measures the next artefact
        r = run_artifact(t, tiny / "tflite-int8-s0", tiny / "batch.npz", overrides=FAST)
        assert r["ok"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeviceError, match="manifest.json: no such file"):
        run_artifact("local", tmp_path / "empty", tiny / "batch.npz")
    with pytest.raises(ValueError):
        run_artifact("local", tiny / "onnx-fp32-s0", tiny / "batch.npz",
                     overrides={"min_sconds": 1})


# --------------------------------------------------------------------------- benchmark_model
REAL_OUTPUT = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [4]
INFO: Graph: [/data/local/tmp/edgefair/artifact/model.tflite]
INFO: #threads used for CPU inference: [4]
INFO: Loaded model /data/local/tmp/edgefair/artifact/model.tflite
INFO: The input model file size (MB): 0.0307
INFO: Initialized session in 1.234ms.
INFO: Running benchmark for at least 10 iterations and at least 0.2 seconds but terminate if exceeding 10 seconds.
INFO: count=2391 first=567 curr=80 min=75 max=567 avg=89.1 std=14

INFO: Running benchmark for at least 100 iterations and at least 1 seconds but terminate if exceeding 10 seconds.
INFO: count=11712 first=86 curr=84 min=74 max=390 avg=85.3 std=9

INFO: Inference timings in us: Init: 1234, First inference: 567, Warmup (avg): 89.1, Inference (avg): 85.3
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=1.14062 overall=2.5
INFO: Peak memory footprint (MB): init=0 overall=12.3
"""  # noqa: E501 (benchmark_model's output, verbatim)


def test_parse_benchmark_model_output():
    p = parse_benchmark_output(REAL_OUTPUT)
    assert p["init_us"] == 1234 and p["first_inference_us"] == 567
    assert p["warmup_avg_us"] == 89.1 and p["inference_avg_us"] == 85.3
    assert p["measurement"]["count"] == 11712 and p["measurement"]["std_us"] == 9
    assert p["warmup"]["count"] == 2391
    assert p["peak_memory_mb"] == {"init": 0.0, "overall": 12.3}
    assert p["memory_delta_mb"]["overall"] == 2.5 and p["threads_used"] == 4
    newer = REAL_OUTPUT.replace("INFO: Peak memory footprint (MB): init=0 overall=12.3\n",
                                "INFO: Overall peak memory footprint (MB) via periodic "
                                "monitoring: 13.5\n")
    assert parse_benchmark_output(newer)["peak_memory_monitored_mb"] == 13.5
    with pytest.raises(BenchmarkModelParseError) as ei:
        parse_benchmark_output("ERROR: Could not open '/x.tflite'.\nERROR: Benchmarking failed.")
    assert "Benchmarking failed" in str(ei.value) and "\n" not in str(ei.value)


def test_benchmark_argv_follows_protocol():
    argv = benchmark_argv("/data/local/tmp/benchmark_model", "/d/m.tflite", threads=4,
                          protocol={"warmup_runs": 10, "warmup_seconds": 0.2, "min_runs": 100,
                                    "min_seconds": 1.0, "max_seconds": 10.0})
    assert argv == ["/data/local/tmp/benchmark_model", "--graph=/d/m.tflite", "--num_threads=4",
                    "--warmup_runs=10", "--warmup_min_secs=0.2", "--num_runs=100",
                    "--min_secs=1", "--max_secs=10"]


def test_open_transport_local_profile_python(tmp_path, monkeypatch):
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "mine.toml").write_text(f'transport = "local"\npython = "{sys.executable} -I"\n'
                                   f'[env]\nEF_TEST = "yes"\n')
    monkeypatch.setenv("EDGEFAIR_CONFIG_DIR", str(cfg))
    with open_transport(resolve_device("mine")) as t:
        assert t.python == [sys.executable, "-I"]
        out = t.run(CommandRequest([*t.python, "-c", "import os; print(os.environ['EF_TEST'])"],
                                   timeout_s=30))
        assert out.stdout.strip() == "yes"
