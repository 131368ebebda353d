"""``sweep.toml``: what a sweep trains, exports, runs and audits. Invalid keys fail loudly."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgefair.contracts.audit import MIN_SUBJECTS
from edgefair.contracts.errors import EdgefairError
from edgefair.contracts.measurement import PROFILE_NAMES
from edgefair.contracts.targets import TARGET_NAMES, TARGETS

ARCHS = ("cnn", "mobilenetv2", "resnet18")
PRUNING = ("unstructured", "structured")
PRUNE_SCOPES = ("global", "layer")
MITIGATIONS = ("none", "kd")


class ConfigError(EdgefairError, ValueError):
    """One line naming the file, the key and the allowed values."""


@dataclass
class SweepConfig:
    """Defaults: synthfer, compact CNN, every target, sparsity 0/0.5/0.75/0.9, local device."""

    dataset: str = "synthfer"
    archs: list[str] = field(default_factory=lambda: ["cnn"])
    epochs: int = 12
    seed: int = 0
    seeds: int = 1  # reference models per arch (seed, seed + 1, …); > 1 adds population figures over seeds
    targets: list[str] = field(default_factory=lambda: list(TARGET_NAMES))
    sparsities: list[float] = field(default_factory=lambda: [0.0, 0.5, 0.75, 0.9])
    pruning: str = "unstructured"
    prune_scope: str = "global"
    finetune_epochs: int = 2
    clusterings: list[int] = field(default_factory=list)  # empty or [0]: no clustering; e.g. [0, 16]
    mitigations: list[str] = field(default_factory=lambda: ["none"])  # ["none", "kd"]: plain and distilled
    kd_alpha: float = 0.9
    kd_temperature: float = 4.0
    calib: int = 256
    qat: bool = False
    devices: list[str] = field(default_factory=lambda: ["local"])
    profile: str = "quick"
    threads: int | None = None  # None: each device profile's thread count
    min_runs: int | None = None
    min_seconds: float | None = None
    retries: int = 1  # a run flagged invalid (contention, heat) is measured again this often after a cool-down
    attributes: list[str] = field(default_factory=list)  # empty: every attribute of the dataset
    intersections: bool = False
    min_n: int = 30
    min_subjects: int = MIN_SUBJECTS
    alpha: float = 0.05
    gap_points: float = 2.0
    min_accuracy_ratio: float = 0.99

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_toml(self) -> str:
        """The config as TOML (what ``bench sweep --print-config`` shows)."""
        lines = ["# bench sweep configuration (defaults). Save as sweep.toml and edit."]
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None:
                lines.append(f"# {f.name} = (profile default)")
                continue
            lines.append(f"{f.name} = {_toml_value(v)}")
        return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def _check_list(src: str, key: str, values: list, allowed: tuple[str, ...]) -> None:
    for v in values:
        if v not in allowed:
            raise ConfigError(f"{src}: {key}: '{v}' is not allowed; allowed values: {', '.join(allowed)}")


def _check_choices(cfg: SweepConfig, src: str) -> None:
    if "all" in cfg.targets:
        cfg.targets = list(TARGET_NAMES)
    _check_list(src, "targets", cfg.targets, TARGET_NAMES)
    _check_list(src, "archs", cfg.archs, ARCHS)
    _check_list(src, "pruning", [cfg.pruning], PRUNING)
    _check_list(src, "prune_scope", [cfg.prune_scope], PRUNE_SCOPES)
    _check_list(src, "mitigations", cfg.mitigations, MITIGATIONS)
    if not cfg.mitigations:
        raise ConfigError(f"{src}: mitigations: name at least one of {', '.join(MITIGATIONS)}")
    cfg.mitigations = sorted(set(cfg.mitigations), key=MITIGATIONS.index)
    _check_list(src, "profile", [cfg.profile], PROFILE_NAMES)


_INTEGERS = (("epochs", 1), ("calib", 1), ("min_n", 1), ("min_subjects", 2), ("threads", 0),
             ("finetune_epochs", 0), ("seed", None), ("seeds", 1), ("retries", 0))
_NUMBERS = (("min_runs", 0.0, float("inf")), ("min_seconds", 0.0, float("inf")), ("gap_points", 0.0, float("inf")),
            ("min_accuracy_ratio", 0.0, 1.0), ("alpha", 0.0, 0.5), ("kd_alpha", 0.0, 1.0))
_OPTIONAL = ("threads", "min_runs", "min_seconds")  # None: the profile's value


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_integer(src: str, key: str, v: Any, low: int | None) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or (low is not None and v < low):
        raise ConfigError(f"{src}: {key}: must be an integer >= {low}, got {v!r}" if low is not None else
                          f"{src}: {key}: must be an integer, got {v!r}")


def _check_numbers(cfg: SweepConfig, src: str) -> None:
    for s in cfg.sparsities:
        if not _is_number(s) or not 0 <= s < 1:
            raise ConfigError(f"{src}: sparsities: {s!r} is outside the allowed range [0, 1)")
    for key, low in _INTEGERS:
        v = getattr(cfg, key)
        if not (key in _OPTIONAL and v is None):
            _check_integer(src, key, v, low)
    for key, lo, hi in _NUMBERS:
        x = getattr(cfg, key)
        if key in _OPTIONAL and x is None:
            continue
        if not _is_number(x) or not lo <= x <= hi or (key == "alpha" and x == 0):
            what = f">= {lo:g}" if hi == float("inf") else f"in [{lo:g}, {hi:g}]" if key != "alpha" else "in (0, 0.5]"
            raise ConfigError(f"{src}: {key}: must be a number {what}, got {x!r}")
    _check_compression(cfg, src)


def _check_compression(cfg: SweepConfig, src: str) -> None:
    if not _is_number(cfg.kd_temperature) or not 0 < cfg.kd_temperature < float("inf"):
        raise ConfigError(f"{src}: kd_temperature: must be a number > 0, got {cfg.kd_temperature!r}")
    for k in cfg.clusterings:
        if isinstance(k, bool) or not isinstance(k, int) or k == 1 or k < 0:
            raise ConfigError(f"{src}: clusterings: {k!r} is not allowed; each must be 0 (no clustering) or an "
                              "integer K >= 2")


def _check_reference(cfg: SweepConfig, src: str) -> None:
    """The audit compares against an uncompressed fp32 artefact: the matrix must contain one."""
    fp32 = [t for t in cfg.targets if TARGETS[t].is_fp32]
    if 0 not in cfg.sparsities or not fp32:
        raise ConfigError(f"{src}: the audit needs an uncompressed reference: sparsities must include 0 and targets "
                          "an fp32 target (torch-fp32, onnx-fp32 or tflite-fp32)")
    if cfg.clusterings and 0 not in cfg.clusterings:
        raise ConfigError(f"{src}: the audit needs an uncompressed reference: clusterings must include 0 "
                          f"(no clustering), e.g. [0, {max(cfg.clusterings)}]")


def validate(cfg: SweepConfig, src: str = "sweep config") -> SweepConfig:
    """Check every key's value; raise ConfigError naming the key and the allowed values."""
    from edgefair.data.registry import canonical_spec
    from edgefair.data.sample import DatasetError

    if not cfg.targets or not cfg.sparsities or not cfg.devices or not cfg.archs:
        raise ConfigError(f"{src}: targets, sparsities, devices and archs must each name at least one value")
    _check_choices(cfg, src)
    _check_numbers(cfg, src)
    _check_reference(cfg, src)
    try:
        canonical_spec(cfg.dataset)
    except DatasetError as e:
        raise ConfigError(f"{src}: dataset: {e}") from None
    return cfg


def load_config(path: Path | None) -> SweepConfig:
    """Read ``sweep.toml`` (None: defaults). Unknown keys and wrong types are errors."""
    if path is None:
        return validate(SweepConfig(), "defaults")
    path = Path(path)
    src = str(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{src}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{src}: not valid TOML ({e})") from None
    known = {f.name: f for f in fields(SweepConfig)}
    defaults = SweepConfig()
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{src}: unknown key '{key}'; allowed keys: {', '.join(known)}")
        want = getattr(defaults, key)
        if isinstance(want, list) and not isinstance(value, list):
            value = [value]
        if isinstance(want, bool) and not isinstance(value, bool):
            raise ConfigError(f"{src}: {key}: expected true or false, got {value!r}")
        if isinstance(want, str) and not isinstance(value, str):
            raise ConfigError(f"{src}: {key}: expected a string, got {value!r}")
        if isinstance(want, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        kwargs[key] = value
    return validate(SweepConfig(**kwargs), src)
