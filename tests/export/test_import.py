"""``bench export --import``: FER models made with other tools (a Keras model converted by
tf.lite.TFLiteConverter, an ONNX graph written with onnx.helper), imported without a training
run, then run and audited like any other artefact."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgefair.export.errors import ExportError
from edgefair.export.import_options import ImportOptions, image_geometry, parse_classes, read_preprocessing_toml
from edgefair.export.importer import import_artifact

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DATASET = "synthfer:n=2000:seed=3"
KERAS = ImportOptions(mean=0.5, std=0.5)  # the Keras model saw pixels scaled to [-1, 1]
ONNX = ImportOptions(mean=0.0, std=1.0)   # the ONNX graph takes pixel/255 and scales itself


def bench(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "edgefair", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=900)


@pytest.fixture(scope="session")
def foreign(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("foreign-models")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    r = subprocess.run([sys.executable, str(HERE / "foreign_models.py"), str(out), DATASET], capture_output=True,
                       text=True, env=env, timeout=900)
    if r.returncode != 0 or not (out / "info.json").exists():
        pytest.fail("building the foreign models failed: " + r.stderr[-3000:])
    return out


def _with(opts: ImportOptions, **kw) -> ImportOptions:
    from dataclasses import replace

    return replace(opts, **kw)


def test_tflite_precision_and_io_read_from_the_file(foreign, tmp_path):
    expected = {"keras_fer": "fp32", "keras_fer_int8io": "int8", "keras_fer_16x8": "int16x8",
                "keras_fer_dynamic": "dynamic"}
    info = json.loads((foreign / "info.json").read_text())
    for stem, precision in expected.items():
        res = import_artifact(foreign / f"{stem}.tflite", out=tmp_path, options=_with(KERAS, dataset=DATASET))
        m = res.manifest
        assert res.status == "imported" and m.precision == precision and m.target == f"tflite-{precision}", stem
        assert m.input.layout == "NHWC" and m.input.shape[1:] == [48, 48, 1] and m.input.dtype == "float32"
        assert m.output.shape[-1] == 7 and m.class_names == info["classes"]  # from the dataset
        assert m.preprocessing.to_dict() == {"size": 48, "channels": 1, "mean": 0.5, "std": 0.5}
        assert m.source.dataset.spec == DATASET and m.source.checkpoint_sha256 is None
        assert m.parity["val_accuracy"] > 0.5 and not res.warnings, (stem, m.parity, res.warnings)
        if stem == "keras_fer":
            assert abs(m.parity["val_accuracy"] - info["keras_val_accuracy"]) < 0.02
        if stem == "keras_fer_int8io":
            assert any("float32 input/output, quantised inside" in n for n in m.notes)
        if stem == "keras_fer_16x8":
            assert any("int16 activations" in n for n in m.notes)


def test_onnx_from_a_toml_without_dataset_gets_default_classes(foreign, tmp_path):
    toml = tmp_path / "prep.toml"
    toml.write_text("mean = 0\nstd = 1\n")
    res = import_artifact(foreign / "helper_fer.onnx", out=tmp_path / "arts",
                          options=ImportOptions(preprocessing_file=toml))
    m = res.manifest
    assert m.target == "onnx-fp32" and m.name == "onnx-fp32-s0-helper_fer"
    assert (m.input.name, m.input.layout, m.input.shape) == ("face", "NCHW", [1, 1, 48, 48])
    assert m.output.name == "scores" and m.class_names == [f"class_{i}" for i in range(7)]
    assert m.source.dataset is None and m.parity is None
    assert any("no labelled dataset" in n for n in m.notes)
    assert any(f"mean, std from --preprocessing {toml}" in n for n in m.notes)
    assert json.loads((Path(res.path) / "manifest.json").read_text())["artifact_id"] == m.artifact_id


def test_class_order_mismatch_is_a_warning(foreign, tmp_path):
    info = json.loads((foreign / "info.json").read_text())
    res = import_artifact(foreign / "helper_fer_permuted.onnx", out=tmp_path, options=_with(ONNX, dataset=DATASET))
    assert res.status == "imported" and res.manifest.parity["passed"] is False
    check = res.manifest.parity["check"]
    assert check["permutation"] == info["permutation"]
    assert check["permuted_accuracy"] - check["accuracy"] > 0.3
    assert any("a permutation of the classes fits far better" in w for w in res.warnings)
    assert any(w.startswith("warning: a permutation") for w in res.manifest.notes)


def test_normalisation_mismatch_is_a_warning(foreign, tmp_path):
    # A std 1000x too large: the network sees nearly the same input for every face.
    res = import_artifact(foreign / "helper_fer.onnx", out=tmp_path,
                          options=ImportOptions(mean=0.5, std=1000.0, dataset=DATASET))
    check = res.manifest.parity["check"]
    assert check["near_chance"] and any("is near chance" in w for w in res.warnings)
    hint = check["normalisation"]
    assert hint["accuracy"] - hint["given_accuracy"] >= 0.2 and (hint["mean"], hint["std"]) != (0.5, 1000.0)
    assert any(f"pass --mean {hint['mean']:g} --std {hint['std']:.6g}" in w for w in res.warnings)
    good = import_artifact(foreign / "helper_fer.onnx", out=tmp_path, options=_with(ONNX, dataset=DATASET),
                           force=True)
    assert not good.warnings and good.manifest.parity["val_accuracy"] > 0.5


def test_force_replaces_and_bad_input_is_one_line(foreign, tmp_path):
    out = tmp_path / "arts"
    first = import_artifact(foreign / "keras_fer.tflite", out=out, options=KERAS)
    with pytest.raises(ExportError, match="already exists .--force replaces it."):
        import_artifact(foreign / "keras_fer.tflite", out=out, options=KERAS)
    again = import_artifact(foreign / "keras_fer.tflite", out=out, options=_with(KERAS, classes=tuple("abcdefg")),
                            force=True)
    assert again.path == first.path and again.manifest.class_names == list("abcdefg")
    assert json.loads((Path(again.path) / "manifest.json").read_text())["class_names"] == list("abcdefg")
    with pytest.raises(ExportError, match="cannot say how pixels were normalised"):
        import_artifact(foreign / "keras_fer.tflite", out=out)
    with pytest.raises(ExportError, match="outputs 7 scores but command-line flags name 3 classes"):
        import_artifact(foreign / "keras_fer.tflite", out=out, options=_with(KERAS, classes=("a", "b", "c")))
    with pytest.raises(ExportError, match="takes 48x48 images"):
        import_artifact(foreign / "keras_fer.tflite", out=out, options=_with(KERAS, size=64))


def test_truncated_and_foreign_files_are_one_line_errors(foreign, tmp_path):
    """A truncated .tflite may crash the TFLite runtime (SIGSEGV/SIGBUS) or make it raise, depending on where the
    cut falls in the flatbuffer: inspected in a child process, either is a one-line error."""
    data = (foreign / "keras_fer.tflite").read_bytes()
    (tmp_path / "truncated.tflite").write_bytes(data[: len(data) // 4])
    (tmp_path / "text.tflite").write_text("not a model")
    (tmp_path / "broken.onnx").write_bytes((foreign / "helper_fer.onnx").read_bytes()[:500])
    for name, expected in (("truncated.tflite", ("the runtime crashed (SIG", "cannot load it as a model")),
                           ("text.tflite", ("not a TFLite flatbuffer",)),
                           ("broken.onnx", ("cannot load it as a model",))):
        r = bench("export", "--import", str(tmp_path / name), "--mean", "0", "--std", "1", "--out",
                  str(tmp_path / "arts"))
        assert r.returncode == 1, (name, r.returncode, r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("bench export: error: "), lines
        assert any(e in lines[0] for e in expected), lines
        assert str(tmp_path / name) in lines[0]
    assert not [p for p in (tmp_path / "arts").glob("*") if p.name != "export.log"]  # nothing half-made


def test_a_runtime_crash_in_the_inspecting_child_is_a_one_line_error(foreign, tmp_path, monkeypatch):
    """The crash path for real: a sitecustomize on the child's PYTHONPATH kills it with SIGSEGV at start-up."""
    from edgefair.export.inspect_model import inspect_file

    hook = tmp_path / "crash"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    monkeypatch.setenv("PYTHONPATH", str(hook))
    with pytest.raises(ExportError, match=r"keras_fer.tflite: the runtime crashed \(SIGSEGV\) while .*corrupt"):
        inspect_file(foreign / "keras_fer.tflite", "tflite")


def test_imported_models_run_and_audit_without_a_run(foreign, tmp_path):
    """The closing note's path: CLI import without --like, bench run --eval, bench fairness."""
    arts, db = tmp_path / "artifacts", tmp_path / "results.db"
    for f, flags in (("keras_fer.tflite", ["--mean", "0.5", "--std", "0.5"]),
                     ("helper_fer.onnx", ["--mean", "0", "--std", "1",
                                          "--classes", "angry,disgust,fear,happy,sad,surprise,neutral"])):
        r = bench("export", "--import", str(foreign / f), *flags, "--dataset", DATASET, "--out", str(arts), "--json")
        assert r.returncode == 0, r.stderr[-2000:]
        assert json.loads(r.stdout)["status"] == "imported"
    r = bench("run", "--artifacts", str(arts), "--eval", "--db", str(db), "--min-runs", "20", "--min-seconds", "0.02",
              "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {a["name"]: a for a in json.loads(r.stdout)["artifacts"]}
    assert {a["status"] for a in rows.values()} == {"measured"} and len(rows) == 2
    accs = [a["accuracy"] for a in rows.values()]
    assert min(accs) > 0.5 and abs(accs[0] - accs[1]) < 0.02  # the same network in two formats
    r = bench("fairness", "--artifacts", str(arts), "--db", str(db), "--plots", str(tmp_path / "plots"),
              "--reference", "onnx-fp32-s0-helper_fer", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    summaries = {s["name"]: s for s in doc["summaries"]}
    assert doc["reference"] == "onnx-fp32-s0-helper_fer" and summaries["onnx-fp32-s0-helper_fer"]["is_reference"]
    assert summaries["tflite-fp32-s0-keras_fer"]["verdict"] in ("pass", "gap-widened", "accuracy-drop",
                                                                "insufficient-evidence")
    assert set(doc["audits"]) == set(rows) and doc["dataset"] == DATASET


# --------------------------------------------------------------------------- units (fast)
@pytest.mark.parametrize("shape,channels,expected", [
    ([1, 48, 48, 1], None, ("NHWC", 48, 1)), ([1, 3, 64, 64], None, ("NCHW", 64, 3)),
    ([-1, 48, 48, 3], 3, ("NHWC", 48, 3)), ([1, 1, -1, -1], None, ("NCHW", None, 1)),
])
def test_image_geometry(shape, channels, expected):
    assert image_geometry(shape, channels) == expected


def test_import_option_errors(tmp_path):
    with pytest.raises(ExportError, match="cannot tell where the channels are"):
        image_geometry([1, 48, 48, 5], None)
    with pytest.raises(ExportError, match="a class name appears twice"):
        parse_classes("a,b,a")
    bad = tmp_path / "p.toml"
    bad.write_text("mean = 0\nstdev = 1\n")
    with pytest.raises(ExportError, match=f"{bad}: unknown key 'stdev'"):
        read_preprocessing_toml(bad)
    bad.write_text('mean = "zero"\n')
    with pytest.raises(ExportError, match="key 'mean' must be a number"):
        read_preprocessing_toml(bad)
    bad.write_text('classes = "a,b"\nsize = 48\n')
    assert read_preprocessing_toml(bad) == {"classes": ["a", "b"], "size": 48}
    r = bench("export", "--mean", "0.5", "--model", "x")
    assert r.returncode == 2 and "--mean only apply with --import FILE" in r.stderr


def test_like_and_flags_layer(foreign, tmp_path, tiny_run):
    """--like gives everything; a flag overrides one value; the file is checked against the run."""
    shutil.copyfile(foreign / "keras_fer.tflite", tmp_path / "m.tflite")
    res = import_artifact(tmp_path / "m.tflite", like_run=tiny_run, out=tmp_path / "a",
                          options=ImportOptions(mean=0.5, std=0.5), parity_n=64)
    meta = json.loads((tiny_run / "model.json").read_text())
    m = res.manifest
    assert m.class_names == meta["class_names"] and m.source.dataset.spec == meta["dataset"]["spec"]
    assert (m.preprocessing.mean, m.preprocessing.std) == (0.5, 0.5) and m.preprocessing.size == 48
    assert "mean, std from command-line flags" in m.source.reference and f"--like {tiny_run}" in m.source.reference
