#!/usr/bin/env python3
"""Fidelity check for the agent: time a bare loop over the same runtime call.

Standard library + numpy + the one runtime the artefact needs; shares no code
with agent.py on purpose (it is the independent reference).  It builds the
same input the agent's bench mode uses (the first image of the batch,
preprocessed per the manifest), creates the runtime with the same thread
settings, runs ``--warmup`` untimed calls, then ``--n`` calls each timed with
time.perf_counter_ns (gc disabled, as in the agent), and a second loop of
``--n`` calls timed only as a whole (no per-call clock at all).

    python3 bare_loop.py --artifact DIR --batch batch.npz [--threads 1]
                         [--n 2000] [--warmup 50] [--json]

Prints p50 (numpy 'linear' percentile) of the per-call samples and the mean
of the whole-loop timing; the agent's p50_s should be within ~5 % of both.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

import numpy as np


def _make_call(fmt, path, threads, x):
    """Return (call, runtime_name): a zero-argument function doing one inference."""
    if fmt == "tflite":
        try:
            from ai_edge_litert.interpreter import Interpreter
            name = "ai_edge_litert"
        except ImportError:
            try:
                from tflite_runtime.interpreter import Interpreter
                name = "tflite_runtime"
            except ImportError:
                import tensorflow as tf
                Interpreter = tf.lite.Interpreter
                name = "tensorflow.lite"
        kw = {"model_path": path}
        if threads > 0:
            kw["num_threads"] = threads
        it = Interpreter(**kw)
        it.allocate_tensors()
        d = it.get_input_details()[0]
        if np.dtype(d["dtype"]) != x.dtype:
            x = _quantise_like(x, d)
        it.set_tensor(d["index"], x)
        return it.invoke, name
    if fmt == "onnx":
        import onnxruntime as ort
        so = ort.SessionOptions()
        if threads > 0:
            so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        if inp.type == "tensor(float16)":
            x = x.astype(np.float16)
        feed = {inp.name: x}
        outs = [sess.get_outputs()[0].name]
        run = sess.run
        return (lambda: run(outs, feed)), "onnxruntime"
    if fmt == "torch":  # host-only reference rows: no device runtime to compare with
        raise SystemExit("torch artefacts are host-only reference rows: bare_loop times device runtimes")
    raise SystemExit("unknown format %r" % fmt)


def _quantise_like(x, d):
    scale, zp = d["quantization"]
    info = np.iinfo(np.dtype(d["dtype"]))
    return np.clip(np.round(x / np.float32(scale)) + zp, info.min, info.max).astype(d["dtype"])


def _first_input(manifest, batch_path):
    with np.load(batch_path, allow_pickle=False) as z:
        img = np.asarray(z["images"][:1])
    if img.ndim == 3:
        img = img[..., None]
    prep = manifest.get("preprocessing") or {}
    x = img.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(prep.get("mean", 0.0), np.float32)) / np.asarray(prep.get("std", 1.0), np.float32)
    if ((manifest.get("input") or {}).get("layout") or "NHWC").upper() == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", required=True)
    ap.add_argument("--batch", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    with open(os.path.join(a.artifact, "manifest.json")) as f:
        manifest = json.load(f)
    path = os.path.join(a.artifact, manifest["model_file"])
    x = _first_input(manifest, a.batch)
    call, name = _make_call(manifest["format"], path, a.threads, x)
    for _ in range(a.warmup):
        call()
    clock = time.perf_counter_ns
    samples = np.empty(a.n, dtype=np.int64)
    gc.disable()
    for i in range(a.n):
        t0 = clock()
        call()
        samples[i] = clock() - t0
    t0 = clock()
    for _ in range(a.n):
        call()
    loop_ns = clock() - t0
    gc.enable()
    s = samples / 1e9
    out = {"runtime": name, "threads": a.threads, "n": a.n, "warmup": a.warmup,
           "p50_s": float(np.percentile(s, 50)), "p90_s": float(np.percentile(s, 90)),
           "mean_s": float(s.mean()), "loop_mean_s": loop_ns / 1e9 / a.n,
           "percentile_method": "linear"}
    if a.json:
        print(json.dumps(out))
    else:
        print("%s threads=%d n=%d  p50 %.1f us  p90 %.1f us  mean %.1f us  whole-loop mean %.1f us"
              % (name, a.threads, a.n, out["p50_s"] * 1e6, out["p90_s"] * 1e6,
                 out["mean_s"] * 1e6, out["loop_mean_s"] * 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
