"""Where edgefair keeps caches and user configuration."""

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
