"""The transport layer's vocabulary: one command request, its outcome, and the Transport API.

A transport moves files to and from a device work directory and runs one argv there
(like tox's execute layer: a request goes in, an outcome comes back). Every transport
runs argv lists, never shell strings built from untrusted text: where a remote shell is
unavoidable (ssh, adb shell) each argument is ``shlex.quote``-d by :func:`shell_script`.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefair.contracts.errors import EdgefairError
from edgefair.contracts.jsonio import one_line


class DeviceError(EdgefairError, RuntimeError):
    """A device, transport or profile failure. ``str(err)`` is one line naming the device."""

    def __init__(self, message: str):
        # One line, always: a multi-line stderr must never leak into the message.
        super().__init__(one_line(message, limit=2000))


class ProfileError(DeviceError):
    """An invalid device profile; the message names the file and the key."""


@dataclass(frozen=True)
class CommandRequest:
    """One command to run in the device work directory.

    ``argv`` is run as is (argv[0] looked up on the device's PATH); ``env`` adds variables
    on the device; ``cwd`` (relative to the work dir, or absolute) defaults to the work dir;
    ``timeout_s`` bounds the whole command (None: no bound).
    """

    argv: Sequence[str]
    timeout_s: float | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None

    def __post_init__(self):
        if isinstance(self.argv, (str, bytes)):
            raise TypeError("CommandRequest.argv must be a list of strings, not one string")
        object.__setattr__(self, "argv", [str(a) for a in self.argv])
        if not self.argv:
            raise ValueError("CommandRequest.argv is empty")
        env = dict(self.env or {})
        for k in env:
            if not _ENV_NAME.match(k):
                raise ValueError(f"invalid environment variable name {k!r}")
        object.__setattr__(self, "env", {k: str(v) for k, v in env.items()})


@dataclass(frozen=True)
class CommandOutcome:
    """What came back from one :class:`CommandRequest`."""

    argv: list[str]
    exit_code: int | None
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def last_error_line(self) -> str:
        """The last non-empty stderr line (else stdout's), for one-line error messages."""
        for text in (self.stderr, self.stdout):
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            if lines:
                return lines[-1][:300]
        return ""


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Exit status `timeout(1)` uses when it had to stop the command.
TIMEOUT_EXIT = 124


def shell_script(request: CommandRequest, workdir: str, *, use_timeout: bool = True,
                 timeout_cmd: str = "timeout") -> str:
    """A POSIX sh script that runs ``request`` verbatim in ``workdir`` on a remote shell.

    Every argument, path and value is ``shlex.quote``-d, so spaces, quotes, ``$(...)``
    and globs arrive unchanged. When the request has a timeout and the device has
    ``timeout(1)`` the command is bounded on the device as well, so that a run the host
    gave up on does not keep the device busy.
    """
    cwd = request.cwd if request.cwd is not None else workdir
    if not cwd.startswith("/"):
        cwd = posixpath.join(workdir, cwd)
    lines = [f"cd -- {shlex.quote(cwd)} || exit 97"]
    for k, v in request.env.items():
        lines.append(f"{k}={shlex.quote(v)}; export {k}")
    cmd = " ".join(shlex.quote(a) for a in request.argv)
    if use_timeout and request.timeout_s:
        secs = max(1, int(request.timeout_s + 0.999))
        lines.append(f"if command -v {timeout_cmd} >/dev/null 2>&1; then "
                     f"exec {timeout_cmd} -s TERM -k 5 {secs} {cmd}; fi")
    lines.append(f"exec {cmd}")
    return "\n".join(lines)


class Transport(ABC):
    """Moves files to a device work dir, runs commands there, brings files back.

    Remote paths are POSIX strings; a relative one is relative to :attr:`workdir`.
    ``python`` is the argv prefix that starts the device's Python (the profile's).
    """

    #: "local" | "ssh" | "adb" | "emulated"
    kind: str = "?"
    #: True when latencies measured through this transport mean nothing (emulation).
    emulated: bool = False
    #: The DeviceProfile it was opened from (set by open_transport), else None.
    profile: Any = None

    def __init__(self, *, name: str, workdir: str, python: Sequence[str]):
        self.name = name
        self._workdir = workdir
        self.python = list(python)
        self._prepared = False

    # -- paths ---------------------------------------------------------------
    @property
    def workdir(self) -> str:
        return self._workdir

    def remote(self, *parts: str) -> str:
        """Join ``parts`` onto the work dir (an absolute first part wins)."""
        return posixpath.join(self.workdir, *parts)

    # -- lifecycle -------------------------------------------------------------
    def prepare(self) -> None:
        """Create the work dir on the device (idempotent)."""
        if not self._prepared:
            self._prepare()
            self._prepared = True

    def _prepare(self) -> None:  # noqa: B027 (optional hook: most transports need no set-up)
        """Create the work dir on the device; the default needs nothing."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release what the transport holds on the host (never the device's files)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the three operations --------------------------------------------------
    @abstractmethod
    def put(self, local_path: Path | str, remote_path: str) -> None:
        """Copy a local file, or a directory tree, to ``remote_path`` (replacing it)."""

    @abstractmethod
    def run(self, request: CommandRequest) -> CommandOutcome:
        """Run one command; raises DeviceError only when the device itself is unreachable."""

    @abstractmethod
    def get(self, remote_path: str, local_path: Path | str) -> None:
        """Copy one remote file to ``local_path``; DeviceError when it is missing."""

    def describe(self) -> str:
        """A short human name for messages, e.g. ``ssh pi@raspberrypi.local:22``."""
        return f"{self.kind} {self.name}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()} workdir={self.workdir!r}>"


def local_path(p: Path | str) -> Path:
    return Path(os.path.expanduser(str(p))).absolute()
