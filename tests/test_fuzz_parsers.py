"""Property-based fuzzing (hypothesis) of every parser edgefair wrote: whatever the input, a parser
returns a value or raises its own one-line error naming the input — never anything else.

The number of examples per parser is ``EXAMPLES`` (the README's Reliability table quotes it);
``pytest tests/test_fuzz_parsers.py --hypothesis-show-statistics`` prints what ran.
"""

from __future__ import annotations

import copy
import json
import math
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edgefair.contracts.errors import EdgefairError, ManifestError
from edgefair.contracts.manifest import Manifest
from edgefair.data.sample import DatasetError
from tests.manifests import make_manifest

EXAMPLES = 300
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                              HealthCheck.too_slow])

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                      st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                           st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                          max_leaves=10)
line_text = st.text(alphabet=string.printable + "éü×\x00", max_size=200)


def _one_line(e: BaseException) -> None:
    assert "\n" not in str(e) and str(e), repr(e)


# ---------------------------------------------------------------- manifests
VALID = make_manifest(name="tflite-int8-s0", target="tflite-int8", model_file="model.tflite",
                      input_spec={"name": "input", "shape": [1, 48, 48, 1], "layout": "NHWC", "dtype": "int8",
                                  "quant": {"scale": 0.0157, "zero_point": -1}},
                      output_spec={"name": "logits", "shape": [1, 7], "dtype": "int8",
                                   "quant": {"scale": 0.1, "zero_point": 3}},
                      class_names=[f"c{i}" for i in range(7)],
                      prep={"size": 48, "channels": 1, "mean": 0.5, "std": 0.25}, data=b"x").to_dict()


def _paths(doc, prefix=()):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))


PATHS = list(_paths(VALID))


@FUZZ
@given(edits=st.lists(st.tuples(st.sampled_from(PATHS), st.one_of(st.just(KeyError), json_value)), min_size=1,
                      max_size=3))
def test_manifest_parser(edits):
    doc = copy.deepcopy(VALID)
    for path, value in edits:
        node = doc
        for key in path[:-1]:
            if not isinstance(node, dict) or key not in node:
                break
            node = node[key]
        else:
            if isinstance(node, dict):
                if value is KeyError:
                    node.pop(path[-1], None)
                else:
                    node[path[-1]] = value
    try:
        m = Manifest.from_dict(doc, where="fuzz/manifest.json")
    except ManifestError as e:
        _one_line(e)
        assert str(e).startswith("fuzz/manifest.json: ")
        return
    assert m.to_dict() == Manifest.from_dict(m.to_dict()).to_dict()


@FUZZ
@given(doc=json_value)
def test_manifest_parser_on_any_json(doc):
    with pytest.raises(ManifestError) as e:
        Manifest.from_dict(doc, where="x.json")
    _one_line(e.value)


# ---------------------------------------------------------------- dataset specs and annotation files
@FUZZ
@given(spec=st.text(alphabet=string.ascii_letters + string.digits + ":=/._-~ ", max_size=40))
def test_dataset_spec_parser(spec):
    from edgefair.data.registry import parse_spec

    try:
        parse_spec(spec)
    except DatasetError as e:
        _one_line(e)


@FUZZ
@given(text=line_text)
def test_rafdb_annotation_parser(tmp_path_factory, text):
    from edgefair.data.rafdb import read_annotation

    path = tmp_path_factory.mktemp("raf") / "train_00001_manu_attri.txt"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        attrs = read_annotation(path)
    except DatasetError as e:
        _one_line(e)
        assert str(path) in str(e) or path.name in str(e)
        return
    assert set(attrs) == {"gender", "race", "age"}


@FUZZ
@given(text=line_text)
@example(text="0\n0")
def test_ckplus_emotion_parser(tmp_path_factory, text):
    """Found by this test: a file of two lines echoed them into the message (two lines); now folded."""
    from edgefair.data.ckplus import read_emotion

    path = tmp_path_factory.mktemp("ck") / "S005_001_00000011_emotion.txt"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        label = read_emotion(path)
    except DatasetError as e:
        _one_line(e)
        return
    assert 0 <= label <= 7


csv_field = st.text(alphabet=string.ascii_letters + string.digits + " ,\"'.-/\n", max_size=12)


@FUZZ
@given(header=st.lists(st.sampled_from(["path", "label", "subject", "split", "gender", "Path", ""]), max_size=5),
       rows=st.lists(st.lists(csv_field, max_size=5), max_size=6))
def test_folder_labels_parser(tmp_path_factory, header, rows):
    import csv

    from edgefair.data.folder import load_folder

    root = tmp_path_factory.mktemp("folder")
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    try:
        load_folder(root)
    except DatasetError as e:
        _one_line(e)


@FUZZ
@given(rows=st.lists(st.tuples(st.text(alphabet="0123456789-x ", max_size=3),
                               st.text(alphabet="0123456789 x", max_size=30),
                               st.sampled_from(["Training", "PublicTest", "PrivateTest", "training", "Other", ""])),
                     max_size=6),
       header=st.sampled_from([["emotion", "pixels", "Usage"], ["emotion", "pixels"], ["pixels", "emotion", "Usage"],
                               ["emotion", "pixel", "Usage"]]))
def test_fer2013_csv_parser(tmp_path_factory, rows, header):
    import csv

    from edgefair.data.fer2013 import load_fer2013

    path = tmp_path_factory.mktemp("fer") / "fer2013.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    try:
        load_fer2013(path)
    except DatasetError as e:
        _one_line(e)


# ---------------------------------------------------------------- sweep and device TOML
SWEEP_KEYS = ["dataset", "archs", "epochs", "seed", "targets", "sparsities", "pruning", "finetune_epochs", "calib",
              "qat", "devices", "profile", "threads", "min_runs", "min_seconds", "attributes", "intersections", "min_n",
              "gap_points", "min_accuracy_ratio", "colour"]
toml_value = st.one_of(st.booleans(), st.integers(-5, 10**6), st.floats(-2, 2, allow_nan=False),
                       st.text(alphabet=string.ascii_lowercase + "-:=0123456789", max_size=12),
                       st.lists(st.one_of(st.floats(0, 1.2, allow_nan=False), st.integers(-1, 3),
                                          st.sampled_from(["onnx-fp32", "tflite-int8", "cnn", "local", "x"])),
                                max_size=3))


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return repr(v)


@FUZZ
@given(doc=st.dictionaries(st.sampled_from(SWEEP_KEYS), toml_value, max_size=6), garbage=st.booleans(),
       text=line_text)
def test_sweep_toml_parser(tmp_path_factory, doc, garbage, text):
    from edgefair.bench.config import SweepConfig, load_config

    path = tmp_path_factory.mktemp("sweep") / "sweep.toml"
    body = text if garbage else "".join(f"{k} = {_toml(v)}\n" for k, v in doc.items())
    path.write_text(body, encoding="utf-8", errors="surrogatepass")
    try:
        cfg = load_config(path)
    except EdgefairError as e:
        _one_line(e)
        assert str(e).startswith(str(path))
        return
    assert isinstance(cfg, SweepConfig) and 0 in cfg.sparsities


DEVICE_KEYS = ["name", "description", "transport", "python", "workdir", "threads", "timeout_s", "env", "ssh", "adb",
               "emulated", "bogus"]


@FUZZ
@given(doc=st.dictionaries(st.sampled_from(DEVICE_KEYS), st.one_of(
    toml_value, st.sampled_from(["ssh", "adb", "local", "emulated"]),
    st.dictionaries(st.sampled_from(["host", "user", "port", "serial", "mode", "options", "x", "PATH"]), toml_value,
                    max_size=3)), max_size=6))
def test_device_profile_parser(doc):
    from edgefair.devices.base import DeviceError
    from edgefair.devices.profiles import parse_profile

    try:
        parse_profile(doc, name="fuzz", source="fuzz.toml")
    except DeviceError as e:
        _one_line(e)
        assert str(e).startswith("fuzz.toml")


# ---------------------------------------------------------------- device output
BM_LINES = ["INFO: count=10 first=5 curr=4 min=3 max=9 avg=4.5 std=1",
            "INFO: Inference timings in us: Init: 1234, First inference: 567, Warmup (avg): 89.1, "
            "Inference (avg): 85.3",
            "INFO: Peak memory footprint (MB): init=0 overall=12.3",
            "INFO: Memory footprint delta from the start of the tool (MB): init=1.1 overall=2.5",
            "Operator-wise Profiling Info for Regular Benchmark Runs:", "==== Run Order ====",
            "\t CONV_2D\t 0.1\t 0.1\t 50.0%\t 50.0%\t 0.0\t 1\t [conv]", "INFO: #threads used for CPU inference: [4]"]


@FUZZ
@given(lines=st.lists(st.one_of(st.sampled_from(BM_LINES), line_text), max_size=12))
def test_benchmark_model_output_parser(lines):
    from edgefair.devices.benchmark_model import BenchmarkModelParseError, parse_benchmark_output

    try:
        out = parse_benchmark_output("\n".join(lines))
    except BenchmarkModelParseError as e:
        _one_line(e)
        return
    assert math.isfinite(out["inference_avg_us"])


@FUZZ
@given(text=st.lists(st.one_of(line_text, st.builds(json.dumps, json_value)), max_size=6))
def test_probe_output_parsers(text):
    from edgefair.devices.adb import parse_state
    from edgefair.devices.runner import _last_json_line

    doc = _last_json_line("\n".join(text))
    assert doc is None or isinstance(doc, dict)
    state = parse_state("\n".join(text))
    assert isinstance(state, dict) and isinstance(state["freq_khz"], dict)


# ---------------------------------------------------------------- gate baselines
@FUZZ
@given(doc=st.one_of(json_value, st.fixed_dictionaries({"schema": st.just("edgefair.gate/1"),
                                                        "rows": st.lists(st.dictionaries(st.sampled_from(
                                                            ["artifact", "device", "size_bytes", "p90_s", "accuracy",
                                                             "largest_gap", "status", "valid"]), json_value,
                                                            max_size=8), max_size=4)})))
def test_gate_baseline_parser(tmp_path_factory, doc):
    from edgefair.bench.gate import GateError, load_side

    path = tmp_path_factory.mktemp("gate") / "baseline.json"
    path.write_text(json.dumps(doc, allow_nan=True))
    try:
        rows = load_side(path)
    except GateError as e:
        _one_line(e)
        assert str(path) in str(e)
        return
    assert all({"artifact", "device"} <= set(r) for r in rows)


def test_examples_per_parser_are_documented():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert f"{EXAMPLES} hypothesis examples" in readme
