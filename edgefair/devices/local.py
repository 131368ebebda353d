"""The desktop itself: every command in a fresh subprocess, files in a temporary work dir."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from edgefair.devices.base import CommandOutcome, CommandRequest, DeviceError, Transport, local_path


def run_subprocess(argv: Sequence[str], *, cwd: str | os.PathLike | None,
                   env: Mapping[str, str] | None, timeout_s: float | None,
                   stdin_bytes: bytes | None = None) -> CommandOutcome:
    """Run argv (no shell) in its own process group; on timeout kill the whole group."""
    argv = [str(a) for a in argv]
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=dict(env) if env is not None else None,
            stdin=subprocess.PIPE if stdin_bytes is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except FileNotFoundError as e:
        return CommandOutcome(argv, 127, "", f"{argv[0]}: not found ({e.strerror})",
                              time.perf_counter() - t0, False)
    except PermissionError as e:
        return CommandOutcome(argv, 126, "", f"{argv[0]}: cannot execute ({e.strerror})",
                              time.perf_counter() - t0, False)
    timed_out = False
    try:
        out, err = proc.communicate(stdin_bytes, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        out, err = proc.communicate()
    except BaseException:
        _kill_group(proc)
        proc.communicate()
        raise
    return CommandOutcome(argv, proc.returncode, out.decode("utf-8", "replace"),
                          err.decode("utf-8", "replace"), time.perf_counter() - t0, timed_out)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass


def copy_into(src: Path, dst: Path) -> None:
    """Copy a file or a tree to ``dst``, replacing what is there."""
    if not src.exists():
        raise DeviceError(f"local path {src} does not exist")
    if dst.is_dir() and not dst.is_symlink():
        shutil.rmtree(dst)
    elif dst.exists() or dst.is_symlink():
        dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy2(src, dst)


class LocalTransport(Transport):
    """Runs the agent on this machine in a fresh subprocess (clean RSS accounting)."""

    kind = "local"

    def __init__(self, *, name: str = "local", workdir: str | None = None,
                 python: Sequence[str] | None = None, env: Mapping[str, str] | None = None):
        self._own_tmp = workdir is None
        if workdir is None:
            workdir = tempfile.mkdtemp(prefix="edgefair-local-")
        super().__init__(name=name, workdir=str(local_path(workdir)),
                         python=list(python) if python else [sys.executable])
        self.base_env = dict(env or {})

    def _prepare(self) -> None:
        Path(self.workdir).mkdir(parents=True, exist_ok=True)

    def _path(self, remote_path: str) -> Path:
        return Path(self.remote(remote_path))

    def put(self, local_path_: Path | str, remote_path: str) -> None:
        self.prepare()
        copy_into(local_path(local_path_), self._path(remote_path))

    def get(self, remote_path: str, local_path_: Path | str) -> None:
        src = self._path(remote_path)
        if not src.is_file():
            raise DeviceError(f"{self.describe()}: {src} not found on device")
        dst = local_path(local_path_)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)

    def child_env(self, request: CommandRequest) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.base_env)
        env.update(request.env)
        return env

    def run(self, request: CommandRequest) -> CommandOutcome:
        self.prepare()
        cwd = self.workdir if request.cwd is None else self.remote(request.cwd)
        return run_subprocess(request.argv, cwd=cwd, env=self.child_env(request),
                              timeout_s=request.timeout_s)

    def describe(self) -> str:
        return f"local {self.name}" if self.name != "local" else "local"

    def close(self) -> None:
        if self._own_tmp:
            shutil.rmtree(self.workdir, ignore_errors=True)
