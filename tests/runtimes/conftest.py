"""Tiny real models built in the test session (no downloads) and helpers to run the agent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.manifests import write_model_manifest

AGENT = Path(__file__).resolve().parents[2] / "edgefair" / "runtimes" / "agent.py"
BARE_LOOP = AGENT.with_name("bare_loop.py")
CLASS_NAMES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
PREP = {"size": 48, "channels": 1, "mean": 0.5, "std": 0.25}
N_IMAGES = 24

# fast protocol for tests: a few runs, short durations
FAST = ["--warmup-runs", "3", "--warmup-seconds", "0", "--min-runs", "30",
        "--min-seconds", "0.05", "--max-seconds", "5"]


def write_manifest(folder: Path, *, target: str, fmt: str, precision: str, model_file: str,
                   input_spec: dict, output_spec: dict) -> dict:
    assert target == f"{fmt}-{precision}"
    return write_model_manifest(folder, name=f"{target}-s0", target=target, model_file=model_file,
                                input_spec=input_spec, output_spec=output_spec, class_names=CLASS_NAMES, prep=PREP)


def preprocess_ref(images: np.ndarray, *, nchw: bool) -> np.ndarray:
    """The contract's preprocessing, written independently of the agent."""
    x = (images.astype(np.float32) / 255.0 - 0.5) / 0.25
    if nchw:
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32)


def make_images(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random grey 48x48 images with some structure, so predictions differ between images."""
    images = rng.integers(0, 256, size=(n, 48, 48, 1), dtype=np.uint8)
    images[: n // 2, :24] //= 4
    scale = rng.uniform(0.3, 1.0, size=(n, 1, 1, 1))
    return (images * scale).astype(np.uint8)


def _weights(seed: int = 0):
    rng = np.random.default_rng(seed)
    w_conv = rng.normal(0, 0.5, size=(4, 1, 3, 3)).astype(np.float32)   # OIHW
    b_conv = rng.normal(0, 0.1, size=(4,)).astype(np.float32)
    w_fc = rng.normal(0, 1.0, size=(4, 7)).astype(np.float32)
    b_fc = rng.normal(0, 0.1, size=(7,)).astype(np.float32)
    return w_conv, b_conv, w_fc, b_fc


def _build_onnx(path: Path, *, fp16_input: bool = False) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w_conv, b_conv, w_fc, b_fc = _weights()
    inits = [numpy_helper.from_array(w_conv, "w_conv"), numpy_helper.from_array(b_conv, "b_conv"),
             numpy_helper.from_array(w_fc, "w_fc"), numpy_helper.from_array(b_fc, "b_fc")]
    nodes = []
    x = "input"
    if fp16_input:
        nodes.append(helper.make_node("Cast", ["input"], ["x32"], to=TensorProto.FLOAT))
        x = "x32"
    nodes += [
        helper.make_node("Conv", [x, "w_conv", "b_conv"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w_fc", "b_fc"], ["logits"]),
    ]
    in_type = TensorProto.FLOAT16 if fp16_input else TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", in_type, [1, 1, 48, 48])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 7])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _build_tflite(folder_fp32: Path, folder_int8: Path) -> tuple[dict, dict]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    w_conv, b_conv, w_fc, b_fc = _weights()
    k = tf.constant(w_conv.transpose(2, 3, 1, 0))  # OIHW -> HWIO
    bc, wf, bf = tf.constant(b_conv), tf.constant(w_fc), tf.constant(b_fc)

    @tf.function(input_signature=[tf.TensorSpec([1, 48, 48, 1], tf.float32, name="input")])
    def model(x):
        c = tf.nn.relu(tf.nn.conv2d(x, k, strides=1, padding="SAME") + bc)
        g = tf.reduce_mean(c, axis=[1, 2])
        return tf.matmul(g, wf) + bf

    cf = model.get_concrete_function()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([cf], model)
    (folder_fp32 / "model.tflite").write_bytes(conv.convert())

    rng = np.random.default_rng(1)

    def rep():
        for img in make_images(rng, 64):
            yield [preprocess_ref(img[None], nchw=False)]

    conv = tf.lite.TFLiteConverter.from_concrete_functions([cf], model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    (folder_int8 / "model.tflite").write_bytes(conv.convert())

    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(folder_int8 / "model.tflite"))
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    in_q = {"scale": float(i["quantization"][0]), "zero_point": int(i["quantization"][1])}
    out_q = {"scale": float(o["quantization"][0]), "zero_point": int(o["quantization"][1])}
    return in_q, out_q


def _build_torch(path: Path) -> None:
    import torch

    w_conv, b_conv, w_fc, b_fc = _weights()

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4, 7)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))

    m = Tiny().eval()
    with torch.no_grad():
        m.conv.weight.copy_(torch.from_numpy(w_conv))
        m.conv.bias.copy_(torch.from_numpy(b_conv))
        m.fc.weight.copy_(torch.from_numpy(w_fc.T.copy()))
        m.fc.bias.copy_(torch.from_numpy(b_fc))
    ts = torch.jit.trace(m, torch.zeros(1, 1, 48, 48))
    ts.save(str(path))


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict:
    """Artefact folders for onnx-fp32, onnx-fp16in, tflite-fp32, tflite-int8, torch-fp32 + a batch."""
    root = tmp_path_factory.mktemp("runtimes_models")
    rng = np.random.default_rng(0)
    images = make_images(rng, N_IMAGES)
    ids = np.array([f"img{i:03d}" for i in range(N_IMAGES)])
    batch = root / "batch.npz"
    np.savez(batch, images=images, ids=ids)

    f32_spec_nchw = {"name": "input", "shape": [1, 1, 48, 48], "layout": "NCHW",
                     "dtype": "float32", "quant": None}
    out_f32 = {"name": "logits", "shape": [1, 7], "dtype": "float32", "quant": None}
    arts = {}

    d = root / "onnx-fp32-s0"
    d.mkdir()
    _build_onnx(d / "model.onnx")
    write_manifest(d, target="onnx-fp32", fmt="onnx", precision="fp32", model_file="model.onnx",
                   input_spec=f32_spec_nchw, output_spec=out_f32)
    arts["onnx-fp32"] = d

    d = root / "onnx-fp16-s0"
    d.mkdir()
    _build_onnx(d / "model.onnx", fp16_input=True)
    write_manifest(d, target="onnx-fp16", fmt="onnx", precision="fp16", model_file="model.onnx",
                   input_spec=dict(f32_spec_nchw, dtype="float16"), output_spec=out_f32)
    arts["onnx-fp16"] = d

    d32, d8 = root / "tflite-fp32-s0", root / "tflite-int8-s0"
    d32.mkdir()
    d8.mkdir()
    in_q, out_q = _build_tflite(d32, d8)
    nhwc = {"name": "input", "shape": [1, 48, 48, 1], "layout": "NHWC", "dtype": "float32",
            "quant": None}
    write_manifest(d32, target="tflite-fp32", fmt="tflite", precision="fp32",
                   model_file="model.tflite", input_spec=nhwc, output_spec=out_f32)
    write_manifest(d8, target="tflite-int8", fmt="tflite", precision="int8",
                   model_file="model.tflite", input_spec=dict(nhwc, dtype="int8", quant=in_q),
                   output_spec=dict(out_f32, dtype="int8", quant=out_q))
    arts["tflite-fp32"], arts["tflite-int8"] = d32, d8

    d = root / "torch-fp32-s0"
    d.mkdir()
    _build_torch(d / "model.pt")
    write_manifest(d, target="torch-fp32", fmt="torch", precision="fp32", model_file="model.pt",
                   input_spec=f32_spec_nchw, output_spec=out_f32)
    arts["torch-fp32"] = d

    return {"root": root, "batch": batch, "images": images, "ids": ids, "arts": arts}


def run_agent(args, *, out: Path | None = None, env_extra: dict | None = None,
              python_prefix: list | None = None, agent: Path = AGENT, timeout: float = 120):
    """Run the agent in a fresh subprocess; return (returncode, result dict or None, proc)."""
    env = dict(os.environ)
    env.pop("EDGEFAIR_EMULATED", None)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if env_extra:
        env.update(env_extra)
    cmd = (python_prefix or [sys.executable, str(agent)]) + [str(a) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=str(out.parent) if out else None)
    res = None
    if out is not None and out.exists():
        res = json.loads(out.read_text())
    return proc.returncode, res, proc
