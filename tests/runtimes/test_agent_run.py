"""The device agent run end to end in fresh subprocesses on tiny real models."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgefair.contracts.result import RESULT_KEYS, RSS_KEYS, TIMING_KEYS, AgentResult
from edgefair.contracts.result import result_problems as check_result

from .conftest import AGENT, BARE_LOOP, FAST, preprocess_ref, run_agent

TORCH_PLUGIN = Path(__file__).resolve().parents[2] / "edgefair" / "models" / "torch_runner.py"



def _direct_onnx(path, x_nchw, fp16=False):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    if fp16:
        x_nchw = x_nchw.astype(np.float16)
    return np.concatenate([sess.run(None, {"input": x_nchw[i:i + 1]})[0]
                           for i in range(len(x_nchw))])


def _direct_tflite(path, x_nhwc):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    if i["dtype"] == np.int8:
        s, z = i["quantization"]
        x_nhwc = np.clip(np.round(x_nhwc / s) + z, -128, 127).astype(np.int8)
    outs = []
    for k in range(len(x_nhwc)):
        it.set_tensor(i["index"], x_nhwc[k:k + 1])
        it.invoke()
        y = it.get_tensor(o["index"])
        if o["dtype"] == np.int8:
            s, z = o["quantization"]
            y = (y.astype(np.float32) - z) * s
        outs.append(y)
    return np.concatenate(outs)


def _run(models, name, tmp_path, mode="both", extra=()):
    out = tmp_path / f"{name}-{mode}.json"
    art = models["arts"][name]
    code, res, proc = run_agent(["run", "--artifact", art, "--batch", models["batch"], "--out", out,
                                 "--mode", mode, "--threads", "1", *FAST, *extra], out=out)
    assert res is not None, proc.stderr
    assert code == 0 and res["ok"], (res.get("error"), proc.stderr[-2000:])
    return res


def _check_bench(res):
    assert set(RESULT_KEYS) <= set(res)
    assert set(TIMING_KEYS) <= set(res["timing"])
    assert set(RSS_KEYS) <= set(res["rss"])
    assert check_result(res) == []
    assert AgentResult.from_dict(res).timing.n == res["timing"]["n"]
    t = res["timing"]
    assert t["n"] >= 30 and len(t["samples_s"]) == t["n"]
    assert t["warmup_n"] >= 3
    assert t["duration_s"] >= 0.05
    assert 0 < t["p50_s"] <= t["p90_s"] <= t["p99_s"]
    lo, hi = t["p50_ci_s"]
    assert lo <= t["p50_s"] <= hi
    assert t["p50_ci_level"] >= 0.95
    assert t["percentile_method"] == "linear"
    assert t["std_s"] >= 0 and t["mean_s"] > 0
    assert np.isclose(t["p50_s"], np.percentile(t["samples_s"], 50))
    assert t["load_s"] > 0 and t["first_inference_s"] > 0
    assert res["threads"] == 1
    assert res["profile"] == "quick"
    rss = res["rss"]
    assert rss["method"] in ("proc_vmhwm_reset", "proc_vmhwm", "psutil_rss", "getrusage_maxrss")
    for k in ("baseline_kb", "after_load_kb", "after_first_kb", "steady_kb"):
        assert isinstance(rss[k], int) and rss[k] > 0
    env = res["env"]
    for k in ("cpu_model", "cores", "cpufreq", "temperature_before", "temperature_after",
              "throttled_before", "os", "kernel", "machine", "python", "numpy", "runtime",
              "threads", "emulated"):
        assert k in env, k
    assert env["emulated"] is False
    # this machine can be busy (other processes): contention is the only reason allowed here
    assert res["valid"] is (not res["invalid_reasons"])
    assert all(r.startswith("contention: ") for r in res["invalid_reasons"]), res["invalid_reasons"]
    assert res["conditions"]["usage"]["cpu_s"] > 0 and res["timing"]["blocks"] >= 1
    assert res["artifact"]["sha256"] and len(res["artifact"]["sha256"]) == 64


@pytest.mark.parametrize("name", ["onnx-fp32", "onnx-fp16", "tflite-fp32", "tflite-int8"])
def test_bench_and_eval_match_direct_runtime(models, tmp_path, name):
    res = _run(models, name, tmp_path, mode="both")
    _check_bench(res)
    want_rt = "onnxruntime" if name.startswith("onnx") else "ai_edge_litert"
    assert res["runtime"]["name"] == want_rt and res["runtime"]["version"]

    ev = res["eval"]
    assert ev["ids"] == [str(i) for i in models["ids"]]
    logits = np.asarray(ev["logits"], dtype=np.float32)
    assert logits.shape == (len(models["ids"]), 7)
    model_path = models["arts"][name] / ("model.onnx" if name.startswith("onnx") else "model.tflite")
    if name.startswith("onnx"):
        ref = _direct_onnx(model_path, preprocess_ref(models["images"], nchw=True),
                           fp16=name == "onnx-fp16")
    else:
        ref = _direct_tflite(model_path, preprocess_ref(models["images"], nchw=False))
    assert ev["pred"] == [int(v) for v in ref.argmax(1)]
    np.testing.assert_allclose(logits, ref, rtol=1e-5, atol=1e-5)
    assert len(set(ev["pred"])) >= 1
    if name == "tflite-int8":
        # dequantised int8 logits sit on the output quantisation grid
        q = json.loads((models["arts"][name] / "manifest.json").read_text())["output"]["quant"]
        steps = logits / q["scale"] + q["zero_point"]
        np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)


def test_int8_close_to_fp32(models, tmp_path):
    f32 = np.asarray(_run(models, "tflite-fp32", tmp_path, mode="eval")["eval"]["logits"])
    i8 = np.asarray(_run(models, "tflite-int8", tmp_path, mode="eval")["eval"]["logits"])
    assert np.abs(f32 - i8).max() < 0.1 * (np.abs(f32).max() + 1e-6)


def test_eval_only_and_bench_only(models, tmp_path):
    ev = _run(models, "onnx-fp32", tmp_path, mode="eval")
    assert ev["timing"]["n"] == 0 and ev["timing"]["samples_s"] == []
    assert ev["timing"]["p50_s"] is None and ev["timing"]["load_s"] > 0
    assert len(ev["eval"]["pred"]) == len(models["ids"])
    assert check_result(ev) == []
    b = _run(models, "onnx-fp32", tmp_path, mode="bench")
    assert "eval" not in b and b["timing"]["n"] >= 30


def test_torch_reference_row(models, tmp_path):
    res = _run(models, "torch-fp32", tmp_path, mode="both", extra=("--plugin", str(TORCH_PLUGIN)))
    assert res["runtime"]["name"] == "torch"
    _check_bench(res)
    onnx = _run(models, "onnx-fp32", tmp_path, mode="eval")
    np.testing.assert_allclose(res["eval"]["logits"], onnx["eval"]["logits"], rtol=1e-4, atol=1e-4)


def test_max_seconds_caps_measurement(models, tmp_path):
    res = _run(models, "onnx-fp32", tmp_path, mode="bench",
               extra=["--min-runs", "100000000", "--max-seconds", "0.3"])
    t = res["timing"]
    assert t["stopped_by"] == "max_seconds"
    assert 0.3 <= t["duration_s"] < 1.5
    assert any(r.startswith("stop rule not met") and "max_seconds=0.3" in r for r in res["invalid_reasons"])


def test_sha_mismatch_exits_3(models, tmp_path):
    out = tmp_path / "r.json"
    code, res, proc = run_agent(["run", "--artifact", models["arts"]["onnx-fp32"],
                                 "--batch", models["batch"], "--out", out,
                                 "--expect-sha256", "ab" * 32, *FAST], out=out)
    assert code == 3
    assert res["ok"] is False and res["valid"] is False
    assert "sha256 mismatch" in res["error"] and "\n" not in res["error"]
    assert "Traceback" not in proc.stderr


def test_expect_sha_accepts_right_hash(models, tmp_path):
    art = models["arts"]["tflite-int8"]
    sha = json.loads((art / "manifest.json").read_text())["file"]["sha256"]
    res = _run(models, "tflite-int8", tmp_path, mode="bench",
               extra=["--expect-sha256", sha.upper()])
    assert res["artifact"]["sha256"] == sha


@pytest.mark.parametrize("name,fname", [("onnx-fp32", "model.onnx"),
                                        ("tflite-fp32", "model.tflite")])
def test_corrupted_model_fails_cleanly(models, tmp_path, name, fname):
    art = tmp_path / name
    shutil.copytree(models["arts"][name], art)
    data = bytearray((art / fname).read_bytes())
    data[8:] = bytes((b * 7 + 13) % 256 for b in data[8:])  # garbage, same length
    (art / fname).write_bytes(bytes(data))
    # the manifest's sha would catch this (exit 3); drop it so loading itself must fail
    man = json.loads((art / "manifest.json").read_text())
    man["file"].pop("sha256")
    (art / "manifest.json").write_text(json.dumps(man))
    out = tmp_path / "r.json"
    code, res, proc = run_agent(["run", "--artifact", art, "--batch", models["batch"],
                                 "--out", out, *FAST], out=out)
    assert code == 1, proc.stderr
    assert res["ok"] is False
    assert res["error"] and "\n" not in res["error"] and len(res["error"]) <= 500
    assert "load" in res["error"]


def test_missing_things_fail_cleanly(models, tmp_path):
    out = tmp_path / "r.json"
    code, res, _ = run_agent(["run", "--artifact", tmp_path / "nope", "--batch", models["batch"],
                              "--out", out], out=out)
    assert code == 1 and res["ok"] is False and "artifact folder not found" in res["error"]
    code, res, _ = run_agent(["run", "--artifact", models["arts"]["onnx-fp32"],
                              "--batch", tmp_path / "nope.npz", "--out", out], out=out)
    assert code == 1 and res["ok"] is False and "batch file not found" in res["error"]
    # usage error still leaves a result when --out is known
    out2 = tmp_path / "u.json"
    code, res, proc = run_agent(["run", "--artifact", models["arts"]["onnx-fp32"], "--out", out2,
                                 "--threads", "x"], out=out2)
    assert code == 2 and res["ok"] is False and "\n" not in res["error"]
    assert "Traceback" not in proc.stderr


def test_wrong_image_size_fails_cleanly(models, tmp_path):
    batch = tmp_path / "b.npz"
    np.savez(batch, images=np.zeros((2, 32, 32, 1), np.uint8), ids=np.array(["a", "b"]))
    out = tmp_path / "r.json"
    code, res, _ = run_agent(["run", "--artifact", models["arts"]["tflite-int8"], "--batch", batch,
                              "--out", out, *FAST], out=out)
    assert code == 1 and "32x32" in res["error"]


def test_emulated_flag_is_recorded(models, tmp_path):
    out = tmp_path / "r.json"
    code, res, _ = run_agent(["run", "--artifact", models["arts"]["onnx-fp32"], "--batch",
                              models["batch"], "--out", out, "--mode", "bench", *FAST],
                             out=out, env_extra={"EDGEFAIR_EMULATED": "qemu-aarch64"})
    assert code == 0 and res["env"]["emulated"] is True
    assert any("emulation" in w for w in res["warnings"])


_BLOCKER = textwrap.dedent("""
    # sitecustomize: make torch, edgefair, tensorflow, psutil and scipy unimportable in
    # this process and in every child it starts (PYTHONPATH is inherited)
    import atexit, importlib.abc, json, os, sys
    BLOCK = ("torch", "edgefair", "tensorflow", "psutil", "scipy")
    attempted = []
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCK:
                attempted.append(name)
                raise ImportError("blocked for the test: " + name)
            return None
    sys.meta_path.insert(0, Block())
    def _log():
        with open(os.environ["BLOCK_LOG"], "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "attempted": attempted,
                                "loaded": sorted(m for m in sys.modules
                                                 if m.split(".")[0] in BLOCK)}) + "\\n")
    atexit.register(_log)
""")


def _blocked_env(tmp_path):
    site = tmp_path / "blocker"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_BLOCKER)
    log = tmp_path / "imports.jsonl"
    return {"PYTHONPATH": str(site), "BLOCK_LOG": str(log)}, log


@pytest.mark.parametrize("name", ["onnx-fp32", "tflite-int8"])
def test_agent_alone_without_torch_or_edgefair(models, tmp_path, name):
    """The agent copied alone, with torch/edgefair/tensorflow unimportable, still works."""
    alone = tmp_path / "device"
    alone.mkdir()
    shutil.copy(AGENT, alone / "agent.py")
    env, log = _blocked_env(tmp_path)
    out = tmp_path / "r.json"
    args = ["run", "--artifact", models["arts"][name], "--batch", models["batch"], "--out", out,
            *FAST]
    code, res, proc = run_agent(args, out=out, env_extra=env, agent=alone / "agent.py")
    assert code == 0 and res["ok"], (res and res["error"], proc.stderr[-2000:])
    assert res["supervised"] is True
    logs = [json.loads(ln) for ln in log.read_text().splitlines()]
    assert len(logs) == 2  # supervisor + worker, both under the blocker
    for entry in logs:
        assert entry["loaded"] == []
        assert not [m for m in entry["attempted"] if m.split(".")[0] in ("torch", "edgefair")]
    assert len(res["eval"]["pred"]) == len(models["ids"])


def test_torch_artifact_without_torch_fails_cleanly(models, tmp_path):
    env, _ = _blocked_env(tmp_path)
    out = tmp_path / "r.json"
    code, res, _proc = run_agent(
        ["run", "--artifact", models["arts"]["torch-fp32"], "--batch", models["batch"],
         "--out", out, "--plugin", str(TORCH_PLUGIN), *FAST], out=out, env_extra=env)
    assert code == 1 and res["ok"] is False
    assert "torch is not installed" in res["error"]


def test_torch_artifact_without_the_host_plugin_fails_cleanly(models, tmp_path):
    out = tmp_path / "r.json"
    code, res, _proc = run_agent(
        ["run", "--artifact", models["arts"]["torch-fp32"], "--batch", models["batch"], "--out", out, *FAST], out=out)
    assert code == 1 and res["ok"] is False
    assert "torch artefacts run on the host only: pass --plugin" in res["error"]


def test_native_crash_in_runtime_still_writes_result(models, tmp_path):
    """A runtime that dies with SIGSEGV on load: the supervisor writes ok=false."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "onnxruntime.py").write_text(textwrap.dedent("""
        import os, signal
        __version__ = "0.0-crashy"
        class SessionOptions: pass
        class ExecutionMode: ORT_SEQUENTIAL = 0
        class GraphOptimizationLevel: ORT_ENABLE_ALL = 99
        def InferenceSession(*a, **k):
            os.kill(os.getpid(), signal.SIGSEGV)
    """))
    out = tmp_path / "r.json"
    out.write_text("stale result from an earlier run")
    code, res, _proc = run_agent(["run", "--artifact", models["arts"]["onnx-fp32"], "--batch",
                                 models["batch"], "--out", out, *FAST], out=out,
                                env_extra={"PYTHONPATH": str(fake)})
    assert code == 1
    assert res["ok"] is False and res["valid"] is False
    assert "SIGSEGV" in res["error"] and "during load" in res["error"]
    assert res["runtime"]["version"] == "0.0-crashy"  # partial result kept
    assert not (tmp_path / "r.json.progress").exists()


def test_no_supervise_runs_in_process(models, tmp_path):
    res = _run(models, "onnx-fp32", tmp_path, mode="bench", extra=["--no-supervise"])
    assert res["supervised"] is False


def test_probe(tmp_path):
    code, _, proc = run_agent(["probe", "--json"])
    assert code == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    p = json.loads(lines[0])
    assert p["ok"] is True
    assert p["runtimes"]["onnx"]["importable"] is True
    assert p["runtimes"]["tflite"]["importable"] is True
    assert p["runtimes"]["tflite"]["name"] == "ai_edge_litert"
    assert p["env"]["machine"] and p["env"]["python"]
    assert set(p["profiles"]) == {"quick", "standard", "mlperf"}


def test_bare_loop_runs(models):
    import subprocess

    for name in ("onnx-fp32", "tflite-int8"):
        proc = subprocess.run([sys.executable, str(BARE_LOOP), "--artifact",
                               str(models["arts"][name]), "--batch", str(models["batch"]),
                               "--n", "50", "--warmup", "5", "--json"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        r = json.loads(proc.stdout)
        assert r["p50_s"] > 0 and r["n"] == 50
