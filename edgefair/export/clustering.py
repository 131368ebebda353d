"""Weight clustering (Stoychev & Gunes; TF-MOT's ``cluster_weights``): K shared values per kernel.

Each Conv/Linear kernel is clustered into K centroids with scikit-learn's ``KMeans``, started
from TF-MOT's LINEAR initialisation (K centroids evenly spaced between the tensor's min and
max, ``n_init=1``). Only the nonzero entries are clustered, so pruned zeros stay zero. During
fine-tuning a parametrization (:class:`SharedWeights`) maps a learnable centroid vector and a
fixed integer assignment to the weight: ``weight = centroids[assign]`` (0 where pruned), so
the gradient of a centroid is the sum of its members' gradients. :func:`bake` removes the
parametrizations and leaves plain weights with at most K distinct nonzero values.

Batch norm is folded into the preceding convolution first (:func:`fold_batchnorm`): the
exporters fold it anyway, and folding scales every output channel, which would turn K shared
values into up to K per channel in the file. Folding before clustering keeps "at most K
distinct values per tensor" true of the exported file, which :func:`check_file` verifies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from edgefair.export.errors import ExportError

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass
class ClusterInfo:
    """What clustering did, for the manifest."""

    k: int
    tensors: int                 # kernels clustered
    weights: int                 # nonzero weights clustered
    folded_batchnorm: int        # BN layers folded into their convolution first
    init: str = "linear"
    tool: str = "scikit-learn KMeans (linear init, n_init=1), shared-centroid fine-tune"
    max_distinct: int = 0        # largest count of distinct nonzero values in a kernel after baking

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SharedWeights(nn.Module):
    """Parametrization: weight = centroids[assign] where ``mask`` (nonzero at clustering time), else 0."""

    def __init__(self, centroids: torch.Tensor, assign: torch.Tensor, mask: torch.Tensor) -> None:
        super().__init__()
        self.centroids = nn.Parameter(centroids)
        self.register_buffer("assign", assign)
        self.register_buffer("mask", mask)

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        assign: torch.Tensor = self.assign  # type: ignore[assignment]
        mask: torch.Tensor = self.mask  # type: ignore[assignment]
        shared = self.centroids[assign]
        return torch.where(mask, shared, torch.zeros((), dtype=shared.dtype))


def linear_init(values: np.ndarray, k: int) -> np.ndarray:
    """TF-MOT's LINEAR centroid initialisation: ``k`` values evenly spaced over [min, max]."""
    return np.linspace(float(values.min()), float(values.max()), k).reshape(-1, 1)


def kmeans_1d(values: np.ndarray, k: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(centroids float32 (k',), labels (n,)) of scikit-learn KMeans; k' = min(k, distinct values)."""
    from sklearn.cluster import KMeans

    x = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    k = min(int(k), int(np.unique(x).size))
    if k <= 1:
        return np.array([float(x.mean())], np.float32), np.zeros(len(x), np.int64)
    km = KMeans(n_clusters=k, init=linear_init(x, k), n_init=1, random_state=seed).fit(x)
    return km.cluster_centers_.ravel().astype(np.float32), km.labels_.astype(np.int64)


def _cluster_tensor(module: nn.Module, k: int, seed: int) -> int:
    w = module.weight.detach()  # type: ignore[operator]
    mask = w != 0
    nz = w[mask].cpu().numpy()
    if nz.size == 0:
        return 0
    centroids, labels = kmeans_1d(nz, k, seed=seed)
    assign = torch.zeros(w.shape, dtype=torch.long)
    assign[mask] = torch.from_numpy(labels)
    parametrize.register_parametrization(module, "weight", SharedWeights(torch.from_numpy(centroids), assign, mask))
    return int(nz.size)


def cluster_model(model: nn.Module, k: int, *, seed: int = 0) -> ClusterInfo:
    """Fold BN, then give every Conv/Linear kernel K shared values (parametrized, in place)."""
    if k < 2:
        raise ExportError(f"--clustering: {k} is outside the allowed range: an integer K >= 2")
    folded = fold_batchnorm(model)
    tensors = weights = 0
    for m in model.modules():
        if isinstance(m, PRUNABLE) and not parametrize.is_parametrized(m, "weight"):
            n = _cluster_tensor(m, k, seed)
            tensors += n > 0
            weights += n
    if not tensors:
        raise ExportError("the model has no Conv/Linear kernel to cluster")
    return ClusterInfo(k=int(k), tensors=tensors, weights=weights, folded_batchnorm=folded)


def bake(model: nn.Module) -> int:
    """Remove the clustering parametrizations, keeping the shared values; the largest distinct count."""
    worst = 0
    for m in model.modules():
        if isinstance(m, PRUNABLE) and parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
            w = m.weight.detach()
            worst = max(worst, int(torch.unique(w[w != 0]).numel()))
    return worst


def cluster_keeper(model: nn.Module, k: int):
    """after_step hook (QAT on a clustered model): every kernel back to one value per cluster.

    Clusters are read off the kernels as they are (at most K distinct nonzero values); after
    each optimiser step each member takes its cluster's mean and zeros stay zero.
    """
    groups = []
    for p in model.parameters():
        if p.dim() < 2:
            continue
        values, inverse = torch.unique(p.detach(), return_inverse=True)
        if values.numel() <= k + 1:
            zero = (values == 0).nonzero().flatten()
            groups.append((p, inverse, values.numel(), int(zero[0]) if zero.numel() else -1))

    def after_step() -> None:
        with torch.no_grad():
            for p, inverse, n, zero in groups:
                sums = torch.zeros(n, dtype=p.dtype).index_add_(0, inverse.flatten(), p.flatten())
                counts = torch.bincount(inverse.flatten(), minlength=n).to(p.dtype)
                means = sums / counts
                if zero >= 0:
                    means[zero] = 0
                p.copy_(means[inverse])

    return after_step


# -- batch-norm folding ----------------------------------------------------------------
def _conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) module names where the BN reads only that convolution's output (torch.fx trace)."""
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception:  # untraceable forward: consecutive children of Sequential containers
        return _sequential_pairs(model)
    modules = dict(model.named_modules())
    pairs = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(str(node.target)), _BN):
            continue
        src = node.args[0] if node.args else None
        if (isinstance(src, torch.fx.Node) and src.op == "call_module" and len(src.users) == 1
                and isinstance(modules.get(str(src.target)), (nn.Conv1d, nn.Conv2d, nn.Conv3d))):
            pairs.append((str(src.target), str(node.target)))
    return pairs


def _sequential_pairs(model: nn.Module) -> list[tuple[str, str]]:
    pairs = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Sequential):
            kids = list(m.named_children())
            for (a, ma), (b, mb) in zip(kids, kids[1:], strict=False):
                if isinstance(ma, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and isinstance(mb, _BN):
                    prefix = f"{name}." if name else ""
                    pairs.append((prefix + a, prefix + b))
    return pairs


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BN that follows a convolution into it (eval statistics); the BN becomes Identity."""
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    modules = dict(model.named_modules())
    pairs = _conv_bn_pairs(model)
    for conv_name, bn_name in pairs:
        conv, bn = modules[conv_name], modules[bn_name]
        w, b = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps,
                                    bn.weight, bn.bias)
        conv.weight, conv.bias = w, b
        _set_module(model, bn_name, nn.Identity())
    return len(pairs)


# -- verification of an exported file ---------------------------------------------------
@dataclass
class ClusterCheck:
    """Distinct nonzero values per float kernel of an exported file."""

    k: int
    tensors: int
    max_distinct: int
    violations: list[int]        # the distinct counts above k

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "tensors": self.tensors, "max_distinct": self.max_distinct, "ok": self.ok}


def check_file(path: Path, fmt: str, k: int) -> ClusterCheck:
    """Read the file's float kernels back (ONNX initializers, TFLite buffers, TorchScript state) and count."""
    from edgefair.export.sparsity import weight_arrays

    counts = []
    for a in weight_arrays(path, fmt):
        if a.dtype.kind == "f" and a.ndim >= 2 and a.size > k:
            counts.append(int(np.unique(a[a != 0]).size))
    return ClusterCheck(k=k, tensors=len(counts), max_distinct=max(counts, default=0),
                        violations=[c for c in counts if c > k])
