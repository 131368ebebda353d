"""PyTorch-native reference rows: TorchScript float32 and int8 (torch.ao FX quantisation), and QAT.

The agent loads both with ``torch.jit.load`` (format "torch"), input NCHW float32.

torch.ao.quantization (``prepare_fx``/``convert_fx``/``prepare_qat_fx``) and TorchScript
warn that they are deprecated; the warnings go to the export log. Migration path: torchao's
PT2E flow — ``torch.export.export(model, example)`` → ``torchao.quantization.pt2e.quantize_pt2e
.prepare_pt2e`` (or ``prepare_qat_pt2e``) with ``X86InductorQuantizer`` (desktop) or
``XNNPACKQuantizer`` (ARM) → calibrate/fine-tune → ``convert_pt2e`` → save with
``torch.export.save`` (a ``.pt2`` file, which the agent would then load with
``torch.export.load``). torchao is not installed here (and is not in onnx2tf's pins), so
this module stays on torch.ao until it is.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

DESKTOP_ENGINE = "x86"   # fbgemm's successor on x86-64
ARM_ENGINE = "qnnpack"


def _engine(engine: str) -> str:
    supported = torch.backends.quantized.supported_engines
    if engine not in supported:
        raise RuntimeError(f"quantized engine '{engine}' is not supported by this torch build "
                           f"(have {', '.join(supported)})")
    torch.backends.quantized.engine = engine
    return engine


def save_torchscript(model: nn.Module, path: Path, *, channels: int, size: int) -> Path:
    """Trace at batch 1 and save; the agent calls ``torch.jit.load`` on it."""
    model = model.eval()
    example = torch.zeros(1, channels, size, size)
    with torch.no_grad():
        ts = torch.jit.trace(model, example, check_trace=False)
    torch.jit.save(ts, str(path))
    return Path(path)


def ptq_int8(model: nn.Module, calib_nchw: np.ndarray, *, engine: str = DESKTOP_ENGINE) -> nn.Module:
    """Post-training static int8 (FX graph mode): fuse, observe on calibration images, convert."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    _engine(engine)
    m = copy.deepcopy(model).eval()
    example = (torch.from_numpy(calib_nchw[:1]),)
    prepared = prepare_fx(m, get_default_qconfig_mapping(engine), example)
    with torch.no_grad():
        for i in range(0, len(calib_nchw), 64):
            prepared(torch.from_numpy(calib_nchw[i:i + 64]))
    return convert_fx(prepared).eval()


def prepare_qat(model: nn.Module, example: torch.Tensor, *,
                engine: str = DESKTOP_ENGINE) -> tuple[nn.Module, nn.Module]:
    """(fake-quant QAT model in train mode, its float twin).

    The twin is a copy of ``model`` that shares every parameter and batch-norm buffer with the
    QAT model (prepare_qat_fx fuses Conv+BN around the same tensors), so after QAT it *is*
    the float model with the QAT weights, in the original architecture — what the ONNX and
    TFLite int8 converters start from under --qat.
    """
    from torch.ao.quantization import get_default_qat_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    _engine(engine)
    twin = copy.deepcopy(model).train()
    qat = prepare_qat_fx(twin, get_default_qat_qconfig_mapping(engine), (example,))
    shared = {id(p) for p in twin.parameters()}
    if not all(id(p) in shared for p in qat.parameters()):
        raise RuntimeError("torch.ao prepare_qat_fx copied the weights: cannot map QAT weights back to the float model")
    return qat, twin


def sparsity_keeper(model: nn.Module):
    """after_step hook that keeps already-zero Conv/Linear weights at zero (pruning survives QAT)."""
    masks = []
    for p in model.parameters():
        if p.dim() >= 2:
            z = p.detach() == 0
            if bool(z.any()):
                masks.append((p, ~z))

    def after_step() -> None:
        with torch.no_grad():
            for p, keep in masks:
                p.mul_(keep)

    return after_step


def convert_qat(qat_model: nn.Module) -> nn.Module:
    """QAT model -> real int8 model with the ranges learned during QAT."""
    from torch.ao.quantization import disable_observer
    from torch.ao.quantization.quantize_fx import convert_fx

    m = copy.deepcopy(qat_model).eval()
    m.apply(disable_observer)
    return convert_fx(m).eval()  # type: ignore[arg-type]  # a GraphModule from prepare_qat_fx
