"""Valid manifests for hand-built test models, made through the contract (never by hand-hashing dicts)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgefair.contracts.dataset import DatasetRef, Preprocessing
from edgefair.contracts.manifest import FileInfo, Manifest, Params, Quant, Source, Sparsity, TensorSpec, write_manifest


def tensor(spec: Mapping[str, Any], *, is_input: bool) -> TensorSpec:
    q = spec.get("quant")
    return TensorSpec(name=spec["name"], shape=list(spec["shape"]), dtype=spec["dtype"],
                      quant=Quant(float(q["scale"]), int(q["zero_point"])) if q else None,
                      layout=spec.get("layout") if is_input else None)


def make_manifest(*, name: str, target: str, model_file: str, input_spec: Mapping[str, Any],
                  output_spec: Mapping[str, Any], class_names: Sequence[str], prep: Mapping[str, Any],
                  data: bytes | None = None, file: FileInfo | None = None, sparsity: float = 0.0,
                  measured: float | None = None, dataset: DatasetRef | None = None, notes: Sequence[str] = (),
                  params: tuple[int, int] = (0, 0), checkpoint: str = "0" * 64, arch: str = "tiny") -> Manifest:
    """A manifest of ``data`` (the model file's bytes) or of a given FileInfo."""
    fmt, precision = target.split("-")
    if file is None:
        assert data is not None
        file = FileInfo(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data), gzip_bytes=len(data))
    return Manifest(
        name=name, target=target, format=fmt, precision=precision, model_file=model_file,
        sparsity=Sparsity(sparsity, sparsity if measured is None else measured,
                          "unstructured" if sparsity else "none"),
        input=tensor(input_spec, is_input=True), output=tensor(output_spec, is_input=False),
        class_names=list(class_names), preprocessing=Preprocessing(**prep),
        source=Source(checkpoint_sha256=checkpoint, arch=arch, dataset=dataset), file=file,
        params=Params(*params), notes=list(notes))


def write_model_manifest(folder: Path, **kwargs: Any) -> dict[str, Any]:
    """Write ``folder/manifest.json`` for the model file already in ``folder``; returns its dict."""
    data = (Path(folder) / kwargs["model_file"]).read_bytes()
    m = make_manifest(data=data, **kwargs)
    write_manifest(folder, m)
    return m.to_dict()
