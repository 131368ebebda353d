"""``bench fairness`` wiring (issues 10 and 12): the audit's knobs reach it and key it, a narrower
audit is stored beside the full one and the report shows the widest, the terminal gets a compact
table with both statements (the full audit with --verbose)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.bench.conftest import parse_json


@pytest.fixture(scope="module")
def audited(tiny_artifacts, tmp_path_factory):
    """One database with predictions for every tiny artefact (host evaluation) and the full audit."""
    import os
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("audited")
    db = tmp / "r.db"
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "edgefair", "fairness", "--artifacts", str(tiny_artifacts),
                           "--db", str(db), "--min-n", "5", "--plots", str(tmp / "plots")],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode in (0, 1), proc.stderr
    return db, proc


def _audits(db) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as c:
        return sorted(c.execute("SELECT settings_json, audit_json FROM audits"))


def test_default_output_is_a_compact_table_with_both_statements(audited):
    _, proc = audited
    out = proc.stderr
    assert "fairness audit (reference: torch-fp32-s0; intervals: 95% CI)" in out
    assert "absolute state" in out and "largest widening" in out
    assert "reference" in out.split("fairness audit")[1]  # the reference row says reference, not a verdict
    assert "macro-F1" not in out  # the per-group tables are --verbose only
    table = out.split("fairness audit (reference")[1]
    for name in ("torch-fp32-s0 ", "onnx-int8-s0.5 ", "tflite-int8-s0 "):  # one row per artefact
        assert table.count(f"│ {name}") == 1


def test_knobs_reach_the_audit_and_a_narrower_audit_sits_beside_the_full_one(audited, bench, tiny_artifacts,
                                                                               tmp_path):
    db, _ = audited
    full_before = _audits(db)
    n = len(full_before)
    proc = bench("fairness", "--artifacts", tiny_artifacts, "--db", db, "--min-n", "5", "--attributes",
                 "skin_tone", "--alpha", "0.1", "--n-boot", "200", "--seed", "3", "--min-subjects", "3",
                 "--keep-missing", "--plots", tmp_path / "p", "--json")
    doc = parse_json(proc)
    audit = doc["audits"]["onnx-int8-s0.5"]
    assert audit["settings"]["alpha"] == 0.1 and audit["settings"]["n_boot"] == 200
    assert audit["settings"]["seed"] == 3 and audit["settings"]["min_subjects"] == 3
    assert audit["settings"]["keep_missing"] is True
    assert {s["ci_label"] for s in doc["summaries"]} == {"90% CI"}
    after = _audits(db)
    assert len(after) == 2 * n  # stored beside, not over
    assert set(full_before) <= set(after)  # the full audit unchanged
    keys = [json.loads(k) for k, _ in after]
    assert sorted(len(k["attributes"]) for k in keys) == [1] * n + [3] * n
    assert {k["dataset"] for k in keys} == {"synthfer:n=720:seed=1"}

    rep = bench("report", "--db", db, "--out", tmp_path / "rep", check=True)
    assert rep.returncode == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    fairness = md.split("## Fairness")[1]
    assert "**gender**" in fairness and "**age**" in fairness  # the widest audit, though the narrower is newer
    assert "95% CIs" in fairness and "90% CI" not in fairness


def test_verbose_prints_every_full_audit(audited, bench, tiny_artifacts, tmp_path):
    db, _ = audited
    proc = bench("fairness", "--artifacts", tiny_artifacts, "--db", db, "--min-n", "5", "--attributes", "gender",
                 "--verbose", "--plots", tmp_path / "p")
    assert proc.stderr.count("macro-F1") >= 10  # one per-group table per artefact
    assert "torch-fp32-s0 (reference)" in proc.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("--alpha", "0"), "Invalid value for '--alpha'"),
    (("--min-subjects", "1"), "Invalid value for '--min-subjects'"),
    (("--n-boot", "5"), "Invalid value for '--n-boot'"),
])
def test_bad_knobs_are_refused_before_any_work(bench, tiny_artifacts, tmp_path, args, message):
    proc = bench("fairness", "--artifacts", tiny_artifacts, "--db", tmp_path / "x.db", *args)
    assert proc.returncode == 2 and message in proc.stderr
    assert not (tmp_path / "x.db").exists()
