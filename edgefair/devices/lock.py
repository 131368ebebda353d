"""One measurement per device at a time: an advisory lock per device name on this host.

Two ``bench run`` (or sweeps) on one device would measure concurrently and skew each
other's timings. The first holds ``<cache>/locks/<device>.lock`` (``fcntl.flock``) for its
whole device run; the second waits, saying who holds it, or with ``wait=False`` refuses.
The lock is released when its holder exits, however it exits (the kernel drops flocks).
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edgefair.devices.base import DeviceError
from edgefair.paths import cache_dir

POLL_S = 0.5


class DeviceBusy(DeviceError):
    """Another process is measuring on this device (and we were told not to wait)."""


def lock_path(device: str) -> Path:
    root = cache_dir("locks") or Path("/tmp/edgefair-locks")
    root.mkdir(parents=True, exist_ok=True)
    return root / (re.sub(r"[^A-Za-z0-9._-]+", "_", device)[:120] + ".lock")


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "another process"
    except OSError:
        return "another process"


@contextmanager
def device_lock(device: str, *, wait: bool = True, on_wait: Callable[[str], None] | None = None,
                timeout_s: float | None = None) -> Iterator[None]:
    """Hold the device's lock for the block; wait for it (telling ``on_wait`` once) or refuse."""
    path = lock_path(device)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, path, device, wait, on_wait, timeout_s)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}".encode())
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _acquire(fd: int, path: Path, device: str, wait: bool, on_wait: Callable[[str], None] | None,
             timeout_s: float | None) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    who = _holder(path)
    if not wait:
        raise DeviceBusy(f"device {device} is busy: {who} is measuring on it (drop --no-wait to wait for it)")
    if on_wait is not None:
        on_wait(f"device {device} is busy ({who}): waiting for it to finish")
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if deadline is not None and time.monotonic() > deadline:
                raise DeviceBusy(f"device {device} is still busy after {timeout_s:g} s ({who})") from None
            time.sleep(POLL_S)
