"""One sparsity level of an export: the pruned + fine-tuned PyTorch model (the parity
reference of every artefact at that level), its QAT twin, and the ONNX files the ONNX and
TFLite targets are made from."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefair.contracts.targets import TARGETS, format_sparsity
from edgefair.export.cache import ExportSettings, LevelCache
from edgefair.export.data import ExportData
from edgefair.export.logs import ExportLog


@dataclass
class TFLiteJob:
    """One onnx2tf conversion of a level's ONNX file, for some of the TFLite targets."""

    targets: list[str]
    future: Future | None
    error: str | None
    qat: bool


@dataclass
class Level:
    sparsity: float
    model: Any  # the pruned + fine-tuned PyTorch model
    info: Any  # PruneInfo
    ref_logits: np.ndarray
    cached: bool = False  # the level model came from the level cache
    qat_model: Any = None  # QAT GraphModule (fake-quant) when --qat
    qat_float: Any = None  # its float view (QAT weights, fake-quant off)
    qat_ref_logits: np.ndarray | None = None
    onnx_path: Path | None = None
    qat_onnx_path: Path | None = None
    tflite_jobs: list[TFLiteJob] = field(default_factory=list)

    @property
    def tag(self) -> str:
        return f"s{format_sparsity(self.sparsity)}"

    def uses_qat(self, target: str) -> bool:
        return TARGETS[target].is_int8 and self.qat_model is not None

    def reference_logits(self, target: str) -> np.ndarray:
        logits = self.qat_ref_logits if self.uses_qat(target) else self.ref_logits
        assert logits is not None
        return logits


def _example(meta: Any) -> Any:
    import torch

    prep = meta.prep
    return torch.zeros(1, prep.channels, prep.size, prep.size)


def distill_of(dense: Any, settings: ExportSettings) -> Any:
    """The fine-tunes' distillation from the uncompressed model under ``--mitigation kd`` (else None)."""
    from edgefair.export.pruning import Distill

    if settings.mitigation != "kd":
        return None
    return Distill(teacher=dense, alpha=settings.kd_alpha, temperature=settings.kd_temperature)


def _tune_level(dense: Any, meta: Any, sparsity: float, settings: ExportSettings, data: ExportData, tag: str,
                log: ExportLog) -> tuple[Any, Any]:
    """Prune + fine-tune, then cluster + fine-tune the centroids (each distilled under kd)."""
    from edgefair.export import pruning

    distill = distill_of(dense, settings)
    with log.quiet(f"{tag}: prune", fds=False):
        model, info = pruning.prepare_level(
            dense, sparsity, settings.pruning, data.train, epochs=settings.finetune_epochs,
            example=_example(meta), seed=settings.seed, scope=settings.prune_scope, distill=distill,
            progress=lambda e, n: log.write(f"{tag}: fine-tune epoch {e}/{n}"))
    if settings.clustering:
        with log.quiet(f"{tag}: cluster", fds=False):
            info.clustering = pruning.cluster_level(
                model, settings.clustering, data.train, epochs=settings.finetune_epochs, seed=settings.seed,
                distill=distill, progress=lambda e, n: log.write(f"{tag}: clustered fine-tune epoch {e}/{n}"))
        log.write(f"{tag}: clustered: {info.clustering['tensors']} kernels into <= {settings.clustering} values "
                  f"(largest distinct count {info.clustering['max_distinct']}, "
                  f"{info.clustering['folded_batchnorm']} batch norms folded)")
    if distill is not None and settings.level_tuned(sparsity):
        info.mitigation = distill.to_dict()
    return model, info


def prune_level(dense: Any, meta: Any, sparsity: float, settings: ExportSettings, data: ExportData,
                cache: LevelCache, log: ExportLog) -> Level:
    """The level's PyTorch model, from the level cache when this exact fine-tune already ran."""
    from edgefair.export import pruning
    from edgefair.models.training import predict_logits

    tag = f"s{format_sparsity(sparsity)}"
    key = settings.level_key(sparsity)
    tuned = settings.level_tuned(sparsity)
    hit = cache.load(key, dense) if tuned else None
    if hit is not None:
        model, info = hit[0], pruning.PruneInfo(**hit[1])
        log.write(f"{tag}: level model from the cache ({info.schedule})")
    else:
        model, info = _tune_level(dense, meta, sparsity, settings, data, tag, log)
        if tuned:
            cache.save(key, model, info.to_dict())
    log.write(f"{tag}: pruned ({info.schedule}); torch zero fraction {info.torch_zero_fraction:.4f}, "
              f"params {info.params_after}/{info.params_before}")
    return Level(sparsity, model, info, predict_logits(model, data.val_nchw), cached=hit is not None)


def add_qat(level: Level, meta: Any, settings: ExportSettings, data: ExportData, log: ExportLog, *,
            dense: Any = None) -> None:
    """Quantisation-aware fine-tune of the level model (torch.ao fake-quant), for the int8 targets;
    distilled from ``dense`` under ``--mitigation kd``."""
    from edgefair.export import pruning, torch_quant
    from edgefair.models.training import predict_logits

    with log.quiet(f"{level.tag}: QAT", fds=False):
        qm, twin = torch_quant.prepare_qat(level.model, _example(meta), engine=settings.engine)
        keep = torch_quant.sparsity_keeper(qm)
        if settings.clustering:  # cluster-preserving QAT: each kernel keeps one value per cluster
            from edgefair.export.clustering import cluster_keeper

            keep = cluster_keeper(qm, settings.clustering)
        pruning.finetune(qm, data.train, settings.finetune_epochs, seed=settings.seed, after_step=keep,
                         distill=distill_of(dense, settings))
        qm.eval()
        level.qat_model = qm
        level.qat_float = twin.eval()  # shares the QAT-trained weights and BN statistics
        level.qat_ref_logits = predict_logits(level.qat_float, data.val_nchw)


def export_float_onnx(level: Level, meta: Any, work: Path, log: ExportLog) -> None:
    """The level's float ONNX file: the source of every ONNX and TFLite target."""
    from edgefair.export import onnx_export

    folder = work / level.tag
    folder.mkdir(parents=True, exist_ok=True)
    with log.quiet(f"{level.tag}: torch.onnx.export"):
        level.onnx_path = onnx_export.export_onnx(level.model, folder / "model.onnx", channels=meta.prep.channels,
                                                  size=meta.prep.size)


def export_qat_onnx(level: Level, meta: Any, work: Path, log: ExportLog) -> None:
    """The ONNX file of the QAT float twin (the int8 ONNX and TFLite targets under --qat)."""
    from edgefair.export import onnx_export

    folder = work / level.tag / "qat"
    folder.mkdir(parents=True, exist_ok=True)
    with log.quiet(f"{level.tag}: torch.onnx.export (QAT weights)"):
        level.qat_onnx_path = onnx_export.export_onnx(level.qat_float, folder / "model.onnx",
                                                      channels=meta.prep.channels, size=meta.prep.size)
