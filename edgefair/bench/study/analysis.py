"""A study's tables from its predictions: every figure per seed, then its spread over seeds.

Per-model figures come from the existing evaluation code (``models.evaluation.group_summary``:
accuracy, macro-F1 and per-group accuracy through fairlearn's MetricFrame); population
figures from ``fairness.populations`` (CEV/SDE per trial, CIEs, demographic parity).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgefair.bench.study.config import StudyConfig
from edgefair.bench.study.runner import Arm, Artefact, BalanceRun, Collected, TestSet, arms
from edgefair.contracts.study import Spread
from edgefair.fairness.populations import demographic_parity, error_shift_over_seeds, population_cie, spread
from edgefair.models.evaluation import group_summary


def _per_model(test: TestSet, pred: np.ndarray, attribute: str) -> dict[str, Any]:
    s = group_summary(test.samples, pred, test.class_names)
    groups = {g: v["accuracy"] for g, v in s["groups"].get(attribute, {}).items()}
    return {"accuracy": s["accuracy"], "macro_f1": s["macro_f1"], "groups": groups,
            "gap": max(groups.values()) - min(groups.values()) if groups else None}


def _group_spreads(per: Sequence[dict[str, Any]], alpha: float) -> dict[str, dict[str, Any]]:
    names = sorted({g for p in per for g in p["groups"]})
    return {g: spread([p["groups"].get(g) for p in per], alpha=alpha).to_dict() for g in names}


def _diff(a: Sequence[float | None], b: Sequence[float | None]) -> list[float | None]:
    return [None if x is None or y is None else x - y for x, y in zip(a, b, strict=True)]


def reference_of(cfg: StudyConfig) -> tuple[Arm, str]:
    """The uncompressed reference cell: the first arm's dense model at the first fp32 target."""
    return arms(cfg)[0], next(t for t in cfg.targets if t.endswith("fp32"))


def _cells(col: Collected) -> dict[tuple[Arm, float, str], dict[int, Artefact]]:
    cells: dict[tuple[Arm, float, str], dict[int, Artefact]] = {}
    for a in col.artefacts:
        cells.setdefault((a.arm, a.sparsity, a.target), {})[a.seed] = a
    return cells


def compression_rows(cfg: StudyConfig, col: Collected) -> list[dict[str, Any]]:
    """One row per (arm, sparsity, target): figures over seeds against each seed's reference."""
    ref_arm, ref_target = reference_of(cfg)
    cells = _cells(col)
    refs = cells.get((ref_arm, 0.0, ref_target), {})
    ref_eval = {seed: _per_model(col.test, a.pred, cfg.attribute) for seed, a in refs.items()}
    rows = []
    for (arm, s, target), by_seed in sorted(cells.items(), key=lambda kv: (kv[0][0].tag, kv[0][2], kv[0][1])):
        seeds = sorted(set(by_seed) & set(refs))
        if seeds:
            rows.append(_compression_row(cfg, col.test, arm, s, target, [by_seed[k] for k in seeds],
                                         [refs[k] for k in seeds], [ref_eval[k] for k in seeds]))
    return rows


def _compression_row(cfg: StudyConfig, test: TestSet, arm: Arm, s: float, target: str, models: list[Artefact],
                     refs: list[Artefact], ref_eval: list[dict[str, Any]]) -> dict[str, Any]:
    a = cfg.alpha
    per = [_per_model(test, m.pred, cfg.attribute) for m in models]
    acc, gap = [p["accuracy"] for p in per], [p["gap"] for p in per]
    shift = error_shift_over_seeds(test.labels, [r.pred for r in refs], [m.pred for m in models], test.class_names,
                                   alpha=a)
    cie = population_cie(test.labels, [r.pred for r in refs], [m.pred for m in models], test.groups,
                         attribute=cfg.attribute, n_classes=len(test.class_names), top=cfg.cie_top, alpha=a)
    return {
        "pruning": arm.pruning, "clustering": arm.clustering, "mitigation": arm.mitigation, "sparsity": s,
        "target": target, "seeds": [m.seed for m in models],
        "accuracy": spread(acc, alpha=a).to_dict(),
        "accuracy_change": spread(_diff(acc, [r["accuracy"] for r in ref_eval]), alpha=a).to_dict(),
        "macro_f1": spread([p["macro_f1"] for p in per], alpha=a).to_dict(),
        "group_accuracy": _group_spreads(per, a),
        "gap": spread(gap, alpha=a).to_dict(),
        "gap_change": spread(_diff(gap, [r["gap"] for r in ref_eval]), alpha=a).to_dict(),
        "cev": shift.cev.to_dict(), "sde": shift.sde.to_dict(), "cev_sde_excluded_classes": shift.excluded_classes,
        "cie": cie.to_dict(),
        "size_bytes": float(np.mean([m.size_bytes for m in models])),
        "gzip_bytes": float(np.mean([m.gzip_bytes for m in models])),
        "nonzero_params": float(np.mean([m.nonzero_params for m in models])),
        "size_ratio": spread([r.size_bytes / m.size_bytes for r, m in zip(refs, models, strict=True)],
                             alpha=a).to_dict(),
        "gzip_ratio": spread([r.gzip_bytes / m.gzip_bytes for r, m in zip(refs, models, strict=True)],
                             alpha=a).to_dict(),
    }


def balance_rows(cfg: StudyConfig, test: TestSet, runs: list[BalanceRun]) -> list[dict[str, Any]]:
    """One row per balance step: macro-F1, accuracy, gaps and demographic parity over seeds,
    and their change from the first (observed) mix, paired by seed."""
    a, c = cfg.alpha, len(test.class_names)
    evals: dict[tuple[int, int], dict[str, Any]] = {}
    for r in runs:
        e = _per_model(test, r.pred, cfg.attribute)
        e["dp"] = demographic_parity(r.pred, test.groups, c)
        evals[(r.step, r.seed)] = e
    rows = []
    for step in sorted({r.step for r in runs}):
        mine = sorted((r for r in runs if r.step == step), key=lambda r: r.seed)
        seeds = [r.seed for r in mine if (0, r.seed) in evals]
        per = [evals[(step, k)] for k in seeds]
        base = [evals[(0, k)] for k in seeds]
        f1, dp = [p["macro_f1"] for p in per], [p["dp"]["max"] for p in per]
        rows.append({
            "step": step, "proportions": mine[0].proportions, "n_train": mine[0].n,
            "smallest_share": min(mine[0].proportions.values()), "seeds": seeds,
            "macro_f1": spread(f1, alpha=a).to_dict(),
            "accuracy": spread([p["accuracy"] for p in per], alpha=a).to_dict(),
            "group_accuracy": _group_spreads(per, a), "gap": spread([p["gap"] for p in per], alpha=a).to_dict(),
            "dp_max": spread(dp, alpha=a).to_dict(),
            "dp_mean": spread([p["dp"]["mean"] for p in per], alpha=a).to_dict(),
            "macro_f1_change": spread(_diff(f1, [b["macro_f1"] for b in base]), alpha=a).to_dict(),
            "dp_max_change": spread(_diff(dp, [b["dp"]["max"] for b in base]), alpha=a).to_dict(),
        })
    return rows


def _sp(d: dict[str, Any]) -> Spread:
    return Spread(d["mean"], d["lo"], d["hi"], d["n"], d["values"])


def direction(d: dict[str, Any], *, scale: float = 100.0, unit: str = " pt") -> str:
    """``+1.2 pt [0.3, 2.1]: up`` / ``…: no change detectable`` for a change over seeds."""
    s = _sp(d)
    if s.mean is None:
        return "no value"
    text = s.text(scale, 1) + unit
    if s.lo is None or s.hi is None:
        return f"{text} (one seed: no interval)"
    verdict = "up" if s.lo > 0 else "down" if s.hi < 0 else "no change detectable (interval spans 0)"
    return f"{text}: {verdict}"


def _nearest(rows: list[dict[str, Any]], want: float, **match: Any) -> dict[str, Any] | None:
    cands = [r for r in rows if all(r[k] == v for k, v in match.items()) and r["sparsity"] > 0]
    return min(cands, key=lambda r: abs(r["sparsity"] - want)) if cands else None


def distillation_findings(rows: list[dict[str, Any]], at: float = 0.45) -> list[str]:
    """CEV plain vs KD at the sparsity nearest ``at`` for each pruning method."""
    out = []
    for pruning in sorted({r["pruning"] for r in rows}):
        plain = _nearest(rows, at, pruning=pruning, mitigation="none", clustering=0)
        kd = _nearest(rows, at, pruning=pruning, mitigation="kd", clustering=0)
        if plain is None or kd is None:
            out.append(f"{pruning}: no plain/KD pair to compare (KD arm skipped or failed)")
            continue
        p, k = _sp(plain["cev"]), _sp(kd["cev"])
        ratio = f"{p.mean / k.mean:.2f}×" if p.mean and k.mean else "n/a"
        out.append(f"{pruning} s{plain['sparsity']:g}: CEV plain {p.text(1, 1)} vs KD {k.text(1, 1)} "
                   f"(plain/KD = {ratio}; Simon Says: ≈ 3× at 45 % structured)")
    return out


def compression_findings(cfg: StudyConfig, rows: list[dict[str, Any]]) -> list[str]:
    """Size ratio and gap change at the most compressed cells; smallest group's CIE share."""
    out = []
    top = max(cfg.sparsities)
    for r in rows:
        if r["sparsity"] not in (0.9, top) or r["mitigation"] != "none":
            continue
        cie = min(r["cie"]["groups"], key=lambda g: g["share_of_test"]) if r["cie"]["groups"] else None
        cie_text = (f"; {cie['group']} holds {cie['share_among_cie'] * 100:.1f} % of {r['cie']['n']} CIEs vs "
                    f"{cie['share_of_test'] * 100:.1f} % of the test set" if cie and cie["share_among_cie"] is not None
                    else "")
        out.append(f"{r['pruning']} s{r['sparsity']:g} c{r['clustering']} {r['target']}: "
                   f"{_sp(r['size_ratio']).text(1, 1)}× smaller ({_sp(r['gzip_ratio']).text(1, 1)}× gzipped; "
                   f"Stoychev & Gunes ≈ 18× for 90 % pruning + quantisation); accuracy change "
                   f"{direction(r['accuracy_change'])}; gap change {direction(r['gap_change'])}{cie_text}")
    return out


def balance_findings(rows: list[dict[str, Any]]) -> list[str]:
    """Macro-F1 and demographic parity from the observed mix to balanced."""
    if len(rows) < 2:
        return []
    last = rows[-1]
    return [f"observed mix → balanced (smallest group {rows[0]['smallest_share'] * 100:.0f} % → "
            f"{last['smallest_share'] * 100:.0f} %, n = {last['n_train']}): macro-F1 change "
            f"{direction(last['macro_f1_change'])}; demographic-parity difference (max over classes) change "
            f"{direction(last['dp_max_change'])}; accuracy gap {_sp(rows[0]['gap']).text(100, 1)} → "
            f"{_sp(last['gap']).text(100, 1)} pt (Fan et al.: balance raised F1 on a small posed set, fairness flat "
            "on a large varied one)"]
