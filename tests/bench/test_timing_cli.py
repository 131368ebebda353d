"""Timing validity, thread sweeps, per-op profiles and RSS through the real CLI (issue 11)."""

from __future__ import annotations

import json
import sqlite3

from tests.bench.conftest import parse_json

FAST = ("--min-runs", "20", "--min-seconds", "0.05")
ONE = ("--only", "onnx-int8-s0")


def test_threads_default_to_the_device_profile_and_a_list_sweeps(bench, tiny_artifacts, tmp_path):
    conf = tmp_path / "devices"
    conf.mkdir()
    (conf / "twocore.toml").write_text('transport = "local"\nthreads = 2\n')
    env_db = tmp_path / "r.db"
    import os

    os.environ["EDGEFAIR_CONFIG_DIR"] = str(conf)
    try:
        one = parse_json(bench("run", "--device", "twocore", "--artifacts", tiny_artifacts, "--db", env_db, *ONE,
                               *FAST, "--json", check=True))
    finally:
        del os.environ["EDGEFAIR_CONFIG_DIR"]
    assert one["threads"] == [2] and one["settings"]["threads"] == 2
    sweep = parse_json(bench("run", "--artifacts", tiny_artifacts, "--db", env_db, "--threads", "1,2", *ONE, *FAST,
                             "--json", check=True))
    assert sweep["threads"] == [1, 2] and [a["threads"] for a in sweep["artifacts"]] == [1, 2]
    with sqlite3.connect(env_db) as c:
        rows = c.execute("SELECT device, threads, rss_method, model_rss_kb, peak_rss_kb FROM runs").fetchall()
    assert sorted((d, t) for d, t, *_ in rows) == [("local", 1), ("local", 2), ("twocore", 2)]
    assert all(method and 0 < model < peak for _, _, method, model, peak in rows)


def test_the_terminal_says_why_a_run_is_invalid(bench, tiny_artifacts, tmp_path):
    proc = bench("run", "--artifacts", tiny_artifacts, "--db", tmp_path / "r.db", *ONE, "--min-runs", "10000000",
                 "--min-seconds", "0", "--max-seconds", "0.2")
    assert proc.returncode == 0, proc.stderr
    assert "invalid: stop rule not met: n=" in proc.stderr and "throttled" not in proc.stderr
    assert " ms, invalid: stop rule not met: n=" in proc.stderr  # the per-artefact line says it too


def test_op_profiles_reach_the_report(bench, tiny_artifacts, tmp_path):
    db = tmp_path / "r.db"
    parse_json(bench("run", "--artifacts", tiny_artifacts, "--db", db, "--profile-ops", "5", "--only",
                     "onnx-int8-s0", "--only", "onnx-fp32-s0", "--only", "torch-fp32-s0", *FAST, "--eval", "--json",
                     check=True))
    with sqlite3.connect(db) as c:
        results = [json.loads(r) for (r,) in c.execute("SELECT result_json FROM runs")]
    onnx = [r for r in results if r["artifact"]["name"] == "onnx-int8-s0"][0]
    assert onnx["op_profile"]["method"] == "onnxruntime profiler" and onnx["op_profile"]["ops"]
    info = parse_json(bench("report", "--db", db, "--out", tmp_path / "rep", "--json", check=True))
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Per-operator profiles" in md and info["rows"] == 3
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "ISA (kernel selection)" in html and "Per-operator profiles" in html


def test_an_old_results_database_is_migrated_in_place(tmp_path):
    from edgefair.bench.store import SCHEMA_VERSION, Store

    db = tmp_path / "v1.db"
    with sqlite3.connect(db) as c:
        c.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                        "INSERT INTO meta VALUES ('schema_version', '1');"
                        "CREATE TABLE runs (id INTEGER PRIMARY KEY, artifact_id TEXT NOT NULL, device TEXT NOT NULL, "
                        "settings_key TEXT NOT NULL, settings_json TEXT NOT NULL, status TEXT NOT NULL, error TEXT, "
                        "p50_s REAL, p90_s REAL, p99_s REAL, mean_s REAL, std_s REAL, n INTEGER, peak_rss_kb INTEGER, "
                        "accuracy REAL, valid INTEGER, emulated INTEGER, samples_path TEXT, result_json TEXT NOT NULL,"
                        " created_at REAL NOT NULL, UNIQUE (artifact_id, device, settings_key));"
                        "INSERT INTO runs (artifact_id, device, settings_key, settings_json, status, result_json, "
                        "created_at) VALUES ('a', 'local', 'k', '{}', 'ok', '{}', 0);"
                        "CREATE TABLE audits (id INTEGER PRIMARY KEY, artifact_id TEXT NOT NULL, device TEXT NOT NULL,"
                        " settings_key TEXT NOT NULL, reference TEXT, verdict TEXT NOT NULL, accuracy REAL, "
                        "largest_gap REAL, gap_lo REAL, gap_hi REAL, gap_attribute TEXT, audit_json TEXT NOT NULL, "
                        "created_at REAL NOT NULL, UNIQUE (artifact_id, device, settings_key));"
                        "INSERT INTO audits (artifact_id, device, settings_key, verdict, audit_json, created_at) "
                        "VALUES ('a', 'local', 'k', 'pass', '{}', 0);")
    with Store(db) as store:
        assert len(store.runs()) == 1 and {"rss_method", "model_rss_kb", "threads"} <= set(store.runs()[0])
        old_audit = store.audits()[0]  # schema 3: audits keep their settings and summary
        assert old_audit["verdict"] == "pass" and {"settings_json", "summary_json"} <= set(old_audit)
        assert store.widest_audits()[("a", "local")]["_rank"] == (0, 0)  # no settings: the narrowest
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)
