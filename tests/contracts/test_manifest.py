"""The manifest contract: parsing with one-line errors, and an id that hashes only what determines the model."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from edgefair.contracts.dataset import DatasetRef
from edgefair.contracts.errors import ManifestError
from edgefair.contracts.manifest import Manifest, Source, read_manifest, relative_run, write_manifest
from tests.manifests import make_manifest

SPEC_IN = {"name": "input", "shape": [1, 48, 48, 1], "layout": "NHWC", "dtype": "int8",
           "quant": {"scale": 0.0157, "zero_point": -1}}
SPEC_OUT = {"name": "logits", "shape": [1, 7], "dtype": "int8", "quant": {"scale": 0.1, "zero_point": 3}}
PREP = {"size": 48, "channels": 1, "mean": 0.5, "std": 0.25}
CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def _manifest(**kw) -> Manifest:
    args = {"name": "tflite-int8-s0", "target": "tflite-int8", "model_file": "model.tflite", "input_spec": SPEC_IN,
            "output_spec": SPEC_OUT, "class_names": CLASSES, "prep": PREP, "data": b"model bytes",
            "dataset": DatasetRef(spec="synthfer:n=600", seed=0, fingerprint="f" * 64)}
    args.update(kw)
    return make_manifest(**args)


def test_round_trip_through_json(tmp_path):
    m = _manifest()
    write_manifest(tmp_path, m)
    back = read_manifest(tmp_path)
    assert back == m
    assert back.to_dict() == json.loads((tmp_path / "manifest.json").read_text())
    assert back.source.dataset == DatasetRef(spec="synthfer:n=600", seed=0, fingerprint="f" * 64)


def test_id_ignores_paths_parity_tools_notes_and_measured_numbers():
    m = _manifest()
    other = replace(m, source=replace(m.source, run="/somewhere/runs/base", run_relative="../../runs/base",
                                      reference="PyTorch model"),
                    parity={"n": 512, "agreement": 0.99}, tools={"torch": "2.13.0"}, notes=["a note"],
                    export={"cache_key": "x"}, sparsity=replace(m.sparsity, measured=0.4321))
    assert other.artifact_id == m.artifact_id


@pytest.mark.parametrize("change", [
    lambda m: replace(m, file=replace(m.file, sha256="0" * 64)),
    lambda m: replace(m, preprocessing=replace(m.preprocessing, mean=0.4)),
    lambda m: replace(m, class_names=list(reversed(m.class_names))),
    lambda m: replace(m, source=replace(m.source, checkpoint_sha256="1" * 64)),
    lambda m: replace(m, sparsity=replace(m.sparsity, requested=0.5)),
    lambda m: replace(m, compression=replace(m.compression, calibration={"images": 64})),
    lambda m: replace(m, compression=replace(m.compression, qat=True)),
    lambda m: replace(m, input=replace(m.input, layout="NCHW")),
])
def test_id_changes_with_what_determines_the_model(change):
    m = _manifest()
    assert change(m).artifact_id != m.artifact_id


def _doc(**edits):
    d = _manifest().to_dict()
    for path, value in edits.items():
        node = d
        *parents, leaf = path.split(".")
        for p in parents:
            node = node[p]
        if value is KeyError:
            del node[leaf]
        else:
            node[leaf] = value
    return d


@pytest.mark.parametrize("edits, problem", [
    ({"preprocessing.mean": KeyError}, "preprocessing.mean is missing"),
    ({"preprocessing.std": 0}, "preprocessing.std must be > 0, got 0"),
    ({"preprocessing.size": "48"}, "preprocessing.size must be an integer, got '48'"),
    ({"input.layout": "HWC"}, "input.layout is 'HWC'; expected one of NCHW, NHWC"),
    ({"input.quant": None}, "input is int8 but has no quant scale/zero_point"),
    ({"format": "pt"}, "format is 'pt'; expected one of torch, onnx, tflite"),
    ({"model_file": "../x.tflite"}, "model_file '../x.tflite' must be a plain file name inside the artefact folder"),
    ({"class_names": []}, "class_names must be a non-empty list"),
    ({"sparsity.measured": 1.5}, "sparsity.measured must be in [0, 1], got 1.5"),
    ({"schema_version": 1}, "schema_version 1, this edgefair reads 2 (written by another edgefair: export the "
                            "artefact again)"),
    ({"file.sha256": "0" * 64}, None),  # the id no longer matches
])
def test_bad_manifests_are_one_line_errors_naming_the_file_and_key(tmp_path, edits, problem):
    (tmp_path / "manifest.json").write_text(json.dumps(_doc(**edits)))
    with pytest.raises(ManifestError) as e:
        read_manifest(tmp_path)
    where = f"{tmp_path / 'manifest.json'}: "
    if problem is None:
        assert str(e.value).startswith(where + "artifact_id ")
        assert "does not match the manifest's content" in str(e.value)
    else:
        assert str(e.value) == where + problem
    assert "\n" not in str(e.value)


def test_unreadable_and_missing_manifests(tmp_path):
    with pytest.raises(ManifestError, match="no such file"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match=r"manifest.json: unreadable \("):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("[]")
    with pytest.raises(ManifestError, match="the document must be an object, got list"):
        read_manifest(tmp_path)


def test_the_run_directory_resolves_beside_the_artefact_or_absolute(tmp_path):
    run = tmp_path / "proj" / "runs" / "base"
    run.mkdir(parents=True)
    (run / "model.json").write_text("{}")
    art = tmp_path / "proj" / "artifacts" / "onnx-fp32-s0"
    art.mkdir(parents=True)
    src = Source(run=str(run), run_relative=relative_run(run, art))
    assert src.run_relative == "../../runs/base"
    assert src.run_dir(art) == run
    moved = tmp_path / "moved"
    (tmp_path / "proj").rename(moved)
    assert src.run_dir(moved / "artifacts" / "onnx-fp32-s0") == moved / "runs" / "base"
    assert Source(run=str(run)).run_dir(art) is None  # gone, and not beside it
