"""Checks and normalises audit() arguments. Every error message is part of the API
(the CLI prints it as the one-line reason) and is tested verbatim."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from edgefair.fairness.result import VerdictThresholds

MIN_N_BOOT = 100


class AuditInputError(ValueError):
    """A bad argument to audit(); the message names the argument and the problem."""


@dataclass(frozen=True)
class AuditInputs:
    """Validated audit() arguments: int64 labels, str group labels, tuples of names."""

    y_true: np.ndarray
    y_pred: np.ndarray
    sensitive: dict[str, np.ndarray]
    class_names: tuple[str, ...]
    subjects: np.ndarray | None
    reference_pred: np.ndarray | None
    reference_population: list[np.ndarray] | None
    compressed_population: list[np.ndarray] | None
    intersections: list[tuple[str, ...]]

    @property
    def n(self) -> int:
        return int(self.y_true.size)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def _one_d(name: str, values: Any, n: int | None) -> np.ndarray:
    if values is None:
        raise AuditInputError(f"{name} is required")
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise AuditInputError(f"{name} must be 1-D, got shape {arr.shape}")
    if n is not None and arr.size != n:
        raise AuditInputError(f"{name} has {arr.size} entries but y_true has {n}")
    return arr


def _labels(name: str, values: Any, n_classes: int, n: int | None) -> np.ndarray:
    """Class ids as int64, each in 0..n_classes-1."""
    arr = _one_d(name, values, n)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    elif arr.dtype.kind == "f":
        bad = arr[~np.isfinite(arr) | (arr != np.round(arr))]
        if bad.size:
            raise AuditInputError(f"{name} must hold integer class ids; got non-integer value {bad[0]!r}")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        example = arr[0] if arr.size else None
        raise AuditInputError(
            f"{name} must hold integer class ids 0..{n_classes - 1}; got {arr.dtype} values such as {example!r}"
        )
    arr = arr.astype(np.int64, copy=False)
    outside = np.unique(arr[(arr < 0) | (arr >= n_classes)])
    if outside.size:
        shown = ", ".join(str(int(v)) for v in outside[:5]) + (", ..." if outside.size > 5 else "")
        raise AuditInputError(
            f"{name} holds labels outside 0..{n_classes - 1} ({n_classes} class_names): {shown}"
        )
    return arr


def _strings(name: str, values: Any, n: int) -> np.ndarray:
    """Per-sample labels as str; missing values are an error (never silently a group)."""
    arr = _one_d(name, values, n)
    missing = int(pd.isna(pd.Series(arr, dtype=object)).sum())
    if missing:
        raise AuditInputError(
            f"{name} has {missing} missing values (None/NaN); give them a label such as 'unknown'"
        )
    return np.asarray([str(v) for v in arr.tolist()], dtype=object)


def _class_names(class_names: Any) -> tuple[str, ...]:
    if class_names is None or isinstance(class_names, (str, bytes)):
        raise AuditInputError("class_names must be a sequence of names, not a single string")
    names = tuple(str(c) for c in class_names)
    if len(names) < 2:
        raise AuditInputError(f"class_names needs at least 2 names, got {len(names)}")
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise AuditInputError(f"class_names has duplicates: {', '.join(repr(d) for d in dupes)}")
    return names


def _population(name: str, population: Any, n_classes: int, n: int) -> list[np.ndarray] | None:
    if population is None:
        return None
    if isinstance(population, np.ndarray) and population.ndim == 2:
        population = list(population)
    if isinstance(population, (str, bytes)) or not isinstance(population, Sequence):
        raise AuditInputError(f"{name} must be a list of prediction arrays")
    if len(population) == 0:
        raise AuditInputError(f"{name} is empty: give at least one prediction array")
    return [_labels(f"{name}[{i}]", p, n_classes, n) for i, p in enumerate(population)]


def _intersections(intersections: Any, names: list[str]) -> list[tuple[str, ...]]:
    if intersections is None or intersections is False:
        return []
    if intersections is True:
        return list(itertools.combinations(names, 2))
    if isinstance(intersections, (str, bytes)) or not isinstance(intersections, Sequence):
        raise AuditInputError(
            "intersections must be True, False or a list of attribute-name tuples such as [('gender', 'skin_tone')]"
        )
    out: list[tuple[str, ...]] = []
    for item in intersections:
        if isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) < 2:
            raise AuditInputError(f"an intersection needs at least 2 attributes, got {item!r}")
        for a in item:
            if a not in names:
                raise AuditInputError(
                    f"intersections names unknown attribute {a!r}; sensitive has: {', '.join(names)}"
                )
        if len(set(item)) != len(item):
            raise AuditInputError(f"an intersection repeats an attribute: {tuple(item)!r}")
        out.append(tuple(item))
    return out


def check_settings(*, min_n: Any, alpha: Any, n_boot: Any, seed: Any, thresholds: Any) -> None:
    """Scalar settings; raises AuditInputError."""
    if isinstance(min_n, bool) or not isinstance(min_n, (int, np.integer)) or min_n < 1:
        raise AuditInputError(f"min_n must be an integer >= 1, got {min_n!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise AuditInputError(f"alpha must be in (0, 1), got {alpha!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < MIN_N_BOOT:
        raise AuditInputError(f"n_boot must be an integer >= {MIN_N_BOOT}, got {n_boot!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise AuditInputError(f"seed must be a non-negative integer, got {seed!r}")
    if thresholds is not None and not isinstance(thresholds, VerdictThresholds):
        raise AuditInputError(f"thresholds must be a VerdictThresholds, got {type(thresholds).__name__}")


def validate(
    *,
    y_true: Any,
    y_pred: Any,
    sensitive: Any,
    class_names: Any,
    subjects: Any = None,
    reference_pred: Any = None,
    reference_population: Any = None,
    compressed_population: Any = None,
    intersections: Any = False,
) -> AuditInputs:
    """Check every array argument against y_true and class_names."""
    names = _class_names(class_names)
    c = len(names)
    y_true_arr = _one_d("y_true", y_true, None)
    if y_true_arr.size == 0:
        raise AuditInputError("y_true is empty: nothing to audit")
    n = int(y_true_arr.size)
    yt = _labels("y_true", y_true_arr, c, None)
    yp = _labels("y_pred", y_pred, c, n)

    if not isinstance(sensitive, Mapping):
        raise AuditInputError(
            f"sensitive must be a mapping of attribute name to per-sample group labels, got {type(sensitive).__name__}"
        )
    if len(sensitive) == 0:
        raise AuditInputError("sensitive needs at least one attribute")
    sens: dict[str, np.ndarray] = {}
    for key, values in sensitive.items():
        if not isinstance(key, str) or not key:
            raise AuditInputError(f"sensitive attribute names must be non-empty strings, got {key!r}")
        sens[key] = _strings(f"sensitive[{key!r}]", values, n)

    subj = None if subjects is None else _strings("subjects", subjects, n)
    ref = None if reference_pred is None else _labels("reference_pred", reference_pred, c, n)
    ref_pop = _population("reference_population", reference_population, c, n)
    comp_pop = _population("compressed_population", compressed_population, c, n)
    for pop_name, pop in (("reference_population", ref_pop), ("compressed_population", comp_pop)):
        if pop is not None and ref is None:
            raise AuditInputError(
                f"{pop_name} needs reference_pred as well "
                "(group accuracy changes are paired against one reference model)"
            )
    return AuditInputs(
        y_true=yt,
        y_pred=yp,
        sensitive=sens,
        class_names=names,
        subjects=subj,
        reference_pred=ref,
        reference_population=ref_pop,
        compressed_population=comp_pop,
        intersections=_intersections(intersections, list(sens)),
    )
