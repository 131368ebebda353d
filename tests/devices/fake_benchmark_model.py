#!/usr/bin/env python3
"""STAND-IN for TensorFlow Lite's ``benchmark_model`` binary — a TEST DOUBLE.

It accepts the flags edgefair passes (--graph, --num_threads, --num_runs, --warmup_runs,
--min_secs, --max_secs, --warmup_min_secs), really loads and runs the .tflite file with
ai_edge_litert on this machine, and prints its figures in the same line formats as the
real tool (timings in microseconds, memory in MB from ru_maxrss), so that the parser and
the adb benchmark_model path are exercised end to end without a phone.
"""

from __future__ import annotations

import resource
import sys
import time


def _flags(argv):
    out = {}
    for a in argv:
        if not a.startswith("--") or "=" not in a:
            print(f"ERROR: Invalid argument {a}", file=sys.stderr)
            sys.exit(1)
        k, v = a[2:].split("=", 1)
        out[k] = v
    return out


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _loop(invoke, runs, min_s, max_s):
    samples = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        invoke()
        samples.append((time.perf_counter() - t0) * 1e6)
        el = time.perf_counter() - start
        if (len(samples) >= runs and el >= min_s) or el >= max_s:
            return samples


def _summary(s):
    n = len(s)
    avg = sum(s) / n
    std = (sum((x - avg) ** 2 for x in s) / n) ** 0.5
    return (f"count={n} first={int(s[0])} curr={int(s[-1])} min={int(min(s))} "
            f"max={int(max(s))} avg={avg:.6g} std={int(std)}")


def main(argv):
    f = _flags(argv)
    graph = f.get("graph")
    threads = int(f.get("num_threads", 1))
    print("INFO: STARTING!")
    print("INFO: (edgefair test stand-in for TFLite benchmark_model)")
    print("INFO: Log parameter values verbosely: [0]")
    print(f"INFO: Num threads: [{threads}]")
    print(f"INFO: Graph: [{graph}]")
    print(f"INFO: #threads used for CPU inference: [{threads}]")
    try:
        with open(graph, "rb"):
            pass
    except OSError:
        print(f"ERROR: Could not open '{graph}'.", file=sys.stderr)
        print("ERROR: Benchmarking failed.", file=sys.stderr)
        return 1
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    rss0 = _rss_mb()
    t0 = time.perf_counter()
    it = Interpreter(model_path=graph, num_threads=threads)
    it.allocate_tensors()
    init_us = (time.perf_counter() - t0) * 1e6
    rss_init = _rss_mb()
    print(f"INFO: Loaded model {graph}")
    print(f"INFO: Initialized session in {init_us / 1000:.3f}ms.")
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], np.zeros(d["shape"], dtype=d["dtype"]))
    warm_runs, runs = int(f.get("warmup_runs", 1)), int(f.get("num_runs", 50))
    warm_min = float(f.get("warmup_min_secs", 0.5))
    min_s, max_s = float(f.get("min_secs", 1.0)), float(f.get("max_secs", 150.0))
    print(f"INFO: Running benchmark for at least {warm_runs} iterations and at least "
          f"{warm_min:g} seconds but terminate if exceeding {max_s:g} seconds.")
    w = _loop(it.invoke, warm_runs, warm_min, max_s)
    print("INFO: " + _summary(w) + "\n")
    print(f"INFO: Running benchmark for at least {runs} iterations and at least {min_s:g} "
          f"seconds but terminate if exceeding {max_s:g} seconds.")
    s = _loop(it.invoke, runs, min_s, max_s)
    print("INFO: " + _summary(s) + "\n")
    warm_avg, inf_avg = sum(w) / len(w), sum(s) / len(s)
    print(f"INFO: Inference timings in us: Init: {int(init_us)}, First inference: {int(w[0])}, "
          f"Warmup (avg): {warm_avg:.6g}, Inference (avg): {inf_avg:.6g}")
    print("INFO: Note: as the benchmark tool itself affects memory footprint, the following "
          "is only APPROXIMATE to the actual memory footprint of the model at runtime. Take "
          "the information at your discretion.")
    rss1 = _rss_mb()
    print(f"INFO: Memory footprint delta from the start of the tool (MB): "
          f"init={rss_init - rss0:.4g} overall={rss1 - rss0:.4g}")
    print(f"INFO: Peak memory footprint (MB): init={rss_init:.4g} overall={rss1:.4g}")
    if f.get("enable_op_profiling") == "true":
        _op_table(it, inf_avg)
    return 0


def _op_table(it, inf_avg_us):
    """The real tool's per-op table format; the stand-in splits the mean time evenly over the ops
    (it cannot time single ops): only the parser is under test here."""
    ops = [o for o in it._get_ops_details() if o["op_name"] != "DELEGATE"]
    each = inf_avg_us / 1000 / max(1, len(ops))
    print("Operator-wise Profiling Info for Regular Benchmark Runs:")
    print("============================== Run Order ==============================")
    print("\t [node type]\t [first]\t [avg ms]\t [%]\t [cdf%]\t [mem KB]\t [times called]\t [Name]")
    for i, o in enumerate(ops):
        share = 100.0 / len(ops)
        print(f"\t {o['op_name']}\t {each:.3f}\t {each:.3f}\t {share:.3f}%\t {share * (i + 1):.3f}%\t 0.000\t 1\t "
              f"[{o['op_name'].lower()}_{i}]")
    print("")
    print("============================== Top by Computation Time ==============================")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
