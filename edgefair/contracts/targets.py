"""The nine export targets and how artefact folders are named: the one target registry."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from edgefair.contracts.errors import UsageError

FORMATS = ("torch", "onnx", "tflite")
#: ``int16x8`` (int16 activations, int8 weights) is no export target: imported files only.
PRECISIONS = ("fp32", "fp16", "int8", "dynamic", "int16x8")


class TargetError(UsageError):
    """An unknown target or an invalid sparsity level."""


@dataclass(frozen=True)
class Target:
    """One row of the target table: ``<format>-<precision>``."""

    name: str
    format: str  # torch | onnx | tflite
    precision: str  # fp32 | fp16 | int8 | dynamic (imports also: int16x8)
    model_file: str  # file name inside the artefact folder
    runtime: str  # import name of the runtime that runs it on the host
    description: str
    calibrated: bool = False  # static int8: calibration images change the file

    @property
    def is_fp32(self) -> bool:
        return self.precision == "fp32"

    @property
    def is_int8(self) -> bool:
        return self.precision in ("int8", "dynamic")

    @property
    def host_only(self) -> bool:
        """TorchScript reference rows run on the host only (the agent never imports torch)."""
        return self.format == "torch"


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("torch-fp32", "torch", "fp32", "model.pt", "torch", "TorchScript float32 (reference row)"),
    Target("torch-int8", "torch", "int8", "model.pt", "torch",
           "TorchScript int8 via torch.ao FX quantisation (reference row)", calibrated=True),
    Target("onnx-fp32", "onnx", "fp32", "model.onnx", "onnxruntime", "ONNX float32"),
    Target("onnx-fp16", "onnx", "fp16", "model.onnx", "onnxruntime",
           "ONNX float16 weights/activations, float32 I/O (onnxconverter-common)"),
    Target("onnx-int8", "onnx", "int8", "model.onnx", "onnxruntime",
           "ONNX static QDQ int8, per-channel weights (onnxruntime quantize_static)", calibrated=True),
    Target("tflite-fp32", "tflite", "fp32", "model.tflite", "ai_edge_litert", "TFLite float32 (onnx2tf)"),
    Target("tflite-fp16", "tflite", "fp16", "model.tflite", "ai_edge_litert", "TFLite float16 weights (onnx2tf)"),
    Target("tflite-int8", "tflite", "int8", "model.tflite", "ai_edge_litert",
           "TFLite full integer, int8 input/output (onnx2tf + TFLiteConverter)", calibrated=True),
    Target("tflite-dynamic", "tflite", "dynamic", "model.tflite", "ai_edge_litert",
           "TFLite dynamic-range int8 weights (onnx2tf)"),
)}
TARGET_NAMES: tuple[str, ...] = tuple(TARGETS)
REFERENCE_ORDER = ("torch-fp32-s0", "onnx-fp32-s0", "tflite-fp32-s0")


def format_sparsity(s: float) -> str:
    """0 -> '0', 0.5 -> '0.5', 0.75 -> '0.75' (as in folder names)."""
    return f"{float(s):g}"


def artefact_name(target: str, sparsity: float, *, clustering: int | None = None, kd: bool = False) -> str:
    """``<format>-<precision>-s<sparsity>[-c<K>][-kd]``, e.g. ``tflite-int8-s0.5``, ``onnx-fp32-s0.5-c16-kd``."""
    t = TARGETS[target]
    return (f"{t.format}-{t.precision}-s{format_sparsity(sparsity)}" + (f"-c{clustering}" if clustering else "")
            + ("-kd" if kd else ""))


def parse_targets(values: Iterable[str]) -> list[str]:
    """Names (or ``all``, or comma lists) -> de-duplicated target names in table order."""
    out: list[str] = []
    for v in values:
        for part in str(v).split(","):
            name = part.strip().lower()
            if not name:
                continue
            for n in (list(TARGETS) if name == "all" else [name]):
                if n not in TARGETS:
                    raise TargetError(f"unknown target '{part.strip()}': expected one of {', '.join(TARGETS)} or all")
                if n not in out:
                    out.append(n)
    if not out:
        raise TargetError("no target given: expected one of " + ", ".join(TARGETS) + " or all")
    return [n for n in TARGETS if n in out]


def _sparsity_items(values: float | str | Sequence[float | str]) -> list[object]:
    if isinstance(values, (int, float)):
        return [values]
    if isinstance(values, str):
        return list(values.split(","))
    items: list[object] = []
    for v in values:
        items.extend(str(v).split(",") if isinstance(v, str) else [v])
    return items


def parse_sparsity(value: object) -> float:
    """One level in [0, 1), rounded to 6 decimals; booleans and non-numbers refused."""
    if isinstance(value, bool):
        raise TargetError(f"sparsity {value!r} is not a number: expected values in [0, 1), e.g. 0,0.5,0.9")
    try:
        s = float(str(value).strip()) if isinstance(value, str) else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TargetError(f"sparsity '{value}' is not a number: expected values in [0, 1), e.g. 0,0.5,0.9") from None
    if not (0.0 <= s < 1.0):
        raise TargetError(f"sparsity {s:g} is outside [0, 1): 0 keeps every weight, 0.9 removes 90 %")
    return round(s, 6)


def parse_sparsities(values: float | str | Sequence[float | str]) -> list[float]:
    """``"0,0.5,0.9"`` or a list -> sorted unique levels, each in [0, 1)."""
    out = sorted({parse_sparsity(v) for v in _sparsity_items(values) if not (isinstance(v, str) and not v.strip())})
    if not out:
        raise TargetError("no sparsity given: expected values in [0, 1), e.g. 0,0.5,0.9")
    return out
