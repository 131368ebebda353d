"""The report's figures from its rows: Pareto fronts per device, per-group accuracy per attribute."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from edgefair.bench.report_groups import group_order
from edgefair.bench.report_rows import ReportRow
from edgefair.bench.report_rule import Recommendation


@dataclass
class Plot:
    slug: str
    title: str
    png: bytes
    caption: str
    svg: str | None = None  # the HTML embeds this one when set (hover titles on names)
    device: str | None = None


def pareto_points(rows: list[ReportRow], rec: Recommendation) -> list[Any]:
    """The Pareto figures' points of one device: its successful runs with an accuracy."""
    from edgefair.bench.report_plots import ParetoPoint

    return [ParetoPoint(name=r.name, p50_ms=None if r.p50_s is None else 1000 * r.p50_s,
                        gzip_kib=None if r.gzip_bytes is None else r.gzip_bytes / 1024,
                        accuracy=r.accuracy, gap_pt=None if r.largest_gap is None else 100 * r.largest_gap,
                        verdict=r.verdict, valid=r.valid, recommended=rec.artifact == r.name)
            for r in rows if r.ok and r.accuracy is not None]


PARETO_CAPTION = ("{device}: accuracy against {what}, {n} artefacts. Only artefacts the rule considers (verdict "
                  "pass and a valid run) are coloured by their largest subgroup gap and enter the front (ring, dashed "
                  "line); the others are muted grey. Square: the reference; star: the recommendation; triangle: a "
                  "verdict other than pass; x: invalid run (stop rule, throttling or contention). Hover a marker or "
                  "a label for the full name.")


def _pareto_plots(devices: dict[str, list[ReportRow]], slugs: dict[str, str],
                  recs: dict[str, Recommendation], gap_max: float) -> list[Plot]:
    from edgefair.bench.report_plots import pareto_panel

    plots = []
    for device, rows in devices.items():
        pts = pareto_points(rows, recs[device])
        if not pts:
            continue
        emulated = any(r.emulated for r in rows)
        for kind, what in (("latency", "p50 latency"), ("size", "gzip size")):
            slug = f"pareto-{slugs[device]}-{kind}"
            fig = pareto_panel(device, pts, kind=kind, emulated=emulated, gap_max=gap_max, gid=slug)
            cap = PARETO_CAPTION.format(device=device, what=what, n=len(pts))
            if emulated and kind == "latency":
                cap += " Emulated device: latency not comparable."
            plots.append(Plot(slug, f"Pareto front: {device}, {what}", fig.png(), cap, fig.svg(), device))
    return plots


def _latest_audited(devices: dict[str, list[ReportRow]]) -> dict[str, list[ReportRow]]:
    """Per artefact name, its newest audited row on each device."""
    latest: dict[tuple[str, str], ReportRow] = {}
    for device, rows in devices.items():
        for r in rows:
            key = (r.name, device)
            if r.audit and (key not in latest or r.created_at >= latest[key].created_at):
                latest[key] = r
    by_name: dict[str, list[ReportRow]] = {}
    for (name, _), r in sorted(latest.items()):
        by_name.setdefault(name, []).append(r)
    return by_name


def _attribute(r: ReportRow, attr: str) -> dict[str, Any] | None:
    return next((x for x in (r.audit or {}).get("attributes") or [] if x["name"] == attr), None)


def _group_values(a: dict[str, Any], groups: dict[str, int]) -> dict[str, tuple[float, float, float, bool]]:
    vals = {}
    for g in a.get("groups") or []:
        groups.setdefault(g["group"], g["n"])
        lo, hi = g["accuracy_ci"]
        vals[g["group"]] = (g["accuracy"], lo, hi, bool(g.get("tested", g.get("sufficient", True))))
    return vals


def _reference_values(a: dict[str, Any]) -> dict[str, tuple[float, float, float, bool]]:
    return {g["group"]: (g["reference_accuracy"], *g["reference_accuracy_ci"],
                         bool(g.get("tested", g.get("sufficient", True))))
            for g in a.get("groups") or []
            if g.get("reference_accuracy") is not None and g.get("reference_accuracy_ci")}


@dataclass
class _AttributeSeries:
    """What one attribute's forest plot shows."""

    series: list[Any] = field(default_factory=list)
    groups: dict[str, int] = field(default_factory=dict)
    reference: tuple[str, dict[str, tuple[float, float, float, bool]]] | None = None
    min_n: int = 30
    ci_label: str = "95% CI"


def _collect_series(by_name: dict[str, list[ReportRow]], attr: str) -> _AttributeSeries:
    from edgefair.bench.report_plots import GroupSeries

    out = _AttributeSeries()
    for name, rs in by_name.items():
        distinct: dict[str, list[tuple[ReportRow, dict[str, Any]]]] = {}
        for r in rs:
            a = _attribute(r, attr)
            if a is not None:
                distinct.setdefault(json.dumps(a["groups"], sort_keys=True), []).append((r, a))
        for same in distinct.values():
            r, a = same[0]
            out.min_n = (r.audit or {}).get("settings", {}).get("min_n", out.min_n)
            out.ci_label = r.audit_summary.ci_label if r.audit_summary else out.ci_label
            label = name if len(distinct) == 1 else f"{name} @ {', '.join(x.device for x, _ in same)}"
            out.series.append(GroupSeries(label=label, verdict=r.verdict, values=_group_values(a, out.groups)))
            refs = _reference_values(a)
            if out.reference is None and refs:
                out.reference = (r.reference or "reference", refs)
    return out


def _group_plot(by_name: dict[str, list[ReportRow]], attr: str) -> Plot | None:
    from edgefair.bench.report_plots import GroupSeries, group_figure

    got = _collect_series(by_name, attr)
    if not got.series:
        return None
    series = got.series
    if got.reference is not None:  # the reference's own audit may be among the rows: do not draw it twice
        series = [s for s in series if s.label != got.reference[0]]
        series.insert(0, GroupSeries(label=f"reference ({got.reference[0]})", verdict=None, values=got.reference[1]))
    groups = [(g, got.groups[g]) for g in group_order(got.groups)]
    png = group_figure(f"Accuracy by {attr}: reference and artefacts ({got.ci_label}s)", series,
                       groups, got.min_n)
    cap = (f"Accuracy by {attr}: the reference and each artefact, {got.ci_label}s (Wilson on the effective sample "
           "size: images of one subject count less); dotted lines: the "
           f"reference's accuracy per group; hollow: an untested group (fewer than min_n = {got.min_n} images or "
           "min_subjects subjects). An artefact audited identically on every "
           "device is drawn once; otherwise its devices are named. The label's colour is the verdict.")
    return Plot("groups-" + re.sub(r"[^A-Za-z0-9._-]+", "_", attr), f"Per-group accuracy: {attr}", png, cap)


def _group_plots(devices: dict[str, list[ReportRow]]) -> list[Plot]:
    """Per attribute, one forest plot: the reference then each artefact's audit.

    An artefact whose audits are identical on every device (the same predictions) is
    drawn once; otherwise once per device, labelled ``name @ device``.
    """
    by_name = _latest_audited(devices)
    attrs: list[str] = []
    for rs in by_name.values():
        for r in rs:
            attrs += [a["name"] for a in (r.audit or {}).get("attributes") or [] if a["name"] not in attrs]
    plots = [_group_plot(by_name, attr) for attr in attrs]
    return [p for p in plots if p is not None]


