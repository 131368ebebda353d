"""Look inside a model file in a child process: a corrupt file may crash the runtime, never the caller.

    python -m edgefair.export.inspect_model inspect FILE FORMAT
        -> one JSON line: input/output specs, precision facts, weight counts, and one
           inference on zeros through the agent's own runner (the file really runs)
    python -m edgefair.export.inspect_model predict ARTEFACT_DIR BATCH.npz JOBS.json OUT.npz
        -> predictions of the artefact on the batch (the first ``limit`` images) under each
           job's preprocessing overrides, through the agent's preprocess/dequantise (as on a
           device); OUT.npz holds pred_<i>

The host side is :func:`inspect_file` / :func:`predict` (they start the child and turn a
crash, a timeout or an exception into a one-line :class:`ExportError`).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgefair.export.errors import ExportError

TIMEOUT_S = 600.0


# ---------------------------------------------------------------------------- child side
def _inspect(file: Path, fmt: str) -> dict[str, Any]:
    import numpy as np

    from edgefair.export.io_specs import onnx_io, tflite_io
    from edgefair.export.precision import onnx_facts, onnx_input_quant, tflite_facts
    from edgefair.export.sparsity import weight_stats

    spec_in, spec_out = (onnx_io if fmt == "onnx" else tflite_io)(file)
    facts = (onnx_facts if fmt == "onnx" else tflite_facts)(file, spec_in.dtype)
    quant = onnx_input_quant(file, spec_in.name) if fmt == "onnx" and spec_in.quant is None else None
    ws = weight_stats(file, fmt)
    runtime = _smoke(file, fmt, spec_in, spec_out, quant, np)
    return {"input": spec_in.to_dict(), "output": spec_out.to_dict(), "input_quant_from_graph": quant,
            "facts": {k: sorted(v) if isinstance(v, frozenset) else v for k, v in asdict(facts).items()},
            "weights": {"total": ws.total, "zeros": ws.zeros, "tensors": ws.tensors}, "runtime": runtime}


def _smoke(file: Path, fmt: str, spec_in: Any, spec_out: Any, quant: Any, np: Any) -> str:
    """Load the file with the agent's runner and run it once on zeros."""
    from edgefair.runtimes import agent as A

    manifest = {"format": fmt, "input": spec_in.to_dict(), "output": spec_out.to_dict()}
    if quant is not None:
        manifest["input"]["quant"] = {"scale": quant[0], "zero_point": quant[1]}
    runner = A.make_runner(fmt, str(file), 1, manifest)
    runner.load()
    shape = [d if d > 0 else 1 for d in runner.input_shape]
    dtype = A._NP_DTYPES.get(runner.input_dtype, np.float32)
    runner.run_one(np.zeros(shape, dtype=dtype))
    return f"{runner.name} {runner.version}"


def _predict(folder: Path, batch: Path, jobs_file: Path, out: Path) -> dict[str, Any]:
    import numpy as np

    from edgefair.runtimes import agent as A

    manifest = json.loads((folder / "manifest.json").read_text())
    jobs = json.loads(jobs_file.read_text())
    images = np.load(batch)["images"]
    runner = A.make_runner(manifest["format"], str(folder / manifest["model_file"]), 1, manifest)
    runner.load()
    preds = {}
    for i, job in enumerate(jobs):
        m = dict(manifest, preprocessing=dict(manifest["preprocessing"], **job["prep"]))
        x = A.preprocess(images[:job.get("limit") or None], m, runner)
        preds[f"pred_{i}"] = np.array([int(np.argmax(A.dequantise(runner.run_one(x[j:j + 1]), runner)))
                                       for j in range(x.shape[0])], dtype=np.int64)
    np.savez(out, **preds)
    return {"runtime": f"{runner.name} {runner.version}", "n": int(images.shape[0]), "jobs": len(jobs)}


def main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        if argv[:1] == ["inspect"] and len(argv) == 3:
            doc = _inspect(Path(argv[1]), argv[2])
        elif argv[:1] == ["predict"] and len(argv) == 5:
            doc = _predict(Path(argv[1]), Path(argv[2]), Path(argv[3]), Path(argv[4]))
        else:
            doc = {"error": "usage: inspect FILE FORMAT | predict DIR BATCH JOBS OUT"}
    except Exception as e:  # everything goes back to the parent as one line
        from edgefair.contracts.jsonio import error_text

        doc = {"error": error_text(e)}
    sys.stdout.write("\n" + json.dumps(doc) + "\n")
    return 1 if "error" in doc else 0


# ---------------------------------------------------------------------------- host side
def _child(args: list[str], what: str, subject: Path) -> dict[str, Any]:
    from edgefair.devices.local import run_subprocess

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=_pythonpath())
    out = run_subprocess([sys.executable, "-m", "edgefair.export.inspect_model", *args], cwd=None, env=env,
                         timeout_s=TIMEOUT_S)
    if out.timed_out:
        raise ExportError(f"{subject}: {what} timed out after {TIMEOUT_S:g} s")
    if out.exit_code is not None and out.exit_code < 0:
        name = signal.Signals(-out.exit_code).name if -out.exit_code in signal.valid_signals() else str(out.exit_code)
        raise ExportError(f"{subject}: the runtime crashed ({name}) while {what}: a truncated or corrupt model file?")
    doc = _last_json(out.stdout)
    if doc is None:
        raise ExportError(f"{subject}: {what} failed ({out.last_error_line() or f'exit {out.exit_code}'})")
    if "error" in doc:
        raise ExportError(f"{subject}: cannot load it as a model ({doc['error']})")
    return doc


def _pythonpath() -> str:
    """The child imports this very edgefair (a checkout run without installing included)."""
    root = str(Path(__file__).resolve().parents[2])
    return os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except ValueError:
                return None
            return doc if isinstance(doc, dict) else None
    return None


def inspect_file(file: Path, fmt: str) -> dict[str, Any]:
    """Specs, precision facts and weight counts of ``file``, read (and run once) in a child process."""
    return _child(["inspect", str(file), fmt], "reading it", file)


def predict(folder: Path, batch: Path, jobs: list[dict[str, Any]], work: Path) -> tuple[list[Any], str]:
    """Predicted classes of the artefact on ``batch`` for each job ``{"prep": {...}, "limit": N}``
    (preprocessing overrides, the first N images), in a child process."""
    import numpy as np

    jobs_file, out = work / "jobs.json", work / "preds.npz"
    jobs_file.write_text(json.dumps(jobs))
    doc = _child(["predict", str(folder), str(batch), str(jobs_file), str(out)], "evaluating it", folder)
    with np.load(out) as z:
        return [z[f"pred_{i}"] for i in range(len(jobs))], str(doc.get("runtime"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
