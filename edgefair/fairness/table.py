"""Plain-text rendering of an AuditResult for the terminal (monospace, no colours;
wrap it in rich's ``Text`` or print it as is)."""

from __future__ import annotations

from collections.abc import Sequence

from edgefair.fairness.result import AuditResult, Comparison, Interval


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


def _holm(c: Comparison) -> str:
    return "untested" if c.p_holm is None else f"Holm p={c.p_holm:.2g}"


def _grid(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]


def format_table(result: AuditResult) -> str:
    """The audit as a text report: header, per-attribute group tables, verdict, notes.

    ``*`` marks a Holm-significant comparison; "(untested)" one left out of the tests
    because a group has n < min_n.
    """
    s = result.settings
    ref = result.reference
    lines = [
        f"Fairness audit: n={result.n}, {len(result.class_names)} classes, alpha={s.alpha:g}, "
        f"Holm over {s.n_tested} tested comparisons, min_n={s.min_n}, intervals: {s.interval_method}",
        f"accuracy {result.accuracy:.3f} {_ci(result.accuracy_ci)}  macro-F1 {result.macro_f1:.3f}  "
        f"balanced accuracy {result.balanced_accuracy:.3f}",
    ]
    if ref is not None:
        lines.append(
            f"reference {ref.accuracy:.3f} {_ci(ref.accuracy_ci)}  change (pts) {_pts(ref.accuracy_change)}  "
            f"relative {_num(ref.relative_accuracy)}  agreement {ref.agreement:.3f}"
        )
        es = ref.error_shift
        excluded = ", ".join(f"{k} ({v})" for k, v in es.excluded_classes.items()) or "none"
        lines.append(
            f"CEV {_num(es.cev, '.2f')}  SDE {_num(es.sde, '.2f')}  "
            f"over {len(es.classes)} classes; excluded: {excluded}"
        )
        cie = ref.cie
        lines.append(
            f"CIE ({cie.definition}) {cie.n} = {100 * cie.share:.1f}% of the test set; accuracy on CIEs "
            f"compressed {_num(cie.accuracy_on_cie['compressed'])} / reference {_num(cie.accuracy_on_cie['reference'])}"
        )

    for a in result.attributes:
        lines.append("")
        head = f"{a.name}"
        if a.max_min_gap is not None:
            g = a.max_min_gap
            head += (
                f" - max-min gap {100 * g.estimate:.1f} pts {g.group} - {g.other} {_ci(g.ci, 100, '.1f')}, "
                f"{_holm(g)}{_mark(g)}"
            )
        head += (
            f"; demographic parity {_num(a.demographic_parity.max)} ({a.demographic_parity.worst_class or '-'})"
            f"; equalised odds {_num(a.equalized_odds)}"
        )
        lines.append(head)
        header = ["group", "n", "acc", "95% CI", "macro-F1", "bal.acc"]
        if ref is not None:
            header += ["ref acc", "change pts [95% CI]", f"gap change vs {a.best_group or '-'}"]
        rows = [header]
        for gr in a.groups:
            row = [
                gr.group + ("" if gr.sufficient else f" (n<{s.min_n})"),
                str(gr.n),
                f"{gr.accuracy:.3f}",
                _ci(gr.accuracy_ci),
                f"{gr.macro_f1:.3f}",
                f"{gr.balanced_accuracy:.3f}",
            ]
            if ref is not None:
                row += [_num(gr.reference_accuracy), _pts(gr.accuracy_change), _pts(gr.gap_change)]
            rows.append(row)
        lines.extend(_grid(rows))
        vs_rest = [c for c in result.comparisons if c.attribute == a.name and c.kind == "vs-rest" and c.significant]
        for c in vs_rest:
            lines.append(f"  {c.group} vs rest: {_pts(c)} pts, {_holm(c)}")

    lines.append("")
    lines.append(f"verdict: {result.verdict.label}")
    lines.extend(f"  - {r}" for r in result.verdict.reasons)
    if result.notes:
        lines.append("notes:")
        lines.extend(f"  - {n}" for n in result.notes)
    return "\n".join(lines)
