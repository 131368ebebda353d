"""NaN-free JSON, atomic writes, one-line error text, and compressed sizes from one deflate pass."""

from __future__ import annotations

import gzip
import io
import json
import os
import zipfile

import numpy as np
import pytest

from edgefair.contracts.errors import ManifestError
from edgefair.contracts.jsonio import atomic_write_json, dumps, error_text, one_line
from edgefair.export.files import file_info


def test_json_has_no_nan_and_accepts_numpy():
    doc = json.loads(dumps({"a": float("nan"), "b": np.float32(1.5), "c": np.arange(2), "d": (1, float("inf"))}))
    assert doc == {"a": None, "b": 1.5, "c": [0, 1], "d": [1, None]}


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    atomic_write_json(tmp_path / "x" / "doc.json", {"k": 1})
    assert json.loads((tmp_path / "x" / "doc.json").read_text()) == {"k": 1}
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["doc.json"]


def test_error_text():
    assert one_line("a\n b\t c") == "a b c"
    assert error_text(RuntimeError("calibration exploded\nTraceback ...")) == "RuntimeError: calibration exploded"
    assert error_text(ManifestError("x/manifest.json: input.layout is missing")) == \
        "x/manifest.json: input.layout is missing"
    assert len(error_text(ValueError("y" * 1000))) == 300


@pytest.mark.parametrize("n", [0, 1, 5000, 300_000])
def test_file_info_sizes_equal_gzip_and_zip(tmp_path, n):
    rng = np.random.default_rng(n)
    data = rng.integers(0, 4, n, dtype=np.uint8).tobytes() + os.urandom(n // 10)
    path = tmp_path / "model.tflite"
    path.write_bytes(data)
    info = file_info(path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr(path.name, data)
    assert info.gzip_bytes == len(gzip.compress(data, compresslevel=9, mtime=0))
    assert info.zip_bytes == len(buf.getvalue())
    assert info.size_bytes == len(data)
