"""``bench train``: dataset → model → best-validation checkpoint → test summary."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgefair.contracts.study import TrainMix
from edgefair.data.balance import subsample_to_proportions
from edgefair.data.preprocess import Preprocessing, labels_of, samples_to_nchw
from edgefair.data.registry import canonical_spec, dataset_ref, load_dataset
from edgefair.models.architectures import build_model, count_parameters
from edgefair.models.checkpoint import CheckpointError, RunMeta, load_run, save_run
from edgefair.models.evaluation import group_summary
from edgefair.models.training import TrainConfig, fit, predict_logits


@dataclass
class TrainRequest:
    """What ``bench train`` was asked to do."""

    dataset: str = "synthfer"
    arch: str = "cnn"
    out: Path = Path("runs/base")
    epochs: int = 12
    seed: int = 0
    size: int = 48
    channels: int = 1
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    teacher: Path | None = None
    data_seed: int | None = None  # the split seed (None: ``seed``); a population of seeds keeps one test set
    train_mix: TrainMix | None = None  # sub-sample the train split to group proportions (data-balance study)
    tags: dict[str, Any] = field(default_factory=dict)  # stored in model.json's metrics (e.g. a sweep key)
    train: TrainConfig = field(default_factory=TrainConfig)


def train_run(req: TrainRequest, *, progress: Callable[[str, float, float], None] | None = None) -> dict[str, Any]:
    """Train, keep the best validation checkpoint, evaluate on test, write the run directory."""
    t_start = time.perf_counter()
    say = progress or (lambda stage, done, total: None)
    spec = canonical_spec(req.dataset)  # a bad spec fails before anything is loaded
    teacher = None
    if req.teacher is not None:
        teacher, tmeta = load_run(req.teacher)
        if tmeta.preprocessing["size"] != req.size or tmeta.preprocessing["channels"] != req.channels:
            raise CheckpointError(f"{req.teacher}: teacher input {tmeta.preprocessing['size']}px×"
                                  f"{tmeta.preprocessing['channels']}ch differs from the student's "
                                  f"{req.size}px×{req.channels}ch")
    data_seed = req.seed if req.data_seed is None else req.data_seed
    ds = load_dataset(spec, seed=data_seed, progress=lambda d, t: say("data", d, t))
    if teacher is not None and len(ds.class_names) != tmeta.num_classes:
        raise CheckpointError(f"{req.teacher}: teacher has {tmeta.num_classes} classes, dataset {ds.name} has "
                              f"{len(ds.class_names)}")
    prep = Preprocessing(size=req.size, channels=req.channels)
    train, val, test = ds.split("train"), ds.split("val"), ds.split("test")
    if req.train_mix is not None:
        mix = req.train_mix
        train = subsample_to_proportions(train, attribute=mix.attribute, proportions=mix.proportions, n=mix.n,
                                         seed=mix.seed)
    warnings = data_warnings(ds)
    xtr, ytr = samples_to_nchw(train, prep), labels_of(train)
    xva, yva = samples_to_nchw(val, prep), labels_of(val)
    xte, yte = samples_to_nchw(test, prep), labels_of(test)
    torch.manual_seed(req.seed)
    model = build_model(req.arch, num_classes=len(ds.class_names), in_channels=req.channels, **req.arch_kwargs)
    cfg = req.train
    cfg.epochs, cfg.seed = req.epochs, req.seed
    t0 = time.perf_counter()
    history = fit(model, (xtr, ytr), (xva, yva), cfg, teacher=teacher,
                  batch_progress=lambda d, t: say("train", d, t))
    train_s = time.perf_counter() - t0
    logits = predict_logits(model, xte)
    pred = logits.argmax(1)
    summary = group_summary(test, pred, ds.class_names)
    total, nonzero = count_parameters(model)
    meta = RunMeta(
        arch=req.arch, num_classes=len(ds.class_names), class_names=list(ds.class_names),
        preprocessing=prep.to_dict(), arch_kwargs=dict(req.arch_kwargs),
        dataset={**dataset_ref(spec, ds, seed=data_seed).to_dict(), "source": ds.source,
                 **({"train_mix": req.train_mix.to_dict()} if req.train_mix is not None else {})},
        seed=req.seed, epochs=req.epochs,
        metrics={"test": summary, "warnings": warnings, "best_epoch": history["best_epoch"],
                 "best_val_accuracy": history["best_val_accuracy"],
                 "train_seconds": train_s, "params": total, "nonzero_params": nonzero, "history": history["epochs"],
                 "train_config": cfg.to_dict(), **req.tags},
        teacher={"run": str(req.teacher), "checkpoint_sha256": tmeta.checkpoint_sha256,
                 "temperature": cfg.kd_temperature, "alpha": cfg.kd_alpha} if teacher is not None else None,
    )
    out = save_run(req.out, model, meta)
    np.savez(out / "test_predictions.npz", ids=np.array([s.sample_id for s in test]), pred=pred, logits=logits,
             labels=yte)
    return {"run": str(out), "arch": req.arch, "dataset": req.dataset, "epochs": req.epochs, "seed": req.seed,
            "params": total, "train_seconds": train_s, "total_seconds": time.perf_counter() - t_start,
            "best_epoch": history["best_epoch"], "best_val_accuracy": history["best_val_accuracy"],
            "test": summary, "checkpoint_sha256": meta.checkpoint_sha256, "warnings": warnings}


def data_warnings(ds: Any) -> list[str]:
    """What makes a training run's numbers meaningless: too few classes present in a split."""
    out = []
    for split in ("train", "test"):
        present = sorted({ds.class_names[s.label] for s in ds.split(split)})
        if len(present) < 2:
            out.append(f"the {split} split holds one class only ({', '.join(present)}): accuracy says nothing; "
                       "check the labels")
    return out


# -- content-addressed trainings (shared by bench sweep and bench study) ------------------


def training_key(req: TrainRequest) -> str:
    """What makes this training's model: data, architecture and its input, epochs, seeds, training
    mix, teacher and the training settings (everything of the request but where it is written)."""
    import hashlib
    import json

    doc = {"dataset": canonical_spec(req.dataset), "arch": req.arch, "arch_kwargs": req.arch_kwargs,
           "size": req.size, "channels": req.channels, "epochs": req.epochs, "seed": req.seed,
           "data_seed": req.seed if req.data_seed is None else req.data_seed,
           "mix": req.train_mix.to_dict() if req.train_mix else None,
           "teacher": str(req.teacher) if req.teacher is not None else None, "train": req.train.to_dict()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


def run_dir_for(runs: Path, req: TrainRequest) -> tuple[Path, str]:
    """The run folder of this training (``runs/<arch>-seed<seed>-<key>``) and its key."""
    key = training_key(req)
    return Path(runs) / f"{req.arch}-seed{req.seed}-{key}", key


def finished_training(run_dir: Path, key: str) -> bool:
    """This exact training finished in ``run_dir`` (checkpoint, test predictions, its key)."""
    import json

    try:
        meta = json.loads((run_dir / "model.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return (run_dir / "model.pt").exists() and (run_dir / "test_predictions.npz").exists() and \
        meta.get("metrics", {}).get("train_key") == key


def train_cached(runs: Path, req: TrainRequest, *,
                 progress: Callable[[str, float, float], None] | None = None) -> tuple[Path, bool]:
    """Train into ``runs/<arch>-seed<seed>-<key>`` unless that training finished; (run folder, was cached)."""
    from dataclasses import replace

    run_dir, key = run_dir_for(runs, req)
    if finished_training(run_dir, key):
        return run_dir, True
    train_run(replace(req, out=run_dir, tags={**req.tags, "train_key": key}), progress=progress)
    return run_dir, False
