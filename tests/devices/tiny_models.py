"""Build tiny real artefacts (ONNX fp32 and TFLite full-integer int8) plus a batch, offline.

Run as a script in a subprocess (``python tiny_models.py OUT_DIR``) so that TensorFlow
never loads into the pytest process. Writes::

    OUT_DIR/onnx-fp32-s0/{model.onnx, manifest.json}
    OUT_DIR/tflite-int8-s0/{model.tflite, manifest.json}
    OUT_DIR/batch.npz          (images: uint8 NHWC, ids: unicode)
    OUT_DIR/DONE

The manifests follow docs/contracts.md. Nothing is downloaded: weights are seeded random.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: make ``tests`` importable

CLASS_NAMES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
PREP = {"size": 48, "channels": 1, "mean": 0.5, "std": 0.25}
N_IMAGES = 32


def make_images(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 48, 48, 1), dtype=np.uint8)
    images[: n // 2, :24] //= 4
    scale = rng.uniform(0.3, 1.0, size=(n, 1, 1, 1))
    return (images * scale).astype(np.uint8)


def normalise(images: np.ndarray) -> np.ndarray:
    return ((images.astype(np.float32) / 255.0) - PREP["mean"]) / PREP["std"]


def _weights():
    rng = np.random.default_rng(0)
    w_conv = rng.normal(0, 0.5, size=(8, 1, 3, 3)).astype(np.float32)   # OIHW
    b_conv = rng.normal(0, 0.1, size=(8,)).astype(np.float32)
    w_fc = rng.normal(0, 1.0, size=(8, 7)).astype(np.float32)
    b_fc = rng.normal(0, 0.1, size=(7,)).astype(np.float32)
    return w_conv, b_conv, w_fc, b_fc


def write_manifest(folder: Path, *, name: str, target: str, fmt: str, precision: str,
                   model_file: str, input_spec: dict, output_spec: dict) -> dict:
    from tests.manifests import write_model_manifest

    assert target == f"{fmt}-{precision}"
    return write_model_manifest(folder, name=name, target=target, model_file=model_file, input_spec=input_spec,
                                output_spec=output_spec, class_names=CLASS_NAMES, prep=PREP,
                                notes=["tiny test model built by tests/devices/tiny_models.py"])


def build_onnx(folder: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    w_conv, b_conv, w_fc, b_fc = _weights()
    inits = [numpy_helper.from_array(w_conv, "w_conv"), numpy_helper.from_array(b_conv, "b_conv"),
             numpy_helper.from_array(w_fc, "w_fc"), numpy_helper.from_array(b_fc, "b_fc")]
    nodes = [
        helper.make_node("Conv", ["input", "w_conv", "b_conv"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w_fc", "b_fc"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 48, 48])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 7])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(folder / "model.onnx"))
    write_manifest(folder, name="onnx-fp32-s0", target="onnx-fp32", fmt="onnx",
                   precision="fp32", model_file="model.onnx",
                   input_spec={"name": "input", "shape": [1, 1, 48, 48], "layout": "NCHW",
                               "dtype": "float32", "quant": None},
                   output_spec={"name": "logits", "shape": [1, 7], "dtype": "float32",
                                "quant": None})


def build_tflite_int8(folder: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    folder.mkdir(parents=True, exist_ok=True)
    w_conv, b_conv, w_fc, b_fc = _weights()
    k = tf.constant(w_conv.transpose(2, 3, 1, 0))  # OIHW -> HWIO
    bc, wf, bf = tf.constant(b_conv), tf.constant(w_fc), tf.constant(b_fc)

    @tf.function(input_signature=[tf.TensorSpec([1, 48, 48, 1], tf.float32, name="input")])
    def model(x):
        c = tf.nn.relu(tf.nn.conv2d(x, k, strides=1, padding="SAME") + bc)
        g = tf.reduce_mean(c, axis=[1, 2])
        return tf.matmul(g, wf) + bf

    cf = model.get_concrete_function()

    def rep():
        for img in make_images(1, 64):
            yield [normalise(img[None])]

    conv = tf.lite.TFLiteConverter.from_concrete_functions([cf], model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    (folder / "model.tflite").write_bytes(conv.convert())

    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(folder / "model.tflite"))
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    write_manifest(folder, name="tflite-int8-s0", target="tflite-int8", fmt="tflite",
                   precision="int8", model_file="model.tflite",
                   input_spec={"name": i["name"], "shape": [1, 48, 48, 1], "layout": "NHWC",
                               "dtype": "int8", "quant": {"scale": float(i["quantization"][0]),
                                                          "zero_point": int(i["quantization"][1])}},
                   output_spec={"name": o["name"], "shape": [1, 7], "dtype": "int8",
                                "quant": {"scale": float(o["quantization"][0]),
                                          "zero_point": int(o["quantization"][1])}})


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    build_onnx(out / "onnx-fp32-s0")
    build_tflite_int8(out / "tflite-int8-s0")
    images = make_images(7, N_IMAGES)
    ids = np.array([f"img{i:03d}" for i in range(N_IMAGES)])
    np.savez(out / "batch.npz", images=images, ids=ids)
    (out / "DONE").write_text("ok\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
