"""Where edgefair keeps caches, user configuration and, by default, results."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(kind: str) -> Path | None:
    """``$EDGEFAIR_CACHE_DIR/<kind>`` (default ~/.cache/edgefair); None when set to 'off'."""
    root = os.environ.get("EDGEFAIR_CACHE_DIR", "")
    if root.lower() == "off":
        return None
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgefair"
    return base / kind


def config_dir() -> Path:
    """``$EDGEFAIR_CONFIG_DIR`` (default ~/.config/edgefair)."""
    root = os.environ.get("EDGEFAIR_CONFIG_DIR", "")
    return Path(root) if root else Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "edgefair"


#: The one results database ``bench run``, ``fairness``, ``report``, ``gate`` and ``sweep`` share by default.
DEFAULT_DB = Path("results/results.db")
#: Where ``bench report`` (and ``bench sweep``) write report.html by default: next to DEFAULT_DB.
DEFAULT_REPORT = DEFAULT_DB.parent / "report"


def default_db() -> Path:
    """``$EDGEFAIR_DB`` when set, else DEFAULT_DB (relative to the working directory)."""
    return Path(os.environ.get("EDGEFAIR_DB") or DEFAULT_DB)
