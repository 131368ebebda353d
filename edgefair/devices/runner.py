"""Host side of a device run: ship the agent, the artefact and the batch; bring back a result.

:func:`run_artifact` works the same on every transport:

1. check the artefact on the host (manifest, model file, its sha256 against the manifest);
2. push ``agent.py``, the artefact folder and ``batch.npz`` into the device work dir
   (the agent and an unchanged batch are pushed once per transport);
3. run ``<python> agent.py run ... --expect-sha256 <manifest file.sha256>`` there, so the
   agent verifies the file on the device before it loads it;
4. pull ``result.json`` back, check it against the contract
   (:mod:`edgefair.contracts.result`) and add host fields (device, transport, emulated,
   timings of the transfer).

Any failure raises :class:`DeviceError` with a one-line reason naming the device and the
artefact, so a caller can record it and go on with the next artefact. Torch artefacts are
host-only reference rows: on any transport but ``local`` they raise :class:`HostOnly`
before anything is sent (a status, not a failure).

On adb profiles in ``benchmark_model`` mode only the ``.tflite`` file goes to the phone and
TensorFlow Lite's ``benchmark_model`` measures it (see :mod:`edgefair.devices.benchmark_model`).
"""

from __future__ import annotations

import json
import re
import shlex
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefair.contracts.errors import ManifestError, UsageError
from edgefair.contracts.manifest import Manifest, read_manifest
from edgefair.contracts.measurement import MODES, OVERRIDE_KEYS, PROFILES
from edgefair.contracts.result import result_problems
from edgefair.devices import conditions
from edgefair.devices.base import CommandOutcome, CommandRequest, DeviceError, Transport
from edgefair.devices.benchmark_model import (
    BenchmarkModelParseError,
    benchmark_argv,
    parse_benchmark_output,
    result_from_benchmark,
)
from edgefair.devices.profiles import DeviceProfile, open_transport, resolve_device
from edgefair.files import sha256_file

AGENT_PATH = Path(__file__).resolve().parents[1] / "runtimes" / "agent.py"

# Remote layout inside the work dir.
R_AGENT = "agent.py"
R_ARTIFACT = "artifact"
R_RESULT = "result.json"


class RunFailed(DeviceError):
    """The device answered but the run failed; ``result`` holds what came back, if anything."""

    def __init__(self, message: str, result: dict | None = None):
        super().__init__(message)
        self.result = result


class ArtifactRejected(DeviceError):
    """The artefact itself cannot be run here (manifest, sha256, format for the mode): the device is fine."""


class HostOnly(ArtifactRejected):
    """A torch reference row asked of a device: it runs on the host (``local``) only."""


def runs_on(manifest: Manifest, transport_kind: str) -> bool:
    """False for host-only artefacts (torch) on anything but the local transport."""
    return not manifest.host_only or transport_kind == "local"


@dataclass(frozen=True)
class HostArtifact:
    """An artefact checked on the host: its manifest, model file and that file's sha256."""

    folder: Path
    manifest: Manifest
    model: Path
    sha256: str

    @property
    def name(self) -> str:
        return self.manifest.name or self.folder.name


def read_artifact(artifact_dir: Path) -> HostArtifact:
    """The artefact after host-side checks; DeviceError on any problem."""
    artifact_dir = Path(artifact_dir)
    try:
        manifest = read_manifest(artifact_dir)
    except ManifestError as e:  # names the manifest file already
        raise ArtifactRejected(str(e)) from None
    model = artifact_dir / manifest.model_file
    if not model.is_file():
        raise ArtifactRejected(f"artefact {artifact_dir}: model file {manifest.model_file} missing")
    digest = sha256_file(model)
    if manifest.file.sha256.lower() != digest:
        raise ArtifactRejected(f"artefact {artifact_dir.name}: {manifest.model_file} sha256 {digest[:12]}… "
                               f"does not match the manifest's {manifest.file.sha256.lower()[:12]}…")
    return HostArtifact(artifact_dir, manifest, model, digest)


def _open(target: DeviceProfile | Transport | str) -> tuple[Transport, DeviceProfile | None, bool]:
    """(transport, profile, owned): a transport we open here is closed by us."""
    if isinstance(target, Transport):
        return target, target.profile, False
    profile = resolve_device(target) if isinstance(target, str) else target
    return open_transport(profile), profile, True


def _memo(transport: Transport) -> dict:
    memo = getattr(transport, "_edgefair_pushed", None)
    if memo is None:
        memo = {}
        transport._edgefair_pushed = memo  # type: ignore[attr-defined]
    return memo


def _push_once(transport: Transport, local: Path, remote: str, digest: str) -> bool:
    """Push unless this transport already holds this exact content at ``remote``."""
    memo = _memo(transport)
    if memo.get(remote) == digest:
        return False
    transport.put(local, remote)
    memo[remote] = digest
    return True


def _override_flags(overrides: Mapping[str, Any] | None) -> list[str]:
    flags: list[str] = []
    for k, v in (overrides or {}).items():
        if k not in OVERRIDE_KEYS:
            raise UsageError(f"unknown protocol override {k!r} (allowed: {', '.join(OVERRIDE_KEYS)})")
        if v is not None:
            flags += ["--" + k.replace("_", "-"), str(v)]
    return flags


def _host_fields(result: dict, transport: Transport, profile: DeviceProfile | None, extra: dict) -> dict:
    result["device"] = profile.name if profile else transport.name
    result["transport"] = transport.kind
    result["emulated"] = bool(transport.emulated)
    result["device_description"] = profile.description if profile else transport.describe()
    result["host"] = {"target": transport.describe(), "remote_workdir": transport.workdir, **extra}
    if transport.emulated:
        msg = "emulated device (qemu-aarch64): latencies are not device latencies"
        if msg not in result.setdefault("warnings", []):
            result["warnings"].append(msg)
    return result


def _adb_mode(profile: DeviceProfile | None) -> str:
    if profile is not None and profile.adb is not None:
        return profile.adb.mode
    return "agent"


@dataclass(frozen=True)
class _Run:
    """One run request as the helpers below need it."""

    transport: Transport
    profile: DeviceProfile | None
    artifact: HostArtifact
    mode: str
    threads: int
    profile_name: str
    timeout_s: float
    overrides: Mapping[str, Any] | None
    profile_ops: int = 0

    @property
    def where(self) -> str:
        return f"{self.transport.describe()}: {self.artifact.name}"

    @property
    def env(self) -> dict[str, str]:
        return dict(self.profile.env) if self.profile else {}


def run_artifact(target: DeviceProfile | Transport | str, artifact_dir: Path | str,
                 batch_npz: Path | str, *, mode: str = "both", threads: int | None = None,
                 profile_name: str = "quick", timeout_s: float | None = None,
                 overrides: Mapping[str, Any] | None = None, profile_ops: int = 0) -> dict:
    """Measure one artefact on a device; returns the agent's result.json plus host fields.

    ``target`` is a DeviceProfile, a device spec (``pi4``, ``ssh://...``, ``adb:SERIAL``) or
    an open Transport (reused across artefacts: the agent and the batch are pushed once).
    ``overrides`` may set the agent's protocol flags: min_runs, min_seconds, max_seconds,
    warmup_runs, warmup_seconds. ``profile_ops`` > 0 adds a per-operator profile of that many
    invokes (onnxruntime's profiler; benchmark_model --enable_op_profiling on adb; else the static
    op list). Raises DeviceError (one line) on any failure;
    :class:`RunFailed` carries the failed result when the agent wrote one.
    """
    if mode not in MODES:
        raise UsageError(f"mode must be one of {MODES}, got {mode!r}")
    if profile_name not in PROFILES:
        raise UsageError(f"profile_name must be one of {tuple(PROFILES)}, got {profile_name!r}")
    _override_flags(overrides)
    batch_npz = Path(batch_npz)
    if not batch_npz.is_file():
        raise DeviceError(f"batch {batch_npz} not found")
    art = read_artifact(Path(artifact_dir))
    transport, profile, owned = _open(target)
    try:
        run = _Run(transport, profile, art, mode,
                   threads if threads is not None else (profile.threads if profile else 1), profile_name,
                   timeout_s if timeout_s is not None else (profile.timeout_s if profile else 900.0), overrides,
                   int(profile_ops))
        return _dispatch(run, batch_npz)
    finally:
        if owned:
            transport.close()


def _dispatch(run: _Run, batch_npz: Path) -> dict:
    if not runs_on(run.artifact.manifest, run.transport.kind):
        raise HostOnly(f"{run.where}: host-only reference row (torch artefacts are measured on local only)")
    try:
        if run.transport.kind == "adb" and _adb_mode(run.profile) == "benchmark_model":
            return _run_benchmark_model(run)
        return _run_agent(run, batch_npz)
    except (RunFailed, ArtifactRejected):
        raise
    except DeviceError as e:
        # The link failed: the device may have lost what we pushed (a reboot); push everything again next time.
        _memo(run.transport).clear()
        if run.artifact.name not in str(e):  # transport-level errors do not know the artefact: name it
            raise DeviceError(f"{e} [artefact {run.artifact.name}]") from None
        raise


def _pin_prefix(transport: Transport) -> list[str]:
    fn = getattr(transport, "pin_prefix", None)
    return list(fn()) if fn else []


def _device_state(transport: Transport) -> dict | None:
    fn = getattr(transport, "device_state", None)
    if fn is None:
        return None
    try:
        return fn()
    except DeviceError:
        raise
    except Exception as e:  # a state probe must never sink a run
        return {"error": " ".join(str(e).split())}


# ------------------------------------------------------------------ agent mode
def _agent_argv(run: _Run, remote_batch: str) -> list[str]:
    flags = _override_flags(run.overrides)
    if run.profile_ops > 0:
        flags += ["--profile-ops", str(run.profile_ops)]
    if run.artifact.manifest.host_only and run.transport.kind == "local":
        from edgefair.models.torch_runner import PLUGIN_PATH

        flags += ["--plugin", str(PLUGIN_PATH)]
    return [*_pin_prefix(run.transport), *run.transport.python, R_AGENT, "run", "--artifact", R_ARTIFACT,
            "--batch", remote_batch, "--out", R_RESULT, "--mode", run.mode, "--threads", str(run.threads),
            "--profile", run.profile_name, "--expect-sha256", run.artifact.sha256, *flags]


def _push_agent_inputs(run: _Run, batch_npz: Path) -> str:
    """Agent (once), batch (once per content), artefact; a stale result.json removed. Returns the batch name."""
    transport = run.transport
    transport.prepare()
    if not AGENT_PATH.is_file():
        raise DeviceError(f"agent not found at {AGENT_PATH}")
    _push_once(transport, AGENT_PATH, R_AGENT, sha256_file(AGENT_PATH))
    batch_digest = sha256_file(batch_npz)
    remote_batch = f"batch-{batch_digest[:16]}.npz"
    _push_once(transport, batch_npz, remote_batch, batch_digest)
    transport.put(run.artifact.folder, R_ARTIFACT)
    rm = transport.run(CommandRequest(["rm", "-f", R_RESULT], timeout_s=60))
    if not rm.ok:  # a stale result.json must never be mistaken for this run's
        raise DeviceError(f"{run.where}: cannot clear the previous result "
                          f"({rm.last_error_line() or f'exit {rm.exit_code}'})")
    return remote_batch


def _pull_result(run: _Run, out: CommandOutcome) -> dict | None:
    with tempfile.TemporaryDirectory(prefix="edgefair-result-") as tmp:
        local = Path(tmp) / "result.json"
        try:
            run.transport.get(R_RESULT, local)
            result = json.loads(local.read_text())
        except DeviceError:
            if run.transport.kind == "ssh" and out.exit_code == 255:
                raise
            return None
        except ValueError as e:
            raise DeviceError(f"{run.where}: result.json is not valid JSON ({e})") from None
    return result if isinstance(result, dict) else None


def _no_result(run: _Run, out: CommandOutcome) -> DeviceError:
    if out.timed_out:
        return DeviceError(f"{run.where}: agent timed out after {run.timeout_s:g} s")
    if out.exit_code == 127:
        return DeviceError(f"{run.where}: python {shlex.join(run.transport.python)} not found on the device "
                           f"({out.last_error_line()})")
    return DeviceError(_setup_hint(run, f"{run.where}: agent exited {out.exit_code} without a result"
                                   + (f" ({out.last_error_line()})" if out.last_error_line() else "")))


def _setup_hint(run: _Run, err: str) -> str:
    """A missing runtime on a remote device: say how to provision it."""
    if run.transport.kind in ("ssh", "adb") and re.search(r"no (ONNX|TFLite) runtime|No module named 'numpy'", err):
        name = run.profile.name if run.profile else "DEVICE"
        return f"{err} (provision the device: bench devices setup {name})"
    return err


def _check_agent_result(run: _Run, out: CommandOutcome, result: dict) -> dict:
    if not result.get("ok"):
        err = _setup_hint(run, result.get("error") or f"exit {out.exit_code}")
        if out.timed_out:
            err = f"agent timed out after {run.timeout_s:g} s ({err})"
        raise RunFailed(f"{run.where}: {err}", result)
    if out.timed_out:
        raise RunFailed(f"{run.where}: agent timed out after {run.timeout_s:g} s", result)
    got = ((result.get("artifact") or {}).get("sha256") or "").lower()
    if got != run.artifact.sha256:
        raise RunFailed(f"{run.where}: the device measured a file with sha256 {got[:12] or '?'}…, "
                        f"expected {run.artifact.sha256[:12]}…", result)
    problems = result_problems(result, mode=run.mode)
    if problems:
        raise RunFailed(f"{run.where}: the agent's result breaks the contract: {'; '.join(problems)}", result)
    return result


def _run_observed(run: _Run, argv: list[str]) -> tuple[CommandOutcome, list[tuple[str, dict]]]:
    """Run ``argv`` on the device; where the transport reads device state (adb), read it before,
    during (every few seconds, from a thread) and after."""
    if getattr(run.transport, "device_state", None) is None:
        return run.transport.run(CommandRequest(argv, timeout_s=run.timeout_s, env=run.env)), []
    before = _device_state(run.transport)
    with conditions.StateSampler(lambda: _device_state(run.transport),
                                 conditions.sample_interval(_protocol(run))) as sampler:
        out = run.transport.run(CommandRequest(argv, timeout_s=run.timeout_s, env=run.env))
    after = _device_state(run.transport)
    states = [("before", before)] + sampler.readings + [("after", after)]
    return out, [(label, s) for label, s in states if s is not None]


def _record_states(result: dict, run: _Run, states: list[tuple[str, dict]]) -> None:
    if not states:
        return
    result["device_state"] = {"before": states[0][1], "after": states[-1][1],
                              "during": [{"label": label, **s} for label, s in states[1:-1]],
                              "taskset": getattr(run.transport, "taskset", None)}
    if run.transport.kind == "adb" and result.get("ok"):
        conditions.apply(result, *conditions.android_rules(states))


def _run_agent(run: _Run, batch_npz: Path) -> dict:
    t0 = time.perf_counter()
    remote_batch = _push_agent_inputs(run, batch_npz)
    push_s = time.perf_counter() - t0
    argv = _agent_argv(run, remote_batch)
    t1 = time.perf_counter()
    out, states = _run_observed(run, argv)
    run_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    result = _pull_result(run, out)
    if result is None:
        raise _no_result(run, out)
    _host_fields(result, run.transport, run.profile, {
        "command": argv, "exit_code": out.exit_code, "timed_out": out.timed_out, "push_s": round(push_s, 4),
        "run_s": round(run_s, 4), "pull_s": round(time.perf_counter() - t2, 4),
        "total_s": round(time.perf_counter() - t0, 4), "stderr_tail": out.stderr[-2000:] if out.stderr else ""})
    _record_states(result, run, states)
    return _check_agent_result(run, out, result)


# ------------------------------------------------------------------ benchmark_model mode
def _protocol(run: _Run) -> dict[str, Any]:
    return PROFILES[run.profile_name].with_overrides(dict(run.overrides or {}))


def _verify_on_device(run: _Run, remote_model: str) -> str:
    """toybox's sha256sum of the pushed file must match the host's."""
    chk = run.transport.run(CommandRequest(["sha256sum", remote_model], timeout_s=120))
    dev_digest = chk.stdout.split()[0].lower() if chk.ok and chk.stdout.split() else ""
    if not dev_digest:
        raise DeviceError(f"{run.where}: cannot verify sha256 on the device "
                          f"({chk.last_error_line() or f'exit {chk.exit_code}'})")
    if dev_digest != run.artifact.sha256:
        raise RunFailed(f"{run.where}: sha256 mismatch on the device: expected {run.artifact.sha256}, "
                          f"got {dev_digest}")
    return dev_digest


def _bm_check_outcome(run: _Run, out: CommandOutcome, binary: str) -> dict:
    if out.timed_out:
        raise DeviceError(f"{run.where}: benchmark_model timed out after {run.timeout_s:g} s")
    if out.exit_code == 127 or (not out.ok and "not found" in out.stderr + out.stdout):
        raise DeviceError(f"{run.where}: benchmark_model binary {binary} not found on the device "
                          "(push TensorFlow Lite's benchmark_model there or fix adb.benchmark_model)")
    if not out.ok:
        raise DeviceError(f"{run.where}: benchmark_model exited {out.exit_code} ({out.last_error_line()})")
    try:
        return parse_benchmark_output(out.stdout + "\n" + out.stderr)
    except BenchmarkModelParseError as e:
        raise DeviceError(f"{run.where}: {e}") from None


def _bm_env(run: _Run, before: dict | None, after: dict | None) -> dict[str, Any]:
    env: dict[str, Any] = {"device_state_before": before, "device_state_after": after, "emulated": False,
                           "threads": run.threads}
    if before:
        env.update({"cpu_model": before.get("soc") or before.get("model"), "board_model": before.get("model"),
                    "os": f"Android {before.get('android')}" if before.get("android") else None,
                    "cores": before.get("nproc")})
    return env


def _run_benchmark_model(run: _Run) -> dict:
    m = run.artifact.manifest
    if m.format != "tflite":
        raise ArtifactRejected(f"{run.where}: benchmark_model mode runs only TFLite artefacts (this one is "
                               f"{m.format})")
    if run.mode == "eval":
        raise ArtifactRejected(f"{run.where}: benchmark_model mode gives no predictions; evaluate accuracy on "
                               "the host")
    binary = run.profile.adb.benchmark_model if run.profile and run.profile.adb else "benchmark_model"
    protocol = _protocol(run)
    t0 = time.perf_counter()
    run.transport.prepare()
    remote_model = f"{R_ARTIFACT}/{run.artifact.model.name}"
    run.transport.put(run.artifact.folder, R_ARTIFACT)
    push_s = time.perf_counter() - t0
    dev_digest = _verify_on_device(run, remote_model)
    argv = _pin_prefix(run.transport) + benchmark_argv(binary, run.transport.remote(remote_model),
                                                       threads=run.threads, protocol=protocol,
                                                       op_profiling=run.profile_ops > 0)
    t1 = time.perf_counter()
    out, states = _run_observed(run, argv)
    run_s = time.perf_counter() - t1
    state_before, state_after = (states[0][1], states[-1][1]) if states else (None, None)
    parsed = _bm_check_outcome(run, out, binary)
    artifact = {"name": run.artifact.name, "sha256": dev_digest, "path": R_ARTIFACT, "artifact_id": m.artifact_id,
                "target": m.target, "format": "tflite", "size_bytes": run.artifact.model.stat().st_size}
    result = result_from_benchmark(parsed, artifact=artifact, threads=run.threads, profile=run.profile_name,
                                   protocol=protocol, binary=binary, env=_bm_env(run, state_before, state_after))
    if run.mode == "both":
        result["warnings"].append("mode 'both' ran bench only: evaluate accuracy on the host")
    _host_fields(result, run.transport, run.profile, {
        "command": argv, "exit_code": out.exit_code, "timed_out": False, "push_s": round(push_s, 4),
        "run_s": round(run_s, 4), "pull_s": 0.0, "total_s": round(time.perf_counter() - t0, 4),
        "stdout_tail": out.stdout[-4000:]})
    conditions.apply(result, conditions.benchmark_model_stop_rule(parsed, protocol), [])
    _record_states(result, run, states)
    return result


# ------------------------------------------------------------------ probe
def _probe_benchmark_model(transport: Transport, profile: DeviceProfile | None, t0: float) -> dict:
    binary = profile.adb.benchmark_model if profile and profile.adb else "benchmark_model"
    chk = transport.run(CommandRequest(["ls", "-l", binary], timeout_s=60))
    res = {"ok": True, "mode": "benchmark_model",
           "benchmark_model": {"path": binary, "present": chk.ok, "detail": chk.last_error_line()},
           "device_state": _device_state(transport)}
    return _host_fields(res, transport, profile, {"total_s": round(time.perf_counter() - t0, 4)})


def _last_json_line(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            return doc if isinstance(doc, dict) else None
    return None


def probe_device(target: DeviceProfile | Transport | str, *, timeout_s: float = 300.0) -> dict:
    """Run ``agent.py probe --json`` on the device; returns its JSON plus host fields.

    For an adb profile in benchmark_model mode (no Python on the phone) it checks the
    benchmark_model binary and reports the device state instead.
    """
    transport, profile, owned = _open(target)
    try:
        t0 = time.perf_counter()
        transport.prepare()
        where = transport.describe()
        if transport.kind == "adb" and _adb_mode(profile) == "benchmark_model":
            return _probe_benchmark_model(transport, profile, t0)
        _push_once(transport, AGENT_PATH, R_AGENT, sha256_file(AGENT_PATH))
        argv = [*transport.python, R_AGENT, "probe", "--json"]
        out = transport.run(CommandRequest(argv, timeout_s=timeout_s, env=dict(profile.env) if profile else {}))
        if out.timed_out:
            raise DeviceError(f"{where}: probe timed out after {timeout_s:g} s")
        if out.exit_code == 127:
            raise DeviceError(f"{where}: python {shlex.join(transport.python)} not found on the "
                              f"device ({out.last_error_line()})")
        res = _last_json_line(out.stdout)
        if res is None:
            raise DeviceError(f"{where}: probe gave no JSON (exit {out.exit_code}"
                              + (f": {out.last_error_line()})" if out.last_error_line() else ")"))
        if not res.get("ok", False):
            raise DeviceError(f"{where}: probe failed: {res.get('error') or out.last_error_line()}")
        state = _device_state(transport)
        if state is not None:
            res["device_state"] = state
        return _host_fields(res, transport, profile, {"command": argv, "exit_code": out.exit_code,
                                                      "total_s": round(time.perf_counter() - t0, 4)})
    finally:
        if owned:
            transport.close()
