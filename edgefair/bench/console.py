"""Terminal plumbing shared by every command: stderr console, progress, JSON, errors."""

from __future__ import annotations

import json
import math
import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

def _stderr_copy():
    """A file on a duplicate of fd 2: converters that redirect fd 1/2 into a log file
    (onnx2tf, TensorFlow) cannot swallow our progress frames or error lines."""
    try:
        return os.fdopen(os.dup(2), "w", buffering=1)
    except OSError:
        return sys.stderr


# Logs, tables and progress go to stderr; stdout carries only the --json document.
# Piped into a log (make, CI) rich would fall back to 80 columns and fold the tables.
_file = _stderr_copy()
_width = None if os.environ.get("COLUMNS") or (hasattr(_file, "isatty") and _file.isatty()) else 200
err = Console(file=_file, highlight=False, width=_width)


class CLIError(Exception):
    """A failure the user can act on; the CLI prints it as one line and exits non-zero."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf become None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return _clean(obj.item())
    if hasattr(obj, "tolist"):
        return _clean(obj.tolist())
    return obj


def emit_json(doc: Any) -> None:
    """Write the one JSON document of a --json run to stdout."""
    sys.stdout.write(json.dumps(_clean(doc), indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


@contextmanager
def progress_bar(description: str, total: float | None, *, enabled: bool = True) -> Iterator[Any]:
    """A rich progress bar on stderr; yields ``update(completed, description=None)``."""
    prog = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=err, transient=False, disable=not enabled,
    )
    with prog:
        task = prog.add_task(description, total=total)

        def update(completed: float, description: str | None = None, total: float | None = None) -> None:
            kw: dict[str, Any] = {"completed": completed}
            if description is not None:
                kw["description"] = description
            if total is not None:
                kw["total"] = total
            prog.update(task, **kw)

        yield update
