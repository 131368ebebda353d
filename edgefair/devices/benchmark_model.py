"""TensorFlow Lite's ``benchmark_model`` binary: its command line and its output.

``benchmark_model`` reports no percentiles and no raw samples: only the mean (and, on its
``count=`` lines, std/min/max) in microseconds. Its memory figures are the tool's own
lifetime ``ru_maxrss`` readings, which it calls approximate. A result built from it says
both, and leaves accuracy to the host (it gives no predictions).
"""

from __future__ import annotations

import re


# Flag names of benchmark_model (tensorflow/lite/tools/benchmark).
def benchmark_argv(binary: str, graph: str, *, threads: int, protocol: dict,
                   op_profiling: bool = False) -> list[str]:
    """argv for one benchmark_model run following the agent's protocol preset."""
    argv = [binary, f"--graph={graph}", f"--num_threads={int(threads)}",
            f"--warmup_runs={int(protocol['warmup_runs'])}",
            f"--warmup_min_secs={float(protocol['warmup_seconds']):g}",
            f"--num_runs={int(protocol['min_runs'])}",
            f"--min_secs={float(protocol['min_seconds']):g}",
            f"--max_secs={float(protocol['max_seconds']):g}"]
    return argv + (["--enable_op_profiling=true"] if op_profiling else [])


# One row of benchmark_model's "Operator-wise Profiling Info" Run Order table.
_OP_ROW = re.compile(r"^\s*(\S+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)%\s+([\d.]+)%\s+([\d.]+)\s+(\d+)\s+\[(.*)\]\s*$")


def parse_op_profile(text: str) -> list[dict]:
    """Rows of the Run Order table of the regular (not initialisation) runs, in run order."""
    start = text.find("Operator-wise Profiling Info for Regular Benchmark Runs")
    if start < 0:
        return []
    section = text[start:].split("Run Order", 1)[-1]
    rows: list[dict] = []
    for line in section.splitlines()[1:]:
        if "====" in line and rows:
            break
        m = _OP_ROW.match(line)
        if m:
            rows.append({"op": m.group(1), "first_ms": float(m.group(2)), "mean_us": 1000 * float(m.group(3)),
                         "share": float(m.group(4)) / 100, "calls": int(m.group(7)), "name": m.group(8)})
    return rows


_NUM = r"(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"
_TIMINGS = re.compile(r"Inference timings in us:\s*Init:\s*" + _NUM + r",\s*First inference:\s*"
                      + _NUM + r",\s*Warmup \(avg\):\s*" + _NUM + r",\s*Inference \(avg\):\s*"
                      + _NUM, re.I)
_COUNT = re.compile(r"count=(\d+)(?:\s+first=" + _NUM + r")?(?:\s+curr=" + _NUM + r")?"
                    r"(?:\s+min=" + _NUM + r")?(?:\s+max=" + _NUM + r")?(?:\s+avg=" + _NUM +
                    r")?(?:\s+std=" + _NUM + r")?", re.I)
_DELTA = re.compile(r"Memory footprint delta from the start of the tool \(MB\):\s*init="
                    + _NUM + r"\s+overall=" + _NUM, re.I)
_PEAK = re.compile(r"Peak memory footprint \(MB\):\s*init=" + _NUM + r"\s+overall=" + _NUM, re.I)
_PEAK_MON = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring:\s*"
                       + _NUM, re.I)
_INIT_MS = re.compile(r"Initialized session in\s*" + _NUM + r"\s*ms", re.I)
_VERSION = re.compile(r"(?:TensorFlow Lite|LiteRT)?\s*[Vv]ersion[:\s]+([0-9][\w.\-]*)")
_THREADS = re.compile(r"#threads used for CPU inference:\s*\[?(\d+)")


class BenchmarkModelParseError(ValueError):
    pass


def parse_benchmark_output(text: str) -> dict:
    """Parse benchmark_model's stdout/stderr into numbers (seconds and kB).

    Needs the ``Inference timings in us:`` line; everything else is optional.
    Raises BenchmarkModelParseError (one line) when the timings line is missing.
    """
    m = _TIMINGS.search(text)
    if not m:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        last = lines[-1][:200] if lines else "no output"
        raise BenchmarkModelParseError(f"no 'Inference timings in us' line in benchmark_model "
                                       f"output (last line: {last})")
    init_us, first_us, warm_us, inf_us = (float(g) for g in m.groups())
    out: dict = {"init_us": init_us, "first_inference_us": first_us,
                 "warmup_avg_us": warm_us, "inference_avg_us": inf_us}
    counts = []
    for c in _COUNT.finditer(text):
        vals = [None if g is None else float(g) for g in c.groups()]
        counts.append({"count": int(c.group(1)), "first_us": vals[1], "curr_us": vals[2],
                       "min_us": vals[3], "max_us": vals[4], "avg_us": vals[5],
                       "std_us": vals[6]})
    # benchmark_model prints the warm-up summary first, then the measurement's.
    if len(counts) >= 2:
        out["warmup"], out["measurement"] = counts[-2], counts[-1]
    elif counts:
        out["measurement"] = counts[-1]
    d = _DELTA.search(text)
    if d:
        out["memory_delta_mb"] = {"init": float(d.group(1)), "overall": float(d.group(2))}
    p = _PEAK.search(text)
    if p:
        out["peak_memory_mb"] = {"init": float(p.group(1)), "overall": float(p.group(2))}
    pm = _PEAK_MON.search(text)
    if pm:
        out["peak_memory_monitored_mb"] = float(pm.group(1))
    im = _INIT_MS.search(text)
    if im:
        out["initialized_ms"] = float(im.group(1))
    t = _THREADS.search(text)
    if t:
        out["threads_used"] = int(t.group(1))
    ops = parse_op_profile(text)
    if ops:
        out["op_profile"] = ops
    v = _VERSION.search(text)
    if v:
        out["version"] = v.group(1)
    return out


def _mb_to_kb(v):
    return None if v is None else round(float(v) * 1024.0, 1)


def result_from_benchmark(parsed: dict, *, artifact: dict, threads: int, profile: str,
                          protocol: dict, binary: str, env: dict | None) -> dict:
    """A result dict shaped like the agent's result.json from benchmark_model's figures."""
    meas = parsed.get("measurement") or {}
    warm = parsed.get("warmup") or {}
    us = 1e-6
    timing = {
        "load_s": parsed["init_us"] * us,
        "first_inference_s": parsed["first_inference_us"] * us,
        "warmup_n": warm.get("count"),
        "warmup_s": None,
        "warmup_mean_s": parsed["warmup_avg_us"] * us,
        "n": meas.get("count"),
        "duration_s": None,
        "samples_s": [],
        "p50_s": None, "p90_s": None, "p99_s": None,
        "mean_s": parsed["inference_avg_us"] * us,
        "std_s": None if meas.get("std_us") is None else meas["std_us"] * us,
        "min_s": None if meas.get("min_us") is None else meas["min_us"] * us,
        "max_s": None if meas.get("max_us") is None else meas["max_us"] * us,
        "p50_ci_s": None,
        "p50_ci_level": None,
        "percentile_method": None,
        "note": "benchmark_model reports no percentiles and no raw samples: mean (and its "
                "own std/min/max) only",
    }
    peak = parsed.get("peak_memory_mb") or {}
    delta = parsed.get("memory_delta_mb") or {}
    rss = {
        "method": "benchmark_model ru_maxrss (approximate, lifetime peak of the tool)",
        "unit": "kB",
        "baseline_kb": None,
        "after_load_kb": _mb_to_kb(peak.get("init")),
        "after_first_kb": None,
        "steady_kb": _mb_to_kb(peak.get("overall", parsed.get("peak_memory_monitored_mb"))),
        "delta_init_kb": _mb_to_kb(delta.get("init")),
        "delta_overall_kb": _mb_to_kb(delta.get("overall")),
        "note": "benchmark_model's own figures, which it calls APPROXIMATE; not VmHWM by phase",
    }
    return {
        "agent_version": None,
        "ok": True,
        "error": None,
        "mode": "bench",
        "artifact": artifact,
        "runtime": {"name": "benchmark_model", "version": parsed.get("version"),
                    "binary": binary},
        "threads": threads,
        "profile": profile,
        "protocol": protocol,
        "timing": timing,
        "rss": rss,
        "env": env,
        "valid": True,
        "invalid_reasons": [],
        "warnings": ["benchmark_model: no percentiles, latency mean only",
                     "benchmark_model: memory is its approximate ru_maxrss figure",
                     "accuracy is evaluated on the host (benchmark_model gives no predictions)"],
        "accuracy": {"evaluated_on": "host",
                     "reason": "benchmark_model mode returns no predictions"},
        "benchmark_model": parsed,
        **({"op_profile": {"method": "benchmark_model --enable_op_profiling", "ops": parsed["op_profile"]}}
           if parsed.get("op_profile") else {}),
    }
