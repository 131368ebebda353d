"""Subject bootstrap weights: how often each subject (cluster) is drawn per replicate.

fairlearn's ``MetricFrame(n_boot=...)`` resamples rows from the whole test set, so a
small group's size varies between replicates (and can drop to zero), and images of
one subject are treated as independent. Here each group is a stratum: its own
subjects are resampled with replacement, as many as it has, so every replicate keeps
every group and keeps a subject's images together. A replicate of any additive
per-cluster quantity (correct counts, confusion cells) is then ``weights @ per_cluster``.
Used for the descriptive intervals (macro-F1, recall, parity, CEV/SDE); the tests
and the verdict use no resampling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from edgefair.fairness.clusters import ClusterLayout, cluster_layout

# Upper bound on n_boot x clusters drawn at once (keeps memory flat on big test sets).
_CHUNK_CELLS = 2_000_000


def cluster_weights(k: int, *, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, k) multinomial draw counts of k clusters resampled k times."""
    out = np.zeros((n_boot, k))
    if k == 0:
        return out
    step = max(1, _CHUNK_CELLS // k)
    for start in range(0, n_boot, step):
        stop = min(n_boot, start + step)
        out[start:stop] = rng.multinomial(k, np.full(k, 1.0 / k), size=stop - start)
    return out


def stratified_weights(layout: ClusterLayout, *, n_boot: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Per group, (n_boot, its clusters) draw counts: each group resamples its own clusters."""
    return [cluster_weights(int((layout.cluster_group == g).sum()), n_boot=n_boot, rng=rng)
            for g in range(layout.n_groups)]


@dataclass(frozen=True)
class Replicates:
    """Bootstrap replicates of per-group totals and correct counts.

    ``total`` has shape (n_boot, n_groups); ``correct[name]`` the same, one array per
    outcome, all from the SAME resampled clusters, so differences between outcomes are paired.
    """

    total: np.ndarray
    correct: dict[str, np.ndarray]
    n_clusters: np.ndarray  # clusters per group, shape (n_groups,)

    def accuracy(self, outcome: str, group: int) -> np.ndarray:
        """Replicates of one group's accuracy."""
        return self.correct[outcome][:, group] / self.total[:, group]


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

    A cluster is a (group, subject) pair, so a subject seen in two groups is a cluster in each.
    """
    layout = cluster_layout(group_codes, subject_codes, n_groups)
    weights = stratified_weights(layout, n_boot=n_boot, rng=rng)
    size = layout.cluster_size.astype(np.float64)
    k = size.size
    per_cluster = {
        name: np.bincount(layout.cluster_of_sample, weights=np.asarray(v, dtype=np.float64), minlength=k)
        for name, v in outcomes.items()
    }
    total = np.zeros((n_boot, n_groups))
    correct = {name: np.zeros((n_boot, n_groups)) for name in outcomes}
    for g, w in enumerate(weights):
        members = np.flatnonzero(layout.cluster_group == g)
        total[:, g] = w @ size[members]
        for name in outcomes:
            correct[name][:, g] = w @ per_cluster[name][members]
    return Replicates(total=total, correct=correct, n_clusters=layout.subjects)
