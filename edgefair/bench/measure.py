"""``bench run``: measure every artefact of a folder on one device and store the results.

Test data comes from the artefacts' own manifests (the dataset reference recorded at
training: canonical spec, split seed, fingerprint) or from an explicit ``--dataset``, never
from the working directory: the same artefacts give the same predictions wherever the
command runs.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgefair.bench.console import CLIError
from edgefair.bench.store import Store
from edgefair.contracts.dataset import DatasetRef, Preprocessing
from edgefair.contracts.jsonio import atomic_write_bytes
from edgefair.contracts.manifest import MANIFEST, Manifest, read_manifest
from edgefair.contracts.measurement import RunSettings, settings_key
from edgefair.contracts.result import AgentResult
from edgefair.devices.lock import device_lock

Event = Callable[[str, str, dict], None]
COOL_DOWN_S = 2.0  # pause before measuring an invalid run again


@dataclass(frozen=True)
class Artifact:
    """An artefact folder and its parsed manifest."""

    folder: Path
    manifest: Manifest

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def artifact_id(self) -> str:
        return self.manifest.artifact_id


@dataclass
class ArtifactRow:
    """One artefact's outcome on one device in this invocation."""

    name: str
    artifact_id: str
    status: str  # measured | cached | failed | not-measured (the device run stopped before it)
    #            | host-only (a torch row on a remote device: not run, not stored, not a failure)
    p50_ms: float | None = None
    p90_ms: float | None = None
    peak_rss_mb: float | None = None
    size_bytes: int | None = None
    accuracy: float | None = None
    error: str | None = None
    samples_path: str | None = None
    valid: bool | None = None
    invalid_reasons: list[str] | None = None


def discover_artifacts(root: Path) -> list[Artifact]:
    """Every ``*/manifest.json`` under ``root`` (sorted by folder name), each validated."""
    root = Path(root)
    if not root.is_dir():
        raise CLIError(f"{root}: artefact folder not found (run bench export first)")
    found = [Artifact(mf.parent, read_manifest(mf.parent)) for mf in sorted(root.glob(f"*/{MANIFEST}"))]
    if not found:
        raise CLIError(f"{root}: no artefacts (no */manifest.json)")
    return found


def select(found: list[Artifact], only: list[str] | None) -> list[Artifact]:
    """The artefacts named in ``only`` (all when empty); an unknown name is an error."""
    if not only:
        return found
    names = {a.name for a in found}
    unknown = [n for n in only if n not in names]
    if unknown:
        raise CLIError(f"--only {', '.join(unknown)}: no such artefact (have: {', '.join(sorted(names))})")
    return [a for a in found if a.name in only]


def eval_dataset(artifacts: list[Artifact], override: str | None) -> DatasetRef:
    """The test data for these artefacts: their recorded dataset, or ``override``.

    An explicit spec equal to the recorded one keeps the recorded split seed and
    fingerprint; any other explicit spec is loaded with split seed 0.
    """
    from edgefair.data.registry import canonical_spec

    refs = {a.name: a.manifest.source.dataset for a in artifacts}
    if override:
        spec = canonical_spec(override)
        same = [r for r in refs.values() if r is not None and r.spec == spec]
        return same[0] if same else DatasetRef(spec=spec, seed=0)
    missing = [n for n, r in refs.items() if r is None]
    if missing:
        raise CLIError(f"artefact {missing[0]} names no dataset in its manifest (imported without a run?): "
                       "pass --dataset SPEC to say what to evaluate it on")
    distinct = {(r.spec, r.seed, r.fingerprint): n for n, r in refs.items() if r is not None}
    if len(distinct) > 1:
        shown = "; ".join(f"{n}: {spec} (seed {seed})" for (spec, seed, _), n in distinct.items())
        raise CLIError(f"the artefacts were trained on different datasets ({shown}): pass --dataset or --only")
    ref = next(r for r in refs.values() if r is not None)
    return ref


def load_eval_dataset(ref: DatasetRef) -> Any:
    from edgefair.data.registry import load_ref

    return load_ref(ref)


def write_test_batch(dataset: Any, prep: Preprocessing, out: Path, *, split: str = "test",
                     limit: int | None = None) -> tuple[Path, dict[str, int]]:
    """uint8 NHWC test images + ids as ``batch.npz``; returns it and the host-side labels by id."""
    from edgefair.data.preprocess import samples_to_uint8

    samples = dataset.split(split)[:limit] if limit else dataset.split(split)
    buf = io.BytesIO()
    np.savez(buf, images=samples_to_uint8(samples, prep), ids=np.array([s.sample_id for s in samples]))
    atomic_write_bytes(out, buf.getvalue())
    return out, {s.sample_id: s.label for s in samples}


class _Batches:
    """One test batch per preprocessing (and eval limit), written once per invocation."""

    def __init__(self, ref: DatasetRef, settings: RunSettings, folder: Path) -> None:
        self.ref, self.settings, self.folder = ref, settings, folder
        self._dataset: Any = None
        self._made: dict[str, tuple[Path, dict[str, int]]] = {}

    def get(self, prep: Preprocessing) -> tuple[Path, dict[str, int]]:
        limit = self.settings.eval_limit if self.settings.evaluates else 1
        key = settings_key({"prep": prep.to_dict(), "eval": self.settings.evaluates, "limit": limit,
                            "data": [self.ref.spec, self.ref.seed, self.ref.fingerprint]})
        if key not in self._made:
            if self._dataset is None:
                self._dataset = load_eval_dataset(self.ref)
            self._made[key] = write_test_batch(self._dataset, prep, self.folder / f"batch-{key}.npz", limit=limit)
        return self._made[key]


def measure_artifacts(
    *,
    artifacts: Path,
    device: str,
    db: Path,
    settings: RunSettings,
    dataset: str | None = None,
    force: bool = False,
    only: list[str] | None = None,
    on_event: Event | None = None,
    retries: int = 1,
    keep_going: bool = False,
    wait: bool = True,
) -> list[ArtifactRow]:
    """Run every artefact on ``device``; store each result in ``db`` as soon as it exists.

    Results already in the database for the same artefact × device × settings are not
    measured again unless ``force``. A failure of one artefact (device error, agent
    error) is stored as failed and the loop goes on; a failure of the device or the link
    (unreachable, authentication, no Python there) stops this device's run after that first
    artefact — the others are ``not-measured``, nothing is stored for them — unless
    ``keep_going``. A run flagged invalid is measured again after a cool-down up to
    ``retries`` times (not for an unmet stop rule: it would recur). One measurement per
    device at a time: the device's lock is held for the whole run (``wait=False`` refuses
    when another process holds it).
    """
    event = on_event or (lambda kind, name, info: None)
    found, loop = measure_loop(artifacts=artifacts, device=device, db=db, settings=settings, dataset=dataset,
                               only=only, on_event=event, retries=retries, keep_going=keep_going)
    profile = loop.profile
    with device_lock(profile.name, wait=wait, on_wait=lambda msg: event("wait", "", {"message": msg})), \
            Store(Path(db)) as store:
        try:
            return [loop.one(store, art, force) for art in found]
        finally:
            loop.close()


def measure_loop(*, artifacts: Path, device: str, db: Path, settings: RunSettings, dataset: str | None = None,
                 only: list[str] | None = None, on_event: Event | None = None, retries: int = 1,
                 keep_going: bool = False) -> tuple[list[Artifact], _MeasureLoop]:
    """The artefacts to measure on ``device`` and the loop that plans, measures and records them
    (``measure_artifacts`` runs it in process; an executor splits its steps across machines)."""
    from edgefair.devices import resolve_device

    found = select(discover_artifacts(artifacts), only)
    ref = eval_dataset(found, dataset)  # decided before any measurement starts
    profile = resolve_device(device)
    samples_dir = Path(db).parent / "samples"
    samples_dir.mkdir(parents=True, exist_ok=True)
    loop = _MeasureLoop(profile, settings, _Batches(ref, settings, samples_dir), samples_dir,
                        on_event or (lambda kind, name, info: None), retries, keep_going)
    return found, loop


class _MeasureLoop:
    """Measures artefacts one by one on one device, reusing one open transport.

    ``one`` = ``plan`` (database: skip what needs no measurement) → ``measure`` (the device
    only) → ``record`` (database: one transaction); an executor may run ``measure`` elsewhere.
    """

    def __init__(self, profile: Any, settings: RunSettings, batches: _Batches | None, samples_dir: Path,
                 event: Event, retries: int = 1, keep_going: bool = False) -> None:
        self.profile, self.settings, self.batches = profile, settings, batches
        self.samples_dir, self.event, self.retries = samples_dir, event, retries
        self.keep_going = keep_going
        self.stopped: str | None = None  # the device failure that stopped this run
        self.key = settings.key_dict()
        self.transport: Any = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def one(self, store: Store, art: Artifact, force: bool) -> ArtifactRow:
        done = self.plan(store, art, force)
        if done is not None:
            return done
        self.event("start", art.name, {})
        batch, labels = self.batch(art)
        return self.record(store, art, self.measure(art, batch), labels)

    def plan(self, store: Store, art: Artifact, force: bool) -> ArtifactRow | None:
        """The row of an artefact that needs no measurement (host-only, after a device failure,
        already stored), else None. Registers the artefact in the database."""
        store.put_artifact(art.manifest, art.folder)
        if art.manifest.host_only and self.profile.transport != "local":
            self.event("host-only", art.name, {})
            return ArtifactRow(name=art.name, artifact_id=art.artifact_id, status="host-only",
                               size_bytes=art.manifest.file.size_bytes)
        if self.stopped is not None:
            self.event("not-measured", art.name, {"error": self.stopped})
            return ArtifactRow(art.name, art.artifact_id, "not-measured", error=self.stopped,
                               size_bytes=art.manifest.file.size_bytes)
        if not force and store.has_run(art.artifact_id, self.profile.name, self.key):
            self.event("cached", art.name, {})
            return _row(art, store.get_run(art.artifact_id, self.profile.name, self.key), "cached")
        return None

    def batch(self, art: Artifact) -> tuple[Path, dict[str, int]]:
        """The test batch for this artefact's preprocessing and its labels by sample id."""
        if self.batches is None:
            raise RuntimeError("this loop only measures: it was given no test data")
        return self.batches.get(art.manifest.preprocessing)

    def measure(self, art: Artifact, batch: Path) -> AgentResult:
        """Measure one artefact (no database): the result carries its wall-clock window."""
        started = time.time()
        result = self._run(art, batch)
        result.doc["window"] = {"start": started, "end": time.time()}
        return result

    def record(self, store: Store, art: Artifact, result: AgentResult, labels: dict[str, int]) -> ArtifactRow:
        """Store one result (one transaction) and return its row."""
        store.put_run(artifact_id=art.artifact_id, device=self.profile.name, settings=self.key, result=result,
                      accuracy=_accuracy(result, labels), samples_path=self._save_samples(art, result))
        row = _row(art, store.get_run(art.artifact_id, self.profile.name, self.key),
                   "measured" if result.ok else "failed")
        self.event("done" if result.ok else "failed", art.name, asdict(row))
        return row

    def _run(self, art: Artifact, batch: Path) -> AgentResult:
        """Measure; a run invalid for a reason a pause can cure (contention, heat) is measured again
        after a cool-down, up to ``retries`` times, and the earlier attempts are kept in the result."""
        attempts: list[dict[str, Any]] = []
        result = self._attempt(art, batch)
        while (result.ok and not result.valid and len(attempts) < self.retries
               and not all(r.startswith("stop rule") for r in result.doc.get("invalid_reasons") or [])):
            attempts.append({"invalid_reasons": result.doc.get("invalid_reasons"),
                             "p50_s": result.timing.p50_s})
            self.event("retry", art.name, {"invalid_reasons": result.doc.get("invalid_reasons")})
            time.sleep(COOL_DOWN_S)
            result = self._attempt(art, batch)
        if attempts:
            result.doc["earlier_attempts"] = attempts
        return result

    def _attempt(self, art: Artifact, batch: Path) -> AgentResult:
        from edgefair.devices import DeviceError, open_transport, run_artifact
        from edgefair.devices.runner import ArtifactRejected, RunFailed

        try:
            if self.transport is None:
                self.transport = open_transport(self.profile, setup=True)
            doc = run_artifact(self.transport, art.folder, batch, mode=self.settings.mode,
                               threads=self.settings.threads, profile_name=self.settings.profile,
                               overrides=self.settings.overrides or None, profile_ops=self.settings.profile_ops)
            return AgentResult.from_dict(doc)
        except (RunFailed, ArtifactRejected) as e:  # this artefact failed; the device is fine
            return AgentResult.failure(str(e), getattr(e, "result", None))
        except DeviceError as e:  # the device or the link failed: every artefact would
            if not self.keep_going:
                self.stopped = str(e)
            return AgentResult.failure(str(e))

    def _save_samples(self, art: Artifact, result: AgentResult) -> str | None:
        samples = result.timing.samples_s
        if not samples:
            return None
        path = self.samples_dir / f"{art.artifact_id}-{self.profile.name}-{settings_key(self.key)}.npy"
        buf = io.BytesIO()
        np.save(buf, np.asarray(samples, dtype=np.float64))
        atomic_write_bytes(path, buf.getvalue())
        return str(path)


def _accuracy(result: AgentResult, labels: dict[str, int]) -> float | None:
    preds = result.predictions
    if preds is None:
        return None
    y = np.array([labels[i] for i in preds.ids])
    return float((np.asarray(preds.pred) == y).mean())


def _row(art: Artifact, rec: dict | None, status: str) -> ArtifactRow:
    rec = rec or {}

    def ms(v: float | None) -> float | None:
        return None if v is None else v * 1e3

    result = rec.get("result") or {}
    return ArtifactRow(
        name=art.name, artifact_id=art.artifact_id, status=status,
        p50_ms=ms(rec.get("p50_s")), p90_ms=ms(rec.get("p90_s")),
        peak_rss_mb=None if rec.get("peak_rss_kb") is None else rec["peak_rss_kb"] / 1024,
        size_bytes=art.manifest.file.size_bytes, accuracy=rec.get("accuracy"), error=rec.get("error"),
        samples_path=rec.get("samples_path"), valid=None if rec.get("valid") is None else bool(rec.get("valid")),
        invalid_reasons=list(result.get("invalid_reasons") or []))
