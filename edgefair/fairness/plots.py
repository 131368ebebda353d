"""Per-group accuracy with its interval (cluster-aware Wilson): the reference and each
artefact side by side.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend state),
so it works headless and inside other programs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgefair.fairness.result import AuditResult

FORMATS = {".png": "png", ".svg": "svg"}


def _named(results: Mapping[str, AuditResult] | Sequence[AuditResult]) -> list[tuple[str, AuditResult]]:
    if isinstance(results, Mapping):
        return [(str(k), v) for k, v in results.items()]
    return [(f"artefact {i + 1}", r) for i, r in enumerate(results)]


Values = dict[str, tuple[float, tuple[float, float], bool]]  # group -> (accuracy, interval, tested)


def _group_labels(attrs: Sequence[Any]) -> list[str]:
    labels = [g.group for g in attrs[0].groups]
    for a in attrs[1:]:
        labels += [g.group for g in a.groups if g.group not in labels]
    return labels


def _series(attrs: Sequence[tuple[str, Any]]) -> list[tuple[str, Values]]:
    """Each result's groups, with the reference first (from the first result audited against one)."""
    series: list[tuple[str, Values]] = [
        (name, {g.group: (g.accuracy, g.accuracy_ci, g.tested) for g in a.groups}) for name, a in attrs
    ]
    with_ref = next((a for _, a in attrs if a.groups and a.groups[0].reference_accuracy is not None), None)
    if with_ref is not None:
        ref_values = {
            g.group: (g.reference_accuracy, g.reference_accuracy_ci, g.tested)
            for g in with_ref.groups
            if g.reference_accuracy is not None and g.reference_accuracy_ci is not None
        }
        # The reference model's own audit may be among the results: do not draw it twice.
        if not any(values == ref_values for _, values in series):
            series.insert(0, ("reference", ref_values))
    return series


def _draw_series(ax: Any, name: str, values: Values, labels: list[str], *, x0: float, colour: str) -> None:
    first = next(k for k, lb in enumerate(labels) if lb in values)
    for j, label in enumerate(labels):
        if label not in values:
            continue
        acc, (lo, hi), tested = values[label]
        ax.errorbar(j + x0, acc, yerr=[[max(acc - lo, 0.0)], [max(hi - acc, 0.0)]], fmt="o", color=colour,
                    mfc=colour if tested else "white", capsize=3, label=name if j == first else None)


def plot_group_accuracy(
    results: Mapping[str, AuditResult] | Sequence[AuditResult],
    path: str | Path,
    *,
    attribute: str,
) -> Path:
    """Plot one attribute's per-group accuracy (points, interval bars at the audit's alpha) to PNG or SVG.

    The reference series comes from the first result audited against a reference
    (left out when the reference model's own audit, with the same group accuracies,
    is one of the results).
    Untested groups (too few images or subjects) are drawn hollow. Returns the written path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # imported here: matplotlib is slow to import
    from matplotlib.figure import Figure

    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"plot path must end in .png or .svg, got {path.name!r}")
    named = _named(results)
    if not named:
        raise ValueError("plot_group_accuracy needs at least one AuditResult")
    attrs = [(name, r.attribute(attribute)) for name, r in named]  # KeyError names the attribute
    labels = _group_labels([a for _, a in attrs])
    series = _series(attrs)

    legend_cols = min(4, len(series))
    legend_rows = -(-len(series) // legend_cols)
    fig = Figure(figsize=(max(6.0, 1.1 * len(labels) + 2.0), 3.6 + 0.22 * legend_rows), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series):
        _draw_series(ax, name, values, labels, x0=-0.4 + width * (i + 0.5), colour=f"C{i}")
    settings = named[0][1].settings
    sizes = {g.group: g.n for g in attrs[0][1].groups}
    ax.set_xticks(
        range(len(labels)),
        [f"{lb}\n(n={sizes[lb]})" if lb in sizes else lb for lb in labels],
    )
    ax.set_ylabel(f"accuracy ({settings.ci_label})")
    ax.set_title(f"Accuracy by {attribute}\n(hollow: untested, < {settings.min_subjects} subjects or "
                 f"< {settings.min_n} images)", fontsize="medium")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(fontsize="small", loc="outside lower center", ncols=legend_cols)  # below: many series fit
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=fmt, dpi=150)
    return path
