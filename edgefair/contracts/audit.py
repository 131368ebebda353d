"""The settings an audit is stored under: everything that changes its result.

``bench fairness`` stores each audit under ``settings_key(AuditKey.to_dict())``, so an
audit of fewer attributes (or another alpha, reference, dataset ...) is stored beside a
wider one instead of replacing it; readers show the widest (``breadth``), then the newest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from math import comb
from typing import Any

AUDIT_KEY_SCHEMA = "edgefair.audit-key/1"
#: Default of ``min_subjects``: a group with fewer subjects is not tested. Chosen by simulation
#: (docs/fairness.md, scripts/fairness_sim.py): the smallest count at which the tests keep their
#: level AND can detect a large widening; with 2-3 subjects per group they cannot reject at all.
MIN_SUBJECTS = 5


@dataclass(frozen=True)
class AuditKey:
    """One audit's settings (``thresholds``: the verdict's knobs by name)."""

    reference: str
    dataset: str
    attributes: tuple[str, ...]
    intersections: bool = False
    min_n: int = 30
    min_subjects: int = MIN_SUBJECTS
    keep_missing: bool = False
    alpha: float = 0.05
    n_boot: int = 1000
    seed: int = 0
    thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def breadth(self) -> int:
        """How many attribute columns the audit covers: the attributes, plus their pairs with intersections."""
        n = len(self.attributes)
        return n + (comb(n, 2) if self.intersections else 0)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": AUDIT_KEY_SCHEMA, **asdict(self), "attributes": list(self.attributes)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AuditKey | None:
        """The key of a stored audit; None for one stored before keys had a schema."""
        if not isinstance(data, dict) or data.get("schema") != AUDIT_KEY_SCHEMA:
            return None
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{**fields, "attributes": tuple(fields.get("attributes") or ())})


def audit_breadth(settings: dict[str, Any] | None) -> int:
    """``AuditKey.breadth`` of stored settings; 0 for settings without a schema (older audits)."""
    key = AuditKey.from_dict(settings)
    return 0 if key is None else key.breadth
