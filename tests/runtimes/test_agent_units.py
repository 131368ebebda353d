"""In-process unit tests of the agent's statistics, protocol and import discipline."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from edgefair.contracts import jsonio
from edgefair.contracts.measurement import PROFILES
from edgefair.devices.runner import _override_flags
from edgefair.runtimes import agent
from edgefair.runtimes.protocol import agent_path, bare_loop_path

ALLOWED_TOP = {"numpy", "ai_edge_litert", "tflite_runtime", "tensorflow", "onnxruntime"}


def _imports(tree):
    """(module top-level name, enclosing function name or None, node) for every import."""
    found = []

    def visit(node, func):
        for child in ast.iter_child_nodes(node):
            f = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            if isinstance(child, ast.Import):
                for a in child.names:
                    found.append((a.name.split(".")[0], func, child))
            elif isinstance(child, ast.ImportFrom):
                assert child.level == 0, "relative import in agent.py"
                found.append((child.module.split(".")[0], func, child))
            visit(child, f)

    visit(tree, None)
    return found


@pytest.mark.parametrize("path", [agent_path(), bare_loop_path()])
def test_device_files_import_only_stdlib_numpy_and_one_runtime(path):
    src = path.read_text()
    tree = ast.parse(src, feature_version=(3, 9))  # must stay Python 3.9 syntax
    stdlib = set(sys.stdlib_module_names)
    top_level = [m for m, func, _ in _imports(tree) if func is None]
    assert set(top_level) <= stdlib | {"numpy"}, top_level
    for mod, func, _node in _imports(tree):
        if mod in stdlib or mod in ALLOWED_TOP:
            continue
        if mod == "psutil" and path.name == "agent.py":
            assert func == "__init__"  # RSSMeter fallback only, inside try/except
            continue
        pytest.fail(f"{path.name} imports {mod!r} (in {func})")
    # no dynamic imports that would dodge the check
    names = {n.attr if isinstance(n, ast.Attribute) else n.id
             for n in ast.walk(tree) if isinstance(n, (ast.Name, ast.Attribute))}
    assert "__import__" not in names and "import_module" not in names
    assert not any(m == "edgefair" for m, _, _ in _imports(tree))


def test_agent_has_no_310_only_runtime_syntax():
    tree = ast.parse(agent_path().read_text())
    assert any(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in tree.body)
    for n in ast.walk(tree):
        # X | Y outside annotations would be evaluated at runtime on 3.9
        if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "isinstance":
            assert not isinstance(n.args[1], ast.BinOp), ast.unparse(n)
        assert type(n).__name__ not in ("Match", "TryStar")


def test_agent_compiles_with_python39_if_present(tmp_path):
    import glob
    import os

    cands = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9")))
    py39 = cands[-1] if cands else shutil.which("python3.9")
    if not py39:
        pytest.skip("no python3.9 here")
    copy = tmp_path / "agent.py"
    shutil.copy(agent_path(), copy)
    p = subprocess.run([py39, "-m", "py_compile", str(copy)], capture_output=True, text=True)
    if p.returncode != 0 and "SyntaxError" not in p.stderr:
        pytest.skip("python3.9 not runnable here: " + p.stderr.strip()[:200])
    assert p.returncode == 0, p.stderr


def test_median_ci_matches_scipy_binomial():
    stats = pytest.importorskip("scipy.stats")
    for n in (6, 7, 10, 20, 51, 100, 1000, 1024, 5000, 100000):
        j, k, cov = agent.median_ci_ranks(n)
        assert k == n + 1 - j
        exact = 1 - 2 * stats.binom.cdf(j - 1, n, 0.5)
        assert cov == pytest.approx(exact, abs=1e-9)
        assert cov >= 0.95
        # j is the largest such rank: one step narrower drops below 95 %
        assert 1 - 2 * stats.binom.cdf(j, n, 0.5) < 0.95
    j, k, cov = agent.median_ci_ranks(5)  # too few samples for 95 %
    assert (j, k) == (1, 5) and cov < 0.95


def test_median_ci_coverage_simulation():
    rng = np.random.default_rng(0)
    n, hits, trials = 101, 0, 2000
    for _ in range(trials):
        x = rng.exponential(size=n)
        s = agent.summarise((x * 1e9).astype(np.int64))
        lo, hi = s["p50_ci_s"]
        hits += lo <= np.log(2) <= hi
    assert hits / trials >= 0.93


def test_summarise_percentiles_linear():
    rng = np.random.default_rng(1)
    ns = rng.integers(1000, 100000, size=997)
    s = agent.summarise(ns)
    x = ns / 1e9
    for q, key in ((50, "p50_s"), (90, "p90_s"), (99, "p99_s")):
        assert s[key] == pytest.approx(np.percentile(x, q, method="linear"))
    assert s["mean_s"] == pytest.approx(x.mean())
    assert s["std_s"] == pytest.approx(x.std(ddof=1))
    assert s["n"] == 997 and s["percentile_method"] == "linear"
    assert agent.summarise([])["p50_s"] is None
    one = agent.summarise([5])
    assert one["p50_s"] == one["p50_ci_s"][0] == one["p50_ci_s"][1] == 5e-9


def test_timed_loop_needs_both_count_and_duration():
    calls = []
    s, dur, why = agent.timed_loop(lambda: calls.append(1), 5, 0.05, 5.0)
    assert why == "criteria" and len(s) >= 5 and dur >= 0.05
    s, dur, why = agent.timed_loop(lambda: time.sleep(0.01), 8, 0.0, 5.0)
    assert why == "criteria" and len(s) == 8
    s, dur, why = agent.timed_loop(lambda: time.sleep(0.01), 10**9, 0.0, 0.1)
    assert why == "max_seconds" and 0.1 <= dur < 1.0
    s, dur, why = agent.timed_loop(lambda: None, 0, 0.0, 1.0)
    assert s == [] and why == "criteria"
    assert all(isinstance(v, int) and v >= 0 for v in agent.timed_loop(lambda: None, 3, 0, 1)[0])


def test_agent_profiles_are_the_contract_table():
    """The agent keeps a standard-library copy of the profile table: it must equal the contract's."""
    assert agent.PROFILES == {name: p.protocol() for name, p in PROFILES.items()}


@pytest.mark.parametrize("text", ["one line", "two\nlines\tand  spaces", "x" * 400, "", "  ünïcode  \r\n"])
def test_agent_one_line_matches_the_contract(text):
    assert agent.one_line(text) == jsonio.one_line(text)
    exc = ValueError(text)
    assert agent._error_text(exc) == jsonio.error_text(exc)


def test_agent_json_sanitiser_matches_the_contract(tmp_path):
    doc = {"a": float("nan"), "b": [1.5, float("inf"), np.float32(2.5), np.int64(3)], "c": np.arange(3),
           "d": {"e": -float("inf"), "f": None, "g": (1, 2)}, "h": True}
    agent.write_json_atomic(tmp_path / "agent.json", doc)
    jsonio.atomic_write_json(tmp_path / "host.json", doc)
    assert json.loads((tmp_path / "agent.json").read_text()) == json.loads((tmp_path / "host.json").read_text())
    assert json.loads((tmp_path / "host.json").read_text())["d"]["e"] is None


def test_profiles_and_overrides():
    p = agent.PROFILES
    assert p["quick"] == {"warmup_runs": 10, "warmup_seconds": 0.2, "min_runs": 100,
                          "min_seconds": 1.0, "max_seconds": 10.0}
    assert p["standard"]["min_runs"] == 1000 and p["standard"]["min_seconds"] == 10.0
    assert p["standard"]["max_seconds"] == 120.0 and p["standard"]["warmup_runs"] == 50
    assert p["mlperf"]["min_runs"] == 1024 and p["mlperf"]["min_seconds"] == 60.0
    assert p["mlperf"]["max_seconds"] == 600.0
    args = agent.build_parser().parse_args(
        ["run", "--artifact", "a", "--batch", "b", "--out", "o", "--profile", "standard",
         "--min-runs", "7", "--max-seconds", "2"])
    proto = agent.resolve_protocol(args)
    assert proto["min_runs"] == 7 and proto["max_seconds"] == 2.0 and proto["min_seconds"] == 10.0
    flags = _override_flags({"min_runs": 7, "max_seconds": 2.5})  # what the host sends
    argv = ["run", "--artifact", "a", "--batch", "b", "--out", "o", *flags]
    parsed = agent.build_parser().parse_args(argv)
    assert parsed.min_runs == 7 and parsed.max_seconds == 2.5


def test_throttle_bits_make_run_invalid():
    invalid, _ = agent.rule_throttle([("process start", 0x0), ("start", 0x0), ("end", 0x50005)])
    assert [r.split(":")[0] for r in invalid] == ["throttled during the run", "throttling occurred during the run"]
    assert "0x50005 at end" in invalid[0] and "currently throttled" in invalid[0]
    invalid, warnings = agent.rule_throttle([("process start", 0x50000), ("end", 0x50000)])  # only old sticky bits
    assert invalid == [] and warnings[0].startswith("throttling had occurred before the run (get_throttled 0x50000)")
    assert agent.rule_throttle([("process start", None), ("end", None)]) == ([], [])  # not a Pi


def test_decoded_throttle_flags_after_the_run(monkeypatch):
    env = {"throttled_before": 0x0, "emulated": False}
    monkeypatch.setattr(agent, "_throttled", lambda: 0x50005)
    assert agent.finish_fingerprint(env) == []
    assert "currently throttled" in env["throttled_after_flags"] and env["throttled_after_hex"] == "0x50005"


def test_emulation_detection(monkeypatch):
    x86 = "vendor_id\t: AuthenticAMD\nflags\t\t: fpu sse sse2 hypervisor\n"
    monkeypatch.delenv("EDGEFAIR_EMULATED", raising=False)
    monkeypatch.setattr(agent.platform, "machine", lambda: "aarch64")
    emu, ev = agent._emulation(x86)
    assert emu and "x86" in ev[0]
    monkeypatch.setattr(agent.platform, "machine", lambda: "x86_64")
    assert agent._emulation(x86) == (False, [])
    monkeypatch.setenv("EDGEFAIR_EMULATED", "1")
    assert agent._emulation(x86)[0] is True


def test_cpu_model_on_arm():
    pi = "processor\t: 0\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n" \
         "Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"
    assert agent._cpu_model(pi) == "BCM2835"
    assert agent._cpu_model("CPU part\t: 0xd08\nCPU part\t: 0xd03\n") == "Cortex-A53 + Cortex-A72"
    assert agent._cpuinfo_field(pi, "Model") == "Raspberry Pi 4 Model B Rev 1.4"


def test_rss_meter_reports_a_method():
    m = agent.RSSMeter()
    assert m.method in ("proc_vmhwm_reset", "proc_vmhwm", "psutil_rss", "getrusage_maxrss", "none")
    if m.method != "none":
        assert m.read_kb() > 0
    if m.method == "proc_vmhwm_reset":
        m.reset()
        base = m.read_kb()
        blob = np.ones(8 * 1024 * 1024)  # 64 MiB
        assert m.read_kb() > base + 32 * 1024
        del blob
        m.reset()
        assert m.read_kb() < base + 32 * 1024


def test_write_json_atomic_sanitises_nan(tmp_path):
    p = tmp_path / "x" / "r.json"
    agent.write_json_atomic(str(p), {"a": float("nan"), "b": [np.float32(1.5), np.int64(2)],
                                     "c": np.arange(3)})
    assert json.loads(p.read_text()) == {"a": None, "b": [1.5, 2], "c": [0, 1, 2]}
    assert [f.name for f in p.parent.iterdir()] == ["r.json"]


def test_one_line_errors():
    assert agent.one_line("a\n  b\tc") == "a b c"
    assert len(agent.one_line("x" * 2000)) == 300
    assert agent._error_text(ValueError("bad\nthing")) == "ValueError: bad"  # the first line, as the host
