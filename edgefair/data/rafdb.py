"""RAF-DB (basic) loader.

Layout under ``root``::

    EmoLabel/list_patition_label.txt          train_00001.jpg 5   (labels 1..7)
    Image/aligned/train_00001_aligned.jpg
    Annotation/manual/train_00001_manu_attri.txt

The annotation file holds 5 landmark lines ``x<TAB>y`` then gender, race and age codes,
one integer per line. ``train_*`` images form train, from which a seeded 10% is carved
as val (RAF-DB has no subject ids, so every sample is its own subject, ``subject=""``);
``test_*`` images form test.

A sample whose annotation file is missing is kept with the group ``unknown`` for
gender, race and age; a code outside the documented ones is kept as its own group
(e.g. gender ``"7"``).
"""

from __future__ import annotations

from pathlib import Path

from edgefair.data.imageio import UNKNOWN, carve_val, parse_int, read_image, require_splits, where
from edgefair.data.sample import DatasetError, FERDataset, Sample

CLASSES = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")
LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"
ATTRIBUTE_GROUPS: dict[str, tuple[str, ...]] = {
    "gender": ("male", "female", "unsure"),
    "race": ("caucasian", "african-american", "asian"),
    "age": ("0-3", "4-19", "20-39", "40-69", "70+"),
}
N_LANDMARKS = 5


def image_path(root: Path, name: str) -> Path:
    """``Image/aligned/<stem>_aligned.jpg``, or ``Image/aligned/<name>`` if only that exists."""
    aligned = root / "Image" / "aligned"
    preferred = aligned / f"{Path(name).stem}_aligned.jpg"
    if not preferred.exists() and (aligned / name).exists():
        return aligned / name
    return preferred


def read_annotation(path: Path) -> dict[str, str]:
    """Gender, race and age groups from a ``*_manu_attri.txt`` file (``unknown`` if absent)."""
    if not path.is_file():
        return {name: UNKNOWN for name in ATTRIBUTE_GROUPS}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable annotation ({exc})") from exc
    lines = [(i, ln.strip()) for i, ln in enumerate(text.splitlines(), start=1) if ln.strip()]
    need = N_LANDMARKS + len(ATTRIBUTE_GROUPS)
    if len(lines) < need:
        raise DatasetError(f"{path}: {len(lines)} non-empty lines, expected {need} (5 landmarks, gender, race, age)")
    for i, ln in lines[:N_LANDMARKS]:
        parts = ln.split()
        try:
            if len(parts) != 2:
                raise ValueError
            [float(p) for p in parts]
        except ValueError:
            raise DatasetError(f"{where(path, i)}: landmark line '{ln}' is not 'x<TAB>y'") from None
    attrs: dict[str, str] = {}
    for (i, ln), (name, groups) in zip(lines[N_LANDMARKS:need], ATTRIBUTE_GROUPS.items(), strict=True):
        code = parse_int(ln, name, where(path, i))
        attrs[name] = groups[code] if 0 <= code < len(groups) else str(code)
    return attrs


def read_label_list(path: Path) -> list[tuple[int, str, int]]:
    """(line, image name, 0-based label) for every entry of ``list_patition_label.txt``."""
    if not path.is_file():
        raise DatasetError(f"{path}: label list not found (expected <root>/{LABEL_FILE})")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable label list ({exc})") from exc
    entries = []
    for i, ln in enumerate(text.splitlines(), start=1):
        parts = ln.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DatasetError(f"{where(path, i)}: expected '<image> <label>', got '{ln.strip()}'")
        label = parse_int(parts[1], "label", where(path, i), lo=1, hi=len(CLASSES))
        if not parts[0].startswith(("train_", "test_")):
            raise DatasetError(f"{where(path, i)}: image name '{parts[0]}' starts with neither train_ nor test_")
        entries.append((i, parts[0], label - 1))
    return entries


def load_rafdb(root: Path, *, seed: int = 0) -> FERDataset:
    """Load RAF-DB basic from its extracted ``root`` folder."""
    root = Path(root)
    label_path = root / LABEL_FILE
    manual = root / "Annotation" / "manual"
    train: list[Sample] = []
    test: list[Sample] = []
    for line, name, label in read_label_list(label_path):
        stem = Path(name).stem
        image = read_image(image_path(root, name), context=where(label_path, line))
        attrs = read_annotation(manual / f"{stem}_manu_attri.txt")
        sample = Sample(f"rafdb-{stem}", image, label, "", attrs)
        (train if name.startswith("train_") else test).append(sample)
    if not train and not test:
        raise DatasetError(f"{label_path}: no samples")
    train, val = carve_val(train, fraction=0.1, seed=seed)
    splits = require_splits({"train": train, "val": val, "test": test}, str(label_path))
    return FERDataset("rafdb", CLASSES, splits, source=str(root))
