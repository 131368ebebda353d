"""What precision a model file computes in, read from the file itself (for ``bench export --import``).

Labels (the manifest's ``precision``):

- ``int8``: int8 activations and weights (full integer). Also when the model's I/O is
  float32 and it quantises inside (onnx2tf's ``integer_quant``, TFLiteConverter without
  ``inference_input_type``): a note says so.
- ``int16x8``: int16 activations with int8 weights (TFLite 16x8, onnx2tf's
  ``*_with_int16_act`` files, ONNX QDQ with int16 zero points).
- ``dynamic``: int8 weights, float activations (dynamic-range quantisation; ONNX
  ``DynamicQuantizeLinear``/``MatMulInteger``, or weight-only ``DequantizeLinear``).
- ``fp16``: float16 weights; ``fp32`` otherwise.

Reads the ONNX protobuf or the TFLite flatbuffer: never loads a runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# TFLite TensorType values (schema.fbs).
TFL_FLOAT16, TFL_UINT8, TFL_INT16, TFL_INT8 = 1, 3, 7, 9
# ONNX TensorProto data types.
ONNX_UINT8, ONNX_INT8, ONNX_UINT16, ONNX_INT16, ONNX_FLOAT16 = 2, 3, 4, 5, 10
ONNX_ACTIVATION_QUANT = {"QuantizeLinear", "QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul",
                         "QLinearAveragePool", "QLinearGlobalAveragePool"}
ONNX_DYNAMIC_QUANT = {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul"}


@dataclass(frozen=True)
class PrecisionFacts:
    """The tensor types a file holds: constants (weights) and activations (everything computed)."""

    weight_types: frozenset[str] = frozenset()
    activation_types: frozenset[str] = frozenset()
    ops: frozenset[str] = frozenset()
    io_dtype: str = "float32"
    notes: list[str] = field(default_factory=list)


def precision_of(facts: PrecisionFacts) -> tuple[str, list[str]]:
    """(precision label, notes) from the facts (see the module docstring)."""
    acts, weights = facts.activation_types, facts.weight_types
    float_io = facts.io_dtype in ("float32", "float16")
    if "int16" in acts:
        return "int16x8", ["int16 activations, int8 weights (16x8 quantisation)"
                           + ("; float32 input/output, quantised inside the model" if float_io else "")]
    if acts & {"int8", "uint8"}:
        notes = ["full integer; float32 input/output, quantised inside the model"] if float_io else []
        return "int8", notes
    if weights & {"int8", "uint8"} or facts.ops & ONNX_DYNAMIC_QUANT:
        return "dynamic", ["int8 weights, float activations (dynamic-range quantisation)"]
    if "float16" in weights:
        return "fp16", []
    return "fp32", []


# ---------------------------------------------------------------------------- TFLite
_TFL_NAMES = {0: "float32", TFL_FLOAT16: "float16", 2: "int32", TFL_UINT8: "uint8", 4: "int64", TFL_INT16: "int16",
              TFL_INT8: "int8"}


def tflite_facts(path: Path, io_dtype: str) -> PrecisionFacts:
    """Constant tensors (a non-empty buffer) are weights; the others are activations."""
    from edgefair.export.sparsity import _tflite_schema

    schema = _tflite_schema()
    buf = Path(path).read_bytes()
    model = schema.Model.GetRootAs(buf, 0)
    weights: set[str] = set()
    acts: set[str] = set()
    for si in range(model.SubgraphsLength()):
        sg = model.Subgraphs(si)
        for ti in range(sg.TensorsLength()):
            t = sg.Tensors(ti)
            name = _TFL_NAMES.get(t.Type(), f"type{t.Type()}")
            (weights if _is_constant(model, t) else acts).add(name)
    return PrecisionFacts(frozenset(weights), frozenset(acts), frozenset(), io_dtype)


def _is_constant(model: object, tensor: object) -> bool:
    b = tensor.Buffer()  # type: ignore[attr-defined]
    if b <= 0:
        return False
    bobj = model.Buffers(b)  # type: ignore[attr-defined]
    return bobj.DataLength() > 0 or (bobj.Offset() > 1 and bobj.Size() > 0)


# ---------------------------------------------------------------------------- ONNX
_ONNX_NAMES = {1: "float32", ONNX_UINT8: "uint8", ONNX_INT8: "int8", ONNX_UINT16: "uint16", ONNX_INT16: "int16",
               6: "int32", 7: "int64", ONNX_FLOAT16: "float16", 11: "float64"}


def onnx_facts(path: Path, io_dtype: str) -> PrecisionFacts:
    """Initializers of rank >= 2 are weights; activation types come from the quantising ops' zero points."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    inits = {t.name: t for t in m.graph.initializer}
    weights = {_ONNX_NAMES.get(t.data_type, str(t.data_type)) for t in inits.values() if len(t.dims) >= 2}
    ops = {n.op_type for n in m.graph.node}
    acts: set[str] = set()
    for n in m.graph.node:
        if n.op_type in ONNX_ACTIVATION_QUANT:
            zp = n.input[2] if n.op_type == "QuantizeLinear" and len(n.input) > 2 else None
            dtype = _ONNX_NAMES.get(inits[zp].data_type) if zp and zp in inits else "int8"
            acts.add("int16" if dtype in ("int16", "uint16") else dtype or "int8")
    if "DequantizeLinear" in ops and not acts and not ops & ONNX_DYNAMIC_QUANT:
        weights.add("int8")  # weight-only quantisation: DequantizeLinear of int8 constants
    return PrecisionFacts(frozenset(weights), frozenset(acts), frozenset(ops), io_dtype)


def onnx_input_quant(path: Path, input_name: str) -> tuple[float, int] | None:
    """Scale and zero point of a quantised ONNX input, from the first op that reads it
    (QLinear*/DequantizeLinear take ``x_scale``, ``x_zero_point`` as their 2nd and 3rd inputs)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path), load_external_data=False)
    inits = {t.name: t for t in m.graph.initializer}
    for n in m.graph.node:
        if n.input and n.input[0] == input_name and (n.op_type.startswith("QLinear")
                                                     or n.op_type == "DequantizeLinear"):
            if len(n.input) > 2 and n.input[1] in inits and n.input[2] in inits:
                scale = numpy_helper.to_array(inits[n.input[1]]).reshape(-1)
                zp = numpy_helper.to_array(inits[n.input[2]]).reshape(-1)
                if scale.size == 1 and zp.size == 1:
                    return float(scale[0]), int(zp[0])
    return None
