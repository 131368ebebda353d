"""What an imported model file cannot say about itself: preprocessing, class names, test data.

Each value comes from the first of: a command-line flag (``--size``, ``--channels``,
``--mean``, ``--std``, ``--classes``, ``--dataset``), a ``--preprocessing FILE.toml``
(keys ``size``, ``channels``, ``mean``, ``std``, ``classes``), a ``--like RUN`` (its
preprocessing, classes and training data), the model's input shape (``size`` and
``channels``, with the layout), the dataset (class names, when their number fits), and
last ``class_0 … class_N-1``. Normalisation (``mean``/``std``) has no default: a wrong
guess would look like a bad model.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefair.contracts.dataset import DatasetRef, Preprocessing
from edgefair.contracts.manifest import TensorSpec
from edgefair.export.errors import ExportError

TOML_KEYS = ("size", "channels", "mean", "std", "classes")
_PREP_KEYS = ("size", "channels", "mean", "std")


@dataclass(frozen=True)
class ImportOptions:
    """The user's answers (None: not given)."""

    size: int | None = None
    channels: int | None = None
    mean: float | None = None
    std: float | None = None
    classes: tuple[str, ...] | None = None
    preprocessing_file: Path | None = None
    like_run: Path | None = None
    dataset: str | None = None

    def flags(self) -> dict[str, Any]:
        given = {"size": self.size, "channels": self.channels, "mean": self.mean, "std": self.std,
                 "classes": list(self.classes) if self.classes else None}
        return {k: v for k, v in given.items() if v is not None}


@dataclass
class Resolved:
    """Everything the manifest needs beyond the file, and where each value came from."""

    prep: Preprocessing
    layout: str
    class_names: list[str]
    dataset: DatasetRef | None
    data: Any = None  # the loaded FERDataset, when there is one
    origin: dict[str, str] = field(default_factory=dict)


def parse_classes(text: str) -> tuple[str, ...]:
    """``--classes a,b,c`` -> ('a', 'b', 'c'); empty names and duplicates refused."""
    names = tuple(n.strip() for n in text.split(","))
    if not names or any(not n for n in names):
        raise ExportError(f"--classes {text!r}: expected comma-separated class names, e.g. angry,happy,neutral")
    if len(set(names)) != len(names):
        raise ExportError(f"--classes {text!r}: a class name appears twice")
    return names


def read_preprocessing_toml(path: Path) -> dict[str, Any]:
    """The values of a ``--preprocessing`` file, checked (one-line errors naming the file and key)."""
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"--preprocessing {path}: no such file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ExportError(f"{path}: not a readable TOML file ({' '.join(str(e).split())})") from None
    for key in doc:
        if key not in TOML_KEYS:
            raise ExportError(f"{path}: unknown key '{key}' (known: {', '.join(TOML_KEYS)})")
    for key, kinds in (("size", (int,)), ("channels", (int,)), ("mean", (int, float)), ("std", (int, float))):
        if key in doc and (isinstance(doc[key], bool) or not isinstance(doc[key], kinds)):
            raise ExportError(f"{path}: key '{key}' must be a number, got {doc[key]!r}")
    classes = doc.get("classes")
    if isinstance(classes, str):
        doc["classes"] = list(parse_classes(classes))
    elif classes is not None and not (isinstance(classes, list) and classes and all(isinstance(c, str) and c
                                                                                    for c in classes)):
        raise ExportError(f"{path}: key 'classes' must be a list of class names, got {classes!r}")
    return doc


def _like_values(run: Path) -> tuple[dict[str, Any], DatasetRef | None]:
    from edgefair.models.checkpoint import read_meta

    meta = read_meta(run)  # CheckpointError (an EdgefairError) when run is not a run directory
    return {**meta.prep.to_dict(), "classes": list(meta.class_names)}, meta.dataset_ref()


def layered(opts: ImportOptions) -> tuple[dict[str, Any], dict[str, str], DatasetRef | None]:
    """Values and their origins, later layers winning: --like, then --preprocessing, then flags."""
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    ref = None
    layers: list[tuple[str, dict[str, Any]]] = []
    if opts.like_run is not None:
        like, ref = _like_values(opts.like_run)
        layers.append((f"--like {opts.like_run}", like))
    if opts.preprocessing_file is not None:
        layers.append((f"--preprocessing {opts.preprocessing_file}", read_preprocessing_toml(opts.preprocessing_file)))
    layers.append(("command-line flags", opts.flags()))
    for where, layer in layers:
        for k, v in layer.items():
            values[k], origin[k] = v, where
    return values, origin, ref


def image_geometry(shape: list[int], channels: int | None) -> tuple[str, int | None, int]:
    """(layout, size or None when dynamic, channels) from a 4-D input shape."""
    if len(shape) != 4:
        raise ExportError(f"input shape {shape} is not a 4-D image batch (N, H, W, C or N, C, H, W)")
    nchw = shape[1] > 0 and shape[2] == shape[3] and (shape[1] == channels if channels else shape[1] in (1, 3))
    nhwc = shape[3] > 0 and shape[1] == shape[2] and (shape[3] == channels if channels else shape[3] in (1, 3))
    if nhwc and not nchw:
        return "NHWC", shape[1] if shape[1] > 0 else None, shape[3]
    if nchw and not nhwc:
        return "NCHW", shape[2] if shape[2] > 0 else None, shape[1]
    if nchw and nhwc:  # e.g. [1, 3, 3, 3]: channels-first, as ONNX exporters write
        return "NCHW", shape[2] if shape[2] > 0 else None, shape[1]
    raise ExportError(f"input shape {shape}: cannot tell where the channels are"
                      + (f" ({channels} channel(s) at neither position 1 nor 3)" if channels else
                         ": pass --channels"))


def _geometry(file: Path, spec_in: TensorSpec, values: dict[str, Any], origin: dict[str, str]) -> tuple[str, int, int]:
    layout, size, channels = image_geometry(spec_in.shape, values.get("channels"))
    origin.setdefault("channels", "the model's input shape")
    if values.get("size") is not None and size is not None and values["size"] != size:
        raise ExportError(f"{file}: input {spec_in.shape} ({layout}) takes {size}x{size} images, but "
                          f"{origin.get('size')} says size {values['size']}")
    if size is None and values.get("size") is None:
        raise ExportError(f"{file}: input {spec_in.shape} has a dynamic image size: pass --size")
    if size is not None:
        origin.setdefault("size", "the model's input shape")
    return layout, int(values.get("size") or size or 0), int(channels)


def _normalisation(file: Path, values: dict[str, Any]) -> tuple[float, float]:
    missing = [k for k in ("mean", "std") if values.get(k) is None]
    if missing:
        raise ExportError(f"{file}: the file cannot say how pixels were normalised: pass --mean and --std "
                          "(x = (pixel/255 - mean)/std; e.g. --mean 0 --std 1 for pixel/255), "
                          "--preprocessing FILE.toml or --like RUN")
    if float(values["std"]) <= 0:
        raise ExportError(f"{file}: --std must be > 0, got {values['std']}")
    return float(values["mean"]), float(values["std"])


def _classes(file: Path, spec_out: TensorSpec, values: dict[str, Any], origin: dict[str, str],
             data: Any) -> list[str]:
    n_out = spec_out.shape[-1] if spec_out.shape and spec_out.shape[-1] > 0 else None
    if values.get("classes"):
        names = list(values["classes"])
        if n_out is not None and len(names) != n_out:
            raise ExportError(f"{file}: outputs {n_out} scores but {origin['classes']} name {len(names)} classes")
        return names
    if data is not None and (n_out is None or len(data.class_names) == n_out):
        origin["classes"] = f"the dataset {data.name}"
        return list(data.class_names)
    if n_out is None:
        raise ExportError(f"{file}: output {spec_out.shape} has a dynamic number of classes: pass --classes a,b,...")
    if data is not None:
        raise ExportError(f"{file}: outputs {n_out} scores but the dataset {data.name} has "
                          f"{len(data.class_names)} classes ({', '.join(data.class_names)})")
    origin["classes"] = "default names (no --classes)"
    return [f"class_{i}" for i in range(n_out)]


def _dataset(opts: ImportOptions, like_ref: DatasetRef | None) -> tuple[DatasetRef | None, Any]:
    from edgefair.data.registry import dataset_ref, load_dataset, load_ref

    if opts.dataset:
        data = load_dataset(opts.dataset)
        return dataset_ref(opts.dataset, data, seed=0), data
    if like_ref is not None:
        return like_ref, load_ref(like_ref)
    return None, None


def resolve(file: Path, spec_in: TensorSpec, spec_out: TensorSpec, opts: ImportOptions) -> Resolved:
    """Preprocessing, layout, class names and test data for ``file`` (ExportError naming what is missing)."""
    values, origin, like_ref = layered(opts)
    layout, size, channels = _geometry(file, spec_in, values, origin)
    mean, std = _normalisation(file, values)
    ref, data = _dataset(opts, like_ref)
    if ref is not None:
        origin["dataset"] = "--dataset" if opts.dataset else f"--like {opts.like_run}"
    names = _classes(file, spec_out, values, origin, data)
    prep = Preprocessing(size=size, channels=channels, mean=mean, std=std)
    return Resolved(prep=prep, layout=layout, class_names=names, dataset=ref, data=data, origin=origin)


def describe_origins(origin: dict[str, str]) -> str:
    """``size, channels from the model's input shape; mean, std from command-line flags; ...``"""
    by_source: dict[str, list[str]] = {}
    for key in (*_PREP_KEYS, "classes", "dataset"):
        if key in origin:
            by_source.setdefault(origin[key], []).append(key)
    return "; ".join(f"{', '.join(keys)} from {src}" for src, keys in by_source.items())
