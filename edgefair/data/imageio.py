"""Shared helpers for the real-dataset loaders: images, CSV rows, attributes and splits.

Every failure here is a :class:`DatasetError` whose message starts with ``FILE:`` or
``FILE:LINE:`` so a user can go straight to the offending input.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgefair.data.sample import SPLITS, DatasetError, Sample

UNKNOWN = "unknown"  # group label of a sample whose attribute value is missing


def where(path: Path | str, line: int | None = None) -> str:
    """``FILE`` or ``FILE:LINE``, the prefix of every loader error message."""
    return f"{path}:{line}" if line is not None else f"{path}"


# --------------------------------------------------------------------------- images


def read_image(path: Path, *, context: str | None = None) -> np.ndarray:
    """Read an image as uint8 (H, W) for grey sources or (H, W, 3) otherwise.

    ``context`` (e.g. ``"labels.csv:4"``) is prepended to the message when the file is
    missing or unreadable, so the error names both the image and the row naming it.
    """
    prefix = f"{context}: " if context else ""
    if not path.is_file():
        raise DatasetError(f"{prefix}{path}: image not found")
    try:
        with Image.open(path) as img:
            img.load()
            return _to_uint8(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DatasetError(f"{prefix}{path}: unreadable image ({exc})") from exc


def _to_uint8(img: Image.Image) -> np.ndarray:
    """Convert any PIL mode to uint8 grey (1, L, LA, I;16, I, F) or RGB (everything else)."""
    if img.mode in ("1", "L", "LA"):
        return np.asarray(img.convert("L"), dtype=np.uint8)
    if img.mode.startswith("I") or img.mode == "F":
        arr = np.asarray(img).astype(np.float64)
        if arr.size and arr.max() > 255:  # 16-bit grey: keep the top 8 bits
            arr = arr / 257.0
        return np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def write_png(image: np.ndarray, path: Path) -> None:
    """Write a uint8 (H, W), (H, W, 1) or (H, W, 3) array losslessly as PNG."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise DatasetError(f"{path}: cannot write image of dtype {arr.dtype} and shape {arr.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG")


def crop_box(image: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray | None:
    """Crop ``image[y:y+h, x:x+w]`` clamped to the image; None when nothing is left."""
    H, W = image.shape[:2]
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(W, x + w), min(H, y + h)
    if x1 <= x0 or y1 <= y0:
        return None
    return np.ascontiguousarray(image[y0:y1, x0:x1])


def centre_crop(image: np.ndarray) -> np.ndarray:
    """The largest centred square of ``image``."""
    H, W = image.shape[:2]
    side = min(H, W)
    y0, x0 = (H - side) // 2, (W - side) // 2
    return np.ascontiguousarray(image[y0 : y0 + side, x0 : x0 + side])


# --------------------------------------------------------------------------- CSV


def open_text(path: Path):
    """Open a text file for the csv module (BOM-tolerant, universal newlines)."""
    try:
        return path.open("r", encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot open ({exc.strerror or exc})") from exc


def read_csv_rows(
    path: Path, required: Sequence[str] = (), optional: Sequence[str] = ()
) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """Read a CSV with a header: return (columns, iterator of (line number, row)).

    Header names are stripped; a ``required`` or ``optional`` column matches
    case-insensitively and is renamed to the spelling given there. A row with too few or too many fields, or a
    file the csv module cannot parse, is a DatasetError naming ``path:line``.
    """
    fh = open_text(path)
    reader = csv.reader(fh)
    try:
        header = next(reader, None)
    except (csv.Error, UnicodeDecodeError) as exc:
        fh.close()
        raise DatasetError(f"{where(path, 1)}: malformed CSV header ({exc})") from exc
    if not header or not any(h.strip() for h in header):
        fh.close()
        raise DatasetError(f"{where(path, 1)}: empty file, expected a header row")
    try:
        columns = _canonical_header(path, [h.strip() for h in header], required, optional)
    except DatasetError:
        fh.close()
        raise
    return columns, _rows(path, fh, reader, columns)


def _canonical_header(
    path: Path, header: list[str], required: Sequence[str], optional: Sequence[str]
) -> list[str]:
    by_lower = {r.lower(): r for r in (*required, *optional)}
    columns = [by_lower.get(h.lower(), h) for h in header]
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise DatasetError(f"{where(path, 1)}: duplicate column(s) {', '.join(dupes)}")
    missing = [r for r in required if r not in columns]
    if missing:
        raise DatasetError(
            f"{where(path, 1)}: missing column(s) {', '.join(missing)} (header is {','.join(header)})"
        )
    return columns


def _rows(path: Path, fh, reader, columns: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    with fh:
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                raise DatasetError(f"{where(path, reader.line_num)}: malformed CSV row ({exc})") from exc
            if not fields or not any(f.strip() for f in fields):
                continue  # blank line
            if len(fields) != len(columns):
                raise DatasetError(
                    f"{where(path, reader.line_num)}: {len(fields)} fields, expected {len(columns)} "
                    f"({','.join(columns)})"
                )
            yield reader.line_num, {c: f.strip() for c, f in zip(columns, fields, strict=True)}


def parse_int(value: str, what: str, loc: str, *, lo: int | None = None, hi: int | None = None) -> int:
    """``int(value)`` (``"3.0"`` allowed) checked against [lo, hi]; DatasetError at ``loc`` otherwise."""
    try:
        f = float(value)
        if not f.is_integer():
            raise ValueError
        n = int(f)
    except (ValueError, OverflowError):
        raise DatasetError(f"{loc}: {what} '{value}' is not an integer") from None
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        bounds = f"{lo}..{hi}" if lo is not None and hi is not None else (f">= {lo}" if hi is None else f"<= {hi}")
        raise DatasetError(f"{loc}: {what} {n} is out of range {bounds}")
    return n


def read_attribute_table(path: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Read ``key,attr1,attr2...`` (header required): (attribute names, key -> attributes).

    The first column is the join key whatever its name. An empty cell is the group
    ``unknown``; a key listed twice with different values is an error.
    """
    columns, rows = read_csv_rows(path)
    if len(columns) < 2:
        raise DatasetError(f"{where(path, 1)}: expected a key column and at least one attribute column")
    key_col, names = columns[0], columns[1:]
    table: dict[str, dict[str, str]] = {}
    for line, row in rows:
        key = row[key_col]
        if not key:
            raise DatasetError(f"{where(path, line)}: empty {key_col}")
        attrs = {n: row[n] or UNKNOWN for n in names}
        if key in table and table[key] != attrs:
            raise DatasetError(f"{where(path, line)}: {key_col} '{key}' listed twice with different values")
        table[key] = attrs
    return names, table


def join_attributes(names: Sequence[str], table: dict[str, dict[str, str]], key: str) -> dict[str, str]:
    """Attributes of ``key`` from an attribute table; ``unknown`` for every name when absent."""
    return dict(table.get(key) or {n: UNKNOWN for n in names})


# --------------------------------------------------------------------------- splits


def carve_val(samples: Sequence[Sample], *, fraction: float = 0.1, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Split off a seeded ``fraction`` of ``samples`` (whole subjects) as validation.

    Used where a dataset ships train/test but no validation split. A sample with an
    empty subject is its own subject (RAF-DB and AffectNet have no subject ids). At
    least one subject goes to validation when there are two or more.
    """
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.subject or f"__{s.sample_id}", []).append(s)
    keys = sorted(groups)
    if len(keys) < 2:
        return list(samples), []
    rng = np.random.default_rng(seed)
    rng.shuffle(keys)
    want = max(1, int(round(fraction * len(samples))))
    val_keys: set[str] = set()
    taken = 0
    for k in keys[:-1]:  # keep at least one subject for training
        if taken >= want:
            break
        val_keys.add(k)
        taken += len(groups[k])
    train = [s for s in samples if (s.subject or f"__{s.sample_id}") not in val_keys]
    val = [s for s in samples if (s.subject or f"__{s.sample_id}") in val_keys]
    return train, val


def require_splits(splits: dict[str, list[Sample]], source: str) -> dict[str, list[Sample]]:
    """Check train/val/test are all present and non-empty; return ``splits`` in SPLITS order."""
    empty = [name for name in SPLITS if not splits.get(name)]
    if empty:
        counts = ", ".join(f"{k}={len(splits.get(k, []))}" for k in SPLITS)
        raise DatasetError(f"{source}: split(s) {', '.join(empty)} empty ({counts})")
    return {name: list(splits[name]) for name in SPLITS}


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(name: str) -> str:
    """A file-system-safe version of a sample id (non-empty, no separators)."""
    out = _SAFE.sub("_", name).strip("._")
    return out or "sample"
