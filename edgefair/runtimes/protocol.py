"""Host-side helpers around the device agent (``agent.py``).

The agent itself is one self-contained file shipped to devices; this module is
what the host (``edgefair.devices`` / ``edgefair.bench``) uses to find it, to
build its command line and to check a result against docs/contracts.md.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

from edgefair.runtimes.agent import (  # stdlib + numpy only at import time
    AGENT_VERSION,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_SHA_MISMATCH,
    EXIT_USAGE,
    PERCENTILE_METHOD,
    PROFILES,
)

__all__ = [
    "AGENT_VERSION", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_SHA_MISMATCH",
    "PERCENTILE_METHOD", "PROFILES", "RESULT_KEYS", "TIMING_KEYS", "RSS_KEYS", "EVAL_KEYS",
    "agent_path", "bare_loop_path", "agent_sha256", "agent_command", "check_result",
]

RESULT_KEYS = ("agent_version", "ok", "error", "artifact", "runtime", "threads", "profile",
               "timing", "rss", "env", "valid", "invalid_reasons")
TIMING_KEYS = ("load_s", "first_inference_s", "warmup_n", "warmup_s", "n", "duration_s",
               "samples_s", "p50_s", "p90_s", "p99_s", "mean_s", "std_s", "p50_ci_s",
               "percentile_method")
RSS_KEYS = ("method", "baseline_kb", "after_load_kb", "after_first_kb", "steady_kb")
EVAL_KEYS = ("ids", "pred", "logits")


def agent_path() -> Path:
    """The agent file to copy to a device (run there as ``python3 agent.py ...``)."""
    return Path(__file__).with_name("agent.py")


def bare_loop_path() -> Path:
    """The bare-loop fidelity script (same runtime, same threads, no harness)."""
    return Path(__file__).with_name("bare_loop.py")


def agent_sha256() -> str:
    """sha256 of the agent file, to record exactly which agent produced a result."""
    return hashlib.sha256(agent_path().read_bytes()).hexdigest()


def agent_command(
    python: str,
    agent: str,
    *,
    artifact: str,
    batch: str,
    out: str,
    mode: str = "both",
    threads: int = 1,
    profile: str = "quick",
    expect_sha256: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> list[str]:
    """argv for one agent run (quote each element yourself for a remote shell).

    ``overrides`` keys: min_runs, min_seconds, max_seconds, warmup_runs, warmup_seconds.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
    if mode not in ("bench", "eval", "both"):
        raise ValueError(f"unknown mode {mode!r}")
    argv = [python, agent, "run", "--artifact", artifact, "--batch", batch, "--out", out,
            "--mode", mode, "--threads", str(int(threads)), "--profile", profile]
    if expect_sha256:
        argv += ["--expect-sha256", expect_sha256]
    allowed = ("min_runs", "min_seconds", "max_seconds", "warmup_runs", "warmup_seconds")
    for k, v in (overrides or {}).items():
        if k not in allowed:
            raise ValueError(f"unknown protocol override {k!r}; allowed: {allowed}")
        if v is not None:
            argv += ["--" + k.replace("_", "-"), str(v)]
    return argv


def check_result(result: Mapping[str, Any], *, mode: str | None = None) -> list[str]:
    """Problems with a result dict against the contract (empty list = conforms)."""
    problems: list[str] = []
    for k in RESULT_KEYS:
        if k not in result:
            problems.append(f"missing key {k!r}")
    if problems:
        return problems
    if not result["ok"]:
        err = result.get("error")
        if not isinstance(err, str) or not err or "\n" in err:
            problems.append("ok=false needs a one-line 'error'")
        return problems
    timing = result["timing"]
    for k in TIMING_KEYS:
        if k not in timing:
            problems.append(f"missing timing key {k!r}")
    for k in RSS_KEYS:
        if k not in result["rss"]:
            problems.append(f"missing rss key {k!r}")
    mode = mode or result.get("mode")
    if mode in ("bench", "both") and not problems:
        p50, p90, p99 = timing["p50_s"], timing["p90_s"], timing["p99_s"]
        if None in (p50, p90, p99) or not (0 < p50 <= p90 <= p99):
            problems.append(f"percentiles not ordered: {p50}, {p90}, {p99}")
        if timing["n"] != len(timing["samples_s"]):
            problems.append("timing.n != len(samples_s)")
        ci = timing["p50_ci_s"]
        if not ci or not (ci[0] <= p50 <= ci[1]):
            problems.append(f"p50 {p50} outside its CI {ci}")
    if mode in ("eval", "both"):
        ev = result.get("eval")
        if not isinstance(ev, Mapping):
            problems.append("missing 'eval'")
        else:
            for k in EVAL_KEYS:
                if k not in ev:
                    problems.append(f"missing eval key {k!r}")
            if not problems and not (len(ev["ids"]) == len(ev["pred"]) == len(ev["logits"])):
                problems.append("eval ids/pred/logits lengths differ")
    return problems

