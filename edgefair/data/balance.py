"""Sub-sample a split to given group proportions (Fan et al.'s data-balance study).

The training set is drawn, without replacement and at a fixed size, so that each group of
one attribute holds its share of it; the test set is left alone. Counts are apportioned by
largest remainder, so every group is within one sample of ``proportion × n``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edgefair.data.sample import DatasetError, Sample


def apportion(proportions: Mapping[str, float], n: int) -> dict[str, int]:
    """Integer counts summing to ``n``, each within one of ``p × n`` (largest remainder)."""
    total = float(sum(proportions.values()))
    if total <= 0 or any(p < 0 for p in proportions.values()):
        raise DatasetError(f"group proportions must be >= 0 and not all 0, got {dict(proportions)}")
    exact = {g: n * p / total for g, p in proportions.items()}
    counts = {g: int(np.floor(x)) for g, x in exact.items()}
    left = n - sum(counts.values())
    for g in sorted(exact, key=lambda k: (counts[k] - exact[k], k))[:left]:
        counts[g] += 1
    return counts


def group_counts(samples: Sequence[Sample], attribute: str) -> dict[str, int]:
    """How many samples each group of ``attribute`` holds (``unknown`` where missing)."""
    out: dict[str, int] = {}
    for s in samples:
        g = s.attributes.get(attribute, "unknown")
        out[g] = out.get(g, 0) + 1
    return out


def largest_size(samples: Sequence[Sample], attribute: str, proportions: Mapping[str, float]) -> int:
    """The largest ``n`` every group can supply at ``proportions`` (no sample drawn twice)."""
    have = group_counts(samples, attribute)
    total = float(sum(proportions.values()))
    return int(min(have.get(g, 0) * total / p for g, p in proportions.items() if p > 0))


def subsample_to_proportions(samples: Sequence[Sample], *, attribute: str, proportions: Mapping[str, float],
                             n: int, seed: int = 0) -> list[Sample]:
    """``n`` samples drawn without replacement, ``proportions[g]`` of them from group ``g``
    (within one sample); the input order is kept. A group too small is a DatasetError."""
    want = apportion(proportions, n)
    by_group: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        by_group.setdefault(s.attributes.get(attribute, "unknown"), []).append(i)
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for g, k in want.items():
        pool = by_group.get(g, [])
        if k > len(pool):
            raise DatasetError(f"{attribute}={g}: {k} samples needed for {n} at proportions {dict(proportions)}, "
                               f"only {len(pool)} available")
        keep += [pool[i] for i in rng.choice(len(pool), size=k, replace=False)]
    return [samples[i] for i in sorted(keep)]


def balance_path(start: Mapping[str, float], steps: int) -> list[dict[str, float]]:
    """``steps`` proportion vectors from ``start`` to uniform, evenly spaced (both ends included)."""
    if steps < 2:
        raise DatasetError(f"a balance path needs at least 2 steps, got {steps}")
    total = float(sum(start.values()))
    uniform = 1.0 / len(start)
    return [{g: (1 - t) * p / total + t * uniform for g, p in start.items()} for t in np.linspace(0.0, 1.0, steps)]
