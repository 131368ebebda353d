"""Wrap a model trained elsewhere (.onnx or .tflite) into an artefact, so it goes through the same run and audit."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgefair.contracts.jsonio import error_text
from edgefair.contracts.manifest import Manifest, Params, Source, Sparsity, TensorSpec, write_manifest
from edgefair.contracts.targets import format_sparsity
from edgefair.export.errors import ExportError
from edgefair.export.files import file_info, tool_versions
from edgefair.export.io_specs import guess_layout, onnx_io, tflite_io
from edgefair.export.logs import ExportLog
from edgefair.export.results import TargetResult
from edgefair.export.staging import Staging

QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "DynamicQuantizeLinear",
             "MatMulInteger", "ConvInteger"}


def _precision_onnx(path: Path) -> str:
    import onnx

    m = onnx.load(str(path))
    ops = {n.op_type for n in m.graph.node}
    types = {t.data_type for t in m.graph.initializer if len(t.dims) >= 2}
    if ops & QUANT_OPS or types & {2, 3}:
        return "int8"
    return "fp16" if 10 in types else "fp32"


def _tflite_weight_types(path: Path) -> set[int]:
    from edgefair.export.sparsity import _TFL_DTYPES, _tflite_schema

    model = _tflite_schema().Model.GetRootAs(Path(path).read_bytes(), 0)
    types: set[int] = set()
    for si in range(model.SubgraphsLength()):
        sg = model.Subgraphs(si)
        for ti in range(sg.TensorsLength()):
            t = sg.Tensors(ti)
            shape = t.ShapeAsNumpy()
            if t.Buffer() > 0 and not isinstance(shape, int) and len(shape) >= 2 and t.Type() in _TFL_DTYPES \
                    and not isinstance(model.Buffers(t.Buffer()).DataAsNumpy(), int):
                types.add(t.Type())
    return types


def _precision_tflite(path: Path, in_dtype: str) -> str:
    if in_dtype in ("int8", "uint8"):
        return "int8"
    types = _tflite_weight_types(path)
    if types & {9, 3}:
        return "dynamic"
    return "fp16" if 1 in types else "fp32"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "model"


def _read_specs(file: Path, fmt: str, channels: int) -> tuple[TensorSpec, TensorSpec, str]:
    """(input with layout, output, precision) read from the file itself."""
    try:
        if fmt == "onnx":
            spec_in, spec_out = onnx_io(file)
            precision = _precision_onnx(file)
        else:
            spec_in, spec_out = tflite_io(file)
            precision = _precision_tflite(file, spec_in.dtype)
        layout = guess_layout(spec_in.shape, channels)
    except ExportError:
        raise
    except Exception as e:
        raise ExportError(f"{file}: cannot read the model ({error_text(e)})") from None
    return TensorSpec(spec_in.name, spec_in.shape, spec_in.dtype, spec_in.quant, layout), spec_out, precision


def _check_fits(file: Path, spec_in: TensorSpec, spec_out: TensorSpec, meta: Any, like_run: Path) -> None:
    prep = meta.prep
    size_dims = spec_in.shape[2:4] if spec_in.layout == "NCHW" else spec_in.shape[1:3]
    if any(d > 0 and d != prep.size for d in size_dims):
        raise ExportError(f"{file}: input {spec_in.shape} ({spec_in.layout}) does not take "
                          f"{prep.size}x{prep.size} images as {like_run} was trained on")
    n_out = spec_out.shape[-1] if spec_out.shape else -1
    if n_out > 0 and n_out != len(meta.class_names):
        raise ExportError(f"{file}: outputs {n_out} scores but {like_run} has {len(meta.class_names)} classes")


def _file_format(file: Path) -> str:
    if not file.is_file():
        raise ExportError(f"{file}: no such file")
    fmt = {".onnx": "onnx", ".tflite": "tflite"}.get(file.suffix.lower())
    if fmt is None:
        raise ExportError(f"{file}: cannot import '{file.suffix}' files: expected .onnx or .tflite")
    return fmt


def import_artifact(file: Path | str, like_run: Path | str, out: Path | str, *, name: str | None = None,
                    parity_n: int = 512, force: bool = False) -> TargetResult:
    """Make ``<out>/<name>/`` (model file + manifest.json) from a user's ``.onnx`` or ``.tflite``.

    The input/output spec (names, shape, dtype, int8 scale/zero-point) and the precision are
    read from the file itself; class names, preprocessing and the dataset reference come
    from ``like_run`` (a run directory trained on the same label set and input format).
    Layout is inferred from the input shape. The artefact is run through the agent's code
    path on the run's validation split: its accuracy goes into ``parity``.
    Default name: ``<format>-<precision>-s<measured sparsity>-<file stem>``.
    """
    from edgefair.export.sparsity import weight_stats
    from edgefair.models.checkpoint import read_meta

    t0 = time.perf_counter()
    file, like_run, out = Path(file), Path(like_run), Path(out)
    fmt = _file_format(file)
    meta = read_meta(like_run)  # CheckpointError when like_run is not a run directory
    spec_in, spec_out, precision = _read_specs(file, fmt, meta.prep.channels)
    _check_fits(file, spec_in, spec_out, meta, like_run)
    ws = weight_stats(file, fmt)
    target = f"{fmt}-{precision}"
    name = name or f"{target}-s{format_sparsity(round(ws.zero_fraction, 2))}-{_slug(file.stem)}"
    if "/" in name or name.startswith("."):
        raise ExportError(f"artefact name '{name}' must be a plain folder name")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out}: exists and is not a folder")
    if (out / name).exists() and not force:
        raise ExportError(f"{out / name} already exists (--force replaces it)")
    staging = Staging(out)
    folder = staging.new(name)
    try:
        model_file = "model" + file.suffix.lower()
        shutil.copyfile(file, folder / model_file)
        m = Manifest(
            name=name, target=target, format=fmt, precision=precision, model_file=model_file,
            sparsity=Sparsity(None, round(ws.zero_fraction, 6), "none", {
                "zero_fraction": round(ws.zero_fraction, 6), "definition": "zeros among rank>=2 weights in the file",
                "weights": {"total": ws.total, "zeros": ws.zeros, "tensors": ws.tensors, "dense_total": ws.total}}),
            input=spec_in, output=spec_out, class_names=list(meta.class_names), preprocessing=meta.prep,
            source=Source(dataset=meta.dataset_ref(), imported_from=str(file.resolve()),
                          reference=f"class names and preprocessing of {like_run.resolve()}"),
            file=file_info(folder / model_file), params=Params(ws.total, ws.total - ws.zeros),
            tools=tool_versions(), notes=_notes(file, fmt, spec_in, like_run), export={"imported": True})
        log = ExportLog(out / "export.log")
        m = m.with_parity(_val_accuracy(folder, m, meta, parity_n, log))
        write_manifest(folder, m)
        final = staging.publish(folder, name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        staging.remove_if_empty()
    log.write(f"imported {file} -> {final}")
    return TargetResult(name, target, float(round(ws.zero_fraction, 6)), "imported", str(final), None,
                        time.perf_counter() - t0, m)


def _notes(file: Path, fmt: str, spec_in: TensorSpec, like_run: Path) -> list[str]:
    notes = [f"imported from {file.name}: trained outside edgefair; class names and preprocessing taken from "
             f"{like_run}", "input layout inferred from the input shape"]
    if fmt == "onnx" and spec_in.dtype in ("int8", "uint8"):
        notes.append("quantised ONNX input: the manifest has no scale/zero-point for it; set input.quant by hand")
    return notes


def _val_accuracy(folder: Path, m: Manifest, meta: Any, parity_n: int, log: ExportLog) -> dict[str, Any] | None:
    """Accuracy of the artefact on the run's validation split (None when the dataset cannot be loaded)."""
    from edgefair.data.preprocess import labels_of, samples_to_uint8
    from edgefair.data.registry import load_ref
    from edgefair.export.parity import run_artifact

    ref = meta.dataset_ref()
    if ref is None:
        m.notes.append("no dataset in the run: validation accuracy not measured")
        return None
    try:
        val = load_ref(ref).split("val")
    except Exception as e:
        m.notes.append(f"dataset {ref.spec} not loadable here ({error_text(e)}): validation accuracy not measured")
        return None
    idx = np.sort(np.random.default_rng(0).permutation(len(val))[:parity_n])
    val_s = [val[i] for i in idx]
    try:
        logits, runtime = run_artifact(folder, m.to_dict(), samples_to_uint8(val_s, meta.prep), quiet=log.quiet)
    except Exception as e:
        raise ExportError(f"{m.source.imported_from}: the agent cannot run it as an artefact "
                          f"({error_text(e)})") from None
    y = labels_of(val_s)
    return {"n": int(len(y)), "agreement": None, "max_abs_logit_diff": None,
            "val_accuracy": float((logits.argmax(1) == y).mean()), "reference_val_accuracy": None,
            "reference": None, "runtime": runtime, "gate": None, "passed": True}
