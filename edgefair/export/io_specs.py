"""Input/output specs read from a model file itself (names, shapes, dtypes, quantisation)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgefair.contracts.manifest import Quant, TensorSpec
from edgefair.export.errors import ExportError

_ONNX_DT = {1: "float32", 10: "float16", 3: "int8", 2: "uint8", 5: "int16", 11: "float64", 6: "int32", 7: "int64"}


def guess_layout(shape: list[int], channels: int) -> str:
    """NCHW when dim 1 holds the channels, NHWC when the last dim does (4-D image inputs)."""
    if len(shape) != 4:
        raise ExportError(f"input shape {shape} is not a 4-D image batch")
    at1, at3 = shape[1] == channels, shape[3] == channels
    if at1 and not at3:
        return "NCHW"
    if at3 and not at1:
        return "NHWC"
    if at1 and at3:
        return "NCHW"
    raise ExportError(f"input shape {shape} has no dimension of {channels} channel(s) at position 1 or 3")


def _one_image_input(path: Path, n_inputs: int, n_outputs: int) -> None:
    if n_inputs != 1:
        raise ExportError(f"{path}: has {n_inputs} inputs; an artefact needs exactly one image input")
    if not n_outputs:
        raise ExportError(f"{path}: has no outputs")


def onnx_io(path: Path, *, layout: str | None = None) -> tuple[TensorSpec, TensorSpec]:
    """(input, output) of an ONNX file: name, shape (-1 for dynamic), dtype; no quant (QDQ keeps float I/O)."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    ins = [i for i in m.graph.input if i.name not in inits]
    outs = list(m.graph.output)
    _one_image_input(path, len(ins), len(outs))

    def spec(v: Any, lay: str | None) -> TensorSpec:
        tt = v.type.tensor_type
        dims = [d.dim_value if d.dim_value > 0 else -1 for d in tt.shape.dim]
        return TensorSpec(name=v.name, shape=dims, dtype=_ONNX_DT.get(tt.elem_type, str(tt.elem_type)), layout=lay)

    return spec(ins[0], layout), spec(outs[0], None)


def _tfl_quant(d: Mapping[str, Any]) -> Quant | None:
    scale, zp = d.get("quantization") or (0.0, 0)
    if scale:
        return Quant(scale=float(scale), zero_point=int(zp))
    qp = d.get("quantization_parameters") or {}
    sc = qp.get("scales")
    if sc is not None and len(sc) == 1 and float(sc[0]) != 0.0:
        return Quant(scale=float(sc[0]), zero_point=int(qp["zero_points"][0]))
    return None


def tflite_io(path: Path, *, layout: str | None = None) -> tuple[TensorSpec, TensorSpec]:
    """(input, output) of a TFLite file from the interpreter: names, shapes, dtypes, scale/zero-point."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    ins, outs = it.get_input_details(), it.get_output_details()
    _one_image_input(path, len(ins), len(outs))

    def spec(d: Mapping[str, Any], lay: str | None) -> TensorSpec:
        sig = d.get("shape_signature")
        shape = [int(v) for v in (sig if sig is not None and len(sig) else d["shape"])]
        return TensorSpec(name=d["name"], shape=[v if v > 0 else -1 for v in shape],
                          dtype=np.dtype(d["dtype"]).name, quant=_tfl_quant(d), layout=lay)

    return spec(ins[0], layout), spec(outs[0], None)
