"""Wrap a model made elsewhere (.onnx or .tflite) into an artefact, so it goes through the same run and audit.

What the file says is read from it, in a child process (a corrupt file may crash the
runtime; here it becomes a one-line error): input/output names, shapes, dtypes, layout,
quantisation parameters, precision (:mod:`edgefair.export.precision`) and measured
sparsity; the file is run once. What it cannot say (preprocessing, class names, the data
to evaluate it on) comes from :mod:`edgefair.export.import_options`. With labelled data
the import's accuracy is measured through the agent's own preprocessing, and a likely
normalisation or class-order mismatch is a warning (:mod:`edgefair.export.import_checks`).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgefair.contracts.fields import Fields
from edgefair.contracts.manifest import Manifest, Params, Source, Sparsity, TensorSpec, write_manifest
from edgefair.contracts.targets import format_sparsity
from edgefair.export.errors import ExportError
from edgefair.export.files import file_info, tool_versions
from edgefair.export.import_options import ImportOptions, Resolved, describe_origins, resolve
from edgefair.export.logs import ExportLog
from edgefair.export.precision import PrecisionFacts, precision_of
from edgefair.export.results import TargetResult
from edgefair.export.staging import Staging

#: onnx/tflite files start with these bytes: a quick, friendly refusal of a wrong file.
_TFLITE_MAGIC, _TFLITE_MAGIC_AT = b"TFL3", 4


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "model"


def _file_format(file: Path) -> str:
    if not file.is_file():
        raise ExportError(f"{file}: no such file")
    fmt = {".onnx": "onnx", ".tflite": "tflite"}.get(file.suffix.lower())
    if fmt is None:
        raise ExportError(f"{file}: cannot import '{file.suffix}' files: expected .onnx or .tflite")
    with open(file, "rb") as f:
        head = f.read(8)
    if fmt == "tflite" and head[_TFLITE_MAGIC_AT:_TFLITE_MAGIC_AT + 4] != _TFLITE_MAGIC:
        raise ExportError(f"{file}: not a TFLite flatbuffer (no 'TFL3' identifier): truncated or another format?")
    return fmt


def _spec(doc: dict[str, Any], file: Path, *, is_input: bool, layout: str | None = None) -> TensorSpec:
    f = Fields(dict(doc, layout=layout) if is_input else doc, where=str(file),
               section="input" if is_input else "output")
    return TensorSpec.parse(f, is_input=is_input)


def _specs(info: dict[str, Any], file: Path, layout: str) -> tuple[TensorSpec, TensorSpec]:
    doc_in = dict(info["input"])
    quant = info.get("input_quant_from_graph")
    if doc_in.get("quant") is None and quant:
        doc_in["quant"] = {"scale": quant[0], "zero_point": quant[1]}
    if doc_in["dtype"] in ("int8", "uint8", "int16") and doc_in.get("quant") is None:
        raise ExportError(f"{file}: input {doc_in['name']} is {doc_in['dtype']} but the file names no scale/"
                          "zero point for it")
    return _spec(doc_in, file, is_input=True, layout=layout), _spec(info["output"], file, is_input=False)


def _facts(info: dict[str, Any]) -> PrecisionFacts:
    f = info["facts"]
    return PrecisionFacts(frozenset(f["weight_types"]), frozenset(f["activation_types"]), frozenset(f["ops"]),
                          f["io_dtype"])


def import_artifact(file: Path | str, like_run: Path | str | None = None, out: Path | str = "artifacts", *,
                    options: ImportOptions | None = None, name: str | None = None, parity_n: int = 512,
                    force: bool = False) -> TargetResult:
    """Make ``<out>/<name>/`` (model file + manifest.json) from a user's ``.onnx`` or ``.tflite``.

    ``like_run`` is the ``--like`` shortcut (also ``options.like_run``). Default name:
    ``<format>-<precision>-s<measured sparsity>-<file stem>``; an existing folder of that
    name is an error unless ``force``. ExportError (one line) on any problem.
    """
    from edgefair.export.inspect_model import inspect_file

    t0 = time.perf_counter()
    file, out = Path(file), Path(out)
    opts = options or ImportOptions()
    if like_run is not None:
        opts = replace(opts, like_run=Path(like_run))
    fmt = _file_format(file)
    info = inspect_file(file, fmt)  # a child process: a crash is an ExportError, not ours
    raw_in = TensorSpec(info["input"]["name"], list(info["input"]["shape"]), info["input"]["dtype"])
    raw_out = TensorSpec(info["output"]["name"], list(info["output"]["shape"]), info["output"]["dtype"])
    res = resolve(file, raw_in, raw_out, opts)
    spec_in, spec_out = _specs(info, file, res.layout)
    precision, pnotes = precision_of(_facts(info))
    w = info["weights"]
    zero_fraction = w["zeros"] / w["total"] if w["total"] else 0.0
    target = f"{fmt}-{precision}"
    name = name or f"{target}-s{format_sparsity(round(zero_fraction, 2))}-{_slug(file.stem)}"
    _check_destination(out, name, force)
    m = _manifest(file, fmt, precision, name, spec_in, spec_out, res, w, zero_fraction,
                  notes=[*pnotes, *_notes(file, res, info)])
    return _build(file, out, m, res, parity_n, t0)


def _check_destination(out: Path, name: str, force: bool) -> None:
    if "/" in name or name.startswith("."):
        raise ExportError(f"artefact name '{name}' must be a plain folder name")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out}: exists and is not a folder")
    if (out / name).exists() and not force:
        raise ExportError(f"{out / name} already exists (--force replaces it)")


def _manifest(file: Path, fmt: str, precision: str, name: str, spec_in: TensorSpec, spec_out: TensorSpec,
              res: Resolved, w: dict[str, int], zero_fraction: float, *, notes: list[str]) -> Manifest:
    model_file = "model" + file.suffix.lower()
    return Manifest(
        name=name, target=f"{fmt}-{precision}", format=fmt, precision=precision, model_file=model_file,
        sparsity=Sparsity(None, round(zero_fraction, 6), "none", {
            "zero_fraction": round(zero_fraction, 6), "definition": "zeros among rank>=2 weights in the file",
            "weights": {"total": w["total"], "zeros": w["zeros"], "tensors": w["tensors"], "dense_total": w["total"]}}),
        input=spec_in, output=spec_out, class_names=res.class_names, preprocessing=res.prep,
        source=Source(dataset=res.dataset, imported_from=str(file.resolve()),
                      reference=describe_origins(res.origin)),
        file=file_info(file), params=Params(w["total"], w["total"] - w["zeros"]), tools=tool_versions(),
        notes=notes, export={"imported": True, "origins": dict(res.origin)})


def _notes(file: Path, res: Resolved, info: dict[str, Any]) -> list[str]:
    notes = [f"imported from {file.name}: made outside edgefair; read from the file: I/O names, shapes, dtypes, "
             f"quantisation, precision, sparsity (run once with {info.get('runtime')})",
             f"input layout {res.layout} inferred from the input shape {info['input']['shape']}",
             describe_origins(res.origin)]
    if info.get("input_quant_from_graph"):
        notes.append("input scale/zero point taken from the first op that reads the input")
    if res.dataset is None:
        notes.append("no labelled dataset given (--dataset): accuracy not measured at import")
    return notes


def _build(file: Path, out: Path, m: Manifest, res: Resolved, parity_n: int, t0: float) -> TargetResult:
    staging = Staging(out)
    folder = staging.new(m.name)
    warnings: list[str] = []
    log = ExportLog(out / "export.log")
    try:
        shutil.copyfile(file, folder / m.model_file)
        write_manifest(folder, m)
        if res.data is not None:
            parity, warnings = evaluate_import(folder, m, res, parity_n)
            m = replace(m.with_parity(parity), notes=[*m.notes, *(f"warning: {w}" for w in warnings)])
            write_manifest(folder, m)
        final = staging.publish(folder, m.name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        staging.remove_if_empty()
    log.write(f"imported {file} -> {final}" + "".join(f"; warning: {w}" for w in warnings))
    return TargetResult(m.name, m.target, float(m.sparsity.measured), "imported", str(final), None,
                        time.perf_counter() - t0, m, warnings)


def _eval_samples(data: Any, parity_n: int) -> tuple[str, list[Any]]:
    """A fixed sample (seed 0) of the validation split, else of the test split."""
    split = "val" if data.split("val") else "test"
    samples = data.split(split)
    if not samples:
        raise ExportError(f"dataset {data.name}: no validation or test samples to evaluate the import on")
    idx = np.sort(np.random.default_rng(0).permutation(len(samples))[:parity_n])
    return split, [samples[i] for i in idx]


def evaluate_import(folder: Path, m: Manifest, res: Resolved, parity_n: int) -> tuple[dict[str, Any], list[str]]:
    """Accuracy on labelled data through the agent's preprocessing (a child process), plus warnings."""
    from edgefair.data.preprocess import labels_of, samples_to_uint8
    from edgefair.export.import_checks import NORMALISATION_SAMPLE, NORMALISATIONS, diagnose, normalisation_hint
    from edgefair.export.inspect_model import predict

    split, samples = _eval_samples(res.data, parity_n)
    y = labels_of(samples)
    candidates = [c for c in NORMALISATIONS if (c["mean"], c["std"]) != (m.preprocessing.mean, m.preprocessing.std)]
    jobs: list[dict[str, Any]] = [{"prep": {}}, *({"prep": c, "limit": NORMALISATION_SAMPLE} for c in candidates)]
    with tempfile.TemporaryDirectory(prefix="edgefair-import-") as tmp:
        batch = Path(tmp) / "batch.npz"
        np.savez(batch, images=samples_to_uint8(samples, m.preprocessing))
        (pred, *others), runtime = predict(folder, batch, jobs, Path(tmp))
    d = diagnose(y, pred, list(m.class_names), list(res.data.class_names))
    normalisation_hint(y[:NORMALISATION_SAMPLE], pred[:NORMALISATION_SAMPLE], others, candidates, d)
    parity = {"n": int(len(y)), "agreement": None, "max_abs_logit_diff": None, "val_accuracy": d.accuracy,
              "reference_val_accuracy": None, "reference": None, "runtime": runtime, "gate": None,
              "passed": not d.warnings, "split": split, "check": d.to_dict()}
    return parity, d.warnings
