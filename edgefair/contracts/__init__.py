"""The shapes that cross a stage boundary, in one torch-free place.

- :mod:`~edgefair.contracts.targets`: the target registry and artefact naming;
- :mod:`~edgefair.contracts.manifest`: the artefact manifest, its content-addressed id;
- :mod:`~edgefair.contracts.dataset`: preprocessing and the dataset reference;
- :mod:`~edgefair.contracts.measurement`: measurement profiles and run settings;
- :mod:`~edgefair.contracts.result`: the device agent's result;
- :mod:`~edgefair.contracts.errors`: the one handled-error family (each carries its exit code);
- :mod:`~edgefair.contracts.jsonio`: NaN-free JSON, atomic writes, one-line error text.

Imports only the standard library (never torch, numpy or a runtime).
"""

from edgefair.contracts.dataset import DatasetRef, Preprocessing
from edgefair.contracts.errors import ContractError, EdgefairError, ManifestError, ResultError, UsageError
from edgefair.contracts.manifest import Manifest, read_manifest, write_manifest
from edgefair.contracts.measurement import PROFILES, MeasurementProfile, RunSettings, settings_key
from edgefair.contracts.result import AgentResult
from edgefair.contracts.targets import TARGETS, Target, artefact_name, parse_sparsities, parse_targets

__all__ = [
    "PROFILES", "TARGETS", "AgentResult", "ContractError", "DatasetRef", "EdgefairError", "Manifest",
    "ManifestError", "MeasurementProfile", "Preprocessing", "ResultError", "RunSettings", "Target", "UsageError",
    "artefact_name", "parse_sparsities", "parse_targets", "read_manifest", "settings_key", "write_manifest",
]
