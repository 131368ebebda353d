"""JSON without NaN, files that are either whole or absent, and one-line error text.

The device agent (``edgefair/runtimes/agent.py``) keeps standard-library copies of
:func:`jsonable`, :func:`atomic_write_json` and :func:`one_line`; a test checks they agree.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

ONE_LINE_LIMIT = 300


def jsonable(obj: Any) -> Any:
    """Plain JSON types: dataclasses, numpy scalars/arrays, tuples, Paths; NaN/inf become None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays and scalars
        return jsonable(obj.tolist())
    if isinstance(obj, (bytes, bytearray)):
        return obj.decode("utf-8", "replace")
    return str(obj)


def dumps(obj: Any, *, indent: int | None = None, sort_keys: bool = False) -> str:
    """``json.dumps`` of :func:`jsonable` (never NaN, never a non-JSON type)."""
    return json.dumps(jsonable(obj), indent=indent, sort_keys=sort_keys, allow_nan=False, ensure_ascii=False)


def atomic_write_bytes(path: Path | str, data: bytes, *, mode: int = 0o644) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and not e.filename:  # name the file the user asked for
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise
    return path


def atomic_write_text(path: Path | str, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj: Any, *, indent: int | None = 2) -> Path:
    return atomic_write_text(path, dumps(obj, indent=indent) + "\n")


def one_line(text: object, *, limit: int = ONE_LINE_LIMIT) -> str:
    """Collapse all whitespace (newlines included) to single spaces and cap the length."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def error_text(exc: BaseException, *, limit: int = ONE_LINE_LIMIT) -> str:
    """One line for an exception: a handled error's own message; anything else ``Type: first line``
    (a library's later lines are usually a traceback or a dump, not the reason)."""
    from edgefair.contracts.errors import EdgefairError

    if isinstance(exc, EdgefairError):
        return one_line(str(exc) or type(exc).__name__, limit=limit)
    first = next((ln for ln in str(exc).splitlines() if ln.strip()), "")
    return one_line(type(exc).__name__ + (": " + first if first else ""), limit=limit)
