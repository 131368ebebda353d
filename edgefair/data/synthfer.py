"""synthfer: the embedded, seeded, procedural FER dataset with planted group effects.

Faces are rendered from facial action geometry (brows raise/lower/inner-raise, eye
openness, mouth corners, mouth opening and width, nose wrinkle) on a coordinate grid
that is first transformed by the pose (rotation, scale, shift), so jitter is exact.
Identity (face shape, feature positions, resting expression), lighting, sensor noise and
occasional occlusion make it a learning problem rather than a lookup.

Planted effects (configurable; ``balanced`` turns both off):
- group proportions (default skin tone 70/20/10, age 25/55/20);
- group-dependent difficulty: features are drawn with less contrast on darker skin,
  as an auto-exposed camera tuned on light skin would record them.

Nothing here exists in a library: the renderer is written by hand.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from edgefair.data.sample import FER2013_CLASSES, FERDataset, Sample

SKIN_TONES = ("light", "medium", "dark")
GENDERS = ("female", "male")
AGES = ("young", "adult", "senior")

# Action-unit intensities per expression, FER2013 order:
# brow_raise, brow_lower, inner_raise, eye_open, smile, mouth_open, mouth_width, nose_wrinkle
_AU = {
    "angry":    (0.0, 1.0, 0.0, 0.35, -0.35, 0.0, -0.2, 0.35),
    "disgust":  (0.0, 0.45, 0.0, -0.55, -0.45, 0.15, 0.1, 1.0),
    "fear":     (0.55, 0.0, 0.8, 0.9, -0.25, 0.5, 0.55, 0.0),
    "happy":    (0.1, 0.0, 0.0, -0.35, 1.0, 0.35, 0.45, 0.0),
    "sad":      (0.0, 0.2, 1.0, -0.3, -0.9, 0.0, -0.1, 0.0),
    "surprise": (1.0, 0.0, 0.2, 1.0, 0.0, 1.0, -0.4, 0.0),
    "neutral":  (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
}


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines a synthfer dataset; equal configs give equal bytes."""

    n: int = 8000
    seed: int = 0
    size: int = 48
    rgb: bool = False
    samples_per_subject: int = 8
    skin_tone_p: tuple[float, float, float] = (0.7, 0.2, 0.1)
    gender_p: tuple[float, float] = (0.5, 0.5)
    age_p: tuple[float, float, float] = (0.25, 0.55, 0.2)
    # feature contrast multiplier per skin tone under the default exposure
    contrast: tuple[float, float, float] = (1.0, 0.8, 0.6)
    # "camera": one exposure tuned on light skin (darker faces get less signal over the
    # same sensor noise); "per-face": exposure compensated so every face has the same
    # skin luminance (the balanced preset: no group-dependent difficulty at all)
    exposure: str = "camera"
    noise_sigma: float = 0.05
    occlusion_p: float = 0.08
    split_fractions: tuple[float, float, float] = (0.65, 0.15, 0.2)
    preset: str = "default"

    @classmethod
    def from_preset(cls, name: str) -> SynthConfig:
        """``default`` (imbalanced, darker skin harder) or ``balanced`` (both off)."""
        if name == "default":
            return cls()
        if name == "balanced":
            return cls(skin_tone_p=(1 / 3, 1 / 3, 1 / 3), gender_p=(0.5, 0.5),
                       age_p=(1 / 3, 1 / 3, 1 / 3), contrast=(1.0, 1.0, 1.0), exposure="per-face",
                       preset="balanced")
        raise ValueError(f"unknown synthfer preset '{name}': expected default or balanced")

    def replace(self, **kw) -> SynthConfig:
        return replace(self, **kw)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Identity:
    subject: str
    gender: str
    skin_tone: str
    age: str
    face_rx: float
    face_ry: float
    jaw: float
    eye_y: float
    eye_dx: float
    brow_gap: float
    mouth_y: float
    mouth_w: float
    skin: float
    hair: float
    resting: np.ndarray = field(default_factory=lambda: np.zeros(8))


def _make_identity(rng: np.random.Generator, idx: int, cfg: SynthConfig) -> _Identity:
    tone = SKIN_TONES[rng.choice(3, p=cfg.skin_tone_p)]
    gender = GENDERS[rng.choice(2, p=cfg.gender_p)]
    age = AGES[rng.choice(3, p=cfg.age_p)]
    skin = {"light": 0.80, "medium": 0.58, "dark": 0.36}[tone] + rng.normal(0, 0.03)
    hair = rng.uniform(0.70, 0.88) if age == "senior" else rng.uniform(0.08, 0.30)
    male = gender == "male"
    return _Identity(
        subject=f"sf{idx:05d}", gender=gender, skin_tone=tone, age=age,
        face_rx=rng.uniform(0.60, 0.70) + (0.04 if male else 0.0),
        face_ry=rng.uniform(0.78, 0.88),
        jaw=rng.uniform(0.6, 1.0) if male else rng.uniform(0.0, 0.35),
        eye_y=rng.uniform(-0.22, -0.12), eye_dx=rng.uniform(0.24, 0.32),
        brow_gap=rng.uniform(0.13, 0.19), mouth_y=rng.uniform(0.40, 0.50),
        mouth_w=rng.uniform(0.22, 0.30), skin=float(skin), hair=float(hair),
        resting=rng.normal(0, 0.12, size=8),
    )


def _seg_dist(px: np.ndarray, py: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Distance from every pixel to a polyline given as (k, 2) points."""
    a = pts[:-1]
    b = pts[1:]
    ab = b - a
    denom = np.maximum((ab**2).sum(1), 1e-12)
    # pixels (P,1) against segments (1,S)
    t = ((px[:, None] - a[None, :, 0]) * ab[None, :, 0] + (py[:, None] - a[None, :, 1]) * ab[None, :, 1]) / denom
    t = np.clip(t, 0, 1)
    cx = a[None, :, 0] + t * ab[None, :, 0]
    cy = a[None, :, 1] + t * ab[None, :, 1]
    return np.sqrt((px[:, None] - cx) ** 2 + (py[:, None] - cy) ** 2).min(1)


def _line(px: np.ndarray, py: np.ndarray, pts: np.ndarray, width: float, aa: float) -> np.ndarray:
    """Anti-aliased stroke of a polyline, evaluated only inside its bounding box."""
    m = width + aa
    box = ((px > pts[:, 0].min() - m) & (px < pts[:, 0].max() + m)
           & (py > pts[:, 1].min() - m) & (py < pts[:, 1].max() + m))
    out = np.zeros(px.shape)
    if box.any():
        d = _seg_dist(px[box], py[box], pts)
        out[box] = np.clip(1.0 - (d - width) / aa, 0.0, 1.0)
    return out


def _ellipse(px, py, cx, cy, rx, ry, aa):
    r = np.sqrt(((px - cx) / rx) ** 2 + ((py - cy) / ry) ** 2)
    return np.clip((1.0 - r) * min(rx, ry) / aa + 0.5, 0.0, 1.0)


def render_face(
    ident: _Identity, expression: str, rng: np.random.Generator, cfg: SynthConfig
) -> np.ndarray:
    """Render one face as float32 (size, size) grey in [0, 1] (before colour mapping)."""
    s = cfg.size
    aa = 2.0 / s  # one pixel of anti-aliasing in [-1, 1] units
    lin = (np.arange(s) + 0.5) / s * 2 - 1
    gy, gx = np.meshgrid(lin, lin, indexing="ij")
    # pose: inverse-transform the grid into face coordinates
    ang = rng.normal(0, np.deg2rad(7))
    scale = rng.uniform(0.9, 1.1)
    tx, ty = rng.normal(0, 0.06, size=2)
    c, sn = np.cos(ang), np.sin(ang)
    x0, y0 = gx - tx, gy - ty
    px = (c * x0 + sn * y0) / scale
    py = (-sn * x0 + c * y0) / scale
    px, py = px.ravel(), py.ravel()

    au = np.array(_AU[expression]) * (rng.uniform(0.65, 1.05) if expression != "neutral" else 0.0)
    au = au + ident.resting + rng.normal(0, 0.08, size=8)
    brow_raise, brow_lower, inner, eye_open, smile, mouth_open, mouth_w, wrinkle = au

    bg = rng.uniform(0.2, 0.9)
    img = np.full(px.shape, bg, dtype=np.float64)

    # hair behind the head: long for women, a short cap for men
    if ident.gender == "female":
        hair_mask = _ellipse(px, py + 0.05, 0.0, 0.12, ident.face_rx + 0.22, ident.face_ry + 0.25, aa)
        hair_mask *= np.clip((0.95 - py) / 0.1, 0, 1)
    else:
        hair_mask = _ellipse(px, py, 0.0, -0.12, ident.face_rx + 0.07, ident.face_ry + 0.02, aa)
        hair_mask *= np.clip((-0.25 - py) / 0.08, 0, 1)
    img = img * (1 - hair_mask) + ident.hair * hair_mask

    # face: an ellipse whose lower half is squarer for a stronger jaw
    sq = 2.0 + 2.0 * ident.jaw * (py > 0.1)
    fr = (np.abs(px / ident.face_rx) ** sq + np.abs((py - 0.05) / ident.face_ry) ** 2) ** (1 / 2)
    face = np.clip((1.0 - fr) * ident.face_rx / aa + 0.5, 0.0, 1.0)
    img = img * (1 - face) + ident.skin * face

    ink = np.zeros_like(img)  # how strongly a pixel is drawn dark
    bright = np.zeros_like(img)  # sclera / teeth highlights

    # eyes: openness sets the vertical radius; squint closes them
    eh = np.clip(0.065 + 0.035 * eye_open, 0.012, 0.14)
    for side in (-1, 1):
        ex = side * ident.eye_dx
        eye = _ellipse(px, py, ex, ident.eye_y, 0.10, eh, aa)
        bright = np.maximum(bright, 0.6 * eye)
        iris = _ellipse(px, py, ex, ident.eye_y, 0.045, min(eh, 0.045), aa)
        ink = np.maximum(ink, iris)
        # brows: height from raise/lower, slant from lower (inner down) and inner-raise (inner up)
        by = ident.eye_y - ident.brow_gap - 0.07 * brow_raise + 0.05 * brow_lower
        inner_dy = 0.06 * brow_lower - 0.07 * inner
        xs = np.linspace(ex - side * 0.13, ex + side * 0.13, 6)  # inner → outer
        tpos = np.linspace(0, 1, 6)
        ys = by + inner_dy * (1 - tpos) - 0.02 * np.sin(np.pi * tpos)
        ink = np.maximum(ink, _line(px, py, np.stack([xs, ys], 1), 0.028, aa))

    # nose and its wrinkle lines
    nose = np.array([[0.0, ident.eye_y + 0.05], [0.02, 0.18], [-0.05, 0.25]])
    ink = np.maximum(ink, 0.55 * _line(px, py, nose, 0.012, aa))
    if wrinkle > 0.2:
        for k in range(3):
            yk = ident.eye_y + 0.07 + 0.045 * k
            line = np.array([[-0.09, yk + 0.015], [0.0, yk], [0.09, yk + 0.015]])
            ink = np.maximum(ink, min(1.0, wrinkle) * 0.8 * _line(px, py, line, 0.009, aa))

    # mouth: corners up (smile) or down, opening, width
    mw = ident.mouth_w * (1 + 0.35 * mouth_w)
    my = ident.mouth_y
    xs = np.linspace(-mw, mw, 9)
    u = xs / mw
    curve = 0.09 * smile * (1 - u**2) - 0.09 * smile * 0.5  # corners move opposite to centre
    upper = my + curve - 0.5 * max(mouth_open, 0) * 0.09 * (1 - u**2)
    lower = my + curve + max(mouth_open, 0) * 0.11 * (1 - u**2)
    ink = np.maximum(ink, _line(px, py, np.stack([xs, upper], 1), 0.02, aa))
    if mouth_open > 0.12:
        ink = np.maximum(ink, _line(px, py, np.stack([xs, lower], 1), 0.02, aa))
        inside = (py > upper.min() - 0.0) & (np.abs(px) < mw * 0.9)
        lo = np.interp(px, xs, lower)
        up = np.interp(px, xs, upper)
        ink = np.maximum(ink, 0.85 * (inside & (py > up) & (py < lo)))

    # age: forehead wrinkles and nasolabial folds
    if ident.age != "young":
        depth = 0.35 if ident.age == "adult" else 0.8
        for k in range(3 if ident.age == "senior" else 1):
            yk = ident.eye_y - ident.brow_gap - 0.17 - 0.06 * k
            line = np.array([[-0.3, yk + 0.02], [0.0, yk], [0.3, yk + 0.02]])
            ink = np.maximum(ink, depth * 0.5 * _line(px, py, line, 0.008, aa))
        for side in (-1, 1):
            fold = np.array([[side * 0.12, 0.2], [side * 0.2, 0.33], [side * 0.24, 0.45]])
            ink = np.maximum(ink, depth * 0.45 * _line(px, py, fold, 0.008, aa))

    contrast = cfg.contrast[SKIN_TONES.index(ident.skin_tone)]
    ink *= face
    bright *= face
    img = img - contrast * ink * np.clip(ident.skin - 0.05, 0.15, 1.0) * 0.95
    img = img + contrast * bright * (1.0 - img) * 0.45 * (1 - ink)

    # occlusion: a hand or object over part of the face
    if rng.random() < cfg.occlusion_p:
        cx, cy = rng.uniform(-0.4, 0.4), rng.uniform(-0.3, 0.5)
        w, h = rng.uniform(0.15, 0.35), rng.uniform(0.12, 0.3)
        occ = (np.abs(px - cx) < w) & (np.abs(py - cy) < h)
        img = np.where(occ, rng.uniform(0.1, 0.9), img)

    # lighting: exposure and a side gradient, then sensor noise
    grad = 1.0 + rng.uniform(-0.25, 0.25) * gx.ravel() + rng.uniform(-0.12, 0.12) * gy.ravel()
    gain = 0.8 / ident.skin if cfg.exposure == "per-face" else 1.0
    img = img * gain * rng.uniform(0.85, 1.15) * grad
    img = img + rng.normal(0, cfg.noise_sigma, size=img.shape)
    return np.clip(img, 0, 1).reshape(s, s).astype(np.float32)


def _to_uint8(grey: np.ndarray, ident: _Identity, rgb: bool) -> np.ndarray:
    if not rgb:
        return np.round(grey * 255).astype(np.uint8)
    tint = {"light": (1.05, 0.97, 0.92), "medium": (1.05, 0.95, 0.85), "dark": (1.02, 0.94, 0.86)}[ident.skin_tone]
    out = np.stack([grey * t for t in tint], axis=-1)
    return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)


def _deal_subjects(idents: list[_Identity], cfg: SynthConfig, rng: np.random.Generator) -> dict[str, str]:
    """Subject → split, stratified by skin tone so every group reaches the test split."""
    out: dict[str, str] = {}
    for tone in SKIN_TONES:
        subs = [i.subject for i in idents if i.skin_tone == tone]
        rng.shuffle(subs)
        n = len(subs)
        n_train = int(round(cfg.split_fractions[0] * n))
        n_val = int(round(cfg.split_fractions[1] * n))
        for j, sub in enumerate(subs):
            out[sub] = "train" if j < n_train else ("val" if j < n_train + n_val else "test")
    return out


def generate_dataset(cfg: SynthConfig | None = None, *, progress=None) -> FERDataset:
    """Generate a synthfer dataset. ``progress(done, total)`` is called as it goes."""
    cfg = cfg or SynthConfig()
    if cfg.n < 3 * cfg.samples_per_subject:
        raise ValueError(f"synthfer n={cfg.n} is too small: need at least {3 * cfg.samples_per_subject}")
    rng = np.random.default_rng(cfg.seed)
    n_subjects = int(np.ceil(cfg.n / cfg.samples_per_subject))
    idents = [_make_identity(rng, i, cfg) for i in range(n_subjects)]
    split_of = _deal_subjects(idents, cfg, rng)
    splits: dict[str, list[Sample]] = {"train": [], "val": [], "test": []}
    k = 0
    for ident in idents:
        for _ in range(cfg.samples_per_subject):
            if k >= cfg.n:
                break
            label = int(rng.integers(0, len(FER2013_CLASSES)))
            grey = render_face(ident, FER2013_CLASSES[label], rng, cfg)
            sample = Sample(
                sample_id=f"synthfer-{k:06d}",
                image=_to_uint8(grey, ident, cfg.rgb),
                label=label,
                subject=ident.subject,
                attributes={"gender": ident.gender, "skin_tone": ident.skin_tone, "age": ident.age},
            )
            splits[split_of[ident.subject]].append(sample)
            k += 1
            if progress is not None and k % 200 == 0:
                progress(k, cfg.n)
    if progress is not None:
        progress(cfg.n, cfg.n)
    return FERDataset(
        name="synthfer" if cfg.preset == "default" else f"synthfer-{cfg.preset}",
        class_names=FER2013_CLASSES,
        splits=splits,
        source=f"synthfer(preset={cfg.preset}, n={cfg.n}, seed={cfg.seed}, size={cfg.size}, rgb={cfg.rgb})",
    )


_CACHE_VERSION = 2


def cache_key(cfg: SynthConfig) -> str:
    """Hash of the config and the renderer version: the cache file's name."""
    import hashlib
    import json

    blob = json.dumps({"v": _CACHE_VERSION, **cfg.to_dict()}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def load_or_generate(cfg: SynthConfig, *, cache_dir=None, progress=None) -> FERDataset:
    """Generate ``cfg`` once and keep it as an .npz in ``cache_dir`` (None: no cache).

    The cache holds exactly what generation returns, so a cached load is equal,
    sample for sample, to a fresh generation with the same config.
    """
    import io
    from pathlib import Path

    from edgefair.contracts.jsonio import atomic_write_bytes

    if cache_dir is None:
        return generate_dataset(cfg, progress=progress)
    path = Path(cache_dir) / f"synthfer-{cache_key(cfg)}.npz"
    if path.exists():
        try:
            return _from_npz(path, cfg)
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # a torn or stale cache file: regenerate
    ds = generate_dataset(cfg, progress=progress)
    buf = io.BytesIO()
    _to_npz(ds, buf)
    atomic_write_bytes(path, buf.getvalue())
    return ds


def _to_npz(ds: FERDataset, path) -> None:
    rows = [(split, s) for split in ("train", "val", "test") for s in ds.splits[split]]
    np.savez(
        path,
        images=np.stack([s.image for _, s in rows]),
        labels=np.array([s.label for _, s in rows], dtype=np.int64),
        ids=np.array([s.sample_id for _, s in rows]),
        subjects=np.array([s.subject for _, s in rows]),
        splits=np.array([split for split, _ in rows]),
        gender=np.array([s.attributes["gender"] for _, s in rows]),
        skin_tone=np.array([s.attributes["skin_tone"] for _, s in rows]),
        age=np.array([s.attributes["age"] for _, s in rows]),
    )


def _from_npz(path, cfg: SynthConfig) -> FERDataset:
    with np.load(path, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    splits: dict[str, list[Sample]] = {"train": [], "val": [], "test": []}
    for i in range(len(d["labels"])):
        splits[str(d["splits"][i])].append(Sample(
            sample_id=str(d["ids"][i]), image=d["images"][i], label=int(d["labels"][i]),
            subject=str(d["subjects"][i]),
            attributes={"gender": str(d["gender"][i]), "skin_tone": str(d["skin_tone"][i]), "age": str(d["age"][i])},
        ))
    return FERDataset(
        name="synthfer" if cfg.preset == "default" else f"synthfer-{cfg.preset}",
        class_names=FER2013_CLASSES, splits=splits,
        source=f"synthfer(preset={cfg.preset}, n={cfg.n}, seed={cfg.seed}, size={cfg.size}, rgb={cfg.rgb})",
    )
