"""Per-group confusion matrices through fairlearn's MetricFrame, and the metrics
derived from them.

fairlearn's TPR/FPR metrics are binary only, so MetricFrame disaggregates one
multiclass confusion matrix per group and every per-class one-vs-rest rate is read off
that matrix here. Macro-F1 and balanced accuracy follow scikit-learn's definitions
(macro-F1 over the classes present in y_true or y_pred of the group; balanced accuracy
= mean recall over the classes present in y_true of the group).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from edgefair.fairness.inputs import LEFT_OUT

INTERSECTION_SEP = "×"


def confusion(y_true: np.ndarray, y_pred: np.ndarray, *, n_classes: int) -> np.ndarray:
    """Rows = true class, columns = predicted class (scikit-learn's layout)."""
    yt = np.asarray(y_true, dtype=np.int64)
    yp = np.asarray(y_pred, dtype=np.int64)
    return np.bincount(yt * n_classes + yp, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


@dataclass(frozen=True)
class ConfusionStats:
    """Metrics of one confusion matrix; NaN marks an undefined per-class rate."""

    n: int
    correct: int
    accuracy: float
    macro_f1: float
    balanced_accuracy: float
    recall: np.ndarray  # per class; NaN if the class has no true sample
    fpr: np.ndarray  # per class one-vs-rest; NaN if every sample is of the class
    fnr: np.ndarray  # 1 - recall
    selection_rate: np.ndarray  # per class: share predicted as the class


def confusion_stats(cm: np.ndarray) -> ConfusionStats:
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum()
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    fp = predicted - tp
    fn = support - tp
    tn = n - tp - fp - fn
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        fpr = np.where(fp + tn > 0, fp / (fp + tn), np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    present = (support + predicted) > 0
    return ConfusionStats(
        n=int(n),
        correct=int(tp.sum()),
        accuracy=float(tp.sum() / n) if n else float("nan"),
        macro_f1=float(np.mean(f1[present])) if present.any() else float("nan"),
        balanced_accuracy=float(np.nanmean(recall)) if (support > 0).any() else float("nan"),
        recall=recall,
        fpr=fpr,
        fnr=1.0 - recall,
        selection_rate=predicted / n if n else np.full(len(tp), np.nan),
    )


@dataclass(frozen=True)
class GroupTable:
    """One attribute (or intersection): its groups, each sample's group, and the
    per-group confusion matrices of the artefact and of the reference."""

    name: str
    members: tuple[str, ...]
    labels: list[str]
    codes: np.ndarray  # per sample: index into labels; -1 = left out (a missing value)
    confusion: list[np.ndarray]
    reference_confusion: list[np.ndarray] | None

    @property
    def included(self) -> np.ndarray:
        """Per sample: part of this attribute's audit (no left-out member value)."""
        return self.codes >= 0

    @property
    def n_missing(self) -> int:
        return int((self.codes < 0).sum())

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.codes[self.included], minlength=len(self.labels))


def _stacked_confusion(y_true: np.ndarray, y_pred: np.ndarray, *, n_classes: int) -> np.ndarray:
    """Confusion matrices of several models at once: y_pred is (n, models)."""
    yt = np.asarray(y_true, dtype=np.int64)
    yp = np.asarray(y_pred, dtype=np.int64).reshape(yt.size, -1)
    return np.stack([confusion(yt, yp[:, m], n_classes=n_classes) for m in range(yp.shape[1])])


def _cells(sensitive: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Each sample's cell (its combination of every attribute's value) and each cell's
    value of every attribute."""
    names = list(sensitive)
    joined = sensitive[names[0]].astype(str)
    for name in names[1:]:
        joined = np.char.add(np.char.add(joined.astype(str), "\x1f"), sensitive[name].astype(str))
    _, first, codes = np.unique(joined, return_index=True, return_inverse=True)
    return codes.astype(np.int64), {name: sensitive[name][first] for name in names}


def group_tables(
    member_sets: Sequence[tuple[str, ...]],
    sensitive: dict[str, np.ndarray],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    reference_pred: np.ndarray | None,
    n_classes: int,
) -> list[GroupTable]:
    """Disaggregate by each attribute and each intersection in ``member_sets``.

    One MetricFrame call over the cells (the observed combinations of ALL attributes),
    with the artefact's and the reference's predictions as the two columns of a 2-D
    y_pred; every group's confusion matrix is then the sum of its cells' matrices
    (counts are additive). fairlearn's per-row overhead makes one call per attribute
    and model several times slower.
    """
    from fairlearn.metrics import (
        MetricFrame,  # imported here: fairlearn pulls in scikit-learn (~2 s)
    )

    cell_codes, cell_values = _cells(sensitive)
    preds = y_pred[:, None] if reference_pred is None else np.column_stack([y_pred, reference_pred])
    frame = MetricFrame(
        metrics={"confusion": partial(_stacked_confusion, n_classes=n_classes)},
        y_true=y_true,
        y_pred=preds,
        sensitive_features=pd.Series(cell_codes, name="cell"),
    )
    by_cell = frame.by_group["confusion"]
    n_cells = len(next(iter(cell_values.values())))
    cell_cms = np.stack([np.asarray(by_cell.loc[c]) for c in range(n_cells)])  # (cells, models, C, C)

    tables = []
    for members in member_sets:
        keys = list(zip(*(cell_values[m].tolist() for m in members), strict=False))
        ordered = sorted({key for key in keys if LEFT_OUT not in key})
        index = {key: i for i, key in enumerate(ordered)}
        group_of_cell = np.array([index.get(key, -1) for key in keys], dtype=np.int64)
        cms = np.zeros((len(ordered),) + cell_cms.shape[1:], dtype=np.int64)
        kept = group_of_cell >= 0
        np.add.at(cms, group_of_cell[kept], cell_cms[kept])
        tables.append(
            GroupTable(
                name=INTERSECTION_SEP.join(members),
                members=tuple(members),
                labels=[INTERSECTION_SEP.join(key) for key in ordered],
                codes=group_of_cell[cell_codes],
                confusion=[cm[0] for cm in cms],
                reference_confusion=None if reference_pred is None else [cm[1] for cm in cms],
            )
        )
    return tables
