"""Holm's step-down correction for multiple comparisons (scipy has none; statsmodels is
not a dependency)."""

from __future__ import annotations

from collections.abc import Sequence


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm (1979) adjusted p-values, in the input order.

    Sort the m p-values ascending; the i-th smallest (i = 0..m-1) is multiplied by
    m - i, capped at 1, and the running maximum keeps the adjusted values monotone
    (a hypothesis is rejected only if every smaller one was). Rejecting where the
    adjusted value is < alpha controls the family-wise error rate at alpha under any
    dependence between the tests.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        adjusted[i] = running
    return adjusted
