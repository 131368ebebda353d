"""A PNG grid of samples per expression × group, so a person can see what a model learns from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgefair.data.preprocess import image_to_uint8
from edgefair.data.sample import DatasetError, FERDataset


def save_preview(ds: FERDataset, out: Path, *, attribute: str = "skin_tone", per_cell: int = 3, split: str = "train",
                 size: int = 48) -> dict:
    """Rows: expressions; column blocks: groups of ``attribute``; ``per_cell`` samples each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = ds.split(split)
    groups = sorted({s.attributes.get(attribute, "unknown") for s in samples})
    if not any(attribute in s.attributes for s in samples):
        have = ", ".join(ds.attribute_names) or "none"
        raise DatasetError(f"{ds.source or ds.name}: no sample has attribute '{attribute}' (have: {have})")
    rows = list(ds.class_names)
    figsize = (1.1 * per_cell * len(groups) + 1, 1.15 * len(rows) + 0.6)
    fig, axes = plt.subplots(len(rows), len(groups), figsize=figsize, squeeze=False)
    for r, cls in enumerate(rows):
        for c, g in enumerate(groups):
            picked = [s for s in samples if s.label == r and s.attributes.get(attribute, "unknown") == g][:per_cell]
            tiles = [image_to_uint8(s.image, size=size, channels=1)[:, :, 0] for s in picked]
            tiles += [np.full((size, size), 255, np.uint8)] * (per_cell - len(tiles))
            ax = axes[r][c]
            ax.imshow(np.concatenate(tiles, 1), cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{attribute}={g}", fontsize=9)
            if c == 0:
                ax.set_ylabel(cls, fontsize=9)
    fig.suptitle(f"{ds.name} ({split}): samples per expression × {attribute}", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return {"out": str(out), "rows": rows, "groups": groups, "attribute": attribute, "split": split}
