"""Figures over populations of models (one per training seed), as the seed studies report them.

- :func:`spread`: mean over seeds with a Student-t interval of the mean (scipy).
- :func:`error_shift_over_seeds`: CEV and SDE per trial (reference seed k against its own
  compressed model k), then averaged over trials, as Simon Says reports them.
- :func:`population_cie`: Hooker et al.'s CIEs between the two populations (modal labels),
  the graded consistency score with a top-x % cut, each group's share of the CIEs against
  its share of the test set, and accuracy on the CIEs per group.
- :func:`demographic_parity`: fairlearn's demographic-parity difference of each class
  one-vs-rest (predicted as the class or not), and their maximum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgefair.contracts.study import Spread
from edgefair.fairness.cie import (
    accuracy_on_cie_by_group,
    compression_identified_exemplars,
    consistency_scores,
    modal_labels,
    top_share,
)
from edgefair.fairness.compression import error_shift
from edgefair.fairness.groups import group_tables


def spread(values: Sequence[float | None], *, alpha: float = 0.05, floor: float | None = None) -> Spread:
    """Mean of the finite values and the t interval of the mean (none with fewer than two).

    ``floor``: the quantity cannot go below it (CEV, SDE: 0); the interval is cut there, which
    keeps its coverage (the true value can never lie in the part cut away)."""
    from scipy import stats

    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return Spread(None, None, None, 0, [])
    mean = float(np.mean(vals))
    if len(vals) < 2:
        return Spread(mean, None, None, 1, vals)
    half = float(stats.t.ppf(1 - alpha / 2, len(vals) - 1) * np.std(vals, ddof=1) / np.sqrt(len(vals)))
    lo = mean - half if floor is None else max(floor, mean - half)
    return Spread(mean, lo, mean + half, len(vals), vals)


@dataclass(frozen=True)
class SeedErrorShift:
    """CEV/SDE of each trial and their spread over trials."""

    cev: Spread
    sde: Spread
    excluded_classes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"cev": self.cev.to_dict(), "sde": self.sde.to_dict(), "excluded_classes": self.excluded_classes}


def error_shift_over_seeds(y_true: np.ndarray, reference_preds: Sequence[np.ndarray],
                           compressed_preds: Sequence[np.ndarray], class_names: Sequence[str], *,
                           alpha: float = 0.05) -> SeedErrorShift:
    """CEV and SDE of each (reference k, compressed k) pair, averaged over the pairs."""
    shifts = [error_shift(y_true, [r], [c], class_names)
              for r, c in zip(reference_preds, compressed_preds, strict=True)]
    excluded = sorted({name for s in shifts for name in s.excluded_classes})
    return SeedErrorShift(spread([s.cev for s in shifts], alpha=alpha, floor=0.0),
                          spread([s.sde for s in shifts], alpha=alpha, floor=0.0), excluded)


@dataclass(frozen=True)
class CIEGroup:
    """One group's part in the CIEs of a population comparison."""

    group: str
    n: int
    share_of_test: float
    n_cie: int
    share_among_cie: float | None
    share_among_cie_ci: tuple[float, float] | None
    cie_rate: float
    share_among_top: float | None
    accuracy_on_cie_compressed: float | None
    accuracy_on_cie_reference: float | None


@dataclass(frozen=True)
class PopulationCIE:
    """CIEs of one compressed population against the reference population."""

    attribute: str
    n_reference_models: int
    n_compressed_models: int
    n: int
    share: float
    top: float
    n_top: int
    accuracy_on_cie: dict[str, float | None]
    groups: list[CIEGroup]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def population_cie(y_true: np.ndarray, reference_preds: Sequence[np.ndarray], compressed_preds: Sequence[np.ndarray],
                   groups: np.ndarray, *, attribute: str, n_classes: int, top: float = 0.1,
                   alpha: float = 0.05) -> PopulationCIE:
    """CIEs by modal label (``compression_identified_exemplars``) and by consistency score
    (the ``top`` share), broken down by the groups of one attribute."""
    y = np.asarray(y_true, dtype=np.int64)
    table = group_tables([(attribute,)], {attribute: np.asarray(groups).astype(str)}, y,
                         np.asarray(reference_preds[0]), None, n_classes)[0]
    res = compression_identified_exemplars(y, reference_preds, compressed_preds, [table], n_classes, alpha=alpha)
    is_cie = np.zeros(y.size, dtype=bool)
    is_cie[res.indices] = True
    flagged = top_share(consistency_scores(reference_preds, compressed_preds, n_classes), top)
    top_sizes = np.bincount(table.codes[flagged & table.included], minlength=len(table.labels))
    acc_c = accuracy_on_cie_by_group(y, modal_labels(compressed_preds, n_classes), is_cie, table)
    acc_r = accuracy_on_cie_by_group(y, modal_labels(reference_preds, n_classes), is_cie, table)
    n_top = int(flagged.sum())
    rows = [CIEGroup(group=g.group, n=g.n, share_of_test=g.share_of_test, n_cie=g.n_cie,
                     share_among_cie=g.share_among_cie, share_among_cie_ci=g.share_among_cie_ci,
                     cie_rate=g.cie_rate, share_among_top=float(top_sizes[i] / n_top) if n_top else None,
                     accuracy_on_cie_compressed=acc_c[g.group], accuracy_on_cie_reference=acc_r[g.group])
            for i, g in enumerate(res.groups)]
    return PopulationCIE(attribute=attribute, n_reference_models=len(reference_preds),
                         n_compressed_models=len(compressed_preds), n=res.n, share=res.share, top=top, n_top=n_top,
                         accuracy_on_cie=dict(res.accuracy_on_cie), groups=rows)


def demographic_parity(y_pred: np.ndarray, groups: np.ndarray, n_classes: int) -> dict[str, float]:
    """fairlearn's demographic-parity difference per class one-vs-rest; ``max`` and ``mean``
    over the classes (0: every group is predicted each class equally often)."""
    from fairlearn.metrics import demographic_parity_difference

    pred = np.asarray(y_pred)
    per = [float(demographic_parity_difference(pred == c, pred == c, sensitive_features=np.asarray(groups)))
           for c in range(n_classes)]
    return {"max": float(max(per)), "mean": float(np.mean(per)), **{str(c): v for c, v in enumerate(per)}}
