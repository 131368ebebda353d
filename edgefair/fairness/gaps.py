"""Accuracy differences between groups and against the reference, with intervals and
p-values that stay valid with few subjects per group.

Every comparison is a score interval on effective counts (counts / design effect of
the group, see ``clusters``):

- a group's accuracy: Wilson;
- two groups (or a group and the rest): Newcombe's hybrid score interval;
- a group's change vs the reference (same samples, paired): Newcombe's paired method 10;
- the change of a gap (difference of two paired changes in disjoint groups): the two
  paired intervals combined by MOVER (Newcombe 2001).

With subject ids and some subject with more than one image, the quantile is Student t
with df = subjects - groups of the comparison (Korn & Graubard 1998 use the same
df-adjusted effective-n idea for survey proportions); with independent images it is
the normal quantile and the intervals are the plain textbook ones. Each p-value
inverts the reported interval, so p < alpha exactly when the interval excludes 0.
Everything is vectorised: one array element per comparison. No randomness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgefair.fairness.clusters import ClusterLayout, design_effect
from edgefair.fairness.intervals import (
    Bounds,
    mover_v,
    newcombe_q,
    p_invert,
    paired_table_q,
    quantile,
    wilson_q,
)

REST = -1  # "all other groups pooled"


@dataclass(frozen=True)
class Estimates:
    """Differences with intervals and p-values, one element per comparison."""

    estimate: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    p: np.ndarray
    df: np.ndarray  # inf: normal quantile
    deff: list[list[float]]  # design effects of the groups involved, per comparison
    method: str


class GroupEvidence:
    """Counts of one attribute's groups (audited samples only) and every comparison
    between them. ``correct``/``reference_correct``: per-sample prediction == truth."""

    def __init__(
        self,
        layout: ClusterLayout,
        correct: np.ndarray,
        reference_correct: np.ndarray | None,
        *,
        alpha: float,
    ) -> None:
        k = layout.n_groups
        codes = layout.group_of_sample
        s = np.asarray(correct, dtype=bool)
        self.alpha = alpha
        self.layout = layout
        self.clustered = bool((layout.cluster_size > 1).any())
        self.n = np.bincount(codes, minlength=k).astype(np.float64)
        self.subjects = layout.subjects.astype(np.float64)
        self.k = np.bincount(codes, weights=s, minlength=k)
        self.deff = design_effect(layout, s)
        self.paired: np.ndarray | None = None  # (groups, 4): both, artefact only, reference only, neither
        self.k_ref: np.ndarray | None = None
        self.deff_ref: np.ndarray | None = None
        self.deff_change: np.ndarray | None = None
        if reference_correct is not None:
            t = np.asarray(reference_correct, dtype=bool)
            cells = [s & t, s & ~t, ~s & t, ~s & ~t]
            self.paired = np.stack([np.bincount(codes, weights=c, minlength=k) for c in cells], axis=1)
            self.k_ref = np.bincount(codes, weights=t, minlength=k)
            self.deff_ref = design_effect(layout, t)
            self.deff_change = design_effect(layout, s.astype(np.float64) - t)

    # -- helpers ---------------------------------------------------------------
    def _df(self, subjects: np.ndarray, groups: int) -> np.ndarray:
        if not self.clustered:
            return np.full(subjects.shape, np.inf)
        return np.maximum(subjects - groups, 1.0)

    def _counts(self, outcome: str) -> tuple[np.ndarray, np.ndarray]:
        if outcome == "reference":
            assert self.k_ref is not None and self.deff_ref is not None
            return self.k_ref, self.deff_ref
        return self.k, self.deff

    def _side(self, g: np.ndarray, outcome: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per element: (accuracy, effective n, subjects, design effect) of group g."""
        k, deff = self._counts(outcome)
        return k[g] / self.n[g], self.n[g] / deff[g], self.subjects[g], deff[g]

    def _rest(self, g: np.ndarray, outcome: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The same for every group but g pooled: the effective n adds over groups."""
        k, deff = self._counts(outcome)
        acc = (k.sum() - k[g]) / (self.n.sum() - self.n[g])
        n_eff = (self.n / deff).sum() - self.n[g] / deff[g]
        rest_deff = (self.n.sum() - self.n[g]) / n_eff
        return acc, n_eff, self.subjects.sum() - self.subjects[g], rest_deff

    # -- per group -------------------------------------------------------------
    def accuracy_ci(self, outcome: str = "artefact") -> Bounds:
        """Cluster-aware Wilson interval of every group's accuracy."""
        k, deff = self._counts(outcome)
        q = quantile(self.alpha, self._df(self.subjects, 1))
        return wilson_q(k / deff, self.n / deff, q)

    def change(self, g: np.ndarray) -> Estimates:
        """Artefact acc(g) - reference acc(g) on the same samples (paired)."""
        assert self.paired is not None and self.deff_change is not None
        g = np.asarray(g, dtype=np.int64)
        cells = self.paired[g] / self.deff_change[g][:, None]
        est = (self.paired[g, 1] - self.paired[g, 2]) / self.n[g]
        df = self._df(self.subjects[g], 1)

        def at(q: np.ndarray) -> Bounds:
            return paired_table_q(cells, q)

        lo, hi = at(quantile(self.alpha, df))
        return Estimates(est, lo, hi, p_invert(est, at, df), df, [[float(d)] for d in self.deff_change[g]],
                         "newcombe-paired")

    # -- between groups --------------------------------------------------------
    def difference(
        self, a: np.ndarray, b: np.ndarray, outcome: str = "artefact", *, alpha: float | None = None
    ) -> Estimates:
        """acc(a) - acc(b) of the artefact (or the reference); b == REST pools the others.
        ``alpha`` overrides the interval's level (the p-value does not depend on it)."""
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        pa, na, ga, da = self._side(a, outcome)
        rest = b == REST
        pooled, single = self._rest(a, outcome), self._side(np.where(rest, 0, b), outcome)
        pb, nb, gb, db = (np.where(rest, x, y) for x, y in zip(pooled, single, strict=False))
        df = self._df(ga + gb, 2)

        def at(q: np.ndarray) -> Bounds:
            return newcombe_q(pa * na, na, pb * nb, nb, q)

        est = pa - pb
        lo, hi = at(quantile(self.alpha if alpha is None else alpha, df))
        deffs = [[float(x), float(y)] for x, y in zip(da, db, strict=False)]
        return Estimates(est, lo, hi, p_invert(est, at, df), df, deffs, "newcombe")

    def gap_change(self, hi: np.ndarray, lo: np.ndarray) -> Estimates:
        """Growth of the gap acc(hi) - acc(lo) from reference to artefact,
        = change(hi) - change(lo)."""
        assert self.paired is not None and self.deff_change is not None
        hi, lo = np.asarray(hi, dtype=np.int64), np.asarray(lo, dtype=np.int64)
        th = self.paired[hi] / self.deff_change[hi][:, None]
        tl = self.paired[lo] / self.deff_change[lo][:, None]
        ch = (self.paired[hi, 1] - self.paired[hi, 2]) / self.n[hi]
        cl = (self.paired[lo, 1] - self.paired[lo, 2]) / self.n[lo]
        df = self._df(self.subjects[hi] + self.subjects[lo], 2)

        def at(q: np.ndarray) -> Bounds:
            return mover_v(ch, paired_table_q(th, q), cl, paired_table_q(tl, q))

        est = ch - cl
        low, high = at(quantile(self.alpha, df))
        deffs = [[float(x), float(y)] for x, y in zip(self.deff_change[hi], self.deff_change[lo], strict=False)]
        return Estimates(est, low, high, p_invert(est, at, df), df, deffs, "newcombe-mover")
