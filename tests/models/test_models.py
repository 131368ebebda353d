"""Architectures, checkpoints and training on small generated data."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from edgefair.data.preprocess import Preprocessing, labels_of, samples_to_nchw
from edgefair.data.synthfer import SynthConfig, generate_dataset
from edgefair.models.architectures import ARCHITECTURES, build_model, count_parameters
from edgefair.models.checkpoint import CheckpointError, RunMeta, load_run, save_run
from edgefair.models.training import TrainConfig, accuracy, distillation_loss, fit


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_architectures_run_and_export_to_onnx(arch, tmp_path):
    model = build_model(arch, num_classes=7, in_channels=1).eval()
    x = torch.randn(2, 1, 48, 48)
    assert model(x).shape == (2, 7)
    path = tmp_path / f"{arch}.onnx"
    torch.onnx.export(model, (x[:1],), str(path), input_names=["input"], output_names=["logits"], dynamo=False)
    graph = onnx.load(str(path)).graph
    ops = {n.op_type for n in graph.node}
    assert "Conv" in ops and "Gemm" in ops or "MatMul" in ops


def test_compact_cnn_is_small():
    total, nonzero = count_parameters(build_model("cnn", num_classes=7, in_channels=1))
    assert 20_000 < total < 150_000 and nonzero <= total


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown architecture 'vgg'"):
        build_model("vgg", num_classes=7, in_channels=1)


def test_distillation_loss_matches_definition():
    torch.manual_seed(0)
    s, t = torch.randn(4, 7), torch.randn(4, 7)
    y = torch.tensor([0, 1, 2, 3])
    T = 4.0
    ps, pt = torch.softmax(s / T, 1), torch.softmax(t / T, 1)
    kl = (pt * (pt.log() - ps.log())).sum(1).mean()
    expected = 0.1 * torch.nn.functional.cross_entropy(s, y) + 0.9 * kl * T * T
    assert torch.allclose(distillation_loss(s, t, y, temperature=T, alpha=0.9), expected, atol=1e-6)


@pytest.fixture(scope="module")
def tiny_data():
    ds = generate_dataset(SynthConfig(n=700, seed=2))
    prep = Preprocessing()
    tr, va = ds.splits["train"], ds.splits["val"]
    return (samples_to_nchw(tr, prep), labels_of(tr)), (samples_to_nchw(va, prep), labels_of(va))


def test_training_beats_chance_and_keeps_best_validation(tiny_data):
    train, val = tiny_data
    model = build_model("cnn", num_classes=7, in_channels=1)
    hist = fit(model, train, val, TrainConfig(epochs=4, seed=0))
    assert hist["best_epoch"] >= 1
    assert accuracy(model, *val) == pytest.approx(hist["best_val_accuracy"])
    assert hist["best_val_accuracy"] > 1 / 7 + 0.05
    assert hist["epochs"][-1]["loss"] < hist["epochs"][0]["loss"]


def test_distilled_student_trains(tiny_data):
    train, val = tiny_data
    teacher = build_model("cnn", num_classes=7, in_channels=1)
    fit(teacher, train, val, TrainConfig(epochs=2))
    student = build_model("cnn", num_classes=7, in_channels=1, widths=(8, 16, 32))
    hist = fit(student, train, val, TrainConfig(epochs=2), teacher=teacher)
    assert np.isfinite(hist["epochs"][-1]["loss"])


def _meta() -> RunMeta:
    return RunMeta(arch="cnn", num_classes=7, class_names=list("abcdefg"), preprocessing=Preprocessing().to_dict())


def test_checkpoint_round_trip(tmp_path):
    model = build_model("cnn", num_classes=7, in_channels=1).eval()
    save_run(tmp_path / "run", model, _meta())
    loaded, meta = load_run(tmp_path / "run")
    x = torch.randn(1, 1, 48, 48)
    assert torch.equal(model(x), loaded(x))
    assert meta.checkpoint_sha256 and meta.arch == "cnn"


def test_checkpoint_that_does_not_match_model_json(tmp_path):
    run = tmp_path / "run"
    save_run(run, build_model("cnn", num_classes=7, in_channels=1), _meta())
    raw = json.loads((run / "model.json").read_text())
    raw["arch"] = "mobilenetv2"
    (run / "model.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="does not match arch 'mobilenetv2'"):
        load_run(run)


def test_replaced_checkpoint_is_detected(tmp_path):
    run = tmp_path / "run"
    save_run(run, build_model("cnn", num_classes=7, in_channels=1), _meta())
    torch.save(build_model("cnn", num_classes=7, in_channels=1).state_dict(), run / "model.pt")
    with pytest.raises(CheckpointError, match="sha256 differs"):
        load_run(run)


def test_missing_run_and_pickled_object_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="model.json: missing"):
        load_run(tmp_path / "nope")
    run = tmp_path / "run"
    save_run(run, build_model("cnn", num_classes=7, in_channels=1), _meta())
    # a full pickled module is not a state dict: weights_only=True refuses it
    torch.save(build_model("cnn", num_classes=7, in_channels=1), run / "model.pt")
    raw = json.loads((run / "model.json").read_text())
    raw["checkpoint_sha256"] = ""
    (run / "model.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="cannot be loaded as a state dict"):
        load_run(run)
