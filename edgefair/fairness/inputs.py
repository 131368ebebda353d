"""Checks and normalises audit() arguments. Every error message is part of the API
(the CLI prints it as the one-line reason) and is tested verbatim.

Missing attribute values are None, NaN (also pandas NA/NaT), the empty string and the
strings "unknown" and "nan" (case and surrounding spaces ignored). By default they are
left out of that attribute's audit (counted in AttributeResult.n_missing);
``keep_missing=True`` audits them as one group named "unknown". A missing subject id
(None, NaN, empty string) makes the image its own subject.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from edgefair.fairness.result import VerdictThresholds

MIN_N_BOOT = 100
MISSING_STRINGS = frozenset({"", "unknown", "nan"})
MISSING_LABEL = "unknown"  # the group of missing values with keep_missing=True
# Internal label of a left-out value (never shown): no str() of a real label starts with NUL.
LEFT_OUT = "\x00missing"


class AuditInputError(ValueError):
    """A bad argument to audit(); the message names the argument and the problem."""


@dataclass(frozen=True)
class AuditInputs:
    """Validated audit() arguments: int64 labels, str group labels, tuples of names."""

    y_true: np.ndarray
    y_pred: np.ndarray
    sensitive: dict[str, np.ndarray]  # str labels; LEFT_OUT marks a left-out (missing) value
    class_names: tuple[str, ...]
    subjects: np.ndarray | None  # str ids, None where no subject ids were given at all
    subject_codes: np.ndarray  # int per sample; an image without an id is its own subject
    n_missing: dict[str, int]  # attribute -> samples with a missing value
    n_without_subject: int  # samples with an empty subject id (each its own subject)
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


def _missing(values: np.ndarray) -> np.ndarray:
    """Per sample: None/NaN/NA, or a string in MISSING_STRINGS (case and spaces ignored)."""
    series = pd.Series(values, dtype=object)
    blank = series.map(lambda v: isinstance(v, str) and v.strip().lower() in MISSING_STRINGS)
    return (series.isna() | blank.astype(bool)).to_numpy(dtype=bool)


def _strings(name: str, values: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample labels as str, and which are missing."""
    arr = _one_d(name, values, n)
    missing = _missing(arr)
    labels = np.asarray([str(v) for v in arr.tolist()], dtype=object)
    return labels, missing


def _sensitive(key: str, values: Any, n: int, keep_missing: bool) -> tuple[np.ndarray, int]:
    labels, missing = _strings(f"sensitive[{key!r}]", values, n)
    labels[missing] = MISSING_LABEL if keep_missing else LEFT_OUT
    if not keep_missing and missing.all():
        raise AuditInputError(f"sensitive[{key!r}] has no value that is not missing (None/NaN/''/'unknown')")
    return labels, int(missing.sum())


def _subject_codes(subjects: Any, n: int) -> tuple[np.ndarray | None, np.ndarray, int]:
    """(ids as str or None, integer code per sample, samples without an id)."""
    if subjects is None:
        return None, np.arange(n, dtype=np.int64), 0
    ids, missing = _strings("subjects", subjects, n)
    known = pd.Series(ids, dtype=object).where(~missing, None)
    codes = pd.factorize(known)[0].astype(np.int64)
    codes[missing] = codes.max(initial=-1) + 1 + np.arange(int(missing.sum()))
    return ids, codes, int(missing.sum())


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


def _integer(value: Any, low: int) -> bool:
    return bool(not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= low)


def check_settings(
    *,
    min_n: Any,
    min_subjects: Any,
    keep_missing: Any,
    alpha: Any,
    n_boot: Any,
    seed: Any,
    thresholds: Any,
) -> None:
    """Scalar settings; raises AuditInputError."""
    if not _integer(min_n, 1):
        raise AuditInputError(f"min_n must be an integer >= 1, got {min_n!r}")
    if not _integer(min_subjects, 2):
        raise AuditInputError(f"min_subjects must be an integer >= 2, got {min_subjects!r}")
    if not isinstance(keep_missing, (bool, np.bool_)):
        raise AuditInputError(f"keep_missing must be True or False, got {keep_missing!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise AuditInputError(f"alpha must be in (0, 1), got {alpha!r}")
    if not _integer(n_boot, MIN_N_BOOT):
        raise AuditInputError(f"n_boot must be an integer >= {MIN_N_BOOT}, got {n_boot!r}")
    if not _integer(seed, 0):
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
    keep_missing: bool = False,
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
    n_missing: dict[str, int] = {}
    for key, values in sensitive.items():
        if not isinstance(key, str) or not key:
            raise AuditInputError(f"sensitive attribute names must be non-empty strings, got {key!r}")
        sens[key], n_missing[key] = _sensitive(key, values, n, bool(keep_missing))

    subj, subject_codes, n_without = _subject_codes(subjects, n)
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
        subject_codes=subject_codes,
        n_missing=n_missing,
        n_without_subject=n_without,
        reference_pred=ref,
        reference_population=ref_pop,
        compressed_population=comp_pop,
        intersections=_intersections(intersections, list(sens)),
    )
