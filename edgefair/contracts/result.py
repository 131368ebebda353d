"""The agent's ``result.json`` (docs/contracts.md), as the host reads it.

The agent writes a plain dict; :meth:`AgentResult.from_dict` checks it against the
contract (required keys, ordered percentiles, matching eval lengths) and gives typed
access to timing, RSS and predictions. Additive keys the agent or the host adds
(``device``, ``host``, ``warnings`` ...) stay in :attr:`AgentResult.doc`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgefair.contracts.errors import ResultError
from edgefair.contracts.jsonio import jsonable, one_line

RESULT_KEYS = ("agent_version", "ok", "error", "artifact", "runtime", "threads", "profile", "timing", "rss", "env",
               "valid", "invalid_reasons")
TIMING_KEYS = ("load_s", "first_inference_s", "warmup_n", "warmup_s", "n", "duration_s", "samples_s", "p50_s",
               "p90_s", "p99_s", "mean_s", "std_s", "p50_ci_s", "percentile_method")
RSS_KEYS = ("method", "baseline_kb", "after_load_kb", "after_first_kb", "steady_kb")
RSS_PHASES = ("after_load_kb", "after_first_kb", "steady_kb")
EVAL_KEYS = ("ids", "pred", "logits")


@dataclass(frozen=True)
class Timing:
    n: int = 0
    p50_s: float | None = None
    p90_s: float | None = None
    p99_s: float | None = None
    mean_s: float | None = None
    std_s: float | None = None
    samples_s: list[float] = field(default_factory=list)
    stopped_by: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Timing:
        return cls(n=int(d.get("n") or 0), p50_s=d.get("p50_s"), p90_s=d.get("p90_s"), p99_s=d.get("p99_s"),
                   mean_s=d.get("mean_s"), std_s=d.get("std_s"), samples_s=list(d.get("samples_s") or []),
                   stopped_by=d.get("stopped_by"))


@dataclass(frozen=True)
class Rss:
    """Peak RSS by phase in kB, all taken with one ``method``."""

    method: str | None = None
    baseline_kb: int | None = None
    after_load_kb: int | None = None
    after_first_kb: int | None = None
    steady_kb: int | None = None
    model_kb: int | None = None  # steady peak minus the runtime loaded without a model

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Rss:
        return cls(**{k: d.get(k) for k in ("method", "baseline_kb", *RSS_PHASES, "model_kb")})

    @property
    def peak_kb(self) -> int | None:
        values = [v for v in (self.after_load_kb, self.after_first_kb, self.steady_kb) if v is not None]
        return max(values) if values else None


@dataclass(frozen=True)
class Predictions:
    ids: list[str]
    pred: list[int]

    def by_id(self) -> dict[str, int]:
        return dict(zip(self.ids, self.pred, strict=True))


@dataclass(frozen=True)
class AgentResult:
    """One measurement of one artefact on one device (ok or failed)."""

    doc: dict[str, Any]

    # -- construction ---------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Any, *, where: str = "result.json") -> AgentResult:
        """Check ``d`` against the contract; ResultError names ``where`` and every problem found."""
        if not isinstance(d, Mapping):
            raise ResultError(f"{where}: not a JSON object")
        problems = result_problems(d)
        if problems:
            raise ResultError(f"{where}: " + "; ".join(problems))
        return cls(doc=jsonable(dict(d)))

    @classmethod
    def failure(cls, error: str, partial: Mapping[str, Any] | None = None) -> AgentResult:
        """A failed result built on the host (the device never answered, or answered nonsense)."""
        doc = dict(partial or {})
        doc.update(ok=False, valid=False, error=one_line(error) or "unknown error")
        return cls(doc=jsonable(doc))

    # -- typed views ----------------------------------------------------------------
    @property
    def ok(self) -> bool:
        return bool(self.doc.get("ok"))

    @property
    def error(self) -> str | None:
        return self.doc.get("error")

    @property
    def valid(self) -> bool:
        return bool(self.doc.get("valid", self.ok)) and self.ok

    @property
    def timing(self) -> Timing:
        return Timing.from_dict(self.doc.get("timing") or {})

    @property
    def rss(self) -> Rss:
        return Rss.from_dict(self.doc.get("rss") or {})

    @property
    def emulated(self) -> bool:
        return bool((self.doc.get("env") or {}).get("emulated") or self.doc.get("emulated"))

    @property
    def predictions(self) -> Predictions | None:
        ev = self.doc.get("eval") or {}
        if not ev.get("ids") or ev.get("pred") is None:
            return None
        return Predictions(ids=[str(i) for i in ev["ids"]], pred=[int(p) for p in ev["pred"]])

    def to_dict(self) -> dict[str, Any]:
        return self.doc


def result_problems(result: Mapping[str, Any], *, mode: str | None = None) -> list[str]:
    """Problems with a result dict against the contract (empty list = conforms)."""
    if not result.get("ok"):
        err = result.get("error")
        return [] if isinstance(err, str) and err and "\n" not in err else ["ok=false needs a one-line 'error'"]
    problems = [f"missing key {k!r}" for k in RESULT_KEYS if k not in result]
    if problems:
        return problems
    problems += _section_problems(result, "timing", TIMING_KEYS) + _section_problems(result, "rss", RSS_KEYS)
    mode = mode or result.get("mode")
    if mode in ("bench", "both") and not problems:
        problems += _timing_problems(result["timing"])
    if mode in ("eval", "both"):
        problems += _eval_problems(result.get("eval"))
    return problems


def _section_problems(result: Mapping[str, Any], name: str, keys: tuple[str, ...]) -> list[str]:
    section = result.get(name)
    if not isinstance(section, Mapping):
        return [f"{name!r} is not an object"]
    return [f"missing {name} key {k!r}" for k in keys if k not in section]


def _timing_problems(timing: Mapping[str, Any]) -> list[str]:
    if not timing["samples_s"]:  # benchmark_model keeps no samples and reports a mean only
        return [] if timing.get("mean_s") else ["no raw samples and no mean latency"]
    p50, p90, p99 = timing["p50_s"], timing["p90_s"], timing["p99_s"]
    if None in (p50, p90, p99) or not (0 < p50 <= p90 <= p99):
        return [f"percentiles not ordered: {p50}, {p90}, {p99}"]
    problems = []
    if timing["n"] != len(timing["samples_s"]):
        problems.append("timing.n != len(samples_s)")
    ci = timing["p50_ci_s"]
    if not ci or not (ci[0] <= p50 <= ci[1]):
        problems.append(f"p50 {p50} outside its CI {ci}")
    return problems


def _eval_problems(ev: Any) -> list[str]:
    if not isinstance(ev, Mapping):
        return ["missing 'eval'"]
    missing = [f"missing eval key {k!r}" for k in EVAL_KEYS if k not in ev]
    if missing:
        return missing
    if not all(isinstance(ev[k], list) for k in EVAL_KEYS):
        return ["eval ids/pred/logits must be lists"]
    if not (len(ev["ids"]) == len(ev["pred"]) == len(ev["logits"])):
        return ["eval ids/pred/logits lengths differ"]
    return []
