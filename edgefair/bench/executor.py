"""Where a sweep's (or a study's) work runs: in this process, or on a Ray cluster.

An executor is an object with this API (keyword-only where it matters):

``map_host(fn, items, *, num_cpus=None) -> list``
    ``fn(item)`` for every item, results in the items' order. Host work: training, export,
    audits. ``fn`` and the items must pickle (module-level functions, dataclasses); ``fn``
    must not write the results database. Local: in order, in this process. Ray: one task
    per item with ``num_cpus`` CPUs (default: the executor's ``host_cpus``) on any node.
    File outputs (runs/, artifacts/) go where ``fn`` writes them: with Ray the sweep's
    ``--out`` must be a folder every node sees (the head node alone, or a shared disk).
``measure(jobs, *, db) -> list[list[ArtifactRow]]``
    Every artefact of every :class:`MeasureJob` measured on its device; one list of rows per
    job. Only this process writes ``db``, one transaction per result, as each arrives; what
    is stored already is not measured again (resume). Local: job after job. Ray: one task
    per artefact needing the resource ``device:<name>`` (amount 1: one measurement per
    device at a time, devices in parallel); the artefact and its test batch travel with the
    task, so a device host needs no shared disk; a ``local`` device's task also takes every
    CPU of its node. A task whose worker or node dies is retried on its device
    (``max_retries``); a device whose node is gone for ``lost_after_s`` has its running
    measurement stored as failed with the reason and its remaining artefacts not measured.
``run_sweep(sweep)``
    The sweep's stages (train → export → run → audit) for a ``edgefair.bench.sweep._Sweep``.
``close()``
    Ray: disconnect (and stop the local instance it started).

:class:`LocalExecutor` is today's behaviour and the default; :class:`RayExecutor` is the
cluster (``bench sweep --executor ray [--ray-address ADDR] [--farm farm.toml]``).
"""

from __future__ import annotations

import copy
import io
import tarfile
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefair.bench.console import CLIError
from edgefair.bench.farm import Farm, device_resource
from edgefair.bench.measure import Artifact, ArtifactRow, measure_artifacts, measure_loop
from edgefair.bench.store import Store
from edgefair.contracts.errors import EdgefairError
from edgefair.contracts.measurement import RunSettings
from edgefair.contracts.result import AgentResult

Event = Callable[[str, str, dict], None]
EXECUTORS = ("local", "ray")
GET_TIMEOUT_S = 3600.0  # no single host task or measurement waits longer than this
LOST_AFTER_S = 60.0  # a device no alive node advertises for this long has lost its node


@dataclass
class MeasureJob:
    """Measure the artefacts under ``artifacts`` on ``device`` (a spec as ``bench run --device`` takes)."""

    device: str
    artifacts: Path
    settings: RunSettings
    name: str | None = None  # the farm's name for the device (its resource); default: the spec
    dataset: str | None = None
    only: list[str] | None = None
    retries: int = 1
    on_event: Event | None = None

    @property
    def resource(self) -> str:
        return device_resource(self.name or self.device)


def _serial(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    return [fn(x) for x in items]


class LocalExecutor:
    """Everything in this process, one thing after another (the default)."""

    name = "local"

    def map_host(self, fn: Callable[[Any], Any], items: Sequence[Any], *, num_cpus: int | None = None) -> list[Any]:
        return _serial(fn, items)

    def measure(self, jobs: Sequence[MeasureJob], *, db: Path) -> list[list[ArtifactRow]]:
        return [measure_artifacts(artifacts=j.artifacts, device=j.device, db=db, settings=j.settings,
                                  dataset=j.dataset, only=j.only, on_event=j.on_event, retries=j.retries)
                for j in jobs]

    def run_sweep(self, sweep: Any) -> None:
        for arch in sweep.cfg.archs:
            art_dir = sweep.export(arch, sweep.train(arch))
            for device in sweep.cfg.devices:
                sweep.run(arch, art_dir, device)
                sweep.audit(arch, art_dir, device)

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------- sweep stages on hosts
@dataclass
class _Stage:
    """Runs one ``_Sweep`` stage method (train, export) elsewhere; returns its value, events and outcome."""

    sweep: Any  # a copy of the driver's _Sweep without its event callback or executor
    method: str

    def __call__(self, args: tuple[Any, ...]) -> tuple[Any, list[tuple[str, dict]], list[dict], list[str]]:
        from edgefair.bench.sweep import SweepOutcome

        events: list[tuple[str, dict]] = []
        sweep = copy.copy(self.sweep)
        sweep.event = lambda kind, info: events.append((kind, info))
        sweep.outcome = SweepOutcome(out=sweep.outcome.out, db=sweep.outcome.db, report=None)
        value = getattr(sweep, self.method)(*args)
        return value, events, sweep.outcome.stages, sweep.outcome.failed


def _host_stage(executor: Any, sweep: Any, method: str, args: list[tuple[Any, ...]]) -> list[Any]:
    """``sweep.<method>(*a)`` for every ``a`` via ``executor.map_host``; events and outcome merged here."""
    bare = copy.copy(sweep)
    bare.event, bare.map_host = None, None
    values = []
    for value, events, stages, failed in executor.map_host(_Stage(bare, method), args):
        for kind, info in events:
            sweep.event(kind, info)
        sweep.outcome.stages += stages
        sweep.outcome.failed += failed
        values.append(value)
    return values


def _distributed_sweep(executor: Any, sweep: Any) -> None:
    """Train every arch, export every run, measure all devices at once, then audit (audits on hosts)."""
    archs = list(sweep.cfg.archs)
    runs = _host_stage(executor, sweep, "train", [(a,) for a in archs])
    art_dirs = _host_stage(executor, sweep, "export", list(zip(archs, runs, strict=True)))
    jobs, t0 = [], time.perf_counter()
    for arch, art_dir in zip(archs, art_dirs, strict=True):
        for device in sweep.cfg.devices:
            sweep.event("stage", {"stage": "run", "arch": arch, "device": device, "status": "start"})
            jobs.append(MeasureJob(device=device, name=executor.device_name(device), artifacts=art_dir,
                                   settings=sweep.settings(device), retries=sweep.cfg.retries,
                                   on_event=sweep.artifact_event("run", device)))
    for job, arch, rows in zip(jobs, [a for a in archs for _ in sweep.cfg.devices], executor.measure(jobs, db=sweep.db),
                               strict=True):
        sweep.ran(arch, job.device, rows, time.perf_counter() - t0)
    sweep.map_host = executor.map_host
    for arch, art_dir in zip(archs, art_dirs, strict=True):
        for device in sweep.cfg.devices:
            sweep.audit(arch, art_dir, device)


# ----------------------------------------------------------------------------- measurement tasks
def pack_folder(folder: Path) -> bytes:
    """The files of an artefact folder as an in-memory tar (what travels to a device host)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for p in sorted(Path(folder).iterdir()):
            if p.is_file():
                tar.add(p, arcname=p.name)
    return buf.getvalue()


def _unpack(blob: bytes, dest: Path) -> None:
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
        tar.extractall(dest, filter="data")


@dataclass
class _MeasureTask:
    """What one measurement task carries: the profile, settings, artefact and batch bytes."""

    profile: Any
    settings: RunSettings
    retries: int
    folder_name: str
    folder: bytes
    batch: bytes


def measure_one(task: _MeasureTask) -> tuple[AgentResult, str | None]:
    """Measure one artefact on the device attached to this node (no database).

    Returns the result (with its ``window``: start, end, node) and the device failure that
    would stop the device's run (None when the device is fine)."""
    from edgefair.bench.measure import _MeasureLoop
    from edgefair.contracts.manifest import read_manifest
    from edgefair.devices.lock import device_lock

    with tempfile.TemporaryDirectory(prefix="edgefair-measure-") as tmp:
        folder = Path(tmp) / task.folder_name
        _unpack(task.folder, folder)
        batch = Path(tmp) / "batch.npz"
        batch.write_bytes(task.batch)
        loop = _MeasureLoop(task.profile, task.settings, None, Path(tmp), lambda k, n, i: None, task.retries)
        with device_lock(task.profile.name):
            try:
                result = loop.measure(Artifact(folder, read_manifest(folder)), batch)
            finally:
                loop.close()
    result.doc["window"]["node"] = _node_id()
    return result, loop.stopped


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - the node id is informative only
        return None


@dataclass
class _Chain:
    """One device's queue: its artefacts, in order, measured one after another."""

    resource: str
    todo: deque[tuple[int, Artifact]] = field(default_factory=deque)


@dataclass
class _InFlight:
    chain: _Chain
    job: int
    art: Artifact
    labels: dict[str, int]


def _ray_failure(e: BaseException) -> str:
    """One line for a Ray failure (a dead worker or node, a cancelled task, an exception in the task)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[-1] if lines else 'no detail'}"[:400]


class RayExecutor:
    """Host work as Ray tasks, devices as Ray custom resources; only this process writes the database."""

    name = "ray"

    def __init__(self, *, address: str | None = None, farm: Farm | None = None, devices: Sequence[str] = (),
                 host_cpus: int = 1, max_retries: int = 3, lost_after_s: float = LOST_AFTER_S,
                 timeout_s: float = GET_TIMEOUT_S, poll_s: float = 0.5) -> None:
        """Connect to ``address`` (None: start a local instance advertising ``device:<d>`` for each
        device, or each farm device). ``farm`` names the devices; without one a device's name is its spec."""
        import ray

        self.ray, self.farm = ray, farm
        self.host_cpus, self.max_retries = host_cpus, max_retries
        self.lost_after_s, self.timeout_s, self.poll_s = lost_after_s, timeout_s, poll_s
        self._started = False
        if not ray.is_initialized():
            names = [d.name for d in farm.devices] if farm else list(devices)
            kw: dict[str, Any] = {"address": address} if address else {
                "resources": {device_resource(n): 1 for n in names}, "include_dashboard": False}
            try:
                ray.init(**kw, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise CLIError(f"--ray-address {address or '(local)'}: cannot connect to Ray ({_ray_failure(e)})") \
                    from None
            self._started = True
        self._host = ray.remote(max_retries=max_retries)(_call)
        self._measure = ray.remote(max_retries=max_retries)(measure_one)

    # -------------------------------------------------------------- devices
    def device_name(self, spec: str) -> str:
        """The farm's name for a device spec (its resource is ``device:<name>``); the spec without a farm."""
        if self.farm is not None:
            dev = self.farm.by_spec().get(spec)
            if dev is None:
                raise CLIError(f"{self.farm.path}: device {spec!r} is not in the farm "
                               f"(have: {', '.join(d.spec for d in self.farm.devices)})")
            return dev.name
        return spec

    def _nodes_with(self, resource: str) -> list[dict[str, Any]]:
        return [n for n in self.ray.nodes() if n.get("Alive") and n.get("Resources", {}).get(resource, 0) > 0]

    def _options(self, job: MeasureJob, profile: Any) -> dict[str, Any]:
        """The task's demands: the device (amount 1); a local device also takes its node's CPUs."""
        nodes = self._nodes_with(job.resource)
        if not nodes:
            raise CLIError(f"device {job.name or job.device}: no alive Ray node advertises the resource "
                           f"{job.resource} (start its host with ray start --address ... --resources "
                           f"'{{\"{job.resource}\": 1}}')")
        return device_options(job.resource, profile.transport, nodes[0]["Resources"].get("CPU", 0))

    # -------------------------------------------------------------- the executor API
    def map_host(self, fn: Callable[[Any], Any], items: Sequence[Any], *, num_cpus: int | None = None) -> list[Any]:
        from ray.exceptions import RayError, RayTaskError

        refs = [self._host.options(num_cpus=num_cpus or self.host_cpus).remote(fn, x) for x in items]
        try:
            return self.ray.get(refs, timeout=self.timeout_s)
        except RayTaskError as e:  # the task's own error: the one line it would have had here
            if isinstance(e.cause, EdgefairError):
                raise e.cause from None
            raise CLIError(f"a host task failed on Ray: {_ray_failure(e)}") from None
        except RayError as e:  # a worker or node died beyond its retries, a timeout
            raise CLIError(f"a host task could not finish on Ray: {_ray_failure(e)}") from None

    def measure(self, jobs: Sequence[MeasureJob], *, db: Path) -> list[list[ArtifactRow]]:
        return _Measurements(self, jobs, db).run()

    def run_sweep(self, sweep: Any) -> None:
        _distributed_sweep(self, sweep)

    def close(self) -> None:
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()


def device_options(resource: str, transport: str, node_cpus: float) -> dict[str, Any]:
    """Ray task options of one measurement: the device resource (1); every CPU of its node for a
    ``local`` device (nothing else shares them while it measures), none for a remote one."""
    return {"resources": {resource: 1}, "num_cpus": node_cpus if transport == "local" else 0}


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)


class _Measurements:
    """The driver's loop of ``RayExecutor.measure``: one task in flight per device."""

    def __init__(self, ex: RayExecutor, jobs: Sequence[MeasureJob], db: Path) -> None:
        self.ex, self.jobs, self.db = ex, list(jobs), Path(db)
        self.rows: list[list[ArtifactRow]] = [[] for _ in self.jobs]
        self.loops: list[Any] = []
        self.options: list[dict[str, Any]] = []
        self.chains: dict[str, _Chain] = {}
        self.in_flight: dict[Any, _InFlight] = {}
        self.lost_since: dict[str, float] = {}
        for i, job in enumerate(self.jobs):
            found, loop = measure_loop(artifacts=job.artifacts, device=job.device, db=self.db, settings=job.settings,
                                       dataset=job.dataset, only=job.only, on_event=job.on_event,
                                       retries=job.retries)
            self.loops.append(loop)
            self.options.append(ex._options(job, loop.profile))
            chain = self.chains.setdefault(job.resource, _Chain(job.resource))
            chain.todo.extend((i, art) for art in found)

    def run(self) -> list[list[ArtifactRow]]:
        with Store(self.db) as store:
            for chain in self.chains.values():
                self._next(store, chain)
            while self.in_flight:
                ready, _ = self.ex.ray.wait(list(self.in_flight), num_returns=1, timeout=self.ex.poll_s)
                for ref in ready:
                    self._finish(store, ref, self._get(ref))
                self._check_lost(store)
        return self.rows

    def _next(self, store: Store, chain: _Chain) -> None:
        """Submit the chain's next artefact that needs measuring (the others get their rows here)."""
        while chain.todo:
            i, art = chain.todo.popleft()
            loop = self.loops[i]
            done = loop.plan(store, art, False)
            if done is not None:
                self.rows[i].append(done)
                continue
            loop.event("start", art.name, {})
            batch, labels = loop.batch(art)
            task = _MeasureTask(loop.profile, loop.settings, loop.retries, art.folder.name, pack_folder(art.folder),
                                batch.read_bytes())
            ref = self.ex._measure.options(name=f"measure {chain.resource} {art.name}", **self.options[i]).remote(task)
            self.in_flight[ref] = _InFlight(chain, i, art, labels)
            store.put_stage(f"farm:{chain.resource}", "farm", "running", {"artifact": art.name, "since": time.time()})
            return
        store.put_stage(f"farm:{chain.resource}", "farm", "idle", {"since": time.time()})

    def _get(self, ref: Any) -> tuple[AgentResult, str | None]:
        try:
            return self.ex.ray.get(ref, timeout=self.ex.timeout_s)
        except Exception as e:  # noqa: BLE001 - a dead worker/node after its retries, or a failed task
            flight = self.in_flight[ref]
            why = f"Ray could not finish this measurement on {flight.chain.resource}: {_ray_failure(e)}"
            return AgentResult.failure(why), why

    def _finish(self, store: Store, ref: Any, got: tuple[AgentResult, str | None]) -> None:
        flight = self.in_flight.pop(ref)
        result, stopped = got
        loop = self.loops[flight.job]
        if stopped is not None:
            for other in self._chain_loops(flight.chain):
                other.stopped = stopped
        self.rows[flight.job].append(loop.record(store, flight.art, result, flight.labels))
        self._next(store, flight.chain)

    def _chain_loops(self, chain: _Chain) -> list[Any]:
        return [self.loops[i] for i, j in enumerate(self.jobs) if j.resource == chain.resource]

    def _check_lost(self, store: Store) -> None:
        """A device no alive node has advertised for ``lost_after_s``: its measurement fails, with the reason."""
        now = time.monotonic()
        for ref, flight in list(self.in_flight.items()):
            res = flight.chain.resource
            if self.ex._nodes_with(res):
                self.lost_since.pop(res, None)
                continue
            since = self.lost_since.setdefault(res, now)
            if now - since >= self.ex.lost_after_s:
                self.ex.ray.cancel(ref, force=False)
                why = (f"the Ray node with {res} is gone (no alive node has advertised it for "
                       f"{self.ex.lost_after_s:g} s); resume the sweep once it is back")
                self._finish(store, ref, (AgentResult.failure(why), why))


def make_executor(kind: str, *, address: str | None = None, farm: Farm | None = None,
                  devices: Sequence[str] = ()) -> LocalExecutor | RayExecutor:
    """The executor ``--executor kind`` names."""
    if kind == "local":
        if address or farm:
            raise CLIError(f"{'--ray-address' if address else '--farm'} needs --executor ray")
        return LocalExecutor()
    if kind == "ray":
        return RayExecutor(address=address, farm=farm, devices=devices)
    raise CLIError(f"--executor {kind}: expected one of {', '.join(EXECUTORS)}")


@contextmanager
def executor_for(kind: str, **kw: Any) -> Iterator[LocalExecutor | RayExecutor]:
    """``make_executor`` as a context: closed (Ray disconnected) however the block ends."""
    ex = make_executor(kind, **kw)
    try:
        yield ex
    finally:
        ex.close()
