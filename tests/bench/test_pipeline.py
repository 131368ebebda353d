"""run → fairness → report → gate through the real CLI on real exported artefacts."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.bench.conftest import parse_json
from tests.conftest import TINY_SPARSITIES, TINY_TARGETS

FAST = ("--min-runs", "20", "--min-seconds", "0.05")


@pytest.fixture(scope="module")
def measured(tiny_artifacts, tmp_path_factory, request):
    """Every tiny artefact measured on local with --eval, into a fresh database."""
    import os
    import subprocess
    import sys

    db = tmp_path_factory.mktemp("db") / "results.db"
    proc = subprocess.run([sys.executable, "-m", "edgefair", "run", "--device", "local", "--artifacts",
                           str(tiny_artifacts), "--eval", "--db", str(db), "--json", *FAST], capture_output=True,
                          text=True, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    return db, json.loads(proc.stdout)


def test_run_measures_every_artifact_with_accuracy(measured):
    db, doc = measured
    names = {r["name"] for r in doc["artifacts"]}
    assert names == {f"{t}-s{s:g}" for t in TINY_TARGETS for s in TINY_SPARSITIES}
    for r in doc["artifacts"]:
        assert r["status"] == "measured", r
        assert 0 < r["p50_ms"] <= r["p90_ms"]
        assert r["peak_rss_mb"] > 1
        assert 0.0 <= r["accuracy"] <= 1.0
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT COUNT(*) FROM runs WHERE status='ok'").fetchone()[0] == len(names)
        samples = c.execute("SELECT samples_path FROM runs").fetchall()
    import numpy as np

    assert all(len(np.load(p)) >= 20 for (p,) in samples)


def test_second_run_is_served_from_the_database(measured, bench, tiny_artifacts):
    db, first = measured
    doc = parse_json(bench("run", "--artifacts", tiny_artifacts, "--eval", "--db", db, "--json", *FAST, check=True))
    assert {r["status"] for r in doc["artifacts"]} == {"cached"}
    assert {r["name"]: r["p50_ms"] for r in doc["artifacts"]} == {r["name"]: r["p50_ms"] for r in first["artifacts"]}


def test_fp32_artifacts_agree_on_accuracy_with_torch(measured):
    _, doc = measured
    acc = {r["name"]: r["accuracy"] for r in doc["artifacts"]}
    assert acc["onnx-fp32-s0"] == pytest.approx(acc["torch-fp32-s0"], abs=0.011)
    assert acc["tflite-fp32-s0"] == pytest.approx(acc["torch-fp32-s0"], abs=0.011)


def test_fairness_uses_stored_predictions_and_writes_audits(measured, bench, tiny_artifacts, tmp_path):
    db, _ = measured
    proc = bench("fairness", "--artifacts", tiny_artifacts, "--db", db, "--plots", tmp_path / "plots",
                 "--min-n", "5", "--json", check=True)
    doc = parse_json(proc)
    assert doc["reference"] == "torch-fp32-s0"
    summaries = {s["name"]: s for s in doc["summaries"]}
    assert summaries["torch-fp32-s0"]["is_reference"] and summaries["torch-fp32-s0"]["verdict"] == "reference"
    verdicts = {"pass", "gap-widened", "accuracy-drop", "insufficient-evidence"}
    assert {s["verdict"] for n, s in summaries.items() if n != "torch-fp32-s0"} <= verdicts
    for s in summaries.values():  # two statements: what compression changed, then how the models stand
        assert s["statements"][0].startswith("reference: " if s["is_reference"] else "compression effect: ")
        assert len(s["statements"]) >= 3 and s["ci_label"] == "95% CI"
    audit = doc["audits"]["tflite-int8-s0.5"]
    assert audit["reference"]["error_shift"] is not None
    assert {a["name"] for a in audit["attributes"]} == {"gender", "skin_tone", "age"}
    assert (tmp_path / "plots" / "group-accuracy-skin_tone.png").stat().st_size > 1000
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT COUNT(*) FROM audits").fetchone()[0] == len(summaries)
        # no host evaluation was needed: every eval came from bench run --eval
        assert c.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == len(summaries)


def test_fairness_without_eval_runs_evaluates_on_host(bench, tiny_artifacts, tmp_path):
    db = tmp_path / "fresh.db"
    proc = bench("fairness", "--artifacts", tiny_artifacts, "--db", db, "--attributes", "skin_tone",
                 "--reference", "onnx-fp32-s0", "--min-n", "5", "--plots", tmp_path / "p", "--json", check=True)
    doc = parse_json(proc)
    assert doc["reference"] == "onnx-fp32-s0" and doc["attributes"] == ["skin_tone"]
    with sqlite3.connect(db) as c:
        modes = {json.loads(s)["mode"] for (s,) in c.execute("SELECT settings_json FROM runs")}
    assert modes == {"eval"}


def test_fairness_bad_inputs(bench, tiny_artifacts, tmp_path):
    proc = bench("fairness", "--artifacts", tiny_artifacts, "--db", tmp_path / "x.db", "--reference", "nope")
    assert proc.returncode == 1 and "reference artefact 'nope' not found" in proc.stderr
    proc = bench("fairness", "--artifacts", tiny_artifacts, "--db", tmp_path / "x.db", "--attributes", "height")
    assert proc.returncode == 1 and "has no attribute height" in proc.stderr
    proc = bench("run", "--artifacts", tmp_path / "none", "--db", tmp_path / "x.db")
    assert proc.returncode == 1 and "artefact folder not found" in proc.stderr


def test_report_and_gate(measured, bench, tiny_artifacts, tmp_path):
    db, _ = measured
    bench("fairness", "--artifacts", tiny_artifacts, "--db", db, "--min-n", "5", "--plots", tmp_path / "p", check=True)
    info = parse_json(bench("report", "--db", db, "--out", tmp_path / "report", "--json", check=True))
    html = (tmp_path / "report" / "report.html").read_text()
    assert "tflite-int8-s0.5" in html and "data:image/png;base64" in html
    assert info["rows"] == 2 * len(TINY_TARGETS)
    # the gate passes a database against itself ...
    ok = bench("gate", "--baseline", db, "--current", db, "--json")
    assert ok.returncode == 0, ok.stderr
    # ... and fails when an artefact got slower (p90 doubled in a copy of the database)
    slow = tmp_path / "slow.db"
    import shutil

    shutil.copy(db, slow)
    with sqlite3.connect(slow) as c:
        c.execute("UPDATE runs SET p90_s = p90_s * 2 WHERE artifact_id IN "
                  "(SELECT artifact_id FROM artifacts WHERE name='onnx-fp32-s0')")
    bad = bench("gate", "--baseline", db, "--current", slow)
    assert bad.returncode == 1
    assert "onnx-fp32-s0" in bad.stderr and "p90" in bad.stderr


def test_foreign_manifest_is_a_one_line_error(bench, tmp_path):
    art = tmp_path / "arts" / "mine"
    art.mkdir(parents=True)
    (art / "manifest.json").write_text('{"name": "mine"}')
    proc = bench("run", "--artifacts", tmp_path / "arts", "--db", tmp_path / "x.db")
    assert proc.returncode == 1
    assert (f"bench run: error: {art / 'manifest.json'}: not an edgefair manifest (no schema_version, no "
            "artifact_id): wrap your own model with bench export --import") in proc.stderr
