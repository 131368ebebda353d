"""A Raspberry Pi (or any POSIX box) over OpenSSH: the ``ssh`` and ``scp`` binaries.

Nothing here goes through a local shell: ssh/scp get argv lists. The remote command is
one POSIX sh script from :func:`edgefair.devices.base.shell_script` in which every
argument is ``shlex.quote``-d.

- One connection per transport: every ssh and scp shares one OpenSSH ControlMaster
  (``ControlMaster=auto`` on a private socket, ``ControlPersist`` as a safety net);
  :meth:`SSHTransport.close` stops it and removes the socket. A dropped link is
  re-established by the next command.
- Uploads and downloads use SFTP (``scp -s``, OpenSSH >= 8.7), where remote paths are
  never shell-expanded (download paths get their glob characters escaped). An older
  client only speaks the legacy scp protocol, in which the remote shell expands paths:
  they are then ``shlex.quote``-d.
- Host keys are checked: ``StrictHostKeyChecking=yes`` unless a profile explicitly asks
  for ``accept-new``; an unknown or changed key is refused with a one-line DeviceError.
- ``~/.ssh/config`` is honoured: user, port and identity are passed only when the profile
  sets them.
- A profile's ``venv`` (default ``~/edgefair/venv``, made by ``bench devices setup`` with
  the profile's ``python``) runs the agent once it exists; until then ``python`` does.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from edgefair.devices.base import (
    TIMEOUT_EXIT,
    CommandOutcome,
    CommandRequest,
    DeviceError,
    Transport,
    local_path,
    shell_script,
)
from edgefair.devices.local import run_subprocess

ALLOWED_HOST_KEY_POLICIES = ("yes", "accept-new")

# stderr lines OpenSSH prints when the connection, not the remote command, failed.
_HOSTKEY = re.compile(r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|"
                      r"No (?:RSA|ED25519|ECDSA|\S+) host key is known", re.I)
_AUTH = re.compile(r"Permission denied \(|Too many authentication failures|"
                   r"no matching host key type", re.I)
_CONNECT = re.compile(r"ssh: connect to host|Could not resolve hostname|Connection refused|"
                      r"Connection timed out during banner|No route to host|"
                      r"Network is unreachable|kex_exchange_identification|"
                      r"Connection closed by \S+ port \d+$", re.I)
_LOST = re.compile(r"closed by remote host|Connection reset|Broken pipe|"
                   r"Timeout, server .* not responding|client_loop|mux_client|"
                   r"connection (?:lost|closed)|lost connection", re.I)

#: Idle seconds after which an abandoned ControlMaster exits by itself (close() stops it at once).
CONTROL_PERSIST_S = 120
#: ``scp -s`` (SFTP) appeared in OpenSSH 8.7; ``-O`` (legacy protocol) in 9.0.
SCP_SFTP_FLAG = (8, 7)
SCP_LEGACY_FLAG = (9, 0)
SCP_MODES = ("sftp", "legacy")

_GLOB_CHARS = re.compile(r"([\\*?\[\]{}])")


def _glob_escape(path: str) -> str:
    return _GLOB_CHARS.sub(r"\\\1", path)


@lru_cache(maxsize=8)
def openssh_version(ssh_binary: str = "ssh") -> tuple[int, int] | None:
    """(major, minor) of the local OpenSSH client from ``ssh -V`` (None when unknown)."""
    out = run_subprocess([ssh_binary, "-V"], cwd=None, env=None, timeout_s=30)
    m = re.search(r"OpenSSH_(\d+)\.(\d+)", out.stderr + out.stdout)
    return (int(m.group(1)), int(m.group(2))) if m else None


def home_expr(path: str) -> str:
    """``path`` as a quoted sh word, a leading ``~/`` resolved against the device's $HOME."""
    if path == "~" or path.startswith("~/"):
        return '"$HOME"' + ("" if path == "~" else "/" + shlex.quote(path[2:]))
    return shlex.quote(path)


def _stop_master(argv: list[str], control_dir: str) -> None:
    """Ask the ControlMaster to exit, then remove its private socket folder."""
    if os.path.exists(os.path.join(control_dir, "cm")):
        run_subprocess(argv, cwd=None, env=None, timeout_s=15)
    shutil.rmtree(control_dir, ignore_errors=True)


class SSHTransport(Transport):
    """Runs commands over ``ssh`` and copies with ``scp``; host keys always checked."""

    kind = "ssh"

    def __init__(self, *, name: str, host: str, user: str | None = None, port: int | None = None,
                 workdir: str = "/tmp/edgefair", python: Sequence[str] = ("python3",),
                 identity_file: str | None = None, known_hosts: str | None = None,
                 strict_host_key_checking: str = "yes", connect_timeout_s: int = 10,
                 server_alive_interval_s: int = 5, server_alive_count_max: int = 3,
                 ssh_config: str | None = None, options: Sequence[str] = (),
                 ssh_binary: str = "ssh", scp_binary: str = "scp", venv: str | None = None,
                 multiplex: bool = True, scp_mode: str | None = None):
        if strict_host_key_checking not in ALLOWED_HOST_KEY_POLICIES:
            raise DeviceError(f"ssh {host}: StrictHostKeyChecking={strict_host_key_checking!r} "
                              f"refused; host keys are checked (allowed: yes, accept-new)")
        if not host or host.startswith("-"):
            raise DeviceError(f"ssh: invalid host {host!r}")
        if user is not None and (not user or user.startswith("-") or "@" in user):
            raise DeviceError(f"ssh {host}: invalid user {user!r}")
        super().__init__(name=name, workdir=workdir, python=python)
        self.host, self.user, self.port = host, user, port
        self.identity_file = identity_file
        self.known_hosts = known_hosts
        self.strict = strict_host_key_checking
        self.connect_timeout_s = int(connect_timeout_s)
        self.server_alive_interval_s = int(server_alive_interval_s)
        self.server_alive_count_max = int(server_alive_count_max)
        self.ssh_config = ssh_config
        self.extra_options = list(options)
        self.ssh_binary, self.scp_binary = ssh_binary, scp_binary
        if scp_mode is not None and scp_mode not in SCP_MODES:
            raise DeviceError(f"ssh {host}: scp mode {scp_mode!r} (expected sftp or legacy)")
        self._scp_mode = scp_mode
        self.venv, self.multiplex = venv, multiplex
        self.base_python = list(python)  # what makes the venv; runs use the venv's python once it exists
        self.venv_path: str | None = None  # the venv resolved on the device (set by prepare)
        self.venv_ready = False  # its bin/python exists on the device
        self.home: str | None = None
        self._resolved_workdir: str | None = None
        self._control_dir: str | None = None
        self.connections_opened = 0  # ControlMaster connections this transport started
        self._finalizer: weakref.finalize | None = None

    # -- naming ------------------------------------------------------------------
    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def describe(self) -> str:
        return f"ssh {self.destination}" + (f":{self.port}" if self.port else "")

    @property
    def workdir(self) -> str:
        return self._resolved_workdir or self._workdir

    # -- argv building -----------------------------------------------------------
    def _common_options(self) -> list[str]:
        opts: list[str] = []
        if self.ssh_config:
            opts += ["-F", str(local_path(self.ssh_config))]
        opts += ["-o", "BatchMode=yes",
                 "-o", f"ConnectTimeout={self.connect_timeout_s}",
                 "-o", f"ServerAliveInterval={self.server_alive_interval_s}",
                 "-o", f"ServerAliveCountMax={self.server_alive_count_max}",
                 "-o", f"StrictHostKeyChecking={self.strict}",
                 "-o", "LogLevel=ERROR"]
        if self.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={local_path(self.known_hosts)}"]
        if self.identity_file:
            opts += ["-i", str(local_path(self.identity_file)), "-o", "IdentitiesOnly=yes"]
        for o in self.extra_options:
            opts += ["-o", o]
        return opts + self._control_options()

    # -- connection sharing --------------------------------------------------------
    @property
    def control_path(self) -> str | None:
        return None if self._control_dir is None else os.path.join(self._control_dir, "cm")

    def _control_options(self) -> list[str]:
        if not self.multiplex:
            return []
        if self._control_dir is None:
            # A short private folder: unix socket paths are limited to ~104 bytes.
            base = "/tmp" if os.path.isdir("/tmp") else None
            self._control_dir = tempfile.mkdtemp(prefix="edgefair-ssh-", dir=base)
            exit_argv = [self.ssh_binary, *self._host_options(), "-o", f"ControlPath={self.control_path}",
                         "-O", "exit", "--", self.host]
            self._finalizer = weakref.finalize(self, _stop_master, exit_argv, self._control_dir)
        return ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_path}",
                "-o", f"ControlPersist={CONTROL_PERSIST_S}"]

    def _host_options(self) -> list[str]:
        opts = ["-F", str(local_path(self.ssh_config))] if self.ssh_config else []
        if self.user:
            opts += ["-l", self.user]
        if self.port:
            opts += ["-p", str(self.port)]
        return opts

    def _count_connection(self) -> None:
        """A command started while no master is listening opens (and becomes) the connection."""
        if self.multiplex and not os.path.exists(self.control_path or ""):
            self.connections_opened += 1

    def close(self) -> None:
        """Stop the ControlMaster (if any) and remove its socket folder."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._control_dir = None

    def ssh_argv(self, remote_script: str) -> list[str]:
        argv = [self.ssh_binary, *self._common_options(), "-T"]
        if self.user:
            argv += ["-l", self.user]
        if self.port:
            argv += ["-p", str(self.port)]
        # "--" ends options; the host is a separate argv element, the script one string.
        return argv + ["--", self.host, remote_script]

    @property
    def scp_mode(self) -> str:
        """``sftp`` (paths taken literally) when the client can force it, else ``legacy``."""
        if self._scp_mode is None:
            version = openssh_version(self.ssh_binary)
            self._scp_mode = "sftp" if version is None or version >= SCP_SFTP_FLAG else "legacy"
        return self._scp_mode

    def scp_argv(self, sources: list[str], target: str) -> list[str]:
        argv = [self.scp_binary, *self._common_options(), "-q", "-p", "-r"]
        if self.scp_mode == "sftp":
            argv.append("-s")
        elif (openssh_version(self.ssh_binary) or (0, 0)) >= SCP_LEGACY_FLAG:
            argv.append("-O")
        if self.port:
            argv += ["-P", str(self.port)]
        return argv + ["--", *sources, target]

    def _remote_spec(self, path: str, *, download: bool = False) -> str:
        """``[user@]host:path`` with the path as the chosen scp protocol needs it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.scp_mode == "legacy":  # the remote shell expands the path: quote it
            path = shlex.quote(path)
        elif download:  # SFTP globs download paths
            path = _glob_escape(path)
        return f"{self.user}@{host}:{path}" if self.user else f"{host}:{path}"

    # -- failures ----------------------------------------------------------------
    def _raise_if_transport_failed(self, out: CommandOutcome, during: str) -> None:
        """Exit 255 with an OpenSSH message means the connection, not the command, failed."""
        if out.exit_code != 255:
            return
        err = out.stderr
        if _HOSTKEY.search(err):
            kh = self.known_hosts or "~/.ssh/known_hosts"
            raise DeviceError(f"{self.describe()}: host key verification failed (the host key is "
                              f"unknown or changed; add the right key to {kh}, e.g. with "
                              f"ssh-keyscan, after checking its fingerprint)")
        if _AUTH.search(err):
            raise DeviceError(f"{self.describe()}: authentication failed ({out.last_error_line()})")
        if _CONNECT.search(err) and during in ("connect", "prepare"):
            raise DeviceError(f"{self.describe()}: cannot connect ({out.last_error_line()})")
        if _CONNECT.search(err) and not _LOST.search(err):
            raise DeviceError(f"{self.describe()}: cannot connect during {during} "
                              f"({out.last_error_line()})")
        reason = out.last_error_line() or ("the shared connection (ControlMaster) closed" if self.multiplex else "")
        raise DeviceError(f"{self.describe()}: connection lost during {during} (exit 255)"
                          + (f": {reason}" if reason else ""))

    def _ssh(self, script: str, *, timeout_s: float | None, during: str) -> CommandOutcome:
        # The local timeout is a little longer than the device-side one so that the
        # device's timeout(1) normally fires first and reports 124.
        local_timeout = None if timeout_s is None else timeout_s + self.connect_timeout_s + 15
        argv = self.ssh_argv(script)
        self._count_connection()
        out = run_subprocess(argv, cwd=None, env=None, timeout_s=local_timeout)
        self._raise_if_transport_failed(out, during)
        return out

    def _scp(self, sources: list[str], target: str, during: str) -> CommandOutcome:
        argv = self.scp_argv(sources, target)
        self._count_connection()
        out = run_subprocess(argv, cwd=None, env=None, timeout_s=600)
        self._raise_if_transport_failed(_as_255(out), during)
        return out

    # -- Transport API -----------------------------------------------------------
    def _prepare(self) -> None:
        """Create the work dir; learn $HOME and whether the profile's venv exists (one round trip)."""
        wd = self._workdir
        target = home_expr(wd)
        venv = home_expr(self.venv) if self.venv else "''"
        script = (f"mkdir -p -- {target} && cd -- {target} && pwd -P && printf '%s\\n' \"$HOME\" && "
                  f"v={venv} && printf '%s\\n' \"$v\" && if [ -n \"$v\" ] && [ -x \"$v/bin/python\" ]; "
                  "then echo venv=yes; else echo venv=no; fi")
        out = self._ssh(script, timeout_s=60, during="prepare")
        if not out.ok:
            raise DeviceError(f"{self.describe()}: cannot create work dir {wd} "
                              f"({out.last_error_line() or f'exit {out.exit_code}'})")
        lines = out.stdout.splitlines()[-4:]
        if len(lines) < 4 or not lines[0].startswith("/"):
            raise DeviceError(f"{self.describe()}: work dir {wd} did not resolve ({out.stdout.strip()!r})")
        self._resolved_workdir, self.home = lines[0], lines[1]
        self._use_venv(lines[2] or None, lines[3] == "venv=yes")

    def _use_venv(self, venv_path: str | None, ready: bool) -> None:
        """Run the agent with the venv's Python once it exists, else with the profile's python."""
        self.venv_path, self.venv_ready = venv_path, ready
        ready = ready and bool(venv_path)
        self.python = [posixpath.join(venv_path, "bin", "python")] if ready and venv_path else list(self.base_python)

    def refresh(self) -> None:
        """Look at the device again (after ``bench devices setup`` made the venv)."""
        self._prepared = False
        self.prepare()

    def run(self, request: CommandRequest) -> CommandOutcome:
        self.prepare()
        script = shell_script(request, self.workdir)
        out = self._ssh(script, timeout_s=request.timeout_s, during="run")
        if out.exit_code == TIMEOUT_EXIT and request.timeout_s and \
                out.duration_s >= request.timeout_s * 0.9:
            out = CommandOutcome(out.argv, out.exit_code, out.stdout, out.stderr,
                                 out.duration_s, True)
        return CommandOutcome(list(request.argv), out.exit_code, out.stdout, out.stderr,
                              out.duration_s, out.timed_out)

    def _mkdir_clean(self, remote_path: str, *, parent_only: bool) -> None:
        q = shlex.quote(remote_path)
        if parent_only:
            script = f"rm -rf -- {q} && mkdir -p -- {shlex.quote(posixpath.dirname(remote_path))}"
        else:
            script = f"rm -rf -- {q} && mkdir -p -- {q}"
        out = self._ssh(script, timeout_s=60, during="put")
        if not out.ok:
            raise DeviceError(f"{self.describe()}: cannot create {remote_path} "
                              f"({out.last_error_line() or f'exit {out.exit_code}'})")

    def put(self, local_path_: Path | str, remote_path: str) -> None:
        self.prepare()
        src = local_path(local_path_)
        if not src.exists():
            raise DeviceError(f"local path {src} does not exist")
        dst = self.remote(remote_path)
        if src.is_dir():
            # Copy the entries of src into a fresh dst (scp -r's "into an existing dir").
            self._mkdir_clean(dst, parent_only=False)
            sources = [str(p) for p in sorted(src.iterdir())]
            if not sources:
                return
            target = dst.rstrip("/") + "/"
        else:
            self._mkdir_clean(dst, parent_only=True)
            sources, target = [str(src)], dst
        out = self._scp(sources, self._remote_spec(target), "put")
        if not out.ok:
            raise DeviceError(f"{self.describe()}: scp to {dst} failed "
                              f"({out.last_error_line() or f'exit {out.exit_code}'})"
                              + self._space_note(dst, _local_bytes(src)))

    def _space_note(self, remote_path: str, needed_bytes: int) -> str:
        """'; the device has N KiB free in DIR, M KiB needed' when a full disk explains a failed upload
        (SFTP only says 'failed to upload'); '' when it does not, or the device cannot say."""
        folder = shlex.quote(posixpath.dirname(remote_path) or "/")
        try:
            out = self._ssh(f"df -Pk -- {folder} | tail -n 1", timeout_s=30, during="put")
        except DeviceError:
            return ""
        fields = out.stdout.split()
        if not out.ok or len(fields) < 4 or not fields[3].isdigit():
            return ""
        free_kib, needed_kib = int(fields[3]), -(-needed_bytes // 1024)
        if free_kib >= needed_kib:
            return ""
        return (f"; no space left on the device: {free_kib} KiB free in {posixpath.dirname(remote_path)}, "
                f"{needed_kib} KiB needed")

    def get(self, remote_path: str, local_path_: Path | str) -> None:
        src = self.remote(remote_path)
        dst = local_path(local_path_)
        dst.parent.mkdir(parents=True, exist_ok=True)
        out = self._scp([self._remote_spec(src, download=True)], str(dst), "get")
        if not out.ok or not dst.exists():
            raise DeviceError(f"{self.describe()}: cannot fetch {src} "
                              f"({out.last_error_line() or f'exit {out.exit_code}'})")


def _local_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def _as_255(out: CommandOutcome) -> CommandOutcome:
    """scp exits 1 (not 255) when its ssh connection fails; look at the message instead."""
    if out.exit_code not in (0, 255) and (_HOSTKEY.search(out.stderr) or _AUTH.search(out.stderr)
                                          or _LOST.search(out.stderr)
                                          or _CONNECT.search(out.stderr)):
        return CommandOutcome(out.argv, 255, out.stdout, out.stderr, out.duration_s,
                              out.timed_out)
    return out
