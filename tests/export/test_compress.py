"""Compression axes of bench export: weight clustering, distillation, structured weight share, accuracy gates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgefair.export import clustering
from edgefair.export.cache import ExportSettings
from edgefair.export.matrix import export_matrix
from edgefair.export.parity import compare
from edgefair.export.pruning import Distill, dense_weight_count, finetune, prune_structured, removed_share
from edgefair.models.training import distillation_loss


def _tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(32, 5))


def _data(n: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 1, 12, 12)).astype(np.float32), rng.integers(0, 5, n).astype(np.int64)


def _distinct_nonzero(w: torch.Tensor) -> int:
    return int(torch.unique(w[w != 0]).numel())


# -- units ----------------------------------------------------------------------------------
def test_kd_loss_matches_a_hand_computation():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(6, 7, generator=g), torch.randn(6, 7, generator=g)
    y = torch.randint(0, 7, (6,), generator=g)
    alpha, temp = 0.9, 4.0
    p_t = F.softmax(t / temp, 1)
    kl = (p_t * (p_t.log() - F.log_softmax(s / temp, 1))).sum(1).mean()  # KL(teacher_T || student_T)
    ce = -F.log_softmax(s, 1)[torch.arange(6), y].mean()
    want = (1 - alpha) * ce + alpha * kl * temp ** 2
    got = distillation_loss(s, t, y, temperature=temp, alpha=alpha)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(distillation_loss(s, t, y, temperature=temp, alpha=0.0), ce, atol=1e-6)


def test_kmeans_uses_linear_init_and_centroid_gradients_sum_over_members():
    vals = np.concatenate([np.full(5, -1.0), np.full(3, 0.5), np.full(2, 2.0)]).astype(np.float32)
    init = clustering.linear_init(vals, 3)
    assert init.ravel().tolist() == [-1.0, 0.5, 2.0]
    cents, labels = clustering.kmeans_1d(vals, 3, seed=0)
    assert sorted(cents.tolist()) == [-1.0, 0.5, 2.0] and len(set(labels.tolist())) == 3
    lin = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 1.0, 2.0, 0.0], [2.0, 1.0, 2.0, 1.0], [0.0, 2.0, 2.0, 1.0]]))
    info = clustering.cluster_model(nn.Sequential(lin), 2)
    assert info.tensors == 1 and info.weights == 10
    x = torch.randn(5, 4)
    lin(x).sum().backward()
    p = lin.parametrizations.weight[0]
    grad_w = x.sum(0).expand(3, 4)  # d(sum of outputs)/dW[i, j] = sum over the batch of x[:, j]
    for c in range(p.centroids.numel()):
        members = (p.assign == c) & p.mask
        assert torch.allclose(p.centroids.grad[c], grad_w[members].sum(), atol=1e-5)


def test_clustered_finetune_keeps_zeros_and_k_values():
    model = _tiny()
    with torch.no_grad():  # prune half of the conv kernel
        conv = model[0].weight
        conv.view(-1)[::2] = 0
    zeros_before = model[0].weight == 0
    info = clustering.cluster_model(model, 4)
    assert info.folded_batchnorm == 1 and isinstance(model[1], nn.Identity)
    finetune(model, _data(), 2, seed=0)
    assert clustering.bake(model) <= 4
    conv = model[0].weight.detach()
    assert bool((conv[zeros_before] == 0).all()), "pruned weights must stay zero through the clustered fine-tune"
    for m in (model[0], model[5]):
        assert _distinct_nonzero(m.weight.detach()) <= 4
        assert not hasattr(m, "parametrizations")


def test_cluster_keeper_holds_clusters_through_qat_steps():
    model = _tiny()
    clustering.cluster_model(model, 4)
    clustering.bake(model)
    with torch.no_grad():
        model[0].weight.view(-1)[:5] = 0
    keep = clustering.cluster_keeper(model, 4)
    zeros = model[0].weight == 0
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # what an optimiser step does
    keep()
    for m in (model[0], model[5]):
        assert _distinct_nonzero(m.weight.detach()) <= 4
    assert bool((model[0].weight[zeros] == 0).all())


def test_kd_finetune_uses_the_teacher():
    data = _data()
    teacher = _tiny(seed=3).eval()
    plain = finetune(_tiny(), data, 1, seed=0)
    kd = finetune(_tiny(), data, 1, seed=0, distill=Distill(teacher=teacher, alpha=0.9, temperature=4.0))
    ce_only = finetune(_tiny(), data, 1, seed=0, distill=Distill(teacher=teacher, alpha=0.0, temperature=4.0))
    assert kd["epochs"][0]["loss"] != pytest.approx(plain["epochs"][0]["loss"], rel=1e-3)
    assert ce_only["epochs"][0]["loss"] == pytest.approx(plain["epochs"][0]["loss"], rel=1e-4)


def test_structured_level_is_the_share_of_weights_removed(export_run):
    from edgefair.models.checkpoint import load_run

    dense, _ = load_run(export_run)
    example = torch.zeros(1, 1, 48, 48)
    model, info = prune_structured(dense, 0.9, _data(8), epochs=0, example=example)
    assert 0.89 <= info.weight_share <= 0.91, info
    assert 0.5 < info.channel_ratio < 0.85  # about 1 - sqrt(0.1) for a conv stack, well below 0.9
    assert info.weight_share == pytest.approx(removed_share(model, dense_weight_count(dense)), abs=1e-6)


def test_accuracy_gate_of_fp16_and_int8():
    y = np.arange(200) % 6  # classes 0..5 of 7
    ref = np.eye(7, dtype=np.float32)[y] * 5  # a reference that is always right
    collapsed = np.zeros_like(ref)
    collapsed[:, 6] = 1  # an int8 model that predicts one class (never the label)
    p = compare(collapsed, ref, y, reference="r", runtime="x", gate=0.99, kind="accuracy", num_classes=7)
    assert p.passed is False and "accuracy" in p.reason
    assert compare(ref, ref, y, reference="r", runtime="x", gate=0.99, kind="accuracy", num_classes=7).passed is True
    chance = compare(collapsed, collapsed, y, reference="r", runtime="x", gate=0.99, kind="accuracy", num_classes=7)
    assert chance.passed is None and "chance" in chance.reason  # no gate: the reference itself is at chance
    none = compare(ref, ref, y[:0], reference="r", runtime="x", gate=0.99, kind="accuracy", num_classes=7)
    assert none.passed is None and "no labelled" in none.reason


def test_cache_keys_and_names_include_clustering_and_kd():
    base = ExportSettings(checkpoint_sha256="a" * 64, dataset_fingerprint="f", pruning="unstructured",
                          finetune_epochs=2, calib=8, qat=False, engine="x86", seed=0)
    c16 = ExportSettings(**{**base.__dict__, "clustering": 16})
    kd = ExportSettings(**{**base.__dict__, "mitigation": "kd"})
    layer = ExportSettings(**{**base.__dict__, "prune_scope": "layer"})
    for t in ("onnx-fp32", "tflite-int8"):
        assert len({s.conversion_key(t, 0.5) for s in (base, c16, kd, layer)}) == 4
        assert c16.conversion_key(t, 0) != base.conversion_key(t, 0)  # clustering fine-tunes s0 too
    assert kd.conversion_key("onnx-fp32", 0) == base.conversion_key("onnx-fp32", 0)  # nothing tuned: same file
    assert len({s.level_key(0.5) for s in (base, c16, kd, layer)}) == 4
    assert c16.name("onnx-fp32", 0.5) == "onnx-fp32-s0.5-c16"
    assert kd.name("onnx-int8", 0.5) == "onnx-int8-s0.5-kd" and kd.name("onnx-int8", 0) == "onnx-int8-s0"


@pytest.mark.parametrize("args, flag", [(["--clustering", "1"], "--clustering"), (["--kd-alpha", "2"], "--kd-alpha"),
                                        (["--mitigation", "ewc"], "--mitigation")])
def test_bad_compression_flags_are_one_line_usage_errors(args, flag, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgefair", "export", "--model", str(tmp_path), "--target",
                           "onnx-fp32", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and flag in lines[0] and ("range" in lines[0] or "allowed" in lines[0]), proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_file_finds_unclustered_kernels(matrix):
    _, out, _, _ = matrix
    check = clustering.check_file(out / "onnx-fp32-s0" / "model.onnx", "onnx", 16)
    assert check.tensors >= 3 and not check.ok and check.max_distinct > 16


# -- one export: prune 0.5 + cluster 8 + kd, ONNX fp32/int8 and TFLite fp32 ----------------
@pytest.fixture(scope="module")
def clustered(tmp_path_factory, export_run):
    out = tmp_path_factory.mktemp("clustered")
    rep = export_matrix(export_run, targets=["onnx-fp32", "onnx-int8", "tflite-fp32"], sparsities=[0.5], out=out,
                        clustering=8, mitigation="kd", finetune_epochs=1, calib=64)
    return rep, out


@pytest.mark.slow
def test_clustered_files_hold_at_most_k_values(clustered):
    from edgefair.export.sparsity import weight_arrays

    rep, out = clustered
    assert rep.ok, [(r.name, r.reason) for r in rep.failed]
    assert {r.name for r in rep.results} == {"onnx-fp32-s0.5-c8-kd", "onnx-int8-s0.5-c8-kd", "tflite-fp32-s0.5-c8-kd"}
    for name, fmt in (("onnx-fp32-s0.5-c8-kd", "onnx"), ("tflite-fp32-s0.5-c8-kd", "tflite")):
        m = json.loads((out / name / "manifest.json").read_text())
        kernels = [a for a in weight_arrays(out / name / m["model_file"], fmt) if a.dtype.kind == "f" and a.ndim >= 2
                   and a.size > 8]
        assert len(kernels) >= 4, name
        assert max(int(np.unique(a[a != 0]).size) for a in kernels) <= 8, name
        assert m["export"]["clustering_check"]["ok"] and m["export"]["clustering_check"]["max_distinct"] <= 8
        assert abs(m["sparsity"]["measured"] - 0.5) < 0.02, name  # zeros stayed zero through clustering
        assert m["compression"]["clustering"]["k"] == 8 and m["compression"]["clustering"]["tensors"] >= 4
        assert m["compression"]["mitigation"] == {"method": "kd", "alpha": 0.9, "temperature": 4.0}
        assert m["parity"]["passed"] is True and m["parity"]["gate_kind"] == "agreement"
    int8 = json.loads((out / "onnx-int8-s0.5-c8-kd" / "manifest.json").read_text())
    assert int8["parity"]["gate_kind"] == "accuracy" and int8["parity"]["passed"] in (True, False, None)
    assert (int8["parity"]["passed"] is None) == ("no accuracy gate" in int8["parity"]["reason"])
    assert int8["export"]["pruning"]["mitigation"]["method"] == "kd"


@pytest.mark.slow
def test_a_file_that_breaks_the_cluster_count_fails(export_run, tmp_path, monkeypatch):
    real_bake = clustering.bake

    def noisy_bake(model: nn.Module) -> int:
        k = real_bake(model)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.add_(torch.randn_like(m.weight) * 1e-3 * (m.weight != 0))
        return k

    monkeypatch.setattr(clustering, "bake", noisy_bake)
    rep = export_matrix(export_run, targets=["onnx-fp32"], sparsities=[0], out=tmp_path, clustering=16,
                        finetune_epochs=0)
    assert [r.status for r in rep.results] == ["failed"]
    assert "more than K=16 distinct nonzero values" in rep.results[0].reason
    assert not (Path(tmp_path) / "onnx-fp32-s0-c16").exists()
