"""Errors of ``bench export``: each message is one line the user can act on."""

from __future__ import annotations

from edgefair.contracts.errors import EdgefairError


class ExportError(EdgefairError, ValueError):
    """Bad export input (unknown target, sparsity out of range, missing runtime, …)."""
