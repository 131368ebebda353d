"""Terminal plumbing shared by every command: stderr console, progress, JSON, errors."""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from edgefair.contracts.errors import EdgefairError
from edgefair.contracts.jsonio import dumps


def _stderr_copy() -> Any:
    """A file on a duplicate of fd 2: converters that redirect fd 1/2 into a log file
    (onnx2tf, TensorFlow) cannot swallow our progress frames or error lines."""
    try:
        return os.fdopen(os.dup(2), "w", buffering=1)
    except OSError:
        return sys.stderr


# Logs, tables and progress go to stderr; stdout carries only the --json document.
# Piped into a log (make, CI) rich would fall back to 80 columns and fold the tables.
_file = _stderr_copy()
if _file is not sys.stderr:
    atexit.register(_file.close)  # flushed and closed at exit (no ResourceWarning)
_width = None if os.environ.get("COLUMNS") or (hasattr(_file, "isatty") and _file.isatty()) else 200
err = Console(file=_file, highlight=False, width=_width)


class CLIError(EdgefairError):
    """A failure the user can act on; the CLI prints it as one line and exits non-zero."""


def emit_json(doc: Any) -> None:
    """Write the one JSON document of a --json run to stdout (NaN-free)."""
    sys.stdout.write(dumps(doc, indent=2) + "\n")
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
