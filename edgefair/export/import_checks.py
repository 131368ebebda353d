"""Does an imported model fit the data it will be evaluated on? Warnings for the likely mistakes.

With a labelled dataset the import measures accuracy the way ``bench run --eval`` will
(predicted index == label index) and warns when

- accuracy is near chance (the larger of 1/K and the majority class's share, plus three
  binomial standard errors or 10 points): wrong normalisation or class order, most often;
- a permutation of the classes fits far better (the assignment maximising the confusion
  matrix's diagonal, Hungarian method): the model's outputs are in another order;
- one of a few common normalisations fits far better than the one given (tried on the
  first :data:`NORMALISATION_SAMPLE` images);
- the class names given are the dataset's in another order (indices are compared, not names).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: Tried when accuracy is near chance: pixel/255, [-1, 1], edgefair's default, raw 0..255.
NORMALISATIONS: tuple[dict[str, float], ...] = (
    {"mean": 0.0, "std": 1.0}, {"mean": 0.5, "std": 0.5}, {"mean": 0.5, "std": 0.25}, {"mean": 0.0, "std": 1 / 255},
)
#: "Far better": at least this many accuracy points more.
FAR_BETTER = 0.2
#: Images the other normalisations are tried on (a big model must not take minutes here).
NORMALISATION_SAMPLE = 128


@dataclass
class Diagnosis:
    n: int
    accuracy: float
    chance: float
    near_chance: bool
    permuted_accuracy: float
    permutation: list[int]  # output index -> dataset class index that fits best
    normalisation: dict[str, Any] | None = None  # the best other normalisation, when tried
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def chance_level(y: np.ndarray, k: int) -> float:
    """What guessing achieves: the larger of 1/K and the majority class's share."""
    counts = np.bincount(y, minlength=k)
    return float(max(1.0 / k, counts.max() / max(len(y), 1)))


def is_near_chance(acc: float, chance: float, n: int) -> bool:
    margin = max(0.1, 3 * math.sqrt(chance * (1 - chance) / max(n, 1)))
    return acc < chance + margin


def best_permutation(y: np.ndarray, pred: np.ndarray, k: int) -> tuple[list[int], float]:
    """(perm, accuracy): ``perm[j]`` is the true class output ``j`` best stands for."""
    from scipy.optimize import linear_sum_assignment

    confusion = np.zeros((k, k), dtype=np.int64)  # [predicted, true]
    np.add.at(confusion, (np.clip(pred, 0, k - 1), y), 1)
    rows, cols = linear_sum_assignment(-confusion)
    perm = [int(c) for _, c in sorted(zip(rows, cols, strict=True))]
    return perm, float(confusion[rows, cols].sum() / max(len(y), 1))


def diagnose(y: np.ndarray, pred: np.ndarray, class_names: list[str], data_names: list[str]) -> Diagnosis:
    """Accuracy, chance, the best class permutation and the warnings they call for."""
    k = max(len(class_names), len(data_names))
    acc = float((pred == y).mean()) if len(y) else 0.0
    chance = chance_level(y, k)
    perm, perm_acc = best_permutation(y, pred, k)
    d = Diagnosis(n=len(y), accuracy=acc, chance=chance, near_chance=is_near_chance(acc, chance, len(y)),
                  permuted_accuracy=perm_acc, permutation=perm)
    if class_names != data_names and sorted(class_names) == sorted(data_names):
        d.warnings.append(f"the class names are the dataset's in another order ({', '.join(class_names)} vs "
                          f"{', '.join(data_names)}): accuracy and audits compare class indices, not names")
    elif class_names != data_names:
        d.warnings.append(f"the class names ({', '.join(class_names)}) are not the dataset's "
                          f"({', '.join(data_names)}): output i is taken to be the dataset's class i")
    if perm_acc - acc >= FAR_BETTER and perm != list(range(k)):
        order = ",".join(data_names[j] if j < len(data_names) else f"class_{j}" for j in perm)
        d.warnings.append(f"a permutation of the classes fits far better ({acc:.1%} -> {perm_acc:.1%}): the model's "
                          f"outputs look like {order}; its class order differs from the dataset's")
    if d.near_chance:
        d.warnings.append(f"accuracy {acc:.1%} on {len(y)} labelled images is near chance ({chance:.1%}): wrong "
                          "normalisation (--mean/--std), input layout or class order?")
    return d


def normalisation_hint(y: np.ndarray, pred: np.ndarray, others: list[np.ndarray], candidates: list[dict[str, float]],
                       d: Diagnosis) -> None:
    """Add a warning (and ``d.normalisation``) when another normalisation fits far better than the
    given one on the same images (``pred``: the given one's predictions on them)."""
    if not others:
        return
    given = float((pred == y).mean())
    accs = [float((p == y).mean()) for p in others]
    best = int(np.argmax(accs))
    if accs[best] - given >= FAR_BETTER:
        c = candidates[best]
        d.normalisation = {**c, "accuracy": accs[best], "given_accuracy": given, "n": len(y)}
        d.warnings.append(f"normalisation mean={c['mean']:g} std={c['std']:.6g} fits far better "
                          f"({given:.1%} -> {accs[best]:.1%} on {len(y)} images): pass --mean {c['mean']:g} "
                          f"--std {c['std']:.6g}?")
