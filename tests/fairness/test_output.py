"""to_dict() is strict JSON and reads back; the text tables and the plot render."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgefair.fairness import AuditResult, audit, format_table, plot_group_accuracy
from edgefair.fairness.result import NULL_MEANS, SCHEMA, jsonable
from tests.fairness.synth import CLASSES, groups, labels, perturb, predict


@pytest.fixture(scope="module")
def results():
    rng = np.random.default_rng(11)
    g = groups({"light": 500, "dark": 250, "tiny": 10})
    gender = np.array(["f", "m"], dtype=object)[rng.integers(0, 2, g.size)]
    yt = labels(g.size, rng)
    yt[yt == 1] = 0  # class "disgust" never occurs: recall/FNR undefined, excluded from CEV
    ref = predict(yt, g, {"light": 0.9, "dark": 0.88, "tiny": 0.9}, rng)
    art = predict(yt, g, {"light": 0.9, "dark": 0.75, "tiny": 0.9}, rng)
    kw = dict(y_true=yt, sensitive={"skin_tone": g, "gender": gender}, class_names=CLASSES, intersections=True,
              n_boot=200)
    return {
        "torch-fp32": audit(y_pred=ref, **kw),
        "tflite-int8-s0.5": audit(y_pred=art, reference_pred=ref, **kw),
        "onnx-fp16-s0": audit(
            y_pred=perturb(ref, 0.01, rng),
            reference_pred=ref,
            reference_population=[ref, perturb(ref, 0.02, rng), perturb(ref, 0.02, rng)],
            compressed_population=[perturb(ref, 0.03, rng) for _ in range(3)],
            **kw,
        ),
    }


def test_to_dict_is_strict_json(results):
    for r in results.values():
        d = r.to_dict()
        text = json.dumps(d, allow_nan=False)
        back = json.loads(text)
        assert back["schema"] == SCHEMA and back["null_means"] == NULL_MEANS
        labels = {"reference", "pass", "gap-widened", "accuracy-drop", "insufficient-evidence"}
        assert back["verdict"]["label"] in labels


def test_from_dict_reads_to_dict_back(results):
    for r in results.values():
        d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
        back = AuditResult.from_dict(d)
        assert back.to_dict() == d
        assert isinstance(back.attributes[0].groups[0].accuracy_ci, tuple)
        assert back.attribute("skin_tone").group("dark").accuracy == r.attribute("skin_tone").group("dark").accuracy
        assert back.verdict.label == r.verdict.label and type(back.settings.thresholds) is type(r.settings.thresholds)
    with pytest.raises(ValueError, match=r"^audit schema 'edgefair.fairness/1' is not 'edgefair.fairness/2'$"):
        AuditResult.from_dict({**d, "schema": "edgefair.fairness/1"})


def test_to_dict_uses_none_for_undefined_values(results):
    d = results["tflite-int8-s0.5"].to_dict()
    assert d["recall"]["disgust"] is None  # no test sample of the class
    es = d["reference"]["error_shift"]
    assert es["excluded_classes"]["disgust"] == "no test sample of this class: FNR undefined"
    assert es["cev"] is not None
    small = [c for c in d["comparisons"] if "tiny" in (c["group"], c["other"])]
    assert small and all(c["p_value"] is None and c["significant"] is None for c in small)
    assert d["settings"]["interval_method"].startswith("score intervals (Wilson, Newcombe) with normal quantiles")
    assert all(c["df"] is None for c in d["comparisons"])  # independent images: normal quantiles
    assert d["verdict"]["label"] == "gap-widened"
    assert d["reference"]["cie"]["definition"] == "disagreement"
    assert results["onnx-fp16-s0"].to_dict()["reference"]["cie"]["definition"] == "modal-label"


def test_jsonable_replaces_nan_and_inf():
    assert jsonable({"a": float("nan"), "b": [np.float64("inf"), np.int64(3)], 1: (np.bool_(True),)}) == {
        "a": None,
        "b": [None, 3],
        "1": [True],
    }


def test_format_table(results):
    text = format_table(results["tflite-int8-s0.5"])
    assert text.startswith("Fairness audit: n=760, 7 classes, alpha=0.05, verdict family: ")
    assert "skin_tone - max-min gap" in text
    assert "skin_tone×gender" in text  # intersection named in the order of `sensitive`
    assert "tiny (untested)" in text and "(untested)" in text
    assert "untested (min_n=30, min_subjects=5): tiny: n=10 < min_n=30" in text
    assert "verdict: gap-widened" in text and "absolute state:" in text
    assert "CEV " in text and "excluded: disgust (no test sample of this class: FNR undefined)" in text
    assert "CEV (compression error variance, Simon Says)" in text
    assert "95% CI" in text and "90% CI" not in text
    plain = format_table(results["torch-fp32"])
    assert "ref acc" not in plain and "no reference_pred" in plain


def test_interval_labels_follow_alpha(results):
    r = results["tflite-int8-s0.5"]
    rng = np.random.default_rng(11)
    g = np.array([gr.group for a in r.attributes[:1] for gr in a.groups for _ in range(gr.n)], dtype=object)
    yt = labels(g.size, rng)
    res = audit(y_true=yt, y_pred=predict(yt, g, dict.fromkeys(set(g), 0.8), rng), sensitive={"s": g},
                class_names=CLASSES, reference_pred=yt, alpha=0.1, n_boot=100)
    text = format_table(res)
    assert res.settings.ci_label == "90% CI" and "90% CI" in text and "95% CI" not in text


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_plot_group_accuracy(results, tmp_path, suffix):
    out = plot_group_accuracy(results, tmp_path / f"skin{suffix}", attribute="skin_tone")
    data = out.read_bytes()
    assert len(data) > 1000
    if suffix == ".png":
        assert data.startswith(b"\x89PNG")
    else:
        assert b"<svg" in data[:1000]


def test_plot_accepts_a_list_and_rejects_bad_paths(results, tmp_path):
    out = plot_group_accuracy(list(results.values()), tmp_path / "sub" / "g.png", attribute="gender")
    assert out.exists()
    with pytest.raises(ValueError, match=r"^plot path must end in \.png or \.svg, got 'g\.pdf'$"):
        plot_group_accuracy(results, tmp_path / "g.pdf", attribute="gender")
    with pytest.raises(KeyError, match="no attribute 'race'"):
        plot_group_accuracy(results, tmp_path / "g.png", attribute="race")
    with pytest.raises(ValueError, match="needs at least one AuditResult"):
        plot_group_accuracy([], tmp_path / "g.png", attribute="gender")


def test_plot_draws_reference_once(results, tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    labels_seen: list[str] = []
    original = Axes.errorbar

    def spy(self, *args, **kwargs):
        if kwargs.get("label"):
            labels_seen.append(kwargs["label"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "errorbar", spy)
    plot_group_accuracy(results, tmp_path / "a.png", attribute="skin_tone")
    # torch-fp32 is the reference's own audit: no separate "reference" series
    assert labels_seen == ["torch-fp32", "tflite-int8-s0.5", "onnx-fp16-s0"]
    labels_seen.clear()
    subset = {k: v for k, v in results.items() if k != "torch-fp32"}
    plot_group_accuracy(subset, tmp_path / "b.png", attribute="skin_tone")
    assert labels_seen == ["reference", "tflite-int8-s0.5", "onnx-fp16-s0"]


def test_plot_survives_groups_at_zero_and_full_accuracy(tmp_path):
    """Wilson bounds at 0 % / 100 % can sit a rounding error past the point estimate."""
    import numpy as np

    from edgefair.fairness import audit, plot_group_accuracy
    from edgefair.fairness.intervals import wilson

    assert wilson(9, 9)[1] - 1.0 < 0  # the rounding this test is about (n = 9 and 16 here)
    y = np.array([0, 1, 2, 3] * 4 + [0, 1, 2, 3, 0, 1, 2, 3, 0])
    pred = y.copy()
    groups = np.array(["a"] * 16 + ["b"] * 9)
    pred[:16] = (y[:16] + 1) % 4  # group a (16) always wrong, group b (9) always right
    res = audit(y_true=y, y_pred=pred, sensitive={"g": groups}, class_names=list("wxyz"), min_n=5)
    ref = audit(y_true=y, y_pred=y, sensitive={"g": groups}, class_names=list("wxyz"), min_n=5)
    out = plot_group_accuracy({"ref": ref, "art": res}, tmp_path / "p.png", attribute="g")
    assert out.stat().st_size > 1000
