"""Multiplicity: which tests form a family, how the family is adjusted.

Each kind of comparison is its own family (result.FAMILIES); only the ``verdict``
family (gap changes) decides the verdict. Inside a family the procedure is the
weighted Holm step-down (Holm 1979, section 5), which controls the family-wise error
rate at alpha under any dependence between the tests:

- every audited attribute gets a share of alpha: the marginal attributes share
  ``1 - INTERSECTION_SHARE`` equally, the intersections share ``INTERSECTION_SHARE``
  equally (all of it goes to the marginals when no intersection is audited, and an
  attribute with no testable comparison passes its share to the others);
- inside an attribute the share is split equally over its tested comparisons;
- step-down: sort by p / w; the j-th is rejected when it and every earlier one has
  p <= alpha * w / (sum of the weights not yet rejected). Adjusted p-values are the
  running maximum of (p / w) * (remaining weight), capped at 1.

So an attribute with 10 pairs (age, 5 bins) does not dilute a binary attribute, and
auditing intersections costs the marginals only ``INTERSECTION_SHARE`` of alpha; a
rejection passes its weight on (the Holm step), so e.g. the intersections that contain
a widened gender gap are tested at a larger level once the gender gap is rejected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

# Share of alpha given to all intersections together (when any is audited).
INTERSECTION_SHARE = 0.2


def weighted_holm(p_values: Sequence[float], weights: Sequence[float]) -> list[float]:
    """Weighted Holm adjusted p-values, in the input order (weights > 0, any total)."""
    p = np.asarray(p_values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if p.size == 0:
        return []
    if (w <= 0).any():
        raise ValueError("weighted_holm needs positive weights")
    w = w / w.sum()
    order = np.lexsort((np.arange(p.size), p / w))
    remaining = np.cumsum(w[order][::-1])[::-1]  # weight of this one and every later one
    steps = np.minimum(1.0, p[order] / w[order] * remaining)
    adjusted = np.empty_like(p)
    adjusted[order] = np.maximum.accumulate(steps)
    return adjusted.tolist()


def attribute_shares(tested: Mapping[str, int], intersections: set[str]) -> dict[str, float]:
    """Each attribute's share of alpha, from its number of tested comparisons (see above)."""
    live = [a for a, m in tested.items() if m > 0]
    marginal = [a for a in live if a not in intersections]
    crossed = [a for a in live if a in intersections]
    if not marginal or not crossed:
        return {a: 1.0 / len(live) for a in live}
    shares = {a: (1.0 - INTERSECTION_SHARE) / len(marginal) for a in marginal}
    shares.update({a: INTERSECTION_SHARE / len(crossed) for a in crossed})
    return shares


def comparison_weights(attributes: Sequence[str], intersections: set[str]) -> list[float]:
    """Weight of each tested comparison, given the attribute of each (in order)."""
    counts: dict[str, int] = {}
    for a in attributes:
        counts[a] = counts.get(a, 0) + 1
    shares = attribute_shares(counts, intersections)
    return [shares[a] / counts[a] for a in attributes]


def procedure_text() -> str:
    """One line for AuditSettings and the report."""
    return (
        "weighted Holm within each family; marginal attributes share "
        f"{1 - INTERSECTION_SHARE:.0%} of alpha equally and intersections {INTERSECTION_SHARE:.0%} "
        "(all of it without intersections), split equally over an attribute's tested comparisons; "
        "only the gap-change family decides the verdict"
    )
