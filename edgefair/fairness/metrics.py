"""The seed studies' metrics per group, with intervals, the reference value and the
change under compression.

- macro-F1 (Fan et al. report F1) and per-class recall per group;
- multiclass demographic parity: per class, the spread (max - min) across tested
  groups of the share predicted as that class; the largest over classes;
- equalised-odds gap: per class, the spread across tested groups of the one-vs-rest
  TPR and of the FPR; the largest over classes and both rates;
- prediction churn: the share of a group's samples whose prediction differs from the
  reference's (Wilson on the effective sample size, as accuracy).

Intervals of the first three come from a stratified subject bootstrap
(``bootstrap``): each group resamples its own subjects, so every replicate keeps every
group and a subject's images together; the artefact and the reference are read off
the SAME replicates, so a change's interval is paired. Macro-F1 and recall use the
percentile interval; demographic parity and equalised odds are spreads (max - min,
then a max over classes), which noise alone makes positive and resampling inflates
further, so theirs is the basic interval (2 x estimate - replicate quantiles, clipped
at 0 for the values), as for CEV/SDE. Descriptive only: none of these is tested or
enters a family.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgefair.fairness.bootstrap import stratified_weights
from edgefair.fairness.clusters import ClusterLayout, design_effect
from edgefair.fairness.intervals import quantile, wilson_q
from edgefair.fairness.result import AttributeMetrics, GroupMetrics, Interval, Metric


def _cluster_confusion(layout: ClusterLayout, y_true: np.ndarray, y_pred: np.ndarray, c: int) -> np.ndarray:
    """(clusters, C*C) confusion counts of each cluster."""
    k = layout.cluster_size.size
    key = (layout.cluster_of_sample * c + y_true) * c + y_pred
    return np.bincount(key, minlength=k * c * c).reshape(k, c * c).astype(np.float64)


def group_confusion_replicates(
    layout: ClusterLayout, weights: Sequence[np.ndarray], y_true: np.ndarray, y_pred: np.ndarray, c: int
) -> np.ndarray:
    """(n_boot, groups, C, C) confusion matrices of the resampled groups."""
    per_cluster = _cluster_confusion(layout, y_true, y_pred, c)
    n_boot = weights[0].shape[0] if weights else 0
    out = np.zeros((n_boot, layout.n_groups, c * c))
    for g, w in enumerate(weights):
        members = np.flatnonzero(layout.cluster_group == g)
        if members.size:
            out[:, g] = w @ per_cluster[members]
    return out.reshape(n_boot, layout.n_groups, c, c)


def _rates(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class rates of stacked confusion matrices (..., C, C); NaN where undefined."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support = cm.sum(axis=-1)
    predicted = cm.sum(axis=-2)
    n = support.sum(axis=-1, keepdims=True)
    fp, fn = predicted - tp, support - tp
    tn = n - tp - fp - fn
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "recall": np.where(support > 0, tp / support, np.nan),
            "fpr": np.where(fp + tn > 0, fp / (fp + tn), np.nan),
            "f1": np.where(support + predicted > 0, 2 * tp / (support + predicted), np.nan),
            "selection_rate": np.where(n > 0, predicted / n, np.nan),
        }


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    ok = np.isfinite(x)
    total = np.where(ok, x, 0.0).sum(axis=axis)
    count = ok.sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _spread(rate: np.ndarray, tested: np.ndarray) -> np.ndarray:
    """(..., groups, C) -> (...): largest over classes of max - min over tested groups
    (a class needs 2 tested groups with the rate defined); NaN where no class has."""
    if int(tested.sum()) < 2:
        return np.full(rate.shape[:-2], np.nan)
    r = rate[..., tested, :]
    ok = np.isfinite(r)
    hi = np.where(ok, r, -np.inf).max(axis=-2)
    lo = np.where(ok, r, np.inf).min(axis=-2)
    per_class = np.where(ok.sum(axis=-2) >= 2, hi - lo, -np.inf)
    best = per_class.max(axis=-1)
    return np.where(np.isfinite(best), best, np.nan)


def _nan_quantiles(reps: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(alpha/2, 1 - alpha/2) quantiles over axis 0 ignoring NaN (linear interpolation, as
    numpy's default), NaN where fewer than 2 replicates are finite. Vectorised: one sort."""
    ordered = np.sort(np.where(np.isfinite(reps), reps, np.inf), axis=0)
    n = np.isfinite(reps).sum(axis=0)
    out = []
    for q in (alpha / 2, 1 - alpha / 2):
        pos = q * np.maximum(n - 1, 0)
        lo_i = np.floor(pos).astype(np.int64)
        hi_i = np.minimum(lo_i + 1, np.maximum(n - 1, 0))
        lo_v = np.take_along_axis(ordered, lo_i[None], axis=0)[0]
        hi_v = np.take_along_axis(ordered, hi_i[None], axis=0)[0]
        with np.errstate(invalid="ignore"):
            value = lo_v + (pos - lo_i) * np.where(hi_i > lo_i, hi_v - lo_v, 0.0)
        out.append(np.where(n >= 2, value, np.nan))
    return out[0], out[1]


@dataclass(frozen=True)
class _Intervals:
    """Point values and interval bounds, elementwise (NaN = undefined)."""

    value: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def _intervals(point: np.ndarray, reps: np.ndarray, alpha: float, *, spread: bool, floor: float) -> _Intervals:
    """Percentile intervals, or for a ``spread`` the basic ones [2e - q_hi, 2e - q_lo] >= floor."""
    q_lo, q_hi = _nan_quantiles(reps, alpha)
    if spread:
        q_lo, q_hi = np.maximum(2 * point - q_hi, floor), np.maximum(2 * point - q_lo, floor)
    defined = np.isfinite(point) & np.isfinite(q_lo) & np.isfinite(q_hi)
    return _Intervals(point, np.where(defined, q_lo, np.nan), np.where(defined, q_hi, np.nan))


def _value(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _ci(iv: _Intervals, i: tuple[int, ...]) -> Interval | None:
    lo, hi = iv.lo[i], iv.hi[i]
    return (float(lo), float(hi)) if np.isfinite(lo) and np.isfinite(hi) else None


@dataclass(frozen=True)
class _Metrics:
    """A metric for every element: the model, the reference and the change."""

    art: _Intervals
    ref: _Intervals | None
    change: _Intervals | None

    def at(self, *i: int) -> Metric:
        m = Metric(value=_value(self.art.value[i]), ci=_ci(self.art, i))
        if self.ref is not None and self.change is not None:
            m.reference = _value(self.ref.value[i])
            m.reference_ci = _ci(self.ref, i)
            if m.value is not None and m.reference is not None:
                m.change = m.value - m.reference
                m.change_ci = _ci(self.change, i)
        return m


def _metrics(point: np.ndarray, reps: np.ndarray, ref_point: np.ndarray | None, ref_reps: np.ndarray | None,
             alpha: float, *, spread: bool = False) -> _Metrics:
    """``spread``: basic intervals (values clipped at 0), see the module docstring."""
    floor = 0.0 if spread else -np.inf
    art = _intervals(point, reps, alpha, spread=spread, floor=floor)
    if ref_point is None or ref_reps is None:
        return _Metrics(art, None, None)
    ref = _intervals(ref_point, ref_reps, alpha, spread=spread, floor=floor)
    change = _intervals(point - ref_point, reps - ref_reps, alpha, spread=spread, floor=-np.inf)
    return _Metrics(art, ref, change)


@dataclass(frozen=True)
class _Side:
    """Point rates (groups, C) and replicate rates (B, groups, C) of one model."""

    point: dict[str, np.ndarray]
    reps: dict[str, np.ndarray]


def _side(point_cms: Sequence[np.ndarray], rep_cms: np.ndarray) -> _Side:
    return _Side(point=_rates(np.stack([np.asarray(cm, dtype=np.float64) for cm in point_cms])), reps=_rates(rep_cms))


@dataclass(frozen=True)
class MetricInputs:
    layout: ClusterLayout
    y_true: np.ndarray
    y_pred: np.ndarray
    reference_pred: np.ndarray | None
    confusion: Sequence[np.ndarray]
    reference_confusion: Sequence[np.ndarray] | None
    tested: np.ndarray  # per group
    class_names: Sequence[str]


def _churn(inp: MetricInputs, alpha: float) -> list[Metric | None]:
    if inp.reference_pred is None:
        return [None] * inp.layout.n_groups
    differ = inp.y_pred != inp.reference_pred
    codes = inp.layout.group_of_sample
    n = np.bincount(codes, minlength=inp.layout.n_groups).astype(np.float64)
    k = np.bincount(codes, weights=differ, minlength=inp.layout.n_groups)
    deff = design_effect(inp.layout, differ)
    clustered = bool((inp.layout.cluster_size > 1).any())
    df = np.maximum(inp.layout.subjects - 1.0, 1.0) if clustered else np.full(n.shape, np.inf)
    lo, hi = wilson_q(k / deff, n / deff, quantile(alpha, df))
    return [Metric(value=float(k[g] / n[g]), ci=(float(lo[g]), float(hi[g]))) for g in range(n.size)]


def group_metrics(
    inp: MetricInputs, *, n_boot: int, rng: np.random.Generator, alpha: float
) -> tuple[list[GroupMetrics], AttributeMetrics]:
    """Per-group macro-F1, recall, churn and the attribute's DP / EO, with intervals."""
    c = len(inp.class_names)
    weights = stratified_weights(inp.layout, n_boot=n_boot, rng=rng)
    art = _side(inp.confusion, group_confusion_replicates(inp.layout, weights, inp.y_true, inp.y_pred, c))
    ref = None
    if inp.reference_pred is not None and inp.reference_confusion is not None:
        ref_reps = group_confusion_replicates(inp.layout, weights, inp.y_true, inp.reference_pred, c)
        ref = _side(inp.reference_confusion, ref_reps)

    recall = _metrics(art.point["recall"], art.reps["recall"], None if ref is None else ref.point["recall"],
                      None if ref is None else ref.reps["recall"], alpha)
    macro = _metrics(_nanmean(art.point["f1"], axis=-1), _nanmean(art.reps["f1"], axis=-1),
                     None if ref is None else _nanmean(ref.point["f1"], axis=-1),
                     None if ref is None else _nanmean(ref.reps["f1"], axis=-1), alpha)
    churn = _churn(inp, alpha)
    groups = [
        GroupMetrics(macro_f1=macro.at(g), recall={name: recall.at(g, j) for j, name in enumerate(inp.class_names)},
                     churn=churn[g])
        for g in range(inp.layout.n_groups)
    ]

    def parity(side: _Side, which: str) -> tuple[np.ndarray, np.ndarray]:
        if which == "dp":
            rate = "selection_rate"
            return _spread(side.point[rate], inp.tested), _spread(side.reps[rate], inp.tested)
        point = np.fmax(_spread(side.point["recall"], inp.tested), _spread(side.point["fpr"], inp.tested))
        reps = np.fmax(_spread(side.reps["recall"], inp.tested), _spread(side.reps["fpr"], inp.tested))
        return point, reps

    attr = {}
    for which in ("dp", "eo"):
        point, reps = parity(art, which)
        ref_point: np.ndarray | None = None
        ref_spread: np.ndarray | None = None
        if ref is not None:
            ref_point, ref_spread = parity(ref, which)
        attr[which] = _metrics(point, reps, ref_point, ref_spread, alpha, spread=True).at()
    return groups, AttributeMetrics(demographic_parity=attr["dp"], equalized_odds=attr["eo"])
