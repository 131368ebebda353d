"""Artefacts are built in ``<out>/.staging/`` and renamed into place only when complete.

A crash or Ctrl-C leaves at most a staging folder behind (cleaned on the next export);
an artefact folder is therefore always whole. Failed parity checks keep their folder in
``<out>/.failed/<name>`` for inspection.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from pathlib import Path

STAGING = ".staging"
FAILED = ".failed"
STALE_SECONDS = 60


class Staging:
    """The staging area of one output folder."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.root = self.out / STAGING

    def new(self, name: str) -> Path:
        """A fresh, empty folder to build ``name`` in."""
        path = self.root / f"{name}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path

    def work_dir(self) -> Path:
        """A scratch folder owned by this process (intermediate ONNX files, calibration data)."""
        return self.root / f"work-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def publish(self, staging: Path, name: str) -> Path:
        """Rename the finished folder into place; an older artefact of that name is swapped out first."""
        final = self.out / name
        old = None
        if final.exists():
            old = self.root / f"old-{name}-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
        os.replace(staging, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(self.out / FAILED / name, ignore_errors=True)
        return final

    def keep_failed(self, staging: Path, name: str) -> Path:
        """Copy a failed build to ``<out>/.failed/<name>`` for inspection."""
        dst = self.out / FAILED / name
        shutil.rmtree(dst, ignore_errors=True)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staging, dst)
        return dst

    def clean_stale(self) -> None:
        """Remove leftovers of exports whose process is gone."""
        if not self.root.is_dir():
            return
        for p in self.root.iterdir():
            if not _owner_alive(p.name) and time.time() - p.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(p, ignore_errors=True)

    def remove_if_empty(self) -> None:
        try:
            self.root.rmdir()
        except OSError:
            pass


def _owner_alive(folder_name: str) -> bool:
    m = re.match(r"work-(\d+)-", folder_name)
    if not m:
        return False
    pid = int(m.group(1))
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return pid != os.getpid()
