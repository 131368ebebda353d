#!/usr/bin/env python3
"""Fidelity of `bench run`: the agent's p50 against a bare loop over the same runtime.

For each artefact, alternates ROUNDS times: the agent on the `local` device (fresh
subprocess, the given profile) and edgefair/runtimes/bare_loop.py (fresh subprocess,
same threads, same input), then prints each pair, the ratio agent/bare of the medians
and the coefficient of variation of each side's p50 across rounds.

    .venv/bin/python scripts/fidelity.py ARTIFACT_DIR [ARTIFACT_DIR ...] [--rounds 3] [--profile standard]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from edgefair.bench.measure import write_test_batch
from edgefair.devices import run_artifact
from edgefair.runtimes.protocol import bare_loop_path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("artifacts", nargs="+", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", default="standard")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--dataset", default="synthfer")
    args = ap.parse_args()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for art in args.artifacts:
            manifest = json.loads((art / "manifest.json").read_text())
            batch, _ = write_test_batch(args.dataset, manifest, Path(tmp) / "batch.npz", limit=1)
            agent, bare = [], []
            for _ in range(args.rounds):
                res = run_artifact("local", art, batch, mode="bench", threads=args.threads, profile_name=args.profile)
                agent.append(res["timing"]["p50_s"])
                proc = subprocess.run([sys.executable, str(bare_loop_path()), "--artifact", str(art), "--batch",
                                       str(batch), "--threads", str(args.threads), "--n", str(args.n), "--json"],
                                      capture_output=True, text=True, check=True)
                bare.append(json.loads(proc.stdout)["p50_s"])
            cv = lambda xs: statistics.pstdev(xs) / statistics.mean(xs)  # noqa: E731
            ratio = statistics.median(agent) / statistics.median(bare)
            out[art.name] = {"agent_p50_us": [round(x * 1e6, 2) for x in agent],
                             "bare_p50_us": [round(x * 1e6, 2) for x in bare],
                             "ratio": round(ratio, 4), "cv_agent": round(cv(agent), 4), "cv_bare": round(cv(bare), 4)}
            print(art.name, out[art.name], flush=True)
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
