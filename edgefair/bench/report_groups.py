"""One order of an attribute's groups for every plot and table of the report.

A dataset's declared values come first in their declared order (synthfer's skin tones
light, medium, dark; its genders and age bands); groups no declaration covers follow by
size (largest first), then name; a missing-value group ('unknown') comes last.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from edgefair.data.synthfer import AGES, GENDERS, SKIN_TONES

DECLARED: tuple[tuple[str, ...], ...] = (SKIN_TONES, GENDERS, AGES,
                                         ("white", "black", "asian", "indian", "latino", "middle-eastern", "others"))
LAST = ("unknown", "missing", "")


def _age_key(name: str) -> float | None:
    """'18-29' -> 18, '50+' -> 50, '0-2' -> 0: age bands sort by their lower bound."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[-–]\s*\d+|\+)\s*", name)
    return float(m.group(1)) if m else None


def group_order(sizes: Mapping[str, int] | Iterable[str]) -> list[str]:
    """The groups of one attribute in report order (``sizes``: group -> n, or just the names)."""
    n = dict(sizes) if isinstance(sizes, Mapping) else {g: 0 for g in sizes}
    names = [g for g in n if g not in LAST]
    tail = [g for g in LAST if g in n]
    for declared in DECLARED:
        if names and set(names) <= set(declared):
            return [g for g in declared if g in n] + tail
    ages = {g: _age_key(g) for g in names}
    if names and all(v is not None for v in ages.values()):
        return sorted(names, key=lambda g: (ages[g], g)) + tail
    return sorted(names, key=lambda g: (-n[g], g)) + tail
