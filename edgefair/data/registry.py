"""Parse a ``--dataset`` spec, dispatch to its loader, and pin datasets down by reference.

Specs: ``synthfer`` | ``synthfer:balanced`` | ``synthfer:n=3000:seed=1`` |
``fer2013:PATH`` | ``rafdb:PATH`` | ``ckplus:PATH[:attributes=CSV]`` |
``affectnet:PATH[:attributes=CSV]`` | ``folder:PATH``.

Every option is checked (name and value) before anything is loaded. :func:`canonical_spec`
makes paths absolute so a spec means the same data from any working directory;
:func:`dataset_ref` / :func:`load_ref` record and reload a dataset exactly (same spec,
same split seed, same fingerprint).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgefair.contracts.dataset import DatasetRef
from edgefair.data.sample import DatasetError, FERDataset
from edgefair.paths import cache_dir

KINDS = ("synthfer", "fer2013", "rafdb", "ckplus", "affectnet", "folder")
SYNTH_PRESETS = ("default", "balanced")
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


def _positive_int(minimum: int) -> Callable[[str], str]:
    def check(value: str) -> str:
        try:
            n = int(value)
        except ValueError:
            raise ValueError(f"must be an integer, got '{value}'") from None
        if n < minimum:
            raise ValueError(f"must be >= {minimum}, got {n}")
        return str(n)

    return check


def _integer(value: str) -> str:
    try:
        return str(int(value))
    except ValueError:
        raise ValueError(f"must be an integer, got '{value}'") from None


def _boolean(value: str) -> str:
    v = value.strip().lower()
    if v not in _TRUE + _FALSE:
        raise ValueError(f"must be true or false, got '{value}'")
    return "true" if v in _TRUE else "false"


def _path(value: str) -> str:
    return str(Path(value).expanduser().absolute())


# Options each kind accepts, with the check that normalises the value.
OPTIONS: dict[str, dict[str, Callable[[str], str]]] = {
    "synthfer": {"n": _positive_int(24), "seed": _integer, "size": _positive_int(16), "rgb": _boolean},
    "fer2013": {}, "rafdb": {}, "folder": {},
    "ckplus": {"attributes": _path}, "affectnet": {"attributes": _path},
}


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed, validated spec: ``kind``, its path (or synthfer preset) and its options."""

    kind: str
    target: str | None
    options: dict[str, str] = field(default_factory=dict)

    def canonical(self) -> str:
        """The spec with absolute paths and options in a fixed order."""
        target = self.target
        if target is not None and self.kind != "synthfer":
            target = _path(target)
        parts = [self.kind] + ([target] if target else []) + [f"{k}={v}" for k, v in sorted(self.options.items())]
        return ":".join(parts)


def parse_spec(spec: str) -> DatasetSpec:
    """Split and check ``kind:PATH:key=value``; DatasetError names the spec and the bad part."""
    kind, _, rest = str(spec).partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise DatasetError(f"unknown dataset '{spec}': expected one of {', '.join(KINDS)} (e.g. fer2013:PATH)")
    target: str | None = None
    opts: dict[str, str] = {}
    for part in (p for p in rest.split(":") if p) if rest else ():
        key, eq, value = part.partition("=")
        if eq and key.isidentifier():
            opts[key] = _option(spec, kind, key, value)
        elif target is None:
            target = part
        else:
            raise DatasetError(f"dataset '{spec}': unexpected part '{part}' (options are key=value)")
    if kind == "synthfer" and target is not None and target not in SYNTH_PRESETS:
        raise DatasetError(f"dataset '{spec}': unknown synthfer preset '{target}': "
                           f"expected {' or '.join(SYNTH_PRESETS)}")
    if kind != "synthfer" and not target:
        raise DatasetError(f"dataset '{spec}': {kind} needs a path, e.g. {kind}:/data/{kind}")
    return DatasetSpec(kind, target, opts)


def _option(spec: str, kind: str, key: str, value: str) -> str:
    allowed = OPTIONS[kind]
    if key not in allowed:
        names = ", ".join(allowed) or "none"
        raise DatasetError(f"dataset '{spec}': unknown option '{key}' for {kind} (allowed: {names})")
    try:
        return allowed[key](value)
    except ValueError as e:
        raise DatasetError(f"dataset '{spec}': option {key} {e}") from None


def canonical_spec(spec: str) -> str:
    """Validated spec with absolute paths: the same data wherever it is read from."""
    return parse_spec(spec).canonical()


def load_dataset(spec: str, *, seed: int = 0, n: int | None = None, progress=None) -> FERDataset:
    """Load a dataset from its spec (see module docstring); ``seed`` is the split seed."""
    parsed = parse_spec(spec)
    if parsed.kind == "synthfer":
        return _load_synthfer(parsed, seed=seed, n=n, progress=progress)
    path = Path(parsed.target or "").expanduser()
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory")
    return _load_files(parsed.kind, path, parsed.options, seed=seed)


def _load_synthfer(parsed: DatasetSpec, *, seed: int, n: int | None, progress) -> FERDataset:
    from edgefair.data.synthfer import SynthConfig, load_or_generate

    opts = parsed.options
    cfg = SynthConfig.from_preset(parsed.target or "default")
    if n is not None:
        cfg = cfg.replace(n=n)
    if "n" in opts:
        cfg = cfg.replace(n=int(opts["n"]))
    cfg = cfg.replace(seed=int(opts.get("seed", seed)))
    if "size" in opts:
        cfg = cfg.replace(size=int(opts["size"]))
    if "rgb" in opts:
        cfg = cfg.replace(rgb=opts["rgb"] == "true")
    return load_or_generate(cfg, cache_dir=cache_dir("synthfer"), progress=progress)


def _load_files(kind: str, path: Path, opts: dict[str, str], *, seed: int) -> FERDataset:
    attrs = Path(opts["attributes"]) if "attributes" in opts else None
    if kind == "fer2013":
        from edgefair.data.fer2013 import load_fer2013

        return load_fer2013(path, seed=seed)
    if kind == "rafdb":
        from edgefair.data.rafdb import load_rafdb

        return load_rafdb(path, seed=seed)
    if kind == "ckplus":
        from edgefair.data.ckplus import load_ckplus

        return load_ckplus(path, attributes_csv=attrs, seed=seed)
    if kind == "affectnet":
        from edgefair.data.affectnet import load_affectnet

        return load_affectnet(path, attributes_csv=attrs, seed=seed)
    from edgefair.data.folder import load_folder

    return load_folder(path, seed=seed)


def dataset_ref(spec: str, dataset: FERDataset, *, seed: int) -> DatasetRef:
    """How to load ``dataset`` again from anywhere: canonical spec, split seed, fingerprint."""
    return DatasetRef(spec=canonical_spec(spec), seed=int(seed), fingerprint=dataset.fingerprint(),
                      name=dataset.name, counts=dataset.counts())


def load_ref(ref: DatasetRef, *, progress=None) -> FERDataset:
    """The dataset ``ref`` names, checked against its fingerprint (DatasetError on a mismatch)."""
    ds = load_dataset(ref.spec, seed=ref.seed, progress=progress)
    if ref.fingerprint and ds.fingerprint() != ref.fingerprint:
        raise DatasetError(f"dataset '{ref.spec}' (seed {ref.seed}) no longer matches the fingerprint the model "
                           f"was trained on ({ref.fingerprint[:12]}…): the data changed; pass --dataset to "
                           "evaluate on other data")
    return ds
