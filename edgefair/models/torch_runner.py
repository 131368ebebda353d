"""Host-side runner for the torch-fp32 / torch-int8 reference rows, loaded by the agent.

The device agent (edgefair/runtimes/agent.py) imports no torch. For ``format: torch``
artefacts the host passes this file with ``agent.py run --plugin PATH``; the agent loads
it by path and calls :func:`make_runner`. The runner has the agent's runner interface:
load(), set_input(x), invoke(), output(), run_one(x) and the input/output attributes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "torch"
PLUGIN_PATH = Path(__file__).resolve()


class TorchRunner:
    """TorchScript model on the CPU, inference mode kept on for the whole run."""

    name = "torch"
    version = None
    input_quant = None
    output_quant = None
    output_dtype = "float32"

    def __init__(self, path: str, threads: int, manifest: dict):
        try:
            import torch
        except ImportError:
            raise RuntimeError("torch is not installed (torch artefacts run on the host only)") from None
        self.torch = torch
        self.version = torch.__version__
        self.path, self.threads, self.manifest = path, threads, manifest

    def load(self) -> None:
        torch = self.torch
        if self.threads and self.threads > 0:
            torch.set_num_threads(int(self.threads))
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass  # only settable before any parallel work started
        self.m = torch.jit.load(self.path, map_location="cpu").eval()
        inp = self.manifest.get("input") or {}
        self.input_dtype = inp.get("dtype") if inp.get("dtype") in ("float32", "float16") else "float32"
        self.input_shape = [int(v) for v in inp.get("shape") or []] or None
        self._mode = torch.inference_mode()
        self._mode.__enter__()  # keep inference mode on for the whole run
        self._x: Any = None
        self.settings = {"num_threads": torch.get_num_threads(),
                         "num_interop_threads": torch.get_num_interop_threads(),
                         "quantized_engine": str(torch.backends.quantized.engine)}

    def set_input(self, x: np.ndarray) -> None:
        self._x = self.torch.from_numpy(np.ascontiguousarray(x))

    def invoke(self) -> None:
        self._last = self.m(self._x)

    def output(self) -> np.ndarray:
        o = self._last
        if isinstance(o, (tuple, list)):
            o = o[0]
        if getattr(o, "is_quantized", False):
            o = o.dequantize()
        return o.detach().float().numpy().copy()

    def run_one(self, x: np.ndarray) -> np.ndarray:
        self.set_input(x)
        self.invoke()
        return self.output()


def make_runner(path: str, threads: int, manifest: dict) -> TorchRunner:
    return TorchRunner(path, threads, manifest)


def register(agent_module) -> None:
    """Make an in-process agent module (parity checks, benchmarks) run torch artefacts."""
    agent_module.register_runner(FORMAT, make_runner)
