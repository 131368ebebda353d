"""A study's TOML: what it trains, compresses and evaluates. Shipped ones live in
``edgefair/bench/studies/NAME.toml``; a ``[quick]`` table overrides keys for ``--quick``.

Unknown keys and bad values are one-line errors naming the file and the key (exit 2).
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from edgefair.contracts.errors import EXIT_USAGE, EdgefairError
from edgefair.contracts.targets import TARGET_NAMES

KINDS = ("compression", "data-balance")
PRUNINGS = ("unstructured", "structured")
MITIGATIONS = ("none", "kd")
SCOPES = ("global", "layer")
ARCHS = ("cnn", "mobilenetv2", "resnet18")
STUDIES = ("compression-fairness", "distillation", "data-balance")


class StudyConfigError(EdgefairError, ValueError):
    """One line: the file, the key and what is allowed."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class StudyConfig:
    """One study; ``kind`` picks the runner (compression matrix, or training-set balance)."""

    name: str
    kind: str
    title: str = ""
    paper: str = ""  # the direction the paper reports, set beside the result
    dataset: str = "synthfer"
    arch: str = "cnn"
    epochs: int = 12
    seeds: int = 3
    data_seed: int = 0  # one split (and one synthfer draw) for every seed: a fixed test set
    attribute: str = "skin_tone"
    alpha: float = 0.05
    # compression
    targets: list[str] = field(default_factory=lambda: ["onnx-fp32"])
    sparsities: list[float] = field(default_factory=lambda: [0.0, 0.5, 0.9])
    prunings: list[str] = field(default_factory=lambda: ["unstructured"])
    clusterings: list[int] = field(default_factory=lambda: [0])  # 0: no clustering
    mitigations: list[str] = field(default_factory=lambda: ["none"])
    finetune_epochs: int = 2
    kd_alpha: float = 0.9
    kd_temperature: float = 4.0
    prune_scope: str = "global"
    calib: int = 256
    cie_top: float = 0.1
    # data balance
    balance_steps: int = 5
    train_n: int = 0  # 0: the largest size every step can supply

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_overrides(self, **kw: Any) -> StudyConfig:
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


_CHOICES = {"kind": KINDS, "arch": ARCHS, "prune_scope": SCOPES}
_LIST_CHOICES = {"targets": TARGET_NAMES, "prunings": PRUNINGS, "mitigations": MITIGATIONS}
_INT_MIN = {"epochs": 1, "seeds": 1, "data_seed": None, "finetune_epochs": 0, "calib": 1, "balance_steps": 2,
            "train_n": 0}
_FLOAT_RANGE = {"alpha": (0.0, 0.5), "kd_alpha": (0.0, 1.0), "kd_temperature": (0.0, 1000.0),
                "cie_top": (0.0, 1.0)}


def _fail(src: str, key: str, problem: str) -> StudyConfigError:
    return StudyConfigError(f"{src}: {key}: {problem}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _coerce(src: str, key: str, value: Any, want: Any) -> Any:
    """The TOML value as the field's type (a scalar where a list is wanted becomes a list)."""
    if isinstance(want, list):
        value = value if isinstance(value, list) else [value]
        inner = float if key == "sparsities" else int if key == "clusterings" else str
        return [_coerce(src, key, v, inner()) for v in value]
    if isinstance(want, bool) or isinstance(want, str):
        if type(value) is not type(want):
            raise _fail(src, key, f"expected a {'boolean' if isinstance(want, bool) else 'string'}, got {value!r}")
        return value
    if isinstance(want, float):
        if not (_is_int(value) or isinstance(value, float)):
            raise _fail(src, key, f"expected a number, got {value!r}")
        return float(value)
    if not _is_int(value):
        raise _fail(src, key, f"expected an integer, got {value!r}")
    return value


def _check_choices(cfg: StudyConfig, src: str) -> None:
    for key, allowed in _CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise _fail(src, key, f"'{getattr(cfg, key)}' is not allowed; allowed values: {', '.join(allowed)}")
    for key, allowed in _LIST_CHOICES.items():
        values = getattr(cfg, key)
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise _fail(src, key, f"'{bad[0] if bad else ''}' is not allowed; allowed values: {', '.join(allowed)}")


def _check_numbers(cfg: StudyConfig, src: str) -> None:
    for key, low in _INT_MIN.items():
        if low is not None and getattr(cfg, key) < low:
            raise _fail(src, key, f"must be an integer >= {low}, got {getattr(cfg, key)!r}")
    for key, (lo, hi) in _FLOAT_RANGE.items():
        x = getattr(cfg, key)
        if not lo < x <= hi:
            raise _fail(src, key, f"must be a number in ({lo:g}, {hi:g}], got {x!r}")


def _check_axes(cfg: StudyConfig, src: str) -> None:
    if not cfg.sparsities or any(not 0 <= s < 1 for s in cfg.sparsities):
        raise _fail(src, "sparsities", f"values must be in [0, 1), got {cfg.sparsities!r}")
    if not cfg.clusterings or any(k != 0 and not 2 <= k <= 256 for k in cfg.clusterings):
        raise _fail(src, "clusterings", f"values must be 0 (none) or 2..256 clusters, got {cfg.clusterings!r}")
    if cfg.kind == "compression" and not any(t.endswith("fp32") for t in cfg.targets):
        raise _fail(src, "targets", "the reference needs an fp32 target (e.g. onnx-fp32)")


def check(cfg: StudyConfig, src: str) -> StudyConfig:
    """Every key's value against what is allowed (StudyConfigError naming ``src`` and the key)."""
    _check_choices(cfg, src)
    _check_numbers(cfg, src)
    _check_axes(cfg, src)
    _check_dataset(cfg, src)
    return cfg


def _check_dataset(cfg: StudyConfig, src: str) -> None:
    from edgefair.data.registry import canonical_spec
    from edgefair.data.sample import DatasetError

    try:
        canonical_spec(cfg.dataset)
    except DatasetError as e:
        raise _fail(src, "dataset", str(e)) from None


def _from_table(raw: dict[str, Any], src: str, base: StudyConfig | None) -> StudyConfig:
    known = {f.name for f in fields(StudyConfig)}
    if base is None:
        for key in ("name", "kind"):
            if key not in raw:
                raise _fail(src, key, "missing (every study names itself and its kind)")
        base = StudyConfig(name=str(raw["name"]), kind=str(raw["kind"]))
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise _fail(src, key, f"unknown key; allowed keys: {', '.join(sorted(known | {'quick'}))}")
        kwargs[key] = _coerce(src, key, value, getattr(base, key))
    return replace(base, **kwargs)


def parse_study(text: str, src: str, *, quick: bool = False) -> StudyConfig:
    """A study from TOML text; with ``quick`` the ``[quick]`` table's keys replace the rest."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise StudyConfigError(f"{src}: not valid TOML ({e})") from None
    quick_raw = raw.pop("quick", {})
    if not isinstance(quick_raw, dict):
        raise _fail(src, "quick", "must be a table ([quick])")
    cfg = check(_from_table(raw, src, None), src)
    if quick:
        cfg = check(_from_table(quick_raw, f"{src} [quick]", cfg), f"{src} [quick]")
    else:
        check(_from_table(quick_raw, f"{src} [quick]", cfg), f"{src} [quick]")
    return cfg


def builtin_text(name: str) -> str:
    """The shipped TOML of study ``name``."""
    if name not in STUDIES:
        raise StudyConfigError(f"study '{name}': unknown; shipped studies: {', '.join(STUDIES)} "
                               "(or pass --config FILE)")
    return resources.files("edgefair.bench").joinpath("studies", f"{name}.toml").read_text()


def load_study(name: str, *, config: Path | None = None, quick: bool = False) -> StudyConfig:
    """The shipped study ``name``, or ``config`` (a file) when given."""
    if config is None:
        return parse_study(builtin_text(name), f"studies/{name}.toml", quick=quick)
    try:
        text = Path(config).read_text()
    except FileNotFoundError:
        raise StudyConfigError(f"{config}: no such file") from None
    except (IsADirectoryError, UnicodeDecodeError) as e:
        raise StudyConfigError(f"{config}: cannot be read as TOML ({e})") from None
    return parse_study(text, str(config), quick=quick)
