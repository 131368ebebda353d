"""``bench data``: write or preview datasets (the embedded synthfer generator)."""

from __future__ import annotations

from pathlib import Path

import click

from edgefair.bench.console import emit_json, err, progress_bar
from edgefair.bench.options import command_errors, json_option


@click.group("data")
def data() -> None:
    """Write or preview datasets (the embedded synthfer generator)."""


@data.command("synthfer")
@click.option("--n", "n", type=click.IntRange(min=24), default=8000, show_default=True, help="Number of samples.")
@click.option("--preset", type=click.Choice(["default", "balanced"]), default="default", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", type=click.IntRange(min=16), default=48, show_default=True)
@click.option("--rgb", is_flag=True, help="Render RGB instead of grey.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output folder (generic folder format).")
@json_option
@command_errors
def data_synthfer_cmd(n: int, preset: str, seed: int, size: int, rgb: bool, out: Path, as_json: bool) -> None:
    """Generate synthfer and write it as images + labels.csv (the generic folder format)."""
    from edgefair.data.folder import write_folder
    from edgefair.data.synthfer import SynthConfig, generate_dataset

    cfg = SynthConfig.from_preset(preset).replace(n=n, seed=seed, size=size, rgb=rgb)
    with progress_bar("generating synthfer", n) as update:
        ds = generate_dataset(cfg, progress=lambda d, t: update(d))
    path = write_folder(ds, out)
    doc = {"out": str(path), "counts": ds.counts(), "config": cfg.to_dict(), "fingerprint": ds.fingerprint()}
    if as_json:
        emit_json(doc)
    else:
        counts = ", ".join(f"{k} {v}" for k, v in ds.counts().items())
        err.print(f"wrote {sum(ds.counts().values())} samples to {path} ({counts}); "
                  f"load with --dataset folder:{path}", markup=False)


@data.command("preview")
@click.option("--dataset", default="synthfer", show_default=True,
              help="Dataset spec, e.g. synthfer, synthfer:balanced, folder:PATH.")
@click.option("--attribute", default="skin_tone", show_default=True, help="Attribute whose groups form the columns.")
@click.option("--per-cell", type=click.IntRange(1, 8), default=3, show_default=True)
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="train", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("preview.png"), show_default=True)
@json_option
@command_errors
def data_preview_cmd(dataset: str, attribute: str, per_cell: int, split: str, out: Path, as_json: bool) -> None:
    """Save a PNG grid of samples: one row per expression, columns per group of an attribute."""
    from edgefair.data.preview import save_preview
    from edgefair.data.registry import canonical_spec, load_dataset

    spec = canonical_spec(dataset)
    with progress_bar(f"loading {spec}", 2) as update:
        # generating synthfer reports its samples; a cached or folder dataset loads in one step
        ds = load_dataset(spec, progress=lambda d, t: update(d / t if t else 0, description=f"generating {d}/{t}"))
        update(1, description=f"rendering the {attribute} grid")
        info = save_preview(ds, out, attribute=attribute, per_cell=per_cell, split=split)
        update(2, description=f"wrote {out.name}")
    if as_json:
        emit_json(info)
    else:
        err.print(f"wrote {out}: {len(info['rows'])} expressions × {len(info['groups'])} {attribute} groups",
                  markup=False)
