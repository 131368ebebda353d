"""One family of handled failures: every error a user can cause carries its exit code.

The CLI catches :class:`EdgefairError` and prints ``bench <command>: error: <first line>``
with ``exit_code``; anything else is a bug (exit 70, traceback in a file).
"""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


class EdgefairError(Exception):
    """A failure the user can act on; ``str(err)`` is one line naming the input and the problem
    (line breaks in quoted input are folded into spaces, so the contract holds whatever the input)."""

    exit_code: int = EXIT_FAILURE

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        text = str(message)
        if "\n" in text or "\r" in text:
            text = " ".join(text.split())
        super().__init__(text)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(EdgefairError, ValueError):
    """A bad command-line value or option combination (exit 2, like click's own)."""

    exit_code = EXIT_USAGE


class ContractError(EdgefairError, ValueError):
    """A manifest, agent result or settings document that breaks the contract."""


class ManifestError(ContractError):
    """A manifest.json that cannot be used; the message names the file and the problem."""


class ResultError(ContractError):
    """An agent result.json that breaks the contract."""
