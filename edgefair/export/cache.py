"""Content-hash keys: the same export inputs never convert twice.

key = sha256 over (checkpoint sha256, target, sparsity, pruning method, fine-tune epochs,
calibration count, QAT, parity sample size, export code version, converter versions). The
key is stored in the manifest (``export.cache_key``); an artefact folder whose manifest
carries the same key and whose model file still has the manifest's sha256 is reused.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from edgefair.export.manifest import read_manifest, sha256_file, tool_versions

EXPORT_VERSION = "1"


@lru_cache(maxsize=1)
def code_version() -> str:
    """EXPORT_VERSION plus a hash of this package's source (a code change invalidates the cache)."""
    h = hashlib.sha256(EXPORT_VERSION.encode())
    for p in sorted(Path(__file__).parent.glob("*.py")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return f"{EXPORT_VERSION}+{h.hexdigest()[:12]}"


def cache_key(*, checkpoint_sha256: str, target: str, sparsity: float, pruning: str, finetune_epochs: int,
              calib: int, qat: bool, parity_n: int, extra: dict[str, Any] | None = None) -> str:
    tools = {k: v for k, v in tool_versions().items() if k != "edgefair"}
    doc = {"checkpoint_sha256": checkpoint_sha256, "target": target, "sparsity": round(float(sparsity), 6),
           "pruning": pruning if sparsity > 0 else "none", "finetune_epochs": int(finetune_epochs) if sparsity > 0 or qat else 0,
           "calib": int(calib), "qat": bool(qat), "parity_n": int(parity_n), "code": code_version(),
           "tools": tools, "extra": extra or {}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def cached_manifest(folder: Path, key: str) -> dict[str, Any] | None:
    """The folder's manifest when it was built with ``key`` and its model file is intact."""
    m = read_manifest(folder)
    if not m or (m.get("export") or {}).get("cache_key") != key:
        return None
    model = Path(folder) / str(m.get("model_file", ""))
    try:
        if not model.is_file() or sha256_file(model) != (m.get("file") or {}).get("sha256"):
            return None
    except OSError:
        return None
    return m
