"""CEV and SDE (Blakeney et al. 2021, "Simon Says") of a compressed model vs its reference.

For each class c, one-vs-rest from the confusion matrix, FPR_c = FP/(FP+TN) and
FNR_c = FN/(FN+TP), for the reference T and the compressed S (each averaged over its
population of models when there are several). The percent changes

    dFPR_c = 100 (FPR_c^S - FPR_c^T) / FPR_c^T,   dFNR_c likewise,

give a point p_c = (dFPR_c, dFNR_c) per class, with mu the mean point, and

    CEV = (1/(2C)) sum_c ||p_c - mu||^2          (mean of the two per-axis variances)
    SDE = (1/C) sum_c |dFPR_c - dFNR_c| / sqrt(2)  (mean distance to the line y = x)

over the C classes where both reference rates are non-zero. A class with a zero (or
undefined) reference rate has no percent change: it is excluded and listed with the
reason, never turned into inf/NaN.

Their intervals come from a bootstrap over subjects (images when there are no
subject ids): every model of both populations is scored on the same resampled
subjects; a replicate in which a used class has a zero reference rate is dropped
(``n_boot_valid`` counts the rest). Noise alone makes both positive, and resampling
adds more noise, so the interval is the basic bootstrap one (2 x estimate minus the
replicate quantiles), clipped at 0: an interval that reaches 0 means the value cannot
be told from noise. Percent changes of small reference rates are large, so CEV (in
squared percent) easily reaches thousands; the interval says whether it means anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from edgefair.fairness.bootstrap import cluster_weights
from edgefair.fairness.groups import confusion, confusion_stats
from edgefair.fairness.result import ErrorShift, Interval

# One line each, for wherever CEV / SDE are shown.
CEV_EXPLAINED = (
    "CEV (compression error variance, Simon Says): the variance across classes of the percent changes "
    "of each class's false-positive and false-negative rates from the reference (squared percent); "
    "0 when every class's error rates changed alike, large when compression hit some classes far more than others; "
    "an interval reaching 0 means it cannot be told from noise"
)
SDE_EXPLAINED = (
    "SDE (symmetric distance error): the mean distance of the per-class (FPR change %, FNR change %) "
    "points from the line where both change alike; large when compression traded false negatives "
    "for false positives (or back) unevenly across classes"
)


def class_error_rates(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest (FPR, FNR) per class; NaN where the rate is undefined."""
    stats = confusion_stats(confusion(y_true, y_pred, n_classes=n_classes))
    return stats.fpr, stats.fnr


def cev_sde(delta_fpr: Sequence[float], delta_fnr: Sequence[float]) -> tuple[float, float]:
    """CEV and SDE of per-class points (dFPR_c, dFNR_c), in percent units (C >= 1)."""
    points = np.column_stack([np.asarray(delta_fpr, float), np.asarray(delta_fnr, float)])
    c = points.shape[0]
    if c == 0:
        raise ValueError("cev_sde needs at least one class")
    mu = points.mean(axis=0)
    cev = float(((points - mu) ** 2).sum() / (2 * c))
    sde = float(np.abs(points[:, 0] - points[:, 1]).sum() / (c * math.sqrt(2.0)))
    return cev, sde


def _mean_rates(
    y_true: np.ndarray, preds: Sequence[np.ndarray], n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    rates = [class_error_rates(y_true, p, n_classes) for p in preds]
    return np.mean([r[0] for r in rates], axis=0), np.mean([r[1] for r in rates], axis=0)


def _as_dict(names: Sequence[str], values: np.ndarray) -> dict[str, float | None]:
    return {n: (float(v) if np.isfinite(v) else None) for n, v in zip(names, values, strict=False)}


def _rates_of(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest (FPR, FNR) of stacked confusion matrices (..., C, C); NaN where undefined."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support = cm.sum(axis=-1)
    fp = cm.sum(axis=-2) - tp
    tn = cm.sum(axis=(-2, -1))[..., None] - support - fp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(fp + tn > 0, fp / (fp + tn), np.nan), np.where(support > 0, 1 - tp / support, np.nan)


def _bootstrap(
    y_true: np.ndarray,
    reference_preds: Sequence[np.ndarray],
    compressed_preds: Sequence[np.ndarray],
    used: list[int],
    c: int,
    point: tuple[float, float],
    *,
    subject_codes: np.ndarray,
    n_boot: int,
    rng: np.random.Generator,
    alpha: float,
) -> tuple[Interval | None, Interval | None, int]:
    """Basic bootstrap intervals of CEV and SDE (``point``) over subjects, and the valid replicates."""
    k = int(subject_codes.max()) + 1
    weights = cluster_weights(k, n_boot=n_boot, rng=rng)

    def replicate(preds: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        rates = []
        for p in preds:
            key = (subject_codes * c + y_true) * c + np.asarray(p, dtype=np.int64)
            per_cluster = np.bincount(key, minlength=k * c * c).reshape(k, c * c).astype(np.float64)
            rates.append(_rates_of((weights @ per_cluster).reshape(n_boot, c, c)))
        return np.mean([r[0] for r in rates], axis=0), np.mean([r[1] for r in rates], axis=0)

    fpr_t, fnr_t = replicate(reference_preds)
    fpr_s, fnr_s = replicate(compressed_preds)
    ft, nt, fs, ns = (x[:, used] for x in (fpr_t, fnr_t, fpr_s, fnr_s))
    valid = (np.isfinite(ft) & np.isfinite(nt) & np.isfinite(fs) & np.isfinite(ns) & (ft > 0) & (nt > 0)).all(axis=1)
    if valid.sum() < 2:
        return None, None, int(valid.sum())
    d_fpr = 100.0 * (fs[valid] - ft[valid]) / ft[valid]
    d_fnr = 100.0 * (ns[valid] - nt[valid]) / nt[valid]
    mu_f, mu_n = d_fpr.mean(axis=1, keepdims=True), d_fnr.mean(axis=1, keepdims=True)
    cev = (((d_fpr - mu_f) ** 2).sum(axis=1) + ((d_fnr - mu_n) ** 2).sum(axis=1)) / (2 * len(used))
    sde = np.abs(d_fpr - d_fnr).sum(axis=1) / (len(used) * math.sqrt(2.0))
    return _basic(point[0], cev, alpha), _basic(point[1], sde, alpha), int(valid.sum())


def _basic(estimate: float, reps: np.ndarray, alpha: float) -> Interval:
    """Basic (reverse-percentile) bootstrap interval [2e - q_hi, 2e - q_lo], clipped at 0.
    Resampling noise inflates CEV and SDE (both are positive whatever the truth), so the
    percentile interval would sit above the estimate; the basic interval removes that
    bias, and reaching 0 means the value cannot be told from noise."""
    q_lo, q_hi = np.percentile(reps, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return max(0.0, float(2 * estimate - q_hi)), max(0.0, float(2 * estimate - q_lo))


def error_shift(
    y_true: np.ndarray,
    reference_preds: Sequence[np.ndarray],
    compressed_preds: Sequence[np.ndarray],
    class_names: Sequence[str],
    *,
    subject_codes: np.ndarray | None = None,
    n_boot: int = 0,
    rng: np.random.Generator | None = None,
    alpha: float = 0.05,
) -> ErrorShift:
    """CEV/SDE of the compressed population against the reference population; with
    ``n_boot`` > 0 also their bootstrap intervals (subjects: ``subject_codes``, else images)."""
    c = len(class_names)
    fpr_t, fnr_t = _mean_rates(y_true, reference_preds, c)
    fpr_s, fnr_s = _mean_rates(y_true, compressed_preds, c)
    excluded: dict[str, str] = {}
    used: list[int] = []
    for i, name in enumerate(class_names):
        if not np.isfinite(fnr_t[i]):
            excluded[name] = "no test sample of this class: FNR undefined"
        elif not np.isfinite(fpr_t[i]):
            excluded[name] = "every test sample is of this class: FPR undefined"
        elif fpr_t[i] == 0 and fnr_t[i] == 0:
            excluded[name] = "reference FPR and FNR are 0: percent change undefined"
        elif fpr_t[i] == 0:
            excluded[name] = "reference FPR is 0: percent change undefined"
        elif fnr_t[i] == 0:
            excluded[name] = "reference FNR is 0: percent change undefined"
        else:
            used.append(i)
    d_fpr = 100.0 * (fpr_s[used] - fpr_t[used]) / fpr_t[used]
    d_fnr = 100.0 * (fnr_s[used] - fnr_t[used]) / fnr_t[used]
    cev, sde = cev_sde(d_fpr, d_fnr) if used else (None, None)
    names = [class_names[i] for i in used]
    cev_ci = sde_ci = None
    n_valid = 0
    if cev is not None and sde is not None and n_boot > 0:
        codes = np.arange(y_true.size) if subject_codes is None else np.asarray(subject_codes, dtype=np.int64)
        cev_ci, sde_ci, n_valid = _bootstrap(
            np.asarray(y_true, dtype=np.int64), reference_preds, compressed_preds, used, c, (float(cev), float(sde)),
            subject_codes=codes, n_boot=n_boot, rng=rng if rng is not None else np.random.default_rng(0), alpha=alpha,
        )
    return ErrorShift(
        cev=cev,
        sde=sde,
        classes=names,
        excluded_classes=excluded,
        delta_fpr={n: float(v) for n, v in zip(names, d_fpr, strict=False)},
        delta_fnr={n: float(v) for n, v in zip(names, d_fnr, strict=False)},
        reference_fpr=_as_dict(class_names, fpr_t),
        reference_fnr=_as_dict(class_names, fnr_t),
        compressed_fpr=_as_dict(class_names, fpr_s),
        compressed_fnr=_as_dict(class_names, fnr_s),
        n_reference_models=len(reference_preds),
        n_compressed_models=len(compressed_preds),
        cev_ci=cev_ci,
        sde_ci=sde_ci,
        n_boot_valid=n_valid,
    )
