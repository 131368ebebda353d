"""An artefact means the same thing wherever it is read from (issue 9).

Through the real CLI: ``bench run --eval`` and ``bench fairness`` from two working
directories, and after the artefact folder moved, give identical predictions and audits;
the test split is the one the model was trained on, never a default picked from where the
command runs; ids do not depend on how ``--model`` was spelled.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgefair.contracts.manifest import read_manifest
from tests.bench.conftest import parse_json
from tests.conftest import TINY_DATASET

FAST = ("--min-runs", "5", "--min-seconds", "0", "--max-seconds", "2")
ONLY = ("--only", "onnx-fp32-s0", "--only", "torch-fp32-s0", "--only", "tflite-int8-s0.5")


def _predictions(db: Path) -> dict[str, list[int]]:
    """Artefact name -> stored predictions in sample-id order."""
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT a.name, r.result_json FROM runs r JOIN artifacts a USING (artifact_id)").fetchall()
    out = {}
    for name, doc in rows:
        ev = json.loads(doc)["eval"]
        out[name] = [p for _, p in sorted(zip(ev["ids"], ev["pred"], strict=True))]
    return out


def _eval_and_audit(bench, artifacts: Path, db: Path, cwd: Path) -> tuple[dict, dict, dict]:
    run = parse_json(bench("run", "--artifacts", artifacts, "--eval", "--db", db, "--json", *FAST, *ONLY, cwd=cwd,
                           check=True))
    fair = parse_json(bench("fairness", "--artifacts", artifacts, "--db", db, "--plots", db.parent / "plots", "--json",
                            cwd=cwd, check=True))
    return run, fair, _predictions(db)


def test_same_predictions_and_audits_from_any_directory_and_after_a_move(bench, tiny_artifacts, tmp_path):
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    run_a, fair_a, pred_a = _eval_and_audit(bench, tiny_artifacts, a_dir / "r.db", cwd=tiny_artifacts.parent)
    run_b, fair_b, pred_b = _eval_and_audit(bench, tiny_artifacts, b_dir / "r.db", cwd=Path("/"))
    moved = tmp_path / "elsewhere" / "artefacts"
    shutil.copytree(tiny_artifacts, moved, ignore=shutil.ignore_patterns("export.log"))
    run_c, fair_c, pred_c = _eval_and_audit(bench, moved, tmp_path / "c.db", cwd=tmp_path / "elsewhere")

    assert set(pred_a) == {p.parent.name for p in tiny_artifacts.glob("*/manifest.json")}  # fairness evaluates the rest
    assert pred_a == pred_b == pred_c
    acc = [{r["name"]: (r["artifact_id"], r["accuracy"]) for r in run["artifacts"]} for run in (run_a, run_b, run_c)]
    assert acc[0] == acc[1] == acc[2]
    assert fair_a["audits"] == fair_b["audits"] == fair_c["audits"]
    assert fair_a["dataset"] == fair_b["dataset"] == fair_c["dataset"]


def test_evaluation_uses_the_training_split_not_a_default(bench, tiny_artifacts, tmp_path):
    from edgefair.data.registry import canonical_spec, load_dataset

    db = tmp_path / "r.db"
    _eval_and_audit(bench, tiny_artifacts, db, cwd=tmp_path)
    n_test = len(load_dataset(TINY_DATASET).split("test"))
    assert {len(p) for p in _predictions(db).values()} == {n_test}
    m = read_manifest(tiny_artifacts / "onnx-fp32-s0")
    assert m.source.dataset is not None and m.source.dataset.spec == canonical_spec(TINY_DATASET)
    assert m.source.dataset.fingerprint and m.source.dataset.counts["test"] == n_test


def test_an_artefact_without_a_dataset_is_a_one_line_error(bench, tiny_artifacts, tmp_path):
    from edgefair.contracts.manifest import write_manifest

    art = tmp_path / "arts" / "onnx-fp32-s0"
    shutil.copytree(tiny_artifacts / "onnx-fp32-s0", art)
    m = read_manifest(art)
    write_manifest(art, replace(m, source=replace(m.source, dataset=None)))
    proc = bench("run", "--artifacts", art.parent, "--eval", "--db", tmp_path / "r.db", *FAST, "--json")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False
    assert doc["error"] == ("error: artefact onnx-fp32-s0 names no dataset in its manifest (imported without a "
                            "run?): pass --dataset SPEC to say what to evaluate it on")
    assert proc.stderr.strip().splitlines()[-1] == f"bench run: {doc['error']}"
    ok = bench("run", "--artifacts", art.parent, "--eval", "--dataset", TINY_DATASET, "--db", tmp_path / "r.db",
               *FAST, "--json", check=True)
    assert parse_json(ok)["artifacts"][0]["accuracy"] is not None


def test_a_run_trained_with_another_seed_is_evaluated_on_its_own_split(bench, tmp_path):
    """Training loads the data with the run's seed; evaluation must too (it used to load seed 0)."""
    run = tmp_path / "run"
    bench("train", "--dataset", "synthfer:n=240", "--seed", "3", "--epochs", "1", "--out", run, check=True)
    bench("export", "--model", run, "--target", "onnx-fp32", "--out", tmp_path / "arts", "--parity-n", "16",
          check=True)
    db = tmp_path / "r.db"
    bench("run", "--artifacts", tmp_path / "arts", "--eval", "--db", db, *FAST, check=True)
    meta = json.loads((run / "model.json").read_text())
    preds = _predictions(db)["onnx-fp32-s0"]
    assert meta["dataset"]["seed"] == 3
    assert len(preds) == meta["dataset"]["counts"]["test"]
    with sqlite3.connect(db) as c:
        ids = json.loads(c.execute("SELECT result_json FROM runs").fetchone()[0])["eval"]["ids"]
    test = np.load(run / "test_predictions.npz")
    assert sorted(ids) == sorted(str(i) for i in test["ids"])  # the same test samples as training's own summary


def test_absolute_and_relative_model_paths_give_the_same_id_and_reuse_results(bench, tiny_run, tmp_path):
    exp_rel = parse_json(bench("export", "--model", tiny_run.name, "--target", "onnx-fp32", "--out", tmp_path / "rel",
                               "--parity-n", "16", "--json", cwd=tiny_run.parent, check=True))
    exp_abs = parse_json(bench("export", "--model", tiny_run.resolve(), "--target", "onnx-fp32", "--out",
                               tmp_path / "abs", "--parity-n", "32", "--json", cwd="/", check=True))
    id_rel, id_abs = exp_rel["results"][0]["artifact_id"], exp_abs["results"][0]["artifact_id"]
    assert id_rel == id_abs
    db = tmp_path / "r.db"
    first = parse_json(bench("run", "--artifacts", tmp_path / "rel", "--db", db, "--json", *FAST, check=True))
    again = parse_json(bench("run", "--artifacts", tmp_path / "abs", "--db", db, "--json", *FAST, check=True))
    assert first["artifacts"][0]["status"] == "measured"
    assert again["artifacts"][0]["status"] == "cached"  # stored results are reused
    assert again["artifacts"][0]["artifact_id"] == id_rel

