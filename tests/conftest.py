"""Session fixtures shared across test folders: one tiny trained run and its artefacts.

Everything is generated here (synthfer), nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TINY_DATASET = "synthfer:n=720:seed=1"
TINY_TARGETS = ["torch-fp32", "onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8"]
TINY_SPARSITIES = [0.0, 0.5]


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    """Generated datasets are cached per test session unless the caller chose a cache dir."""
    if not os.environ.get("EDGEFAIR_CACHE_DIR"):
        os.environ["EDGEFAIR_CACHE_DIR"] = str(tmp_path_factory.mktemp("edgefair-cache"))
    yield


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A compact CNN trained for 3 epochs on a small synthfer. It stays near chance (13.9 % measured, 7
    classes): the tests that use it need real artefacts and predictions, not a good model."""
    from edgefair.models.run import TrainRequest, train_run

    out = tmp_path_factory.mktemp("tiny") / "run"
    train_run(TrainRequest(dataset=TINY_DATASET, arch="cnn", out=out, epochs=3, seed=0))
    return out


@pytest.fixture(scope="session")
def tiny_artifacts(tiny_run, tmp_path_factory) -> Path:
    """Five targets × two sparsities exported from ``tiny_run`` (no fine-tune, small calibration)."""
    from edgefair.export.matrix import export_matrix

    out = tmp_path_factory.mktemp("tiny-artifacts")
    report = export_matrix(tiny_run, targets=TINY_TARGETS, sparsities=TINY_SPARSITIES, out=out,
                           finetune_epochs=0, calib=64, parity_n=64)
    assert report.ok, [r.reason for r in report.failed]
    return out
