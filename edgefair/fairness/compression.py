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
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from edgefair.fairness.groups import confusion, confusion_stats
from edgefair.fairness.result import ErrorShift


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
    return {n: (float(v) if np.isfinite(v) else None) for n, v in zip(names, values)}


def error_shift(
    y_true: np.ndarray,
    reference_preds: Sequence[np.ndarray],
    compressed_preds: Sequence[np.ndarray],
    class_names: Sequence[str],
) -> ErrorShift:
    """CEV/SDE of the compressed population against the reference population."""
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
    return ErrorShift(
        cev=cev,
        sde=sde,
        classes=names,
        excluded_classes=excluded,
        delta_fpr={n: float(v) for n, v in zip(names, d_fpr)},
        delta_fnr={n: float(v) for n, v in zip(names, d_fnr)},
        reference_fpr=_as_dict(class_names, fpr_t),
        reference_fnr=_as_dict(class_names, fnr_t),
        compressed_fpr=_as_dict(class_names, fpr_s),
        compressed_fnr=_as_dict(class_names, fnr_s),
        n_reference_models=len(reference_preds),
        n_compressed_models=len(compressed_preds),
    )
