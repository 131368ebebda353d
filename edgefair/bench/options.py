"""What every ``bench`` command shares: ``--json``, the error handler, default paths, value parsers."""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edgefair.bench.console import CLIError, emit_json, err
from edgefair.contracts.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EdgefairError
from edgefair.contracts.jsonio import error_text, one_line
from edgefair.paths import DEFAULT_REPORT as DEFAULT_REPORT
from edgefair.paths import default_db

#: The one results database ``run``, ``fairness``, ``report``, ``gate`` and ``sweep`` share by default
#: (``$EDGEFAIR_DB`` overrides it).
DEFAULT_DB = default_db()

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print one JSON document on stdout; logs stay on stderr.")


def _fail(name: str, message: str, code: int, as_json: bool) -> None:
    err.print(f"bench {name}: {message}", markup=False, soft_wrap=True)
    if as_json:
        emit_json({"ok": False, "command": name, "error": message, "exit_code": code})
    sys.exit(code)


def _internal_log(exc: BaseException) -> Path:
    from edgefair.paths import cache_dir

    log = (cache_dir("logs") or Path("/tmp")) / "last-error.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(traceback.format_exception(exc)))
    return log


def command_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn handled errors into one line on stderr (and, with --json, one JSON document on
    stdout) and their exit code. An unexpected exception still gets one line; its traceback
    goes to a log file."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        name = fn.__name__.removesuffix("_cmd").replace("_", " ")
        as_json = bool(kwargs.get("as_json"))
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException):
            raise
        except KeyboardInterrupt:
            _fail(name, "interrupted; finished results are kept", EXIT_INTERRUPTED, as_json)
        except EdgefairError as e:
            _fail(name, f"error: {one_line(str(e) or type(e).__name__, limit=2000)}", e.exit_code, as_json)
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
            _fail(name, f"error: {one_line(e.strerror or str(e))}: {e.filename}", 1, as_json)
        except OSError as e:  # disk full, read-only file system ...
            where = f": {e.filename}" if e.filename else ""
            _fail(name, f"error: {one_line(e.strerror or error_text(e))}{where}", 1, as_json)
        except Exception as e:  # a bug: one line for the user, the traceback in a file
            log = _internal_log(e)
            _fail(name, f"internal error: {error_text(e)} (traceback in {log})", EXIT_INTERNAL, as_json)

    return wrapper


def parse_fraction(value: str, name: str, *, minimum: float | None = 0.0) -> float:
    """'10%' or '0.1' → 0.1; below ``minimum`` is an error."""
    v = value.strip()
    try:
        x = float(v[:-1]) / 100 if v.endswith("%") else float(v)
    except ValueError:
        raise CLIError(f"{name}: '{value}' is not a number or a percentage like 10%") from None
    if x != x or (minimum is not None and x < minimum):
        raise CLIError(f"{name}: '{value}' must be >= {minimum:g}")
    return x


def parse_points(value: str, name: str) -> float:
    """'2pt' or '2' → 2.0 accuracy points; negative is an error."""
    v = value.strip().removesuffix("pt").strip()
    try:
        x = float(v)
    except ValueError:
        raise CLIError(f"{name}: '{value}' is not a number of points like 2pt") from None
    if x != x or x < 0:
        raise CLIError(f"{name}: '{value}' must be a number of points >= 0, like 2pt")
    return x
