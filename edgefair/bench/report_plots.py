"""The report's figures, rendered to PNG bytes from plain values (no database here).

matplotlib's object API with the Agg canvas (no pyplot, no global backend state), as in
``edgefair.fairness.plots``; matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DPI = 110
GAP_CMAP = "YlOrRd"
VERDICT_COLOURS = {
    "pass": "#1a7f37",
    "insufficient-evidence": "#9a6700",
    "accuracy-drop": "#bc4c00",
    "gap-widened": "#cf222e",
}


def pareto_front(points: Sequence[Sequence[float]]) -> list[bool]:
    """For points to MINIMISE in every coordinate, which are Pareto-optimal.

    A point is dominated when another is <= in every coordinate and < in one; equal
    points are all optimal.
    """
    out = []
    for i, p in enumerate(points):
        dominated = any(
            j != i and all(a <= b for a, b in zip(q, p, strict=True)) and any(a < b for a, b in zip(q, p, strict=True))
            for j, q in enumerate(points)
        )
        out.append(not dominated)
    return out


@dataclass
class ParetoPoint:
    name: str
    p50_ms: float | None
    gzip_kib: float | None
    accuracy: float  # fraction
    gap_pt: float | None  # largest subgroup gap, accuracy points
    verdict: str | None
    valid: bool
    recommended: bool = False

    @property
    def is_reference(self) -> bool:
        return self.verdict == "reference"


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _svg(fig: Any, titles: dict[str, str]) -> str:
    """The figure as an inline SVG (text kept as text); each ``gid`` in ``titles`` gets a hover <title>."""
    from matplotlib import rc_context

    buf = io.StringIO()
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "edgefair"}):
        fig.savefig(buf, format="svg")
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    # inline in HTML the namespaces are implied; the metadata block only names matplotlib's URLs
    text = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", text, count=2)
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    for gid, title in titles.items():
        text = text.replace(f'<g id="{gid}">', f'<g id="{gid}"><title>{html.escape(title)}</title>', 1)
    return text


def _scale(ax: Any, values: Sequence[float]) -> None:
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_xscale("log")


def short_name(name: str, limit: int = 18) -> str:
    """``name`` cut in the middle to at most ``limit`` characters (the full name goes on hover)."""
    if len(name) <= limit:
        return name
    head = (limit - 1) // 2
    return name[:head] + "\u2026" + name[len(name) - (limit - 1 - head):]


@dataclass(frozen=True)
class _Panel:
    """One Pareto figure: which value is on x and how it is styled."""

    attr: str
    xlabel: str
    is_latency: bool
    emulated: bool

    def x(self, p: ParetoPoint) -> float:
        return float(getattr(p, self.attr))

    def xy(self, sel: Sequence[ParetoPoint]) -> tuple[list[float], list[float]]:
        return [self.x(p) for p in sel], [100 * p.accuracy for p in sel]

    def eligible(self, p: ParetoPoint) -> bool:
        """What the recommendation rule considers: verdict pass and a valid run (on either panel)."""
        return p.verdict == "pass" and p.valid


PANELS = {"latency": ("p50_ms", "p50 latency (ms)", True), "size": ("gzip_kib", "gzip size (KiB)", False)}


def _optimal(panel: _Panel, pts: Sequence[ParetoPoint]) -> list[ParetoPoint]:
    """Pareto-optimal among the eligible points (the rule's candidates)."""
    eligible = [p for p in pts if panel.eligible(p)]
    front = pareto_front([(panel.x(p), -p.accuracy) for p in eligible])
    return [p for p, f in zip(eligible, front, strict=True) if f]


def pareto_optimal(points: Sequence[ParetoPoint], *, kind: str, emulated: bool = False) -> list[ParetoPoint]:
    """The points ringed on the ``kind`` ('latency' or 'size') panel: Pareto-optimal among the eligible."""
    attr, xlabel, is_latency = PANELS[kind]
    panel = _Panel(attr, xlabel, is_latency, emulated)
    return _optimal(panel, [p for p in points if getattr(p, attr) is not None])


MUTED = (0.80, 0.80, 0.80, 0.55)


def _marker_size(p: ParetoPoint, optimal: Sequence[ParetoPoint]) -> float:
    """The largest marker drawn at ``p`` (scatter size, points²)."""
    return 480.0 if p.recommended else 260.0 if p in optimal else 110.0


def _scatter(ax: Any, panel: _Panel, pts: Sequence[ParetoPoint], optimal: Sequence[ParetoPoint], cmap: Any,
             norm: Any, gid: str) -> dict[str, str]:
    """One marker per point (its own SVG group, titled with the full name and values); returns gid -> title."""
    titles = {}
    for i, p in enumerate(pts):
        x, y = panel.x(p), 100 * p.accuracy
        marker = "s" if p.is_reference else "o" if p.verdict == "pass" else "^"
        if not panel.eligible(p) and not p.is_reference:
            colour, edge = MUTED, "#9a9a9a"
        else:
            colour = (0.73, 0.73, 0.73, 1.0) if p.gap_pt is None else cmap(norm(p.gap_pt))
            edge = "#333333"
        ax.scatter([x], [y], s=70, marker=marker, c=[colour], edgecolors=edge, linewidths=0.8, zorder=3,
                   gid=f"{gid}-pt-{i}")
        titles[f"{gid}-pt-{i}"] = (f"{p.name}: {panel.xlabel.split(' (')[0]} {x:.3g}, accuracy {y:.1f}%, "
                                   f"verdict {p.verdict or 'not audited'}" + ("" if p.valid else ", invalid run"))
    invalid = [p for p in pts if not p.valid]
    if invalid:
        ax.scatter(*panel.xy(invalid), s=110, marker="x", c="#555555", linewidths=1.2, zorder=4)
    if optimal:
        ax.scatter(*panel.xy(optimal), s=260, facecolors="none", edgecolors="black", linewidths=1.4, zorder=4)
    rec = [p for p in pts if p.recommended]
    if rec:
        ax.scatter(*panel.xy(rec), s=480, marker="*", facecolors="none", edgecolors="#1a7f37", linewidths=1.3,
                   zorder=4)
    return titles


# Candidate label offsets (points) around a marker, nearest first; (dx, dy, ha, va).
_DIRECTIONS = ((1, 0, "left", "center"), (-1, 0, "right", "center"), (0, 1, "center", "bottom"),
               (0, -1, "center", "top"), (1, 1, "left", "bottom"), (-1, 1, "right", "bottom"),
               (1, -1, "left", "top"), (-1, -1, "right", "top"))
_DISTANCES = (9.0, 15.0, 24.0, 36.0, 52.0)


def _marker_boxes(ax: Any, panel: _Panel, pts: Sequence[ParetoPoint], optimal: Sequence[ParetoPoint]) -> list[Any]:
    """Display-space boxes of every drawn marker (the largest one at each point)."""
    from matplotlib.transforms import Bbox

    boxes = []
    px_per_pt = ax.figure.dpi / 72.0
    for p in pts:
        cx, cy = ax.transData.transform((panel.x(p), 100 * p.accuracy))
        r = 0.5 * (_marker_size(p, optimal) ** 0.5) * px_per_pt
        boxes.append(Bbox.from_extents(cx - r, cy - r, cx + r, cy + r))
    return boxes


def _free(box: Any, taken: Sequence[Any], inside: Any) -> bool:
    """``box`` lies inside ``inside`` and clear of every box in ``taken`` (2 px apart)."""
    grown = box.expanded(1.0, 1.0).padded(2.0)
    return (inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1)
            and not any(grown.overlaps(t) for t in taken))


def _place(ax: Any, renderer: Any, xy: tuple[float, float], text: str, taken: list[Any], gid: str,
           bold: bool) -> Any:
    """The first candidate position where the label is clear of markers and labels (else the least bad)."""
    inside = ax.get_window_extent(renderer)
    best: tuple[float, Any] | None = None
    for d in _DISTANCES:
        for dx, dy, ha, va in _DIRECTIONS:
            ann = ax.annotate(text, xy, xytext=(dx * d, dy * d), textcoords="offset points", fontsize=7.5,
                              ha=ha, va=va, zorder=5, fontweight="bold" if bold else "normal", gid=gid,
                              annotation_clip=False)
            box = ann.get_window_extent(renderer)
            if _free(box, taken, inside):
                taken.append(box)
                if best is not None:
                    best[1].remove()
                return ann
            overlap = sum(max(0.0, min(box.x1, t.x1) - max(box.x0, t.x0)) * max(0.0, min(box.y1, t.y1) -
                                                                                  max(box.y0, t.y0)) for t in taken)
            if best is None or overlap < best[0]:
                if best is not None:
                    best[1].remove()
                best = (overlap, ann)
            else:
                ann.remove()
    assert best is not None
    taken.append(best[1].get_window_extent(renderer))
    return best[1]


def _leader(ax: Any, renderer: Any, xy: tuple[float, float], ann: Any) -> None:
    """A thin line from the marker to its label when the label had to move away from it."""
    box = ann.get_window_extent(renderer)
    px, py = ax.transData.transform(xy)
    nx, ny = min(max(px, box.x0), box.x1), min(max(py, box.y0), box.y1)  # the box's point nearest the marker
    if ((nx - px) ** 2 + (ny - py) ** 2) ** 0.5 < 2 * _DISTANCES[0]:
        return
    end = ax.transData.inverted().transform((nx, ny))
    ax.annotate("", xy, xytext=(float(end[0]), float(end[1])), zorder=4, annotation_clip=False,
                arrowprops={"arrowstyle": "-", "lw": 0.6, "color": "#777777", "shrinkA": 0, "shrinkB": 5})


def _label_text(p: ParetoPoint) -> str:
    name = short_name(p.name)
    if p.is_reference:
        return f"reference: {name}"
    return f"\u2605 {name} (recommended)" if p.recommended else name


def _labels(ax: Any, panel: _Panel, pts: Sequence[ParetoPoint], optimal: Sequence[ParetoPoint],
            gid: str) -> dict[str, str]:
    """Labels of the recommended, reference and Pareto-optimal points, each where it hits nothing."""
    fx = sorted(zip(*panel.xy(optimal), strict=True))
    if len(fx) > 1:
        ax.step([v[0] for v in fx], [v[1] for v in fx], where="post", ls="--", lw=0.9, c="#666666", zorder=2)
    renderer = ax.figure.canvas.get_renderer()
    taken = _marker_boxes(ax, panel, pts, optimal)
    chosen = [p for p in pts if p.recommended] + [p for p in pts if p.is_reference]
    chosen += [p for p in sorted(optimal, key=lambda p: (panel.x(p), -p.accuracy)) if p not in chosen]
    titles = {}
    for i, p in enumerate(chosen):
        lid = f"{gid}-lbl-{i}"
        xy = (panel.x(p), 100 * p.accuracy)
        _leader(ax, renderer, xy, _place(ax, renderer, xy, _label_text(p), taken, lid, p.recommended))
        titles[lid] = p.name
    return titles


def _legend_handles(panel: _Panel) -> list[Any]:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="o", ls="", mfc="white", mec="#333333", label="verdict pass (colour: gap)"),
        Line2D([], [], marker="^", ls="", mfc=MUTED, mec="#9a9a9a", label="other verdict (muted)"),
        Line2D([], [], marker="s", ls="", mfc="white", mec="#333333", label="reference"),
        Line2D([], [], marker="o", ls="", mfc="none", mec="black", ms=12, label="Pareto-optimal (pass)"),
        Line2D([], [], marker="*", ls="", mfc="none", mec="#1a7f37", ms=14, label="recommended"),
    ]
    handles.append(Line2D([], [], marker="x", ls="", c="#555555", label="invalid run (not eligible)"))
    return handles


@dataclass
class ParetoFigure:
    """One rendered Pareto panel: the figure (labels placed), and the hover titles of its SVG groups."""

    figure: Any
    titles: dict[str, str]

    def png(self) -> bytes:
        return _png(self.figure)

    def svg(self) -> str:
        return _svg(self.figure, self.titles)


def pareto_panel(device: str, points: Sequence[ParetoPoint], *, kind: str, emulated: bool, gap_max: float,
                 gid: str = "pareto") -> ParetoFigure:
    """Accuracy against p50 latency (``kind='latency'``) or gzip size (``'size'``) for one device.

    Only eligible artefacts (verdict pass and a valid run, as the rule demands) are coloured
    by their largest subgroup gap and enter the front (black rings, dashed line); the others are
    muted. The recommended one has a star, the reference a square; labels are placed where they
    cover no marker and no other label; the legend and the colour bar sit outside the data.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    attr, xlabel, is_latency = PANELS[kind]
    panel = _Panel(attr, xlabel, is_latency, emulated)
    fig = Figure(figsize=(6.4, 5.0), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cmap, norm = colormaps[GAP_CMAP], Normalize(vmin=0.0, vmax=max(gap_max, 1.0))
    pts = [p for p in points if getattr(p, attr) is not None]
    optimal = _optimal(panel, pts)
    titles = _scatter(ax, panel, pts, optimal, cmap, norm, gid)
    _scale(ax, [panel.x(p) for p in pts])
    lat_emulated = is_latency and emulated
    ax.set_xlabel(xlabel + ("  (emulated: not comparable)" if lat_emulated else ""))
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.margins(x=0.18, y=0.14)
    if lat_emulated:
        ax.set_facecolor("#f3f3f3")
    ax.set_title(f"{device}: accuracy vs {xlabel.split(' (')[0]} (up-left is better)", fontsize=9.5)
    fig.colorbar(_mappable(cmap, norm), ax=ax, label="largest subgroup gap (points)", fraction=0.04, pad=0.02)
    ax.legend(handles=_legend_handles(panel), fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13),
              ncol=2, frameon=False)
    fig.canvas.draw()  # the constrained layout settles the axes before labels are placed in display space
    fig.set_layout_engine("none")
    titles.update(_labels(ax, panel, pts, optimal, gid))
    return ParetoFigure(fig, titles)


def _mappable(cmap: Any, norm: Any) -> Any:
    from matplotlib.cm import ScalarMappable

    sm = ScalarMappable(norm=norm, cmap=cmap)
    sm.set_array([])
    return sm


@dataclass
class GroupSeries:
    """One row of the per-group plot: a model's accuracy in each group."""

    label: str
    verdict: str | None
    values: dict[str, tuple[float, float, float, bool]]  # group -> (acc, lo, hi, sufficient)


def group_figure(title: str, series: Sequence[GroupSeries], groups: Sequence[tuple[str, int]], min_n: int) -> bytes:
    """A forest plot: one row per model (the reference first), one colour per group,
    points at the accuracy with 95% Wilson bars; hollow points for groups with n < min_n;
    dotted vertical lines at the reference's accuracy in each group."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    n_rows = len(series)
    fig = Figure(figsize=(11.0, 1.2 + 0.42 * n_rows + 0.1 * len(groups)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    k = len(groups)
    step = 0.7 / max(k, 1)
    for gi, (group, _) in enumerate(groups):
        colour = f"C{gi % 10}"
        for ri, s in enumerate(series):
            if group not in s.values:
                continue
            acc, lo, hi, sufficient = s.values[group]
            y = ri - 0.35 + step * (gi + 0.5)
            ax.errorbar([100 * acc], [y], xerr=[[100 * max(acc - lo, 0.0)], [100 * max(hi - acc, 0.0)]], fmt="o", ms=5,
                        color=colour, mfc=colour if sufficient else "white", capsize=2.5, lw=1.1)
        if series and series[0].label.startswith("reference") and group in series[0].values:
            ax.axvline(100 * series[0].values[group][0], color=colour, ls=":", lw=0.9, alpha=0.8)
    ax.set_yticks(range(n_rows), [s.label + (f"  [{s.verdict}]" if s.verdict else "") for s in series],
                  fontsize=8)
    for tick, s in zip(ax.get_yticklabels(), series, strict=True):
        tick.set_color(VERDICT_COLOURS.get(s.verdict or "", "#222222"))
    ax.set_ylim(n_rows - 0.5, -0.5)
    for ri in range(1, n_rows):
        ax.axhline(ri - 0.5, color="#dddddd", lw=0.6)
    ax.set_xlabel("accuracy (%), 95% Wilson interval")
    ax.grid(axis="x", alpha=0.3)
    handles = [Line2D([], [], marker="o", ls="", color=f"C{i % 10}", label=f"{g} (n={n})")
               for i, (g, n) in enumerate(groups)]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
              title=f"group (hollow: n < {min_n})", title_fontsize=8)
    ax.set_title(title, fontsize=10)
    return _png(fig)
