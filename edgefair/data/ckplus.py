"""CK+ (extended Cohn-Kanade) loader.

Layout under ``root``::

    cohn-kanade-images/S005/001/S005_001_00000011.png
    Emotion/S005/001/S005_001_00000011_emotion.txt      "   3.0000000e+00"

Only labelled sequences are used: the last 3 frames of a sequence get its emotion and
the first frame is ``neutral``. Faces are cropped with OpenCV's bundled frontal-face
Haar cascade (largest detection); when none is found the centre square is kept, and
the number of such frames is logged and recorded in ``FERDataset.source``. CK+ has no
official demographics: an optional ``subject,<attr>...`` CSV is joined by subject id
(subjects it does not list get the group ``unknown``). Splits are subject-disjoint
(``split_by_subject``, 70/15/15).
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgefair.data.imageio import (
    centre_crop,
    crop_box,
    join_attributes,
    parse_int,
    read_attribute_table,
    read_image,
    require_splits,
    where,
)
from edgefair.data.sample import DatasetError, FERDataset, Sample
from edgefair.data.splits import split_by_subject

log = logging.getLogger(__name__)

CLASSES = ("neutral", "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
NEUTRAL = 0
N_PEAK_FRAMES = 3
CASCADE = "haarcascade_frontalface_default.xml"


@lru_cache(maxsize=1)
def _cascade():
    try:
        import cv2
    except ImportError as exc:  # opencv-python arrives with onnx2tf
        raise RuntimeError("CK+ face cropping needs opencv-python (import cv2 failed)") from exc
    path = cv2.data.haarcascades + CASCADE  # type: ignore[attr-defined]
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"{path}: OpenCV Haar cascade could not be loaded")
    return cascade


def detect_face(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """Largest frontal face (x, y, w, h) found by the Haar cascade, or None."""
    grey = image if image.ndim == 2 else np.asarray(image[..., :3].mean(axis=2), dtype=np.uint8)
    min_side = max(24, min(grey.shape[:2]) // 6)
    faces = _cascade().detectMultiScale(
        np.ascontiguousarray(grey), scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side)
    )
    if len(faces) == 0:
        return None
    x, y, w, h = max((tuple(int(v) for v in f) for f in faces), key=lambda b: b[2] * b[3])
    return x, y, w, h


def crop_face(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """(face crop, True) or (centre square, False) when no face is detected."""
    box = detect_face(image)
    crop = crop_box(image, *box) if box is not None else None
    if crop is None:
        return centre_crop(image), False
    return crop, True


def read_emotion(path: Path) -> int:
    """The single float label of an ``*_emotion.txt`` file as a class index 0..7."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable emotion file ({exc})") from exc
    lines = [(i, ln.split()) for i, ln in enumerate(text.splitlines(), start=1) if ln.strip()]
    if len(lines) != 1 or len(lines[0][1]) != 1:
        raise DatasetError(f"{path}: expected one number (e.g. 3.0000000e+00), got {text.strip()[:40]!r}")
    line, (value,) = lines[0]
    return parse_int(value, "emotion", where(path, line), lo=0, hi=len(CLASSES) - 1)


def sequence_frames(seq_dir: Path, label_file: Path) -> list[Path]:
    """Sorted PNG frames of one sequence; DatasetError naming the label file if none."""
    if not seq_dir.is_dir():
        raise DatasetError(f"{label_file}: image sequence folder {seq_dir} not found")
    frames = sorted(p for p in seq_dir.iterdir() if p.suffix.lower() == ".png" and not _junk(p))
    if not frames:
        raise DatasetError(f"{label_file}: no .png frames in {seq_dir}")
    return frames


def _junk(path: Path) -> bool:
    """macOS archive debris (``._*`` files, ``__MACOSX`` folders) next to the real files."""
    return any(part.startswith((".", "__MACOSX")) for part in path.parts[-3:])


def _emotion_dir(root: Path) -> Path:
    for cand in (root / "Emotion", root / "Emotion_labels" / "Emotion"):
        if cand.is_dir():
            return cand
    raise DatasetError(f"{root}: no Emotion/ folder (expected {root / 'Emotion'})")


def load_ckplus(root: Path, *, attributes_csv: Path | None = None, seed: int = 0) -> FERDataset:
    """Load labelled CK+ sequences from ``root`` into subject-disjoint splits."""
    root = Path(root)
    images = root / "cohn-kanade-images"
    if not images.is_dir():
        raise DatasetError(f"{root}: no cohn-kanade-images/ folder")
    label_files = sorted(p for p in _emotion_dir(root).glob("*/*/*_emotion.txt") if not _junk(p))
    if not label_files:
        raise DatasetError(f"{root}: no *_emotion.txt label files under Emotion/")
    names, table = read_attribute_table(Path(attributes_csv)) if attributes_csv else ([], {})
    samples: list[Sample] = []
    misses = 0
    for label_file in label_files:
        subject, sequence = label_file.parent.parent.name, label_file.parent.name
        emotion = read_emotion(label_file)
        frames = sequence_frames(images / subject / sequence, label_file)
        peak = frames[-N_PEAK_FRAMES:]
        chosen = ([(frames[0], NEUTRAL)] if frames[0] not in peak else []) + [(f, emotion) for f in peak]
        attrs = join_attributes(names, table, subject) if attributes_csv else {}
        for frame, label in chosen:
            face, found = crop_face(read_image(frame, context=str(label_file)))
            misses += not found
            samples.append(Sample(f"ckplus-{frame.stem}", face, label, subject, dict(attrs)))
    source = str(root)
    if misses:
        log.warning("CK+: no face detected in %d of %d frames; kept the centre crop", misses, len(samples))
        source += f" (no face detected in {misses}/{len(samples)} frames: centre crop)"
    splits = require_splits(split_by_subject(samples, seed=seed), source)
    return FERDataset("ckplus", CLASSES, splits, source=source)
