"""``bench sweep --seeds K``: the population behind every cell of the export matrix.

Seed ``cfg.seed`` is the sweep's own model (measured on every device and audited as
before); seeds ``cfg.seed + 1 … + K - 1`` are trained on the same split (a fixed test set)
and put through the same export grid. Every artefact of every seed is predicted on the
host (``study.runner.predictions``: the artefact's own runtime), and the study's analysis
(``study.analysis.compression_rows``) gives each cell's figures over seeds: accuracy and
gap with their spread, CEV/SDE averaged over trials, and Hooker et al.'s CIEs by group.
Latency stays a seed-0 measurement: the other seeds' artefacts have the same graphs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgefair.bench.config import SweepConfig
from edgefair.bench.study.config import StudyConfig
from edgefair.bench.study.runner import (
    Arm,
    Artefact,
    Collected,
    TrainJob,
    check_same_test,
    load_test,
    predictions,
    run_train_job,
)

MapHost = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]
STAGE_KIND = "population"


def population_config(cfg: SweepConfig, arch: str, attribute: str) -> StudyConfig:
    """The sweep's matrix as a compression study of ``cfg.seeds`` models on one split."""
    return StudyConfig(name="sweep-population", kind="compression", dataset=cfg.dataset, arch=arch,
                       epochs=cfg.epochs, seeds=cfg.seeds, data_seed=cfg.seed, attribute=attribute, alpha=cfg.alpha,
                       targets=list(cfg.targets), sparsities=sorted(cfg.sparsities), prunings=[cfg.pruning],
                       clusterings=sorted(set(cfg.clusterings or [0])),
                       mitigations=sorted({"none", *cfg.mitigations}, key=("none", "kd").index),
                       finetune_epochs=cfg.finetune_epochs, kd_alpha=cfg.kd_alpha, kd_temperature=cfg.kd_temperature,
                       prune_scope=cfg.prune_scope, calib=cfg.calib)


def population_seeds(cfg: SweepConfig) -> list[int]:
    return [cfg.seed + k for k in range(cfg.seeds)]


def train_population(cfg: SweepConfig, arch: str, out: Path, first_run: Path, map_host: MapHost) -> list[Path]:
    """The run folder of every seed: the sweep's own for the first, the rest trained (as host tasks)."""
    scfg = population_config(cfg, arch, "")
    jobs = [TrainJob(scfg, out, seed) for seed in population_seeds(cfg)[1:]]
    return [first_run, *(Path(p) for p in map_host(run_train_job, jobs))]


def _arm_of(manifest: Any, pruning: str) -> Arm:
    """The artefact's arm as its manifest records it (clusters, distilled or not)."""
    c = manifest.compression
    return Arm(pruning, c.clusters or 0, "kd" if c.distilled else "none")


def collect(cfg: SweepConfig, runs: list[Path], art_dirs: list[Path], out: Path) -> Collected:
    """Every seed's artefacts with their host predictions on the fixed test split."""
    from edgefair.bench.sweep import export_grid

    col = Collected(test=load_test(runs[0], None))
    for seed, run_dir, art_dir in zip(population_seeds(cfg), runs, art_dirs, strict=True):
        check_same_test(col, run_dir)
        col.runs.append({"seed": seed, "run": str(run_dir)})
        for report in export_grid(cfg, run_dir, art_dir):
            col.failed += [f"export seed {seed} {r.name}: {r.reason}" for r in report.failed]
            for r in report.results:
                if r.ok and r.path is not None:
                    m, pred = predictions(Path(r.path), col.test.images_u8, out / "predictions")
                    col.artefacts.append(Artefact(seed, _arm_of(m, cfg.pruning), float(r.sparsity), r.target,
                                                  m.artifact_id, m.file.size_bytes, m.file.gzip_bytes,
                                                  m.params.nonzero, pred))
    return col


def dedupe(col: Collected) -> Collected:
    """One artefact per (seed, arm, sparsity, target): the KD grid re-lists the shared dense ones."""
    seen: dict[tuple[int, Arm, float, str], Artefact] = {}
    for a in col.artefacts:
        seen.setdefault((a.seed, a.arm, a.sparsity, a.target), a)
    return replace(col, artefacts=list(seen.values()))


def population_rows(cfg: SweepConfig, arch: str, col: Collected, attribute: str) -> list[dict[str, Any]]:
    """Each cell's figures over seeds for one attribute (study.analysis.compression_rows)."""
    from edgefair.bench.study.analysis import compression_rows
    from edgefair.contracts.targets import TARGET_NAMES, artefact_name

    groups = np.array([s.attributes.get(attribute, "unknown") for s in col.test.samples])
    scfg = population_config(cfg, arch, attribute)
    rows = compression_rows(scfg, replace(col, test=replace(col.test, groups=groups)))
    rows.sort(key=lambda r: (TARGET_NAMES.index(r["target"]), r["clustering"], r["sparsity"],
                             r["mitigation"] != "none"))
    for r in rows:
        r["name"] = artefact_name(r["target"], r["sparsity"], clustering=r["clustering"] or None,
                                  kd=r["mitigation"] == "kd")
    return rows


def attributes_of(cfg: SweepConfig, col: Collected) -> list[str]:
    """The audited attributes: the config's, or every attribute of the dataset."""
    if cfg.attributes:
        return list(cfg.attributes)
    return sorted({a for s in col.test.samples for a in s.attributes})
