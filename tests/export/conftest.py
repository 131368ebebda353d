"""Session fixtures of tests/export: one tiny trained run and ONE export of the full 9-target matrix
at sparsity 0 and 0.5."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DATASET = "synthfer:n=600"
WIDTHS = [16, 32, 64]   # big enough that int8 weights dominate the flatbuffer (size ratio test)
SPARSITIES = [0.0, 0.5]


@pytest.fixture(scope="session")
def export_run(tmp_path_factory) -> Path:
    """A cnn (widths 16/32/64) trained 2 epochs on synthfer:n=600, saved as a run directory."""
    import torch

    from edgefair.data.preprocess import Preprocessing, labels_of, samples_to_nchw
    from edgefair.data.registry import dataset_ref, load_dataset
    from edgefair.models.architectures import build_model
    from edgefair.models.checkpoint import RunMeta, save_run
    from edgefair.models.training import TrainConfig, fit

    out = tmp_path_factory.mktemp("export-run") / "tiny"
    ds = load_dataset(DATASET, seed=0)
    prep = Preprocessing()
    tr, va = ds.split("train"), ds.split("val")
    torch.manual_seed(0)
    model = build_model("cnn", num_classes=len(ds.class_names), in_channels=1, widths=WIDTHS)
    hist = fit(model, (samples_to_nchw(tr, prep), labels_of(tr)), (samples_to_nchw(va, prep), labels_of(va)),
               TrainConfig(epochs=2, lr=5e-3, seed=0))
    meta = RunMeta(arch="cnn", num_classes=len(ds.class_names), class_names=list(ds.class_names),
                   preprocessing=prep.to_dict(), arch_kwargs={"widths": WIDTHS},
                   dataset=dataset_ref(DATASET, ds, seed=0).to_dict(),
                   seed=0, epochs=2, metrics={"best_val_accuracy": hist["best_val_accuracy"]})
    save_run(out, model, meta)
    return out


@pytest.fixture(scope="session")
def matrix(tmp_path_factory, export_run):
    """(report, out dir, progress calls, seconds) of the one full export of the session."""
    from edgefair.export.matrix import export_matrix

    out = tmp_path_factory.mktemp("artifacts")
    calls: list[tuple[int, int, str]] = []
    t0 = time.perf_counter()
    rep = export_matrix(export_run, targets=["all"], sparsities=SPARSITIES, out=out, finetune_epochs=1, calib=200,
                        parity_n=512, progress=lambda d, t, m: calls.append((d, t, m)))
    return rep, out, calls, time.perf_counter() - t0
