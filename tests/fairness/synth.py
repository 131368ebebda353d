"""Synthetic labels and predictions with planted per-group accuracies (tests only)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def groups(sizes: Mapping[str, int]) -> np.ndarray:
    """Group labels, one per sample, in blocks of the given sizes."""
    return np.repeat(np.array(list(sizes), dtype=object), list(sizes.values()))


def labels(n: int, rng: np.random.Generator, n_classes: int = len(CLASSES)) -> np.ndarray:
    return rng.integers(0, n_classes, n)


def predict(
    y_true: np.ndarray,
    group: np.ndarray,
    accuracy: Mapping[str, float],
    rng: np.random.Generator,
    *,
    exact: bool = False,
    n_classes: int = len(CLASSES),
) -> np.ndarray:
    """Predictions whose accuracy in each group is ``accuracy[group]``: exactly
    (round(acc*n) correct) with ``exact``, else each sample correct with that probability.
    Wrong predictions are uniform over the other classes."""
    wrong = (y_true + rng.integers(1, n_classes, y_true.size)) % n_classes
    correct = np.zeros(y_true.size, dtype=bool)
    for label, acc in accuracy.items():
        idx = np.flatnonzero(group == label)
        if exact:
            correct[rng.choice(idx, int(round(acc * idx.size)), replace=False)] = True
        else:
            correct[idx] = rng.random(idx.size) < acc
    return np.where(correct, y_true, wrong)


def perturb(pred: np.ndarray, share: float, rng: np.random.Generator, n_classes: int = len(CLASSES)) -> np.ndarray:
    """Another model's predictions: ``share`` of the samples get a random other label."""
    out = pred.copy()
    idx = rng.choice(pred.size, int(round(share * pred.size)), replace=False)
    out[idx] = (out[idx] + rng.integers(1, n_classes, idx.size)) % n_classes
    return out


def from_confusion(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(y_true, y_pred) realising a confusion matrix (rows true, columns predicted)."""
    cm = np.asarray(cm)
    pairs = [(t, p) for t in range(cm.shape[0]) for p in range(cm.shape[1]) for _ in range(int(cm[t, p]))]
    arr = np.array(pairs, dtype=np.int64)
    return arr[:, 0], arr[:, 1]
