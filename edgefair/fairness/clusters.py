"""Subjects as clusters: each group's subject count and design effect.

Images of one subject are not independent (a model that fails on a face tends to fail
on its other images), so a group of n images from G subjects carries less information
than n independent images. The audit keeps score intervals (Wilson, Newcombe) and
gives them effective sample sizes n / deff (Kish 1965), the design effect of a
random-intercept model:

    deff_g = 1 + (m_g - 1) * rho,   m_g = sum_j M_j^2 / sum_j M_j  (size-weighted mean
                                    number of images per subject in group g)

with rho the intra-subject correlation of the outcome (an image's correctness, or its
change from the reference), estimated by the ANOVA moment estimator pooled over every
subject of the attribute (a 2-subject group cannot estimate its own), and raised to
the group's own estimate where that is larger, so a group whose subjects are more
alike than the rest is not treated as better informed. Without subject ids every
image is its own subject, M_j = 1 and deff = 1: the intervals are the plain ones.
Imports numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClusterLayout:
    """The clusters of one attribute: a cluster is a (group, subject) pair."""

    n_groups: int
    group_of_sample: np.ndarray  # per audited sample: its group
    cluster_of_sample: np.ndarray  # per audited sample: its cluster
    cluster_group: np.ndarray  # per cluster: its group
    cluster_size: np.ndarray  # per cluster: its number of images

    @property
    def subjects(self) -> np.ndarray:
        """Subjects (clusters) per group."""
        return np.bincount(self.cluster_group, minlength=self.n_groups)

    @property
    def images(self) -> np.ndarray:
        return np.bincount(self.group_of_sample, minlength=self.n_groups)

    @property
    def mean_size(self) -> np.ndarray:
        """Per group, the size-weighted mean cluster size sum M^2 / sum M (1 when no clusters)."""
        m2 = np.bincount(self.cluster_group, weights=self.cluster_size.astype(np.float64) ** 2, minlength=self.n_groups)
        m1 = np.bincount(self.cluster_group, weights=self.cluster_size.astype(np.float64), minlength=self.n_groups)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(m1 > 0, m2 / np.where(m1 > 0, m1, 1.0), 1.0)


def cluster_layout(group_codes: np.ndarray, subject_codes: np.ndarray, n_groups: int) -> ClusterLayout:
    """Clusters from per-sample group codes (0..n_groups-1) and subject codes (ints >= 0)."""
    groups = np.asarray(group_codes, dtype=np.int64)
    subjects = np.asarray(subject_codes, dtype=np.int64)
    width = int(subjects.max()) + 1 if subjects.size else 1
    keys, cluster_of = np.unique(groups * width + subjects, return_inverse=True)
    return ClusterLayout(
        n_groups=n_groups,
        group_of_sample=groups,
        cluster_of_sample=cluster_of.astype(np.int64),
        cluster_group=(keys // width).astype(np.int64),
        cluster_size=np.bincount(cluster_of).astype(np.int64),
    )


def _rho(resid: np.ndarray, cluster_of: np.ndarray, sizes: np.ndarray, n_means: int) -> float:
    """ANOVA estimate of the intra-cluster correlation from within-group residuals,
    clipped to [0, 1]; 0 where it cannot be estimated."""
    n, k = resid.size, sizes.size
    pairs = float((sizes * (sizes - 1.0)).sum())
    if pairs <= 0 or n - n_means <= 0 or k - n_means <= 0:
        return 0.0
    sigma2 = float((resid**2).sum()) / (n - n_means)
    if sigma2 <= 0:
        return 0.0
    totals = np.bincount(cluster_of, weights=resid, minlength=k)
    between = float((totals**2).sum()) * k / (k - n_means)
    return float(np.clip((between / sigma2 - n) / pairs, 0.0, 1.0))


def design_effect(layout: ClusterLayout, y: np.ndarray) -> np.ndarray:
    """Per-group design effect of outcome ``y`` (one float per audited sample), >= 1."""
    y = np.asarray(y, dtype=np.float64)
    g = layout.group_of_sample
    n_g = np.bincount(g, minlength=layout.n_groups)
    sums = np.bincount(g, weights=y, minlength=layout.n_groups)
    means = np.divide(sums, n_g, out=np.zeros(layout.n_groups), where=n_g > 0)
    resid = y - means[g]
    present = int((n_g > 0).sum())
    pooled = _rho(resid, layout.cluster_of_sample, layout.cluster_size.astype(np.float64), present)
    rho = np.full(layout.n_groups, pooled)
    for grp in range(layout.n_groups):
        clusters = np.flatnonzero(layout.cluster_group == grp)
        if clusters.size < 3:
            continue
        mask = g == grp
        local = np.searchsorted(clusters, layout.cluster_of_sample[mask])
        own = _rho(resid[mask], local, layout.cluster_size[clusters].astype(np.float64), 1)
        rho[grp] = max(pooled, own)
    return 1.0 + (layout.mean_size - 1.0) * rho
