"""Shapes that flow between a study's stages: the training mix, and a figure over seeds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrainMix:
    """Train on ``n`` samples of the train split drawn at ``proportions`` of ``attribute``'s
    groups (the validation and test splits are left alone)."""

    attribute: str
    proportions: dict[str, float]
    n: int
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Spread:
    """A figure over a population of models (seeds): mean, a t interval of the mean, the values."""

    mean: float | None
    lo: float | None
    hi: float | None
    n: int
    values: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self, scale: float = 1.0, digits: int = 1) -> str:
        """``mean [lo, hi]`` (``mean`` alone with one seed, ``—`` with none)."""
        if self.mean is None:
            return "—"
        m = f"{self.mean * scale:.{digits}f}"
        if self.lo is None or self.hi is None:
            return m
        return f"{m} [{self.lo * scale:.{digits}f}, {self.hi * scale:.{digits}f}]"
