"""Subgroup fairness audit of FER model artefacts (pure computation, no I/O but plots).

    from edgefair.fairness import audit, format_table
    result = audit(y_true=..., y_pred=..., sensitive={"gender": ...}, class_names=...,
                   reference_pred=...)
    print(format_table(result)); json.dumps(result.to_dict(), allow_nan=False)
"""

from edgefair.fairness.audit import audit
from edgefair.fairness.inputs import AuditInputError
from edgefair.fairness.plots import plot_group_accuracy
from edgefair.fairness.result import (
    AttributeResult,
    AuditResult,
    AuditSettings,
    CIEGroupShare,
    CIEResult,
    ClassGaps,
    Comparison,
    ErrorShift,
    GroupResult,
    ReferenceResult,
    Verdict,
    VerdictThresholds,
)
from edgefair.fairness.table import format_table

__all__ = [
    "AttributeResult",
    "AuditInputError",
    "AuditResult",
    "AuditSettings",
    "CIEGroupShare",
    "CIEResult",
    "ClassGaps",
    "Comparison",
    "ErrorShift",
    "GroupResult",
    "ReferenceResult",
    "Verdict",
    "VerdictThresholds",
    "audit",
    "format_table",
    "plot_group_accuracy",
]
