"""SSH transport against a REAL OpenSSH server started on 127.0.0.1 (host keys checked)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from edgefair.devices import CommandRequest, DeviceError, open_transport, probe_device, resolve_device, run_artifact
from edgefair.devices.ssh import SSHTransport

from .conftest import FAST, free_port

pytestmark = pytest.mark.slow

# A remote work dir whose name needs quoting everywhere it is used.
WEIRD = "ef work $(touch PWNED) 'q' \"dq\""


def transport(sshd, workdir: Path, **kw) -> SSHTransport:
    args = dict(name="test", host="127.0.0.1", user=sshd.user, port=sshd.port,
                workdir=str(workdir), python=[sys.executable],
                identity_file=str(sshd.user_key), known_hosts=str(sshd.known_hosts),
                connect_timeout_s=5, server_alive_interval_s=2, server_alive_count_max=2)
    args.update(kw)
    return SSHTransport(**args)


def test_quoting_paths_and_args_arrive_verbatim(sshd, tmp_path):
    wd = tmp_path / WEIRD
    t = transport(sshd, wd)
    src = tmp_path / "local file 'x' $(y).txt"
    src.write_text("payload")
    remote_name = "sub dir/$(touch PWNED2) `id` 'it''s' \"q\" * ?[a].txt"
    t.put(src, remote_name)
    assert (wd / remote_name).read_text() == "payload"  # the device is this machine
    args = ["with space", "it's", 'dq"uote', "$(touch PWNED3)", "`id`", "$HOME", "a;b", "*",
            "a\nb", "back\\slash", "-n", ""]
    out = t.run(CommandRequest([sys.executable, "-c",
                                "import json,os,sys; print(json.dumps([sys.argv[1:], os.getcwd(),"
                                " os.environ['EF_X']]))", *args],
                               env={"EF_X": "$(touch PWNED4) 'v'"}, timeout_s=60))
    assert out.ok, out.stderr
    got_args, cwd, val = json.loads(out.stdout)
    assert got_args == args and cwd == str(wd) and val == "$(touch PWNED4) 'v'"
    t.get(remote_name, tmp_path / "back.txt")
    assert (tmp_path / "back.txt").read_text() == "payload"
    assert not list(tmp_path.rglob("PWNED*")) and not list(Path.home().glob("PWNED*"))
    assert not Path("PWNED").exists()


def test_unknown_host_key_is_refused(sshd, tmp_path):
    # A known_hosts without this server's key: refused, and nothing is added to it.
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    t = transport(sshd, tmp_path / "w", known_hosts=str(empty))
    with pytest.raises(DeviceError) as ei:
        t.run(CommandRequest(["true"], timeout_s=30))
    msg = str(ei.value)
    assert "host key verification failed" in msg and "\n" not in msg
    assert msg.startswith(f"ssh {sshd.user}@127.0.0.1:{sshd.port}")
    assert empty.read_text() == ""
    # A CHANGED key (someone else's key recorded for this host:port) is refused too.
    other = Path(str(sshd.other_key) + ".pub").read_text().split()
    wrong = tmp_path / "known_hosts_wrong"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {other[0]} {other[1]}\n")
    with pytest.raises(DeviceError, match="host key verification failed"):
        transport(sshd, tmp_path / "w", known_hosts=str(wrong)).prepare()
    # Host-key checking cannot be switched off through the transport.
    with pytest.raises(DeviceError, match="refused"):
        transport(sshd, tmp_path / "w", strict_host_key_checking="no")


def test_auth_and_connect_failures_are_one_line(sshd, tmp_path):
    with pytest.raises(DeviceError) as ei:
        transport(sshd, tmp_path / "w", identity_file=str(sshd.other_key)).prepare()
    assert "authentication failed" in str(ei.value) and "\n" not in str(ei.value)
    with pytest.raises(DeviceError) as ei:
        transport(sshd, tmp_path / "w", port=free_port()).prepare()
    assert "cannot connect" in str(ei.value) and "\n" not in str(ei.value)


def test_ssh_config_is_honoured_and_home_workdir(sshd, tmp_path):
    """User, port, key and known_hosts from an OpenSSH config file (-F; ~/.ssh/config works
    the same way): an ad-hoc spec naming only a Host alias connects with them."""
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host edgefair-test-alias\n  HostName 127.0.0.1\n  Port {sshd.port}\n"
                   f"  User {sshd.user}\n  IdentityFile {sshd.user_key}\n"
                   f"  UserKnownHostsFile {sshd.known_hosts}\n")
    sub = f"edgefair-test-{os.getpid()}-{time.time_ns()}"
    spec = f"ssh://edgefair-test-alias?ssh_config={cfg}&workdir=~/{sub}&python={sys.executable}"
    t = open_transport(resolve_device(spec))
    assert "-p" not in t.ssh_argv("true") and "-l" not in t.ssh_argv("true")
    try:
        out = t.run(CommandRequest(["pwd"], timeout_s=30))
        assert out.ok, out.stderr
        assert out.stdout.strip() == str(Path.home() / sub) == t.workdir
    finally:
        shutil.rmtree(Path.home() / sub, ignore_errors=True)


def test_profile_run_and_probe_end_to_end(sshd, tiny, tmp_path, monkeypatch):
    """A user profile in the config dir -> resolve_device -> push/run/pull a real agent run."""
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    wd = tmp_path / WEIRD
    (cfg / "testpi.toml").write_text(sshd.profile_toml(workdir=str(wd)))
    monkeypatch.setenv("EDGEFAIR_CONFIG_DIR", str(cfg))
    profile = resolve_device("testpi")
    r = run_artifact(profile, tiny / "onnx-fp32-s0", tiny / "batch.npz", overrides=FAST)
    assert r["ok"] and r["device"] == "testpi" and r["transport"] == "ssh"
    assert r["emulated"] is False and r["runtime"]["name"] == "onnxruntime"
    assert r["host"]["target"] == f"ssh {sshd.user}@127.0.0.1:{sshd.port}"
    assert r["host"]["remote_workdir"] == str(wd)
    assert len(r["eval"]["pred"]) == 32 and len(r["timing"]["samples_s"]) >= FAST["min_runs"]
    manifest = json.loads((tiny / "onnx-fp32-s0" / "manifest.json").read_text())
    assert r["artifact"]["sha256"] == manifest["file"]["sha256"]
    assert (wd / "agent.py").is_file() and (wd / "result.json").is_file()
    p = probe_device(profile)
    assert p["ok"] and p["runtimes"]["tflite"]["importable"] and p["transport"] == "ssh"
    # The same predictions as a local run of the same artefact.
    loc = run_artifact("local", tiny / "onnx-fp32-s0", tiny / "batch.npz", mode="eval")
    assert loc["eval"]["pred"] == r["eval"]["pred"]


def _agent_pids(workdir: Path) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(d / "cwd")
        except OSError:
            continue
        if cwd == str(workdir) and any(c.endswith(b"agent.py") for c in cmd) and b"run" in cmd:
            pids.append(int(d.name))
    return pids


def _kill_agents(workdir: Path) -> None:
    for _ in range(20):
        pids = _agent_pids(workdir)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def test_connection_killed_mid_run_then_next_artefact_measured(sshd, tiny, tmp_path):
    wd = tmp_path / "killwd"
    t = transport(sshd, wd, server_alive_interval_s=1, server_alive_count_max=2)
    box: dict = {}

    def long_run():
        try:
            box["result"] = run_artifact(t, tiny / "onnx-fp32-s0", tiny / "batch.npz",
                                         mode="bench", timeout_s=300,
                                         overrides={"min_seconds": 120, "max_seconds": 120,
                                                    "min_runs": 1})
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            box["error"] = e
            box["at"] = time.monotonic()

    th = threading.Thread(target=long_run, daemon=True)
    th.start()
    progress = wd / "result.json.progress"
    try:
        deadline = time.monotonic() + 90
        measuring = False
        while time.monotonic() < deadline and not measuring and th.is_alive():
            try:
                measuring = json.loads(progress.read_text()).get("phase") == "warmup+measure"
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        assert measuring, f"the agent never reached its measurement loop: {box}"
        killed_at = time.monotonic()
        sshd.kill()  # the listener and the session's sshd processes: the link drops
        th.join(timeout=60)
        assert not th.is_alive(), "run_artifact did not return after the connection dropped"
    finally:
        _kill_agents(wd)  # the orphaned agent processes this test started
    err = box.get("error")
    assert isinstance(err, DeviceError), box
    msg = str(err)
    assert "\n" not in msg
    assert msg.startswith(f"ssh {sshd.user}@127.0.0.1:{sshd.port}: connection lost during run "
                          f"(exit 255): "), msg  # ssh's own reason follows
    assert box["at"] - killed_at < 30  # reported promptly, not after the 120 s run

    # While the server is down: a clear "cannot connect", not a hang.
    with pytest.raises(DeviceError, match="cannot connect|connection lost"):
        run_artifact(t, tiny / "tflite-int8-s0", tiny / "batch.npz", overrides=FAST)
    # Restarted server: the next artefact is measured on the same transport.
    sshd.start()
    r = run_artifact(t, tiny / "tflite-int8-s0", tiny / "batch.npz", overrides=FAST)
    assert r["ok"] and r["runtime"]["name"] == "ai_edge_litert"


def _masters(control_dir: str | None) -> list[int]:
    """ControlMaster processes (ssh ... [mux]) serving a socket in ``control_dir``."""
    if not control_dir:
        return []
    out = []
    for d in Path("/proc").iterdir():
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if control_dir.encode() in cmd and b"[mux]" in cmd:
            out.append(int(d.name))
    return out


def test_one_connection_per_transport_and_cleaned_up(sshd, tiny, tmp_path):
    """Runs, uploads and downloads share one ControlMaster; close() stops it and removes its socket."""
    t = transport(sshd, tmp_path / "w")
    before = sshd.connections()
    for a in ("onnx-fp32-s0", "tflite-int8-s0"):
        assert run_artifact(t, tiny / a, tiny / "batch.npz", overrides=FAST)["ok"]
    t.get("result.json", tmp_path / "r.json")
    assert sshd.connections() - before == 1 and t.connections_opened == 1
    control_dir = str(Path(t.control_path).parent)
    assert len(_masters(control_dir)) == 1
    argv = t.scp_argv(["x"], "y")
    assert "-s" in argv  # uploads and downloads over SFTP: remote paths never shell-expanded
    t.close()
    deadline = time.monotonic() + 10
    while _masters(control_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _masters(control_dir) and not Path(control_dir).exists()


def test_legacy_scp_protocol_quotes_remote_paths(sshd, tmp_path):
    """An OpenSSH client without SFTP-mode scp (< 8.7) uses the legacy protocol, where the remote shell
    expands paths: they are quoted (forced here with scp -O against the real server)."""
    wd = tmp_path / WEIRD
    t = transport(sshd, wd, scp_mode="legacy")
    src = tmp_path / "payload.txt"
    src.write_text("legacy")
    name = "d $(touch PWNED5)/f 'q' `id` *.txt"
    t.put(src, name)
    assert (wd / name).read_text() == "legacy"
    t.get(name, tmp_path / "back.txt")
    assert (tmp_path / "back.txt").read_text() == "legacy"
    assert "-O" in t.scp_argv(["x"], "y") and "-s" not in t.scp_argv(["x"], "y")
    assert not list(tmp_path.rglob("PWNED*")) and not list(Path.home().glob("PWNED*"))
    t.close()


def test_profile_without_user_or_port_leaves_ssh_config_in_charge(sshd, tiny, tmp_path, monkeypatch):
    """A profile naming only a Host alias: user, port, key and known_hosts come from the OpenSSH
    config (-F here; ~/.ssh/config is read the same way), and no -l/-p overrides them."""
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    alias = sshd.alias_config(tmp_path / "ssh_config")
    (cfg / "aliaspi.toml").write_text(
        f'transport = "ssh"\npython = "{sys.executable}"\nworkdir = "{tmp_path / "w"}"\nvenv = ""\n'
        f'[ssh]\nhost = "edgefair-loopback"\nssh_config = "{alias}"\n')
    monkeypatch.setenv("EDGEFAIR_CONFIG_DIR", str(cfg))
    with open_transport(resolve_device("aliaspi")) as t:
        argv = t.ssh_argv("true")
        assert "-l" not in argv and "-p" not in argv and "-i" not in argv
        assert t.describe() == "ssh edgefair-loopback"
        r = run_artifact(t, tiny / "onnx-fp32-s0", tiny / "batch.npz", overrides=FAST)
    assert r["ok"] and r["host"]["target"] == "ssh edgefair-loopback"
