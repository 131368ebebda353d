"""bench sweep: config validation, a full small sweep, and kill-and-resume at several points."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgefair.bench.config import ConfigError, SweepConfig, load_config

SMALL = """
dataset = "synthfer:n=600:seed=2"
archs = ["cnn"]
epochs = 2
targets = ["torch-fp32", "onnx-fp32", "onnx-int8", "tflite-int8"]
sparsities = [0.0, 0.5]
finetune_epochs = 0
calib = 64
min_runs = 20
min_seconds = 0.05
min_n = 5
"""
N_ART = 8


def test_print_config_round_trips(bench, tmp_path):
    proc = bench("sweep", "--print-config", check=True)
    (tmp_path / "sweep.toml").write_text(proc.stdout)
    assert load_config(tmp_path / "sweep.toml") == load_config(None)
    assert "sparsities = [0.0, 0.5, 0.75, 0.9]" in proc.stdout


@pytest.mark.parametrize("text, message", [
    ('targets = ["tflite-int4"]', "targets: 'tflite-int4' is not allowed; allowed values: torch-fp32, torch-int8"),
    ('profile = "slow"', "profile: 'slow' is not allowed; allowed values: quick, standard, mlperf"),
    ("sparsities = [1.0]", "sparsities: 1.0 is outside the allowed range [0, 1)"),
    ("colour = 3", "unknown key 'colour'; allowed keys: dataset, archs"),
    ('pruning = "random"', "pruning: 'random' is not allowed; allowed values: unstructured, structured"),
    ("epochs = 0", "epochs: must be an integer >= 1, got 0"),
    ("epochs = true", "epochs: must be an integer >= 1, got True"),
    ("sparsities = 0.5", "the audit needs an uncompressed reference: sparsities must include 0 and targets an "
                         "fp32 target (torch-fp32, onnx-fp32 or tflite-fp32)"),
    ('dataset = "synthfer:n=abc"', "dataset: dataset 'synthfer:n=abc': option n must be an integer, got 'abc'"),
    ("clusterings = [0, 1]", "clusterings: 1 is not allowed; each must be 0 (no clustering) or an integer K >= 2"),
    ("kd_alpha = 2", "kd_alpha: must be a number in [0, 1], got 2.0"),
])
def test_invalid_config_names_key_and_allowed_values(tmp_path, bench, text, message):
    cfg = tmp_path / "sweep.toml"
    cfg.write_text(text + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert str(e.value) == f"{cfg}: {message}" or str(e.value).startswith(f"{cfg}: {message}")
    proc = bench("sweep", "--config", cfg, "--out", tmp_path / "o")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(f"bench sweep: error: {cfg}: ")


def test_defaults_match_the_issue():
    cfg = SweepConfig()
    assert cfg.dataset == "synthfer" and cfg.archs == ["cnn"] and len(cfg.targets) == 9
    assert cfg.sparsities == [0.0, 0.5, 0.75, 0.9] and cfg.devices == ["local"]
    assert cfg.finetune_epochs == 2 and cfg.clusterings == [] and cfg.mitigations == ["none"] and cfg.seeds == 1
    assert (cfg.kd_alpha, cfg.kd_temperature, cfg.prune_scope) == (0.9, 4.0, "global")


def _sweep_cmd(cfg: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "edgefair", "sweep", "--config", str(cfg), "--out", str(out), "--json"]


def _db_counts(db: Path) -> dict[str, int]:
    if not db.exists():
        return {"runs": 0, "audits": 0}
    with sqlite3.connect(db, timeout=30) as c:
        return {t: c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("runs", "audits")}


def _snapshot(db: Path) -> dict[tuple, tuple]:
    if not db.exists():
        return {}
    with sqlite3.connect(db, timeout=30) as c:
        q = "SELECT artifact_id, device, settings_key, created_at, {} FROM {}"
        runs = {("run",) + r[:3]: r[3:] for r in c.execute(q.format("result_json", "runs"))}
        audits = {("audit",) + r[:3]: r[3:] for r in c.execute(q.format("audit_json", "audits"))}
    return {**runs, **audits}


def _manifests(out: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in out.glob("artifacts/*/*/manifest.json")}


@pytest.fixture(scope="module")
def sweep_cfg(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("cfg") / "sweep.toml"
    p.write_text(SMALL)
    return p


def test_kill_and_resume_at_several_points(sweep_cfg, tmp_path):
    """Kill a real sweep during training, export, run and audit (SIGKILL and SIGINT), resume each time.

    After every kill: the database passes integrity_check; after every resume nothing
    that had finished (runs, audits, artefacts) was redone or changed.
    """
    out = tmp_path / "sweep"
    db = out / "results.db"
    env = os.environ.copy()
    kill_points = [
        ("training", signal.SIGKILL, lambda: (out / "sweep.json").exists() and time.sleep(1.5) is None),
        ("export", signal.SIGINT, lambda: len(_manifests(out)) >= 2),
        ("run", signal.SIGKILL, lambda: _db_counts(db)["runs"] >= 3),
        ("audit", signal.SIGINT, lambda: _db_counts(db)["audits"] >= 2),
    ]
    kills = []
    for label, sig, ready in kill_points:
        before_runs = _snapshot(db)
        before_manifests = _manifests(out)
        proc = subprocess.Popen(_sweep_cmd(sweep_cfg, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                text=True)
        deadline = time.time() + 300
        fired = False
        while time.time() < deadline and proc.poll() is None:
            if ready():
                proc.send_signal(sig)
                fired = True
                break
            time.sleep(0.05)
        proc.communicate(timeout=120)
        kills.append((label, sig.name, fired, proc.returncode))
        # finished work from before this attempt is untouched
        after = _snapshot(db)
        for k, v in before_runs.items():
            assert after.get(k) == v, f"{label}: {k} was redone or lost"
        for path, mtime in before_manifests.items():
            assert _manifests(out).get(path) == mtime, f"{label}: {path} was converted again"
        if db.exists():
            with sqlite3.connect(db) as c:
                assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert any(f for _, _, f, _ in kills), kills
    # the final resume completes and keeps everything that was already there
    before = _snapshot(db)
    done = subprocess.run(_sweep_cmd(sweep_cfg, out), capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    after = _snapshot(db)
    for k, v in before.items():
        assert after[k] == v
    counts = _db_counts(db)
    assert counts == {"runs": N_ART, "audits": N_ART}
    assert (out / "report" / "report.html").exists()
    # and a re-run of the finished sweep redoes nothing at all
    t0 = time.perf_counter()
    again = subprocess.run(_sweep_cmd(sweep_cfg, out), capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _snapshot(db).keys() == after.keys()
    assert all(_snapshot(db)[k][0] == after[k][0] for k in after if k[0] == "run")
    doc = json.loads(again.stdout)
    export = [s for s in doc["stages"] if s["stage"] == "export"][0]
    assert export["statuses"] == {"cached": N_ART}
    print(f"kill points: {kills}; cached re-run {time.perf_counter() - t0:.1f} s")
