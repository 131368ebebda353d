"""The agent result contract as the host reads it."""

from __future__ import annotations

import pytest

from edgefair.contracts.errors import ResultError
from edgefair.contracts.result import AgentResult, result_problems


def _ok(**over):
    doc = {"agent_version": "1", "ok": True, "error": None, "artifact": {"name": "a", "sha256": "x"},
           "runtime": {"name": "onnxruntime", "version": "1"}, "threads": 1, "profile": "quick", "mode": "both",
           "timing": {"load_s": 0.1, "first_inference_s": 0.01, "warmup_n": 3, "warmup_s": 0.01, "n": 3,
                      "duration_s": 0.003, "samples_s": [0.001, 0.001, 0.002], "p50_s": 0.001, "p90_s": 0.0018,
                      "p99_s": 0.002, "mean_s": 0.0013, "std_s": 0.0005, "p50_ci_s": [0.001, 0.002],
                      "percentile_method": "linear"},
           "rss": {"method": "proc_vmhwm_reset", "baseline_kb": 100, "after_load_kb": 150, "after_first_kb": 160,
                   "steady_kb": 155},
           "env": {"emulated": False}, "valid": True, "invalid_reasons": [],
           "eval": {"ids": ["s1", "s2"], "pred": [1, 2], "logits": [[0, 1, 0], [0, 0, 1]]}}
    doc.update(over)
    return doc


def test_a_conforming_result_gives_typed_views():
    r = AgentResult.from_dict(_ok())
    assert r.ok and r.valid and not r.emulated
    assert r.timing.n == 3 and r.timing.p50_s == 0.001
    assert r.rss.peak_kb == 160
    assert r.predictions is not None and r.predictions.by_id() == {"s1": 1, "s2": 2}


@pytest.mark.parametrize("over, problem", [
    ({"timing": {**_ok()["timing"], "p90_s": 0.0005}}, "percentiles not ordered: 0.001, 0.0005, 0.002"),
    ({"timing": {**_ok()["timing"], "n": 4}}, "timing.n != len(samples_s)"),
    ({"eval": {"ids": ["s1"], "pred": [1, 2], "logits": [[0], [1]]}}, "eval ids/pred/logits lengths differ"),
    ({"rss": {"method": "none"}}, "missing rss key 'baseline_kb'"),
])
def test_broken_results_are_refused_naming_the_problem(over, problem):
    assert problem in result_problems(_ok(**over))
    with pytest.raises(ResultError, match="result.json: "):
        AgentResult.from_dict(_ok(**over))


def test_failures_need_a_one_line_error():
    assert result_problems({"ok": False, "error": "two\nlines"}) == ["ok=false needs a one-line 'error'"]
    f = AgentResult.failure("ssh: connect to host 10.0.0.9 port 22:\nConnection refused", {"artifact": {"name": "a"}})
    assert not f.ok and not f.valid and f.error == "ssh: connect to host 10.0.0.9 port 22: Connection refused"
    assert result_problems(f.to_dict()) == []
