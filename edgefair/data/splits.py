"""Subject-disjoint splitting shared by every loader that has no official split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgefair.data.sample import Sample


def split_by_subject(
    samples: Sequence[Sample],
    *,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> dict[str, list[Sample]]:
    """Assign whole subjects to train/val/test so no person appears in two splits.

    Subjects are shuffled with ``seed`` and dealt to splits until each split's share of
    *samples* reaches its fraction. A sample whose subject is empty is its own subject.
    """
    if not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    by_subject: dict[str, list[Sample]] = {}
    for s in samples:
        by_subject.setdefault(s.subject or f"__{s.sample_id}", []).append(s)
    subjects = sorted(by_subject)
    rng = np.random.default_rng(seed)
    rng.shuffle(subjects)
    total = len(samples)
    targets = np.cumsum(fractions) * total
    out: dict[str, list[Sample]] = {"train": [], "val": [], "test": []}
    names = ("train", "val", "test")
    done = 0
    k = 0
    for subj in subjects:
        while k < 2 and done >= targets[k]:
            k += 1
        out[names[k]].extend(by_subject[subj])
        done += len(by_subject[subj])
    return out
