"""Magnitude pruning before export: unstructured (torch.ao.pruning) or structured (torch-pruning).

Unstructured: a :class:`MagnitudeSparsifier` (torch.ao.pruning's ``WeightNormSparsifier``
with L1 norm and 1×1 blocks, extended to convolution kernels) prunes the Conv/Linear
weights to the requested level on a cubic schedule (``CubicSL``, Zhu & Gupta 2017) that
reaches the target after 60 % of the fine-tune steps, so the last 40 % recover accuracy at
full sparsity; the masks are then squashed into the weights (permanent zeros). Without
fine-tuning it is one-shot magnitude pruning.

The magnitude threshold is global (one ranking over all kernels, the semantics of
``torch.nn.utils.prune.global_unstructured``) rather than the same level in every tensor:
on a small FER CNN, uniform 90 % leaves the first convolution one tap per filter and
collapses the model (measured on synthfer, cnn 94 k params, 1 fine-tune epoch: 0.19
validation accuracy per layer vs 0.77 global, dense 0.82). The overall fraction of zero
weights equals the requested level exactly either way; ``scope="layer"`` gives the uniform
variant.

Structured: torch-pruning's ``MetaPruner`` with L1 magnitude importance removes one fraction
of output channels of every Conv/Linear layer except the classifier, then the network is
fine-tuned; it really is smaller (fewer parameters and FLOPs). The requested level is the
share of Conv/Linear kernel WEIGHTS removed (comparable with unstructured): the channel ratio
that achieves it is found by bisection (a ratio r removes about 1 - (1 - r)² of a conv stack's
weights, so 0.9 of the weights is a ratio near 0.69, not 0.9).

Every fine-tune can distil from the uncompressed model (:class:`Distill`, Simon Says' KD
mitigation), through ``fit(teacher=...)``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from edgefair.export.errors import ExportError
from edgefair.models.training import TrainConfig, fit

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
FINETUNE_LR = 1e-3
SCHEDULE_END = 0.6  # fraction of fine-tune steps after which the target sparsity is reached


@dataclass
class PruneInfo:
    """How a model was pruned, for the manifest."""

    method: str                 # none | unstructured | structured
    requested: float
    finetune_epochs: int
    tool: str = ""
    schedule: str = ""
    torch_zero_fraction: float = 0.0    # zeros / weights in the PyTorch model's Conv/Linear kernels
    params_before: int = 0
    params_after: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    scope: str | None = None            # unstructured: global | layer
    channel_ratio: float | None = None  # structured: the channel ratio that removes ``requested`` of the weights
    layer_ratio: dict[str, float] | None = None  # structured: the one layer given its own ratio, if any
    weight_share: float | None = None   # share of the Conv/Linear kernel weights removed or zero
    mitigation: dict[str, Any] | None = None  # {"method": "kd", "alpha", "temperature"} when distilled
    clustering: dict[str, Any] | None = None  # ClusterInfo.to_dict() when clustered

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "requested": self.requested, "finetune_epochs": self.finetune_epochs,
                "tool": self.tool, "schedule": self.schedule, "torch_zero_fraction": self.torch_zero_fraction,
                "params_before": self.params_before, "params_after": self.params_after, "scope": self.scope,
                "channel_ratio": self.channel_ratio, "layer_ratio": self.layer_ratio,
                "weight_share": self.weight_share,
                "mitigation": self.mitigation, "clustering": self.clustering}


@dataclass(frozen=True)
class Distill:
    """Knowledge distillation of a fine-tune: (1 - alpha)·CE + alpha·KL·T² against ``teacher``."""

    teacher: nn.Module
    alpha: float = 0.9
    temperature: float = 4.0

    def to_dict(self) -> dict[str, Any]:
        return {"method": "kd", "alpha": self.alpha, "temperature": self.temperature}


def prunable_weights(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, PRUNABLE)]


def dense_weight_count(model: nn.Module) -> int:
    """Elements of all Conv/Linear kernels (what measured sparsity is relative to)."""
    return sum(int(m.weight.numel()) for _, m in prunable_weights(model))  # type: ignore[operator,misc]


def weight_zero_fraction(model: nn.Module) -> float:
    tot = zeros = 0
    for _, m in prunable_weights(model):
        w = m.weight.detach()  # type: ignore[operator]
        tot += w.numel()
        zeros += int((w == 0).sum())
    return zeros / tot if tot else 0.0


def param_count(model: nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    nonzero = sum(int((p != 0).sum()) for p in model.parameters())
    return total, nonzero


def _sparsifier_class():
    from torch.ao.pruning import WeightNormSparsifier

    class MagnitudeSparsifier(WeightNormSparsifier):
        """WeightNormSparsifier (L1, 1×1 blocks) that also takes 3-D/4-D kernels.

        The stock class computes masks over the last two dimensions only (Linear weights);
        a kernel is viewed as (out_channels, fan_in) so the mask is unstructured over the
        whole tensor, as for a Linear layer.
        """

        def __init__(self, sparsity_level: float, scope: str = "layer"):
            super().__init__(sparsity_level=sparsity_level, sparse_block_shape=(1, 1), zeros_per_block=1, norm=1)
            self.scope = scope

        def step(self, use_path: bool = True) -> None:
            """``layer``: every tensor at the level (stock behaviour); ``global``: one threshold for all."""
            if self.scope != "global":
                return super().step(use_path)
            if not self.enable_mask_update:
                return
            with torch.no_grad():
                level = float(self.groups[0]["sparsity_level"])
                mags = [self.norm_fn(getattr(g["module"], g["tensor_name"])).flatten() for g in self.groups]
                flat = torch.cat(mags)
                keep = torch.ones_like(flat, dtype=torch.bool)
                k = int(round(level * flat.numel()))
                if k > 0:
                    keep[torch.topk(flat, k, largest=False).indices] = False
                start = 0
                for g, m in zip(self.groups, mags, strict=True):
                    mask = getattr(g["module"].parametrizations, g["tensor_name"])[0].mask
                    mask.data = keep[start:start + m.numel()].reshape(mask.shape).to(mask.dtype)
                    start += m.numel()

        def update_mask(  # type: ignore[override]
                self, module, tensor_name, sparsity_level, sparse_block_shape, zeros_per_block, **kwargs):
            weight = getattr(module, tensor_name)
            if weight.dim() == 2:
                return super().update_mask(module, tensor_name, sparsity_level, sparse_block_shape, zeros_per_block,
                                           **kwargs)
            mask = getattr(module.parametrizations, tensor_name)[0].mask
            if sparsity_level <= 0:
                mask.data = torch.ones_like(mask)
                return
            ww = self.norm_fn(weight).reshape(weight.shape[0], -1)
            m2 = self._make_tensor_mask(data=ww, input_shape=ww.shape, sparsity_level=sparsity_level,
                                        sparse_block_shape=sparse_block_shape)
            mask.data = m2.reshape(mask.shape).to(mask.dtype)

    return MagnitudeSparsifier


def finetune(model: nn.Module, train: tuple[np.ndarray, np.ndarray], epochs: int, *, seed: int,
             after_step=None, progress=None, lr: float = FINETUNE_LR, distill: Distill | None = None) -> dict:
    """A short fine-tune on the training split (no validation-based selection: val stays held out);
    with ``distill``, the loss distils from its teacher (``fit(teacher=...)``)."""
    cfg = TrainConfig(epochs=epochs, lr=lr, seed=seed)
    if distill is not None:
        cfg.kd_alpha, cfg.kd_temperature = float(distill.alpha), float(distill.temperature)
    return fit(model, train, None, cfg, keep_best=False, after_step=after_step,
               teacher=distill.teacher if distill is not None else None,
               progress=(lambda e, n, rec: progress(e, n)) if progress else None)


def prune_unstructured(model: nn.Module, sparsity: float, train: tuple[np.ndarray, np.ndarray], *,
                       epochs: int, seed: int = 0, progress=None, scope: str = "global",
                       lr: float = FINETUNE_LR, distill: Distill | None = None) -> tuple[nn.Module, PruneInfo]:
    """Magnitude-prune Conv/Linear weights to ``sparsity`` overall (``scope``: global | layer); fine-tune; squash."""
    from torch.ao.pruning.scheduler.cubic_scheduler import CubicSL

    model = copy.deepcopy(model)
    before = param_count(model)[0]
    layers = prunable_weights(model)
    if not layers:
        raise ExportError("the model has no Conv/Linear layer to prune")
    sparsifier = _sparsifier_class()(sparsity, scope)
    sparsifier.prepare(model, config=[{"tensor_fqn": f"{name}.weight"} for name, _ in layers])
    steps = epochs * ((len(train[1]) + 63) // 64)
    history: dict = {}
    if steps > 0:
        t_end = max(1, int(SCHEDULE_END * steps))
        scheduler = CubicSL(sparsifier, init_sl=0.0, init_t=0, delta_t=1, total_t=t_end, initially_zero=False)

        def after_step() -> None:
            sparsifier.step()
            scheduler.step()

        history = finetune(model, train, epochs, seed=seed, after_step=after_step, progress=progress, lr=lr,
                           distill=distill)
        schedule = f"cubic (CubicSL) 0 -> {sparsity:g} over {t_end} of {steps} fine-tune steps"
    else:
        schedule = "one-shot (no fine-tune)"
    for g in sparsifier.groups:  # the masks must end exactly at the target
        g["sparsity_level"] = sparsity
    sparsifier.step()
    sparsifier.squash_mask()
    model.eval()
    info = PruneInfo(method="unstructured", requested=sparsity, finetune_epochs=epochs,
                     tool=f"torch.ao.pruning WeightNormSparsifier (L1 magnitude, {scope} threshold, 1x1 blocks)",
                     schedule=schedule, torch_zero_fraction=weight_zero_fraction(model),
                     params_before=before, params_after=param_count(model)[0],
                     history=history.get("epochs", []) if history else [], scope=scope,
                     weight_share=weight_zero_fraction(model),
                     mitigation=distill.to_dict() if distill is not None and steps > 0 else None)
    return model, info


def _classifiers(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    out_features = model(example).shape[-1]
    return [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == out_features]


def _channel_prune(model: nn.Module, ratio: float, example: torch.Tensor,
                   layer_ratio: tuple[str, float] | None = None) -> nn.Module:
    """A copy of ``model`` with ``ratio`` of every layer's output channels removed (classifier kept);
    ``layer_ratio`` (name, ratio): another ratio for that one layer."""
    import torch_pruning as tp

    model = copy.deepcopy(model).eval()
    if ratio <= 0 and layer_ratio is None:
        return model
    per_layer = {model.get_submodule(layer_ratio[0]): layer_ratio[1]} if layer_ratio else None
    try:
        pruner = tp.pruner.MetaPruner(model, example, importance=tp.importance.MagnitudeImportance(p=1),
                                      pruning_ratio=ratio, pruning_ratio_dict=per_layer,
                                      ignored_layers=_classifiers(model, example), global_pruning=False)
        pruner.step()
    except Exception as e:  # torch-pruning raises many types on graphs it cannot trace
        first = str(e).splitlines()[0] if str(e) else ""
        raise ExportError(f"torch-pruning cannot prune this model structurally ({type(e).__name__}: {first})") from None
    return model


def removed_share(model: nn.Module, dense_weights: int) -> float:
    """Share of the dense model's Conv/Linear kernel weights that are gone (removed channels) or zero."""
    kept = sum(int(torch.count_nonzero(m.weight)) for _, m in prunable_weights(model))  # type: ignore[arg-type,misc]
    return 1.0 - kept / dense_weights if dense_weights else 0.0


@dataclass
class RatioSearch:
    """The channel ratio found for a requested share of weights removed."""

    ratio: float
    share: float
    model: nn.Module
    layer: str | None = None          # one layer given its own ratio to close the last channel step
    layer_ratio: float | None = None


def _bisect(target: float, lo: float, hi: float, trial, tol: float, steps: int) -> tuple[RatioSearch, float]:
    """Bisection of ``trial(x) -> RatioSearch`` (share grows with x); (closest, largest x below target)."""
    best: RatioSearch | None = None
    below = lo
    for _ in range(steps):
        mid = (lo + hi) / 2
        r = trial(mid)
        if best is None or abs(r.share - target) < abs(best.share - target):
            best = r
        if abs(r.share - target) <= tol:
            break
        if r.share < target:
            lo = below = mid
        else:
            hi = mid
    assert best is not None
    return best, below


def channel_ratio_for(model: nn.Module, share: float, example: torch.Tensor, *, tol: float = 0.005,
                      steps: int = 12) -> RatioSearch:
    """Bisection for the channel ratio whose pruned copy has ``share`` of the weights removed.

    The removed share grows with the ratio in steps (channel counts are integers); when one
    ratio for all layers cannot come within ``tol``, the layer with the most weights gets its
    own ratio (a second bisection) to close the gap.
    """
    dense = dense_weight_count(model)

    def uniform(x: float) -> RatioSearch:
        pruned = _channel_prune(model, x, example)
        return RatioSearch(x, removed_share(pruned, dense), pruned)

    best, below = _bisect(share, 0.0, 0.999, uniform, tol, steps)
    if abs(best.share - share) <= tol:
        return best
    fixed = set(map(id, _classifiers(model, example)))
    name = max(((n, m) for n, m in prunable_weights(model) if id(m) not in fixed),
               key=lambda nm: nm[1].weight.numel())[0]  # type: ignore[operator]

    def one_layer(x: float) -> RatioSearch:
        pruned = _channel_prune(model, below, example, (name, x))
        return RatioSearch(below, removed_share(pruned, dense), pruned, name, x)

    refined, _ = _bisect(share, below, 0.999, one_layer, tol, steps)
    return refined if abs(refined.share - share) < abs(best.share - share) else best


def prune_structured(model: nn.Module, sparsity: float, train: tuple[np.ndarray, np.ndarray], *,
                     epochs: int, example: torch.Tensor, seed: int = 0, progress=None,
                     distill: Distill | None = None) -> tuple[nn.Module, PruneInfo]:
    """Remove channels (torch-pruning) until ``sparsity`` of the Conv/Linear weights are gone; fine-tune."""
    before = param_count(model)[0]
    found = channel_ratio_for(model, sparsity, example)
    model = found.model
    history: dict = {}
    if epochs > 0:
        history = finetune(model, train, epochs, seed=seed, progress=progress, distill=distill)
    model.eval()
    info = PruneInfo(method="structured", requested=sparsity, finetune_epochs=epochs,
                     tool="torch-pruning MetaPruner (L1 magnitude importance, one channel ratio for every layer, "
                          "classifier kept; the ratio found by bisection on the share of weights removed)",
                     schedule="one-shot channel removal, then fine-tune" if epochs else "one-shot (no fine-tune)",
                     torch_zero_fraction=weight_zero_fraction(model),
                     params_before=before, params_after=param_count(model)[0],
                     history=history.get("epochs", []) if history else [], channel_ratio=round(found.ratio, 6),
                     weight_share=round(found.share, 6),
                     layer_ratio={found.layer: round(found.layer_ratio, 6)} if found.layer and found.layer_ratio
                     is not None else None,
                     mitigation=distill.to_dict() if distill is not None and epochs > 0 else None)
    return model, info


def prepare_level(model: nn.Module, sparsity: float, method: str, train, *, epochs: int, example: torch.Tensor,
                  seed: int = 0, progress=None, scope: str = "global",
                  distill: Distill | None = None) -> tuple[nn.Module, PruneInfo]:
    """The PyTorch model of one sparsity level (a copy; ``model`` is left untouched)."""
    if sparsity <= 0:
        m = copy.deepcopy(model).eval()
        total = param_count(m)[0]
        return m, PruneInfo(method="none", requested=0.0, finetune_epochs=0, tool="", schedule="",
                            torch_zero_fraction=weight_zero_fraction(m), params_before=total, params_after=total)
    if method == "unstructured":
        return prune_unstructured(model, sparsity, train, epochs=epochs, seed=seed, progress=progress, scope=scope,
                                  distill=distill)
    if method == "structured":
        return prune_structured(model, sparsity, train, epochs=epochs, example=example, seed=seed, progress=progress,
                                distill=distill)
    raise ExportError(f"unknown pruning method '{method}': expected unstructured or structured")


def cluster_level(model: nn.Module, k: int, train, *, epochs: int, seed: int = 0, progress=None,
                  distill: Distill | None = None) -> dict[str, Any]:
    """Cluster ``model`` in place (K shared values per kernel, zeros kept), fine-tune the centroids, bake."""
    from edgefair.export import clustering

    info = clustering.cluster_model(model, k, seed=seed)
    history = finetune(model, train, epochs, seed=seed, progress=progress, distill=distill) if epochs > 0 else {}
    info.max_distinct = clustering.bake(model)
    model.eval()
    return {**info.to_dict(), "finetune_epochs": epochs,
            "history": history.get("epochs", []) if history else []}
