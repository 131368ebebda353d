"""bench sweep --seeds K: a population per matrix cell, plain and distilled side by side, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgefair.bench.store import Store
from edgefair.contracts.manifest import read_manifest

SEEDED = """
dataset = "synthfer:n=600:seed=2"
archs = ["cnn"]
epochs = 2
targets = ["onnx-fp32"]
sparsities = [0.0, 0.5]
finetune_epochs = 1
mitigations = ["none", "kd"]
calib = 64
min_runs = 20
min_seconds = 0.05
min_n = 5
attributes = ["skin_tone"]
"""
NAMES = {"onnx-fp32-s0", "onnx-fp32-s0.5", "onnx-fp32-s0.5-kd"}


def _population(db: Path) -> dict:
    with Store(db, readonly=True) as store:
        stage = store.get_stage("population:cnn")
    assert stage is not None and stage["status"] == "done"
    return stage["detail"]


def _trained(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("runs/*/model.pt"))


def _accuracy(folder: Path, predictions: Path, labels: np.ndarray) -> float:
    with np.load(predictions / f"{read_manifest(folder).artifact_id}.npz") as z:
        return float(np.mean(z["pred"] == labels))


def test_seeds_population_kd_side_by_side_and_resume(bench, tmp_path):
    cfg, out = tmp_path / "sweep.toml", tmp_path / "sweep"
    cfg.write_text(SEEDED)
    first = bench("sweep", "--config", cfg, "--out", out, "--seeds", "2", "--json")
    assert first.returncode == 0, first.stderr[-2000:]
    detail = _population(out / "results.db")
    assert detail["seeds"] == [0, 1] and list(detail["attributes"]) == ["skin_tone"]
    rows = {r["name"]: r for r in detail["attributes"]["skin_tone"]}
    assert set(rows) == NAMES

    # One fixed test set, two different models.
    runs = [Path(p) for p in detail["runs"]]
    tests = [np.load(r / "test_predictions.npz") for r in runs]
    assert list(tests[0]["ids"]) == list(tests[1]["ids"]) and not np.array_equal(tests[0]["pred"], tests[1]["pred"])
    labels = tests[0]["labels"]

    # Each seed's accuracy in the table is that seed's artefact scored on the host predictions.
    folders = {0: out / "artifacts" / "cnn", 1: out / "population" / "cnn" / "artifacts" / "seed1"}
    for name in ("onnx-fp32-s0.5", "onnx-fp32-s0.5-kd"):
        want = [_accuracy(folders[k] / name, out / "population" / "cnn" / "predictions", labels) for k in (0, 1)]
        assert rows[name]["accuracy"]["values"] == want and rows[name]["seeds"] == [0, 1]
        assert rows[name]["accuracy"]["lo"] <= rows[name]["accuracy"]["mean"] <= rows[name]["accuracy"]["hi"]
    assert rows["onnx-fp32-s0.5-kd"]["mitigation"] == "kd" and rows["onnx-fp32-s0.5"]["mitigation"] == "none"

    # The reference against itself: no change, no CEV, no CIE.
    ref = rows["onnx-fp32-s0"]
    assert ref["accuracy_change"]["values"] == [0.0, 0.0] and ref["cev"]["values"] == [0.0, 0.0]
    assert ref["cie"]["n"] == 0 and ref["cie"]["n_reference_models"] == 2
    shares = [g["share_of_test"] for g in rows["onnx-fp32-s0.5"]["cie"]["groups"]]
    assert abs(sum(shares) - 1) < 1e-9

    page = (out / "report" / "report.html").read_text()
    assert 'id="populations"' in page and 'id="distillation"' in page
    assert "onnx-fp32-s0.5 vs onnx-fp32-s0.5-kd" in page
    md = (out / "report" / "report.md").read_text()
    assert "## Populations over seeds" in md and "CIEs by skin_tone group, per artefact" in md
    assert md.index("| onnx-fp32-s0 |") < md.index("| onnx-fp32-s0.5 |") < md.index("| onnx-fp32-s0.5-kd |")

    # Resumed: nothing trained again, the same figures.
    trained = _trained(out)
    again = bench("sweep", "--config", cfg, "--out", out, "--seeds", "2", "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    assert _trained(out) == trained and len(trained) == 2
    assert _population(out / "results.db")["attributes"] == detail["attributes"]
    stages = json.loads(again.stdout)["stages"]
    assert {"stage": "population", "arch": "cnn", "seeds": [0, 1], "cells": 3} in stages


def test_seeds_must_be_a_positive_integer(bench, tmp_path):
    r = bench("sweep", "--seeds", "0", "--out", tmp_path / "o")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == "bench sweep: error: --seeds: seeds: must be an integer >= 1, got 0"
