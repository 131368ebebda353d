"""Compression-identified exemplars (Hooker et al. 2020, "Characterising bias in
compressed models").

With a population of models per side (several training seeds), a CIE is a test
example whose modal label among the compressed models differs from the modal label
among the reference models. With one model per side this reduces to the examples
whose predicted label differs. Ties in the mode go to the smallest class id (the
paper does not say; with an odd population size ties are rarer).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgefair.fairness.groups import GroupTable
from edgefair.fairness.intervals import wilson
from edgefair.fairness.result import CIEGroupShare, CIEResult


def modal_labels(preds: Sequence[np.ndarray], n_classes: int) -> np.ndarray:
    """Per example, the most frequent label across the models (ties: smallest id)."""
    stack = np.vstack([np.asarray(p, dtype=np.int64) for p in preds])  # (models, n)
    n = stack.shape[1]
    votes = np.zeros((n, n_classes), dtype=np.int64)
    np.add.at(votes, (np.broadcast_to(np.arange(n), stack.shape), stack), 1)
    return votes.argmax(axis=1)  # argmax returns the first maximum


def _accuracy(y_true: np.ndarray, y_pred: np.ndarray, mask: np.ndarray) -> float | None:
    return float((y_true[mask] == y_pred[mask]).mean()) if mask.any() else None


def compression_identified_exemplars(
    y_true: np.ndarray,
    reference_preds: Sequence[np.ndarray],
    compressed_preds: Sequence[np.ndarray],
    tables: Sequence[GroupTable],
    n_classes: int,
    *,
    alpha: float = 0.05,
) -> CIEResult:
    """CIEs, accuracy on and off them, and each group's share among them vs the test set
    (both among the samples audited for that attribute: missing values left out)."""
    ref = modal_labels(reference_preds, n_classes)
    comp = modal_labels(compressed_preds, n_classes)
    is_cie = ref != comp
    n = int(y_true.size)
    n_cie = int(is_cie.sum())
    groups: list[CIEGroupShare] = []
    for table in tables:
        sizes = table.sizes
        inside = table.included
        cie_sizes = np.bincount(table.codes[is_cie & inside], minlength=len(table.labels))
        n_in, n_cie_in = int(inside.sum()), int((is_cie & inside).sum())
        for g, label in enumerate(table.labels):
            share_test = float(sizes[g] / n_in)
            share_cie = float(cie_sizes[g] / n_cie_in) if n_cie_in else None
            groups.append(
                CIEGroupShare(
                    attribute=table.name,
                    group=label,
                    n=int(sizes[g]),
                    share_of_test=share_test,
                    n_cie=int(cie_sizes[g]),
                    share_among_cie=share_cie,
                    share_among_cie_ci=wilson(int(cie_sizes[g]), n_cie_in, alpha=alpha) if n_cie_in else None,
                    representation_ratio=(share_cie / share_test) if share_cie is not None else None,
                    cie_rate=float(cie_sizes[g] / sizes[g]),
                )
            )
    single = len(reference_preds) == 1 and len(compressed_preds) == 1
    return CIEResult(
        definition="disagreement" if single else "modal-label",
        n=n_cie,
        share=n_cie / n,
        indices=[int(i) for i in np.flatnonzero(is_cie)],
        accuracy_on_cie={"compressed": _accuracy(y_true, comp, is_cie), "reference": _accuracy(y_true, ref, is_cie)},
        accuracy_off_cie={
            "compressed": _accuracy(y_true, comp, ~is_cie),
            "reference": _accuracy(y_true, ref, ~is_cie),
        },
        groups=groups,
        n_reference_models=len(reference_preds),
        n_compressed_models=len(compressed_preds),
    )


def consistency_scores(reference_preds: Sequence[np.ndarray], compressed_preds: Sequence[np.ndarray],
                       n_classes: int) -> np.ndarray:
    """Per example, how far the compressed population left the reference's consensus:
    the share of reference models giving the reference modal label minus the share of
    compressed models giving it, in [-1, 1] (1: every reference model agreed and no
    compressed one did). Ranking by it and keeping the top x % is the graded form of
    Hooker et al.'s CIE (their modal-label rule flags a fixed set)."""
    ref = modal_labels(reference_preds, n_classes)
    agree_ref = np.mean([np.asarray(p) == ref for p in reference_preds], axis=0)
    agree_comp = np.mean([np.asarray(p) == ref for p in compressed_preds], axis=0)
    return (agree_ref - agree_comp).astype(np.float64)


def top_share(scores: np.ndarray, top: float) -> np.ndarray:
    """Mask of the ``top`` share (0 < top <= 1) of examples by score: exactly ceil(top·n),
    ties at the cut broken by example order, and only examples with a score above 0 (one
    nobody moved on is never flagged)."""
    if not 0 < top <= 1:
        raise ValueError(f"top share must be in (0, 1], got {top}")
    k = max(1, int(np.ceil(top * scores.size)))
    order = np.argsort(-scores, kind="stable")[:k]
    mask = np.zeros(scores.size, dtype=bool)
    mask[order] = True
    return mask & (scores > 0)


def accuracy_on_cie_by_group(y_true: np.ndarray, predicted: np.ndarray, is_cie: np.ndarray,
                             table: GroupTable) -> dict[str, float | None]:
    """Per group of ``table``, the accuracy of ``predicted`` (a modal label) on its CIEs."""
    return {label: _accuracy(y_true, predicted, is_cie & (table.codes == g)) for g, label in enumerate(table.labels)}
