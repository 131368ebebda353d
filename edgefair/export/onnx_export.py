"""PyTorch -> ONNX (float32), and ONNX float32 -> float16 with float32 I/O."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 17


def export_onnx(model: nn.Module, path: Path, *, channels: int, size: int) -> Path:
    """Static-shape NCHW export (batch 1), batch-norm folded, with torch's TorchScript-based exporter.

    torch 2.13's default (dynamo) exporter needs onnxscript, which onnx2tf's pins do not
    include; the TorchScript-based exporter (``dynamo=False``) is deprecated but complete for
    these CNNs. Migration: ``torch.onnx.export(..., dynamo=True)`` once onnxscript is installed.
    """
    import onnx

    model = model.eval()
    example = torch.zeros(1, channels, size, size)
    path = Path(path)
    with torch.no_grad():
        torch.onnx.export(model, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)
    m = onnx.load(str(path))
    onnx.checker.check_model(m)
    return path


def to_fp16(src: Path, dst: Path) -> Path:
    """Float16 weights and compute; inputs/outputs stay float32 (Cast nodes at the edges)."""
    import onnx
    from onnxconverter_common import float16

    m = onnx.load(str(src))
    m16 = float16.convert_float_to_float16(m, keep_io_types=True)
    onnx.checker.check_model(m16)
    onnx.save(m16, str(dst))
    return Path(dst)
