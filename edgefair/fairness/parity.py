"""Multiclass demographic parity and equalised odds across groups.

fairlearn's ``demographic_parity_difference`` / ``equalized_odds_difference`` are
binary; here each class is one-vs-rest and the per-class difference is max - min of
the group rates over tested groups (small groups would dominate max - min with
noise). Point values per class; ``metrics`` adds intervals, the reference and the change.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgefair.fairness.groups import ConfusionStats
from edgefair.fairness.result import ClassGaps


def class_gaps(rate: str, stats: Sequence[ConfusionStats], class_names: Sequence[str]) -> ClassGaps:
    """max - min over groups, per class, of one per-group rate (NaN rates skipped)."""
    per_class: dict[str, float | None] = {}
    for c, name in enumerate(class_names):
        values = np.array([getattr(s, rate)[c] for s in stats], dtype=np.float64)
        values = values[np.isfinite(values)]
        per_class[name] = float(values.max() - values.min()) if values.size >= 2 else None
    defined = {k: v for k, v in per_class.items() if v is not None}
    if not defined:
        return ClassGaps(rate=rate, per_class=per_class, max=None, worst_class=None)
    worst = max(defined, key=lambda k: defined[k])
    return ClassGaps(rate=rate, per_class=per_class, max=defined[worst], worst_class=worst)


def parity(
    stats: Sequence[ConfusionStats], class_names: Sequence[str]
) -> tuple[ClassGaps, ClassGaps, ClassGaps, float | None]:
    """(demographic parity, equalised-odds TPR, equalised-odds FPR, equalised odds max)
    over the given groups (pass only the tested ones)."""
    dp = class_gaps("selection_rate", stats, class_names)
    tpr = class_gaps("recall", stats, class_names)
    tpr.rate = "tpr"
    fpr = class_gaps("fpr", stats, class_names)
    maxima = [m for m in (tpr.max, fpr.max) if m is not None]
    return dp, tpr, fpr, (max(maxima) if maxima else None)
