"""Generic folder format: images plus ``labels.csv`` (and optional ``classes.txt``).

``labels.csv`` has a header ``path,label[,subject][,split][,<attribute>...]``:

* ``path``: image file relative to the folder (any format PIL reads).
* ``label``: a class index or a class name. Class names come from ``classes.txt`` (one
  per line, in index order) if present; otherwise the FER2013 order when every label is
  an index or a FER2013 name, else the sorted set of the names used.
* ``subject``: person id; empty or absent means each image is its own subject.
* ``split``: train/val/test (also training/validation/valid/dev/testing); when the
  column is absent the folder is split 70/15/15 with ``split_by_subject``.
* every other column is an attribute (an empty cell is the group ``unknown``).

With no attribute columns, UTKFace-style file names ``age_gender_race_date.jpg`` supply
``age`` (binned), ``gender`` and ``race`` when most files follow that pattern (the rest
get ``unknown``). A sample's id is its file stem, or its path without extension when
stems repeat. :func:`write_folder` writes this format; :func:`load_folder` reads it back
with the same ids, labels, subjects, attributes, split membership, order and pixels.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from edgefair.data.imageio import (
    UNKNOWN,
    open_text,
    read_csv_rows,
    read_image,
    require_splits,
    safe_filename,
    where,
    write_png,
)
from edgefair.data.sample import FER2013_CLASSES, SPLITS, DatasetError, FERDataset, Sample
from edgefair.data.splits import split_by_subject

LABELS = "labels.csv"
CLASSES_FILE = "classes.txt"
RESERVED = ("path", "label", "subject", "split")
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}
_INT = re.compile(r"^[+-]?\d+$")
_UTK = re.compile(r"^(\d+)_(\d+)_(\d+)_\d+")
UTK_GENDER = ("male", "female")
UTK_RACE = ("white", "black", "asian", "indian", "others")
UTK_AGE_BINS = ((0, 2), (3, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69))


def read_classes(path: Path) -> tuple[str, ...]:
    """Lower-cased class names, one per non-empty line of ``classes.txt``."""
    with open_text(path) as fh:
        lines = [(i, ln.strip().lower()) for i, ln in enumerate(fh.read().splitlines(), start=1)]
    names: list[str] = []
    for i, name in lines:
        if not name:
            continue
        if name in names:
            raise DatasetError(f"{where(path, i)}: class '{name}' listed twice")
        names.append(name)
    if not names:
        raise DatasetError(f"{path}: no class names")
    return tuple(names)


def infer_classes(labels: list[tuple[int, str]], labels_csv: Path) -> tuple[str, ...]:
    """Class names when there is no classes.txt (see module docstring)."""
    names = {v.lower() for _, v in labels if not _INT.match(v)}
    if names <= set(FER2013_CLASSES):
        return FER2013_CLASSES
    line = next((ln for ln, v in labels if _INT.match(v)), None)
    if line is not None:
        raise DatasetError(
            f"{where(labels_csv, line)}: label is an index but other labels are names outside the FER2013 "
            f"classes; add a {CLASSES_FILE}"
        )
    return tuple(sorted(names))


def parse_label(value: str, classes: tuple[str, ...], loc: str) -> int:
    """A class index or name → index into ``classes``."""
    if _INT.match(value):
        idx = int(value)
        if not 0 <= idx < len(classes):
            raise DatasetError(f"{loc}: label {idx} is out of range 0..{len(classes) - 1}")
        return idx
    try:
        return classes.index(value.lower())
    except ValueError:
        raise DatasetError(f"{loc}: label '{value}' is not one of {', '.join(classes)}") from None


def utk_attributes(name: str) -> dict[str, str] | None:
    """age/gender/race from a UTKFace file name ``age_gender_race_date...``, or None."""
    m = _UTK.match(name)
    if not m:
        return None
    age, gender, race = (int(g) for g in m.groups())
    age_group = next((f"{lo}-{hi}" for lo, hi in UTK_AGE_BINS if lo <= age <= hi), "70+")
    return {
        "age": age_group,
        "gender": UTK_GENDER[gender] if gender < len(UTK_GENDER) else str(gender),
        "race": UTK_RACE[race] if race < len(UTK_RACE) else str(race),
    }


def _sample_ids(paths: list[str]) -> list[str]:
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [Path(p).with_suffix("").as_posix() for p in paths]


def _utk_attributes(table: list, attr_names: list[str]) -> dict[str, dict[str, str]]:
    """UTKFace attributes from file names, when the CSV has no attribute columns and most names parse."""
    if attr_names:
        return {}
    parsed = {r["path"]: utk_attributes(Path(r["path"]).name) for _, r in table}
    if sum(v is not None for v in parsed.values()) * 2 <= len(parsed):
        return {}
    return {p: v or {k: UNKNOWN for k in ("age", "gender", "race")} for p, v in parsed.items()}


def _classes(root: Path, table: list, labels_csv: Path) -> tuple[str, ...]:
    classes_path = root / CLASSES_FILE
    if classes_path.is_file():
        return tuple(read_classes(classes_path))
    return tuple(infer_classes([(ln, r["label"]) for ln, r in table], labels_csv))


def _sample(root: Path, labels_csv: Path, sample_id: str, line: int, row: dict, classes: tuple[str, ...],
            attr_names: list[str], utk: dict[str, dict[str, str]]) -> Sample:
    loc = where(labels_csv, line)
    if not row["path"]:
        raise DatasetError(f"{loc}: empty path")
    label = parse_label(row["label"], classes, loc)
    image = read_image(root / row["path"], context=loc)
    attrs = {a: row[a] or UNKNOWN for a in attr_names} or dict(utk.get(row["path"], {}))
    return Sample(sample_id, image, label, row.get("subject", ""), attrs)


def _split_of(labels_csv: Path, line: int, row: dict) -> str:
    split = SPLIT_ALIASES.get(row["split"].lower())
    if split is None:
        raise DatasetError(f"{where(labels_csv, line)}: split '{row['split']}' is not one of train, val, test")
    return split


def load_folder(root: Path, *, seed: int = 0) -> FERDataset:
    """Load a folder holding ``labels.csv`` (``root`` may also be the CSV itself)."""
    root = Path(root)
    labels_csv = root if root.is_file() else root / LABELS
    root = labels_csv.parent
    if not labels_csv.is_file():
        raise DatasetError(f"{labels_csv}: not found (the folder format needs {LABELS})")
    columns, rows = read_csv_rows(labels_csv, required=("path", "label"), optional=("subject", "split"))
    attr_names = [c for c in columns if c not in RESERVED]
    table = list(rows)
    if not table:
        raise DatasetError(f"{labels_csv}: no samples")
    classes = _classes(root, table, labels_csv)
    utk = _utk_attributes(table, attr_names)
    ids = _sample_ids([r["path"] for _, r in table])
    samples = [(_sample(root, labels_csv, sid, line, row, classes, attr_names, utk), line, row)
               for sid, (line, row) in zip(ids, table, strict=True)]
    if "split" not in columns:
        splits = split_by_subject([s for s, _, _ in samples], seed=seed)
    else:
        splits = {name: [] for name in SPLITS}
        for sample, line, row in samples:
            splits[_split_of(labels_csv, line, row)].append(sample)
    return FERDataset("folder", classes, require_splits(splits, str(labels_csv)), source=str(root))


def write_folder(dataset: FERDataset, out_dir: Path) -> Path:
    """Write ``dataset`` in the folder format (PNG under images/<split>/); return ``out_dir``."""
    out_dir = Path(out_dir)
    attr_names = dataset.attribute_names
    clash = [a for a in attr_names if a in RESERVED]
    if clash:
        raise DatasetError(f"{out_dir}: attribute name(s) {', '.join(clash)} clash with {LABELS} columns")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CLASSES_FILE).write_text("".join(f"{c}\n" for c in dataset.class_names), encoding="utf-8")
    used: set[str] = set()
    with (out_dir / LABELS).open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*RESERVED, *attr_names])
        for split in SPLITS:
            for s in dataset.splits.get(split, []):
                rel = _unique_name(f"images/{split}/{safe_filename(s.sample_id)}", used) + ".png"
                write_png(s.image, out_dir / rel)
                writer.writerow([rel, s.label, s.subject, split, *(s.attributes.get(a, "") for a in attr_names)])
    return out_dir


def _unique_name(base: str, used: set[str]) -> str:
    """``base``, or ``base-2``, ``base-3``... the first one not yet in ``used`` (file stem)."""
    name, k = base, 1
    while Path(name).name in used:
        k += 1
        name = f"{base}-{k}"
    used.add(Path(name).name)
    return name
