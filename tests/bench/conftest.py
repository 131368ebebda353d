"""Helpers for running the real ``bench`` CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def bench(tmp_path_factory):
    """Run ``python -m edgefair ARGS`` and return the CompletedProcess (text)."""
    cache = os.environ.get("EDGEFAIR_CACHE_DIR") or str(tmp_path_factory.getbasetemp() / "cache")

    def run(*args: str, cwd: Path | None = None, check: bool = False,
            timeout: float = 600) -> subprocess.CompletedProcess:
        env = {**os.environ, "EDGEFAIR_CACHE_DIR": cache, "COLUMNS": "160"}
        proc = subprocess.run([sys.executable, "-m", "edgefair", *map(str, args)], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"bench {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr}")
        return proc

    return run


def parse_json(proc: subprocess.CompletedProcess) -> dict:
    return json.loads(proc.stdout)
