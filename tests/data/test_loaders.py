"""Real-dataset loaders on tiny fixtures in their exact on-disk formats."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from edgefair.data import ckplus
from edgefair.data.folder import load_folder, write_folder
from edgefair.data.registry import load_dataset
from edgefair.data.sample import FER2013_CLASSES, SPLITS, DatasetError, FERDataset, Sample
from tests.data import fixtures as fx


def subjects(ds: FERDataset, split: str) -> set[str]:
    return {s.subject for s in ds.splits[split]}


def assert_subject_disjoint(ds: FERDataset) -> None:
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not (subjects(ds, a) & subjects(ds, b) - {""}), (a, b)


# ----------------------------------------------------------------------------- FER2013


def test_fer2013_loads_official_splits(tmp_path: Path) -> None:
    csv_path, imgs = fx.write_fer2013(tmp_path)
    ds = load_dataset(f"fer2013:{csv_path}")
    assert ds.name == "fer2013" and ds.class_names == FER2013_CLASSES
    assert ds.counts() == {"train": 3, "val": 2, "test": 2}
    assert [s.label for s in ds.splits["train"]] == [0, 3, 6]
    assert [s.label for s in ds.splits["test"]] == [2, 5]
    first = ds.splits["train"][0]
    assert first.sample_id == "fer2013-1" and first.subject == "" and first.attributes == {}
    assert first.image.dtype == np.uint8 and np.array_equal(first.image, imgs[0])
    assert np.array_equal(ds.splits["val"][0].image, imgs[3])


def test_fer2013_directory_and_no_usage_column(tmp_path: Path) -> None:
    rows = [[i % 7, " ".join(["7"] * 2304)] for i in range(20)]
    fx.write_csv(tmp_path / "fer2013.csv", ["emotion", "pixels"], rows)
    ds = load_dataset(f"fer2013:{tmp_path}", seed=3)
    assert sum(ds.counts().values()) == 20 and all(ds.counts()[s] > 0 for s in SPLITS)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r[2].__setitem__(1, " ".join(["1"] * 2303)), "fer2013.csv:3: pixels has 2303 values, expected 2304"),
        (lambda r: r[1].__setitem__(1, " ".join(["1"] * 2303 + ["x"])),
         "fer2013.csv:2: pixels has a non-integer value 'x'"),
        (lambda r: r[3].__setitem__(1, " ".join(["256"] * 2304)), "fer2013.csv:4: pixel values must be 0..255"),
        (lambda r: r[4].__setitem__(0, 9), "fer2013.csv:5: emotion 9 is out of range 0..6"),
        (lambda r: r[4].__setitem__(0, "sad"), "fer2013.csv:5: emotion 'sad' is not an integer"),
        (lambda r: r[5].__setitem__(2, "Validation"), "fer2013.csv:6: Usage 'Validation'"),
        (lambda r: r[3].pop(), "fer2013.csv:4: 2 fields, expected 3"),
        (lambda r: [x.__setitem__(2, "Training") for x in r if x[2] == "PrivateTest"],
         "fer2013.csv: split\\(s\\) test empty"),
        (lambda r: r.__setitem__(0, ["emotion", "pixel", "Usage"]), "fer2013.csv:1: missing column\\(s\\) pixels"),
    ],
)
def test_fer2013_bad_input(tmp_path: Path, mutate, message: str) -> None:
    rows = [["emotion", "pixels", "Usage"]] + [[e, " ".join(["5"] * 2304), u] for e, u in fx.FER_ROWS]
    mutate(rows)
    path = fx.write_csv(tmp_path / "fer2013.csv", rows[0], rows[1:])
    with pytest.raises(DatasetError, match=message):
        load_dataset(f"fer2013:{path}")


def test_fer2013_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(f"fer2013:{tmp_path / 'nope.csv'}")
    with pytest.raises(DatasetError, match="fer2013.csv: no such file"):
        load_dataset(f"fer2013:{tmp_path}")


# ----------------------------------------------------------------------------- RAF-DB


def test_rafdb_labels_attributes_and_splits(tmp_path: Path) -> None:
    fx.write_rafdb(tmp_path)
    ds = load_dataset(f"rafdb:{tmp_path}", seed=1)
    assert ds.class_names == ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")
    assert ds.counts() == {"train": 11, "val": 1, "test": 3}
    by_id = {s.sample_id: s for split in SPLITS for s in ds.splits[split]}
    assert {s.sample_id for s in ds.splits["test"]} == {"rafdb-test_0001", "rafdb-test_0002", "rafdb-test_0003"}
    assert by_id["rafdb-test_0001"].label == 3  # 4 Happiness -> index 3
    assert by_id["rafdb-test_0001"].attributes == {"gender": "female", "race": "asian", "age": "40-69"}
    assert by_id["rafdb-test_0002"].attributes == {"gender": "male", "race": "african-american", "age": "70+"}
    assert by_id["rafdb-test_0003"].attributes == {"gender": "unsure", "race": "caucasian", "age": "0-3"}
    assert by_id["rafdb-train_00011"].attributes["gender"] == "7"  # unknown code kept as a group
    assert by_id["rafdb-train_00012"].attributes == {"gender": "unknown", "race": "unknown", "age": "unknown"}
    assert by_id["rafdb-train_00012"].label == 1
    img = by_id["rafdb-test_0002"].image
    assert img.shape == (24, 24, 3) and img.dtype == np.uint8
    # the val carve is seeded
    again = load_dataset(f"rafdb:{tmp_path}", seed=1)
    assert [s.sample_id for s in again.splits["val"]] == [s.sample_id for s in ds.splits["val"]]


def test_rafdb_bad_input(tmp_path: Path) -> None:
    root = fx.write_rafdb(tmp_path)
    labels = root / "EmoLabel" / "list_patition_label.txt"
    original = labels.read_text()

    labels.write_text(original.replace("train_00002.jpg 3", "train_00002.jpg 8"))
    with pytest.raises(DatasetError, match=r"list_patition_label.txt:2: label 8 is out of range 1..7"):
        load_dataset(f"rafdb:{root}")

    labels.write_text(original.replace("train_00003.jpg 4", "train_00003.jpg"))
    with pytest.raises(DatasetError, match=r"list_patition_label.txt:3: expected '<image> <label>'"):
        load_dataset(f"rafdb:{root}")

    labels.write_text(original)
    (root / "Image" / "aligned" / "train_00004_aligned.jpg").unlink()
    with pytest.raises(DatasetError, match=r"list_patition_label.txt:4: .*train_00004_aligned.jpg: image not found"):
        load_dataset(f"rafdb:{root}")

    (root / "Image" / "aligned" / "train_00004_aligned.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"list_patition_label.txt:4: .*train_00004_aligned.jpg: unreadable image"):
        load_dataset(f"rafdb:{root}")


def test_rafdb_bad_annotation(tmp_path: Path) -> None:
    root = fx.write_rafdb(tmp_path)
    attri = root / "Annotation" / "manual" / "train_00005_manu_attri.txt"
    lines = attri.read_text().splitlines()
    attri.write_text("\n".join(lines[:5] + ["female"] + lines[6:]) + "\n")
    with pytest.raises(DatasetError, match=r"train_00005_manu_attri.txt:6: gender 'female' is not an integer"):
        load_dataset(f"rafdb:{root}")
    attri.write_text("\n".join(lines[:6]) + "\n")
    with pytest.raises(DatasetError, match=r"train_00005_manu_attri.txt: 6 non-empty lines, expected 8"):
        load_dataset(f"rafdb:{root}")


# ----------------------------------------------------------------------------- CK+


def test_ckplus_frames_labels_and_subject_split(tmp_path: Path) -> None:
    root = fx.write_ckplus(tmp_path / "ck")
    (root / "Emotion" / "S005" / "001" / "._S005_001_00000005_emotion.txt").write_bytes(b"\x00\x05\x16\x07")
    attrs = fx.write_csv(tmp_path / "ck_attrs.csv", ["subject", "gender"],
                         [[f"S{s + 5:03d}", "f" if s % 2 else "m"] for s in range(9)] + [["S014", "x?"]])
    ds = load_dataset(f"ckplus:{root}:attributes={attrs}", seed=0)
    assert ds.class_names == ("neutral", "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
    assert sum(ds.counts().values()) == 10 * 4  # first frame + last 3 of each labelled sequence only
    assert all(ds.counts()[s] > 0 for s in SPLITS)
    assert_subject_disjoint(ds)
    by_id = {s.sample_id: s for split in SPLITS for s in ds.splits[split]}
    assert by_id["ckplus-S005_001_00000001"].label == 0
    assert [by_id[f"ckplus-S006_001_{f:08d}"].label for f in (3, 4, 5)] == [2, 2, 2]
    assert "ckplus-S005_001_00000002" not in by_id and not any("_002_" in k for k in by_id)
    assert by_id["ckplus-S006_001_00000001"].attributes == {"gender": "f"}
    assert by_id["ckplus-S014_001_00000001"].attributes == {"gender": "x?"}
    assert by_id["ckplus-S005_001_00000005"].subject == "S005"
    # noise has no face: centre crop kept and counted
    assert by_id["ckplus-S005_001_00000005"].image.shape == (40, 40)
    assert "no face detected in 40/40 frames" in ds.source


def test_ckplus_without_attributes_and_missing_subject(tmp_path: Path) -> None:
    root = fx.write_ckplus(tmp_path / "ck")
    attrs = fx.write_csv(tmp_path / "a.csv", ["subject", "gender", "age"], [["S005", "f", "30"]])
    ds = load_dataset(f"ckplus:{root}:attributes={attrs}")
    got = {s.subject: s.attributes for split in SPLITS for s in ds.splits[split]}
    assert got["S005"] == {"gender": "f", "age": "30"}
    assert got["S006"] == {"gender": "unknown", "age": "unknown"}
    assert all(s.attributes == {} for s in load_dataset(f"ckplus:{root}").splits["train"])


def test_ckplus_uses_detected_face_box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not ckplus._cascade().empty()
    assert ckplus.detect_face(np.zeros((60, 60), np.uint8)) is None
    monkeypatch.setattr(ckplus, "detect_face", lambda img: (10, 5, 20, 30))
    ds = load_dataset(f"ckplus:{fx.write_ckplus(tmp_path / 'ck')}")
    assert ds.splits["train"][0].image.shape == (30, 20)
    assert "no face" not in ds.source


def test_ckplus_crops_a_real_face(tmp_path: Path) -> None:
    mpl = pytest.importorskip("matplotlib")
    hopper = Path(mpl.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not hopper.is_file():
        pytest.skip("matplotlib sample image not installed")
    from PIL import Image

    root = fx.write_ckplus(tmp_path / "ck")
    face = np.asarray(Image.open(hopper).convert("L"))
    for f in range(1, 6):
        fx.save(face, root / "cohn-kanade-images" / "S005" / "001" / f"S005_001_{f:08d}.png")
    ds = load_dataset(f"ckplus:{root}")
    s005 = [s for split in SPLITS for s in ds.splits[split] if s.subject == "S005"]
    assert len(s005) == 4 and all(60 < s.image.shape[0] == s.image.shape[1] < 500 for s in s005)
    assert "no face detected in 36/40 frames" in ds.source


def test_ckplus_bad_input(tmp_path: Path) -> None:
    root = fx.write_ckplus(tmp_path / "ck")
    emo = root / "Emotion" / "S007" / "001" / "S007_001_00000005_emotion.txt"
    emo.write_text("   9.0000000e+00\n")
    with pytest.raises(DatasetError, match=r"S007_001_00000005_emotion.txt:1: emotion 9 is out of range 0..7"):
        load_dataset(f"ckplus:{root}")
    emo.write_text("\n   2.5000000e+00\n")
    with pytest.raises(DatasetError,
                       match=r"S007_001_00000005_emotion.txt:2: emotion '2.5000000e\+00' is not an integer"):
        load_dataset(f"ckplus:{root}")
    emo.write_text("3.0\n")
    (root / "cohn-kanade-images" / "S007" / "001" / "S007_001_00000005.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DatasetError, match=r"S007_001_00000005_emotion.txt: .*S007_001_00000005.png: unreadable image"):
        load_dataset(f"ckplus:{root}")
    bad = fx.write_csv(tmp_path / "attrs.csv", ["subject", "gender"], [["S005", "f"], ["S006", "m", "extra"]])
    with pytest.raises(DatasetError, match=r"attrs.csv:3: 3 fields, expected 2"):
        load_dataset(f"ckplus:{root}:attributes={bad}")


def test_ckplus_empty_split(tmp_path: Path) -> None:
    root = fx.write_ckplus(tmp_path / "ck", n_subjects=2)
    with pytest.raises(DatasetError, match=r"ck.*: split\(s\) .*empty"):
        load_dataset(f"ckplus:{root}")


# ----------------------------------------------------------------------------- AffectNet


def test_affectnet_folder_crops_drops_and_attributes(tmp_path: Path) -> None:
    root = fx.write_affectnet(tmp_path / "an")
    attrs = fx.write_csv(tmp_path / "an_attrs.csv", ["subDirectory_filePath", "gender", "race"],
                         [["1/va000.png", "female", "asian"], ["2/va001.png", "m", ""]])
    ds = load_dataset(f"affectnet:{root}:attributes={attrs}", seed=0)
    assert ds.class_names == ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
    assert ds.counts() == {"train": 9, "val": 1, "test": 3}  # 12 rows - 2 dropped, 10% carved as val
    assert "dropped 2 rows" in ds.source
    test = {s.sample_id: s for s in ds.splits["test"]}
    assert [s.label for s in ds.splits["test"]] == [7, 0, 3]
    assert test["affectnet-1/va000"].attributes == {"gender": "female", "race": "asian"}
    assert test["affectnet-2/va001"].attributes == {"gender": "m", "race": "unknown"}
    assert test["affectnet-3/va002"].attributes == {"gender": "unknown", "race": "unknown"}
    from PIL import Image

    full = np.asarray(Image.open(root / "Manually_Annotated_Images" / "1" / "va000.png"))
    assert np.array_equal(test["affectnet-1/va000"].image, full[4:20, 5:25])
    train_labels = sorted(s.label for s in ds.splits["train"] + ds.splits["val"])
    assert train_labels == [0, 1, 1, 2, 2, 3, 4, 5, 6, 7]


def test_affectnet_single_csv(tmp_path: Path) -> None:
    root = fx.write_affectnet(tmp_path / "an")
    rows = [r.split(",") for r in (root / "training.csv").read_text().splitlines()]
    fx.write_csv(root / "all.csv", rows[0], rows[1:] * 2)  # images found under Manually_Annotated_Images/
    ds = load_dataset(f"affectnet:{root / 'all.csv'}")
    assert sum(ds.counts().values()) == 20 and all(ds.splits[s] for s in SPLITS)
    assert all(s.attributes == {} for s in ds.splits["train"])


def test_affectnet_bad_input(tmp_path: Path) -> None:
    root = fx.write_affectnet(tmp_path / "an")
    train = root / "training.csv"
    text = train.read_text().splitlines()
    train.write_text("\n".join(text[:3] + [text[3].replace(",2,", ",11,")] + text[4:]) + "\n")
    with pytest.raises(DatasetError, match=r"training.csv:4: expression 11 is out of range 0..10"):
        load_dataset(f"affectnet:{root}")
    train.write_text("\n".join(text) + "\n")
    (root / "Manually_Annotated_Images" / "3" / "tr002.png").unlink()
    with pytest.raises(DatasetError, match=r"training.csv:4: .*tr002.png: image not found"):
        load_dataset(f"affectnet:{root}")
    (root / "validation.csv").unlink()
    with pytest.raises(DatasetError, match=r"validation.csv: not found"):
        load_dataset(f"affectnet:{root}")


def test_affectnet_face_box_outside_image(tmp_path: Path) -> None:
    root = fx.write_affectnet(tmp_path / "an")
    val = root / "validation.csv"
    lines = val.read_text().splitlines()
    lines[2] = lines[2].replace(",5,4,20,16,", ",500,4,20,16,")
    val.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"validation.csv:3: face box \(500,4,20,16\) lies outside"):
        load_dataset(f"affectnet:{root}")


# ----------------------------------------------------------------------------- folder


def _dataset() -> FERDataset:
    rng = np.random.default_rng(0)
    splits: dict[str, list[Sample]] = {}
    k = 0
    for split, n in (("train", 6), ("val", 3), ("test", 3)):
        splits[split] = []
        for i in range(n):
            shape = (16, 16, 3) if k % 4 == 0 else (16, 16)
            attrs = {"gender": ("female", "male")[k % 2], "skin_tone": ("light", "dark", "?")[k % 3]}
            splits[split].append(Sample(f"synth-{k:03d}", fx.image(rng, shape), k % 7, f"p{split}{i // 2}", attrs))
            k += 1
    return FERDataset("synthfer", FER2013_CLASSES, splits, source="test")


def test_folder_round_trip(tmp_path: Path) -> None:
    ds = _dataset()
    out = write_folder(ds, tmp_path / "out")
    assert (out / "labels.csv").read_text().splitlines()[0] == "path,label,subject,split,gender,skin_tone"
    assert (out / "classes.txt").read_text().split() == list(FER2013_CLASSES)
    back = load_dataset(f"folder:{out}")
    assert back.class_names == ds.class_names
    for split in SPLITS:
        a, b = ds.splits[split], back.splits[split]
        assert [(s.sample_id, s.label, s.subject, s.attributes) for s in a] == [
            (s.sample_id, s.label, s.subject, s.attributes) for s in b
        ]
        for x, y in zip(a, b, strict=True):
            assert x.image.shape == y.image.shape and np.array_equal(x.image, y.image)
    again = write_folder(back, tmp_path / "again")
    assert load_folder(again).fingerprint() == back.fingerprint()


def test_folder_names_classes_file_and_subject_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = []
    for i in range(20):
        fx.save(fx.image(rng, (12, 12)), tmp_path / "imgs" / f"{i}.png")
        rows.append([f"imgs/{i}.png", ("calm", "joy", "2")[i % 3], f"s{i // 2}", ("a", "")[i % 2]])
    fx.write_csv(tmp_path / "labels.csv", ["path", "label", "subject", "group"], rows)
    (tmp_path / "classes.txt").write_text("Calm\nJoy\nRage\n")
    ds = load_dataset(f"folder:{tmp_path}", seed=2)
    assert ds.class_names == ("calm", "joy", "rage")
    by_id = {s.sample_id: s for split in SPLITS for s in ds.splits[split]}
    assert [by_id[str(i)].label for i in range(3)] == [0, 1, 2]
    assert by_id["0"].attributes == {"group": "a"} and by_id["1"].attributes == {"group": "unknown"}
    assert all(ds.splits[s] for s in SPLITS)
    assert_subject_disjoint(ds)


def test_folder_integer_labels_default_to_fer2013_and_utkface_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    rows = []
    for i, name in enumerate(["25_0_2_2017.jpg", "3_1_0_2017.jpg", "80_1_4_2017.jpg", "odd.jpg"] * 3):
        rel = f"{i // 4}/{name}"
        fx.save(fx.image(rng, (10, 10, 3)), tmp_path / rel)
        rows.append([rel, i % 7, ("train", "val", "test")[i // 4]])
    fx.write_csv(tmp_path / "labels.csv", ["Path", "Label", " Split"], rows)  # header case/space tolerated
    ds = load_dataset(f"folder:{tmp_path / 'labels.csv'}")
    assert ds.class_names == FER2013_CLASSES
    assert ds.counts() == {"train": 4, "val": 4, "test": 4}
    first = ds.splits["train"]
    assert first[0].sample_id == "0/25_0_2_2017"  # stems repeat across folders
    assert first[0].attributes == {"age": "20-29", "gender": "male", "race": "asian"}
    assert first[1].attributes == {"age": "3-9", "gender": "female", "race": "white"}
    assert first[2].attributes == {"age": "70+", "gender": "female", "race": "others"}
    assert first[3].attributes == {"age": "unknown", "gender": "unknown", "race": "unknown"}


@pytest.mark.parametrize(
    ("row", "classes", "message"),
    [
        (["imgs/0.png", "7", "train"], None, r"labels.csv:3: label 7 is out of range 0..6"),
        (["imgs/0.png", "bored", "train"], "calm\njoy\n", r"labels.csv:3: label 'bored' is not one of calm, joy"),
        (["imgs/0.png", "1", "holdout"], None, r"labels.csv:3: split 'holdout' is not one of train, val, test"),
        (["imgs/missing.png", "1", "train"], None, r"labels.csv:3: .*missing.png: image not found"),
        (["imgs/bad.png", "1", "train"], None, r"labels.csv:3: .*bad.png: unreadable image"),
        (["imgs/0.png", "1"], None, r"labels.csv:3: 2 fields, expected 3"),
    ],
)
def test_folder_bad_input(tmp_path: Path, row: list[str], classes: str | None, message: str) -> None:
    fx.save(np.zeros((8, 8), np.uint8), tmp_path / "imgs" / "0.png")
    (tmp_path / "imgs" / "bad.png").write_bytes(b"garbage")
    if classes:
        (tmp_path / "classes.txt").write_text(classes)
    good = [["imgs/0.png", "0", s] for s in ("train", "val", "test")]
    fx.write_csv(tmp_path / "labels.csv", ["path", "label", "split"], good[:1] + [row] + good[1:])
    with pytest.raises(DatasetError, match=message):
        load_dataset(f"folder:{tmp_path}")


def test_folder_empty_split_and_missing_labels(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "labels.csv")) + ": not found"):
        load_dataset(f"folder:{tmp_path}")
    fx.save(np.zeros((8, 8), np.uint8), tmp_path / "a.png")
    fx.write_csv(tmp_path / "labels.csv", ["path", "label", "split"], [["a.png", "1", "train"], ["a.png", "2", "test"]])
    with pytest.raises(DatasetError, match=r"labels.csv: split\(s\) val empty"):
        load_dataset(f"folder:{tmp_path}")
