"""The content key of a training: everything that changes the model, nothing that does not."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from edgefair.contracts.study import TrainMix
from edgefair.models.run import TrainRequest, run_dir_for, training_key
from edgefair.models.training import TrainConfig


def test_the_key_follows_the_model_not_the_folder():
    base = TrainRequest(dataset="synthfer:n=600", arch="cnn", epochs=2, seed=1)
    assert training_key(replace(base, out=Path("/elsewhere"))) == training_key(base)
    assert training_key(replace(base, data_seed=1)) == training_key(base)  # None means the seed's own split
    changed = [replace(base, seed=2), replace(base, data_seed=0), replace(base, epochs=3), replace(base, size=64),
               replace(base, arch_kwargs={"width": 2}), replace(base, teacher=Path("runs/t")),
               replace(base, train=replace(TrainConfig(), lr=TrainConfig().lr * 2)),
               replace(base, train_mix=TrainMix(attribute="skin_tone", proportions={"dark": 0.5, "light": 0.5}, n=100)),
               replace(base, dataset="synthfer:n=800")]
    keys = {training_key(r) for r in changed}
    assert len(keys) == len(changed) and training_key(base) not in keys
    folder, key = run_dir_for(Path("runs"), base)
    assert folder == Path("runs") / f"cnn-seed1-{key}"
