"""bench export: the 9-target × {0, 0.5} matrix of one tiny run, exported once per session."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgefair.contracts.errors import EdgefairError
from edgefair.contracts.manifest import read_manifest
from edgefair.contracts.targets import TARGETS, TargetError
from edgefair.export.errors import ExportError
from edgefair.export.matrix import export_matrix
from edgefair.export.sparsity import weight_stats
from edgefair.files import sha256_file
from tests.export.conftest import SPARSITIES

AGENT = Path(__file__).resolve().parents[2] / "edgefair" / "runtimes" / "agent.py"


def validate(m: dict, folder: Path) -> list[str]:
    """Problems with a stored artefact: its manifest must parse through the contract and match its file."""
    parsed = read_manifest(folder)
    problems = [] if parsed.to_dict() == m else ["manifest.json does not round-trip through the contract"]
    if sha256_file(folder / parsed.model_file) != parsed.file.sha256:
        problems.append("file.sha256 does not match the model file")
    return problems


def _manifests(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/manifest.json"))}


def test_every_target_and_level_converted(matrix):
    rep, out, calls, _ = matrix
    assert rep.ok, [(r.name, r.reason) for r in rep.failed]
    assert rep.counts() == {"converted": 18, "cached": 0, "failed": 0}
    names = {r.name for r in rep.results}
    assert names == {f"{TARGETS[t].format}-{TARGETS[t].precision}-s{s:g}" for t in TARGETS for s in SPARSITIES}
    assert "tflite-dynamic-s0.5" in names and "torch-int8-s0" in names
    assert set(_manifests(out)) == names
    assert not (out / ".staging").exists()
    assert (out / "export.log").stat().st_size > 0
    # progress: ends at total, never goes backwards
    assert calls[-1][0] == calls[-1][1] == 18
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:], strict=False))
    d = rep.to_dict()
    json.dumps(d)
    assert d["counts"]["converted"] == 18 and d["results"][0]["artifact_id"]


def test_manifests_follow_the_contract(matrix):
    _, out, _, _ = matrix
    for name, m in _manifests(out).items():
        assert validate(m, out / name) == [], name
        assert m["name"] == name
        assert m["target"] in TARGETS
        t = TARGETS[m["target"]]
        assert (m["format"], m["precision"]) == (t.format, t.precision)
        assert m["input"]["layout"] == ("NHWC" if t.format == "tflite" else "NCHW")
        assert m["input"]["shape"] == ([1, 48, 48, 1] if t.format == "tflite" else [1, 1, 48, 48])
        assert m["output"]["shape"] == [1, 7]
        assert m["preprocessing"] == {"size": 48, "channels": 1, "mean": 0.5, "std": 0.25}
        assert len(m["class_names"]) == 7
        assert len(m["source"]["checkpoint_sha256"]) == 64
        assert 0 < m["file"]["gzip_bytes"] and 0 < m["file"]["size_bytes"]
        assert m["params"]["total"] >= m["params"]["nonzero"] > 0
        assert m["tools"]["torch"] and m["tools"]["onnx2tf"]
        assert m["parity"]["n"] == 88  # the whole validation split of synthfer:n=600 (< 512)
        assert m["compression"]["qat"] is False
        assert m["sparsity"]["method"] == ("none" if m["sparsity"]["requested"] == 0 else "unstructured")


def test_fp32_artefacts_agree_with_pytorch(matrix):
    _, out, _, _ = matrix
    for name, m in _manifests(out).items():
        p = m["parity"]
        assert 0 <= p["val_accuracy"] <= 1 and 0 <= p["reference_val_accuracy"] <= 1
        if m["precision"] == "fp32":
            assert p["agreement"] >= 0.995 and p["gate"] == 0.995 and p["passed"], name
            assert p["gate_kind"] == "agreement" and p["max_abs_logit_diff"] < 1e-3, name
        else:  # fp16/int8: accuracy >= 99 % of the reference's, or null where that gate says nothing
            assert p["gate"] == 0.99 and p["gate_kind"] == "accuracy", name
            if p["passed"] is None:
                assert "no accuracy gate" in p["reason"] and p["reference_val_accuracy"] <= 1 / 7, name
            else:
                assert p["passed"] == (p["val_accuracy"] >= 0.99 * p["reference_val_accuracy"]), name
        if m["precision"] == "fp16":
            assert p["max_abs_logit_diff"] < 0.05, name


def test_measured_sparsity_survives_conversion(matrix):
    _, out, _, _ = matrix
    ms = _manifests(out)
    for name, m in ms.items():
        sp = m["sparsity"]
        # measured from the file itself, not copied from the request
        ws = weight_stats(out / name / m["model_file"], m["format"])
        assert (ws.total, ws.zeros) == (sp["weights"]["total"], sp["weights"]["zeros"])
        if sp["requested"] == 0.5:
            assert abs(sp["measured"] - 0.5) < 0.02, (name, sp)
        elif m["precision"] in ("fp32", "fp16"):
            assert sp["measured"] == 0.0, name
        else:  # int8 rounding sends a few tiny weights to zero
            assert sp["measured"] < 0.05, name
    for fmt in ("onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8", "tflite-fp16", "tflite-dynamic"):
        assert ms[f"{fmt}-s0.5"]["sparsity"]["weights"]["total"] > 10_000


def test_tflite_int8_io_and_size(matrix):
    _, out, _, _ = matrix
    ms = _manifests(out)
    for s in ("0", "0.5"):
        m = ms[f"tflite-int8-s{s}"]
        for side in ("input", "output"):
            assert m[side]["dtype"] == "int8"
            q = m[side]["quant"]
            assert q["scale"] > 0 and isinstance(q["zero_point"], int)
        # the input scale covers the normalised range (x - 0.5) / 0.25 in [-2, 2]
        assert 3.5 / 255 < m["input"]["quant"]["scale"] < 4.5 / 255
        assert ms[f"tflite-int8-s{s}"]["file"]["size_bytes"] < ms[f"tflite-fp32-s{s}"]["file"]["size_bytes"] / 3
        assert ms[f"tflite-dynamic-s{s}"]["input"]["dtype"] == "float32"
    # zeros compress: the pruned file's gzip is much smaller than the dense one's
    assert ms["tflite-int8-s0.5"]["file"]["gzip_bytes"] < 0.8 * ms["tflite-int8-s0"]["file"]["gzip_bytes"]


def test_cached_rerun_converts_nothing(matrix, export_run):
    _rep, out, _, _ = matrix
    before = {n: m["artifact_id"] for n, m in _manifests(out).items()}
    again = export_matrix(export_run, targets="all", sparsities="0,0.5", out=out, finetune_epochs=1, calib=200)
    assert again.counts() == {"converted": 0, "cached": 18, "failed": 0}
    assert all(r.status == "cached" and r.manifest for r in again.results)
    assert {n: m["artifact_id"] for n, m in _manifests(out).items()} == before
    # another calibration count re-keys only the calibrated int8 targets
    other = export_matrix(export_run, targets=["onnx-fp32", "onnx-fp16"], sparsities=[0], out=out,
                          finetune_epochs=1, calib=123)
    assert other.counts()["cached"] == 2


def test_force_converts_again(matrix, export_run, tmp_path):
    _, out, _, _ = matrix
    copy = tmp_path / "art"
    shutil.copytree(out, copy)
    rep = export_matrix(export_run, targets=["onnx-fp32", "torch-fp32"], sparsities=[0], out=copy,
                        finetune_epochs=1, calib=200, force=True)
    assert [r.status for r in rep.results] == ["converted", "converted"]
    m = json.loads((copy / "onnx-fp32-s0" / "manifest.json").read_text())
    assert validate(m, copy / "onnx-fp32-s0") == []


def test_structured_pruning_really_shrinks(matrix, export_run, tmp_path):
    _, out, _, _ = matrix
    rep = export_matrix(export_run, targets=["onnx-fp32", "torch-fp32"], sparsities=[0.5], out=tmp_path,
                        pruning="structured", finetune_epochs=0, calib=200)
    assert rep.ok, [r.reason for r in rep.failed]
    m = json.loads((tmp_path / "onnx-fp32-s0.5" / "manifest.json").read_text())
    dense = json.loads((out / "onnx-fp32-s0" / "manifest.json").read_text())
    assert m["sparsity"]["method"] == "structured"
    assert m["params"]["total"] < 0.6 * dense["params"]["total"]
    assert m["file"]["size_bytes"] < 0.6 * dense["file"]["size_bytes"]
    assert m["sparsity"]["weights"]["total"] < dense["sparsity"]["weights"]["total"]
    # the level is the share of weights removed (the channel ratio that gives it is recorded beside it)
    assert abs(m["sparsity"]["measured"] - 0.5) <= 0.01 and abs(m["sparsity"]["weight_share"] - 0.5) <= 0.01
    assert 0.2 < m["sparsity"]["channel_ratio"] < 0.45
    assert m["parity"]["agreement"] >= 0.995


@pytest.mark.parametrize("kwargs, message", [
    ({"targets": ["tflite-int4"]}, "unknown target 'tflite-int4': expected one of torch-fp32, torch-int8, onnx-fp32, "
                                   "onnx-fp16, onnx-int8, tflite-fp32, tflite-fp16, tflite-int8, tflite-dynamic "
                                   "or all"),
    ({"sparsities": [0, 1.0]}, "sparsity 1 is outside [0, 1): 0 keeps every weight, 0.9 removes 90 %"),
    ({"sparsities": "0,-0.1"}, "sparsity -0.1 is outside [0, 1): 0 keeps every weight, 0.9 removes 90 %"),
    ({"sparsities": "0,half"}, "sparsity 'half' is not a number: expected values in [0, 1), e.g. 0,0.5,0.9"),
    ({"pruning": "random"}, "unknown pruning method 'random': expected unstructured or structured"),
    ({"qat": True, "finetune_epochs": 0}, "--qat needs at least one fine-tune epoch (--finetune-epochs >= 1)"),
])
def test_bad_input_is_a_one_line_error(export_run, tmp_path, kwargs, message):
    args = {"targets": ["onnx-fp32"], "sparsities": [0], "out": tmp_path}
    args.update(kwargs)
    with pytest.raises((ExportError, TargetError)) as e:
        export_matrix(export_run, **args)
    assert str(e.value) == message
    assert isinstance(e.value, ValueError) and isinstance(e.value, EdgefairError)


def test_missing_runtime_is_an_error(export_run, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx2tf" else real(name, *a))
    with pytest.raises(ExportError) as e:
        export_matrix(export_run, targets=["onnx-fp32", "tflite-int8"], sparsities=[0], out=tmp_path)
    assert str(e.value) == "target tflite-int8 needs onnx2tf, which is not installed (pip install onnx2tf)"


def test_missing_or_mismatched_checkpoint(export_run, tmp_path):
    from edgefair.models.checkpoint import CheckpointError

    with pytest.raises(CheckpointError) as e:
        export_matrix(tmp_path / "nope", targets=["onnx-fp32"], sparsities=[0], out=tmp_path / "a")
    assert str(e.value) == (f"{tmp_path / 'nope' / 'model.json'}: missing (is '{tmp_path / 'nope'}' a run "
                            "directory written by bench train?)")

    swapped = tmp_path / "swapped"
    shutil.copytree(export_run, swapped)
    (swapped / "model.pt").write_bytes((swapped / "model.pt").read_bytes() + b"\0")
    with pytest.raises(CheckpointError) as e:
        export_matrix(swapped, targets=["onnx-fp32"], sparsities=[0], out=tmp_path / "a")
    assert str(e.value) == (f"{swapped / 'model.pt'}: sha256 differs from model.json's checkpoint_sha256 "
                            "(file replaced or corrupted)")

    other_arch = tmp_path / "other"
    shutil.copytree(export_run, other_arch)
    meta = json.loads((other_arch / "model.json").read_text())
    meta["arch_kwargs"] = {"widths": [8, 16, 32]}
    (other_arch / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as e:
        export_matrix(other_arch, targets=["onnx-fp32"], sparsities=[0], out=tmp_path / "a")
    assert str(e.value).startswith(f"{other_arch / 'model.pt'}: does not match arch 'cnn' in model.json (")
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").glob("*/manifest.json"))


def test_one_failing_target_leaves_the_others(export_run, tmp_path, monkeypatch):
    from edgefair.export import onnx_quant

    def boom(*a, **k):
        raise RuntimeError("calibration exploded\nsecond line")

    monkeypatch.setattr(onnx_quant, "quantize_int8", boom)
    rep = export_matrix(export_run, targets=["onnx-fp32", "onnx-int8", "torch-fp32"], sparsities=[0], out=tmp_path,
                        calib=200)
    assert not rep.ok
    by = {r.target: r for r in rep.results}
    assert by["onnx-int8"].status == "failed"
    assert by["onnx-int8"].reason == "onnxruntime quantize_static failed: RuntimeError: calibration exploded"
    assert by["onnx-fp32"].status == by["torch-fp32"].status == "converted"
    assert (tmp_path / "onnx-fp32-s0" / "manifest.json").exists()
    assert not (tmp_path / "onnx-int8-s0").exists()
    assert not (tmp_path / ".staging").exists()
    assert rep.to_dict()["ok"] is False
    assert "FAILED onnx-int8-s0: onnxruntime quantize_static failed" in (tmp_path / "export.log").read_text()


def test_fp32_parity_gate_names_the_likely_cause(export_run, tmp_path, monkeypatch):
    """Feed the artefact with the wrong normalisation: the fp32 target must fail, pointing at it."""
    from edgefair.export import parity

    real = parity.run_artifact

    def misfed(folder, manifest, images, **kw):
        wrong = dict(manifest, preprocessing=dict(manifest["preprocessing"], mean=0.0, std=1.0))
        return real(folder, wrong, images, **kw)

    monkeypatch.setattr(parity, "run_artifact", misfed)
    rep = export_matrix(export_run, targets=["onnx-fp32", "onnx-fp16"], sparsities=[0], out=tmp_path)
    by = {r.target: r for r in rep.results}
    assert by["onnx-fp32"].status == "failed"
    reason = by["onnx-fp32"].reason
    assert reason.startswith("parity: top-1 agreement ") and "< 0.995 with the PyTorch model" in reason
    assert "normalisation" in reason and "\n" not in reason
    assert by["onnx-fp16"].status == "converted"  # not gated
    assert not (tmp_path / "onnx-fp32-s0").exists()
    assert (tmp_path / ".failed" / "onnx-fp32-s0" / "model.onnx").exists()


def _agent_eval(artifact: Path, images: np.ndarray, tmp_path: Path) -> dict:
    batch = tmp_path / f"batch-{artifact.name}.npz"
    np.savez(batch, images=images, ids=np.array([f"v{i}" for i in range(len(images))]))
    res = tmp_path / f"result-{artifact.name}.json"
    from edgefair.models.torch_runner import PLUGIN_PATH

    plugin = ["--plugin", str(PLUGIN_PATH)] if artifact.name.startswith("torch-") else []  # as the host runner does
    proc = subprocess.run([sys.executable, str(AGENT), "run", "--artifact", str(artifact), "--batch", str(batch),
                           "--out", str(res), "--mode", "eval", *plugin], capture_output=True, text=True, timeout=120)
    result = json.loads(res.read_text())
    assert proc.returncode == 0 and result["ok"], (proc.stderr[-2000:], result.get("error"))
    return result


def _val_images(run: Path, n: int = 32) -> np.ndarray:
    from edgefair.data.preprocess import Preprocessing, samples_to_uint8
    from edgefair.data.registry import load_dataset

    return samples_to_uint8(load_dataset("synthfer:n=600", seed=0).split("val")[:n], Preprocessing())


def test_agent_runs_exported_int8_artefacts(matrix, export_run, tmp_path):
    _, out, _, _ = matrix
    images = _val_images(export_run)
    for name in ("tflite-int8-s0.5", "torch-int8-s0"):
        result = _agent_eval(out / name, images, tmp_path)
        assert len(result["eval"]["pred"]) == len(images)
        assert result["runtime"]["input"]["dtype"] == ("int8" if name.startswith("tflite") else "float32")
        assert not [w for w in result["warnings"] if "differs" in w or "but the model wants" in w]


def test_import_artifact_of_an_onnx_file(matrix, export_run, tmp_path):
    from edgefair.export.importer import import_artifact

    _, out, _, _ = matrix
    user_file = tmp_path / "my_model.onnx"
    shutil.copyfile(out / "onnx-fp32-s0" / "model.onnx", user_file)
    res = import_artifact(user_file, like_run=export_run, out=tmp_path / "arts")
    assert res.status == "imported"
    folder = Path(res.path)
    assert folder.name == "onnx-fp32-s0-my_model"
    m = json.loads((folder / "manifest.json").read_text())
    assert validate(m, folder) == []
    assert m["input"]["layout"] == "NCHW" and m["input"]["name"] == "input" and m["input"]["shape"] == [1, 1, 48, 48]
    assert m["output"]["name"] == "logits" and m["precision"] == "fp32" and m["sparsity"]["requested"] is None
    exported = json.loads((out / "onnx-fp32-s0" / "manifest.json").read_text())
    assert m["parity"]["val_accuracy"] == exported["parity"]["val_accuracy"]
    assert m["source"]["dataset"] == exported["source"]["dataset"]  # evaluated on the like-run's data
    images = _val_images(export_run)
    result = _agent_eval(folder, images, tmp_path)
    ref = _agent_eval(out / "onnx-fp32-s0", images, tmp_path)
    assert result["eval"]["pred"] == ref["eval"]["pred"]


def test_import_artifact_of_a_tflite_file_reads_quant_from_the_file(matrix, export_run, tmp_path):
    from edgefair.export.importer import import_artifact

    _, out, _, _ = matrix
    res = import_artifact(out / "tflite-int8-s0.5" / "model.tflite", like_run=export_run, out=tmp_path, name="mine")
    m = res.manifest.to_dict()
    exported = json.loads((out / "tflite-int8-s0.5" / "manifest.json").read_text())
    assert m["precision"] == "int8" and m["input"]["layout"] == "NHWC"
    assert m["input"]["quant"] == exported["input"]["quant"]
    assert m["output"]["quant"] == exported["output"]["quant"]
    assert abs(m["sparsity"]["measured"] - 0.5) < 0.02
    with pytest.raises(ExportError, match="cannot import '.txt' files"):
        (tmp_path / "x.txt").write_text("no")
        import_artifact(tmp_path / "x.txt", like_run=export_run, out=tmp_path)


def test_a_failed_onnx2tf_conversion_is_reported_with_its_reason(export_run, tmp_path, monkeypatch):
    from edgefair.export import tflite_convert

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    real_submit = tflite_convert.TFLitePool.submit

    def submit(self, onnx_path, *a, **k):
        return real_submit(self, bad, *a, **k)

    monkeypatch.setattr(tflite_convert.TFLitePool, "submit", submit)
    rep = export_matrix(export_run, targets=["onnx-fp32", "tflite-fp32", "tflite-int8"], sparsities=[0],
                        out=tmp_path / "art", calib=200)
    by = {r.target: r for r in rep.results}
    assert by["onnx-fp32"].status == "converted"
    for t in ("tflite-fp32", "tflite-int8"):
        assert by[t].status == "failed"
        assert by[t].reason.startswith("onnx2tf failed: DecodeError: ")
        assert not (tmp_path / "art" / f"{t}-s0").exists()


def test_qat_keeps_sparsity_and_says_what_each_format_took(export_run, tmp_path):
    rep = export_matrix(export_run, targets=["onnx-fp32", "torch-int8", "onnx-int8", "tflite-int8"], sparsities=[0.5],
                        out=tmp_path, qat=True, finetune_epochs=1, calib=200)
    assert rep.ok, [(r.name, r.reason) for r in rep.failed]
    ms = _manifests(tmp_path)
    assert ms["onnx-fp32-s0.5"]["compression"]["qat"] is False
    for name in ("torch-int8-s0.5", "onnx-int8-s0.5", "tflite-int8-s0.5"):
        m = ms[name]
        assert m["compression"]["qat"] is True, name
        assert abs(m["sparsity"]["measured"] - 0.5) < 0.02, name  # QAT fine-tune keeps pruned weights at zero
        assert m["parity"]["reference"].startswith("QAT float model")
        assert m["compression"]["finetune_epochs"] == 1
        assert validate(m, tmp_path / name) == []
    assert any("QAT ones" in n for n in ms["torch-int8-s0.5"]["notes"])
    assert any("cannot carry torch.ao's learned ranges" in n for n in ms["onnx-int8-s0.5"]["notes"])
    assert any("cannot take torch.ao's fake-quant ranges" in n for n in ms["tflite-int8-s0.5"]["notes"])
