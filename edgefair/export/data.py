"""The data one export needs: the training split (fine-tune), a calibration sample (int8) and
a held-out parity sample of the validation split, all from the run's own dataset reference."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edgefair.contracts.dataset import DatasetRef
from edgefair.export.errors import ExportError
from edgefair.export.logs import ExportLog


@dataclass
class ExportData:
    train: tuple[np.ndarray, np.ndarray]  # NCHW float32, labels
    val_u8: np.ndarray  # uint8 NHWC (agent input)
    val_nchw: np.ndarray
    val_y: np.ndarray
    calib_u8: np.ndarray
    calib_nchw: np.ndarray
    ref: DatasetRef
    notes: list[str] = field(default_factory=list)


def _sample(n_have: int, n_want: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).permutation(n_have)[:n_want])


def load_export_data(meta: Any, *, calib: int, parity_n: int, log: ExportLog) -> ExportData:
    """Load the run's dataset (checked against its fingerprint) and draw the three samples."""
    from edgefair.data.preprocess import labels_of, normalise_nhwc, samples_to_uint8
    from edgefair.data.registry import canonical_spec, load_ref
    from edgefair.data.sample import DatasetError

    ref = meta.dataset_ref()
    if ref is None:
        raise ExportError("the run's model.json names no dataset spec: cannot fine-tune, calibrate or check parity")
    try:
        ref = replace(ref, spec=canonical_spec(ref.spec))
        ds = load_ref(ref)
    except DatasetError as e:
        raise ExportError(str(e)) from None
    prep = meta.prep
    train, val = ds.split("train"), ds.split("val")
    tr_u8 = samples_to_uint8(train, prep)
    tr_x = np.ascontiguousarray(normalise_nhwc(tr_u8, prep).transpose(0, 3, 1, 2))
    val_s = [val[i] for i in _sample(len(val), parity_n, 0)]
    val_u8 = samples_to_uint8(val_s, prep)
    cidx = _sample(len(train), calib, 1)
    notes = []
    if len(val) < parity_n:
        notes.append(f"parity sample: the validation split has {len(val)} images (< {parity_n} asked)")
    if len(train) < calib:
        notes.append(f"calibration: the training split has {len(train)} images (< {calib} asked)")
    log.write(f"data: {ref.spec} (seed {ref.seed}) train={len(train)} parity={len(val_s)} calib={len(cidx)}")
    return ExportData(train=(tr_x, labels_of(train)), val_u8=val_u8,
                      val_nchw=np.ascontiguousarray(normalise_nhwc(val_u8, prep).transpose(0, 3, 1, 2)),
                      val_y=labels_of(val_s), calib_u8=tr_u8[cidx], calib_nchw=np.ascontiguousarray(tr_x[cidx]),
                      ref=ref, notes=notes)
