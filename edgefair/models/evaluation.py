"""Test-split summary printed after training: overall and per-group figures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from fairlearn.metrics import MetricFrame
from sklearn.metrics import accuracy_score, f1_score

from edgefair.data.sample import Sample


def group_summary(samples: Sequence[Sample], y_pred: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy and macro-F1 overall, and accuracy with n for each group of each attribute."""
    y_true = np.array([s.label for s in samples])
    labels = list(range(len(class_names)))
    out: dict = {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "groups": {},
    }
    attrs: dict[str, None] = {}
    for s in samples:
        for k in s.attributes:
            attrs.setdefault(k, None)
    for attr in attrs:
        sf = np.array([s.attributes.get(attr, "unknown") for s in samples])
        mf = MetricFrame(metrics={"accuracy": accuracy_score, "n": lambda yt, yp: len(yt)},
                         y_true=y_true, y_pred=y_pred, sensitive_features={attr: sf})
        by = mf.by_group
        out["groups"][attr] = {
            str(g): {"accuracy": float(by.loc[g, "accuracy"]), "n": int(by.loc[g, "n"])} for g in by.index
        }
    return out
