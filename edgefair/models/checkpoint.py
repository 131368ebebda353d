"""A training run on disk: ``model.pt`` (state dict) + ``model.json`` (everything else)."""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgefair.contracts.dataset import DatasetRef, Preprocessing
from edgefair.contracts.errors import ContractError, EdgefairError
from edgefair.contracts.jsonio import atomic_write_bytes, atomic_write_json, error_text
from edgefair.files import sha256_file
from edgefair.models.architectures import build_model


class CheckpointError(EdgefairError, ValueError):
    """A run directory that is missing, unreadable or inconsistent."""


@dataclass
class RunMeta:
    """The contents of ``model.json``."""

    arch: str
    num_classes: int
    class_names: list[str]
    preprocessing: dict[str, Any]
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    epochs: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    checkpoint_sha256: str = ""
    teacher: dict[str, Any] | None = None
    edgefair_version: str = ""

    @property
    def prep(self) -> Preprocessing:
        return Preprocessing.from_dict(self.preprocessing, where="model.json")

    def dataset_ref(self) -> DatasetRef | None:
        """The training data as a reference (runs written before the split seed was recorded
        were loaded with the run's seed)."""
        if not self.dataset or not self.dataset.get("spec"):
            return None
        doc = {"seed": self.seed, **{k: v for k, v in self.dataset.items() if k in ("spec", "seed", "fingerprint",
                                                                                   "name", "counts")}}
        try:
            return DatasetRef.from_dict(doc, where="model.json")
        except ContractError as e:
            raise CheckpointError(str(e)) from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def save_run(out: Path, model: nn.Module, meta: RunMeta) -> Path:
    """Write model.pt then model.json (with the checkpoint's sha256), each atomically."""
    from edgefair import __version__

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    atomic_write_bytes(out / "model.pt", buf.getvalue())
    meta.checkpoint_sha256 = sha256_file(out / "model.pt")
    meta.edgefair_version = __version__
    atomic_write_json(out / "model.json", meta.to_dict())
    return out


def read_meta(run: Path) -> RunMeta:
    """Read and validate ``model.json`` of a run directory."""
    path = Path(run) / "model.json"
    if not path.exists():
        raise CheckpointError(f"{path}: missing (is '{run}' a run directory written by bench train?)")
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    try:
        return RunMeta(**raw)
    except TypeError as e:
        raise CheckpointError(f"{path}: unexpected or missing field ({e})") from None


def load_run(run: Path) -> tuple[nn.Module, RunMeta]:
    """Rebuild the model of a run in eval mode; a mismatch with model.json is a CheckpointError."""
    run = Path(run)
    meta = read_meta(run)
    pt = run / "model.pt"
    if not pt.exists():
        raise CheckpointError(f"{pt}: missing")
    if meta.checkpoint_sha256 and sha256_file(pt) != meta.checkpoint_sha256:
        raise CheckpointError(f"{pt}: sha256 differs from model.json's checkpoint_sha256 (file replaced or corrupted)")
    try:
        state = torch.load(pt, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise CheckpointError(f"{pt}: cannot be loaded as a state dict ({error_text(e)})") from None
    model = build_model(meta.arch, num_classes=meta.num_classes, in_channels=meta.prep.channels, **meta.arch_kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise CheckpointError(f"{pt}: does not match arch '{meta.arch}' in model.json ({first})") from None
    model.eval()
    return model, meta
