#!/usr/bin/env python3
"""Coverage of the agent's p50 confidence interval when consecutive latencies are correlated.

Latency samples are simulated as exp(0.1 * AR(1)) series (true median 1, lag-1 correlation
phi) and passed through the agent's own ``summarise`` (edgefair/runtimes/agent.py): the
share of runs whose ``p50_ci_s`` contains the true median is its coverage (nominal 95 %).
The order-statistic interval that assumes independent samples (``p50_ci_iid_s``) is shown
beside it.

    python scripts/p50_interval_sim.py                 # the full table (a few seconds)
    python scripts/p50_interval_sim.py --runs 200 --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgefair.runtimes import agent  # noqa: E402

PHIS = (0.0, 0.5, 0.9, 0.97)
SIZES = (200, 1000, 5000)


def ar1(n: int, phi: float, rng: np.random.Generator) -> np.ndarray:
    """exp(0.1 * x) for a stationary AR(1) x with unit variance: median exactly 1."""
    e = rng.standard_normal(n + 200)
    x = np.empty_like(e)
    x[0] = e[0]
    scale = np.sqrt(1 - phi * phi)
    for i in range(1, e.size):
        x[i] = phi * x[i - 1] + scale * e[i]
    return np.exp(0.1 * x[200:])


def coverage(n: int, phi: float, runs: int, seed: int = 0) -> dict[str, float]:
    """Share of runs whose interval holds the true median, for the agent's and the iid interval."""
    rng = np.random.default_rng([seed, n, int(phi * 1000)])
    hit = hit_iid = warned = 0
    for _ in range(runs):
        s = agent.summarise((ar1(n, phi, rng) * 1e9).astype(np.int64))
        lo, hi = s["p50_ci_s"]
        hit += lo <= 1.0 <= hi
        lo, hi = s["p50_ci_iid_s"]
        hit_iid += lo <= 1.0 <= hi
        warned += bool(agent.rule_instability(s))
    return {"n": n, "phi": phi, "runs": runs, "coverage": hit / runs, "coverage_iid": hit_iid / runs,
            "warned": warned / runs}


def table(runs: int) -> list[dict[str, float]]:
    return [coverage(n, phi, runs) for phi in PHIS for n in SIZES]


def markdown(rows: list[dict[str, float]]) -> str:
    out = ["| lag-1 correlation | n | coverage (reported p50 interval) | coverage (independent-samples interval) "
           "| warned |",
           "|---:|---:|---:|---:|---:|"]
    out += [f"| {r['phi']:g} | {r['n']} | {r['coverage']:.3f} | {r['coverage_iid']:.3f} | {r['warned']:.2f} |"
            for r in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=400, help="simulated measurements per cell")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = table(args.runs)
    print(json.dumps(rows, indent=1) if args.json else markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
