"""Measurement profiles (MLPerf loadgen style: BOTH a minimum count and a minimum duration)
and the run settings a result is stored under.

The agent (``edgefair/runtimes/agent.py``, standard library + numpy only) keeps a plain
copy of :data:`PROFILES` as dicts; ``tests/runtimes`` checks that the two agree.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from edgefair.contracts.errors import UsageError

MODES = ("bench", "eval", "both")
#: Protocol values a user may override (``--min-runs`` ...), in the agent's flag order.
OVERRIDE_KEYS = ("min_runs", "min_seconds", "max_seconds", "warmup_runs", "warmup_seconds")


@dataclass(frozen=True)
class MeasurementProfile:
    """Warm-up and measurement each stop when BOTH their run count and duration are met,
    or at ``max_seconds`` per phase, whichever comes first."""

    name: str
    warmup_runs: int
    warmup_seconds: float
    min_runs: int
    min_seconds: float
    max_seconds: float

    def protocol(self) -> dict[str, Any]:
        """The agent's form: the five numbers, no name."""
        return {k: getattr(self, k) for k in ("warmup_runs", "warmup_seconds", "min_runs", "min_seconds",
                                              "max_seconds")}

    def with_overrides(self, overrides: dict[str, Any] | None) -> dict[str, Any]:
        """The protocol with user overrides applied (unknown keys refused)."""
        proto = self.protocol()
        for k, v in (overrides or {}).items():
            if k not in OVERRIDE_KEYS:
                raise UsageError(f"unknown protocol override {k!r}; allowed: {', '.join(OVERRIDE_KEYS)}")
            if v is not None:
                proto[k] = v
        return proto


PROFILES: dict[str, MeasurementProfile] = {p.name: p for p in (
    MeasurementProfile("quick", warmup_runs=10, warmup_seconds=0.2, min_runs=100, min_seconds=1.0, max_seconds=10.0),
    MeasurementProfile("standard", warmup_runs=50, warmup_seconds=1.0, min_runs=1000, min_seconds=10.0,
                       max_seconds=120.0),
    # MLPerf Mobile submission rule: >= 1024 queries and >= 60 s.
    MeasurementProfile("mlperf", warmup_runs=100, warmup_seconds=5.0, min_runs=1024, min_seconds=60.0,
                       max_seconds=600.0),
)}
PROFILE_NAMES: tuple[str, ...] = tuple(PROFILES)


def settings_key(settings: dict[str, Any]) -> str:
    """A stable short hash of a settings document (what results are stored under)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RunSettings:
    """How one artefact is measured on one device: part of the key its result is stored under."""

    profile: str = "quick"
    threads: int = 1
    mode: str = "bench"  # bench | both (bench + eval) | eval
    overrides: dict[str, Any] = field(default_factory=dict)
    eval_limit: int | None = None  # evaluate only the first N test samples (slow emulated devices)
    profile_ops: int = 0  # > 0: a per-operator profile of that many invokes after the measurement

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise UsageError(f"unknown measurement profile '{self.profile}': expected one of {', '.join(PROFILES)}")
        if self.mode not in MODES:
            raise UsageError(f"unknown run mode '{self.mode}': expected one of {', '.join(MODES)}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise UsageError(f"threads must be an integer >= 0 (0 = runtime default), got {self.threads!r}")
        PROFILES[self.profile].with_overrides(self.overrides)  # refuses unknown keys
        if self.eval_limit is not None and self.eval_limit < 1:
            raise UsageError(f"eval limit must be >= 1, got {self.eval_limit}")
        if isinstance(self.profile_ops, bool) or not isinstance(self.profile_ops, int) or self.profile_ops < 0:
            raise UsageError(f"profile_ops must be an integer >= 0, got {self.profile_ops!r}")

    @property
    def measures(self) -> bool:
        return self.mode in ("bench", "both")

    @property
    def evaluates(self) -> bool:
        return self.mode in ("eval", "both")

    def protocol(self) -> dict[str, Any]:
        return PROFILES[self.profile].with_overrides(self.overrides)

    def key_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not d["profile_ops"]:  # runs stored before per-op profiles existed keep their keys
            del d["profile_ops"]
        return d

    def key(self) -> str:
        return settings_key(self.key_dict())


def parse_threads(text: str | int | None, default: int) -> list[int]:
    """``"1,2,4"`` -> [1, 2, 4]; None -> [default] (the device profile's count); 0 = runtime default."""
    if text is None:
        return [int(default)]
    items = str(text).split(",")
    out: list[int] = []
    for item in items:
        item = item.strip()
        if not item.isdigit():
            raise UsageError(f"--threads: '{text}' is not a thread count or a comma list such as 1,2,4")
        if int(item) not in out:
            out.append(int(item))
    return out
