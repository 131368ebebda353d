"""The report's compression comparisons, from what the database holds:

- **plain vs distilled**: every ``…-kd`` artefact beside the plain one of the same target,
  sparsity and clustering (accuracy, largest gap widening, CEV, SDE, churn: the audit's
  cells, single seed);
- **populations** (``bench sweep --seeds K``): each matrix cell's figures over K seeds
  (mean and t interval), CEV/SDE averaged over trials and Hooker et al.'s CIEs by group,
  as ``sweep_population`` stored them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefair.bench.report_fairness import SUMMARY_COLUMNS, FairnessEntry, html_table, md_table, summary_cells
from edgefair.bench.report_groups import group_order
from edgefair.contracts.study import Spread

Escape = Callable[[Any], str]
KD_METRICS = ("accuracy", "largest widening", "CEV", "SDE", "churn")
KD_COLUMNS = ("artefact", *(f"{m} ({arm})" for m in KD_METRICS for arm in ("plain", "KD")))
POPULATION_COLUMNS = ("artefact", "seeds", "accuracy", "accuracy change", "largest gap", "gap change", "CEV", "SDE",
                      "CIEs", "share of CIEs by group (share of test)", "gzip ratio")
CIE_COLUMNS = ("artefact", "group", "n", "share of test", "CIEs", "share of CIEs [CI]", "share of top-x % by score",
               "accuracy on its CIEs: compressed", "reference")
KD_SUFFIX = "-kd"


@dataclass
class Population:
    """One arch's stored population figures."""

    arch: str
    seeds: list[int]
    attributes: dict[str, list[dict[str, Any]]]


def kd_rows(entries: Sequence[FairnessEntry]) -> list[list[str]]:
    """One row per distilled artefact with a plain twin: the audit's cells side by side."""
    by_name = {e.name: e for e in entries}
    index = [SUMMARY_COLUMNS.index(m) for m in KD_METRICS]
    out = []
    for name, kd in sorted(by_name.items()):
        plain = by_name.get(name[: -len(KD_SUFFIX)]) if name.endswith(KD_SUFFIX) else None
        if plain is None:
            continue
        p, k = summary_cells(plain), summary_cells(kd)
        out.append([f"{plain.name} vs {kd.name}", *(c for i in index for c in (p[i], k[i]))])
    return out


def load_populations(db_path: Path) -> list[Population]:
    """The population stages of the database (none when the sweep had one seed)."""
    from edgefair.bench.store import Store
    from edgefair.bench.sweep_population import STAGE_KIND

    with Store(db_path, readonly=True) as store:
        stages = [s for s in store.stages() if s["kind"] == STAGE_KIND and s["status"] == "done"]
    return [Population(s["detail"]["arch"], list(s["detail"]["seeds"]), dict(s["detail"]["attributes"]))
            for s in stages]


def _sp(d: dict[str, Any], scale: float = 100.0, digits: int = 1) -> str:
    return Spread(d["mean"], d["lo"], d["hi"], d["n"], d["values"]).text(scale, digits)


def _cie_groups(cie: dict[str, Any]) -> str:
    groups = {g["group"]: g for g in cie["groups"]}
    order = group_order({g: v["n"] for g, v in groups.items()})
    return "; ".join(f"{name} {_pct(groups[name]['share_among_cie'])} ({_pct(groups[name]['share_of_test'])})"
                     for name in order)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def cie_group_rows(row: dict[str, Any]) -> list[list[str]]:
    """One row per group of one compressed cell: its part in the CIEs (Hooker et al.'s breakdown)."""
    cie = row["cie"]
    groups = {g["group"]: g for g in cie["groups"]}
    out = []
    for name in group_order({g: v["n"] for g, v in groups.items()}):
        g = groups[name]
        ci = g["share_among_cie_ci"]
        share = _pct(g["share_among_cie"]) + ("" if not ci else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]")
        out.append([row["name"], name, str(g["n"]), _pct(g["share_of_test"]), str(g["n_cie"]), share,
                    _pct(g["share_among_top"]), _pct(g["accuracy_on_cie_compressed"]),
                    _pct(g["accuracy_on_cie_reference"])])
    return out


def population_cells(row: dict[str, Any]) -> list[str]:
    cie = row["cie"]
    return [row["name"], str(len(row["seeds"])), _sp(row["accuracy"]), _sp(row["accuracy_change"]), _sp(row["gap"]),
            _sp(row["gap_change"]), _sp(row["cev"], 1, 0), _sp(row["sde"], 1, 2),
            f"{cie['n']} ({100 * cie['share']:.1f} %)", _cie_groups(cie), _sp(row["gzip_ratio"], 1, 1) + "×"]


POPULATION_NOTE = ("Each cell's figures over the population of seeds: mean [95 % t interval of the mean] "
                   "(percentage points for accuracy and gaps; changes are against each seed's own "
                   "uncompressed reference). CEV and SDE are computed per trial (reference seed k against its "
                   "compressed model k) and averaged over trials (Simon Says). CIEs (Hooker et al.): test "
                   "images whose modal label among the compressed models differs from the modal label among the "
                   "uncompressed ones; each group's share of them is set beside its share of the test set. "
                   "Predictions are on the host (every seed's artefacts in their own runtime); latency is the "
                   "first seed's measurement in the table above.")
KD_NOTE = ("Distilled (KD) fine-tunes beside the plain fine-tune of the same target, sparsity and clustering "
           "(one seed; the audit's intervals). A lower CEV/SDE under KD is the mitigation Simon Says reports.")


@dataclass
class PopulationTable:
    """One arch × attribute of the populations section: its cells and its per-group CIE rows."""

    arch: str
    seeds: list[int]
    attribute: str
    cells: list[list[str]]
    cie_rows: list[list[str]]


def population_tables(populations: Sequence[Population]) -> list[PopulationTable]:
    return [PopulationTable(pop.arch, pop.seeds, attr, [population_cells(r) for r in rows],
                            [g for r in rows if r["cie"]["n"] for g in cie_group_rows(r)])
            for pop in populations for attr, rows in pop.attributes.items()]


def html(entries: Sequence[FairnessEntry], populations: Sequence[Population], e: Escape) -> str:
    """The two sections (each only when the database has something for it)."""
    out = []
    pairs = kd_rows(entries)
    if pairs:
        out += ['<h2 id="distillation">Plain vs distilled fine-tunes</h2>', f'<p class="rule">{e(KD_NOTE)}</p>',
                html_table(KD_COLUMNS, pairs, e, "distillation")]
    if populations:
        out += ['<h2 id="populations">Populations over seeds</h2>', f'<p class="rule">{e(POPULATION_NOTE)}</p>']
        for t in population_tables(populations):
            out += [f"<h3>{e(t.arch)}: {len(t.seeds)} seeds ({e(', '.join(map(str, t.seeds)))}), by {e(t.attribute)}"
                    "</h3>", html_table(POPULATION_COLUMNS, t.cells, e, "population")]
            if t.cie_rows:
                out.append(f"<details><summary>CIEs by {e(t.attribute)} group, per artefact</summary>"
                           f"{html_table(CIE_COLUMNS, t.cie_rows, e, 'cie')}</details>")
    return "\n".join(out)


def markdown(entries: Sequence[FairnessEntry], populations: Sequence[Population]) -> list[str]:
    out: list[str] = []
    pairs = kd_rows(entries)
    if pairs:
        out += ["## Plain vs distilled fine-tunes", "", KD_NOTE, "", *md_table(KD_COLUMNS, pairs), ""]
    if populations:
        out += ["## Populations over seeds", "", POPULATION_NOTE, ""]
        for t in population_tables(populations):
            out += [f"### {t.arch}: {len(t.seeds)} seeds, by {t.attribute}", "",
                    *md_table(POPULATION_COLUMNS, t.cells), ""]
            if t.cie_rows:
                out += [f"CIEs by {t.attribute} group, per artefact:", "", *md_table(CIE_COLUMNS, t.cie_rows), ""]
    return out
