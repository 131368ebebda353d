"""The report's figures, rendered to PNG bytes from plain values (no database here).

matplotlib's object API with the Agg canvas (no pyplot, no global backend state), as in
``edgefair.fairness.plots``; matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import io
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


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _scale(ax: Any, values: Sequence[float]) -> None:
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_xscale("log")


@dataclass(frozen=True)
class _Panel:
    """One panel of the Pareto figure: which value is on x and how it is styled."""

    attr: str
    xlabel: str
    is_latency: bool
    emulated: bool

    def x(self, p: ParetoPoint) -> float:
        return float(getattr(p, self.attr))

    def xy(self, sel: Sequence[ParetoPoint]) -> tuple[list[float], list[float]]:
        return [self.x(p) for p in sel], [100 * p.accuracy for p in sel]


def _optimal(panel: _Panel, pts: Sequence[ParetoPoint]) -> list[ParetoPoint]:
    """Pareto-optimal among the points the panel's front considers (invalid runs leave the latency front)."""
    eligible = [p for p in pts if p.valid or not panel.is_latency]
    front = pareto_front([(panel.x(p), -p.accuracy) for p in eligible])
    return [p for p, f in zip(eligible, front, strict=True) if f]


def _scatter(ax: Any, panel: _Panel, pts: Sequence[ParetoPoint], optimal: Sequence[ParetoPoint], cmap: Any,
             norm: Any) -> None:
    for marker, sel in (("o", [p for p in pts if p.verdict == "pass"]), ("^", [p for p in pts if p.verdict != "pass"])):
        if sel:
            colours = [(0.73, 0.73, 0.73, 1.0) if p.gap_pt is None else cmap(norm(p.gap_pt)) for p in sel]
            ax.scatter(*panel.xy(sel), s=70, marker=marker, c=colours, edgecolors="#333333", linewidths=0.8, zorder=3)
    invalid = [p for p in pts if not p.valid] if panel.is_latency else []
    if invalid:
        ax.scatter(*panel.xy(invalid), s=110, marker="x", c="#555555", linewidths=1.2, zorder=4)
    if optimal:
        ax.scatter(*panel.xy(optimal), s=260, facecolors="none", edgecolors="black", linewidths=1.4, zorder=4)
    rec = [p for p in pts if p.recommended]
    if rec:
        ax.scatter(*panel.xy(rec), s=480, marker="*", facecolors="none", edgecolors="#1a7f37", linewidths=1.3,
                   zorder=4)


def _labels(ax: Any, panel: _Panel, pts: Sequence[ParetoPoint], optimal: Sequence[ParetoPoint]) -> None:
    """Labels of the Pareto-optimal points, alternating above and below to avoid collisions."""
    xs = [panel.x(p) for p in pts]
    mid = (min(xs) + max(xs)) / 2 if xs else 0.0
    for i, p in enumerate(sorted(optimal, key=lambda p: (panel.x(p), -p.accuracy))):
        right = panel.x(p) > mid  # label to the left of points in the right half
        ax.annotate(p.name + ("  \u2605 recommended" if p.recommended else ""), (panel.x(p), 100 * p.accuracy),
                    xytext=(-9 if right else 9, 7 if i % 2 == 0 else -13), textcoords="offset points", fontsize=8,
                    zorder=5, ha="right" if right else "left", fontweight="bold" if p.recommended else "normal",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75})
    fx = sorted(zip(*panel.xy(optimal), strict=True))
    if len(fx) > 1:
        ax.step([v[0] for v in fx], [v[1] for v in fx], where="post", ls="--", lw=0.9, c="#666666", zorder=2)


def _draw_panel(ax: Any, panel: _Panel, points: Sequence[ParetoPoint], cmap: Any, norm: Any) -> None:
    pts = [p for p in points if getattr(p, panel.attr) is not None]
    optimal = _optimal(panel, pts)
    _scatter(ax, panel, pts, optimal, cmap, norm)
    _labels(ax, panel, pts, optimal)
    _scale(ax, [panel.x(p) for p in pts])
    emulated = panel.is_latency and panel.emulated
    ax.set_xlabel(panel.xlabel + ("  (emulated: latency not comparable)" if emulated else ""))
    ax.grid(alpha=0.3)
    ax.margins(x=0.12, y=0.08)
    if emulated:
        ax.set_facecolor("#f3f3f3")


def _legend_handles() -> list[Any]:
    from matplotlib.lines import Line2D

    return [
        Line2D([], [], marker="o", ls="", mfc="white", mec="#333333", label="verdict pass"),
        Line2D([], [], marker="^", ls="", mfc="white", mec="#333333", label="other verdict"),
        Line2D([], [], marker="o", ls="", mfc="#bbbbbb", mec="#333333", label="not audited"),
        Line2D([], [], marker="x", ls="", c="#555555", label="invalid run"),
        Line2D([], [], marker="o", ls="", mfc="none", mec="black", ms=12, label="Pareto-optimal"),
        Line2D([], [], marker="*", ls="", mfc="none", mec="#1a7f37", ms=14, label="recommended"),
    ]


def pareto_figure(device: str, points: Sequence[ParetoPoint], *, emulated: bool, gap_max: float) -> bytes:
    """Two panels for one device: p50 latency vs accuracy and gzip size vs accuracy.

    Colour = largest subgroup gap (colorbar); circle = verdict pass, triangle = any other
    verdict, grey = not audited; an 'x' marks an invalid run (stop rule, throttling, contention), left out of the
    latency front. Pareto-optimal artefacts (faster/smaller and more accurate than any
    other) get a black ring, a dashed front line and a label; the recommended one a star.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12.0, 4.8))
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.055, right=0.905, bottom=0.115, top=0.9, wspace=0.05)
    axes = fig.subplots(1, 2, sharey=True)
    cmap = colormaps[GAP_CMAP]
    norm = Normalize(vmin=0.0, vmax=max(gap_max, 1.0))
    panels = (_Panel("p50_ms", "p50 latency (ms)", True, emulated), _Panel("gzip_kib", "gzip size (KiB)", False,
                                                                          emulated))
    for ax, panel in zip(axes, panels, strict=True):
        _draw_panel(ax, panel, points, cmap, norm)
    axes[0].set_ylabel("accuracy (%)")
    fig.suptitle(f"{device}: accuracy against p50 latency and gzip size (up and left is better; "
                 "ring: Pareto-optimal)", fontsize=10)
    cax = fig.add_axes((0.925, 0.115, 0.013, 0.785))
    fig.colorbar(_mappable(cmap, norm), cax=cax, label="largest subgroup gap (accuracy points)")
    axes[1].legend(handles=_legend_handles(), fontsize=7, loc="lower right", framealpha=0.85)
    return _png(fig)


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
