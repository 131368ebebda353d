"""The artefact manifest (``<artefact>/manifest.json``): what export writes and every stage reads.

An artefact means the same thing wherever it is read from:

- its id hashes only what determines the model (:meth:`Manifest.identity`): the model
  file's sha256, I/O specs, preprocessing, classes, the source checkpoint's sha256, the
  target and the compression settings; never paths, timestamps or measured numbers;
- its provenance (:class:`Source`) names the training data by a canonical dataset spec,
  split seed and fingerprint, so evaluation loads the same test split from any working
  directory; the run directory is stored absolute and relative to the artefact folder.

The device agent reads the same file as a plain dict (``format``, ``model_file``,
``file.sha256``, ``input``, ``output``, ``preprocessing``); :meth:`Manifest.to_dict` is that dict.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgefair.contracts.dataset import DatasetRef, Preprocessing
from edgefair.contracts.errors import ManifestError
from edgefair.contracts.fields import Fields
from edgefair.contracts.jsonio import atomic_write_json, jsonable
from edgefair.contracts.targets import FORMATS, PRECISIONS, TARGETS

SCHEMA_VERSION = 2
MANIFEST = "manifest.json"
METHODS = ("none", "unstructured", "structured")
LAYOUTS = ("NCHW", "NHWC")
IO_DTYPES = ("float32", "float16", "int8", "uint8", "int16")
QUANTISED_DTYPES = ("int8", "uint8", "int16")


@dataclass(frozen=True)
class Quant:
    scale: float
    zero_point: int

    @classmethod
    def parse(cls, f: Fields) -> Quant:
        return cls(scale=f.number("scale", positive=True), zero_point=f.integer("zero_point"))


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: ``shape`` uses -1 for dynamic dimensions; ``layout`` is the input's."""

    name: str
    shape: list[int]
    dtype: str
    quant: Quant | None = None
    layout: str | None = None

    @classmethod
    def parse(cls, f: Fields, *, is_input: bool) -> TensorSpec:
        spec = cls(name=f.text("name"), shape=f.ints("shape"), dtype=f.text("dtype", choices=IO_DTYPES),
                   quant=f.parse("quant", Quant.parse, nullable=True),
                   layout=f.text("layout", choices=LAYOUTS) if is_input else f.text("layout", None))
        if spec.dtype in QUANTISED_DTYPES and spec.quant is None and is_input:
            raise f.error(f"{f.section} is {spec.dtype} but has no quant scale/zero_point")
        return spec

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                             "quant": None if self.quant is None else jsonable(self.quant)}
        if self.layout is not None:
            d["layout"] = self.layout
        return d


@dataclass(frozen=True)
class FileInfo:
    sha256: str
    size_bytes: int
    gzip_bytes: int
    zip_bytes: int | None = None

    @classmethod
    def parse(cls, f: Fields) -> FileInfo:
        return cls(sha256=f.text("sha256"), size_bytes=f.integer("size_bytes", minimum=0),
                   gzip_bytes=f.integer("gzip_bytes", minimum=0), zip_bytes=f.integer("zip_bytes", None))


@dataclass(frozen=True)
class Params:
    total: int
    nonzero: int

    @classmethod
    def parse(cls, f: Fields) -> Params:
        return cls(total=f.integer("total", minimum=0), nonzero=f.integer("nonzero", minimum=0))


@dataclass(frozen=True)
class Sparsity:
    """``requested``: the level asked for (None for imported files); ``measured``: from the file."""

    requested: float | None
    measured: float
    method: str
    detail: dict[str, Any] = field(default_factory=dict)  # zero_fraction, weights, definition

    @classmethod
    def parse(cls, f: Fields) -> Sparsity:
        known = ("requested", "measured", "method")
        return cls(requested=f.number("requested", None, within=(0.0, 1.0)),
                   measured=f.number("measured", within=(0.0, 1.0)), method=f.text("method", choices=METHODS),
                   detail={k: v for k, v in f.doc.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        return {"requested": self.requested, "measured": self.measured, "method": self.method, **self.detail}


@dataclass(frozen=True)
class Compression:
    """Settings that change the exported file beyond the target and the sparsity level.

    ``calibration`` is set only for targets that use calibration images; ``engine`` only
    for torch-int8; ``finetune_epochs`` and ``scope`` only when something was fine-tuned.
    ``clustering`` (``{"k", "tensors", ...}``) when the kernels share K values;
    ``mitigation`` (``{"method": "kd", "alpha", "temperature"}``) when the fine-tunes distilled
    from the uncompressed model. Both are left out of the JSON when absent, so manifests
    written before them keep their artefact id.
    """

    finetune_epochs: int = 0
    scope: str | None = None
    calibration: dict[str, Any] | None = None
    qat: bool = False
    engine: str | None = None
    clustering: dict[str, Any] | None = None
    mitigation: dict[str, Any] | None = None

    @classmethod
    def parse(cls, f: Fields) -> Compression:
        return cls(finetune_epochs=f.integer("finetune_epochs", 0, minimum=0), scope=f.text("scope", None),
                   calibration=f.mapping("calibration", None, nullable=True), qat=f.flag("qat", False),
                   engine=f.text("engine", None), clustering=f.mapping("clustering", None, nullable=True),
                   mitigation=f.mapping("mitigation", None, nullable=True))

    @property
    def clusters(self) -> int | None:
        """K of a clustered artefact, else None."""
        return int(self.clustering["k"]) if self.clustering else None

    @property
    def distilled(self) -> bool:
        return bool(self.mitigation) and (self.mitigation or {}).get("method") == "kd"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"finetune_epochs": self.finetune_epochs, "scope": self.scope,
                             "calibration": self.calibration, "qat": self.qat, "engine": self.engine}
        if self.clustering is not None:
            d["clustering"] = self.clustering
        if self.mitigation is not None:
            d["mitigation"] = self.mitigation
        return d


@dataclass(frozen=True)
class Source:
    """Where the model came from. ``run`` is absolute; ``run_relative`` is relative to the artefact folder."""

    checkpoint_sha256: str | None = None
    arch: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    run: str | None = None
    run_relative: str | None = None
    dataset: DatasetRef | None = None
    reference: str | None = None  # what parity compared against, in words
    imported_from: str | None = None

    @classmethod
    def parse(cls, f: Fields) -> Source:
        return cls(checkpoint_sha256=f.text("checkpoint_sha256", None), arch=f.text("arch", None),
                   arch_kwargs=f.mapping("arch_kwargs", {}) or {}, run=f.text("run", None),
                   run_relative=f.text("run_relative", None),
                   dataset=f.parse("dataset", DatasetRef.parse, nullable=True) if f.has("dataset") else None,
                   reference=f.text("reference", None), imported_from=f.text("imported_from", None))

    def to_dict(self) -> dict[str, Any]:
        d = jsonable(self)
        d["dataset"] = None if self.dataset is None else self.dataset.to_dict()
        return d

    def run_dir(self, artifact_dir: Path) -> Path | None:
        """The source run directory: beside the artefact if it moved with it, else the absolute path."""
        for candidate in (self.run_relative and Path(artifact_dir) / self.run_relative, self.run and Path(self.run)):
            if candidate and (Path(candidate) / "model.json").is_file():
                return Path(os.path.normpath(candidate))
        return None


@dataclass(frozen=True)
class Manifest:
    """One artefact's manifest (see docs/contracts.md)."""

    name: str
    target: str
    format: str
    precision: str
    model_file: str
    sparsity: Sparsity
    input: TensorSpec
    output: TensorSpec
    class_names: list[str]
    preprocessing: Preprocessing
    source: Source
    file: FileInfo
    params: Params
    compression: Compression = field(default_factory=Compression)
    parity: dict[str, Any] | None = None
    tools: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    export: dict[str, Any] = field(default_factory=dict)  # cache key, code version, converter details
    schema_version: int = SCHEMA_VERSION

    # -- identity ---------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """What determines the model, and nothing else: the artefact id hashes this."""
        return {"schema_version": self.schema_version, "target": self.target, "format": self.format,
                "precision": self.precision, "file_sha256": self.file.sha256, "input": self.input.to_dict(),
                "output": self.output.to_dict(), "preprocessing": self.preprocessing.to_dict(),
                "class_names": list(self.class_names), "checkpoint_sha256": self.source.checkpoint_sha256,
                "sparsity": {"requested": self.sparsity.requested, "method": self.sparsity.method},
                "compression": self.compression.to_dict()}

    @property
    def artifact_id(self) -> str:
        return artifact_id(self.identity())

    @property
    def host_only(self) -> bool:
        return self.format == "torch"

    def with_parity(self, parity: dict[str, Any] | None) -> Manifest:
        return replace(self, parity=parity)

    # -- JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": self.schema_version, "artifact_id": self.artifact_id, "name": self.name,
                "target": self.target, "format": self.format, "precision": self.precision,
                "model_file": self.model_file, "sparsity": self.sparsity.to_dict(), "input": self.input.to_dict(),
                "output": self.output.to_dict(), "class_names": list(self.class_names),
                "preprocessing": self.preprocessing.to_dict(), "source": self.source.to_dict(),
                "file": jsonable(self.file), "params": jsonable(self.params),
                "compression": self.compression.to_dict(), "parity": jsonable(self.parity),
                "tools": jsonable(self.tools), "notes": list(self.notes), "export": jsonable(self.export)}

    @classmethod
    def from_dict(cls, d: Any, *, where: str = MANIFEST) -> Manifest:
        """Validate and parse; ManifestError names ``where`` and the first problem."""
        f = Fields(d, where=where, error_type=ManifestError)
        if "schema_version" not in f.doc and "artifact_id" not in f.doc:
            raise f.error("not an edgefair manifest (no schema_version, no artifact_id): wrap your own model with "
                          "bench export --import")
        version = f.integer("schema_version")
        if version != SCHEMA_VERSION:
            raise f.error(f"schema_version {version}, this edgefair reads {SCHEMA_VERSION} "
                          "(written by another edgefair: export the artefact again)")
        m = cls(name=f.text("name"), target=f.text("target", choices=tuple(TARGETS) + _imported_targets()),
                format=f.text("format", choices=FORMATS), precision=f.text("precision", choices=PRECISIONS),
                model_file=_plain_file(f), sparsity=_req(f.parse("sparsity", Sparsity.parse)),
                input=TensorSpec.parse(_req(f.sub("input")), is_input=True),
                output=TensorSpec.parse(_req(f.sub("output")), is_input=False),
                class_names=_class_names(f), preprocessing=_req(f.parse("preprocessing", Preprocessing.parse)),
                source=_req(f.parse("source", Source.parse)), file=_req(f.parse("file", FileInfo.parse)),
                params=_req(f.parse("params", Params.parse)),
                compression=f.parse("compression", Compression.parse) or Compression(),
                parity=f.mapping("parity", None, nullable=True), tools=f.mapping("tools", {}) or {},
                notes=f.strings("notes", []), export=f.mapping("export", {}) or {})
        stored = f.text("artifact_id")
        if stored != m.artifact_id:
            raise f.error(f"artifact_id {stored} does not match the manifest's content ({m.artifact_id}): "
                          "edited by hand? export it again")
        return m


def _imported_targets() -> tuple[str, ...]:
    """Imported files may be any format-precision pair (an int16-activation TFLite, say)."""
    return tuple(f"{f}-{p}" for f in FORMATS for p in PRECISIONS if f"{f}-{p}" not in TARGETS)


def _req(value: Any) -> Any:
    assert value is not None  # non-nullable parses never return None
    return value


def _plain_file(f: Fields) -> str:
    name = f.text("model_file")
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise f.error(f"model_file {name!r} must be a plain file name inside the artefact folder")
    return str(name)


def _class_names(f: Fields) -> list[str]:
    names = f.strings("class_names")
    if not names:
        raise f.error("class_names must be a non-empty list")
    return names


def artifact_id(identity: dict[str, Any]) -> str:
    """First 16 hex of sha256 over the canonical JSON of an identity document."""
    blob = json.dumps(jsonable(identity), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# -- files ---------------------------------------------------------------------------------
def read_manifest(folder: Path | str) -> Manifest:
    """Parse ``<folder>/manifest.json``; ManifestError naming the file on any problem."""
    path = Path(folder) / MANIFEST
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such file (is {folder} an artefact folder written by bench export?)") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ManifestError(f"{path}: unreadable ({' '.join(str(e).split())})") from None
    return Manifest.from_dict(doc, where=str(path))


def write_manifest(folder: Path | str, manifest: Manifest) -> Path:
    """Write ``<folder>/manifest.json`` atomically."""
    return atomic_write_json(Path(folder) / MANIFEST, manifest.to_dict())


def relative_run(run_dir: Path | str, artifact_dir: Path | str) -> str:
    """``run_dir`` relative to the artefact folder (what :meth:`Source.run_dir` tries first)."""
    return os.path.relpath(Path(run_dir).resolve(), Path(artifact_dir).resolve())
