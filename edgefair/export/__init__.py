"""Pruning, quantisation, ONNX and TFLite conversion, artefact manifests (``bench export``).

Public API (imported lazily so ``import edgefair.export`` stays cheap)::

    from edgefair.export import export_matrix, import_artifact, ExportError, TARGETS
"""

from __future__ import annotations

from typing import Any

from edgefair.export.errors import ExportError
from edgefair.export.targets import TARGETS, artefact_name, parse_sparsities, parse_targets

__all__ = ["ExportError", "TARGETS", "artefact_name", "parse_targets", "parse_sparsities",
           "export_matrix", "import_artifact", "ExportReport", "TargetResult", "validate_manifest"]


def __getattr__(name: str) -> Any:
    if name in ("export_matrix", "ExportReport", "TargetResult"):
        from edgefair.export import matrix

        return getattr(matrix, name)
    if name == "import_artifact":
        from edgefair.export.importer import import_artifact

        return import_artifact
    if name == "validate_manifest":
        from edgefair.export.manifest import validate

        return validate
    raise AttributeError(f"module 'edgefair.export' has no attribute {name!r}")
