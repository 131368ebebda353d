"""Simulation checks of audit(): false alarms, power and interval coverage on test sets
with real subject clustering. ``scripts/fairness_sim.py`` is the command line;
``tests/fairness/test_simulation.py`` runs a fast subset. Imports numpy and scipy.

Data model (one test set): subjects belong to a gender group (``Design.subjects``
per group) and, with ``attributes=3``, to a race (3 groups) and an age bin (5)
drawn independently of gender and of correctness. Subject j of group g has a
reference accuracy p_j = expit(logit(a_g) + u_j), u_j ~ N(0, sigma^2): a per-subject
random effect, so images of one subject are correlated (image-level methods are
anti-conservative). Each of the subject's ``images`` is correct under the reference
with probability p_j. The artefact keeps the reference's prediction except that

- with probability r_j ~ Beta (mean ``sensitivity``) per subject, the image is
  re-predicted, correct again with probability p_j (mean change 0; subjects differ
  in how much compression touches them);
- a correct image is then lost with probability (drop + widen_g) / E[p | g], so
  every group loses ``drop`` accuracy points in expectation and the last gender group
  ``widen`` more (the planted widening; 0 under the null).

Under ``widen = 0`` the expected change is the same in every group although the
groups' reference accuracies (``accuracy``) differ: a pre-existing gap that compression
leaves alone, with heteroskedastic changes. Predictions are 7 classes, uniform labels,
wrong predictions uniform over the other classes.
"""

from __future__ import annotations

import functools
import inspect
import math
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.special import expit, logit
from scipy.stats import beta as beta_dist

N_CLASSES = 7
CLASSES = [f"c{i}" for i in range(N_CLASSES)]
RACES = ("r1", "r2", "r3")
AGES = ("0-3", "4-19", "20-39", "40-69", "70+")

_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(80)
_GH_W = _GH_W / _GH_W.sum()


def mean_accuracy(accuracy: float, sigma: float) -> float:
    """E[expit(logit(a) + u)], u ~ N(0, sigma^2): a group's expected accuracy."""
    return float((expit(logit(accuracy) + sigma * _GH_X) * _GH_W).sum())


@dataclass(frozen=True)
class Design:
    """One simulated test-set shape (see the module docstring)."""

    name: str
    subjects: tuple[int, ...] = (10, 10)  # per gender group
    images: int = 10  # per subject
    accuracy: tuple[float, ...] = (0.80, 0.70)  # reference, per gender group (logit-scale centre)
    widen: float = 0.0  # extra expected loss of the last gender group (0.05 = 5 points)
    drop: float = 0.02  # expected loss of every group
    attributes: int = 1  # 1: gender; 3: gender, race (3 groups), age (5 bins)
    intersections: bool = False
    subject_ids: bool = True
    sigma: float = 1.0
    sensitivity: float = 0.15
    concentration: float = 4.0


@dataclass(frozen=True)
class TestSet:
    y_true: np.ndarray
    reference: np.ndarray
    artefact: np.ndarray
    subjects: np.ndarray | None
    sensitive: dict[str, np.ndarray]
    true_accuracy: dict[str, float]  # per gender group: E[reference accuracy]


def _wrong(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (y + rng.integers(1, N_CLASSES, y.size)) % N_CLASSES


def sample(design: Design, rng: np.random.Generator) -> TestSet:
    """One test set drawn from ``design``."""
    counts = np.asarray(design.subjects)
    k = counts.size
    gender = np.repeat(np.arange(k), counts)
    n_subj = gender.size
    m = design.images
    expected = np.array([mean_accuracy(a, design.sigma) for a in design.accuracy])
    widen = np.zeros(k)
    widen[-1] = design.widen
    loss = (design.drop + widen) / expected
    p = expit(logit(np.asarray(design.accuracy))[gender] + rng.normal(0.0, design.sigma, n_subj))
    a = design.sensitivity * design.concentration
    r = rng.beta(a, design.concentration - a, n_subj)

    subj = np.repeat(np.arange(n_subj), m)
    pi, ri = p[subj], r[subj]
    y = rng.integers(0, N_CLASSES, subj.size)
    ref_ok = rng.random(subj.size) < pi
    reference = np.where(ref_ok, y, _wrong(y, rng))
    redraw = rng.random(subj.size) < ri
    redrawn_ok = rng.random(subj.size) < pi
    art_ok = np.where(redraw, redrawn_ok, ref_ok)
    lost = art_ok & (rng.random(subj.size) < loss[gender][subj])
    art_ok &= ~lost
    changed = redraw | lost
    artefact = np.where(changed, np.where(art_ok, y, _wrong(y, rng)), reference)

    labels = np.array([f"g{i}" for i in range(k)], dtype=object)
    sensitive = {"gender": labels[gender][subj]}
    if design.attributes >= 3:
        sensitive["race"] = np.array(RACES, dtype=object)[rng.integers(0, len(RACES), n_subj)][subj]
        sensitive["age"] = np.array(AGES, dtype=object)[rng.integers(0, len(AGES), n_subj)][subj]
    ids = np.array([f"s{j}" for j in range(n_subj)], dtype=object)[subj] if design.subject_ids else None
    return TestSet(y, reference, artefact, ids, sensitive, {str(labels[i]): float(expected[i]) for i in range(k)})


def _rng(seed: int, design: Design, i: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(zlib.crc32(design.name.encode()), i)))


@functools.lru_cache(maxsize=8)
def _accepted(audit: Callable[..., Any]) -> frozenset[str]:
    return frozenset(inspect.signature(audit).parameters)


def _call(audit: Callable[..., Any], **kwargs: Any) -> Any:
    """Call audit with the keyword arguments it accepts (older versions lack some)."""
    accepted = _accepted(audit)
    return audit(**{k: v for k, v in kwargs.items() if k in accepted})


def _gender_widened(result: Any) -> bool:
    return any(r.startswith("gap-widened: ") and "gender" in r.split(":")[1] for r in result.verdict.reasons)


def _any_verdict_test(result: Any) -> bool:
    return any(c.kind == "gap-change" and c.significant for c in result.comparisons)


def _raw_gap_test(result: Any, alpha: float) -> bool:
    """Some gap change has an unadjusted p < alpha: the level of the test itself (with one
    two-group attribute there is one gap change, whatever the family around it)."""
    return any(c.kind == "gap-change" and c.p_value is not None and c.p_value < alpha for c in result.comparisons)


@dataclass
class Tally:
    """Counts over the audits of one design."""

    design: Design
    settings: dict[str, Any]
    audits: int = 0
    gap_widened: int = 0
    gender_widened: int = 0
    any_verdict_test: int = 0
    raw_gap_test: int = 0
    insufficient: int = 0
    verdict_tests: int = 0  # summed family sizes
    covered: int = 0
    covered_wilson: int = 0
    intervals: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)

    def rate(self, name: str) -> tuple[float, tuple[float, float]]:
        """A share with its Clopper-Pearson 95 % interval."""
        k = getattr(self, name)
        n = self.intervals if name.startswith("covered") else self.audits
        return (k / n if n else math.nan), clopper_pearson(k, n)


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact binomial interval for k of n."""
    if n == 0:
        return math.nan, math.nan
    lo = 0.0 if k == 0 else float(beta_dist.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta_dist.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def run(
    design: Design,
    *,
    audits: int,
    seed: int = 0,
    audit: Callable[..., Any] | None = None,
    **settings: Any,
) -> Tally:
    """Audit ``audits`` test sets of ``design``; ``settings`` go to audit()."""
    if audit is None:
        from edgefair.fairness import audit as audit_fn

        audit = audit_fn
    settings = {"n_boot": 100, **settings}
    tally = Tally(design=design, settings=dict(settings))
    for i in range(audits):
        ts = sample(design, _rng(seed, design, i))
        result = _call(
            audit, y_true=ts.y_true, y_pred=ts.artefact, reference_pred=ts.reference, sensitive=ts.sensitive,
            class_names=CLASSES, subjects=ts.subjects, intersections=design.intersections, **settings,
        )
        tally.audits += 1
        tally.verdicts[result.verdict.label] = tally.verdicts.get(result.verdict.label, 0) + 1
        flags = result.verdict.flags
        tally.gap_widened += "gap-widened" in flags
        tally.gender_widened += _gender_widened(result)
        tally.any_verdict_test += _any_verdict_test(result)
        tally.raw_gap_test += _raw_gap_test(result, settings.get("alpha", 0.05))
        tally.insufficient += "insufficient-evidence" in flags
        tally.verdict_tests += sum(1 for c in result.comparisons if c.kind == "gap-change" and c.p_value is not None)
    return tally


def coverage(design: Design, *, audits: int, seed: int = 0, **settings: Any) -> Tally:
    """Coverage of the per-gender-group accuracy intervals of the reference model
    (audited alone) for the true group accuracy E[p | g]; plain Wilson beside."""
    from edgefair.fairness import audit
    from edgefair.fairness.intervals import wilson

    settings = {"n_boot": 100, **settings}
    tally = Tally(design=design, settings=dict(settings))
    for i in range(audits):
        ts = sample(design, _rng(seed, design, i))
        result = audit(y_true=ts.y_true, y_pred=ts.reference, sensitive={"gender": ts.sensitive["gender"]},
                       class_names=CLASSES, subjects=ts.subjects, **settings)
        tally.audits += 1
        alpha = result.settings.alpha
        for g in result.attribute("gender").groups:
            truth = ts.true_accuracy[g.group]
            lo, hi = g.accuracy_ci
            tally.intervals += 1
            tally.covered += lo <= truth <= hi
            wl, wh = wilson(round(g.accuracy * g.n), g.n, alpha=alpha)
            tally.covered_wilson += wl <= truth <= wh
    return tally


# -- the designs of the report ---------------------------------------------------------

def false_alarm_designs(subjects: Iterable[int] = (2, 3, 5, 10, 30), images: Iterable[int] = (1, 10)) -> list[Design]:
    """No widening: subjects/group x images/subject, plus the CK+ shape and no subject ids."""
    out = [Design(f"null-{s}x{m}", subjects=(s, s), images=m) for s in subjects for m in images]
    out.append(Design("null-CK+-12f-6m-x10", subjects=(12, 6), images=10))
    out += [Design(f"null-noids-{s}", subjects=(s, s), images=1, subject_ids=False) for s in (30, 300)]
    return out


POWER_BASE = Design("power", subjects=(150, 150), images=4)


def power_designs(widen: Iterable[float] = (0.05, 0.10), base: Design = POWER_BASE) -> list[Design]:
    """A planted widening of the last gender group; 1 attribute, 3, 3 + intersections."""
    out = []
    for w in widen:
        for attrs, inter, label in ((1, False, "gender"), (3, False, "3 attributes"), (3, True, "3 + intersections")):
            out.append(replace(base, name=f"power-{round(100 * w)}pt-{label}", widen=w, attributes=attrs,
                               intersections=inter))
    return out


def min_subject_designs(subjects: Iterable[int] = (2, 3, 4, 5, 6, 8, 10), widen: float = 0.20) -> list[Design]:
    """Power of a large widening vs subjects per group (10 images each): the min_subjects choice."""
    return [Design(f"minsubj-{s}x10-{round(100 * widen)}pt", subjects=(s, s), images=10, widen=widen)
            for s in subjects]


COVERAGE_DESIGNS = (
    Design("coverage-40x8", subjects=(40, 40), images=8),
    Design("coverage-10x10", subjects=(10, 10), images=10),
    Design("coverage-5x10", subjects=(5, 5), images=10),
    Design("coverage-40x1", subjects=(40, 40), images=1),
)
