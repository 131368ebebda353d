"""A study's report: ``study.json`` (every table) and ``study.html`` (tables + plots in ``plots/``).

Plots use matplotlib's object API on the Agg canvas (no pyplot state): every curve is the
mean over seeds with its t interval as error bars.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgefair.contracts.jsonio import atomic_write_json
from edgefair.contracts.study import Spread

Series = dict[str, list[tuple[float, dict[str, Any]]]]  # label -> [(x, spread dict)]


def _sp(d: dict[str, Any]) -> Spread:
    return Spread(d["mean"], d["lo"], d["hi"], d["n"], d["values"])


def line_plot(path: Path, series: Series, *, xlabel: str, ylabel: str, title: str, scale: float = 1.0) -> Path:
    """Lines with error bars (mean and t interval over seeds) for each labelled series."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, points in series.items():
        pts = sorted((x, _sp(d)) for x, d in points if d["mean"] is not None)
        if not pts:
            continue
        xs = [x for x, _ in pts]
        ys = [s.mean * scale for _, s in pts if s.mean is not None]
        lo = [max(0.0, (s.mean - s.lo) * scale) if s.lo is not None and s.mean is not None else 0.0 for _, s in pts]
        hi = [max(0.0, (s.hi - s.mean) * scale) if s.hi is not None and s.mean is not None else 0.0 for _, s in pts]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=90)
    return path


def table_html(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pct(d: dict[str, Any]) -> str:
    return _sp(d).text(100, 1)


def _num(d: dict[str, Any]) -> str:
    return _sp(d).text(1, 1)


def _arm(r: dict[str, Any]) -> str:
    return f"{r['pruning']} c{r['clustering'] or '-'} {r['mitigation']}"


def compression_tables(rows: list[dict[str, Any]]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """(title, headers, rows) of the compression tables."""
    groups = sorted({g for r in rows for g in r["group_accuracy"]})
    acc = [[_arm(r), r["target"], f"{r['sparsity']:g}", len(r["seeds"]), _pct(r["accuracy"]),
            _pct(r["accuracy_change"])] + [_pct(r["group_accuracy"][g]) for g in groups if g in r["group_accuracy"]]
           + [_pct(r["gap"]), _pct(r["gap_change"])] for r in rows]
    err = [[_arm(r), r["target"], f"{r['sparsity']:g}", _num(r["cev"]), _num(r["sde"]),
            ", ".join(r["cev_sde_excluded_classes"]) or "—"] for r in rows]
    size = [[_arm(r), r["target"], f"{r['sparsity']:g}", f"{r['size_bytes'] / 1024:.1f}",
             f"{r['gzip_bytes'] / 1024:.1f}",
             f"{r['nonzero_params']:.0f}", _num(r["size_ratio"]), _num(r["gzip_ratio"])] for r in rows]
    cie = [[_arm(r), r["target"], f"{r['sparsity']:g}", r["cie"]["n"], f"{r['cie']['share'] * 100:.1f}", g["group"],
            f"{g['share_of_test'] * 100:.1f}", _share(g["share_among_cie"]), _share(g["share_among_top"]),
            _share(g["accuracy_on_cie_compressed"]), _share(g["accuracy_on_cie_reference"])]
           for r in rows if r["sparsity"] > 0 or r["clustering"] for g in r["cie"]["groups"]]
    return [
        ("Accuracy per group (%, mean [95 % t interval] over seeds); gap = best − worst group",
         ["arm", "target", "sparsity", "seeds", "accuracy", "Δ accuracy"] + [f"acc {g}" for g in groups]
         + ["gap", "Δ gap"], acc),
        ("CEV and SDE (Simon Says), per trial against its own reference, mean [interval] over trials",
         ["arm", "target", "sparsity", "CEV", "SDE", "classes left out"], err),
        ("Artefact size (KiB) and compression ratio against the uncompressed fp32 reference",
         ["arm", "target", "sparsity", "KiB", "gzip KiB", "non-zero params", "× smaller", "× smaller gzipped"], size),
        ("CIEs (Hooker et al.): modal label of the compressed population ≠ that of the reference population",
         ["arm", "target", "sparsity", "CIEs", "CIE % of test", "group", "% of test", "% of CIEs",
          "% of top-x by score", "compressed acc on CIEs", "reference acc on CIEs"], cie),
    ]


def _share(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.1f}"


def balance_tables(rows: list[dict[str, Any]]) -> list[tuple[str, list[str], list[list[Any]]]]:
    groups = sorted({g for r in rows for g in r["group_accuracy"]})
    out = [[r["step"], " / ".join(f"{g} {p * 100:.0f}" for g, p in r["proportions"].items()), r["n_train"],
            len(r["seeds"]), _pct(r["macro_f1"]), _pct(r["macro_f1_change"]), _pct(r["accuracy"])]
           + [_pct(r["group_accuracy"][g]) for g in groups if g in r["group_accuracy"]]
           + [_pct(r["gap"]), _pct(r["dp_max"]), _pct(r["dp_mean"]),
              _pct(r["dp_max_change"])] for r in rows]
    return [("Training mix → test macro-F1, accuracy per group, demographic parity (%, mean [interval] over seeds)",
             ["step", "train mix %", "n train", "seeds", "macro-F1", "Δ macro-F1", "accuracy"]
             + [f"acc {g}" for g in groups] + ["gap", "DP max (pt)", "DP mean (pt)", "Δ DP max"], out)]


def write_report(out: Path, doc: dict[str, Any], tables: list[tuple[str, list[str], list[list[Any]]]],
                 plots: list[Path]) -> tuple[Path, Path]:
    """``study.json`` and ``study.html`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "study.json"
    atomic_write_json(json_path, doc)
    parts = [f"<h1>{html.escape(doc['title'] or doc['study'])}</h1>",
             f"<p>{html.escape(doc['config']['dataset'])}, {doc['config']['seeds']} seed(s), "
             f"{doc['seconds']:.0f} s wall, {doc['cpu_seconds']:.0f} CPU-s</p>",
             f"<p><b>Paper:</b> {html.escape(doc['paper'])}</p>",
             "<h2>Findings</h2><ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in doc["findings"]) + "</ul>"]
    if doc["notes"] or doc["failed"]:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in doc["notes"] + doc["failed"])
                     + "</ul>")
    for title, headers, rows in tables:
        parts.append(f"<h2>{html.escape(title)}</h2>" + table_html(headers, rows))
    parts += [f'<p><img src="plots/{html.escape(p.name)}"></p>' for p in plots]
    style = "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}" \
            "td,th{border:1px solid #ccc;padding:2px 6px}</style>"
    html_path = out / "study.html"
    html_path.write_text(f"<!doctype html><html><head><meta charset='utf-8'>{style}</head><body>"
                         + "\n".join(parts) + "</body></html>")
    return html_path, json_path
