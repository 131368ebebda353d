"""Faults a device run must survive (issue 12), against the REAL OpenSSH server on loopback and the
STAND-IN adb: a hung connection is a timeout (never a hang of ours), a full remote disk and a device
that vanishes mid-push are one-line errors with the tool's own reason, malformed device URLs are
refused before anything runs, and no secret reaches a log, a JSON document, the database or a report."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from edgefair.devices import DeviceError, resolve_device, run_artifact

from .conftest import FAST, descendants
from .test_ssh import _kill_agents, transport

pytestmark = pytest.mark.slow
FAST_CLI = ("--min-runs", "5", "--min-seconds", "0", "--max-seconds", "2")


def _bench(*args: object, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "edgefair", *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=600)


# ------------------------------------------------------------------ hung connections
def test_a_server_that_never_answers_is_a_connect_timeout(tmp_path, sshd, tiny):
    """A listener that accepts and then says nothing (no SSH banner): ConnectTimeout ends it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    try:
        t = transport(sshd, tmp_path / "w", port=port, connect_timeout_s=3)
        with pytest.raises(DeviceError) as ei:
            run_artifact(t, tiny / "onnx-fp32-s0", tiny / "batch.npz", overrides=FAST)
    finally:
        server.close()
    msg = str(ei.value)
    assert "\n" not in msg and f"127.0.0.1:{port}" in msg
    assert "timed out" in msg.lower() or "timeout" in msg.lower(), msg


def test_a_server_that_freezes_mid_run_is_a_timeout(sshd, tiny, tmp_path):
    """sshd and its session processes SIGSTOPped while the agent measures: ServerAlive ends the
    link after interval × count seconds and the run fails with ssh's reason; it never hangs."""
    wd = tmp_path / "frozen"
    t = transport(sshd, wd, server_alive_interval_s=1, server_alive_count_max=2)
    box: dict = {}

    def long_run() -> None:
        try:
            box["result"] = run_artifact(t, tiny / "onnx-fp32-s0", tiny / "batch.npz", mode="bench", timeout_s=300,
                                         overrides={"min_seconds": 120, "max_seconds": 120, "min_runs": 1})
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            box["error"] = e

    th = threading.Thread(target=long_run, daemon=True)
    th.start()
    progress = wd / "result.json.progress"
    frozen: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and th.is_alive():
            try:
                if json.loads(progress.read_text()).get("phase") == "warmup+measure":
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        assert sshd.proc is not None
        frozen = [sshd.proc.pid, *[p for p in descendants(sshd.proc.pid) if Path(f"/proc/{p}/comm").exists()
                                   and Path(f"/proc/{p}/comm").read_text().startswith("sshd")]]
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        th.join(timeout=90)
        assert not th.is_alive(), "run_artifact hung on a frozen server"
    finally:
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        _kill_agents(wd)
        sshd.restart()
    err = box.get("error")
    assert isinstance(err, DeviceError), box
    msg = str(err)
    assert "\n" not in msg and "connection lost" in msg and "exit 255" in msg, msg


# ------------------------------------------------------------------ remote disk full
@pytest.fixture
def small_remote_disk(tmp_path):
    mnt = tmp_path / "remote-small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_remote_disk_is_one_line_with_the_reason(sshd, tiny, small_remote_disk):
    """The device's work folder on a 48 KiB tmpfs: the agent (80 KB) cannot even be uploaded."""
    t = transport(sshd, small_remote_disk / "wd")
    with pytest.raises(DeviceError) as ei:
        run_artifact(t, tiny / "onnx-fp32-s0", tiny / "batch.npz", overrides=FAST)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(f"ssh {sshd.user}@127.0.0.1:{sshd.port}: ")
    assert "no space left on the device: " in msg and " KiB free in " in msg and " KiB needed" in msg, msg


# ------------------------------------------------------------------ adb vanishing mid-push
def _adb_spec() -> str:
    q = {"mode": "agent", "python": sys.executable, "threads": "1"}
    return "adb:STANDIN01?" + "&".join(f"{k}={quote(str(v), safe='/')}" for k, v in q.items())


def test_an_adb_device_that_vanishes_mid_push(fake_adb, tiny, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_VANISH_AT_PUSH", "1")
    with pytest.raises(DeviceError) as ei:
        run_artifact(resolve_device(_adb_spec()), tiny / "tflite-int8-s0", tiny / "batch.npz", overrides=FAST)
    msg = str(ei.value)
    assert "\n" not in msg and "adb STANDIN01" in msg and "no devices/emulators found" in msg, msg
    with pytest.raises(DeviceError, match="unreachable|no devices"):  # gone for good: the next one says so
        run_artifact(resolve_device(_adb_spec()), tiny / "tflite-int8-s0", tiny / "batch.npz", overrides=FAST)


def test_bench_run_stops_after_the_device_vanished(fake_adb, tiny_artifacts, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_VANISH_AT_PUSH", "2")
    db = tmp_path / "r.db"
    proc = _bench("run", "--device", _adb_spec(), "--artifacts", tiny_artifacts, "--db", db, "--json", *FAST_CLI)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    statuses = [a["status"] for a in doc["artifacts"] if a["status"] != "host-only"]
    assert statuses[0] == "failed" and set(statuses[1:]) == {"not-measured"}, statuses
    assert "no devices/emulators found" in doc["stopped"] or "unreachable" in doc["stopped"]
    assert "internal error" not in proc.stderr


# ------------------------------------------------------------------ device URLs
@pytest.mark.parametrize(("spec", "message"), [
    ("ssh://'$(touch PWNED)'@127.0.0.1:1", "is not a valid user name"),
    ("ssh://-oProxyCommand=touch%20PWNED", "is not a host name or IP address"),
    ("ssh://pi@host:99999", "invalid host or port"),
    ("ssh://pi:hunter2@127.0.0.1:1", "a password in a device URL is not supported"),
])
def test_malformed_device_urls_are_refused_before_anything_runs(tiny_artifacts, tmp_path, spec, message):
    db = tmp_path / "r.db"
    proc = _bench("run", "--device", spec, "--artifacts", tiny_artifacts, "--db", db, cwd=tmp_path)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("bench run: error: device spec ") and message in last, proc.stderr
    assert not (tmp_path / "PWNED").exists() and not db.exists()  # decided before any work
    assert "hunter2" not in proc.stderr + proc.stdout


# ------------------------------------------------------------------ secrets
def test_no_secret_reaches_logs_json_database_or_report(sshd, tiny_artifacts, tmp_path):
    """A run over SSH with an identity file, then the report: neither the private key's contents,
    nor a password typed into a device URL, nor the identity file's contents appear anywhere."""
    key_body = [ln for ln in sshd.user_key.read_text().splitlines() if ln and not ln.startswith("-----")]
    spec = (f"ssh://{sshd.user}@127.0.0.1:{sshd.port}?python={quote(sys.executable, safe='/')}"
            f"&workdir={quote(str(tmp_path / 'wd'), safe='/')}&venv="
            f"&identity_file={quote(str(sshd.user_key), safe='/')}"
            f"&known_hosts={quote(str(sshd.known_hosts), safe='/')}")
    db = tmp_path / "r.db"
    outputs = []
    run = _bench("run", "--device", spec, "--artifacts", tiny_artifacts, "--only", "onnx-fp32-s0", "--db", db,
                 "--eval", "--json", *FAST_CLI)
    assert run.returncode == 0, run.stderr
    outputs += [run.stdout, run.stderr]
    refused = _bench("run", "--device", f"ssh://{sshd.user}:s3cr3t-pw@127.0.0.1:{sshd.port}", "--artifacts",
                     tiny_artifacts, "--db", db, "--json")
    assert refused.returncode == 1
    outputs += [refused.stdout, refused.stderr]
    report = _bench("report", "--db", db, "--out", tmp_path / "rep")
    assert report.returncode == 0, report.stderr
    outputs += [report.stdout, report.stderr]
    files = [db, *db.parent.glob("r.db-*"), *(tmp_path / "rep").rglob("*"), *(tmp_path / "wd").rglob("*")]
    blobs = [p.read_bytes().decode("latin-1") for p in files if p.is_file()]
    with sqlite3.connect(db) as c:
        blobs += [json.dumps(list(r)) for r in c.execute("SELECT * FROM runs")]
    everything = "\n".join(outputs + blobs)
    assert "s3cr3t-pw" not in everything
    for line in key_body:
        assert line not in everything
