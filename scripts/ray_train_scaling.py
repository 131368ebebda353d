#!/usr/bin/env python3
"""Training stage of a study on Ray: N independent ``train_run`` calls (seeds) on 1 vs 2 worker nodes.

Each run starts a fresh ``ray.cluster_utils.Cluster`` (a head with no CPUs, so all training
lands on the workers, plus W worker nodes with C CPUs each), trains ``--seeds`` CNNs on
synthfer through ``RayExecutor.map_host`` and prints the wall time, the ratio and the load
averages of the (shared) machine next to each timing.

    .venv/bin/python scripts/ray_train_scaling.py [--seeds 4] [--epochs 3] [--cpus-per-node 1]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class TrainSeed:
    """One training of the study (a module-level callable: it pickles)."""

    out: str
    dataset: str
    epochs: int

    def __call__(self, seed: int) -> float:
        from edgefair.models.run import TrainRequest, train_run

        res = train_run(TrainRequest(dataset=self.dataset, arch="cnn", out=Path(self.out) / f"seed-{seed}",
                                     epochs=self.epochs, seed=seed))
        return float(res["test"]["accuracy"])


def _time_on(workers: int, cpus: int, fn: TrainSeed, seeds: list[int]) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    from edgefair.bench.executor import RayExecutor

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(workers):
        cluster.add_node(num_cpus=cpus)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        ex = RayExecutor(address=cluster.address, host_cpus=cpus)
        ex.map_host(abs, [0] * workers)  # warm one worker per node: start-up is not the study's cost
        load = os.getloadavg()
        t0 = time.perf_counter()
        acc = ex.map_host(fn, seeds)
        wall = time.perf_counter() - t0
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {"workers": workers, "cpus_per_node": cpus, "wall_s": round(wall, 1),
            "load_before": [round(x, 2) for x in load], "load_after": [round(x, 2) for x in os.getloadavg()],
            "accuracy": acc}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--cpus-per-node", type=int, default=1)
    ap.add_argument("--dataset", default="synthfer:n=1200:seed=1")
    args = ap.parse_args()
    seeds = list(range(args.seeds))
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("EDGEFAIR_CACHE_DIR", str(Path(tmp) / "cache"))
        for workers in (1, 2):
            fn = TrainSeed(out=str(Path(tmp) / f"w{workers}"), dataset=args.dataset, epochs=args.epochs)
            out.append(_time_on(workers, args.cpus_per_node, fn, seeds))
            print(json.dumps(out[-1]), flush=True)
    print(json.dumps({"ratio_1_over_2": round(out[0]["wall_s"] / out[1]["wall_s"], 2),
                      "same_accuracies": out[0]["accuracy"] == out[1]["accuracy"]}))


if __name__ == "__main__":
    main()
