"""Stratified cluster bootstrap of per-group correct counts.

fairlearn's ``MetricFrame(n_boot=...)`` resamples rows from the whole test set, so a
small group's size varies between replicates (and can drop to zero), and images of
one subject are treated as independent. Here each group is a stratum: its own
subjects (clusters) are resampled with replacement, as many as it has, so every
replicate keeps every group and keeps a subject's images together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

# Upper bound on n_boot x clusters drawn at once (keeps memory flat on big test sets).
_CHUNK_CELLS = 2_000_000


@dataclass(frozen=True)
class Replicates:
    """Bootstrap replicates of per-group totals and correct counts.

    ``total`` has shape (n_boot, n_groups); ``correct[name]`` the same, one array per
    outcome (e.g. the artefact's and the reference's correctness), all from the SAME
    resampled clusters, so differences between outcomes are paired.
    """

    total: np.ndarray
    correct: dict[str, np.ndarray]
    n_clusters: np.ndarray  # clusters per group, shape (n_groups,)

    def accuracy(self, outcome: str, group: int) -> np.ndarray:
        """Replicates of one group's accuracy."""
        return self.correct[outcome][:, group] / self.total[:, group]

    def accuracy_rest(self, outcome: str, group: int) -> np.ndarray:
        """Replicates of the accuracy of all other groups pooled."""
        tot = self.total.sum(axis=1) - self.total[:, group]
        cor = self.correct[outcome].sum(axis=1) - self.correct[outcome][:, group]
        return cor / tot


def stratified_cluster_bootstrap(
    group_codes: np.ndarray,
    subject_codes: np.ndarray,
    outcomes: Mapping[str, np.ndarray],
    *,
    n_groups: int,
    n_boot: int,
    rng: np.random.Generator,
) -> Replicates:
    """Resample subjects within each group; return per-group count replicates.

    ``group_codes`` are 0..n_groups-1 per sample, ``subject_codes`` any non-negative
    ints per sample, ``outcomes`` boolean arrays (correct or not) per sample. A
    cluster is a (group, subject) pair, so a subject seen in two groups is a cluster
    in each.
    """
    n_subjects = int(subject_codes.max()) + 1 if subject_codes.size else 1
    key = group_codes.astype(np.int64) * n_subjects + subject_codes.astype(np.int64)
    cluster_keys, cluster_of = np.unique(key, return_inverse=True)
    cluster_group = (cluster_keys // n_subjects).astype(np.int64)
    cluster_size = np.bincount(cluster_of).astype(np.float64)
    cluster_correct = {
        name: np.bincount(cluster_of, weights=np.asarray(v, dtype=np.float64), minlength=len(cluster_keys))
        for name, v in outcomes.items()
    }

    total = np.zeros((n_boot, n_groups))
    correct = {name: np.zeros((n_boot, n_groups)) for name in outcomes}
    n_clusters = np.bincount(cluster_group, minlength=n_groups)
    for g in range(n_groups):
        members = np.flatnonzero(cluster_group == g)
        k = members.size
        if k == 0:
            continue
        step = max(1, _CHUNK_CELLS // k)
        for start in range(0, n_boot, step):
            stop = min(n_boot, start + step)
            # counts[b, j] = how often cluster j was drawn in replicate b (k draws).
            counts = rng.multinomial(k, np.full(k, 1.0 / k), size=stop - start).astype(np.float64)
            total[start:stop, g] = counts @ cluster_size[members]
            for name in outcomes:
                correct[name][start:stop, g] = counts @ cluster_correct[name][members]
    return Replicates(total=total, correct=correct, n_clusters=n_clusters)
