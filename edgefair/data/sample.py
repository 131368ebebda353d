"""The one sample type every loader returns, and the dataset container around it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from edgefair.contracts.errors import EdgefairError

SPLITS = ("train", "val", "test")

# FER2013 order; synthfer uses it too.
FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


class DatasetError(EdgefairError, ValueError):
    """Bad dataset input. The message names the file (and line) and the problem."""


@dataclass(frozen=True)
class Sample:
    """One face image with its ground truth.

    ``image`` is uint8, shape (H, W) for grey or (H, W, 3) for RGB, in the size the
    source stores it (preprocessing resizes later). ``attributes`` maps an attribute
    name (``gender``, ``skin_tone``, ``age``, ``race``...) to a group label string;
    an unknown value is kept as its own group, never dropped.
    """

    sample_id: str
    image: np.ndarray
    label: int
    subject: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class FERDataset:
    """Samples of one dataset divided into subject-disjoint splits where possible."""

    name: str
    class_names: tuple[str, ...]
    splits: dict[str, list[Sample]]
    source: str = ""

    def split(self, name: str) -> list[Sample]:
        """Samples of one split; an empty or missing split is a DatasetError."""
        samples = self.splits.get(name, [])
        if not samples:
            raise DatasetError(f"{self.source or self.name}: split '{name}' is empty")
        return samples

    @property
    def attribute_names(self) -> list[str]:
        names: dict[str, None] = {}
        for samples in self.splits.values():
            for s in samples:
                for k in s.attributes:
                    names.setdefault(k, None)
        return list(names)

    def fingerprint(self) -> str:
        """sha256 over ids, labels, subjects, attributes and pixels of every split."""
        h = hashlib.sha256()
        h.update(self.name.encode())
        h.update("|".join(self.class_names).encode())
        for split in SPLITS:
            for s in self.splits.get(split, []):
                h.update(f"{split}:{s.sample_id}:{s.label}:{s.subject}:".encode())
                h.update(repr(sorted(s.attributes.items())).encode())
                h.update(np.ascontiguousarray(s.image).tobytes())
        return h.hexdigest()

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.splits.items()}
