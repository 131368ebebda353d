"""``bench run``: measure every artefact of a folder on one device and store the results."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgefair.bench.console import CLIError
from edgefair.bench.store import Store, settings_key


@dataclass
class RunSettings:
    """Measurement settings: part of the key a result is stored under."""

    profile: str = "quick"
    threads: int = 1
    mode: str = "bench"  # bench | both (bench + eval) | eval
    overrides: dict[str, Any] = field(default_factory=dict)
    eval_limit: int | None = None  # evaluate only the first N test samples (slow emulated devices)

    def key_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ArtifactRow:
    """One artefact's outcome on one device in this invocation."""

    name: str
    artifact_id: str
    status: str  # measured | cached | failed
    p50_ms: float | None = None
    p90_ms: float | None = None
    peak_rss_mb: float | None = None
    size_bytes: int | None = None
    accuracy: float | None = None
    error: str | None = None
    samples_path: str | None = None
    valid: bool | None = None


REQUIRED_KEYS = ("artifact_id", "name", "format", "model_file", "preprocessing", "file")


def discover_artifacts(root: Path) -> list[tuple[Path, dict]]:
    """Every ``*/manifest.json`` under ``root`` (sorted by name)."""
    root = Path(root)
    if not root.is_dir():
        raise CLIError(f"{root}: artefact folder not found (run bench export first)")
    found = []
    for mf in sorted(root.glob("*/manifest.json")):
        try:
            manifest = json.loads(mf.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CLIError(f"{mf}: unreadable manifest ({e})") from None
        missing = [k for k in REQUIRED_KEYS if k not in manifest] if isinstance(manifest, dict) else list(REQUIRED_KEYS)
        if missing:
            raise CLIError(f"{mf}: not an edgefair manifest (missing {', '.join(missing)}); wrap your own model with bench export --import")
        found.append((mf.parent, manifest))
    if not found:
        raise CLIError(f"{root}: no artefacts (no */manifest.json)")
    return found


def dataset_spec_for(manifests: list[dict], override: str | None) -> str:
    """The dataset the artefacts' source run was trained on, unless overridden."""
    if override:
        return override
    for m in manifests:
        run = (m.get("source") or {}).get("run")
        if run and (Path(run) / "model.json").exists():
            return json.loads((Path(run) / "model.json").read_text())["dataset"]["spec"]
    return "synthfer"


def write_test_batch(dataset_spec: str, manifest: dict, out: Path, *, split: str = "test", limit: int | None = None) -> tuple[Path, dict[str, int]]:
    """uint8 NHWC test images + ids as ``batch.npz``; returns it and the host-side labels by id."""
    from edgefair.data.preprocess import Preprocessing, samples_to_uint8
    from edgefair.data.registry import load_dataset

    ds = load_dataset(dataset_spec)
    samples = ds.split(split)[:limit] if limit else ds.split(split)
    prep = Preprocessing.from_dict(manifest["preprocessing"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.npz")
    np.savez(tmp, images=samples_to_uint8(samples, prep), ids=np.array([s.sample_id for s in samples]))
    tmp.replace(out)
    return out, {s.sample_id: s.label for s in samples}


def measure_artifacts(
    *,
    artifacts: Path,
    device: str,
    db: Path,
    settings: RunSettings,
    dataset: str | None = None,
    force: bool = False,
    only: list[str] | None = None,
    on_event: Callable[[str, str, dict], None] | None = None,
) -> list[ArtifactRow]:
    """Run every artefact on ``device``; store each result in ``db`` as soon as it exists.

    Results already in the database for the same artefact × device × settings are not
    measured again unless ``force``. A failure of one artefact (device error, agent
    error) is stored as failed and the loop goes on.
    """
    from edgefair.devices import DeviceError, open_transport, resolve_device, run_artifact

    event = on_event or (lambda kind, name, info: None)
    found = discover_artifacts(artifacts)
    if only:
        found = [(p, m) for p, m in found if m.get("name", p.name) in only]
    profile = resolve_device(device)
    db_path = Path(db)
    results_dir = db_path.parent / "samples"
    results_dir.mkdir(parents=True, exist_ok=True)
    spec = dataset_spec_for([m for _, m in found], dataset)
    key = settings.key_dict()
    rows: list[ArtifactRow] = []
    batches: dict[tuple, tuple[Path, dict[str, int]]] = {}
    transport = None
    with Store(db_path) as store:
        try:
            for path, manifest in found:
                name = manifest.get("name", path.name)
                aid = manifest["artifact_id"]
                store.put_artifact(manifest, path)
                if not force and store.has_run(aid, profile.name, key):
                    prev = store.get_run(aid, profile.name, key)
                    rows.append(_row_from_db(name, aid, prev, manifest, "cached"))
                    event("cached", name, {})
                    continue
                event("start", name, {})
                prep_key = (json.dumps(manifest["preprocessing"], sort_keys=True), settings.mode != "bench", settings.eval_limit)
                if prep_key not in batches:
                    batch = results_dir / f"batch-{settings_key({'p': prep_key, 'd': spec})}.npz"
                    batches[prep_key] = write_test_batch(spec, manifest, batch, limit=settings.eval_limit if settings.mode != "bench" else 1)
                batch_path, labels = batches[prep_key]
                try:
                    if transport is None:
                        transport = open_transport(profile, setup=True)
                    result = run_artifact(transport, path, batch_path, mode=settings.mode,
                                          threads=settings.threads, profile_name=settings.profile,
                                          overrides=settings.overrides or None)
                except DeviceError as e:
                    failed = getattr(e, "result", None) or {}
                    result = {**failed, "ok": False, "error": str(e).splitlines()[0]}
                accuracy = _accuracy(result, labels)
                samples_path = None
                timing = result.get("timing") or {}
                if timing.get("samples_s"):
                    sp = results_dir / f"{aid}-{profile.name}-{settings_key(key)}.npy"
                    np.save(sp, np.asarray(timing["samples_s"], dtype=np.float64))
                    samples_path = str(sp)
                store.put_run(artifact_id=aid, device=profile.name, settings=key, result=result,
                              accuracy=accuracy, samples_path=samples_path)
                row = _row_from_db(name, aid, store.get_run(aid, profile.name, key), manifest,
                                   "measured" if result.get("ok") else "failed")
                rows.append(row)
                event("done" if result.get("ok") else "failed", name, asdict(row))
        finally:
            if transport is not None:
                transport.close()
    return rows


def _accuracy(result: dict, labels: dict[str, int]) -> float | None:
    ev = result.get("eval") or {}
    ids, pred = ev.get("ids"), ev.get("pred")
    if not ids or pred is None:
        return None
    y = np.array([labels[i] for i in ids])
    return float((np.asarray(pred) == y).mean())


def _row_from_db(name: str, aid: str, rec: dict | None, manifest: dict, status: str) -> ArtifactRow:
    rec = rec or {}
    ms = lambda v: None if v is None else v * 1e3  # noqa: E731
    return ArtifactRow(
        name=name, artifact_id=aid, status=status,
        p50_ms=ms(rec.get("p50_s")), p90_ms=ms(rec.get("p90_s")),
        peak_rss_mb=None if rec.get("peak_rss_kb") is None else rec["peak_rss_kb"] / 1024,
        size_bytes=(manifest.get("file") or {}).get("size_bytes"), accuracy=rec.get("accuracy"),
        error=rec.get("error"), samples_path=rec.get("samples_path"),
        valid=None if rec.get("valid") is None else bool(rec.get("valid")),
    )
