"""One producer per artefact format: each writes the model file of one target at one level
into a staging folder and says what it wrote. The matrix only loops over them."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefair.contracts.manifest import TensorSpec
from edgefair.contracts.targets import TARGETS
from edgefair.export.cache import ExportSettings
from edgefair.export.data import ExportData
from edgefair.export.io_specs import onnx_io, tflite_io
from edgefair.export.levels import Level
from edgefair.export.logs import ExportLog


@dataclass
class ProduceContext:
    """What every producer may read."""

    meta: Any  # RunMeta of the source run
    data: ExportData
    settings: ExportSettings
    log: ExportLog


@dataclass
class Produced:
    """The model file a producer wrote and the facts only it knows."""

    model_file: str
    input: TensorSpec
    output: TensorSpec
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # converter details (manifest ``export``)
    calibration: dict[str, Any] | None = None  # calibration images used (calibrated targets)
    engine: str | None = None  # quantised engine (torch-int8)


Producer = Callable[[ProduceContext, Level, str, Path], Produced]

CONVERTER = {"torch-fp32": "torch.jit.trace", "torch-int8": "torch.ao quantization",
             "onnx-fp32": "torch.onnx.export", "onnx-fp16": "onnxconverter-common float16",
             "onnx-int8": "onnxruntime quantize_static", "tflite-fp32": "onnx2tf", "tflite-fp16": "onnx2tf",
             "tflite-int8": "onnx2tf + TFLiteConverter", "tflite-dynamic": "onnx2tf"}


def _calibration(ctx: ProduceContext, *, tool: str) -> dict[str, Any]:
    prep = ctx.meta.prep
    return {"images": int(len(ctx.data.calib_u8)), "split": "train", "tool": tool,
            "normalisation": {"mean": prep.mean, "std": prep.std}}


def produce_torch(ctx: ProduceContext, level: Level, target: str, folder: Path) -> Produced:
    """TorchScript float32, or int8 through torch.ao (post-training, or from the QAT model)."""
    from edgefair.export import torch_quant

    prep = ctx.meta.prep
    out = Produced("model.pt", TensorSpec("input", [1, prep.channels, prep.size, prep.size], "float32", layout="NCHW"),
                   TensorSpec("logits", [1, int(level.ref_logits.shape[1])], "float32"))
    with ctx.log.quiet(f"{target} {level.tag}"):
        if target == "torch-fp32":
            torch_quant.save_torchscript(level.model, folder / out.model_file, channels=prep.channels, size=prep.size)
            return out
        if level.uses_qat(target):
            q = torch_quant.convert_qat(level.qat_model)
            out.notes.append(f"quantisation-aware fine-tune (torch.ao fake-quant, {ctx.settings.finetune_epochs} "
                             "epoch(s)); int8 weights and activation ranges are the QAT ones")
        else:
            q = torch_quant.ptq_int8(level.model, ctx.data.calib_nchw, engine=ctx.settings.engine)
            out.calibration = _calibration(ctx, tool="torch.ao.quantization prepare_fx observers")
            out.notes.append("post-training static int8 (torch.ao FX), calibrated on "
                             f"{len(ctx.data.calib_nchw)} training images")
        torch_quant.save_torchscript(q, folder / out.model_file, channels=prep.channels, size=prep.size)
    engine = ctx.settings.engine
    out.engine = engine
    out.notes.append(f"quantized engine '{engine}': load with torch.backends.quantized.engine = '{engine}' "
                     "(qnnpack on ARM needs a re-export with engine='qnnpack')")
    out.extra["quantization"] = {"tool": "torch.ao.quantization.quantize_fx", "engine": engine,
                                 "qat": level.uses_qat(target)}
    return out


def produce_onnx(ctx: ProduceContext, level: Level, target: str, folder: Path) -> Produced:
    """ONNX float32 (the level's export), float16 (onnxconverter-common) or static QDQ int8 (onnxruntime)."""
    from edgefair.export import onnx_export, onnx_quant

    assert level.onnx_path is not None
    dst = folder / "model.onnx"
    notes: list[str] = []
    extra: dict[str, Any] = {}
    calibration = None
    with ctx.log.quiet(f"{target} {level.tag}"):
        if target == "onnx-fp32":
            shutil.copyfile(level.onnx_path, dst)
        elif target == "onnx-fp16":
            onnx_export.to_fp16(level.onnx_path, dst)
            notes.append("float16 weights and compute (onnxconverter-common, keep_io_types): input/output stay float32")
        else:
            src = level.qat_onnx_path if level.uses_qat(target) and level.qat_onnx_path else level.onnx_path
            qat = src is level.qat_onnx_path
            extra["quantization"] = onnx_quant.quantize_int8(src, dst, ctx.data.calib_nchw)
            calibration = _calibration(ctx, tool="onnxruntime MinMax calibration")
            notes.append("static QDQ int8, per-channel 7-bit weights (reduce_range: avoids u8s8 saturation on x86 "
                         f"without VNNI), calibrated (MinMax) on {len(ctx.data.calib_nchw)} training images; "
                         "input/output stay float32")
            if qat:
                notes.append("--qat: weights from the quantisation-aware fine-tune, but onnxruntime re-calibrates "
                             "the activation ranges: ONNX QDQ from this exporter cannot carry torch.ao's learned "
                             "ranges")
    spec_in, spec_out = onnx_io(dst, layout="NCHW")
    return Produced("model.onnx", spec_in, spec_out, notes, extra, calibration)


def tflite_producer(converted: Path, *, qat: bool) -> Producer:
    """A producer that takes one file onnx2tf (or the int8 converter) already wrote."""

    def produce(ctx: ProduceContext, level: Level, target: str, folder: Path) -> Produced:
        shutil.copyfile(converted, folder / "model.tflite")
        with ctx.log.quiet():
            spec_in, spec_out = tflite_io(folder / "model.tflite", layout="NHWC")
        out = Produced("model.tflite", spec_in, spec_out, extra={"converter": CONVERTER[target]})
        prep = ctx.meta.prep
        if target == "tflite-int8":
            out.calibration = _calibration(ctx, tool="TFLiteConverter representative_dataset")
            out.notes.append(f"full-integer int8 with int8 input/output, calibrated on {len(ctx.data.calib_u8)} "
                             f"training images fed as (pixel/255 - {prep.mean:g})/{prep.std:g}; the input "
                             "scale/zero-point apply to that normalised value")
            out.extra["quantization"] = {"tool": "tf.lite.TFLiteConverter (onnx2tf's full_integer_quant settings)",
                                         "input_quant_dtype": "int8", "output_quant_dtype": "int8",
                                         "quant_type": "per-channel"}
        elif target == "tflite-fp16":
            out.notes.append("float16 weights (dequantised to float32 at load); input/output float32")
        elif target == "tflite-dynamic":
            out.notes.append("dynamic-range quantisation: int8 weights, float32 activations and I/O")
        if qat:
            out.notes.append("--qat: weights from the quantisation-aware fine-tune" + (
                "; TFLite's converter re-derives the ranges (it cannot take torch.ao's fake-quant ranges from ONNX)"
                if target == "tflite-int8" else ""))
        return out

    return produce


PRODUCERS: dict[str, Producer] = {"torch": produce_torch, "onnx": produce_onnx}


def producer_for(target: str) -> Producer:
    """The producer of a torch or ONNX target (TFLite ones come from :func:`tflite_producer`)."""
    return PRODUCERS[TARGETS[target].format]

