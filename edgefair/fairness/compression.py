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

Two resamplings over subjects (images when there are no subject ids) say what a
value means. The interval (``cev_ci``/``sde_ci``) is the percentile interval of a
bootstrap: every model of both populations scored on the same resampled subjects (a
replicate in which a used class has a zero reference rate is dropped; ``n_boot_valid``
counts the rest). Noise alone makes CEV and SDE positive, so the interval cannot show
"no effect"; the exchange null can: each subject's predictions are swapped between the
artefact and the reference at random (models exchangeable within subjects),
``cev_noise``/``sde_noise`` is the 1 - alpha quantile of the resulting values (what
noise alone reaches with this test set) and ``cev_p``/``sde_p`` the share at least as
large as observed (a paired permutation test over subjects). Percent changes of small
reference rates are large, so CEV (in squared percent) easily reaches thousands: these
say whether it means anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgefair.fairness.bootstrap import cluster_weights
from edgefair.fairness.groups import confusion, confusion_stats
from edgefair.fairness.result import ErrorShift, Interval

# One line each, for wherever CEV / SDE are shown.
CEV_EXPLAINED = (
    "CEV (compression error variance, Simon Says): the variance across classes of the percent changes "
    "of each class's false-positive and false-negative rates from the reference (squared percent); "
    "0 when every class's error rates changed alike, large when compression hit some classes far more than others; "
    "beyond noise only when above its noise level (swapping the two models' predictions per subject at random), "
    "i.e. p < alpha"
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


def _cev_sde_rows(ft: np.ndarray, nt: np.ndarray, fs: np.ndarray, ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CEV and SDE of each row (replicate) of (B, used classes) rates; NaN where a row has a
    reference rate that is 0 or undefined (no percent change)."""
    ok = (np.isfinite(ft) & np.isfinite(nt) & np.isfinite(fs) & np.isfinite(ns) & (ft > 0) & (nt > 0)).all(axis=1)
    c = ft.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        d_fpr = 100.0 * (fs - ft) / ft
        d_fnr = 100.0 * (ns - nt) / nt
        cev = (((d_fpr - d_fpr.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
               + ((d_fnr - d_fnr.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)) / (2 * c)
        sde = np.abs(d_fpr - d_fnr).sum(axis=1) / (c * math.sqrt(2.0))
    return np.where(ok, cev, np.nan), np.where(ok, sde, np.nan)


def _per_subject(y_true: np.ndarray, pred: np.ndarray, subject_codes: np.ndarray, k: int, c: int) -> np.ndarray:
    """(subjects, C*C) confusion counts of one model."""
    key = (subject_codes * c + y_true) * c + np.asarray(pred, dtype=np.int64)
    return np.bincount(key, minlength=k * c * c).reshape(k, c * c).astype(np.float64)


def _mean_rates_of(blocks: Sequence[np.ndarray], c: int, used: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Population-mean (FPR, FNR) of the used classes from (B, C*C) confusion replicates per model."""
    rates = [_rates_of(b.reshape(-1, c, c)) for b in blocks]
    return np.mean([r[0] for r in rates], axis=0)[:, used], np.mean([r[1] for r in rates], axis=0)[:, used]


@dataclass(frozen=True)
class _Resampled:
    cev_ci: Interval | None
    sde_ci: Interval | None
    n_boot_valid: int
    cev_noise: float | None
    sde_noise: float | None
    cev_p: float | None
    sde_p: float | None


def _percentile(reps: np.ndarray, alpha: float) -> Interval | None:
    finite = reps[np.isfinite(reps)]
    if finite.size < 2:
        return None
    lo, hi = np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def _resample(
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
) -> _Resampled:
    """Bootstrap intervals of CEV/SDE over subjects and, for populations of equal size, the
    exchange null: each subject's predictions swapped between the two sides at random."""
    k = int(subject_codes.max()) + 1
    ref = [_per_subject(y_true, p, subject_codes, k, c) for p in reference_preds]
    comp = [_per_subject(y_true, p, subject_codes, k, c) for p in compressed_preds]
    w = cluster_weights(k, n_boot=n_boot, rng=rng)
    cev_b, sde_b = _cev_sde_rows(*_mean_rates_of([w @ r for r in ref], c, used),
                                 *_mean_rates_of([w @ s for s in comp], c, used))
    valid = int(np.isfinite(cev_b).sum())
    noise: list[float | None] = [None, None]
    p: list[float | None] = [None, None]
    if len(ref) == len(comp):
        swap = (rng.random((n_boot, k)) < 0.5).astype(np.float64)
        keep = 1.0 - swap
        fake_ref = [keep @ r + swap @ s for r, s in zip(ref, comp, strict=True)]
        fake_comp = [keep @ s + swap @ r for r, s in zip(ref, comp, strict=True)]
        null = _cev_sde_rows(*_mean_rates_of(fake_ref, c, used), *_mean_rates_of(fake_comp, c, used))
        for i, (reps, observed) in enumerate(zip(null, point, strict=True)):
            finite = reps[np.isfinite(reps)]
            if finite.size:
                noise[i] = float(np.quantile(finite, 1 - alpha))
                p[i] = float((1 + (finite >= observed - 1e-9).sum()) / (1 + finite.size))
    return _Resampled(_percentile(cev_b, alpha), _percentile(sde_b, alpha), valid, noise[0], noise[1], p[0], p[1])


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
    ``n_boot`` > 0 also their intervals, noise levels and p-values (resampling subjects:
    ``subject_codes``, else images; see the module docstring)."""
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
    res = _Resampled(None, None, 0, None, None, None, None)
    if cev is not None and sde is not None and n_boot > 0:
        codes = np.arange(y_true.size) if subject_codes is None else np.asarray(subject_codes, dtype=np.int64)
        res = _resample(
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
        cev_ci=res.cev_ci,
        sde_ci=res.sde_ci,
        n_boot_valid=res.n_boot_valid,
        cev_noise=res.cev_noise,
        sde_noise=res.sde_noise,
        cev_p=res.cev_p,
        sde_p=res.sde_p,
    )
