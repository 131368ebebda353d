"""Facts about an exported file: sha256 and compressed sizes (one deflate pass), tool versions."""

from __future__ import annotations

import hashlib
import zlib
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from edgefair.contracts.manifest import FileInfo

TOOL_DISTS = ("edgefair", "torch", "onnx", "onnxruntime", "onnx2tf", "tensorflow", "ai-edge-litert",
              "onnxconverter-common", "torch-pruning", "onnxsim", "numpy", "scikit-learn")
# Container overhead around one raw deflate stream, as gzip.compress(mtime=0) and
# zipfile (ZIP_DEFLATED, one member, no extra fields, no zip64) write it.
_GZIP_OVERHEAD = 10 + 8  # header + crc32/isize trailer
_ZIP_LOCAL, _ZIP_CENTRAL, _ZIP_END = 30, 46, 22


def file_info(path: Path) -> FileInfo:
    """sha256, size, gzip -9 size and the zip (deflate -9) size Stoychev & Gunes report.

    The file is compressed once: gzip and zip both wrap the same raw deflate stream
    (level 9, zlib's defaults), so each size is that stream plus its container's fixed
    overhead (tests check both against gzip.compress and zipfile).
    """
    data = Path(path).read_bytes()
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = len(comp.compress(data)) + len(comp.flush())
    name = len(Path(path).name.encode())
    return FileInfo(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data),
                    gzip_bytes=deflated + _GZIP_OVERHEAD,
                    zip_bytes=deflated + _ZIP_LOCAL + _ZIP_CENTRAL + 2 * name + _ZIP_END)


@lru_cache(maxsize=1)
def tool_versions() -> dict[str, str | None]:
    """Installed versions of the converters and runtimes (read once per process)."""
    out: dict[str, str | None] = {}
    for dist in TOOL_DISTS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out

