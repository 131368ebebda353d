"""Honest caching: keys cover what changes a file, and nothing else (issue 9)."""

from __future__ import annotations

import json
import shutil

from edgefair.export import cache
from edgefair.export.matrix import export_matrix


def _copy(matrix, tmp_path):
    _, out, _, _ = matrix
    dst = tmp_path / "art"
    shutil.copytree(out, dst)
    return dst


def _log_since(path, mark):
    text = path.read_text()
    return text[text.rindex(mark):]


def test_a_new_parity_sample_size_rechecks_without_converting(matrix, export_run, tmp_path):
    out = _copy(matrix, tmp_path)
    before = json.loads((out / "onnx-fp32-s0.5" / "manifest.json").read_text())
    rep = export_matrix(export_run, targets=["onnx-fp32", "tflite-int8"], sparsities=[0.5], out=out,
                        finetune_epochs=1, calib=200, parity_n=40)
    assert [r.status for r in rep.results] == ["cached", "cached"]
    after = json.loads((out / "onnx-fp32-s0.5" / "manifest.json").read_text())
    assert after["parity"]["n"] == 40 and before["parity"]["n"] == 88
    assert after["artifact_id"] == before["artifact_id"] and after["file"] == before["file"]
    log = _log_since(out / "export.log", "=== export")
    assert "level model from the cache" in log and "fine-tune epoch" not in log and "onnx2tf" not in log


def test_a_new_calibration_size_reconverts_int8_only_and_does_not_fine_tune_again(matrix, export_run, tmp_path):
    out = _copy(matrix, tmp_path)
    rep = export_matrix(export_run, targets=["onnx-fp32", "onnx-int8", "torch-fp32"], sparsities=[0.5], out=out,
                        finetune_epochs=1, calib=64)
    assert {r.target: r.status for r in rep.results} == {"onnx-fp32": "cached", "onnx-int8": "converted",
                                                         "torch-fp32": "cached"}
    m = json.loads((out / "onnx-int8-s0.5" / "manifest.json").read_text())
    assert m["compression"]["calibration"]["images"] == 64
    log = _log_since(out / "export.log", "=== export")
    assert "level model from the cache" in log and "fine-tune epoch" not in log


def test_other_fine_tune_settings_do_not_reuse_the_level_model(matrix, export_run, tmp_path):
    out = _copy(matrix, tmp_path)
    rep = export_matrix(export_run, targets=["onnx-fp32"], sparsities=[0.5], out=out, finetune_epochs=0, calib=200)
    assert rep.results[0].status == "converted"
    assert "level model from the cache" not in _log_since(out / "export.log", "=== export")


def test_the_code_version_covers_models_data_and_contracts(tmp_path, monkeypatch):
    copy = tmp_path / "edgefair"
    shutil.copytree(cache.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache, "PACKAGE", copy)
    versions = []
    for edit in ("", "models/training.py", "data/preprocess.py", "contracts/manifest.py", "export/build.py"):
        if edit:
            (copy / edit).write_text((copy / edit).read_text() + "\n# changed\n")
        cache.code_version.cache_clear()
        versions.append(cache.code_version())
    cache.code_version.cache_clear()
    assert len(set(versions)) == len(versions)
    (copy / "bench" / "report.py").write_text("# not part of what an export writes\n")
    assert cache.code_version() == versions[-1]
    cache.code_version.cache_clear()
