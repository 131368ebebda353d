"""Parity at export: run each artefact with its real runtime through the agent's own code path.

The agent's ``make_runner`` / ``preprocess`` / ``dequantise`` (edgefair/runtimes/agent.py) are
called in-process on a held-out sample of the validation split, so an artefact that passes
here is fed exactly as on a device; its logits are compared with the PyTorch model it was
exported from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

FP32_GATE = 0.995      # fp32: top-1 agreement with the PyTorch model
ACCURACY_GATE = 0.99   # fp16/int8: accuracy >= this share of the fp32 reference's, on the same images
GATE_KINDS = ("agreement", "accuracy")


@dataclass
class Parity:
    """``passed``: True/False by ``gate_kind``; None where no gate applies (``reason`` says why)."""

    n: int
    agreement: float
    max_abs_logit_diff: float
    val_accuracy: float
    reference_val_accuracy: float
    reference: str
    runtime: str
    gate: float | None
    passed: bool | None
    gate_kind: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_artifact(folder: Path, manifest: Mapping[str, Any], images_u8: np.ndarray, *,
                 quiet: Any = None) -> tuple[np.ndarray, str]:
    """Logits (N, classes) of the artefact on uint8 NHWC images, one image per invoke as the agent does."""
    from edgefair.models import torch_runner
    from edgefair.runtimes import agent as A

    torch_runner.register(A)  # the agent serves torch artefacts only through this host plugin
    fmt = manifest["format"]
    path = Path(folder) / manifest["model_file"]
    # one thread, as the agent's default: batch-1 inference on a shared machine
    runner = A.make_runner(fmt, str(path), 1, dict(manifest))
    q = quiet if quiet is not None else _null
    torch_threads = None
    if fmt == "torch":
        import torch

        torch_threads = torch.get_num_threads()  # the runner sets it process-wide: restore after
    try:
        with q():  # runtimes print their own banners (XNNPACK delegate, deprecation warnings)
            runner.load()
            x = A.preprocess(images_u8, manifest, runner)
            out = [A.dequantise(runner.run_one(x[:1]), runner).reshape(-1)]
        for i in range(1, x.shape[0]):
            out.append(A.dequantise(runner.run_one(x[i:i + 1]), runner).reshape(-1))
    finally:
        mode = getattr(runner, "_mode", None)
        if mode is not None:  # TorchRunner enters inference mode for its whole run
            mode.__exit__(None, None, None)
        if torch_threads is not None:
            import torch

            torch.set_num_threads(torch_threads)
    return np.stack(out).astype(np.float32), f"{runner.name} {runner.version}"


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def compare(logits: np.ndarray, ref_logits: np.ndarray, labels: np.ndarray, *, reference: str, runtime: str,
            gate: float | None, kind: str = "agreement", num_classes: int | None = None) -> Parity:
    """Agreement and accuracies of ``logits`` against the reference; the verdict by ``kind`` of gate."""
    n = int(len(labels))
    agree = float((logits.argmax(1) == ref_logits.argmax(1)).mean()) if n else float("nan")
    diff = float(np.max(np.abs(logits - ref_logits))) if logits.size else 0.0
    acc = float((logits.argmax(1) == labels).mean()) if n else float("nan")
    ref_acc = float((ref_logits.argmax(1) == labels).mean()) if n else float("nan")
    passed, reason = verdict(kind, gate, agreement=agree, accuracy=acc, reference_accuracy=ref_acc,
                             num_classes=num_classes)
    return Parity(n=n, agreement=agree, max_abs_logit_diff=diff, val_accuracy=acc, reference_val_accuracy=ref_acc,
                  reference=reference, runtime=runtime, gate=gate, passed=passed,
                  gate_kind=kind if gate is not None else None, reason=reason)


def verdict(kind: str, gate: float | None, *, agreement: float, accuracy: float, reference_accuracy: float,
            num_classes: int | None = None) -> tuple[bool | None, str]:
    """(passed, reason). ``agreement``: top-1 agreement >= gate. ``accuracy``: accuracy >= gate × the
    reference's; None when the reference is at or below chance (a ratio of chance levels says nothing)
    or there are no labelled images."""
    if gate is None:
        return None, "no gate for this target"
    if kind == "agreement":
        ok = agreement == agreement and agreement >= gate
        return ok, f"top-1 agreement {agreement:.4f} {'>=' if ok else '<'} {gate:g} with the PyTorch model"
    if kind != "accuracy":
        raise ValueError(f"unknown gate kind {kind!r}: expected one of {', '.join(GATE_KINDS)}")
    if reference_accuracy != reference_accuracy:
        return None, "no accuracy gate: no labelled parity images"
    chance = 1.0 / num_classes if num_classes else 0.0
    if reference_accuracy <= chance:
        return None, (f"no accuracy gate: the fp32 reference's accuracy {reference_accuracy:.4f} is at or below "
                      f"chance (1/{num_classes})")
    need = gate * reference_accuracy
    ok = accuracy >= need
    return ok, (f"accuracy {accuracy:.4f} {'>=' if ok else '<'} {gate:g} × the fp32 reference's "
                f"{reference_accuracy:.4f} ({need:.4f})")


def diagnose(logits: np.ndarray, images_u8: np.ndarray, prep: Mapping[str, Any],
             reference_fn: Callable[[np.ndarray], np.ndarray]) -> str:
    """Name the likely cause of an fp32 mismatch by re-running the reference on mis-fed inputs.

    ``reference_fn``: float32 NCHW -> logits of the PyTorch model.
    """
    u = images_u8.astype(np.float32)
    mean, std = float(prep["mean"]), float(prep["std"])
    good = ((u / 255.0 - mean) / std)
    tries = {
        "normalisation: the artefact behaves as if fed pixel/255 without (x-mean)/std": u / 255.0,
        "normalisation: the artefact behaves as if fed raw 0..255 pixels": u,
        "normalisation: the artefact behaves as if (x-mean)/std were applied twice": (good - mean) / std,
        "layout: the artefact behaves as if height and width were swapped (NCHW/NHWC transpose)":
            good.transpose(0, 2, 1, 3),
    }
    pred = logits.argmax(1)
    for cause, x in tries.items():
        ref = reference_fn(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32))
        if float((ref.argmax(1) == pred).mean()) >= FP32_GATE:
            return cause
    return ("likely cause: input layout (manifest NCHW/NHWC vs the model's) or normalisation "
            "(manifest mean/std vs what the model was trained on), or a converter bug")
