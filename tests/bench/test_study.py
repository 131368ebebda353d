"""bench study: population CIE, the balance sub-sampler, TOML validation, and each study's --quick run."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from edgefair.bench.study.config import STUDIES, StudyConfigError, builtin_text, load_study, parse_study
from edgefair.data.balance import apportion, balance_path, group_counts, largest_size, subsample_to_proportions
from edgefair.data.sample import DatasetError, Sample
from edgefair.fairness.cie import consistency_scores, top_share
from edgefair.fairness.populations import demographic_parity, population_cie, spread

# -- population CIE ----------------------------------------------------------------------

Y = np.array([0, 0, 1, 1, 2, 2, 0, 1])
GROUPS = np.array(["a", "a", "a", "a", "b", "b", "b", "b"])


def _population() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Three reference models that agree on the truth except one dissenter per example on
    0 and 4; three compressed models whose majority flips examples 4, 5 (group b) and 2 (a)."""
    ref = [Y.copy(), Y.copy(), Y.copy()]
    ref[0][0], ref[1][4] = 1, 0
    comp = [Y.copy(), Y.copy(), Y.copy()]
    for m in (0, 1):
        comp[m][[2, 4, 5]] = [0, 1, 1]
    comp[2][5] = 0  # the third compressed model dissents alone on 5: the mode is still 1
    return ref, comp


def test_population_cie_flags_modal_disagreement_and_breaks_it_down_by_group():
    ref, comp = _population()
    res = population_cie(Y, ref, comp, GROUPS, attribute="g", n_classes=3, top=0.25)
    assert res.n == 3 and res.share == pytest.approx(3 / 8)
    by = {g.group: g for g in res.groups}
    assert (by["a"].n_cie, by["b"].n_cie) == (1, 2)
    assert by["b"].share_among_cie == pytest.approx(2 / 3) and by["b"].share_of_test == pytest.approx(0.5)
    assert by["a"].cie_rate == pytest.approx(1 / 4)
    # the reference modal label is the truth on every CIE, the compressed one never is
    assert by["b"].accuracy_on_cie_reference == 1.0 and by["b"].accuracy_on_cie_compressed == 0.0
    assert res.accuracy_on_cie == {"compressed": 0.0, "reference": 1.0}


def test_consistency_score_and_top_share():
    ref, comp = _population()
    scores = consistency_scores(ref, comp, 3)
    # reference agreement with its modal label minus compressed agreement with it:
    # ex 5: 1 - 0; ex 2: 1 - 1/3; ex 4: 2/3 - 1/3; ex 0: 2/3 - 1 (the compressed models all agree)
    assert scores[5] == pytest.approx(1.0) and scores[2] == pytest.approx(2 / 3)
    assert scores[4] == pytest.approx(1 / 3) and scores[0] == pytest.approx(-1 / 3) and scores[1] == 0.0
    assert top_share(scores, 0.125).tolist() == [i == 5 for i in range(8)]  # one of eight
    res = population_cie(Y, ref, comp, GROUPS, attribute="g", n_classes=3, top=0.25)  # ex 5 (b) and 2 (a)
    assert res.n_top == 2 and {g.group: g.share_among_top for g in res.groups} == {"a": 0.5, "b": 0.5}
    assert top_share(np.zeros(4), 0.5).sum() == 0  # nobody moved: nothing flagged
    with pytest.raises(ValueError):
        top_share(scores, 0.0)


def test_spread_is_a_t_interval_of_the_mean():
    s = spread([1.0, 2.0, 3.0, None])
    assert s.mean == 2.0 and s.n == 3
    assert s.hi - s.mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert spread([5.0]).lo is None and spread([]).mean is None
    wide = spread([0.0, 0.0, 30.0])
    cut = spread([0.0, 0.0, 30.0], floor=0.0)
    assert wide.lo < 0 and cut.lo == 0.0 and cut.hi == wide.hi and cut.mean == wide.mean


def test_demographic_parity_per_class_one_vs_rest():
    pred = np.array([0, 0, 1, 1, 0, 1, 1, 1])
    groups = np.array(["a"] * 4 + ["b"] * 4)
    dp = demographic_parity(pred, groups, 2)
    # class 0: a 2/4, b 1/4 -> 0.25; class 1 likewise
    assert dp["0"] == pytest.approx(0.25) and dp["1"] == pytest.approx(0.25) and dp["max"] == pytest.approx(0.25)


# -- balance sub-sampler -----------------------------------------------------------------


def _samples(counts: dict[str, int]) -> list[Sample]:
    img = np.zeros((4, 4), np.uint8)
    out, i = [], 0
    for g, n in counts.items():
        for _ in range(n):
            out.append(Sample(f"s{i}", img, i % 7, f"p{i}", {"skin_tone": g}))
            i += 1
    return out


@pytest.mark.parametrize("props, n", [({"light": 0.7, "medium": 0.2, "dark": 0.1}, 301),
                                      ({"light": 1 / 3, "medium": 1 / 3, "dark": 1 / 3}, 100),
                                      ({"light": 0.5, "medium": 0.3, "dark": 0.2}, 299)])
def test_subsample_meets_proportions_within_one_sample(props, n):
    pool = _samples({"light": 700, "medium": 200, "dark": 100})
    got = subsample_to_proportions(pool, attribute="skin_tone", proportions=props, n=n, seed=3)
    counts = group_counts(got, "skin_tone")
    assert sum(counts.values()) == n and len({s.sample_id for s in got}) == n
    for g, p in props.items():
        assert abs(counts.get(g, 0) - p * n) <= 1
    assert got != subsample_to_proportions(pool, attribute="skin_tone", proportions=props, n=n, seed=4)


def test_subsample_refuses_a_group_too_small_and_path_ends_uniform():
    pool = _samples({"light": 700, "medium": 200, "dark": 100})
    with pytest.raises(DatasetError, match="skin_tone=dark: 120 samples needed"):
        subsample_to_proportions(pool, attribute="skin_tone", proportions={"light": 0.4, "medium": 0.4, "dark": 0.4},
                                 n=360)
    assert largest_size(pool, "skin_tone", {"light": 1, "medium": 1, "dark": 1}) == 300
    path = balance_path({"light": 0.7, "medium": 0.2, "dark": 0.1}, 5)
    assert len(path) == 5 and path[0]["dark"] == pytest.approx(0.1)
    assert all(v == pytest.approx(1 / 3) for v in path[-1].values())
    assert sum(apportion({"x": 1, "y": 1, "z": 1}, 10).values()) == 10


# -- TOML validation ---------------------------------------------------------------------


@pytest.mark.parametrize("name", STUDIES)
def test_shipped_studies_parse_and_print_config_round_trips(name, bench, tmp_path):
    if name == "distillation":  # the CLI once; the others through the same function
        proc = bench("study", name, "--print-config", check=True)
        assert proc.stdout == builtin_text(name)
    (tmp_path / "s.toml").write_text(builtin_text(name))
    assert load_study(name, config=tmp_path / "s.toml") == load_study(name)
    assert load_study(name, quick=True).epochs < load_study(name).epochs


@pytest.mark.parametrize("line, message", [
    ("colour = 3", "colour: unknown key; allowed keys:"),
    ("seeds = 0", "seeds: must be an integer >= 1, got 0"),
    ('sparsities = ["x"]', "sparsities: expected a number, got 'x'"),
    ("sparsities = [1.5]", "sparsities: values must be in [0, 1)"),
    ('mitigations = ["prayer"]', "mitigations: 'prayer' is not allowed; allowed values: none, kd"),
    ("clusterings = [1]", "clusterings: values must be 0 (none) or 2..256 clusters"),
    ('dataset = "nope"', "dataset: unknown dataset 'nope'"),
])
def test_bad_study_toml_is_one_line_naming_file_and_key(tmp_path, line, message):
    text = f'name = "mine"\nkind = "compression"\n{line}\n'
    cfg = tmp_path / "bad.toml"
    with pytest.raises(StudyConfigError) as e:
        parse_study(text, str(cfg))
    assert str(e.value).startswith(f"{cfg}: {message}") and "\n" not in str(e.value)
    assert e.value.exit_code == 2


def test_bad_study_toml_on_the_command_line_exits_2_with_one_line(tmp_path, bench):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(builtin_text("distillation").replace("seeds = 3", "seeds = 3\nwarp = 9", 1))
    proc = bench("study", "distillation", "--config", cfg, "--out", tmp_path / "o")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"bench study: error: {cfg}: warp: unknown key; allowed keys: "
                                                 + proc.stderr.split("allowed keys: ", 1)[1].strip()]
    assert not (tmp_path / "o").exists()


def test_unknown_study_and_bad_quick_table(bench, tmp_path):
    proc = bench("study", "nonesuch", "--json")
    assert proc.returncode == 2 and "shipped studies: compression-fairness" in json.loads(proc.stdout)["error"]
    text = builtin_text("data-balance") + "balance_steps = 1\n"
    with pytest.raises(StudyConfigError, match=r"\[quick\]: balance_steps: must be an integer >= 2"):
        parse_study(text, "x.toml")


# -- each study's --quick, end to end ------------------------------------------------------


def _finite(d: dict) -> bool:
    return d["mean"] is not None and math.isfinite(d["mean"])


def _quick(bench, tmp_path: Path, name: str) -> dict:
    out = tmp_path / name
    proc = bench("study", name, "--quick", "--out", out, "--json", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outcome = json.loads(proc.stdout)
    doc = json.loads(Path(outcome["json"]).read_text())
    html = Path(outcome["html"]).read_text()
    assert "<table>" in html and "<img" in html
    plots = re.findall(r'src="plots/([^"]+)"', html)
    assert plots and all((out / "plots" / name).stat().st_size > 0 for name in plots)
    return doc


@pytest.mark.slow
def test_quick_compression_fairness(bench, tmp_path):
    doc = _quick(bench, tmp_path, "compression-fairness")
    rows = {(r["target"], r["sparsity"], r["clustering"]): r for r in doc["rows"]}
    assert {("onnx-fp32", 0.0, 0), ("onnx-fp32", 0.9, 0), ("onnx-int8", 0.9, 0)} <= set(rows)
    cell = rows[("onnx-int8", 0.9, 0)]
    assert len(cell["seeds"]) == 2 and cell["cie"]["n_reference_models"] == 2
    for key in ("accuracy", "gap", "gap_change", "size_ratio"):
        assert _finite(cell[key]), key
    assert cell["size_ratio"]["mean"] > 1 and set(cell["group_accuracy"]) == {"light", "medium", "dark"}
    assert sum(g["share_of_test"] for g in cell["cie"]["groups"]) == pytest.approx(1.0)
    assert any("smaller" in f for f in doc["findings"])
    if not any(r["clustering"] for r in doc["rows"]):
        assert any("clustering" in n and "skipped" in n for n in doc["notes"])


@pytest.mark.slow
def test_quick_distillation(bench, tmp_path):
    doc = _quick(bench, tmp_path, "distillation")
    prunings = {r["pruning"] for r in doc["rows"] if r["sparsity"] == 0.45}
    assert prunings == {"unstructured", "structured"}
    for r in doc["rows"]:
        if r["sparsity"] > 0:
            assert _finite(r["cev"]) and _finite(r["sde"]) and len(r["cev"]["values"]) == 2
    kd = [r for r in doc["rows"] if r["mitigation"] == "kd"]
    assert kd or any("mitigation 'kd'" in n for n in doc["notes"])


@pytest.mark.slow
def test_quick_data_balance(bench, tmp_path):
    doc = _quick(bench, tmp_path, "data-balance")
    rows = doc["rows"]
    assert len(rows) == 5 and len({r["n_train"] for r in rows}) == 1
    assert rows[0]["smallest_share"] < 0.2 and rows[-1]["smallest_share"] == pytest.approx(1 / 3, abs=1e-3)
    for r in rows:
        assert _finite(r["macro_f1"]) and _finite(r["dp_max"]) and len(r["seeds"]) == 2
    assert rows[0]["macro_f1_change"]["mean"] == 0.0


def test_study_executor_flags_are_checked_before_anything_runs(bench, tmp_path):
    farm = tmp_path / "farm.toml"
    farm.write_text('[devices.a]\nspec = "local"\n')
    proc = bench("study", "distillation", "--quick", "--farm", farm, "--executor", "ray", "--out", tmp_path / "o")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == ["bench study: error: --farm: a study measures on no device (its "
                                                "trainings run on --executor ray); drop it"]
    proc = bench("study", "distillation", "--quick", "--ray-address", "127.0.0.1:1", "--out", tmp_path / "o")
    assert proc.returncode != 0 and proc.stderr.strip().endswith("--ray-address needs --executor ray")
    assert not (tmp_path / "o").exists()
