"""The report's fairness section, from the stored audits (``edgefair.fairness``'s records).

Per artefact, the two statements (what compression changed: the verdict; how the reference
and the artefact stand: pre-existing gaps, groups at or below chance), the accuracy
change, the largest gap and widening, CEV/SDE against the level noise alone reaches, and
churn; then per attribute the seed studies' metrics (accuracy, macro-F1, per-class recall,
churn per group; demographic parity and equalised odds per attribute), each with its
interval, the reference's value and the change. Intervals are labelled from the audit's
alpha.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edgefair.bench.report_groups import group_order
from edgefair.fairness import CEV_EXPLAINED, SDE_EXPLAINED, AuditResult, AuditSummary, Metric

Escape = Callable[[Any], str]


@dataclass
class FairnessEntry:
    """One artefact's widest audit, with the devices it was audited on identically."""

    name: str
    devices: list[str]
    summary: AuditSummary
    result: AuditResult | None  # None when the stored audit cannot be read back (an older schema)


def entries(rows: Sequence[Any]) -> list[FairnessEntry]:
    """One entry per artefact that has an audit summary; devices with the same summary merged."""
    out: dict[tuple[str, str], FairnessEntry] = {}
    for r in rows:
        s = r.audit_summary
        if s is None:
            continue
        key = (r.name, repr(s.to_dict()))
        if key in out:
            if r.device not in out[key].devices:
                out[key].devices.append(r.device)
            continue
        out[key] = FairnessEntry(r.name, [r.device], s, _result(r.audit))
    return sorted(out.values(), key=lambda e: (not e.summary.is_reference, e.name, e.devices))


def _result(audit: dict[str, Any] | None) -> AuditResult | None:
    try:
        return AuditResult.from_dict(audit) if audit else None
    except (ValueError, TypeError, KeyError):
        return None


# ------------------------------------------------------------------ cells
def _pt(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _ci(ci: Sequence[float] | None, scale: float = 100.0, fmt: str = ".1f") -> str:
    return "" if ci is None else f" [{scale * ci[0]:{fmt}}, {scale * ci[1]:{fmt}}]"


def state_text(s: AuditSummary) -> str:
    """The absolute state: the reference's significant pre-existing gaps and groups at or below chance."""
    return "; ".join(s.statements[1:]) or "–"


def short_state(s: AuditSummary) -> str:
    """The absolute state in a few words: pre-existing gaps of the reference, groups at or below chance."""
    parts = []
    if s.reference_gaps:
        worst = max(s.reference_gaps, key=lambda g: g.estimate)
        parts.append(f"{len(s.reference_gaps)} pre-existing gap(s), largest {worst.attribute} {worst.high} − "
                     f"{worst.low} {_pt(worst.estimate)} pt")
    for model in ("artefact", "reference"):
        groups = [b.group if b.attribute == b.group else f"{b.attribute}={b.group}"
                  for b in s.below_chance if b.model == model]
        if groups:
            more = f" +{len(groups) - 3} more" if len(groups) > 3 else ""
            parts.append(f"{model} at/below chance: {', '.join(groups[:3])}{more}")
    return "; ".join(parts) or "no pre-existing gap, no group at chance"


def effect_text(s: AuditSummary) -> str:
    return s.statements[0] if s.statements else s.verdict


def _change(s: AuditSummary) -> str:
    c = s.accuracy_change
    ref = "" if s.reference_accuracy is None else f" (ref {_pt(s.reference_accuracy)} %)"
    acc = f"{_pt(s.accuracy)} %{_ci(s.accuracy_ci)}{ref}"
    return acc if c is None else f"{acc}; change {100 * c.estimate:+.1f}{_ci(c.ci, fmt='+.1f')} pt"


def _gap(s: AuditSummary) -> str:
    g = s.largest_gap
    if g is None:
        return "– (fewer than 2 tested groups)"
    return f"{_pt(g.estimate)}{_ci(g.ci)} pt, {g.attribute}: {g.high} − {g.low}"


def _widening(s: AuditSummary) -> str:
    w = s.gap_change
    if w is None:
        return "–"
    p = "" if w.p_adjusted is None else f", adjusted p {w.p_adjusted:.2g}"
    return (f"{100 * w.estimate:+.1f}{_ci(w.ci, fmt='+.1f')} pt, {w.attribute}: {w.other} − {w.group} "
            f"({_pt(w.reference_gap)} → {_pt(w.artefact_gap)}{p})")


def _shift(value: float | None, ci: Sequence[float] | None, noise: float | None, p: float | None,
           fmt: str) -> str:
    if value is None:
        return "–"
    interval = "" if ci is None else f" [{ci[0]:{fmt}}, {ci[1]:{fmt}}]"
    noise_text = "" if noise is None else f"; noise alone reaches {noise:{fmt}}"
    p_text = "" if p is None else f", p {p:.2g}"
    return f"{value:{fmt}}{interval}{noise_text}{p_text}"


def _churn(s: AuditSummary) -> str:
    return "–" if s.churn is None else f"{_pt(s.churn)} %{_ci(s.churn_ci)}"


SUMMARY_COLUMNS = ("artefact", "verdict", "compression effect", "absolute state", "accuracy", "largest gap",
                   "largest widening", "CEV", "SDE", "churn")


def summary_cells(e: FairnessEntry) -> list[str]:
    s = e.summary
    name = e.name + ("" if len(e.devices) == 1 else f" ({', '.join(e.devices)})")
    return [name, s.verdict, effect_text(s), state_text(s), _change(s), _gap(s), _widening(s),
            _shift(s.cev, s.cev_ci, s.cev_noise, s.cev_p, ".0f"), _shift(s.sde, s.sde_ci, s.sde_noise, s.sde_p, ".1f"),
            _churn(s)]


# ------------------------------------------------------------------ per-group metrics
METRIC_COLUMNS = ("group", "n (subjects)", "tested", "accuracy", "macro-F1", "churn", "recall per class")


def _metric(m: Metric | None) -> str:
    if m is None or m.value is None:
        return "–"
    ref = "" if m.reference is None else f" (ref {_pt(m.reference)})"
    change = "" if m.change is None else f" {100 * m.change:+.1f}{_ci(m.change_ci, fmt='+.1f')}"
    return f"{_pt(m.value)}{_ci(m.ci)}{ref}{change}"


def _group_row(g: Any) -> list[str]:
    n = f"{g.n}" + ("" if g.n_subjects is None else f" ({g.n_subjects})")
    tested = "yes" if g.tested else f"no: {g.untested_reason or 'too small'}"
    ref = "" if g.reference_accuracy is None else f" (ref {_pt(g.reference_accuracy)})"
    change = "" if g.accuracy_change is None else \
        f" {100 * g.accuracy_change.estimate:+.1f}{_ci(g.accuracy_change.ci, fmt='+.1f')}"
    m = g.metrics
    recall = "–" if m is None else ", ".join(f"{k} {_pt(v.value)}" for k, v in m.recall.items())
    return [g.group, n, tested, f"{_pt(g.accuracy)}{_ci(g.accuracy_ci)}{ref}{change}",
            _metric(None if m is None else m.macro_f1), _metric(None if m is None else m.churn), recall]


def attribute_tables(result: AuditResult) -> list[tuple[str, str, list[list[str]]]]:
    """(attribute, its parity line, one row per group) for every audited attribute."""
    out = []
    for a in result.attributes:
        parity = "–" if a.metrics is None else (f"demographic parity {_metric(a.metrics.demographic_parity)} pt; "
                                                f"equalised odds {_metric(a.metrics.equalized_odds)} pt")
        missing = f"; {a.n_missing} image(s) without a value left out" if a.n_missing else ""
        order = {g: i for i, g in enumerate(group_order({g.group: g.n for g in a.groups}))}
        groups = sorted(a.groups, key=lambda g: order.get(g.group, len(order)))
        out.append((a.name, parity + missing, [_group_row(g) for g in groups]))
    return out


def _legend(entries_: Sequence[FairnessEntry]) -> str:
    label = entries_[0].summary.ci_label if entries_ else "95% CI"
    return (f"Intervals are {label}s (subject-aware where the data has subject ids); values in accuracy points "
            "unless marked. The verdict says what compression changed (`pass`: nothing significant, which does not "
            f"mean fair); the absolute state says how the reference and the artefact stand. {CEV_EXPLAINED}. "
            f"{SDE_EXPLAINED}. Per group: value [interval] (reference value) change [interval].")


# ------------------------------------------------------------------ Markdown / HTML
def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return (["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
            + ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows])


def markdown(entries_: Sequence[FairnessEntry]) -> list[str]:
    out = ["## Fairness: what compression changed, and how each model stands", ""]
    if not entries_:
        return out + ["No audits stored (run `bench fairness`).", ""]
    out += [_legend(entries_), ""] + md_table(SUMMARY_COLUMNS, [summary_cells(e) for e in entries_]) + [""]
    for e in entries_:
        if e.result is None:
            continue
        out += [f"### Per-group metrics: `{e.name}`", ""]
        for attr, parity, rows in attribute_tables(e.result):
            out += [f"**{attr}**: {parity}", ""] + md_table(METRIC_COLUMNS, rows) + [""]
    return out


def html_table(columns: Sequence[str], rows: Sequence[Sequence[str]], e: Escape, cls: str) -> str:
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<div class="tablewrap"><table class="results {cls}"><thead><tr>{head}</tr></thead><tbody>{body}' \
           "</tbody></table></div>"


def html(entries_: Sequence[FairnessEntry], e: Escape, *, details: bool = True) -> str:
    out = ['<h2 id="fairness">Fairness: what compression changed, and how each model stands</h2>']
    if not entries_:
        return out[0] + "<p>No audits stored (run <code>bench fairness</code>).</p>"
    out.append(f'<p class="rule">{e(_legend(entries_))}</p>')
    out.append(html_table(SUMMARY_COLUMNS, [summary_cells(x) for x in entries_], e, "fairness"))
    for x in entries_ if details else ():
        if x.result is None:
            continue
        parts = [f"<details><summary>Per-group metrics: <code>{e(x.name)}</code> ({e(x.summary.verdict)})</summary>"]
        for attr, parity, rows in attribute_tables(x.result):
            parts.append(f"<h3>{e(attr)}</h3><p class=\"rule\">{e(parity)}</p>")
            parts.append(html_table(METRIC_COLUMNS, rows, e, "metrics"))
        out.append("".join(parts) + "</details>")
    return "\n".join(out)
