"""Wrap a model trained elsewhere (.onnx or .tflite) into an artefact, so it goes through the same run and audit."""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from edgefair.export import manifest as _manifest
from edgefair.export.errors import ExportError
from edgefair.export.logs import ExportLog
from edgefair.export.matrix import STAGING, TargetResult, _one_line
from edgefair.export.targets import format_sparsity


def _precision_onnx(path: Path) -> str:
    import onnx

    m = onnx.load(str(path))
    ops = {n.op_type for n in m.graph.node}
    types = {t.data_type for t in m.graph.initializer if len(t.dims) >= 2}
    if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "DynamicQuantizeLinear",
              "MatMulInteger", "ConvInteger"} or types & {2, 3}:
        return "int8"
    if 10 in types:
        return "fp16"
    return "fp32"


def _precision_tflite(path: Path, in_dtype: str) -> str:
    from edgefair.export.sparsity import _TFL_DTYPES, _tflite_schema

    schema = _tflite_schema()
    model = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
    types: set[int] = set()
    for si in range(model.SubgraphsLength()):
        sg = model.Subgraphs(si)
        for ti in range(sg.TensorsLength()):
            t = sg.Tensors(ti)
            shape = t.ShapeAsNumpy()
            if t.Buffer() > 0 and not isinstance(shape, int) and len(shape) >= 2 and t.Type() in _TFL_DTYPES:
                if not isinstance(model.Buffers(t.Buffer()).DataAsNumpy(), int):
                    types.add(t.Type())
    if in_dtype in ("int8", "uint8"):
        return "int8"
    if types & {9, 3}:
        return "dynamic"
    if 1 in types:
        return "fp16"
    return "fp32"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "model"


def import_artifact(file: Path | str, like_run: Path | str, out: Path | str, *, name: str | None = None,
                    parity_n: int = 512, force: bool = False) -> TargetResult:
    """Make ``<out>/<name>/`` (model file + manifest.json) from a user's ``.onnx`` or ``.tflite``.

    The input/output spec (names, shape, dtype, int8 scale/zero-point) and the precision are
    read from the file itself; class names and preprocessing come from ``like_run`` (a run
    directory trained on the same label set and input format). Layout is inferred from the
    input shape (channels at dim 1: NCHW, at dim 3: NHWC). The artefact is run with its
    runtime through the agent's code path on the run's validation split: its accuracy goes
    into ``parity`` (agreement with a PyTorch model does not apply: there is none).
    Default name: ``<format>-<precision>-s<measured sparsity>-<file stem>``.
    """
    from edgefair.export.sparsity import weight_stats
    from edgefair.models.checkpoint import read_meta

    t0 = time.perf_counter()
    file, like_run, out = Path(file), Path(like_run), Path(out)
    if not file.is_file():
        raise ExportError(f"{file}: no such file")
    fmt = {".onnx": "onnx", ".tflite": "tflite"}.get(file.suffix.lower())
    if fmt is None:
        raise ExportError(f"{file}: cannot import '{file.suffix}' files: expected .onnx or .tflite")
    meta = read_meta(like_run)  # CheckpointError when like_run is not a run directory
    prep = meta.prep
    try:
        if fmt == "onnx":
            spec_in, spec_out = _manifest.onnx_io(file)
            precision = _precision_onnx(file)
        else:
            spec_in, spec_out = _manifest.tflite_io(file)
            precision = _precision_tflite(file, spec_in["dtype"])
        spec_in["layout"] = _manifest.guess_layout(spec_in["shape"], prep.channels)
    except ExportError:
        raise
    except Exception as e:
        raise ExportError(f"{file}: cannot read the model ({_one_line(e)})") from None
    size_dims = spec_in["shape"][2:4] if spec_in["layout"] == "NCHW" else spec_in["shape"][1:3]
    if any(d > 0 and d != prep.size for d in size_dims):
        raise ExportError(f"{file}: input {spec_in['shape']} ({spec_in['layout']}) does not take "
                          f"{prep.size}x{prep.size} images as {like_run} was trained on")
    n_out = spec_out["shape"][-1] if spec_out["shape"] else -1
    if n_out > 0 and n_out != len(meta.class_names):
        raise ExportError(f"{file}: outputs {n_out} scores but {like_run} has {len(meta.class_names)} classes")
    ws = weight_stats(file, fmt)
    measured = ws.zero_fraction
    target = f"{fmt}-{precision}"
    name = name or f"{target}-s{format_sparsity(round(measured, 2))}-{_slug(file.stem)}"
    if "/" in name or name.startswith("."):
        raise ExportError(f"artefact name '{name}' must be a plain folder name")
    out.mkdir(parents=True, exist_ok=True)
    log = ExportLog(out / "export.log")
    final = out / name
    if final.exists() and not force:
        raise ExportError(f"{final} already exists (force=True replaces it)")
    staging = out / STAGING / f"{name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        model_file = "model" + file.suffix.lower()
        shutil.copyfile(file, staging / model_file)
        notes = [f"imported from {file.name}: trained outside edgefair; class names and preprocessing taken from {like_run}",
                 "input layout inferred from the input shape"]
        if fmt == "onnx" and spec_in["dtype"] in ("int8", "uint8"):
            notes.append("quantised ONNX input: the manifest has no scale/zero-point for it; set input.quant by hand")
        m: dict[str, Any] = {
            "name": name, "target": target, "format": fmt, "precision": precision, "model_file": model_file,
            "sparsity": {"requested": None, "measured": round(measured, 6), "method": "none",
                         "zero_fraction": round(measured, 6),
                         "weights": {"total": ws.total, "zeros": ws.zeros, "tensors": ws.tensors, "dense_total": ws.total},
                         "definition": "zeros among rank>=2 weights in the file"},
            "input": spec_in, "output": spec_out,
            "class_names": list(meta.class_names),
            "preprocessing": {"size": prep.size, "channels": prep.channels, "mean": prep.mean, "std": prep.std},
            "source": {"run": None, "imported_from": str(file), "like_run": str(like_run),
                       "checkpoint_sha256": None, "arch": None, "dataset": (meta.dataset or {}).get("spec")},
            "file": _manifest.file_info(staging / model_file),
            "params": {"total": ws.total, "nonzero": ws.total - ws.zeros},
            "parity": None, "tools": _manifest.tool_versions(), "qat": False, "notes": notes,
            "export": {"imported": True},
        }
        _manifest.write_manifest(staging, _manifest.finalize(m))
        try:
            m["parity"] = _val_accuracy(staging, m, meta, parity_n, log)
        except Exception as e:
            raise ExportError(f"{file}: the agent cannot run it as an artefact ({_one_line(e)})") from None
        m = _manifest.finalize(m)
        _manifest.write_manifest(staging, m)
        old = None
        if final.exists():
            old = out / STAGING / f"old-{name}-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
        os.replace(staging, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        try:
            (out / STAGING).rmdir()
        except OSError:
            pass
    log.write(f"imported {file} -> {final}")
    return TargetResult(name, target, float(round(measured, 6)), "imported", str(final), None, time.perf_counter() - t0, m)


def _val_accuracy(folder: Path, m: dict, meta, parity_n: int, log: ExportLog) -> dict | None:
    """Accuracy of the artefact on the run's validation split (None when the dataset cannot be loaded)."""
    from edgefair.data.preprocess import labels_of, samples_to_uint8
    from edgefair.data.registry import load_dataset
    from edgefair.export.parity import run_artifact

    spec = (meta.dataset or {}).get("spec")
    if not spec:
        m["notes"].append("no dataset in the run: validation accuracy not measured")
        return None
    try:
        val = load_dataset(spec, seed=meta.seed).split("val")
    except Exception as e:
        m["notes"].append(f"dataset {spec} not loadable here ({_one_line(e)}): validation accuracy not measured")
        return None
    idx = np.sort(np.random.default_rng(0).permutation(len(val))[:parity_n])
    val_s = [val[i] for i in idx]
    images = samples_to_uint8(val_s, meta.prep)
    logits, runtime = run_artifact(folder, m, images, quiet=log.quiet)
    y = labels_of(val_s)
    acc = float((logits.argmax(1) == y).mean())
    return {"n": int(len(y)), "agreement": None, "max_abs_logit_diff": None, "val_accuracy": acc,
            "reference_val_accuracy": None, "reference": None,
            "runtime": runtime, "gate": None, "passed": True}
