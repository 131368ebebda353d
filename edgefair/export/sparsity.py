"""Measured sparsity: zeros counted in the exported file's own weight tensors.

"Weights" are the constant tensors of rank >= 2 (convolution and dense kernels, in whatever
precision the file stores them: float32, float16, int8); biases, batch-norm vectors,
quantisation scales and shape constants are rank <= 1 and are left out, as torch.ao.pruning
leaves them unpruned. The file is parsed directly (ONNX initializers, the TFLite flatbuffer's
buffers, the TorchScript archive's tensors and packed int8 weights), so a converter that
densified or re-quantised the zeros would show up here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass
class WeightStats:
    total: int      # elements of the weight tensors in the file
    zeros: int      # of which exactly zero
    tensors: int    # number of weight tensors

    @property
    def zero_fraction(self) -> float:
        return self.zeros / self.total if self.total else 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _acc(arrays) -> WeightStats:
    tot = zeros = n = 0
    for a in arrays:
        a = np.asarray(a)
        if a.ndim < 2 or a.dtype.kind not in "fiu":
            continue
        n += 1
        tot += a.size
        zeros += int(np.count_nonzero(a == 0))
    return WeightStats(tot, zeros, n)


def onnx_weight_stats(path: Path) -> WeightStats:
    return _acc(onnx_weight_arrays(path))


def onnx_weight_arrays(path: Path) -> list[np.ndarray]:
    """Every initializer and Constant value of the ONNX file."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    arrays = [numpy_helper.to_array(t) for t in m.graph.initializer]
    for node in m.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.t is not None:
                    arrays.append(numpy_helper.to_array(a.t))
    return arrays


_TFL_DTYPES = {0: np.float32, 1: np.float16, 3: np.uint8, 9: np.int8}


def _tflite_schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - tensorflow ships the same module
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def tflite_weight_stats(path: Path) -> WeightStats:
    """Walk every subgraph's tensors; a tensor with a non-empty buffer is a constant."""
    tot = zeros = n = 0
    for vals, size, sparse in _tflite_constants(path):
        n += 1
        if sparse:  # TFLite sparse encoding: only the stored values are kept
            tot += size
            zeros += size - int(np.count_nonzero(vals))
        else:
            tot += vals.size
            zeros += int(np.count_nonzero(vals == 0))
    return WeightStats(tot, zeros, n)


def tflite_weight_arrays(path: Path) -> list[np.ndarray]:
    """The rank >= 2 constants of a TFLite file (sparse-encoded ones as their stored values, 1 × n)."""
    return [vals.reshape(1, -1) for vals, _, _ in _tflite_constants(path)]


def _tflite_constants(path: Path):
    """(values, element count, sparse-encoded) of each distinct rank >= 2 constant buffer."""
    schema = _tflite_schema()
    buf = Path(path).read_bytes()
    model = schema.Model.GetRootAs(buf, 0)
    seen: set[int] = set()
    for si in range(model.SubgraphsLength()):
        sg = model.Subgraphs(si)
        for ti in range(sg.TensorsLength()):
            t = sg.Tensors(ti)
            b = t.Buffer()
            if b <= 0 or b in seen or t.Type() not in _TFL_DTYPES:
                continue
            shape = t.ShapeAsNumpy()
            if isinstance(shape, int) or len(shape) < 2:
                continue
            bobj = model.Buffers(b)
            data = bobj.DataAsNumpy()
            if isinstance(data, int):  # empty vector, or stored past the flatbuffer (offset/size)
                off, size = bobj.Offset(), bobj.Size()
                if off > 1 and size > 0:
                    data = np.frombuffer(buf, dtype=np.uint8, count=size, offset=off)
                else:
                    continue
            seen.add(b)
            vals = np.frombuffer(data.tobytes(), dtype=_TFL_DTYPES[t.Type()])
            yield vals, int(np.prod(shape)), t.Sparsity() is not None


def torchscript_weight_stats(path: Path) -> WeightStats:
    return _acc(torchscript_weight_arrays(path))


def torchscript_weight_arrays(path: Path) -> list[np.ndarray]:
    """Float kernels from the state dict; int8 kernels unpacked from the quantized modules' packed params."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = torch.jit.load(str(path), map_location="cpu")
    arrays = []
    for _, v in m.state_dict().items():
        if isinstance(v, torch.Tensor) and v.dim() >= 2:
            arrays.append((v.int_repr() if v.is_quantized else v.detach()).numpy())
    for _, mod in m.named_modules():
        try:
            packed = mod._packed_params
        except (AttributeError, RuntimeError):
            continue
        if not isinstance(packed, torch.ScriptObject):
            continue  # a Linear's packed params live one level down
        w = None
        for unpack in (torch.ops.quantized.conv2d_unpack, torch.ops.quantized.linear_unpack,
                       torch.ops.quantized.conv1d_unpack, torch.ops.quantized.conv3d_unpack):
            try:
                w = unpack(packed)[0]
                break
            except Exception:
                continue
        if w is not None:
            arrays.append((w.int_repr() if w.is_quantized else w).numpy())
    return arrays


def weight_stats(path: Path, fmt: str) -> WeightStats:
    if fmt == "onnx":
        return onnx_weight_stats(path)
    if fmt == "tflite":
        return tflite_weight_stats(path)
    if fmt == "torch":
        return torchscript_weight_stats(path)
    raise ValueError(f"unknown format {fmt!r}")


def weight_arrays(path: Path, fmt: str) -> list[np.ndarray]:
    """The file's constant tensors as read back from it (what :func:`weight_stats` counts)."""
    readers = {"onnx": onnx_weight_arrays, "tflite": tflite_weight_arrays, "torch": torchscript_weight_arrays}
    if fmt not in readers:
        raise ValueError(f"unknown format {fmt!r}")
    return [np.asarray(a) for a in readers[fmt](path)]
