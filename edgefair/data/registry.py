"""Parse a ``--dataset`` spec and dispatch to the loader for it.

Specs: ``synthfer`` | ``synthfer:balanced`` | ``synthfer:n=3000:seed=1`` |
``fer2013:PATH`` | ``rafdb:PATH`` | ``ckplus:PATH[:attributes=CSV]`` |
``affectnet:PATH[:attributes=CSV]`` | ``folder:PATH``.
"""

from __future__ import annotations

from pathlib import Path

from edgefair.data.sample import DatasetError, FERDataset
from edgefair.paths import cache_dir

KINDS = ("synthfer", "fer2013", "rafdb", "ckplus", "affectnet", "folder")


def parse_spec(spec: str) -> tuple[str, str | None, dict[str, str]]:
    """Split ``kind:PATH:key=value`` into (kind, path or preset, options)."""
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise DatasetError(f"unknown dataset '{spec}': expected one of {', '.join(KINDS)} (e.g. fer2013:PATH)")
    parts = [p for p in rest.split(":") if p] if rest else []
    target: str | None = None
    opts: dict[str, str] = {}
    for p in parts:
        key, eq, value = p.partition("=")
        if eq and key.isidentifier():
            opts[key] = value
        elif target is None:
            target = p
        else:
            raise DatasetError(f"dataset '{spec}': unexpected part '{p}' (options are key=value)")
    if kind != "synthfer" and not target:
        raise DatasetError(f"dataset '{spec}': {kind} needs a path, e.g. {kind}:/data/{kind}")
    return kind, target, opts


def load_dataset(spec: str, *, seed: int = 0, n: int | None = None, progress=None) -> FERDataset:
    """Load a dataset from its spec (see module docstring)."""
    kind, target, opts = parse_spec(spec)
    if kind == "synthfer":
        from edgefair.data.synthfer import SynthConfig, load_or_generate

        cfg = SynthConfig.from_preset(target or "default")
        if n is not None:
            cfg = cfg.replace(n=n)
        if "n" in opts:
            cfg = cfg.replace(n=int(opts["n"]))
        cfg = cfg.replace(seed=int(opts.get("seed", seed)))
        if "size" in opts:
            cfg = cfg.replace(size=int(opts["size"]))
        if "rgb" in opts:
            cfg = cfg.replace(rgb=opts["rgb"].lower() in ("1", "true", "yes"))
        return load_or_generate(cfg, cache_dir=cache_dir("synthfer"), progress=progress)
    path = Path(target).expanduser()
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory")
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
