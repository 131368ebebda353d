"""The nine export targets and how artefact folders are named."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Iterable, Sequence

from edgefair.export.errors import ExportError


@dataclass(frozen=True)
class Target:
    """One row of the target table: ``<format>-<precision>``."""

    name: str
    format: str      # torch | onnx | tflite
    precision: str   # fp32 | fp16 | int8 | dynamic
    model_file: str  # file name inside the artefact folder
    runtime: str     # import name of the runtime that runs it on the host
    description: str

    @property
    def is_fp32(self) -> bool:
        return self.precision == "fp32"

    @property
    def is_int8(self) -> bool:
        return self.precision in ("int8", "dynamic")


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("torch-fp32", "torch", "fp32", "model.pt", "torch", "TorchScript float32 (reference row)"),
    Target("torch-int8", "torch", "int8", "model.pt", "torch", "TorchScript int8 via torch.ao FX quantisation (reference row)"),
    Target("onnx-fp32", "onnx", "fp32", "model.onnx", "onnxruntime", "ONNX float32"),
    Target("onnx-fp16", "onnx", "fp16", "model.onnx", "onnxruntime", "ONNX float16 weights/activations, float32 I/O (onnxconverter-common)"),
    Target("onnx-int8", "onnx", "int8", "model.onnx", "onnxruntime", "ONNX static QDQ int8, per-channel weights (onnxruntime quantize_static)"),
    Target("tflite-fp32", "tflite", "fp32", "model.tflite", "ai_edge_litert", "TFLite float32 (onnx2tf)"),
    Target("tflite-fp16", "tflite", "fp16", "model.tflite", "ai_edge_litert", "TFLite float16 weights (onnx2tf)"),
    Target("tflite-int8", "tflite", "int8", "model.tflite", "ai_edge_litert", "TFLite full integer, int8 input/output (onnx2tf)"),
    Target("tflite-dynamic", "tflite", "dynamic", "model.tflite", "ai_edge_litert", "TFLite dynamic-range int8 weights (onnx2tf)"),
)}

# the converters each format needs on the host, beyond its runtime
_CONVERTERS = {
    "torch": ("torch",),
    "onnx": ("torch", "onnx", "onnxruntime"),
    "tflite": ("torch", "onnx", "onnx2tf", "tensorflow"),
}
_EXTRA = {"onnx-fp16": ("onnxconverter_common",), "onnx-int8": ("onnxruntime.quantization",)}


def format_sparsity(s: float) -> str:
    """0 -> '0', 0.5 -> '0.5', 0.75 -> '0.75' (as in folder names)."""
    return f"{float(s):g}"


def artefact_name(target: str, sparsity: float) -> str:
    """``<format>-<precision>-s<sparsity>``, e.g. ``tflite-int8-s0.5``."""
    t = TARGETS[target]
    return f"{t.format}-{t.precision}-s{format_sparsity(sparsity)}"


def parse_targets(values: Iterable[str]) -> list[str]:
    """Names (or ``all``, or comma lists) -> ordered, de-duplicated target names."""
    out: list[str] = []
    for v in values:
        for part in str(v).split(","):
            name = part.strip().lower()
            if not name:
                continue
            names = list(TARGETS) if name == "all" else [name]
            for n in names:
                if n not in TARGETS:
                    raise ExportError(f"unknown target '{part.strip()}': expected one of {', '.join(TARGETS)} or all")
                if n not in out:
                    out.append(n)
    if not out:
        raise ExportError("no target given: expected one of " + ", ".join(TARGETS) + " or all")
    return [n for n in TARGETS if n in out]  # table order


def parse_sparsities(values: float | str | Sequence[float | str]) -> list[float]:
    """``"0,0.5,0.9"`` or a list -> sorted unique floats, each in [0, 1)."""
    if isinstance(values, (int, float)):
        items: list = [values]
    elif isinstance(values, str):
        items = values.split(",")
    else:
        items = []
        for v in values:
            items.extend(str(v).split(",") if isinstance(v, str) else [v])
    out: list[float] = []
    for v in items:
        if isinstance(v, str):
            v = v.strip()
            if not v:
                continue
        try:
            s = float(v)
        except (TypeError, ValueError):
            raise ExportError(f"sparsity '{v}' is not a number: expected values in [0, 1), e.g. 0,0.5,0.9") from None
        if not (0.0 <= s < 1.0):
            raise ExportError(f"sparsity {s:g} is outside [0, 1): 0 keeps every weight, 0.9 removes 90 %")
        s = round(s, 6)
        if s not in out:
            out.append(s)
    if not out:
        raise ExportError("no sparsity given: expected values in [0, 1), e.g. 0,0.5,0.9")
    return sorted(out)


def missing_modules(targets: Sequence[str]) -> dict[str, list[str]]:
    """Target -> the converter/runtime modules it needs that are not installed."""
    cache: dict[str, bool] = {}

    def have(mod: str) -> bool:
        if mod not in cache:
            try:
                cache[mod] = importlib.util.find_spec(mod) is not None
            except (ImportError, ValueError):
                cache[mod] = False
        return cache[mod]

    out: dict[str, list[str]] = {}
    for name in targets:
        t = TARGETS[name]
        mods = list(_CONVERTERS[t.format]) + list(_EXTRA.get(name, ()))
        if t.format == "tflite":
            rt = ["ai_edge_litert", "tflite_runtime", "tensorflow"]
            if not any(have(m) for m in rt):
                mods.append("ai_edge_litert")
        else:
            mods.append(t.runtime)
        miss = [m for m in dict.fromkeys(mods) if not have(m)]
        if miss:
            out[name] = miss
    return out
