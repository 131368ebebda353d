"""What an artefact says about its input: preprocessing, and the dataset it was trained on."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgefair.contracts.errors import ContractError
from edgefair.contracts.fields import Fields


@dataclass(frozen=True)
class Preprocessing:
    """Resize to ``size``×``size``, convert to ``channels``, then x = (pixel/255 − mean)/std."""

    size: int = 48
    channels: int = 1
    mean: float = 0.5
    std: float = 0.25

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def parse(cls, f: Fields) -> Preprocessing:
        return cls(size=f.integer("size", minimum=1), channels=f.integer("channels", minimum=1),
                   mean=f.number("mean"), std=f.number("std", positive=True))

    @classmethod
    def from_dict(cls, d: Any, *, where: str = "preprocessing") -> Preprocessing:
        """Validated: size/channels positive integers, std > 0 (ContractError otherwise)."""
        return cls.parse(Fields(d, where=where, section="preprocessing"))


@dataclass(frozen=True)
class DatasetRef:
    """Which data a model was trained on, so evaluation loads the same test split from anywhere.

    ``spec`` is canonical (paths absolute, options validated), ``seed`` the split seed the
    loader was called with, ``fingerprint`` the sha256 over every sample of every split.
    """

    spec: str
    seed: int = 0
    fingerprint: str | None = None
    name: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def parse(cls, f: Fields) -> DatasetRef:
        counts = f.mapping("counts", {})
        if any(not isinstance(v, int) or isinstance(v, bool) for v in counts.values()):
            raise f.error(f"{f.label('counts')} must map split names to integers")
        return cls(spec=f.text("spec"), seed=f.integer("seed", 0), fingerprint=f.text("fingerprint", None),
                   name=f.text("name", None), counts=dict(counts))

    @classmethod
    def from_dict(cls, d: Any, *, where: str = "dataset") -> DatasetRef:
        return cls.parse(Fields(d, where=where, section="dataset", error_type=ContractError))
