"""Turn samples into model input arrays, exactly as every runtime will see them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from edgefair.contracts.dataset import Preprocessing
from edgefair.data.sample import Sample

__all__ = ["Preprocessing", "image_to_uint8", "labels_of", "normalise_nhwc", "samples_to_nchw", "samples_to_uint8"]


def image_to_uint8(image: np.ndarray, *, size: int, channels: int) -> np.ndarray:
    """Resize one uint8 image (H,W) or (H,W,3) to (size,size,channels) uint8."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    pil = Image.fromarray(img.astype(np.uint8))
    pil = pil.convert("L" if channels == 1 else "RGB")
    if pil.size != (size, size):
        pil = pil.resize((size, size), Image.Resampling.BILINEAR)
    out = np.asarray(pil, dtype=np.uint8)
    if out.ndim == 2:
        out = out[:, :, None]
    return out


def samples_to_uint8(samples: Sequence[Sample], prep: Preprocessing) -> np.ndarray:
    """Stack samples as uint8 NHWC (N, size, size, channels)."""
    n = len(samples)
    out = np.empty((n, prep.size, prep.size, prep.channels), dtype=np.uint8)
    for i, s in enumerate(samples):
        out[i] = image_to_uint8(s.image, size=prep.size, channels=prep.channels)
    return out


def normalise_nhwc(batch_u8: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """uint8 NHWC → float32 NHWC normalised."""
    return ((batch_u8.astype(np.float32) / 255.0) - prep.mean) / prep.std


def samples_to_nchw(samples: Sequence[Sample], prep: Preprocessing) -> np.ndarray:
    """float32 NCHW model input (the PyTorch / ONNX layout)."""
    return np.ascontiguousarray(normalise_nhwc(samples_to_uint8(samples, prep), prep).transpose(0, 3, 1, 2))


def labels_of(samples: Sequence[Sample]) -> np.ndarray:
    return np.fromiter((s.label for s in samples), dtype=np.int64, count=len(samples))
