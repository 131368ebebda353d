"""A Raspberry Pi (or any POSIX box) over OpenSSH: the ``ssh`` and ``scp`` binaries.

Nothing here goes through a local shell: ssh/scp get argv lists. The remote command is
one POSIX sh script from :func:`edgefair.devices.base.shell_script` in which every
argument is ``shlex.quote``-d. ``scp`` runs in its default (SFTP) mode, where remote
paths are not shell-expanded; download paths get their glob characters escaped.

Host keys are checked: ``StrictHostKeyChecking=yes`` unless a profile explicitly asks
for ``accept-new``; an unknown or changed key is refused with a one-line DeviceError.
``~/.ssh/config`` is honoured: user, port and identity are passed only when the profile
sets them.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Sequence
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
                   r"Timeout, server .* not responding|client_loop|"
                   r"connection (?:lost|closed)|lost connection", re.I)

_GLOB_CHARS = re.compile(r"([\\*?\[\]{}])")


def _glob_escape(path: str) -> str:
    return _GLOB_CHARS.sub(r"\\\1", path)


class SSHTransport(Transport):
    """Runs commands over ``ssh`` and copies with ``scp``; host keys always checked."""

    kind = "ssh"

    def __init__(self, *, name: str, host: str, user: str | None = None, port: int | None = None,
                 workdir: str = "/tmp/edgefair", python: Sequence[str] = ("python3",),
                 identity_file: str | None = None, known_hosts: str | None = None,
                 strict_host_key_checking: str = "yes", connect_timeout_s: int = 10,
                 server_alive_interval_s: int = 5, server_alive_count_max: int = 3,
                 ssh_config: str | None = None, options: Sequence[str] = (),
                 ssh_binary: str = "ssh", scp_binary: str = "scp"):
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
        self._resolved_workdir: str | None = None

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
        return opts

    def ssh_argv(self, remote_script: str) -> list[str]:
        argv = [self.ssh_binary, *self._common_options(), "-T"]
        if self.user:
            argv += ["-l", self.user]
        if self.port:
            argv += ["-p", str(self.port)]
        # "--" ends options; the host is a separate argv element, the script one string.
        return argv + ["--", self.host, remote_script]

    def scp_argv(self, sources: list[str], target: str) -> list[str]:
        argv = [self.scp_binary, *self._common_options(), "-q", "-p", "-r"]
        if self.port:
            argv += ["-P", str(self.port)]
        return argv + ["--", *sources, target]

    def _remote_spec(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
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
        raise DeviceError(f"{self.describe()}: connection lost during {during} (exit 255)")

    def _ssh(self, script: str, *, timeout_s: float | None, during: str) -> CommandOutcome:
        # The local timeout is a little longer than the device-side one so that the
        # device's timeout(1) normally fires first and reports 124.
        local_timeout = None if timeout_s is None else timeout_s + self.connect_timeout_s + 15
        out = run_subprocess(self.ssh_argv(script), cwd=None, env=None, timeout_s=local_timeout)
        self._raise_if_transport_failed(out, during)
        return out

    # -- Transport API -----------------------------------------------------------
    def _prepare(self) -> None:
        wd = self._workdir
        if wd == "~" or wd.startswith("~/"):
            target = '"$HOME"' + ("" if wd == "~" else "/" + shlex.quote(wd[2:]))
        else:
            target = shlex.quote(wd)
        script = f"mkdir -p -- {target} && cd -- {target} && pwd -P"
        out = self._ssh(script, timeout_s=60, during="prepare")
        if not out.ok:
            raise DeviceError(f"{self.describe()}: cannot create work dir {wd} "
                              f"({out.last_error_line() or f'exit {out.exit_code}'})")
        resolved = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
        if not resolved.startswith("/"):
            raise DeviceError(f"{self.describe()}: work dir {wd} did not resolve ({resolved!r})")
        self._resolved_workdir = resolved

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
        out = run_subprocess(self.scp_argv(sources, self._remote_spec(target)),
                             cwd=None, env=None, timeout_s=600)
        self._raise_if_transport_failed(_as_255(out), "put")
        if not out.ok:
            raise DeviceError(f"{self.describe()}: scp to {dst} failed "
                              f"({out.last_error_line() or f'exit {out.exit_code}'})")

    def get(self, remote_path: str, local_path_: Path | str) -> None:
        src = self.remote(remote_path)
        dst = local_path(local_path_)
        dst.parent.mkdir(parents=True, exist_ok=True)
        out = run_subprocess(self.scp_argv([self._remote_spec(_glob_escape(src))], str(dst)),
                             cwd=None, env=None, timeout_s=600)
        self._raise_if_transport_failed(_as_255(out), "get")
        if not out.ok or not dst.exists():
            raise DeviceError(f"{self.describe()}: cannot fetch {src} "
                              f"({out.last_error_line() or f'exit {out.exit_code}'})")


def _as_255(out: CommandOutcome) -> CommandOutcome:
    """scp exits 1 (not 255) when its ssh connection fails; look at the message instead."""
    if out.exit_code not in (0, 255) and (_HOSTKEY.search(out.stderr) or _AUTH.search(out.stderr)
                                          or _LOST.search(out.stderr)
                                          or _CONNECT.search(out.stderr)):
        return CommandOutcome(out.argv, 255, out.stdout, out.stderr, out.duration_s,
                              out.timed_out)
    return out
