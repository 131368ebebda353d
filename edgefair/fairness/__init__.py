"""Subgroup fairness audit of FER model artefacts (pure computation, no I/O but plots).

    from edgefair.fairness import audit, format_table, summarize
    result = audit(y_true=..., y_pred=..., sensitive={"gender": ...}, class_names=...,
                   subjects=..., reference_pred=...)
    print(format_table(result)); json.dumps(result.to_dict(), allow_nan=False)
    row = summarize(result, is_reference=False)   # what the CLI, report and gate show

Methods and their simulation check: docs/fairness.md.
"""

from edgefair.fairness.audit import MIN_SUBJECTS, audit
from edgefair.fairness.compression import CEV_EXPLAINED, SDE_EXPLAINED
from edgefair.fairness.inputs import AuditInputError
from edgefair.fairness.plots import plot_group_accuracy
from edgefair.fairness.result import (
    AbsoluteState,
    AttributeMetrics,
    AttributeResult,
    AuditResult,
    AuditSettings,
    ChanceGroup,
    CIEGroupShare,
    CIEResult,
    ClassGaps,
    Comparison,
    ErrorShift,
    GroupMetrics,
    GroupResult,
    LargestGap,
    Metric,
    ReferenceResult,
    Verdict,
    VerdictThresholds,
)
from edgefair.fairness.state import ci_label
from edgefair.fairness.summary import AuditSummary, summarize
from edgefair.fairness.table import format_summary_table, format_table

__all__ = [
    "CEV_EXPLAINED",
    "MIN_SUBJECTS",
    "SDE_EXPLAINED",
    "AbsoluteState",
    "AttributeMetrics",
    "AttributeResult",
    "AuditInputError",
    "AuditResult",
    "AuditSettings",
    "AuditSummary",
    "CIEGroupShare",
    "CIEResult",
    "ChanceGroup",
    "ClassGaps",
    "Comparison",
    "ErrorShift",
    "GroupMetrics",
    "GroupResult",
    "LargestGap",
    "Metric",
    "ReferenceResult",
    "Verdict",
    "VerdictThresholds",
    "audit",
    "ci_label",
    "format_summary_table",
    "format_table",
    "plot_group_accuracy",
    "summarize",
]
