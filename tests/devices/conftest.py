"""Fixtures for the device tests: tiny real artefacts, a real OpenSSH server on 127.0.0.1,
the stand-in adb, and the pi4-emu sysroot (cached across runs in $EDGEFAIR_CACHE_DIR)."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SYSTEM_PACKAGES_SCRIPT = REPO / "scripts" / "ci-system-packages.sh"
SSHD = "/usr/sbin/sshd"

# A fast measurement protocol for tests (the agent's --min-runs ... flags).
FAST = {"warmup_runs": 2, "warmup_seconds": 0.0, "min_runs": 20, "min_seconds": 0.02,
        "max_seconds": 5.0}

_installed_once: dict[str, str | None] = {}


def ensure_system_packages(binary: str) -> str | None:
    """None when ``binary`` is present (installing the system packages if we may), else why not."""
    if Path(binary).exists():
        return None
    if "done" not in _installed_once:
        reason = None
        if os.geteuid() != 0:
            reason = "not root, cannot apt-get install"
        elif not SYSTEM_PACKAGES_SCRIPT.exists():
            reason = f"{SYSTEM_PACKAGES_SCRIPT} missing"
        else:
            r = subprocess.run(["bash", str(SYSTEM_PACKAGES_SCRIPT)], capture_output=True,
                               text=True, timeout=900)
            if r.returncode != 0:
                reason = (r.stderr.strip().splitlines() or ["failed"])[-1]
        _installed_once["done"] = reason
    if Path(binary).exists():
        return None
    return (f"{binary} is missing and could not be installed "
            f"({_installed_once['done'] or 'scripts/ci-system-packages.sh did not provide it'})")


# --------------------------------------------------------------------------- artefacts
@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    """OUT/{onnx-fp32-s0, tflite-int8-s0}/ and OUT/batch.npz (built in a subprocess)."""
    out = tmp_path_factory.mktemp("tiny-artifacts")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    r = subprocess.run([sys.executable, str(HERE / "tiny_models.py"), str(out)],
                       capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0 or not (out / "DONE").exists():
        pytest.fail("building the tiny test models failed: " + r.stderr[-2000:])
    return out


# --------------------------------------------------------------------------- sshd
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            # ppid is the 4th field after the ")" that closes the command name
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(d.name))
    return out


def descendants(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        for c in _children(p):
            seen.append(c)
            todo.append(c)
    return seen


class SshServer:
    """A real OpenSSH sshd on 127.0.0.1:port with its own host key and one user key."""

    def __init__(self, base: Path):
        self.base = base
        self.user = getpass.getuser()
        self.port = free_port()
        self.host_key = base / "ssh_host_ed25519_key"
        self.user_key = base / "id_ed25519"
        self.other_key = base / "other_ed25519"
        self.known_hosts = base / "known_hosts"
        self.config = base / "sshd_config"
        self.log = base / "sshd.log"
        self.proc: subprocess.Popen | None = None
        for key in (self.host_key, self.user_key, self.other_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", key.name,
                            "-f", str(key)], check=True)
        (base / "authorized_keys").write_text(Path(str(self.user_key) + ".pub").read_text())
        host_pub = Path(str(self.host_key) + ".pub").read_text().split()
        # known_hosts written from the host public key: checking stays ON.
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        for p in (self.user_key, self.other_key, self.host_key):
            p.chmod(0o600)
        self.config.write_text("\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {base / 'authorized_keys'}",
            f"PidFile {base / 'sshd.pid'}",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "Subsystem sftp internal-sftp",
            "MaxStartups 50:30:100",
            "MaxSessions 50",
            "LogLevel INFO",
            "",
        ]))

    def start(self) -> None:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege-separation dir
        logf = open(self.log, "a")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)],
                                     stdout=logf, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        logf.close()
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sshd exited: " + self.log.read_text()[-1000:])
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("sshd did not start: " + self.log.read_text()[-1000:])

    def kill(self) -> None:
        """SIGKILL the listener and every session process it forked (a dropped link)."""
        if self.proc is None:
            return
        pids = descendants(self.proc.pid)
        sshd_pids = [p for p in pids if _comm(p).startswith("sshd")]
        for p in [self.proc.pid, *sshd_pids]:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        pids = descendants(self.proc.pid)
        for p in [self.proc.pid, *pids]:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def connections(self) -> int:
        """SSH connections this server has accepted so far (one 'Accepted publickey' line each)."""
        return self.log.read_text(errors="replace").count("Accepted publickey for ")

    def alias_config(self, path: Path, alias: str = "edgefair-loopback") -> Path:
        """An OpenSSH client config with a Host alias naming this server, user, key and known_hosts."""
        path.write_text(f"Host {alias}\n  HostName 127.0.0.1\n  Port {self.port}\n  User {self.user}\n"
                        f"  IdentityFile {self.user_key}\n  IdentitiesOnly yes\n"
                        f"  UserKnownHostsFile {self.known_hosts}\n")
        return path

    def profile_toml(self, *, workdir: str, python: str = sys.executable,
                     identity: Path | None = None, known_hosts: Path | None = None) -> str:
        import json
        return "\n".join([
            'description = "test sshd on 127.0.0.1"',
            'transport = "ssh"',
            f"python = {json.dumps(python)}",
            f"workdir = {json.dumps(workdir)}",
            "threads = 1",
            "timeout_s = 120",
            "[ssh]",
            'host = "127.0.0.1"',
            f"user = {json.dumps(self.user)}",
            f"port = {self.port}",
            f"identity_file = {json.dumps(str(identity or self.user_key))}",
            f"known_hosts = {json.dumps(str(known_hosts or self.known_hosts))}",
            "connect_timeout_s = 5",
            "server_alive_interval_s = 2",
            "server_alive_count_max = 2",
            "",
        ])


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    why = ensure_system_packages(SSHD)
    if why:
        pytest.skip(why)
    for b in ("ssh", "scp", "ssh-keygen"):
        if shutil.which(b) is None:
            pytest.skip(f"OpenSSH client binary {b} missing and could not be installed")
    server = SshServer(tmp_path_factory.mktemp("sshd"))
    server.start()
    yield server
    server.stop()


# --------------------------------------------------------------------------- adb stand-in
@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    """The stand-in adb (tests/devices/fake_adb.py) first on PATH; returns its root."""
    sys.path.insert(0, str(HERE))
    try:
        import fake_adb as fa
    finally:
        sys.path.remove(str(HERE))
    root = tmp_path / "adbroot"
    bindir = fa.install(root)
    monkeypatch.setenv("FAKE_ADB_ROOT", str(root))
    monkeypatch.setenv("FAKE_ADB_SERIAL", "STANDIN01")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.delenv("FAKE_ADB_CORRUPT", raising=False)
    monkeypatch.delenv("FAKE_ADB_OFFLINE", raising=False)
    return root


# --------------------------------------------------------------------------- pi4-emu
@pytest.fixture(scope="session")
def emu_sysroot() -> Path:
    """The pi4-emu sysroot, built once into $EDGEFAIR_CACHE_DIR/pi4-emu (or
    ~/.cache/edgefair/pi4-emu) and reused by later runs."""
    from edgefair.devices.emulated import default_cache_dir, setup_emulated_pi

    why = ensure_system_packages("/usr/bin/qemu-aarch64-static")
    if why:
        pytest.skip(why)
    t0 = time.perf_counter()
    root = setup_emulated_pi(default_cache_dir(),
                             progress=lambda m: print(f"[pi4-emu] {m}", file=sys.stderr))
    print(f"[pi4-emu] sysroot ready after {time.perf_counter() - t0:.1f} s: {root}",
          file=sys.stderr)
    return root
