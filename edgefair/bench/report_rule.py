"""The recommendation rule of the report, applied to one device's rows."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgefair.bench.report_rows import ReportRow, _ms, _pct, _pt, _size

TIE_TOLERANCE = 0.02
RULE = (
    "Among the artefacts with verdict `pass` and a valid run on the device (stop rule met, no throttling or "
    "contention), take the "
    "Pareto-optimal ones (no other passing artefact is at least as fast, as small (gzip) and as accurate, "
    "and better in one of them) and recommend the one with the lowest p50 latency; p50 values within "
    f"{TIE_TOLERANCE:.0%} of the lowest count as a tie, broken by the smaller gzip size. On an emulated "
    "device latencies are not comparable, so the smallest gzip size decides."
)
VERDICTS = {
    "reference": "the uncompressed model every artefact is compared with: no compression verdict",
    "pass": ("compression changed nothing significant: no gap between two tested groups grew by ≥ 2 points "
             "(significant in the verdict family), accuracy ≥ 99% of the reference, every group tested. It does "
             "not mean fair: see the absolute state"),
    "insufficient-evidence": ("some group has fewer than min_n images or min_subjects subjects: its change cannot be "
                              "tested, so the audit cannot call the artefact unchanged for everyone"),
    "accuracy-drop": "accuracy below 99% of the uncompressed reference (MLPerf's rule)",
    "gap-widened": ("the accuracy gap between two tested groups grew by ≥ 2 points, significant after the weighted "
                    "Holm adjustment over the gap changes"),
    "not audited": "the run has no fairness audit",
    "run failed": "the artefact did not run on this device (error shown)",
}

@dataclass
class Recommendation:
    """What the report recommends for one device, in words and as a name."""

    device: str
    artifact: str | None  # None: nothing passes
    text: str  # one paragraph, Markdown
    candidate: str | None = None  # nothing passes: the best candidate ...
    reason: str | None = None  # ... and why it failed
    emulated: bool = False
    rule: str = RULE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def plain(self) -> str:
        """The recommendation as terminal text (no Markdown marks)."""
        return self.text.replace("**", "").replace("`", "")



def _by_rule(rows: list[ReportRow], emulated: bool) -> tuple[ReportRow, list[ReportRow]]:
    """The pick of RULE among ``rows`` (already filtered), and those it tied with on p50."""
    from edgefair.bench.report_plots import pareto_front

    def gz(r: ReportRow) -> float:
        return float(r.gzip_bytes if r.gzip_bytes is not None else r.size_bytes or 0)

    if emulated:
        front = [r for r, f in zip(rows, pareto_front([(gz(r), -(r.accuracy or 0)) for r in rows]), strict=True) if f]
        return min(front, key=lambda r: (gz(r), -(r.accuracy or 0), r.name)), []
    def p50(r: ReportRow) -> float:  # the caller passes only timed rows here
        return float(r.p50_s if r.p50_s is not None else float("inf"))

    keys = [(p50(r), gz(r), -(r.accuracy or 0)) for r in rows]
    front = [r for r, f in zip(rows, pareto_front(keys), strict=True) if f]
    fastest = min(p50(r) for r in front)
    tied = [r for r in front if p50(r) <= fastest * (1 + TIE_TOLERANCE)]
    pick = min(tied, key=lambda r: (gz(r), p50(r), -(r.accuracy or 0), r.name))
    return pick, [r for r in tied if r is not pick]


def _facts(r: ReportRow, emulated: bool) -> str:
    parts = []
    if not emulated and r.p50_s is not None:
        parts.append(f"p50 {_ms(r.p50_s)} ms")
    parts.append(f"gzip {_size(r.gzip_bytes)}")
    parts.append(f"accuracy {_pct(r.accuracy)}")
    if r.largest_gap is not None:
        parts.append(f"largest gap {_pt(r.largest_gap)} pt in {r.gap_attribute}")
    return ", ".join(parts)


def _skipped_note(skipped: list[ReportRow]) -> str:
    if not skipped:
        return ""
    return " Not considered, their run being invalid: " + ", ".join(f"`{r.name}`" for r in skipped) + "."


def _recommend_passing(device: str, valid_pass: list[ReportRow], emulated: bool, tail: str) -> Recommendation:
    pick, tied = _by_rule(valid_pass, emulated)
    tie = ""
    if tied:
        tie = (f" Its p50 ties (within {TIE_TOLERANCE:.0%}) with "
               + ", ".join(f"`{r.name}` ({_ms(r.p50_s)} ms)" for r in tied) + "; the smaller gzip size wins.")
    text = (f"**{device}: `{pick.name}`** ({_facts(pick, emulated)}), the "
            f"{'smallest' if emulated else 'fastest'} Pareto-optimal artefact with verdict pass "
            f"among {len(valid_pass)}.{tie}{tail}")
    return Recommendation(device=device, artifact=pick.name, text=text, emulated=emulated)


def _recommend_none(device: str, measured: list[ReportRow], emulated: bool, caveat: str,
                    note: str) -> Recommendation:
    audited = [r for r in measured if r.verdict is not None and r.valid]
    if not audited:
        text = (f"**{device}: no artefact passes.** No run on this device has both a valid measurement and a "
                f"fairness audit, so there is no candidate.{note}")
        return Recommendation(device=device, artifact=None, text=text, emulated=emulated)
    best, _ = _by_rule(audited, emulated)
    reason = _reason(best)
    text = (f"**{device}: no artefact passes.** Best candidate: `{best.name}` ({_facts(best, emulated)}), the one "
            f"the rule would pick if the verdict were ignored; it failed with verdict **{best.verdict}**: "
            f"{reason}{caveat}{note}")
    return Recommendation(device=device, artifact=None, text=text, candidate=best.name, reason=reason,
                          emulated=emulated)


def recommend(device: str, rows: list[ReportRow]) -> Recommendation:
    """Apply RULE to one device's rows."""
    emulated = any(r.emulated for r in rows)
    measured = [r for r in rows if r.ok and (emulated or r.p50_s is not None)]
    passing = [r for r in measured if r.verdict == "pass"]
    note = _skipped_note([r for r in passing if not r.valid])
    caveat = " Emulated device: latency is not comparable, so the smallest gzip size decided." if emulated else ""
    valid_pass = [r for r in passing if r.valid]
    if valid_pass:
        return _recommend_passing(device, valid_pass, emulated, caveat + note)
    return _recommend_none(device, measured, emulated, caveat, note)


def _reason(r: ReportRow) -> str:
    mine = [x for x in r.verdict_reasons if x.startswith(f"{r.verdict}:")]
    if mine:
        return mine[0].split(":", 1)[1].strip()
    return r.verdict_reasons[0] if r.verdict_reasons else f"verdict {r.verdict}"


