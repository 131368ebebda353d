"""Errors of ``bench export``: each message is one line the user can act on."""

from __future__ import annotations


class ExportError(ValueError):
    """Bad export input (unknown target, sparsity out of range, missing runtime, …)."""
