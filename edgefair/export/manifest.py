"""The artefact manifest (docs/contracts.md): building, hashing, reading I/O specs from files, validating."""

from __future__ import annotations

from edgefair.files import sha256_file
import gzip
import hashlib
import io
import json
import os
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np

SCHEMA_VERSION = 1
FORMATS = ("tflite", "onnx", "torch")
PRECISIONS = ("fp32", "fp16", "int8", "dynamic")
METHODS = ("unstructured", "structured", "none")
LAYOUTS = ("NCHW", "NHWC")
IO_DTYPES = ("float32", "float16", "int8", "uint8")
REQUIRED = ("schema_version", "artifact_id", "name", "target", "format", "precision", "model_file", "sparsity",
            "input", "output", "class_names", "preprocessing", "source", "file", "params", "parity", "tools",
            "qat", "notes")
TOOL_DISTS = ("edgefair", "torch", "onnx", "onnxruntime", "onnx2tf", "tensorflow", "ai-edge-litert",
              "onnxconverter-common", "torch-pruning", "onnxsim", "numpy")


def file_info(path: Path) -> dict[str, Any]:
    """sha256, size, gzip -9 size, and the zip (deflate) size Stoychev & Gunes report."""
    data = Path(path).read_bytes()
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr(Path(path).name, data)
    return {"sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data),
            "gzip_bytes": len(gzip.compress(data, compresslevel=9, mtime=0)),
            "zip_bytes": len(zbuf.getvalue())}


def tool_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for d in TOOL_DISTS:
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            out[d] = None
    return out


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def artifact_id(manifest: Mapping[str, Any]) -> str:
    """First 16 hex of sha256 of ``json.dumps(manifest_without_artifact_id, sort_keys=True)``.

    Python's default separators and ASCII escaping, so anyone can recompute it with one line.
    """
    body = {k: v for k, v in manifest.items() if k != "artifact_id"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=False).encode()).hexdigest()[:16]


def finalize(manifest: dict[str, Any]) -> dict[str, Any]:
    """Put ``schema_version`` and ``artifact_id`` in; key order as in the contract."""
    m = json.loads(canonical_json(_jsonable(manifest)))  # plain JSON types, no NaN
    m["schema_version"] = SCHEMA_VERSION
    m.pop("artifact_id", None)
    aid = artifact_id(m)
    ordered = {"schema_version": SCHEMA_VERSION, "artifact_id": aid}
    for k in REQUIRED:
        if k in m and k not in ordered:
            ordered[k] = m[k]
    for k in m:
        ordered.setdefault(k, m[k])
    return ordered


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> Path:
    path = Path(folder) / "manifest.json"
    tmp = path.with_name("manifest.json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        m = json.loads((Path(folder) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) else None


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.floating, float)):
        f = float(o)
        return f if np.isfinite(f) else None
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, Path):
        return str(o)
    return o


# ---------------------------------------------------------------- I/O specs from files

_ONNX_DT = {1: "float32", 10: "float16", 3: "int8", 2: "uint8", 11: "float64", 6: "int32", 7: "int64"}


def guess_layout(shape: list[int], channels: int) -> str:
    """NCHW when dim 1 holds the channels, NHWC when the last dim does (4-D image inputs)."""
    if len(shape) != 4:
        raise ValueError(f"input shape {shape} is not a 4-D image batch")
    if shape[1] == channels and shape[3] != channels:
        return "NCHW"
    if shape[3] == channels and shape[1] != channels:
        return "NHWC"
    if shape[1] == channels == shape[3]:
        return "NCHW"
    raise ValueError(f"input shape {shape} has no dimension of {channels} channel(s) at position 1 or 3")


def onnx_io(path: Path) -> tuple[dict, dict]:
    """(input, output) specs of an ONNX file: name, shape (-1 for dynamic), dtype; quant null."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    ins = [i for i in m.graph.input if i.name not in inits]
    outs = list(m.graph.output)
    if len(ins) != 1:
        raise ValueError(f"{path}: has {len(ins)} inputs; an artefact needs exactly one image input")
    if not outs:
        raise ValueError(f"{path}: has no outputs")

    def spec(v) -> dict:
        tt = v.type.tensor_type
        dims = [d.dim_value if d.dim_value > 0 else -1 for d in tt.shape.dim]
        return {"name": v.name, "shape": dims, "dtype": _ONNX_DT.get(tt.elem_type, str(tt.elem_type)), "quant": None}

    return spec(ins[0]), spec(outs[0])


def _tfl_quant(d: Mapping[str, Any]) -> dict | None:
    scale, zp = d.get("quantization") or (0.0, 0)
    if scale:
        return {"scale": float(scale), "zero_point": int(zp)}
    qp = d.get("quantization_parameters") or {}
    sc = qp.get("scales")
    if sc is not None and len(sc) == 1 and float(sc[0]) != 0.0:
        return {"scale": float(sc[0]), "zero_point": int(qp["zero_points"][0])}
    return None


def tflite_io(path: Path) -> tuple[dict, dict]:
    """(input, output) specs of a TFLite file from the interpreter: names, shapes, dtypes, scale/zero-point."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover
        from tensorflow.lite import Interpreter  # type: ignore
    it = Interpreter(model_path=str(path))
    ins, outs = it.get_input_details(), it.get_output_details()
    if len(ins) != 1:
        raise ValueError(f"{path}: has {len(ins)} inputs; an artefact needs exactly one image input")
    if not outs:
        raise ValueError(f"{path}: has no outputs")

    def spec(d) -> dict:
        sig = d.get("shape_signature")
        shape = [int(v) for v in (sig if sig is not None and len(sig) else d["shape"])]
        shape = [v if v > 0 else -1 for v in shape]
        return {"name": d["name"], "shape": shape, "dtype": np.dtype(d["dtype"]).name, "quant": _tfl_quant(d)}

    return spec(ins[0]), spec(outs[0])


# ---------------------------------------------------------------- validation

def validate(m: Mapping[str, Any], folder: Path | None = None) -> list[str]:
    """Problems with a manifest against docs/contracts.md (empty list = conforms)."""
    p: list[str] = []
    for k in REQUIRED:
        if k not in m:
            p.append(f"missing key {k!r}")
    if p:
        return p
    if m["schema_version"] != SCHEMA_VERSION:
        p.append(f"schema_version {m['schema_version']!r} != {SCHEMA_VERSION}")
    if m["artifact_id"] != artifact_id(m):
        p.append("artifact_id does not match the manifest's hash")
    if m["format"] not in FORMATS:
        p.append(f"format {m['format']!r} not in {FORMATS}")
    if m["precision"] not in PRECISIONS:
        p.append(f"precision {m['precision']!r} not in {PRECISIONS}")
    sp = m["sparsity"]
    if not isinstance(sp, Mapping) or not {"requested", "measured", "method"} <= set(sp):
        p.append("sparsity needs requested, measured, method")
    else:
        if sp["method"] not in METHODS:
            p.append(f"sparsity.method {sp['method']!r} not in {METHODS}")
        for k in ("requested", "measured"):
            v = sp[k]
            if v is not None and not (isinstance(v, (int, float)) and 0 <= v <= 1):
                p.append(f"sparsity.{k} {v!r} not in [0, 1]")
    for side in ("input", "output"):
        s = m[side]
        if not isinstance(s, Mapping):
            p.append(f"{side} is not an object")
            continue
        for k in ("name", "shape", "dtype", "quant") + (("layout",) if side == "input" else ()):
            if k not in s:
                p.append(f"{side}.{k} missing")
        if side == "input" and s.get("layout") not in LAYOUTS:
            p.append(f"input.layout {s.get('layout')!r} not in {LAYOUTS}")
        if s.get("dtype") in ("int8", "uint8"):
            q = s.get("quant")
            if not (isinstance(q, Mapping) and q.get("scale") and "zero_point" in q):
                p.append(f"{side} is {s.get('dtype')} but has no quant scale/zero_point")
    prep = m["preprocessing"]
    if not isinstance(prep, Mapping) or not {"size", "channels", "mean", "std"} <= set(prep):
        p.append("preprocessing needs size, channels, mean, std")
    f = m["file"]
    if not isinstance(f, Mapping) or not {"sha256", "size_bytes", "gzip_bytes"} <= set(f):
        p.append("file needs sha256, size_bytes, gzip_bytes")
    if not isinstance(m["params"], Mapping) or not {"total", "nonzero"} <= set(m["params"]):
        p.append("params needs total, nonzero")
    if not isinstance(m["class_names"], list) or not m["class_names"]:
        p.append("class_names must be a non-empty list")
    if not isinstance(m["notes"], list):
        p.append("notes must be a list")
    if folder is not None and isinstance(f, Mapping):
        path = Path(folder) / str(m["model_file"])
        if not path.is_file():
            p.append(f"model file {m['model_file']} missing")
        elif f.get("sha256") != sha256_file(path):
            p.append("file.sha256 does not match the model file")
        elif f.get("size_bytes") != path.stat().st_size:
            p.append("file.size_bytes does not match the model file")
    return p
