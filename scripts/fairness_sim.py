#!/usr/bin/env python3
"""Simulation table of the fairness audit: false alarms, power, min_subjects, coverage.

Every number comes from the real ``edgefair.fairness.audit`` on test sets drawn by
``edgefair.fairness.simulate`` (subjects with a random effect on being correct, so
images of one subject are correlated). ``--methods`` adds the comparison of candidate
tests for the gap change that chose the audit's method; ``--old REF`` runs the same
false-alarm and power designs through the audit of git revision REF beside.

    .venv/bin/python scripts/fairness_sim.py --out docs/fairness-sim.md --json sim.json --methods --old d8060bd
    .venv/bin/python scripts/fairness_sim.py --quick          # the subset the test suite runs
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgefair.fairness import MIN_SUBJECTS  # noqa: E402
from edgefair.fairness import simulate as sim  # noqa: E402
from edgefair.fairness.clusters import cluster_layout  # noqa: E402
from edgefair.fairness.gaps import GroupEvidence  # noqa: E402

LOWERED: dict[str, Any] = {"min_subjects": 2, "min_n": 1}  # every group tested: the test itself, in every cell


def _pct(rate: tuple[float, tuple[float, float]]) -> str:
    r, (lo, hi) = rate
    return "n/a" if math.isnan(r) else f"{100 * r:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def _tested_at_defaults(d: sim.Design) -> str:
    subj = min(d.subjects) if d.subject_ids else min(d.subjects) * d.images
    why = []
    if min(d.subjects) * d.images < 30:
        why.append("< min_n=30 images")
    if subj < MIN_SUBJECTS:
        why.append(f"< min_subjects={MIN_SUBJECTS}")
    return "yes" if not why else "no: " + ", ".join(why)


# -- sections -----------------------------------------------------------------------------

def false_alarms(audits: int, seed: int, designs: Sequence[sim.Design], log: Callable[[str], None]) -> list[dict]:
    """Each design at the defaults and, where a group is untested there (insufficient-evidence
    by design; fewer audits suffice to show it), with every group tested."""
    rows = []
    for d in designs:
        t0 = time.perf_counter()
        tested = _tested_at_defaults(d)
        default = sim.run(d, audits=audits if tested == "yes" else max(1, audits // 5), seed=seed)
        lowered = default if tested == "yes" else sim.run(d, audits=audits, seed=seed, **LOWERED)
        rows.append({"design": d, "tested": tested, "default": default, "lowered": lowered})
        log(f"{d.name}: {time.perf_counter() - t0:.0f} s")
    return rows


def _fa_table(rows: list[dict], old: dict[str, Any] | None) -> list[str]:
    head = ("| subjects/group | images/subject | tested at defaults | verdict gap-widened % [95% CI] "
            "| any verdict test significant % | insufficient-evidence % "
            "| every group tested (min_subjects=2, min_n=1): gap-widened % | any verdict test % |")
    old_head = " old audit, min_n=1: gap-widened % | old: gap-change test p < 0.05 (unadjusted) % |"
    out = [head + (old_head if old else ""),
           "|" + "---|" * (8 + 2 * bool(old))]
    for r in rows:
        d, a, b = r["design"], r["default"], r["lowered"]
        shape = "×".join(str(s) for s in d.subjects) if len(set(d.subjects)) > 1 else str(d.subjects[0])
        label = shape + ("" if d.subject_ids else " (no subject ids)")
        cells = [label, str(d.images), r["tested"], _pct(a.rate("gap_widened")), _pct(a.rate("any_verdict_test")),
                 f"{100 * a.insufficient / a.audits:.0f}", _pct(b.rate("gap_widened")),
                 _pct(b.rate("any_verdict_test"))]
        if old:
            o = old.get(d.name)
            cells += (["n/a", "n/a"] if o is None else
                      [_pct(_rate(o["gap_widened"], o["audits"])), _pct(_rate(o["raw_gap_test"], o["audits"]))])
        out.append("| " + " | ".join(cells) + " |")
    return out


def _rate(k: int, n: int) -> tuple[float, tuple[float, float]]:
    return (k / n if n else math.nan), sim.clopper_pearson(k, n)


def power(audits: int, seed: int, designs: Sequence[sim.Design], log: Callable[[str], None]) -> list[dict]:
    rows = []
    for d in designs:
        t0 = time.perf_counter()
        rows.append({"design": d, "tally": sim.run(d, audits=audits, seed=seed)})
        log(f"{d.name}: {time.perf_counter() - t0:.0f} s")
    return rows


def _power_table(rows: list[dict], old: dict[str, Any] | None) -> list[str]:
    out = ["| planted widening | audited | verdict tests (mean) | caught: gap-widened on gender % [95% CI] |"
           + (" old audit % |" if old else ""), "|" + "---|" * (4 + bool(old))]
    for r in rows:
        d, t = r["design"], r["tally"]
        audited = d.name.split("pt-", 1)[1]
        cells = [f"{100 * d.widen:.0f} points", audited, f"{t.verdict_tests / t.audits:.0f}",
                 _pct(t.rate("gender_widened"))]
        if old:
            o = old.get(d.name)
            cells.append("n/a" if o is None else _pct(_rate(o["gender_widened"], o["audits"])))
        out.append("| " + " | ".join(cells) + " |")
    return out


def _min_subjects_table(rows: list[dict]) -> list[str]:
    out = ["| subjects/group (10 images each) | 20-point widening caught % [95% CI] | false alarms without it % |",
           "|---|---|---|"]
    for r in rows:
        d = r["design"]
        caught, alarms = _pct(r["power"].rate("gap_widened")), _pct(r["null"].rate("gap_widened"))
        out.append(f"| {d.subjects[0]} | {caught} | {alarms} |")
    return out


def min_subjects(audits: int, seed: int, log: Callable[[str], None], subjects: Sequence[int]) -> list[dict]:
    rows = []
    for d in sim.min_subject_designs(subjects):
        t0 = time.perf_counter()
        null = replace(d, name=d.name + "-null", widen=0.0)
        rows.append({"design": d, "power": sim.run(d, audits=audits, seed=seed, **LOWERED),
                     "null": sim.run(null, audits=audits, seed=seed, **LOWERED)})
        log(f"{d.name}: {time.perf_counter() - t0:.0f} s")
    return rows


def coverage(audits: int, seed: int, designs: Sequence[sim.Design], log: Callable[[str], None]) -> list[dict]:
    rows = []
    for d in designs:
        t0 = time.perf_counter()
        rows.append({"design": d, "tally": sim.coverage(d, audits=audits, seed=seed)})
        log(f"{d.name}: {time.perf_counter() - t0:.0f} s")
    return rows


def _coverage_table(rows: list[dict]) -> list[str]:
    out = ["| subjects/group × images | intervals | audit (cluster-aware) coverage % [95% CI] | plain Wilson % |",
           "|---|---|---|---|"]
    for r in rows:
        d, t = r["design"], r["tally"]
        out.append(f"| {d.subjects[0]} × {d.images} | {t.intervals} | {_pct(t.rate('covered'))} "
                   f"| {_pct(t.rate('covered_wilson'))} |")
    return out


# -- candidate methods for the gap change (2 groups), vectorised over data sets ------------

def _cluster_arrays(design: sim.Design, reps: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """(cluster group (N,), cluster sizes (R, N), cluster change totals (R, N), test sets)."""
    sets = [sim.sample(design, sim._rng(seed, design, i)) for i in range(reps)]
    g = np.repeat(np.arange(len(design.subjects)), design.subjects)
    m = design.images
    U = np.stack([((ts.artefact == ts.y_true).astype(float) - (ts.reference == ts.y_true)).reshape(-1, m).sum(1)
                  for ts in sets])
    return g, np.full(U.shape, float(m)), U, sets


def _group_stats(g: np.ndarray, M: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ds, vs, Gs = [], [], []
    for k in range(2):
        w = g == k
        sm = (M * w).sum(-1)
        d = (Y * w).sum(-1) / sm
        e = (Y - d[..., None] * M) * w
        G = w.sum(-1)
        ds.append(d)
        vs.append(G / np.maximum(G - 1, 1) * (e**2).sum(-1) / sm**2)
        Gs.append(G)
    return np.stack(ds, -1), np.stack(vs, -1), np.stack(Gs, -1)


def _t(g: np.ndarray, M: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d, v, _ = _group_stats(g, M, Y)
    D = d[..., 0] - d[..., 1]
    return D / np.maximum(np.sqrt(v.sum(-1)), 1e-12), D


def _welch(g: np.ndarray, M: np.ndarray, Y: np.ndarray, rng: np.random.Generator, B: int) -> np.ndarray:
    d, v, G = _group_stats(g, M, Y)
    t = (d[..., 0] - d[..., 1]) / np.maximum(np.sqrt(v.sum(-1)), 1e-12)
    df = v.sum(-1) ** 2 / np.maximum((v**2 / np.maximum(G - 1, 1)).sum(-1), 1e-300)
    p = 2 * stats.t.sf(np.abs(t), np.clip(df, 1, None))
    return np.where(np.abs(d[..., 0] - d[..., 1]) < 1e-12, 1.0, p)


def _permutation(g: np.ndarray, M: np.ndarray, Y: np.ndarray, rng: np.random.Generator, B: int) -> np.ndarray:
    t0, D0 = _t(g, M, Y)
    count = np.zeros(t0.shape)
    for _ in range(B):
        tb, _ = _t(rng.permutation(g), M, Y)
        count += np.abs(tb) >= np.abs(t0) - 1e-9
    return np.where(np.abs(D0) < 1e-12, 1.0, (1 + count) / (B + 1))


def _wild(g: np.ndarray, M: np.ndarray, Y: np.ndarray, rng: np.random.Generator, B: int) -> np.ndarray:
    t0, D0 = _t(g, M, Y)
    pooled = Y.sum(-1) / M.sum(-1)
    e = Y - pooled[:, None] * M
    count = np.zeros(t0.shape)
    for _ in range(B):
        w = rng.choice([-1.0, 1.0], Y.shape[-1])
        tb, _ = _t(g, M, pooled[:, None] * M + w * e)
        count += np.abs(tb) >= np.abs(t0) - 1e-9
    return np.where(np.abs(D0) < 1e-12, 1.0, (1 + count) / (B + 1))


def _old_bootstrap(g: np.ndarray, M: np.ndarray, Y: np.ndarray, rng: np.random.Generator, B: int) -> np.ndarray:
    """The audit before issue 10: stratified subject bootstrap SE, normal interval."""
    _, D0 = _t(g, M, Y)
    reps = []
    for _ in range(B):
        idx = np.concatenate([rng.choice(np.flatnonzero(g == k), int((g == k).sum())) for k in range(2)])
        reps.append(_t(g[idx], M[:, idx], Y[:, idx])[1])
    se = np.std(np.array(reps), axis=0, ddof=1)
    p = 2 * stats.norm.sf(np.abs(D0) / np.maximum(se, 1e-12))
    return np.where(np.abs(D0) < 1e-12, 1.0, np.where(se <= 0, 0.0, p))


def _chosen(sets: list, design: sim.Design) -> np.ndarray:
    """The audit's own gap-change test (GroupEvidence), per data set."""
    out = []
    for ts in sets:
        codes = (ts.sensitive["gender"] == "g1").astype(np.int64)
        subj = np.repeat(np.arange(sum(design.subjects)), design.images)
        ev = GroupEvidence(cluster_layout(codes, subj, 2), ts.artefact == ts.y_true, ts.reference == ts.y_true,
                           alpha=0.05)
        out.append(float(ev.gap_change(np.array([0]), np.array([1])).p[0]))
    return np.array(out)


METHODS: dict[str, Callable[..., np.ndarray]] = {
    "old: bootstrap SE + normal": _old_bootstrap,
    "Welch cluster-robust t": _welch,
    "wild cluster bootstrap-t": _wild,
    "permutation (studentised)": _permutation,
}

METHOD_VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "heavy clustering (sigma 2, Beta(0.5, 0.5) sensitivity, drop 10 pt)": {"sigma": 2.0, "concentration": 1.0,
                                                                             "sensitivity": 0.5, "drop": 0.10},
    "reference 0.9 vs 0.5, drop 5 pt": {"accuracy": (0.9, 0.5), "drop": 0.05, "concentration": 1.0},
}
METHOD_CELLS = (((2, 2), 10), ((3, 3), 10), ((5, 5), 10), ((3, 30), 10), ((5, 30), 10), ((30, 5), 10),
                ((12, 6), 10), ((30, 30), 10), ((30, 30), 1))


def methods(reps: int, seed: int, log: Callable[[str], None], boots: int = 199) -> list[dict]:
    rows = []
    rng = np.random.default_rng(seed)
    for variant, kw in METHOD_VARIANTS.items():
        for subjects, images in METHOD_CELLS:
            t0 = time.perf_counter()
            d = sim.Design(f"methods-{variant}-{subjects}x{images}", subjects=subjects, images=images, **kw)
            g, M, U, sets = _cluster_arrays(d, reps, seed)
            rates = {"audit (chosen)": float((_chosen(sets, d) < 0.05).mean())}
            for name, fn in METHODS.items():
                rates[name] = float((fn(g, M, U, rng, boots) < 0.05).mean())
            rows.append({"variant": variant, "subjects": subjects, "images": images, "reps": reps, "rates": rates})
            log(f"{d.name}: {time.perf_counter() - t0:.0f} s")
    return rows


def _methods_table(rows: list[dict]) -> list[str]:
    names = list(rows[0]["rates"])
    reps = rows[0]["reps"]
    half = 100 * 1.96 * math.sqrt(0.05 * 0.95 / reps)
    out = [f"False-alarm rate % of a 2-group gap-change test, nominal 5 %, {reps} data sets per cell "
           f"(±{half:.1f} points is the 95 % simulation margin at 5 %):", "",
           "| data | subjects × images | " + " | ".join(names) + " |", "|" + "---|" * (2 + len(names))]
    for r in rows:
        shape = f"{r['subjects'][0]} vs {r['subjects'][1]} × {r['images']}"
        out.append(f"| {r['variant']} | {shape} | " + " | ".join(f"{100 * r['rates'][n]:.1f}" for n in names) + " |")
    return out


# -- the old audit (git revision), in a subprocess --------------------------------------------

_OLD_RUNNER = """
import json, sys
from edgefair.fairness import simulate as sim
designs = {d.name: d for d in sim.false_alarm_designs() + sim.power_designs()}
req = json.loads(sys.argv[1])
out = {}
for name in req["names"]:
    t = sim.run(designs[name], audits=req["audits"], seed=req["seed"], **req["settings"])
    out[name] = {"audits": t.audits, "gap_widened": t.gap_widened, "gender_widened": t.gender_widened,
                 "any_verdict_test": t.any_verdict_test, "raw_gap_test": t.raw_gap_test}
print(json.dumps(out))
"""


def old_audit(ref: str, names: Sequence[str], audits: int, seed: int, **settings: Any) -> dict[str, Any]:
    """Run designs through the audit of git revision ``ref`` (its edgefair.fairness, this simulate.py);
    ``settings`` go to its audit() where it accepts them."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "edgefair/__init__.py", "edgefair/fairness"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        (Path(tmp) / "edgefair/fairness/simulate.py").write_text((ROOT / "edgefair/fairness/simulate.py").read_text())
        proc = subprocess.run(
            [sys.executable, "-c", _OLD_RUNNER,
             json.dumps({"names": list(names), "audits": audits, "seed": seed, "settings": settings})],
            check=True, capture_output=True, text=True, env={"PYTHONPATH": tmp, "PATH": "/usr/bin:/bin"}, cwd=tmp,
        )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


# -- main --------------------------------------------------------------------------------------

def _jsonable(x: Any) -> Any:
    if isinstance(x, sim.Tally):
        return {k: _jsonable(v) for k, v in asdict(x).items()}
    if isinstance(x, sim.Design):
        return asdict(x)
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def build(args: argparse.Namespace, log: Callable[[str], None] = print) -> tuple[str, dict[str, Any]]:
    """Run every section; return (Markdown, JSON-able results)."""
    quick = args.quick
    audits = args.audits or (120 if quick else 500)
    p_audits = args.power_audits or (60 if quick else 200)
    fa_designs = sim.false_alarm_designs()
    if quick:
        fa_designs = [d for d in fa_designs if d.name in ("null-3x10", "null-30x10", "null-CK+-12f-6m-x10")]
    fa = false_alarms(audits, args.seed, fa_designs, log)
    family_null = replace(sim.POWER_BASE, name="null-150x4-3-attributes-intersections", attributes=3,
                          intersections=True)
    fa += false_alarms(p_audits, args.seed, [family_null], log)
    pw_designs = sim.power_designs(widen=(0.10,) if quick else (0.05, 0.10))
    t0 = time.perf_counter()
    results: dict[str, Any] = {"command": " ".join(["scripts/fairness_sim.py", *sys.argv[1:]]), "seed": args.seed,
                               "min_subjects_default": MIN_SUBJECTS}
    pw = power(p_audits, args.seed, pw_designs, log)
    ms = min_subjects(p_audits, args.seed, log, (3, 5) if quick else (2, 3, 4, 5, 6, 8, 10))
    cov = coverage(audits, args.seed, sim.COVERAGE_DESIGNS[:1] if quick else sim.COVERAGE_DESIGNS, log)
    meth = methods(args.method_reps, args.seed, log) if args.methods else []
    old = None
    if args.old:
        # every group tested (the old audit has min_n only): what its tests do in each cell
        old = old_audit(args.old, [d.name for d in fa_designs], min(audits, 200), args.seed, min_n=1)
        old.update(old_audit(args.old, [d.name for d in pw_designs], min(p_audits, 100), args.seed))
    results.update(false_alarms=fa, power=pw, min_subjects=ms, coverage=cov, methods=meth, old=old,
                   seconds=time.perf_counter() - t0)

    lines = [f"Produced by `{results['command']}` (seed {args.seed}; {results['seconds'] / 60:.1f} min). "
             f"Defaults: min_subjects={MIN_SUBJECTS}, min_n=30, alpha=0.05; intervals are Clopper-Pearson 95 %.", ""]
    lines += [f"**False alarms** (no widening; every group loses 2 points, the reference has a 10-point gap "
              f"0.80 vs 0.70; {audits} audits per row, {max(1, audits // 5)} at the defaults where a group is "
              f"untested there (insufficient-evidence by design), {p_audits} for the last row"
              + (f"; old audit: revision {args.old}, {min(audits, 200)} audits, min_n=1 so that every group "
                 "is tested" if old else "") + "):", ""]
    lines += _fa_table(fa, old) + [""]
    lines += [f"**Power** (150 subjects per gender group × 4 images; the planted widening is in one gender group; "
              f"{p_audits} audits per row" + (f", old audit {min(p_audits, 100)}" if old else "") + "):", ""]
    lines += _power_table(pw, old) + [""]
    lines += [f"**min_subjects** (every group tested, {p_audits} audits per row):", ""] + _min_subjects_table(ms) + [""]
    lines += [f"**Coverage** of per-group accuracy intervals (reference model, nominal 95 %, {audits} audits "
              "× 2 groups):", ""] + _coverage_table(cov) + [""]
    if meth:
        lines += ["**Candidate tests** for the gap change:", ""] + _methods_table(meth) + [""]
    return "\n".join(lines), _jsonable(results)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the fast subset (the test suite runs it)")
    ap.add_argument("--audits", type=int, default=0,
                    help="audits per false-alarm / coverage row (default 500; quick 120)")
    ap.add_argument("--power-audits", type=int, default=0, help="audits per power row (default 200; quick 60)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", action="store_true", help="also compare candidate tests for the gap change")
    ap.add_argument("--method-reps", type=int, default=1000)
    ap.add_argument("--old", metavar="REF", default=None, help="also run the audit of this git revision")
    ap.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    ap.add_argument("--json", type=Path, default=None, help="write every count here")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    text, results = build(args, log=lambda s: print(s, file=sys.stderr, flush=True))
    if args.out:
        args.out.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(text)


if __name__ == "__main__":
    main()
