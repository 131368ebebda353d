"""Accuracy differences between groups and against the reference, with intervals.

Without subject ids the samples are taken as independent:

- two groups (or a group and the rest): Newcombe hybrid score interval;
- a group's accuracy change vs the reference (same samples, paired): Newcombe's
  paired method 10;
- the change of a gap (difference of two such paired changes in disjoint groups):
  the two paired intervals combined as in Newcombe (2001).

With subject ids, a stratified cluster bootstrap (see ``bootstrap``) gives the
standard error of the same estimates and a normal interval. In both cases the
p-value inverts the interval that is reported, so the two never disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgefair.fairness.bootstrap import Replicates, stratified_cluster_bootstrap
from edgefair.fairness.intervals import (
    Interval,
    mover,
    newcombe_paired_z,
    newcombe_z,
    normal_interval,
    p_from_interval,
    p_normal,
    z_for,
)

REST = -1  # "all other groups pooled"
# Below this many subjects a group's bootstrap says nothing (one cluster has no spread).
MIN_CLUSTERS = 2


@dataclass(frozen=True)
class Estimate:
    """A difference with its interval, p-value and how they were computed."""

    estimate: float
    ci: Interval | None
    p_value: float | None
    method: str
    note: str = ""


class GroupEvidence:
    """Counts of one attribute's groups; computes every comparison between them.

    ``correct`` / ``reference_correct`` are per-sample booleans (prediction == truth).
    """

    def __init__(
        self,
        codes: np.ndarray,
        n_groups: int,
        correct: np.ndarray,
        reference_correct: np.ndarray | None,
        *,
        alpha: float,
        subject_codes: np.ndarray | None = None,
        n_boot: int = 1000,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.alpha = alpha
        self.z = z_for(alpha)
        self.n = np.bincount(codes, minlength=n_groups).astype(np.int64)
        self.k = np.bincount(codes, weights=correct, minlength=n_groups).round().astype(np.int64)
        self.paired: np.ndarray | None = None  # (n_groups, 4): both, artefact only, reference only, neither
        if reference_correct is not None:
            s, t = correct.astype(bool), reference_correct.astype(bool)
            cells = [s & t, s & ~t, ~s & t, ~s & ~t]
            self.paired = np.stack(
                [np.bincount(codes, weights=c, minlength=n_groups) for c in cells], axis=1
            ).round()
        self.boot: Replicates | None = None
        if subject_codes is not None:
            outcomes = {"art": correct.astype(bool)}
            if reference_correct is not None:
                outcomes["ref"] = reference_correct.astype(bool)
            self.boot = stratified_cluster_bootstrap(
                codes,
                subject_codes,
                outcomes,
                n_groups=n_groups,
                n_boot=n_boot,
                rng=rng if rng is not None else np.random.default_rng(0),
            )

    # -- helpers ---------------------------------------------------------------
    @property
    def method(self) -> str:
        return "cluster-bootstrap" if self.boot is not None else "newcombe"

    def accuracy(self, g: int) -> float:
        return float(self.k[g] / self.n[g])

    def _rest(self, g: int) -> tuple[int, int]:
        return int(self.k.sum() - self.k[g]), int(self.n.sum() - self.n[g])

    def _change(self, g: int) -> float:
        assert self.paired is not None
        _, f, gg, _ = self.paired[g]
        return float((f - gg) / self.n[g])

    def _from_replicates(self, estimate: float, reps: np.ndarray, groups: list[int]) -> Estimate:
        assert self.boot is not None
        few = [g for g in groups if g != REST and self.boot.n_clusters[g] < MIN_CLUSTERS]
        if few:
            return Estimate(estimate, None, None, "cluster-bootstrap", note=f"fewer than {MIN_CLUSTERS} subjects")
        se = float(np.std(reps, ddof=1))
        return Estimate(
            estimate, normal_interval(estimate, se, alpha=self.alpha), p_normal(estimate, se), "cluster-bootstrap"
        )

    def _analytic(self, estimate: float, interval_at: Callable[[float], Interval], method: str) -> Estimate:
        return Estimate(estimate, interval_at(self.z), p_from_interval(estimate, interval_at), method)

    # -- comparisons -----------------------------------------------------------
    def difference(self, a: int, b: int) -> Estimate:
        """acc(a) - acc(b); b may be REST (every other group pooled)."""
        k1, n1 = int(self.k[a]), int(self.n[a])
        k2, n2 = self._rest(a) if b == REST else (int(self.k[b]), int(self.n[b]))
        est = k1 / n1 - k2 / n2
        if self.boot is not None:
            other = self.boot.accuracy_rest("art", a) if b == REST else self.boot.accuracy("art", b)
            return self._from_replicates(est, self.boot.accuracy("art", a) - other, [a, b])
        return self._analytic(est, lambda z: newcombe_z(k1, n1, k2, n2, z), "newcombe")

    def change(self, g: int) -> Estimate:
        """Artefact acc(g) - reference acc(g) on the same samples (paired)."""
        est = self._change(g)
        if self.boot is not None:
            reps = self.boot.accuracy("art", g) - self.boot.accuracy("ref", g)
            return self._from_replicates(est, reps, [g])
        assert self.paired is not None
        cells = [float(x) for x in self.paired[g]]
        return self._analytic(est, lambda z: newcombe_paired_z(*cells, z), "newcombe-paired")

    def gap_change(self, best: int, g: int) -> Estimate:
        """Growth of the gap acc(best) - acc(g) from reference to artefact,
        = change(best) - change(g)."""
        cb, cg = self._change(best), self._change(g)
        est = cb - cg
        if self.boot is not None:
            reps = (self.boot.accuracy("art", best) - self.boot.accuracy("ref", best)) - (
                self.boot.accuracy("art", g) - self.boot.accuracy("ref", g)
            )
            return self._from_replicates(est, reps, [best, g])
        assert self.paired is not None
        tb = [float(x) for x in self.paired[best]]
        tg = [float(x) for x in self.paired[g]]

        def interval_at(z: float) -> Interval:
            return mover(cb, newcombe_paired_z(*tb, z), cg, newcombe_paired_z(*tg, z))

        return self._analytic(est, interval_at, "newcombe-mover")
