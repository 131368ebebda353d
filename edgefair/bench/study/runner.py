"""``bench study``: train a population of models, compress or re-balance, predict on the host.

Every training is content-addressed (``runs/<what>-<key>``; a finished one is never redone),
every export goes through ``export_matrix`` (its own content-hash cache), and each artefact's
test-set predictions are kept in ``predictions/<artifact_id>.npz``, so a study killed at any
point and started again redoes nothing that finished. Predictions come from the artefact's
own runtime through the agent's code path (``export.parity.run_artifact``) on this machine:
a study measures accuracy and fairness, not time.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefair.bench.study.config import StudyConfig
from edgefair.contracts.study import TrainMix

Say = Callable[[str], None]


@dataclass(frozen=True)
class Arm:
    """One way of compressing: pruning method, clusters (0: none), fine-tune mitigation."""

    pruning: str
    clustering: int
    mitigation: str

    @property
    def tag(self) -> str:
        return f"{self.pruning}-c{self.clustering}-{self.mitigation}"


@dataclass
class TestSet:
    """The fixed test split every model of the study is scored on."""

    samples: list[Any]
    images_u8: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    class_names: list[str]
    fingerprint: str | None


@dataclass
class Artefact:
    """One exported artefact of one seed, with its test predictions."""

    seed: int
    arm: Arm
    sparsity: float
    target: str
    artifact_id: str
    size_bytes: int
    gzip_bytes: int
    nonzero_params: int
    pred: np.ndarray = field(repr=False)


@dataclass
class Collected:
    """What the runner hands to the analysis: predictions, notes and failures."""

    test: TestSet
    artefacts: list[Artefact] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def train(cfg: StudyConfig, out: Path, seed: int, *, mix: TrainMix | None = None, say: Say) -> Path:
    """Train one model of the population (skipped when this exact training finished)."""
    from edgefair.models.run import TrainRequest, finished_training, run_dir_for, train_cached

    req = TrainRequest(dataset=cfg.dataset, arch=cfg.arch, epochs=cfg.epochs, seed=seed, data_seed=cfg.data_seed,
                       train_mix=mix)
    run_dir, key = run_dir_for(out / "runs", req)
    if finished_training(run_dir, key):
        say(f"train seed {seed}: cached ({run_dir.name})")
        return run_dir
    say(f"train seed {seed}: {cfg.epochs} epoch(s)" + (f", mix {mix.proportions}" if mix else ""))
    return train_cached(out / "runs", req)[0]


def load_test(run_dir: Path, attribute: str | None) -> TestSet:
    """The test split the run was trained against, as uint8 images for the artefacts, grouped by
    ``attribute`` (None: no grouping yet)."""
    from edgefair.data.preprocess import labels_of, samples_to_uint8
    from edgefair.data.registry import load_ref
    from edgefair.data.sample import DatasetError
    from edgefair.models.checkpoint import read_meta

    meta = read_meta(run_dir)
    ref = meta.dataset_ref()
    if ref is None:
        raise DatasetError(f"{run_dir}: model.json records no dataset")
    ds = load_ref(ref)
    test = ds.split("test")
    if attribute is not None and attribute not in ds.attribute_names:
        raise DatasetError(f"dataset '{ref.spec}': no attribute '{attribute}' (has: "
                           f"{', '.join(ds.attribute_names) or 'none'}); set attribute in the study config")
    groups = np.array([s.attributes.get(attribute, "unknown") if attribute else "" for s in test])
    return TestSet(list(test), samples_to_uint8(test, meta.prep), labels_of(test), groups, list(meta.class_names),
                   ref.fingerprint)


def predictions(folder: Path, images_u8: np.ndarray, cache: Path) -> tuple[Any, np.ndarray]:
    """The artefact's manifest and its test predictions (cached by artefact id)."""
    from edgefair.contracts.manifest import read_manifest
    from edgefair.export.parity import run_artifact

    m = read_manifest(folder)
    path = cache / f"{m.artifact_id}.npz"
    if path.exists():
        with np.load(path) as z:
            if z["pred"].shape[0] == images_u8.shape[0]:
                return m, z["pred"]
    logits, _ = run_artifact(folder, m.to_dict(), images_u8)
    pred = logits.argmax(1).astype(np.int64)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, pred=pred, logits=logits)
    return m, pred


# -- compression studies ---------------------------------------------------------------


def arms(cfg: StudyConfig) -> list[Arm]:
    """Every (pruning, clustering, mitigation) of the config; the first is the reference arm."""
    return [Arm(p, c, m) for p, c, m in itertools.product(cfg.prunings, cfg.clusterings, cfg.mitigations)]


def levels_of(cfg: StudyConfig, arm: Arm, reference: Arm) -> list[float]:
    """The sparsities this arm adds: the dense level only where it differs from the reference
    (clustering with no pruning, in the first pruning method's arm)."""
    out = [s for s in cfg.sparsities if s > 0]
    dense_differs = arm.clustering > 0 and arm.pruning == reference.pruning
    if arm == reference or (dense_differs and arm.mitigation == reference.mitigation):
        out = sorted(set(out) | {0.0})
    return out


def unsupported(arm: Arm) -> str | None:
    """Why ``export_matrix`` cannot build this arm here (None: it can)."""
    from edgefair.export.matrix import export_matrix

    params = inspect.signature(export_matrix).parameters
    if arm.clustering and "clustering" not in params:
        return f"weight clustering ({arm.clustering} clusters) is not in this build's export_matrix"
    if arm.mitigation != "none" and "mitigation" not in params:
        return f"mitigation '{arm.mitigation}' is not in this build's export_matrix"
    return None


def export_kwargs(cfg: StudyConfig, arm: Arm) -> dict[str, Any]:
    """The export_matrix keywords of an arm (those this build's export_matrix takes)."""
    from edgefair.export.matrix import export_matrix

    params = inspect.signature(export_matrix).parameters
    kw: dict[str, Any] = {"pruning": arm.pruning, "finetune_epochs": cfg.finetune_epochs, "calib": cfg.calib}
    extra = {"clustering": arm.clustering or None, "mitigation": arm.mitigation, "kd_alpha": cfg.kd_alpha,
             "kd_temperature": cfg.kd_temperature, "prune_scope": cfg.prune_scope}
    kw.update({k: v for k, v in extra.items() if k in params})
    return kw


def _export_arm(cfg: StudyConfig, out: Path, run_dir: Path, seed: int, arm: Arm, sparsities: list[float],
                col: Collected, say: Say) -> None:
    from edgefair.export.matrix import export_matrix

    say(f"export seed {seed} {arm.tag}: sparsities {sparsities}")
    rep = export_matrix(run_dir, targets=cfg.targets, sparsities=sparsities,
                        out=out / "artifacts" / f"seed{seed}" / arm.tag, **export_kwargs(cfg, arm))
    for r in rep.results:
        if not r.ok or r.path is None:
            col.failed.append(f"export seed {seed} {arm.tag} {r.name}: {r.reason}")
            continue
        m, pred = predictions(Path(r.path), col.test.images_u8, out / "predictions")
        col.artefacts.append(Artefact(seed, arm, float(r.sparsity), r.target, m.artifact_id, m.file.size_bytes,
                                      m.file.gzip_bytes, m.params.nonzero, pred))


def run_compression(cfg: StudyConfig, out: Path, say: Say) -> Collected:
    """Seed by seed (a run cut short still holds whole seeds): train, then every arm's export
    matrix, then predictions of every artefact."""
    all_arms = arms(cfg)
    reference = all_arms[0]
    skipped = {arm: why for arm in all_arms if (why := unsupported(arm)) is not None}
    col: Collected | None = None
    for seed in range(cfg.seeds):
        run_dir = train(cfg, out, seed, say=say)
        if col is None:
            col = Collected(test=load_test(run_dir, cfg.attribute))
            col.notes += [f"{arm.tag}: skipped: {why}" for arm, why in skipped.items()]
        check_same_test(col, run_dir)
        col.runs.append({"seed": seed, "run": str(run_dir)})
        for arm in all_arms:
            levels = levels_of(cfg, arm, reference)
            if arm not in skipped and levels:
                _export_arm(cfg, out, run_dir, seed, arm, levels, col, say)
    assert col is not None  # seeds >= 1
    return col


def check_same_test(col: Collected, run_dir: Path) -> None:
    """Every seed of a population is scored on one test split: the same data fingerprint."""
    from edgefair.data.sample import DatasetError
    from edgefair.models.checkpoint import read_meta

    fp = (read_meta(run_dir).dataset_ref() or None)
    if fp is not None and fp.fingerprint != col.test.fingerprint:
        raise DatasetError(f"{run_dir}: trained on other data than seed 0 (fingerprint differs): the population "
                           "needs one fixed test set")


# -- data balance ----------------------------------------------------------------------


@dataclass
class BalanceRun:
    """One training of the data-balance study and its test predictions."""

    step: int
    seed: int
    proportions: dict[str, float]
    n: int
    pred: np.ndarray = field(repr=False)


def balance_plan(cfg: StudyConfig) -> tuple[list[dict[str, float]], int, str]:
    """The proportion steps (observed train mix → uniform), the training size, and the data's source."""
    from edgefair.data.balance import balance_path, group_counts, largest_size
    from edgefair.data.registry import load_dataset
    from edgefair.data.sample import DatasetError

    ds = load_dataset(cfg.dataset, seed=cfg.data_seed)
    train_split = ds.split("train")
    counts = group_counts(train_split, cfg.attribute)
    if cfg.attribute not in ds.attribute_names:
        raise DatasetError(f"dataset '{cfg.dataset}': no attribute '{cfg.attribute}' to balance (has: "
                           f"{', '.join(ds.attribute_names) or 'none'})")
    total = sum(counts.values())
    path = balance_path({g: c / total for g, c in sorted(counts.items())}, cfg.balance_steps)
    n = min(largest_size(train_split, cfg.attribute, p) for p in path)
    if cfg.train_n:
        if cfg.train_n > n:
            raise DatasetError(f"train_n = {cfg.train_n}: the balanced step can draw at most {n} training samples "
                               f"from {cfg.dataset}")
        n = cfg.train_n
    return path, n, ds.source or ds.name


def balance_mixes(cfg: StudyConfig) -> list[tuple[int, int, TrainMix]]:
    """(seed, step, training mix) of every data-balance training, seed-major (a run cut short
    still holds whole seeds: rerun with fewer --seeds to report them)."""
    path, n, _ = balance_plan(cfg)
    return [(seed, step, TrainMix(attribute=cfg.attribute, proportions={g: round(p, 6) for g, p in props.items()},
                                  n=n, seed=seed))
            for seed, (step, props) in itertools.product(range(cfg.seeds), enumerate(path))]


def run_balance(cfg: StudyConfig, out: Path, say: Say) -> tuple[Collected, list[BalanceRun]]:
    """Per step and seed: train on the sub-sampled train split, read its test predictions."""
    rows: list[BalanceRun] = []
    col: Collected | None = None
    for seed, step, mix in balance_mixes(cfg):
        run_dir = train(cfg, out, seed, mix=mix, say=say)
        if col is None:
            col = Collected(test=load_test(run_dir, cfg.attribute))
        check_same_test(col, run_dir)
        with np.load(run_dir / "test_predictions.npz") as z:
            pred = z["pred"].astype(np.int64)
        col.runs.append({"step": step, "seed": seed, "run": str(run_dir)})
        rows.append(BalanceRun(step, seed, mix.proportions, mix.n, pred))
    assert col is not None  # balance_path has at least two steps and seeds >= 1
    return col, rows


# -- the population's trainings as independent jobs (for an executor) -------------------


@dataclass(frozen=True)
class TrainJob:
    """One training of a study's population: what ``train`` needs, picklable for Ray."""

    cfg: StudyConfig
    out: Path
    seed: int
    mix: TrainMix | None = None


def train_jobs(cfg: StudyConfig, out: Path) -> list[TrainJob]:
    """Every training the study needs (compression: one per seed; balance: seed × step)."""
    if cfg.kind == "compression":
        return [TrainJob(cfg, out, seed) for seed in range(cfg.seeds)]
    return [TrainJob(cfg, out, seed, mix) for seed, _, mix in balance_mixes(cfg)]


def run_train_job(job: TrainJob) -> str:
    """Train one job (cached when it finished before); the run folder."""
    return str(train(job.cfg, job.out, job.seed, mix=job.mix, say=lambda msg: None))
