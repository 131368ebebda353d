"""``bench data`` and ``bench train`` through the real CLI."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from tests.bench.conftest import parse_json


def test_train_json_writes_run_and_per_group_accuracy(bench, tmp_path):
    out = tmp_path / "run"
    proc = bench("train", "--dataset", "synthfer:n=480", "--epochs", "2", "--out", out, "--json", check=True)
    doc = parse_json(proc)
    assert (out / "model.pt").exists() and (out / "model.json").exists()
    meta = json.loads((out / "model.json").read_text())
    assert meta["arch"] == "cnn" and meta["preprocessing"]["size"] == 48
    assert meta["dataset"]["fingerprint"] and meta["metrics"]["best_epoch"] >= 1
    groups = doc["test"]["groups"]
    assert set(groups) == {"gender", "skin_tone", "age"}
    assert sum(g["n"] for g in groups["skin_tone"].values()) == doc["test"]["n"]
    assert 0.0 <= doc["test"]["accuracy"] <= 1.0


def test_train_prints_table_without_json(bench, tmp_path):
    proc = bench("train", "--dataset", "synthfer:n=240", "--epochs", "1", "--out", tmp_path / "r", check=True)
    assert proc.stdout == ""
    assert "test accuracy" in proc.stderr and "skin_tone" in proc.stderr


def test_train_with_teacher(bench, tmp_path):
    bench("train", "--dataset", "synthfer:n=240", "--epochs", "1", "--out", tmp_path / "t", check=True)
    proc = bench("train", "--dataset", "synthfer:n=240", "--epochs", "1", "--out", tmp_path / "s",
                 "--teacher", tmp_path / "t", "--json", check=True)
    meta = json.loads((tmp_path / "s" / "model.json").read_text())
    assert meta["teacher"]["temperature"] == 4.0 and meta["teacher"]["alpha"] == 0.9
    assert parse_json(proc)["run"].endswith("s")


def test_bad_dataset_is_one_line_and_nonzero(bench, tmp_path):
    proc = bench("train", "--dataset", f"fer2013:{tmp_path}/nope.csv", "--out", tmp_path / "r")
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if "error" in ln]
    assert lines == [f"bench train: error: {tmp_path}/nope.csv: no such file or directory"]


def test_missing_teacher_is_a_clear_error(bench, tmp_path):
    proc = bench("train", "--dataset", "synthfer:n=240", "--teacher", tmp_path / "none", "--out", tmp_path / "r")
    assert proc.returncode == 1
    assert "model.json: missing" in proc.stderr


def test_data_synthfer_writes_folder_format_that_loads_back(bench, tmp_path):
    out = tmp_path / "sf"
    doc = parse_json(bench("data", "synthfer", "--n", "120", "--out", out, "--json", check=True))
    assert (out / "labels.csv").exists()
    proc = bench("data", "preview", "--dataset", f"folder:{out}", "--out", tmp_path / "p.png", "--json", check=True)
    info = parse_json(proc)
    assert info["groups"] == ["dark", "light", "medium"] or set(info["groups"]) <= {"dark", "light", "medium"}
    img = np.asarray(Image.open(tmp_path / "p.png").convert("L"), dtype=float)
    assert img.std() > 10  # a real picture, not a blank page
    assert sum(doc["counts"].values()) == 120


def test_python_dash_m_and_help(bench):
    proc = bench("--help", check=True)
    for cmd in ("train", "data"):
        assert cmd in proc.stdout
