"""Content-hash keys: the same export inputs never convert or fine-tune twice.

Three keys, each covering exactly what changes its output:

- the **conversion key** of an artefact: source checkpoint, dataset fingerprint, target,
  sparsity level, pruning method and scope, clustering K, fine-tune settings and
  distillation (kd, alpha, T) when something was fine-tuned,
  calibration size (calibrated targets only), QAT, quantised engine (torch-int8 only), the
  source of every module that shapes the file (``export``, ``models``, ``data``,
  ``contracts``) and the converter versions. Stored as ``export.cache_key``;
- the **parity key**: parity sample size and the agent's code. A cached artefact whose
  parity key differs is re-checked without converting again;
- the **level key** of a pruned and/or clustered, fine-tuned PyTorch model: checkpoint,
  dataset, level, method, prune scope, clustering K, distillation (alpha, T), fine-tune
  epochs and seed, and the code. Level models are kept in
  ``<out>/.cache/levels/<key>/`` so a new ``--calib`` or an added target does not
  fine-tune again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from edgefair.contracts.errors import ManifestError
from edgefair.contracts.jsonio import atomic_write_json
from edgefair.contracts.manifest import Manifest, read_manifest
from edgefair.contracts.targets import TARGETS, artefact_name
from edgefair.export.files import tool_versions
from edgefair.files import sha256_file

EXPORT_VERSION = "2"
PACKAGE = Path(__file__).resolve().parents[1]
# Subpackages whose code changes what an export writes.
CODE_DIRS = ("export", "models", "data", "contracts")
AGENT = PACKAGE / "runtimes" / "agent.py"
LEVELS = Path(".cache") / "levels"


def _hash_files(paths: list[Path]) -> str:
    h = hashlib.sha256(EXPORT_VERSION.encode())
    for p in paths:
        h.update(str(p.relative_to(PACKAGE)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


@lru_cache(maxsize=1)
def code_version() -> str:
    """EXPORT_VERSION plus a hash of every module that shapes an exported file."""
    files = sorted(p for d in CODE_DIRS for p in (PACKAGE / d).glob("*.py"))
    return f"{EXPORT_VERSION}+{_hash_files(files)}"


@lru_cache(maxsize=1)
def agent_version() -> str:
    """Hash of the device agent (parity runs through its code)."""
    return _hash_files([AGENT])


def _key(doc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ExportSettings:
    """The settings of one export call that can change an artefact."""

    checkpoint_sha256: str
    dataset_fingerprint: str | None
    pruning: str
    finetune_epochs: int
    calib: int
    qat: bool
    engine: str
    seed: int
    clustering: int | None = None
    mitigation: str = "none"
    kd_alpha: float = 0.9
    kd_temperature: float = 4.0
    prune_scope: str = "global"

    def level_tuned(self, sparsity: float) -> bool:
        """The level's PyTorch model is fine-tuned (pruned or clustered)."""
        return sparsity > 0 or bool(self.clustering)

    def uses_finetune(self, target: str, sparsity: float) -> bool:
        return self.level_tuned(sparsity) or (self.qat and TARGETS[target].is_int8)

    def uses_kd(self, target: str, sparsity: float) -> bool:
        """Distillation applies only where something is fine-tuned."""
        return self.mitigation == "kd" and self.uses_finetune(target, sparsity)

    def name(self, target: str, sparsity: float) -> str:
        """The artefact's folder name: ``onnx-fp32-s0.5``, ``-c16`` when clustered, ``-kd`` when distilled."""
        return artefact_name(target, sparsity, clustering=self.clustering, kd=self.uses_kd(target, sparsity))

    def _tuning(self, kd: bool, sparsity: float) -> dict[str, Any]:
        return {"clustering": self.clustering or None,
                "mitigation": {"method": "kd", "alpha": self.kd_alpha, "temperature": self.kd_temperature} if kd
                else None,
                "prune_scope": self.prune_scope if sparsity > 0 and self.pruning == "unstructured" else None}

    def conversion_key(self, target: str, sparsity: float) -> str:
        t = TARGETS[target]
        tuned = self.uses_finetune(target, sparsity)
        return _key({
            "checkpoint_sha256": self.checkpoint_sha256, "dataset": self.dataset_fingerprint, "target": target,
            "sparsity": round(float(sparsity), 6), "pruning": self.pruning if sparsity > 0 else "none",
            "finetune_epochs": self.finetune_epochs if tuned else 0, "seed": self.seed if tuned else None,
            "calib": self.calib if t.calibrated else 0, "qat": self.qat and t.is_int8,
            "engine": self.engine if target == "torch-int8" else None, "code": code_version(),
            **self._tuning(self.uses_kd(target, sparsity), sparsity),
            "tools": {k: v for k, v in tool_versions().items() if k != "edgefair"}})

    def level_key(self, sparsity: float) -> str:
        return _key({"checkpoint_sha256": self.checkpoint_sha256, "dataset": self.dataset_fingerprint,
                     "sparsity": round(float(sparsity), 6), "pruning": self.pruning,
                     "finetune_epochs": self.finetune_epochs, "seed": self.seed, "code": code_version(),
                     **self._tuning(self.mitigation == "kd", sparsity),
                     "torch": tool_versions().get("torch"), "torch-pruning": tool_versions().get("torch-pruning"),
                     "scikit-learn": tool_versions().get("scikit-learn") if self.clustering else None})


def parity_key(parity_n: int) -> str:
    return _key({"parity_n": int(parity_n), "agent": agent_version()})


def cached_manifest(folder: Path, key: str) -> Manifest | None:
    """The folder's manifest when it was built with ``key`` and its model file is intact."""
    try:
        m = read_manifest(folder)
    except ManifestError:
        return None
    if m.export.get("cache_key") != key:
        return None
    model = Path(folder) / m.model_file
    try:
        return m if model.is_file() and sha256_file(model) == m.file.sha256 else None
    except OSError:
        return None


# ------------------------------------------------------------------ level models
_SHAPE_ATTRS = ("in_channels", "out_channels", "groups", "in_features", "out_features", "num_features")


class LevelCache:
    """Pruned + fine-tuned PyTorch models of one output folder, by level key.

    A model is stored as its state dict (loaded with ``weights_only=True``) plus the
    layer sizes structured pruning changed, so it is rebuilt from the dense architecture.
    """

    def __init__(self, out: Path) -> None:
        self.root = Path(out) / LEVELS

    def _dir(self, key: str) -> Path:
        return self.root / key[:24]

    def load(self, key: str, dense_model: Any) -> tuple[Any, dict[str, Any]] | None:
        """(model, prune info dict) for ``key``, rebuilt on a copy of ``dense_model``; None on a miss."""
        import copy

        import torch

        folder = self._dir(key)
        try:
            meta = json.loads((folder / "level.json").read_text())
            state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
        except (OSError, ValueError, RuntimeError):
            return None
        if meta.get("key") != key:
            return None
        model = copy.deepcopy(dense_model)
        for name in meta.get("identity", []):  # batch norms folded into their convolution (clustering)
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, leaf, torch.nn.Identity())
        _resize(model, meta["shapes"], state)
        model.load_state_dict(state)
        return model.eval(), meta["info"]

    def save(self, key: str, model: Any, info: dict[str, Any]) -> None:
        """Store a level model (a failure to cache is not a failure to export)."""
        import torch

        folder = self._dir(key)
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
            torch.save(model.state_dict(), tmp / "model.pt")
            shapes = {name: {a: getattr(m, a) for a in _SHAPE_ATTRS if isinstance(getattr(m, a, None), int)}
                      for name, m in model.named_modules()}
            identity = [name for name, m in model.named_modules() if name and isinstance(m, torch.nn.Identity)]
            atomic_write_json(tmp / "level.json", {"key": key, "info": info, "shapes": shapes, "identity": identity})
            shutil.rmtree(folder, ignore_errors=True)
            tmp.rename(folder)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)


def _resize(model: Any, shapes: dict[str, dict[str, int]], state: dict[str, Any]) -> None:
    """Give ``model`` the layer sizes and tensor shapes of a (structurally pruned) state dict."""
    import torch

    modules = dict(model.named_modules())
    for name, attrs in shapes.items():
        for attr, value in attrs.items():
            if name in modules:
                setattr(modules[name], attr, value)
    for full, tensor in state.items():
        owner, _, leaf = full.rpartition(".")
        module = modules[owner]
        if leaf in module._parameters:  # a None slot: a bias that batch-norm folding added
            current = module._parameters[leaf]
            if current is None or current.shape != tensor.shape:
                module._parameters[leaf] = torch.nn.Parameter(torch.empty_like(tensor))
        elif leaf in module._buffers and module._buffers[leaf] is not None:
            if module._buffers[leaf].shape != tensor.shape:
                module._buffers[leaf] = torch.empty_like(tensor)
