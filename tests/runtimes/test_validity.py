"""Timings that are valid or say why not (issue 11): every rule, tripped for real where it can be."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgefair.runtimes import agent

from .conftest import FAST, run_agent

HERE = Path(__file__).resolve().parent


def _bench(models, tmp_path, *extra, env=None, name="onnx-fp32", timeout=120):
    out = tmp_path / f"{name}.json"
    code, res, proc = run_agent(["run", "--artifact", models["arts"][name], "--batch", models["batch"], "--out", out,
                                 "--mode", "bench", *extra], out=out, env_extra=env, timeout=timeout)
    assert res is not None and res["ok"], (res, proc.stderr[-2000:])
    return res


def test_stop_rule_not_met_is_invalid_with_its_numbers(models, tmp_path):
    res = _bench(models, tmp_path, "--min-runs", "10000000", "--min-seconds", "0", "--max-seconds", "0.3")
    assert res["valid"] is False
    reason = res["invalid_reasons"][0]
    assert reason.startswith("stop rule not met: n=") and "of min_runs=10000000" in reason
    assert "max_seconds=0.3 was reached" in reason
    assert res["timing"]["stopped_by"] == "max_seconds"


def test_contention_beside_real_cpu_hogs(models, tmp_path):
    """Two busy processes per core: the agent sees its CPU share fall and is preempted."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * (os.cpu_count() or 1))]
    try:
        res = _bench(models, tmp_path, "--min-runs", "50", "--min-seconds", "1.0", "--max-seconds", "5")
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    reasons = [r for r in res["invalid_reasons"] if r.startswith("contention: ")]
    assert res["valid"] is False and reasons, res["invalid_reasons"]
    usage = res["conditions"]["usage"]
    assert usage["cpu_share"] < agent.CONTENTION_MIN_CPU_SHARE or (
        usage["involuntary_cs_per_s"] > agent.CONTENTION_MAX_INVOLUNTARY_CS)
    assert f"on {os.cpu_count()} cores" in reasons[0]


def _fake_vcgencmd(folder: Path, values: list[str]) -> dict[str, str]:
    """A STAND-IN for the Raspberry Pi's vcgencmd (a test double: there is no Pi here). It answers
    get_throttled with the listed values in turn, the last one repeated."""
    folder.mkdir()
    state = folder / "calls"
    script = folder / "vcgencmd"
    script.write_text("#!/bin/sh\n# STAND-IN vcgencmd (test double)\n"
                      f"n=$(cat '{state}' 2>/dev/null || echo 0); echo $((n + 1)) > '{state}'\n"
                      f"set -- {' '.join(values)}\n"
                      'i=0; for v in "$@"; do last=$v; [ $i -eq $n ] && { echo "throttled=$v"; exit 0; }; '
                      "i=$((i + 1)); done; echo \"throttled=$last\"\n")
    script.chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def test_throttling_during_the_run_is_seen_between_blocks(models, tmp_path):
    env = _fake_vcgencmd(tmp_path / "bin", ["0x0", "0x0", "0x0", "0x50005"])
    res = _bench(models, tmp_path, *FAST[:-2], "--min-seconds", "1.0", "--max-seconds", "5", env=env)
    assert res["valid"] is False
    kinds = [r.split(":")[0] for r in res["invalid_reasons"]]
    assert "throttled during the run" in kinds and "throttling occurred during the run" in kinds
    assert len(res["conditions"]["readings"]) >= 3  # start, between blocks, end


def test_sticky_bits_set_before_the_run_are_a_warning_not_a_verdict(models, tmp_path):
    res = _bench(models, tmp_path, *FAST, env=_fake_vcgencmd(tmp_path / "bin", ["0x50000"]))
    assert not any("throttl" in r for r in res["invalid_reasons"])
    assert any(w.startswith("throttling had occurred before the run") for w in res["warnings"])


def test_an_unreadable_pi_sensor_is_named():
    m = agent.Monitor(pi=True)
    m.read("start")
    problems = m.problems()
    if agent._throttled() is None:
        assert problems["vcgencmd get_throttled"] == "vcgencmd not found"
    text = agent.measurement_validity({"env": {"cores": 2}, "timing": {}}, {"min_runs": 1, "min_seconds": 0,
                                                                           "max_seconds": 1}, m, {})[1]
    assert all(w.startswith("sensor not readable: ") for w in text if "sensor" in w)


@pytest.mark.parametrize("governor, invalid", [("performance", True), ("schedutil", False)])
def test_a_clock_that_falls_is_invalid_where_it_should_be_fixed(governor, invalid):
    readings = [{"freq_khz": [1800000, 1800000]}, {"freq_khz": [1800000, 1500000]}, {"freq_khz": [1800000, 1400000]}]
    bad, warn = agent.rule_frequency(readings, governor, pi=False)
    text = (bad or warn)[0]
    assert text.startswith("CPU clock fell during the measurement: cpu1 1800 -> 1400 MHz (-22%")
    assert bool(bad) is invalid


def test_heat_instability_and_correlation_are_warnings():
    assert agent.rule_temperature([{"temp_c": 50.0}, {"temp_c": 63.0}]) == [
        "hottest thermal zone rose 50.0 -> 63.0 C during the run (bound +10 C)"]
    warns = agent.rule_instability({"mean_s": 1.0, "std_s": 0.8, "p50_s": 1.0, "p99_s": 3.0, "n": 1000,
                                    "effective_n": 40.0, "lag1_autocorrelation": 0.92})
    assert [w.split(":")[0] for w in warns] == ["unstable timing", "unstable timing",
                                                "samples strongly correlated (lag-1 autocorrelation 0.92, "
                                                "effective n 40)"]


def test_contention_rule_numbers():
    bad, warn = agent.rule_contention({"wall_s": 1.0, "cpu_share": 0.5, "involuntary_cs_per_s": 300.0},
                                      [5.4, 5.6], 2)
    assert bad == ["contention: the process ran 50% of the measurement's wall time (bound 90%); load 5.4 -> 5.6 "
                   "on 2 cores", "contention: 300 involuntary context switches per second (bound 50); load 5.4 -> "
                   "5.6 on 2 cores"]
    assert warn == ["busy machine before the run: load 5.4 on 2 cores"]


def test_p50_interval_covers_under_correlated_samples():
    """The fast part of scripts/p50_interval_sim.py: the batch-median interval keeps its 95 % where the
    independent-samples interval does not."""
    sys.path.insert(0, str(HERE.parents[1] / "scripts"))
    import p50_interval_sim as sim

    cell = sim.coverage(1000, 0.5, runs=120)
    assert cell["coverage"] >= 0.89 and cell["coverage_iid"] <= 0.9
    strong = sim.coverage(1000, 0.9, runs=30)
    assert strong["warned"] >= 0.9  # too correlated to trust: the run says so


def test_fingerprint_names_the_kernels_the_cpu_picks():
    x86 = ("vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC 9R14\n"
           "stepping\t: 1\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni hypervisor\n")
    ident = agent.cpu_identity(x86)
    assert (ident["vendor"], ident["family"], ident["model"], ident["stepping"]) == ("AuthenticAMD", "25", "17", "1")
    assert ident["isa"] == ["avx", "avx2", "avx512_vnni", "avx512f", "fma", "sse4_2"]
    arm = "".join(f"processor\t: {i}\nFeatures\t: fp asimd asimddp i8mm crc32\nCPU implementer\t: 0x41\n"
                  f"CPU part\t: {'0xd0b' if i >= 4 else '0xd05'}\n\n" for i in range(8))
    ident = agent.cpu_identity(arm)
    assert ident["isa"] == ["asimd", "asimddp", "fp", "i8mm"]
    assert ident["core_types"] == {"Cortex-A55": 4, "Cortex-A76": 4}


def test_runtime_evidence_and_op_profiles(models, tmp_path):
    t = _bench(models, tmp_path, *FAST, "--profile-ops", "5", name="tflite-int8")
    ev = t["runtime"]["evidence"]
    assert ev["xnnpack_applied"] is True and ev["delegated_nodes"] == ev["nodes"] > 0
    assert t["op_profile"]["method"] == "static op list" and t["op_profile"]["ops"]
    o = _bench(models, tmp_path, *FAST, "--profile-ops", "5", name="onnx-fp32")
    assert o["runtime"]["evidence"]["providers"] == ["CPUExecutionProvider"]
    ops = o["op_profile"]["ops"]
    assert o["op_profile"]["method"] == "onnxruntime profiler" and {r["calls"] for r in ops} == {5}
    assert abs(sum(r["share"] for r in ops) - 1) < 1e-6 and all(r["op"] for r in ops)
    rss = o["rss"]
    assert rss["model_kb"] == rss["steady_kb"] - rss["baseline_kb"] and rss["method"] in rss["model_note"]
