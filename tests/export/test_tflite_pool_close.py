"""The onnx2tf worker pool closes every file it opened (no ResourceWarning at the end of an export)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CODE = """
import gc, sys, warnings
from pathlib import Path
warnings.simplefilter("error", ResourceWarning)
from edgefair.export.tflite_convert import TFLitePool
pool = TFLitePool(Path(sys.argv[1]) / "export.log", threads=1)
pool.close()
del pool
gc.collect()
print("closed")
"""


@pytest.mark.slow
def test_pool_close_leaves_no_unclosed_file(tmp_path):
    # -X dev shows ResourceWarnings raised in destructors on stderr ("Exception ignored ...")
    proc = subprocess.run([sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-c", CODE, str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "closed" in proc.stdout, proc.stderr[-2000:]
    assert "ResourceWarning" not in proc.stderr, proc.stderr[-2000:]
