"""FER models NOT written by edgefair, for the import tests: run as a script in a subprocess.

    python foreign_models.py OUT_DIR DATASET_SPEC

trains a small Keras CNN on DATASET_SPEC's training split (pixels scaled to [-1, 1]; only
the images and labels come from edgefair's loader) and writes, with other tools' own paths:

    OUT_DIR/keras_fer.tflite          tf.lite.TFLiteConverter.from_keras_model, float32
    OUT_DIR/keras_fer_int8io.tflite   integer quantisation with float32 I/O (representative data)
    OUT_DIR/keras_fer_16x8.tflite     int16 activations, int8 weights
    OUT_DIR/keras_fer_dynamic.tflite  dynamic-range int8 weights
    OUT_DIR/helper_fer.onnx           the same network written node by node with onnx.helper:
                                      NCHW input "face" taking pixel/255 (it scales to [-1, 1] itself),
                                      output "scores"
    OUT_DIR/helper_fer_permuted.onnx  the same with its 7 outputs in another class order
    OUT_DIR/info.json                 Keras' own validation accuracy, the permutation, versions

Nothing is downloaded; TensorFlow never loads into the pytest process.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

PERMUTATION = [3, 0, 6, 1, 5, 2, 4]  # output j of the permuted model = class PERMUTATION[j]


def load(spec: str):
    from edgefair.contracts.dataset import Preprocessing
    from edgefair.data.preprocess import labels_of, samples_to_uint8
    from edgefair.data.registry import load_dataset

    ds = load_dataset(spec)
    prep = Preprocessing(size=48, channels=1)
    split = {s: (samples_to_uint8(ds.split(s), prep), labels_of(ds.split(s))) for s in ("train", "val")}
    return split, list(ds.class_names)


def keras_model(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray):
    import tensorflow as tf

    tf.random.set_seed(0)
    k = tf.keras
    model = k.Sequential([
        k.Input((48, 48, 1)),
        k.layers.Conv2D(16, 3, padding="same", activation="relu"), k.layers.MaxPool2D(),
        k.layers.Conv2D(32, 3, padding="same", activation="relu"), k.layers.MaxPool2D(),
        k.layers.Conv2D(32, 3, padding="same", activation="relu"), k.layers.MaxPool2D(),
        k.layers.Flatten(), k.layers.Dense(7)])
    model.compile(optimizer=k.optimizers.Adam(2e-3),
                  loss=k.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, epochs=8, batch_size=64, verbose=0)
    return model, float(model.evaluate(xv, yv, verbose=0)[1])


def tflite_files(model, x: np.ndarray, out: Path) -> None:
    import tensorflow as tf

    def rep():
        for img in x[:100]:
            yield [img[None]]

    def convert(name: str, setup) -> None:
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        setup(conv)
        (out / name).write_bytes(conv.convert())

    def int8(c):
        c.optimizations, c.representative_dataset = [tf.lite.Optimize.DEFAULT], rep

    def int16x8(c):
        int8(c)
        c.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]

    def dynamic(c):
        c.optimizations = [tf.lite.Optimize.DEFAULT]

    convert("keras_fer.tflite", lambda c: None)
    convert("keras_fer_int8io.tflite", int8)
    convert("keras_fer_16x8.tflite", int16x8)
    convert("keras_fer_dynamic.tflite", dynamic)


def onnx_file(model, path: Path, perm: list[int] | None = None) -> None:
    """The Keras network, node by node: Mul/Add to [-1, 1], Conv/Relu/MaxPool x3, NHWC flatten, Gemm."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    dense = model.layers[-1]
    inits = [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
             numpy_helper.from_array(np.array(-1.0, np.float32), "minus_one")]
    nodes = [helper.make_node("Mul", ["face", "two"], ["x2"]), helper.make_node("Add", ["x2", "minus_one"], ["h0"])]
    for i, conv in enumerate(convs):
        w, b = conv.get_weights()
        inits += [numpy_helper.from_array(w.transpose(3, 2, 0, 1).copy(), f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [helper.make_node("Conv", [f"h{i}", f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
                  helper.make_node("MaxPool", [f"r{i}"], [f"h{i + 1}"], kernel_shape=[2, 2], strides=[2, 2])]
    wd, bd = dense.get_weights()
    if perm is not None:
        wd, bd = wd[:, perm], bd[perm]
    n = len(convs)
    inits += [numpy_helper.from_array(wd, "wd"), numpy_helper.from_array(bd, "bd")]
    nodes += [helper.make_node("Transpose", [f"h{n}"], ["nhwc"], perm=[0, 2, 3, 1]),
              helper.make_node("Flatten", ["nhwc"], ["flat"], axis=1),
              helper.make_node("Gemm", ["flat", "wd", "bd"], ["scores"])]
    graph = helper.make_graph(nodes, "helper_fer",
                              [helper.make_tensor_value_info("face", TensorProto.FLOAT, [1, 1, 48, 48])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 7])], initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="onnx.helper")
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def main(out: Path, spec: str) -> None:
    import tensorflow as tf

    out.mkdir(parents=True, exist_ok=True)
    split, names = load(spec)
    (xt, yt), (xv, yv) = split["train"], split["val"]
    scale = lambda u8: u8.astype(np.float32) / 127.5 - 1.0  # noqa: E731 - Keras sees [-1, 1]
    model, val_acc = keras_model(scale(xt), yt, scale(xv), yv)
    tflite_files(model, scale(xt), out)
    onnx_file(model, out / "helper_fer.onnx")
    onnx_file(model, out / "helper_fer_permuted.onnx", PERMUTATION)
    (out / "info.json").write_text(json.dumps({"keras_val_accuracy": val_acc, "classes": names, "dataset": spec,
                                               "permutation": PERMUTATION, "tensorflow": tf.__version__}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
