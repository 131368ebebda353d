"""synthfer: determinism, ground truth, subject-disjoint splits, planted effects, cache."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from edgefair.data.registry import canonical_spec, load_dataset, parse_spec
from edgefair.data.sample import FER2013_CLASSES, DatasetError
from edgefair.data.synthfer import SynthConfig, generate_dataset, load_or_generate


@pytest.fixture(scope="module")
def small() -> object:
    return generate_dataset(SynthConfig(n=1200, seed=3))


def test_same_seed_same_bytes_other_seed_differs():
    a = generate_dataset(SynthConfig(n=120, seed=1))
    b = generate_dataset(SynthConfig(n=120, seed=1))
    c = generate_dataset(SynthConfig(n=120, seed=2))
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()


def test_samples_carry_ground_truth(small):
    samples = [s for split in small.splits.values() for s in split]
    assert len(samples) == 1200
    assert small.class_names == FER2013_CLASSES
    for s in samples[:50]:
        assert s.image.shape == (48, 48) and s.image.dtype == np.uint8
        assert 0 <= s.label < 7
        assert set(s.attributes) == {"gender", "skin_tone", "age"}
        assert s.subject.startswith("sf")
    assert set(Counter(s.label for s in samples)) == set(range(7))


def test_splits_are_subject_disjoint_and_every_tone_reaches_test(small):
    subjects = {k: {s.subject for s in v} for k, v in small.splits.items()}
    assert not subjects["train"] & subjects["val"]
    assert not subjects["train"] & subjects["test"]
    assert not subjects["val"] & subjects["test"]
    assert {s.attributes["skin_tone"] for s in small.splits["test"]} == {"light", "medium", "dark"}


def test_default_proportions_are_imbalanced_and_balanced_preset_is_not():
    default = generate_dataset(SynthConfig(n=4000, seed=0, samples_per_subject=4))
    balanced = generate_dataset(SynthConfig.from_preset("balanced").replace(n=4000, seed=0, samples_per_subject=4))

    def share(ds, value):
        xs = [s.attributes["skin_tone"] for v in ds.splits.values() for s in v]
        return xs.count(value) / len(xs)

    assert share(default, "light") == pytest.approx(0.7, abs=0.05)
    assert share(default, "dark") == pytest.approx(0.1, abs=0.03)
    for tone in ("light", "medium", "dark"):
        assert share(balanced, tone) == pytest.approx(1 / 3, abs=0.05)


def _feature_contrast(ds, tone: str) -> float:
    """Std of pixel values inside the central face region, averaged over a group."""
    vals = [s.image[14:40, 12:36].astype(float).std() for v in ds.splits.values() for s in v
            if s.attributes["skin_tone"] == tone]
    return float(np.mean(vals))


def test_planted_difficulty_lowers_contrast_on_dark_skin_only_in_default():
    cfg = SynthConfig(n=1500, seed=5, noise_sigma=0.0, occlusion_p=0.0, skin_tone_p=(1 / 3, 1 / 3, 1 / 3))
    default = generate_dataset(cfg)
    off = generate_dataset(cfg.replace(contrast=(1.0, 1.0, 1.0)))
    ratio_default = _feature_contrast(default, "dark") / _feature_contrast(default, "light")
    ratio_off = _feature_contrast(off, "dark") / _feature_contrast(off, "light")
    assert ratio_default < ratio_off - 0.1


def test_balanced_preset_gives_every_skin_tone_the_same_feature_contrast():
    cfg = SynthConfig.from_preset("balanced").replace(n=1500, seed=5, noise_sigma=0.0, occlusion_p=0.0)
    ds = generate_dataset(cfg)
    ratio = _feature_contrast(ds, "dark") / _feature_contrast(ds, "light")
    assert ratio == pytest.approx(1.0, abs=0.12)


def test_expressions_are_learnable_but_not_a_lookup():
    """A nearest-centroid classifier on raw pixels beats chance (7 classes) yet stays far from perfect."""
    ds = generate_dataset(SynthConfig(n=1400, seed=7))
    samples = [s for v in ds.splits.values() for s in v]
    x = np.stack([s.image for s in samples]).reshape(len(samples), -1).astype(float)
    x = (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True) + 1e-6)
    y = np.array([s.label for s in samples])
    fit, test = slice(0, 1000), slice(1000, None)
    centroids = np.stack([x[fit][y[fit] == c].mean(0) for c in range(7)])
    pred = ((x[test][:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    acc = (pred == y[test]).mean()
    assert 0.25 < acc < 0.9


def test_rgb_and_size_are_configurable():
    ds = generate_dataset(SynthConfig(n=60, size=64, rgb=True))
    img = ds.splits["train"][0].image
    assert img.shape == (64, 64, 3)


def test_cache_returns_identical_dataset(tmp_path):
    cfg = SynthConfig(n=90, seed=11)
    first = load_or_generate(cfg, cache_dir=tmp_path)
    assert list(tmp_path.glob("synthfer-*.npz"))
    second = load_or_generate(cfg, cache_dir=tmp_path)
    assert first.fingerprint() == second.fingerprint()


def test_torn_cache_file_is_regenerated(tmp_path):
    cfg = SynthConfig(n=90, seed=12)
    load_or_generate(cfg, cache_dir=tmp_path)
    path = next(tmp_path.glob("synthfer-*.npz"))
    path.write_bytes(b"not a zip")
    again = load_or_generate(cfg, cache_dir=tmp_path)
    assert again.fingerprint() == generate_dataset(cfg).fingerprint()


def test_spec_parsing_and_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEFAIR_CACHE_DIR", str(tmp_path))
    spec = parse_spec("synthfer:balanced:n=300")
    assert (spec.kind, spec.target, spec.options) == ("synthfer", "balanced", {"n": "300"})
    ds = load_dataset("synthfer:balanced:n=120:seed=4")
    assert ds.name == "synthfer-balanced" and sum(ds.counts().values()) == 120
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")
    with pytest.raises(DatasetError, match="fer2013 needs a path"):
        load_dataset("fer2013")
    with pytest.raises(DatasetError, match="no such file or directory"):
        load_dataset(f"fer2013:{tmp_path}/missing.csv")
    with pytest.raises(ValueError, match="unknown synthfer preset 'fancy'"):
        load_dataset("synthfer:fancy")


@pytest.mark.parametrize("spec, message", [
    ("synthfer:n=abc", "dataset 'synthfer:n=abc': option n must be an integer, got 'abc'"),
    ("synthfer:n=-5", "dataset 'synthfer:n=-5': option n must be >= 24, got -5"),
    ("synthfer:bogus=1", "dataset 'synthfer:bogus=1': unknown option 'bogus' for synthfer "
                         "(allowed: n, seed, size, rgb)"),
    ("synthfer:rgb=maybe", "dataset 'synthfer:rgb=maybe': option rgb must be true or false, got 'maybe'"),
    ("folder:/x:attributes=a.csv", "dataset 'folder:/x:attributes=a.csv': unknown option 'attributes' for folder "
                                   "(allowed: none)"),
])
def test_bad_spec_options_are_refused_before_loading(spec, message):
    with pytest.raises(DatasetError) as e:
        canonical_spec(spec)
    assert str(e.value) == message


def test_canonical_spec_is_the_same_from_any_directory(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    here = canonical_spec("folder:data:")
    monkeypatch.chdir("/")
    assert here == f"folder:{tmp_path / 'data'}" == canonical_spec(f"folder:{tmp_path}/data")
    assert canonical_spec("synthfer:seed=1:n=0300") == "synthfer:n=300:seed=1"
