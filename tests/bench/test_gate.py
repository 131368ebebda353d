"""bench gate: baseline vs current from a results DB, a pytest-benchmark JSON or a gate JSON."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgefair.bench.gate import (
    GATE_SCHEMA,
    GateBounds,
    GateError,
    compare,
    export_gate_json,
    format_diff_table,
    load_side,
    run_gate,
)
from tests.bench.report_fixtures import Scenario, build_db, mixed

BASELINE = Path(__file__).parent / "data" / "gate-baseline.json"
GATED = ("size_bytes", "p90_s", "peak_rss_kb", "accuracy", "largest_gap")


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    return build_db(tmp_path_factory.mktemp("gate") / "results.db", mixed())


@pytest.fixture(scope="module")
def bench_json(db, tmp_path_factory) -> Path:
    """A real pytest-benchmark --benchmark-json file: a generated test module records each
    DB row in ``benchmark.extra_info`` exactly as the lead's benchmark suite does."""
    d = tmp_path_factory.mktemp("pybench")
    rows = [r for r in load_side(db) if r["status"] == "ok"]
    (d / "rows.json").write_text(json.dumps(rows))
    (d / "test_bench_rows.py").write_text(textwrap.dedent("""
        import json, pathlib, pytest
        ROWS = json.loads((pathlib.Path(__file__).parent / "rows.json").read_text())

        @pytest.mark.parametrize("row", ROWS, ids=[f"{r['artifact']}@{r['device']}" for r in ROWS])
        def test_artifact(benchmark, row):
            benchmark.extra_info.update({k: row[k] for k in ("artifact", "device", "size_bytes", "p90_s",
                                                               "peak_rss_kb", "accuracy", "largest_gap")})
            benchmark.extra_info.update(valid=row["valid"], emulated=row["emulated"])
            benchmark.pedantic(sum, args=([1, 2, 3],), rounds=3, iterations=1)
    """))
    out = d / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                           "--benchmark-json", str(out), str(d / "test_bench_rows.py")],
                          cwd=d, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def _by_key(rows):
    return {(r["artifact"], r["device"]): r for r in rows}


# ---------------------------------------------------------------- the three input kinds
def test_reads_a_results_database(db):
    rows = load_side(db)
    keys = {(r["artifact"], r["device"]) for r in rows}
    assert len(rows) == len(keys) == 18
    r = _by_key(rows)[("tflite-int8-s0.9", "local")]
    assert r["size_bytes"] > 0 and r["p90_s"] > 0 and r["peak_rss_kb"] > 0
    assert 0 < r["accuracy"] < 1 and r["largest_gap"] > 0.1  # the fixture's widened gap
    assert _by_key(rows)[("onnx-fp16-s0.5", "pi4")]["status"] == "failed"
    assert _by_key(rows)[("onnx-int8-s0", "pi4")]["valid"] is False
    assert _by_key(rows)[("onnx-int8-s0", "pi4-emu")]["emulated"] is True


def test_reads_a_pytest_benchmark_json(db, bench_json):
    doc = json.loads(bench_json.read_text())
    assert doc["benchmarks"] and "stats" in doc["benchmarks"][0]  # really pytest-benchmark's format
    from_json = _by_key(load_side(bench_json))
    from_db = _by_key(load_side(db))
    assert len(from_json) == 17  # the failed run has no benchmark
    for key, row in from_json.items():
        for m in GATED:
            assert row[m] == pytest.approx(from_db[key][m])
    assert run_gate(bench_json, bench_json).ok


def test_gate_json_round_trip_and_committed_baseline(db, tmp_path):
    path = export_gate_json(db, tmp_path / "sub" / "baseline.json")
    doc = json.loads(path.read_text())
    assert doc["schema"] == GATE_SCHEMA and len(doc["rows"]) == 18
    assert load_side(path) == sorted(load_side(db), key=lambda r: (r["device"], r["artifact"]))
    assert not list(path.parent.glob("*.tmp"))
    # The committed baseline (written by export_gate_json from this fixture sweep) loads and
    # the same sweep, rebuilt now, passes against it.
    committed = load_side(BASELINE)
    assert json.loads(BASELINE.read_text())["schema"] == GATE_SCHEMA and len(committed) == 18
    result = run_gate(BASELINE, db)
    assert result.ok, format_diff_table(result, only_failures=True)


def test_unreadable_sides_are_one_line_errors(tmp_path):
    with pytest.raises(GateError, match="nothing.json: no such file"):
        load_side(tmp_path / "nothing.json")
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(GateError, match="neither a pytest-benchmark JSON"):
        load_side(bad)
    (tmp_path / "text.json").write_text("not json")
    with pytest.raises(GateError, match="not JSON"):
        load_side(tmp_path / "text.json")
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps({"schema": GATE_SCHEMA, "rows": [{"artifact": "a", "device": "local"}] * 2}))
    with pytest.raises(GateError, match="appears twice"):
        load_side(dup)
    with pytest.raises(ValueError):
        GateBounds(max_p90_regression=-1)


# ---------------------------------------------------------------- pass and fail
def test_identical_sides_pass(db):
    result = run_gate(db, db, GateBounds(max_rss_regression=0.1))
    assert result.ok and not result.new and not result.missing
    assert {r.metric for r in result.rows} >= {"p90_s", "size_bytes", "peak_rss_kb", "accuracy", "largest_gap"}
    d = result.to_dict()
    assert d["ok"] is True and d["failures"] == [] and json.dumps(d)
    assert "gate passed" in format_diff_table(result)


def _row(rows, artifact="tflite-int8-s0.5", device="local"):
    return next(r for r in rows if r["artifact"] == artifact and r["device"] == device)


def _slower(rows):
    _row(rows)["p90_s"] *= 1.5


def _bigger(rows):
    _row(rows)["size_bytes"] *= 1.10


def _less_accurate(rows):
    _row(rows)["accuracy"] -= 0.03


def _less_fair(rows):
    _row(rows)["largest_gap"] += 0.05


@pytest.mark.parametrize("change, metric, words", [
    (_slower, "p90_s", "p90 latency +50.0%"),
    (_bigger, "size_bytes", "size +10.0%"),
    (_less_accurate, "accuracy", "accuracy -3.00 pt"),
    (_less_fair, "largest_gap", "largest gap +5.00 pt"),
])
def test_regressions_fail_naming_the_metric(bench_json, tmp_path, change, metric, words):
    """The current side is the pytest-benchmark JSON with one artefact made worse."""
    doc = json.loads(bench_json.read_text())
    rows = [b["extra_info"] for b in doc["benchmarks"]]
    change(rows)
    current = tmp_path / "current.json"
    current.write_text(json.dumps(doc))
    result = run_gate(bench_json, current)
    assert not result.ok
    assert [(r.artifact, r.device, r.metric) for r in result.failures] == [("tflite-int8-s0.5", "local", metric)]
    table = format_diff_table(result)
    fail_lines = [ln for ln in table.splitlines() if "FAIL" in ln and "│" in ln]
    assert len(fail_lines) == 1 and "tflite-int8-s0.5" in fail_lines[0] and metric in fail_lines[0]
    assert words in table and "gate FAILED: 1 of" in table
    assert result.to_dict()["failures"][0]["metric"] == metric


def test_slower_artefact_in_a_results_database_fails(db, tmp_path):
    slower = build_db(tmp_path / "current.db", Scenario(**{**mixed().__dict__, "latency_scale": {"onnx-fp32-s0": 1.5}}))
    result = run_gate(db, slower)
    failed = {(r.artifact, r.device, r.metric) for r in result.failures}
    assert failed == {("onnx-fp32-s0", "local", "p90_s"), ("onnx-fp32-s0", "pi4", "p90_s")}  # emulated: not gated
    assert "onnx-fp32-s0" in format_diff_table(result, only_failures=True)


def test_missing_artefact_fails_and_new_one_is_listed(db):
    base = load_side(db)
    cur = [r for r in copy.deepcopy(base) if not (r["artifact"] == "torch-fp32-s0" and r["device"] == "pi4")]
    cur.append({**_row(cur), "artifact": "tflite-int8-s0.95"})
    result = compare(base, cur, GateBounds())
    assert [(r.artifact, r.device, r.metric) for r in result.failures] == [("torch-fp32-s0", "pi4", "presence")]
    assert result.missing == [("torch-fp32-s0", "pi4")] and result.new == [("tflite-int8-s0.95", "local")]
    table = format_diff_table(result)
    assert "missing from the current results" in table and "tflite-int8-s0.95" in table and " new " in table


def test_a_run_that_now_fails_or_is_invalid_fails_the_gate(db):
    base = [r for r in load_side(db) if r["status"] == "ok" and r["valid"]]
    cur = copy.deepcopy(base)
    _row(cur, "onnx-fp32-s0", "pi4")["status"] = "failed"
    _row(cur, "torch-fp32-s0", "pi4")["valid"] = False
    result = compare(base, cur)
    assert {(r.artifact, r.metric) for r in result.failures} == {("onnx-fp32-s0", "status"),
                                                                 ("torch-fp32-s0", "p90_s")}
    assert "current run invalid: latency not trusted, measure again" in format_diff_table(result)


def test_both_statements_reach_the_gate_and_a_new_widening_fails(db):
    base = [r for r in load_side(db) if r["status"] == "ok" and r["valid"]]
    assert {r["verdict"] for r in base} >= {"reference", "pass"} and all(r["state"] for r in base if r["verdict"])
    cur = copy.deepcopy(base)
    passing = next(r for r in cur if r["verdict"] == "pass")
    passing["verdict"] = "gap-widened"
    result = compare(base, cur)
    assert [(r.artifact, r.device, r.metric) for r in result.failures] == [
        (passing["artifact"], passing["device"], "verdict")]
    assert "compression effect now gap-widened (baseline pass); state: " in format_diff_table(result)
    for r in base:  # an older baseline without verdicts: reported, not gated
        r["verdict"] = None
    assert compare(base, cur).ok
