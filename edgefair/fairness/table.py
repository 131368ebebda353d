"""Plain-text rendering for the terminal (monospace, no colours; wrap it in rich's
``Text`` or print it as is): ``format_table`` is one audit in full (``bench fairness
--verbose``), ``format_summary_table`` one row per artefact (the default)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edgefair.fairness.compression import CEV_EXPLAINED, SDE_EXPLAINED
from edgefair.fairness.result import AuditResult, Comparison, Interval, Metric
from edgefair.fairness.summary import AuditSummary


def _ci(ci: Interval | None, scale: float = 1.0, fmt: str = ".3f") -> str:
    if ci is None:
        return "[n/a]"
    return f"[{scale * ci[0]:{fmt}}, {scale * ci[1]:{fmt}}]"


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "n/a" if x is None else f"{x:{fmt}}"


def _mark(c: Comparison | None) -> str:
    if c is None:
        return ""
    if c.p_value is None:
        return " (untested)"
    return " *" if c.significant else ""


def _pts(c: Comparison | None) -> str:
    """A difference in accuracy points with its interval and significance mark."""
    if c is None:
        return ""
    return f"{100 * c.estimate:+.1f} {_ci(c.ci, 100, '+.1f')}{_mark(c)}"


def _adj(c: Comparison) -> str:
    return "untested" if c.p_adjusted is None else f"adjusted p={c.p_adjusted:.2g}"


def _metric(m: Metric | None, scale: float = 1.0, fmt: str = ".3f") -> str:
    if m is None or m.value is None:
        return "n/a"
    return f"{scale * m.value:{fmt}} {_ci(m.ci, scale, fmt)}"


def _change(m: Metric | None, scale: float = 100.0) -> str:
    if m is None or m.change is None:
        return ""
    return f"{scale * m.change:+.1f} {_ci(m.change_ci, scale, '+.1f')}"


def _grid(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)).rstrip() for r in rows]


def _header(result: AuditResult) -> list[str]:
    s = result.settings
    label = s.ci_label
    lines = [
        f"Fairness audit: n={result.n}, {len(result.class_names)} classes, alpha={s.alpha:g}, "
        f"verdict family: {s.n_verdict_tests} gap change(s), min_n={s.min_n}, min_subjects={s.min_subjects}",
        f"intervals: {s.interval_method}",
        f"families: {s.family_procedure}",
        f"accuracy {result.accuracy:.3f} {label} {_ci(result.accuracy_ci)}  macro-F1 {result.macro_f1:.3f}  "
        f"balanced accuracy {result.balanced_accuracy:.3f}",
    ]
    ref = result.reference
    if ref is not None:
        es = ref.error_shift
        excluded = ", ".join(f"{k} ({v})" for k, v in es.excluded_classes.items()) or "none"
        lines += [
            f"reference {ref.accuracy:.3f} {_ci(ref.accuracy_ci)}  change (pts) {_pts(ref.accuracy_change)}  "
            f"relative {_num(ref.relative_accuracy)}  churn {_metric(ref.churn)}",
            f"CEV {_num(es.cev, '.2f')} {_ci(es.cev_ci, 1, '.2f')} noise {_num(es.cev_noise, '.2f')} "
            f"p={_num(es.cev_p, '.2g')}  SDE {_num(es.sde, '.2f')} {_ci(es.sde_ci, 1, '.2f')} "
            f"noise {_num(es.sde_noise, '.2f')} p={_num(es.sde_p, '.2g')}",
            f"  over {len(es.classes)} classes; excluded: {excluded}",
            f"  {CEV_EXPLAINED}",
            f"  {SDE_EXPLAINED}",
        ]
        cie = ref.cie
        lines.append(
            f"CIE ({cie.definition}) {cie.n} = {100 * cie.share:.1f}% of the test set; accuracy on CIEs "
            f"compressed {_num(cie.accuracy_on_cie['compressed'])} / reference {_num(cie.accuracy_on_cie['reference'])}"
        )
    return lines


def _attribute_head(a: Any) -> str:
    head = a.name
    if a.max_min_gap is not None:
        g = a.max_min_gap
        head += (
            f" - max-min gap {100 * g.estimate:.1f} pts {g.group} - {g.other} {_ci(g.ci, 100, '.1f')}, "
            f"{_adj(g)}{_mark(g)} (state)"
        )
    m = a.metrics
    head += f"; demographic parity {_metric(m.demographic_parity if m else None)}"
    head += f"; equalised odds {_metric(m.equalized_odds if m else None)}"
    if a.n_missing:
        head += f"; {a.n_missing} missing left out"
    return head


def _group_row(gr: Any, with_reference: bool) -> list[str]:
    row = [
        gr.group + ("" if gr.tested else " (untested)"),
        str(gr.n),
        "" if gr.n_subjects is None else str(gr.n_subjects),
        f"{gr.accuracy:.3f}",
        _ci(gr.accuracy_ci),
        f"{gr.macro_f1:.3f}",
    ]
    if with_reference:
        churn = gr.metrics.churn if gr.metrics else None
        row += [_num(gr.reference_accuracy), _pts(gr.accuracy_change), _pts(gr.gap_change),
                _num(churn.value if churn else None)]
    return row


def _attribute_lines(result: AuditResult, a_index: int) -> list[str]:
    a = result.attributes[a_index]
    s, ref, label = result.settings, result.reference, result.settings.ci_label
    lines = ["", _attribute_head(a)]
    header = ["group", "n", "subj" if result.has_subjects else "", "acc", label, "macro-F1"]
    if ref is not None:
        header += ["ref acc", f"change pts [{label}]", f"gap change vs {a.best_group or '-'}", "churn"]
    lines.extend(_grid([header] + [_group_row(gr, ref is not None) for gr in a.groups]))
    lines.extend(
        f"  {c.group} vs rest: {_pts(c)} pts, {_adj(c)} (descriptive)"
        for c in result.comparisons
        if c.attribute == a.name and c.kind == "vs-rest" and c.significant
    )
    untested = [g for g in a.groups if not g.tested]
    if untested:
        lines.append(f"  untested (min_n={s.min_n}, min_subjects={s.min_subjects}): "
                     + "; ".join(f"{g.group}: {g.untested_reason}" for g in untested))
    return lines


def format_table(result: AuditResult) -> str:
    """The full audit as text: header, per-attribute group tables, verdict, state, notes.

    ``*`` marks a comparison significant in its family; "(untested)" one left out of the
    tests because a group is untested.
    """
    lines = _header(result)
    for i in range(len(result.attributes)):
        lines.extend(_attribute_lines(result, i))
    lines += ["", f"verdict: {result.verdict.label}"]
    lines.extend(f"  - {r}" for r in result.verdict.reasons)
    lines.append("absolute state:")
    lines.extend(f"  - {r}" for r in result.state.statements)
    if result.largest_gap is not None:
        g = result.largest_gap
        lines.append(
            f"largest gap: {g.attribute}: {g.high} - {g.low} {100 * g.estimate:.1f} pts {_ci(g.ci, 100, '.1f')}, "
            f"simultaneous {_ci(g.ci_simultaneous, 100, '.1f')} ({g.candidates} candidate pairs)"
        )
    if result.notes:
        lines.append("notes:")
        lines.extend(f"  - {n}" for n in result.notes)
    return "\n".join(lines)


def _gap_cell(s: AuditSummary) -> str:
    g = s.largest_gap
    if g is None:
        return "n/a"
    return f"{100 * g.estimate:.1f} {_ci(g.ci, 100, '.1f')} {g.attribute}"


def _change_cell(s: AuditSummary) -> str:
    c = s.gap_change
    if c is None:
        return "-"
    p = "untested" if c.p_adjusted is None else f"p={c.p_adjusted:.2g}"
    return f"{100 * c.estimate:+.1f} {_ci(c.ci, 100, '+.1f')} {p} {c.attribute}"


def format_summary_table(summaries: Mapping[str, AuditSummary] | Sequence[tuple[str, AuditSummary]]) -> str:
    """One row per artefact: the compression verdict and the absolute state side by side."""
    items = list(summaries.items()) if isinstance(summaries, Mapping) else list(summaries)
    if not items:
        return "(no audits)"
    label = items[0][1].ci_label
    rows = [["artefact", "verdict", f"acc [{label}]", "acc change pts", "largest gap pts", "largest widening pts",
             "pre-existing gaps", "at/below chance", "CEV", "SDE", "churn"]]
    for name, s in items:
        change = s.accuracy_change
        rows.append([
            name,
            s.verdict,
            f"{s.accuracy:.3f} {_ci(s.accuracy_ci)}",
            "-" if change is None else f"{100 * change.estimate:+.1f} {_ci(change.ci, 100, '+.1f')}",
            _gap_cell(s),
            _change_cell(s),
            str(len(s.reference_gaps)),
            ", ".join(f"{b.model[:3]} {b.attribute}={b.group}" for b in s.below_chance) or "none",
            "-" if s.cev is None else f"{s.cev:.0f} (noise {_num(s.cev_noise, '.0f')}, p={_num(s.cev_p, '.2g')})",
            "-" if s.sde is None else f"{s.sde:.1f} (noise {_num(s.sde_noise, '.1f')}, p={_num(s.sde_p, '.2g')})",
            "-" if s.churn is None else f"{100 * s.churn:.1f}%",
        ])
    lines = _grid(rows, indent="")
    lines.append("")
    lines.append("verdict = what compression changed (pass: nothing significant; it does not mean fair); "
                 "pre-existing gaps / at-below-chance = how the reference and artefact stand.")
    lines.append(CEV_EXPLAINED + ".")
    lines.append(SDE_EXPLAINED + ".")
    return "\n".join(lines)
