"""Writers of tiny datasets in the exact on-disk formats the real-dataset loaders read."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image


def image(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def save(arr: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


# FER2013: (emotion, usage) per row; pixels random 48x48.
FER_ROWS = [(0, "Training"), (3, "Training"), (6, "Training"), (1, "PublicTest"),
            (4, "PublicTest"), (2, "PrivateTest"), (5, "PrivateTest")]


def write_fer2013(root: Path, rows=FER_ROWS, seed: int = 0) -> tuple[Path, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    imgs = [image(rng, (48, 48)) for _ in rows]
    body = [[e, " ".join(map(str, im.ravel())), u] for (e, u), im in zip(rows, imgs, strict=True)]
    return write_csv(root / "fer2013.csv", ["emotion", "pixels", "Usage"], body), imgs


# RAF-DB: name -> (label 1..7, (gender, race, age) codes or None for no annotation file)
RAF_ENTRIES = {
    **{f"train_{i:05d}.jpg": (1 + i % 7, (i % 2, i % 3, i % 5)) for i in range(1, 11)},
    "train_00011.jpg": (7, (7, 0, 2)),  # unknown gender code 7
    "train_00012.jpg": (2, None),  # no annotation file
    "test_0001.jpg": (4, (1, 2, 3)),
    "test_0002.jpg": (5, (0, 1, 4)),
    "test_0003.jpg": (1, (2, 0, 0)),
}


def write_rafdb(root: Path, entries=RAF_ENTRIES, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = []
    for name, (label, codes) in entries.items():
        stem = Path(name).stem
        lines.append(f"{name} {label}")
        save(image(rng, (24, 24, 3)), root / "Image" / "aligned" / f"{stem}_aligned.jpg")
        if codes is not None:
            marks = "".join(f"{30.5 + k}\t{40.25 + k}\n" for k in range(5))
            attri = root / "Annotation" / "manual" / f"{stem}_manu_attri.txt"
            attri.parent.mkdir(parents=True, exist_ok=True)
            attri.write_text(marks + "".join(f"{c}\n" for c in codes))
    label_file = root / "EmoLabel" / "list_patition_label.txt"
    label_file.parent.mkdir(parents=True, exist_ok=True)
    label_file.write_text("\n".join(lines) + "\n")
    return root


def write_ckplus(root: Path, n_subjects: int = 10, n_frames: int = 5, seed: int = 0) -> Path:
    """One labelled sequence per subject (emotion 1 + s % 7), plus one unlabelled sequence."""
    rng = np.random.default_rng(seed)
    for s in range(n_subjects):
        subj = f"S{s + 5:03d}"
        for seq in ("001", "002"):
            for f in range(1, n_frames + 1):
                save(image(rng, (40, 50)), root / "cohn-kanade-images" / subj / seq / f"{subj}_{seq}_{f:08d}.png")
        emo = root / "Emotion" / subj / "001" / f"{subj}_001_{n_frames:08d}_emotion.txt"
        emo.parent.mkdir(parents=True, exist_ok=True)
        emo.write_text(f"   {float(1 + s % 7):.7e}\n")
    return root


def write_affectnet(root: Path, seed: int = 0) -> Path:
    """training.csv (10 kept + 2 dropped rows) and validation.csv (3 rows) with PNG images."""
    rng = np.random.default_rng(seed)
    header = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
              "facial_landmarks", "expression", "valence", "arousal"]
    images = root / "Manually_Annotated_Images"

    def rows(prefix: str, expressions: list[int]) -> list[list]:
        out = []
        for i, e in enumerate(expressions):
            rel = f"{i % 3 + 1}/{prefix}{i:03d}.png"
            save(image(rng, (30, 40, 3)), images / rel)
            out.append([rel, 5, 4, 20, 16, "1.0;2.0;3.0;4.0", e, 0.5, -0.25])
        return out

    write_csv(root / "training.csv", header, rows("tr", [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 1, 2]))
    write_csv(root / "validation.csv", header, rows("va", [7, 0, 3]))
    return root
