"""Which host modules each export target needs (converters and the runtime that checks parity).

The target registry itself is :mod:`edgefair.contracts.targets`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from edgefair.contracts.targets import TARGETS

# the converters each format needs on the host, beyond its runtime
_CONVERTERS = {
    "torch": ("torch",),
    "onnx": ("torch", "onnx", "onnxruntime"),
    "tflite": ("torch", "onnx", "onnx2tf", "tensorflow"),
}
_EXTRA = {"onnx-fp16": ("onnxconverter_common",), "onnx-int8": ("onnxruntime.quantization",)}
_TFLITE_RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")
PIP_NAMES = {"onnx2tf": "onnx2tf", "tensorflow": "tensorflow", "ai_edge_litert": "ai-edge-litert",
             "onnxruntime": "onnxruntime", "onnxruntime.quantization": "onnxruntime",
             "onnxconverter_common": "onnxconverter-common", "onnx": "onnx", "torch": "torch"}


def _have(module: str, memo: dict[str, bool]) -> bool:
    if module not in memo:
        try:
            memo[module] = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            memo[module] = False
    return memo[module]


def missing_modules(targets: Sequence[str]) -> dict[str, list[str]]:
    """Target -> the converter/runtime modules it needs that are not installed."""
    memo: dict[str, bool] = {}
    out: dict[str, list[str]] = {}
    for name in targets:
        t = TARGETS[name]
        mods = list(_CONVERTERS[t.format]) + list(_EXTRA.get(name, ()))
        if t.format != "tflite":
            mods.append(t.runtime)
        elif not any(_have(m, memo) for m in _TFLITE_RUNTIMES):
            mods.append("ai_edge_litert")
        miss = [m for m in dict.fromkeys(mods) if not _have(m, memo)]
        if miss:
            out[name] = miss
    return out


def pip_names(modules: Sequence[str]) -> str:
    """``pip install`` arguments for import names."""
    return " ".join(dict.fromkeys(PIP_NAMES.get(m, m) for m in modules))
