"""pytest-benchmark suite: one benchmark per artefact, with the figures a CI gate needs.

    pytest tests/benchmarks --benchmark-enable --benchmark-json=bench.json
    bench gate --baseline old.json --current bench.json

Each artefact is timed in-process with ``benchmark.pedantic`` through the same runner
class the device agent uses. ``extra_info`` carries what pytest-benchmark cannot gate
on itself: size, p90 latency and peak RSS from a clean ``bench run`` subprocess, test
accuracy, and the largest subgroup gap from the audit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_SPARSITIES, TINY_TARGETS

NAMES = [f"{t}-s{s:g}" for t in TINY_TARGETS for s in TINY_SPARSITIES]


@pytest.fixture(scope="module")
def measured_db(tiny_artifacts, tmp_path_factory) -> Path:
    """Every artefact measured (local, with eval) and audited into one database."""
    from edgefair.bench.audit_run import AuditRequest, audit_artifacts
    from edgefair.bench.measure import measure_artifacts
    from edgefair.contracts.measurement import RunSettings

    db = tmp_path_factory.mktemp("bench-db") / "results.db"
    settings = RunSettings(profile="quick", threads=1, mode="both", overrides={"min_runs": 50, "min_seconds": 0.1})
    measure_artifacts(artifacts=tiny_artifacts, device="local", db=db, settings=settings)
    audit_artifacts(AuditRequest(artifacts=tiny_artifacts, db=db, device="local", min_n=5))
    return db


@pytest.fixture(scope="module")
def agent():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "edgefair" / "runtimes"))
    import agent as agent_module  # the device agent, imported the way a device runs it

    from edgefair.models import torch_runner

    torch_runner.register(agent_module)  # torch reference rows: the host-side runner plugin
    return agent_module


@pytest.mark.parametrize("name", NAMES)
def test_artifact_latency(benchmark, name, tiny_artifacts, measured_db, agent):
    from edgefair.bench.store import Store

    art = tiny_artifacts / name
    manifest = json.loads((art / "manifest.json").read_text())
    runner = agent.make_runner(manifest["format"], str(art / manifest["model_file"]), 1, manifest)
    runner.load()
    images = np.random.default_rng(0).integers(0, 256, size=(1, 48, 48, 1), dtype=np.uint8)
    x = agent.preprocess(images, manifest, runner)[0:1]
    out = benchmark.pedantic(runner.run_one, args=(x,), rounds=200, warmup_rounds=20, iterations=1)
    assert np.asarray(out).size == len(manifest["class_names"])

    with Store(measured_db) as store:
        row = next(r for r in store.summary_rows() if r["name"] == name)
    assert row["status"] == "ok" and row["p90_s"] >= row["p50_s"] > 0
    benchmark.extra_info.update({
        "artifact": name, "device": "local", "size_bytes": row["size_bytes"], "gzip_bytes": row["gzip_bytes"],
        "p50_s": row["p50_s"], "p90_s": row["p90_s"], "peak_rss_kb": row["peak_rss_kb"],
        "accuracy": row["audit_accuracy"] if row["audit_accuracy"] is not None else row["run_accuracy"],
        "largest_gap": row["largest_gap"], "verdict": row["verdict"],
    })
    assert benchmark.extra_info["accuracy"] is not None
