"""FER2013 loader: one CSV ``emotion,pixels,Usage`` of 48×48 grey faces.

``Usage`` Training/PublicTest/PrivateTest becomes train/val/test. A CSV without a
``Usage`` column (Kaggle's ``train.csv``) is split 70/15/15 with ``split_by_subject``.
FER2013 has no subject ids and no demographics: ``subject`` is "" (each sample its own
subject) and ``attributes`` is empty.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from edgefair.data.imageio import parse_int, read_csv_rows, require_splits, where
from edgefair.data.sample import FER2013_CLASSES, DatasetError, FERDataset, Sample
from edgefair.data.splits import split_by_subject

SIDE = 48
N_PIXELS = SIDE * SIDE
USAGE_TO_SPLIT = {"training": "train", "publictest": "val", "privatetest": "test"}


def parse_pixels(text: str, loc: str) -> np.ndarray:
    """Space-separated grey values → uint8 (48, 48); DatasetError at ``loc`` if malformed."""
    with warnings.catch_warnings():  # fast C parser; it only warns on trailing junk
        warnings.simplefilter("error")
        try:
            arr = np.fromstring(text, dtype=np.int64, sep=" ")
        except (DeprecationWarning, ValueError):
            arr = None
    if arr is not None and arr.size == N_PIXELS and arr.min() >= 0 and arr.max() <= 255:
        return arr.astype(np.uint8).reshape(SIDE, SIDE)
    values = text.split()  # slow path: find what exactly is wrong
    if len(values) != N_PIXELS:
        raise DatasetError(f"{loc}: pixels has {len(values)} values, expected {N_PIXELS}")
    ints: list[int] = []
    for v in values:
        try:
            ints.append(int(v))
        except ValueError:
            raise DatasetError(f"{loc}: pixels has a non-integer value '{v}'") from None
    if min(ints) < 0 or max(ints) > 255:
        raise DatasetError(f"{loc}: pixel values must be 0..255, got {min(ints)}..{max(ints)}")
    arr = np.array(ints, dtype=np.int64)
    return arr.astype(np.uint8).reshape(SIDE, SIDE)


def load_fer2013(path: Path, *, seed: int = 0) -> FERDataset:
    """Load ``fer2013.csv`` (or a directory holding it) into train/val/test."""
    path = Path(path)
    if path.is_dir():
        path = path / "fer2013.csv"
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    columns, rows = read_csv_rows(path, required=("emotion", "pixels"))
    usage_col = next((c for c in columns if c.lower() == "usage"), None)
    has_usage = usage_col is not None
    samples: dict[str, list[Sample]] = {"train": [], "val": [], "test": []}
    unsplit: list[Sample] = []
    for line, row in rows:
        loc = where(path, line)
        label = parse_int(row["emotion"], "emotion", loc, lo=0, hi=len(FER2013_CLASSES) - 1)
        sample = Sample(f"fer2013-{line - 1}", parse_pixels(row["pixels"], loc), label, "", {})
        if usage_col is None:
            unsplit.append(sample)
            continue
        split = USAGE_TO_SPLIT.get(row[usage_col].lower())
        if split is None:
            raise DatasetError(
                f"{loc}: Usage '{row[usage_col]}' is not one of Training, PublicTest, PrivateTest"
            )
        samples[split].append(sample)
    if not has_usage:
        samples = split_by_subject(unsplit, seed=seed)
    if not any(samples.values()):
        raise DatasetError(f"{path}: no samples")
    return FERDataset("fer2013", FER2013_CLASSES, require_splits(samples, str(path)), source=str(path))
