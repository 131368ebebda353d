#!/usr/bin/env python3
"""The Ray executor's overhead over the local one on the same small sweep (device ``local``).

Runs the sweep twice into fresh folders: ``--executor local`` then ``--executor ray`` (a local
Ray instance the executor starts, advertising ``device:local``), each through ``run_sweep``;
prints both wall times (Ray's start-up included and, separately, excluded) with the machine's
load averages, and whether both databases hold the same keys and predictions.

    .venv/bin/python scripts/ray_overhead.py [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path

from edgefair.bench.config import SweepConfig, validate


def _cfg(epochs: int) -> SweepConfig:
    return validate(SweepConfig(dataset="synthfer:n=600:seed=2", archs=["cnn"], epochs=epochs,
                                targets=["onnx-fp32", "onnx-int8"], sparsities=[0.0, 0.5], finetune_epochs=0,
                                calib=64, min_runs=20, min_seconds=0.3, min_n=5, devices=["local"]))


def _preds(db: Path) -> dict[str, list[int]]:
    with sqlite3.connect(db) as c:
        return {f"{a}|{d}|{k}": json.loads(r)["eval"]["pred"]
                for a, d, k, r in c.execute("SELECT artifact_id, device, settings_key, result_json FROM runs")}


def main() -> None:
    from edgefair.bench.executor import LocalExecutor, RayExecutor
    from edgefair.bench.sweep import run_sweep

    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    cfg = _cfg(args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("EDGEFAIR_CACHE_DIR", str(Path(tmp) / "cache"))
        out: dict[str, dict] = {}
        load = os.getloadavg()
        t0 = time.perf_counter()
        run_sweep(cfg, out=Path(tmp) / "local", executor=LocalExecutor())
        out["local"] = {"wall_s": round(time.perf_counter() - t0, 1), "load": [round(x, 2) for x in load]}
        print(json.dumps(out["local"]), flush=True)
        load = os.getloadavg()
        t0 = time.perf_counter()
        ex = RayExecutor(devices=["local"])
        t_init = time.perf_counter() - t0
        try:
            run_sweep(cfg, out=Path(tmp) / "ray", executor=ex)
        finally:
            ex.close()
        wall = time.perf_counter() - t0
        out["ray"] = {"wall_s": round(wall, 1), "ray_init_s": round(t_init, 1),
                      "wall_without_init_s": round(wall - t_init, 1), "load": [round(x, 2) for x in load]}
        print(json.dumps(out["ray"]), flush=True)
        same = _preds(Path(tmp) / "local" / "results.db") == _preds(Path(tmp) / "ray" / "results.db")
        print(json.dumps({"overhead_ratio": round(out["ray"]["wall_s"] / out["local"]["wall_s"], 2),
                          "same_keys_and_predictions": same}))


if __name__ == "__main__":
    main()
