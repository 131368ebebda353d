"""AffectNet loader (manually annotated part).

``path`` is either one CSV or a folder holding ``training.csv`` and ``validation.csv``
(directly or under ``Manually_Annotated_file_lists/``). Columns::

    subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal

* One CSV: all rows, split 70/15/15 with ``split_by_subject``.
* A folder: ``training.csv`` → train with a seeded 10% carved out as val,
  ``validation.csv`` → test (AffectNet's official test set is not public).

Images are looked up, for each row, relative to the CSV's folder, then under
``Manually_Annotated_Images/`` in that folder, its parent folder, and
``../Manually_Annotated/Manually_Annotated_Images/`` (the layout of the official
archive). Each image is cropped to its face box (clamped to the image). Expressions
8 None, 9 Uncertain and 10 No-Face are dropped and counted (logged and recorded in
``FERDataset.source``). AffectNet has no subject ids (every sample is its own subject)
and no demographics: an optional CSV whose first column is ``subDirectory_filePath``
supplies attributes by path; paths it does not list get the group ``unknown``.

Note: every crop is held in memory, which is fine for subsets but not for all
~290k training images.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edgefair.data.imageio import (
    carve_val,
    crop_box,
    join_attributes,
    parse_int,
    read_attribute_table,
    read_csv_rows,
    read_image,
    require_splits,
    where,
)
from edgefair.data.sample import DatasetError, FERDataset, Sample
from edgefair.data.splits import split_by_subject

log = logging.getLogger(__name__)

CLASSES = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
DROPPED = {8: "none", 9: "uncertain", 10: "no-face"}
PATH_COL = "subDirectory_filePath"
REQUIRED = (PATH_COL, "face_x", "face_y", "face_width", "face_height", "expression")
IMAGES_DIR = "Manually_Annotated_Images"


def image_roots(csv_path: Path) -> list[Path]:
    """Folders an image path in ``csv_path`` may be relative to, in lookup order."""
    d = csv_path.parent
    return [d, d / IMAGES_DIR, d.parent / IMAGES_DIR, d.parent / "Manually_Annotated" / IMAGES_DIR]


def resolve_image(roots: list[Path], rel: str) -> Path:
    """First existing ``root / rel``; the first candidate when none exists."""
    for r in roots:
        if (r / rel).is_file():
            return r / rel
    return roots[0] / rel


def read_affectnet_csv(
    csv_path: Path, attrs: tuple[list[str], dict[str, dict[str, str]]] | None
) -> tuple[list[Sample], int]:
    """(samples, number of rows dropped for expression 8–10) of one AffectNet CSV."""
    _, rows = read_csv_rows(csv_path, required=REQUIRED)
    roots = image_roots(csv_path)
    samples: list[Sample] = []
    dropped = 0
    for line, row in rows:
        loc = where(csv_path, line)
        expression = parse_int(row["expression"], "expression", loc, lo=0, hi=10)
        if expression in DROPPED:
            dropped += 1
            continue
        rel = row[PATH_COL]
        if not rel:
            raise DatasetError(f"{loc}: empty {PATH_COL}")
        x, y = (parse_int(row[c], c, loc) for c in ("face_x", "face_y"))
        w, h = (parse_int(row[c], c, loc, lo=1) for c in ("face_width", "face_height"))
        image = read_image(resolve_image(roots, rel), context=loc)
        face = crop_box(image, x, y, w, h)
        if face is None:
            raise DatasetError(f"{loc}: face box ({x},{y},{w},{h}) lies outside the "
                               f"{image.shape[1]}x{image.shape[0]} image")
        attributes = join_attributes(attrs[0], attrs[1], rel) if attrs else {}
        samples.append(Sample(f"affectnet-{Path(rel).with_suffix('').as_posix()}", face, expression, "", attributes))
    return samples, dropped


def _split_files(folder: Path) -> tuple[Path, Path]:
    for d in (folder, folder / "Manually_Annotated_file_lists"):
        if (d / "training.csv").is_file() or (d / "validation.csv").is_file():
            break
    else:
        d = folder
    for name in ("training.csv", "validation.csv"):
        if not (d / name).is_file():
            raise DatasetError(f"{d / name}: not found (a folder needs training.csv and validation.csv)")
    return d / "training.csv", d / "validation.csv"


def load_affectnet(path: Path, *, attributes_csv: Path | None = None, seed: int = 0) -> FERDataset:
    """Load AffectNet from a CSV or a folder of training.csv/validation.csv."""
    path = Path(path)
    attrs = read_attribute_table(Path(attributes_csv)) if attributes_csv else None
    if path.is_dir():
        train_csv, test_csv = _split_files(path)
        train, dropped_train = read_affectnet_csv(train_csv, attrs)
        test, dropped_test = read_affectnet_csv(test_csv, attrs)
        train, val = carve_val(train, fraction=0.1, seed=seed)
        splits, dropped = {"train": train, "val": val, "test": test}, dropped_train + dropped_test
    else:
        samples, dropped = read_affectnet_csv(path, attrs)
        if not samples:
            raise DatasetError(f"{path}: no samples with expression 0..7")
        splits = split_by_subject(samples, seed=seed)
    source = str(path)
    if dropped:
        log.info("AffectNet: dropped %d rows with expression 8-10 (none/uncertain/no-face)", dropped)
        source += f" (dropped {dropped} rows with expression 8-10)"
    return FERDataset("affectnet", CLASSES, require_splits(splits, source), source=source)
