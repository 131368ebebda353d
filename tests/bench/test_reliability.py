"""Every fault and bad input gets a clear answer and loses nothing (issue 12): one test per row of
the README's Reliability table that is not covered elsewhere."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.bench.conftest import parse_json

FAST = ("--min-runs", "5", "--min-seconds", "0", "--max-seconds", "2")


def _last_line(proc: subprocess.CompletedProcess) -> str:
    return proc.stderr.strip().splitlines()[-1]


def test_gate_against_an_empty_baseline_is_an_error_and_writes_nothing(bench, tmp_path, tiny_artifacts):
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    db = tmp_path / "cur.db"
    bench("run", "--artifacts", tiny_artifacts, "--only", "onnx-fp32-s0", "--db", db, *FAST, check=True)
    proc = bench("gate", "--baseline", empty, "--current", db)
    assert proc.returncode == 1
    assert _last_line(proc) == (f"bench gate: error: {empty}: not a readable results database ({empty}: not an "
                                "edgefair results database (no schema version))")
    assert empty.stat().st_size == 0
    fresh = tmp_path / "fresh.db"
    from edgefair.bench.store import Store

    Store(fresh).close()
    proc = bench("gate", "--baseline", fresh, "--current", db)
    assert proc.returncode == 1 and "the baseline holds no rows to compare against" in _last_line(proc)


@pytest.mark.parametrize("args, message", [
    (("--max-gap-increase", "-5pt"), "bench gate: error: --max-gap-increase: '-5pt' must be a number of points >= 0, "
                                     "like 2pt"),
    (("--max-p90-regression", "fast"), "bench gate: error: --max-p90-regression: 'fast' is not a number or a "
                                       "percentage like 10%"),
])
def test_gate_bounds_are_checked(bench, tmp_path, args, message):
    proc = bench("gate", "--baseline", tmp_path / "a.db", "--current", tmp_path / "b.db", *args)
    assert proc.returncode == 1 and _last_line(proc) == message


def test_a_manifest_without_a_preprocessing_key_is_named(bench, tiny_artifacts, tmp_path):
    art = tmp_path / "arts" / "onnx-fp32-s0"
    shutil.copytree(tiny_artifacts / "onnx-fp32-s0", art)
    m = json.loads((art / "manifest.json").read_text())
    del m["preprocessing"]["mean"]
    (art / "manifest.json").write_text(json.dumps(m))
    proc = bench("run", "--artifacts", art.parent, "--db", tmp_path / "r.db", *FAST)
    assert proc.returncode == 1
    assert _last_line(proc) == f"bench run: error: {art / 'manifest.json'}: preprocessing.mean is missing"


@pytest.mark.parametrize("spec, message", [
    ("synthfer:n=abc", "dataset 'synthfer:n=abc': option n must be an integer, got 'abc'"),
    ("synthfer:n=-5", "dataset 'synthfer:n=-5': option n must be >= 24, got -5"),
    ("synthfer:bogus=1", "dataset 'synthfer:bogus=1': unknown option 'bogus' for synthfer (allowed: n, seed, size, "
                         "rgb)"),
])
def test_bad_dataset_options_fail_before_training(bench, tmp_path, spec, message):
    proc = bench("train", "--dataset", spec, "--out", tmp_path / "r", "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout) == {"ok": False, "command": "train", "error": f"error: {message}", "exit_code": 1}
    assert not (tmp_path / "r").exists()  # decided before anything was loaded or written


def test_export_into_a_file_is_refused(bench, tiny_run, tmp_path):
    f = tmp_path / "passwd"
    f.write_text("root:x:0:0\n")
    proc = bench("export", "--model", tiny_run, "--target", "onnx-fp32", "--out", f)
    assert proc.returncode == 1 and _last_line(proc) == f"bench export: error: --out {f}: exists and is not a folder"
    assert f.read_text() == "root:x:0:0\n"


def test_only_an_unknown_artefact_is_an_error(bench, tiny_artifacts, tmp_path):
    proc = bench("run", "--artifacts", tiny_artifacts, "--only", "nosuch", "--db", tmp_path / "r.db")
    assert proc.returncode == 1
    assert _last_line(proc).startswith("bench run: error: --only nosuch: no such artefact (have: onnx-fp32-s0")


def test_a_one_class_dataset_trains_with_a_warning(bench, tmp_path):
    from edgefair.data.folder import write_folder
    from edgefair.data.registry import load_dataset

    ds = load_dataset("synthfer:n=240")
    for split in ds.splits.values():
        split[:] = [s.__class__(s.sample_id, s.image, 3, s.subject, s.attributes) for s in split]
    folder = write_folder(ds, tmp_path / "one")
    doc = parse_json(bench("train", "--dataset", f"folder:{folder}", "--epochs", "1", "--out", tmp_path / "r",
                           "--json", check=True))
    assert doc["warnings"][0].startswith("the train split holds one class only (happy): accuracy says nothing")
    proc = bench("train", "--dataset", f"folder:{folder}", "--epochs", "1", "--out", tmp_path / "r2", check=True)
    assert "warning: the train split holds one class only (happy)" in proc.stderr


def test_fairness_names_the_artefacts_whose_evaluation_failed(bench, tiny_artifacts, tmp_path):
    arts = tmp_path / "arts"
    shutil.copytree(tiny_artifacts, arts)
    model = arts / "onnx-int8-s0" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # damaged after export: its sha256 no longer matches
    model.write_bytes(bytes(data))
    proc = bench("fairness", "--artifacts", arts, "--db", tmp_path / "r.db", "--plots", tmp_path / "p")
    assert proc.returncode == 1
    assert _last_line(proc) == ("bench fairness: error: 1 artefact(s) not audited, their evaluation run failed: "
                                "onnx-int8-s0 (see bench run --eval)")


def test_two_runs_on_one_device_do_not_overlap(bench, tiny_artifacts, tmp_path):
    from edgefair.devices.lock import device_lock

    with device_lock("local"):
        proc = bench("run", "--artifacts", tiny_artifacts, "--only", "onnx-fp32-s0", "--db", tmp_path / "r.db",
                     "--no-wait", *FAST)
        assert proc.returncode == 1
        assert _last_line(proc).startswith("bench run: error: device local is busy: pid ")
        env = {**os.environ, "COLUMNS": "160"}
        waiting = subprocess.Popen([sys.executable, "-m", "edgefair", "run", "--artifacts", str(tiny_artifacts),
                                    "--only", "onnx-fp32-s0", "--db", str(tmp_path / "r.db"), *FAST],
                                   stderr=subprocess.PIPE, text=True, env=env)
        time.sleep(3)
        assert waiting.poll() is None  # still waiting for the lock
    _, stderr = waiting.communicate(timeout=300)
    assert waiting.returncode == 0 and "device local is busy (pid " in stderr and "waiting for it" in stderr


def test_an_unreachable_device_stops_after_the_first_artefact(bench, tiny_artifacts, tmp_path):
    doc_proc = bench("run", "--device", "ssh://nobody@127.0.0.1:1", "--artifacts", tiny_artifacts, "--db",
                     tmp_path / "r.db", "--json", *FAST)
    assert doc_proc.returncode == 1
    doc = json.loads(doc_proc.stdout)
    statuses = [a["status"] for a in doc["artifacts"]]
    assert statuses[0] == "failed" and set(statuses[1:]) <= {"not-measured", "host-only"}
    assert "cannot connect" in doc["stopped"] and "Connection refused" in doc["stopped"]
    assert doc_proc.stderr.count("Connection refused") <= 3  # one message, not one per artefact
    with sqlite3.connect(tmp_path / "r.db") as c:
        assert c.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1  # nothing stored for the others


def test_a_database_from_a_newer_edgefair_is_refused_untouched(bench, tiny_artifacts, tmp_path):
    from edgefair.bench.store import SCHEMA_VERSION

    db = tmp_path / "new.db"
    with sqlite3.connect(db) as c:
        c.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                        "INSERT INTO meta VALUES ('schema_version', '99');")
    before = db.read_bytes()
    proc = bench("run", "--artifacts", tiny_artifacts, "--only", "onnx-fp32-s0", "--db", db, *FAST)
    assert proc.returncode == 1
    assert _last_line(proc) == (f"bench run: error: {db}: schema version 99 is newer than this edgefair's "
                                f"{SCHEMA_VERSION}: upgrade edgefair to read it")
    assert db.read_bytes() == before


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_output_disk_is_one_line_and_keeps_what_was_stored(bench, tiny_artifacts, small_disk):
    db = small_disk / "r.db"
    proc = bench("run", "--artifacts", tiny_artifacts, "--db", db, "--eval", *FAST)
    assert proc.returncode == 1
    last = _last_line(proc)
    assert last.startswith("bench run: error: ") and ("No space left on device" in last or "disk is full" in last)
    assert str(small_disk) in last  # names where
    assert "internal error" not in proc.stderr
    with sqlite3.connect(db) as c:  # still a sound database with whatever was committed
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_the_agent_killed_like_the_oom_killer_does_is_a_failed_run(tmp_path):
    """A runtime stand-in that SIGKILLs itself (as the kernel's OOM killer would): the supervisor
    still writes ok=false naming the signal and the phase."""
    from tests.runtimes.conftest import AGENT

    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "onnxruntime.py").write_text("import os, signal\n__version__ = '0.0-oom'\n"
                                         "class SessionOptions: pass\nclass ExecutionMode: ORT_SEQUENTIAL = 0\n"
                                         "class GraphOptimizationLevel: ORT_ENABLE_ALL = 99\n"
                                         "def InferenceSession(*a, **k):\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    from tests.manifests import write_model_manifest

    d = tmp_path / "onnx-fp32-s0"
    d.mkdir()
    (d / "model.onnx").write_bytes(b"not really")
    write_model_manifest(d, name="onnx-fp32-s0", target="onnx-fp32", model_file="model.onnx",
                         input_spec={"name": "input", "shape": [1, 1, 48, 48], "layout": "NCHW", "dtype": "float32"},
                         output_spec={"name": "logits", "shape": [1, 7], "dtype": "float32"},
                         class_names=[f"c{i}" for i in range(7)],
                         prep={"size": 48, "channels": 1, "mean": 0.5, "std": 0.25})
    import numpy as np

    np.savez(tmp_path / "b.npz", images=np.zeros((2, 48, 48, 1), np.uint8), ids=np.array(["a", "b"]))
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(AGENT), "run", "--artifact", str(d), "--batch", str(tmp_path / "b.npz"),
                           "--out", str(out)], env={**os.environ, "PYTHONPATH": str(fake)}, capture_output=True,
                          text=True, timeout=120)
    res = json.loads(out.read_text())
    assert proc.returncode == 1 and res["ok"] is False
    assert res["error"].startswith("agent worker killed by SIGKILL during load")


_WRITER = """
import sys
from edgefair.bench.store import Store
path, who = sys.argv[1], sys.argv[2]
with Store(path) as store:
    for i in range(150):
        store.put_stage(f"{who}-{i}", "test", "done", {"i": i, "who": who})
"""


def test_two_writers_on_one_database_both_land(tmp_path):
    """Two sweeps (or runs on two devices) writing one database at once: every write goes
    through ``Store.transaction`` (BEGIN IMMEDIATE, WAL, a 30 s busy timeout), so both
    processes, starting together on a database neither has created, land every row."""
    db = tmp_path / "shared.db"
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(db), who], stderr=subprocess.PIPE, text=True)
               for who in ("a", "b")]
    errors = [w.communicate(timeout=300)[1] for w in writers]
    assert [w.returncode for w in writers] == [0, 0], errors
    with sqlite3.connect(db) as c:
        keys = {k for (k,) in c.execute("SELECT key FROM stages")}
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert keys == {f"{who}-{i}" for who in "ab" for i in range(150)}
