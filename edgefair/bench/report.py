"""``bench report``: one self-contained HTML page and a Markdown summary from the results DB.

    info = write_report(Path("results/results.db"), Path("results/report"))
    info.html, info.markdown, info.plots, info.recommendations

The report reads ONLY the database (``edgefair.bench.store.Store``). Its parts:

- ``report_rows``: one ``ReportRow`` per stored run (artefact × device × settings), joined
  with its artefact and its widest audit;
- ``report_rule``: per device, the recommendation by ``RULE`` (verdict pass, valid run,
  Pareto-optimal, fastest; near-ties to the smaller gzip size);
- ``report_figures`` / ``report_plots``: per device, Pareto fronts of p50 latency and gzip
  size against accuracy (only eligible artefacts enter the front; labels placed clear of
  markers and of each other; inline SVG with the full names on hover), and per attribute
  the per-group accuracy forest plot (groups in ``report_groups`` order);
- ``report_html``: the table grouped by device and target with the sparsity levels
  together, sortable and filterable by a small inline script; the sparsity note and the
  per-artefact sections of ``report_artifacts``; the fairness section (``report_fairness``),
  per-op profiles (``report_timing``) and the environment fingerprints (``report_env``);
- ``report_compression``: plain vs distilled artefacts side by side, and (``bench sweep
  --seeds K``) each matrix cell's figures over seeds with CIEs by group;
- ``report_markdown``: report.md, linking the PNGs written to ``out_dir/plots/``.

``report.html`` holds its CSS, its script and its figures inline: no external URL. Every
file is written atomically (temporary file + ``os.replace``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefair.bench.report_compression import load_populations
from edgefair.bench.report_context import ReportContext
from edgefair.bench.report_figures import Plot, _group_plots, _pareto_plots
from edgefair.bench.report_html import _html
from edgefair.bench.report_markdown import _markdown
from edgefair.bench.report_rows import ReportError, ReportRow, _slug, load_rows
from edgefair.bench.report_rule import RULE, TIE_TOLERANCE, VERDICTS, Recommendation, recommend
from edgefair.contracts.jsonio import atomic_write_bytes

__all__ = ["RULE", "TIE_TOLERANCE", "VERDICTS", "Plot", "Recommendation", "ReportError", "ReportInfo", "ReportRow",
           "load_rows", "recommend", "write_report"]
PLOT_PREFIXES = ("pareto-", "groups-")


@dataclass
class ReportInfo:
    html: Path
    markdown: Path
    plots: list[Path]
    recommendations: list[Recommendation]
    n_rows: int
    db_path: Path

    @property
    def recommendation(self) -> Recommendation | None:
        """The first recommendation naming an artefact on a real (not emulated) device,
        else the first one (which then says that nothing passes)."""
        for r in self.recommendations:
            if r.artifact and not r.emulated:
                return r
        return self.recommendations[0] if self.recommendations else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "html": str(self.html),
            "markdown": str(self.markdown),
            "plots": [str(p) for p in self.plots],
            "rows": self.n_rows,
            "db": str(self.db_path),
            "recommendation": self.recommendation.to_dict() if self.recommendation else None,
            "recommendations": [r.to_dict() for r in self.recommendations],
        }



def write_report(db_path: Path, out_dir: Path) -> ReportInfo:
    """Write ``out_dir/report.html``, ``out_dir/report.md`` and ``out_dir/plots/*.png``.

    Raises ReportError (a ValueError) naming the database when it is missing, unreadable
    or holds no run.
    """
    db_path, out_dir = Path(db_path), Path(out_dir)
    rows = load_rows(db_path)
    devices: dict[str, list[ReportRow]] = {}
    for r in rows:
        devices.setdefault(r.device, []).append(r)
    taken: set[str] = set()
    slugs = {d: _slug(d, taken) for d in devices}
    recs = {d: recommend(d, rs) for d, rs in devices.items()}
    gaps = [100 * r.largest_gap for r in rows if r.largest_gap is not None]
    pareto = _pareto_plots(devices, slugs, recs, max(gaps, default=1.0))
    groups = _group_plots(devices)
    ctx = ReportContext(db_path=db_path, rows=rows, devices=devices, recs=recs, pareto=pareto, groups=groups,
                   generated=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                   populations=load_populations(db_path))
    plot_dir = out_dir / "plots"
    written = []
    for p in pareto + groups:
        path = plot_dir / f"{p.slug}.png"
        atomic_write_bytes(path, p.png)
        written.append(path)
    if plot_dir.is_dir():  # figures of an earlier report that this one no longer has
        for old in plot_dir.glob("*.png"):
            if old.name.startswith(PLOT_PREFIXES) and old not in written:
                old.unlink()
    md, page = out_dir / "report.md", out_dir / "report.html"
    atomic_write_bytes(md, _markdown(ctx).encode())
    atomic_write_bytes(page, _html(ctx).encode())
    return ReportInfo(html=page, markdown=md, plots=written, recommendations=list(recs.values()),
                      n_rows=len(rows), db_path=db_path)


