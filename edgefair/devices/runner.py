"""Host side of a device run: ship the agent, the artefact and the batch; bring back a result.

:func:`run_artifact` works the same on every transport:

1. check the artefact on the host (manifest, model file, its sha256 against the manifest);
2. push ``agent.py``, the artefact folder and ``batch.npz`` into the device work dir
   (the agent and an unchanged batch are pushed once per transport);
3. run ``<python> agent.py run ... --expect-sha256 <manifest file.sha256>`` there, so the
   agent verifies the file on the device before it loads it;
4. pull ``result.json`` back and add host fields (device, transport, emulated, timings
   of the transfer).

Any failure raises :class:`DeviceError` with a one-line reason naming the device and the
artefact, so a caller can record it and go on with the next artefact.

On adb profiles in ``benchmark_model`` mode only the ``.tflite`` file goes to the phone and
TensorFlow Lite's ``benchmark_model`` measures it (see :mod:`edgefair.devices.benchmark_model`).
"""

from __future__ import annotations

from edgefair.files import sha256_file as _sha256
import json
import shlex
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from edgefair.devices.base import CommandRequest, DeviceError, Transport
from edgefair.devices.benchmark_model import (BenchmarkModelParseError, benchmark_argv,
                                              parse_benchmark_output, result_from_benchmark)
from edgefair.devices.profiles import DeviceProfile, open_transport, resolve_device

AGENT_PATH = Path(__file__).resolve().parents[1] / "runtimes" / "agent.py"

MODES = ("bench", "eval", "both")
PROTOCOL_PROFILES = ("quick", "standard", "mlperf")
#: Protocol overrides the agent accepts (``--min-runs`` ...).
OVERRIDE_KEYS = ("min_runs", "min_seconds", "max_seconds", "warmup_runs", "warmup_seconds")

# Remote layout inside the work dir.
R_AGENT = "agent.py"
R_ARTIFACT = "artifact"
R_RESULT = "result.json"


class RunFailed(DeviceError):
    """The device answered but the run failed; ``result`` holds what came back, if anything."""

    def __init__(self, message: str, result: dict | None = None):
        super().__init__(message)
        self.result = result


def _agent_protocols() -> dict:
    """The agent's protocol presets (one source of truth for the agent and benchmark_model)."""
    from edgefair.runtimes import agent
    return agent.PROFILES


def read_artifact(artifact_dir: Path) -> tuple[dict, Path, str]:
    """(manifest, model path, sha256) after host-side checks; DeviceError on any problem."""
    artifact_dir = Path(artifact_dir)
    mpath = artifact_dir / "manifest.json"
    try:
        manifest = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise DeviceError(f"artefact {artifact_dir}: no manifest.json") from None
    except (OSError, ValueError) as e:
        raise DeviceError(f"artefact {artifact_dir}: unreadable manifest.json ({e})") from None
    model_file = manifest.get("model_file")
    if not model_file:
        raise DeviceError(f"artefact {artifact_dir}: manifest.json has no model_file")
    model = artifact_dir / model_file
    if not model.is_file():
        raise DeviceError(f"artefact {artifact_dir}: model file {model_file} missing")
    digest = _sha256(model)
    want = ((manifest.get("file") or {}).get("sha256") or "").lower()
    if want and want != digest:
        raise DeviceError(f"artefact {artifact_dir.name}: {model_file} sha256 {digest[:12]}… "
                          f"does not match the manifest's {want[:12]}…")
    return manifest, model, digest


def _artifact_name(artifact_dir: Path, manifest: dict) -> str:
    return str(manifest.get("name") or Path(artifact_dir).name)


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
            raise ValueError(f"unknown protocol override {k!r} (allowed: {', '.join(OVERRIDE_KEYS)})")
        if v is None:
            continue
        flags += ["--" + k.replace("_", "-"), str(v)]
    return flags


def _host_fields(result: dict, transport: Transport, profile: DeviceProfile | None,
                 extra: dict) -> dict:
    result["device"] = profile.name if profile else transport.name
    result["transport"] = transport.kind
    result["emulated"] = bool(transport.emulated)
    result["device_description"] = profile.description if profile else transport.describe()
    host = {"target": transport.describe(), "remote_workdir": transport.workdir}
    host.update(extra)
    result["host"] = host
    if transport.emulated:
        msg = "emulated device (qemu-aarch64): latencies are not device latencies"
        if msg not in result.setdefault("warnings", []):
            result["warnings"].append(msg)
    return result


def _adb_mode(profile: DeviceProfile | None) -> str:
    if profile is not None and profile.adb is not None:
        return profile.adb.mode
    return "agent"


def run_artifact(target: DeviceProfile | Transport | str, artifact_dir: Path | str,
                 batch_npz: Path | str, *, mode: str = "both", threads: int | None = None,
                 profile_name: str = "quick", timeout_s: float | None = None,
                 overrides: Mapping[str, Any] | None = None) -> dict:
    """Measure one artefact on a device; returns the agent's result.json plus host fields.

    ``target`` is a DeviceProfile, a device spec (``pi4``, ``ssh://...``, ``adb:SERIAL``) or
    an open Transport (reused across artefacts: the agent and the batch are pushed once).
    ``overrides`` may set the agent's protocol flags: min_runs, min_seconds, max_seconds,
    warmup_runs, warmup_seconds. Raises DeviceError (one line) on any failure;
    :class:`RunFailed` carries the failed result when the agent wrote one.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if profile_name not in PROTOCOL_PROFILES:
        raise ValueError(f"profile_name must be one of {PROTOCOL_PROFILES}, got {profile_name!r}")
    override_flags = _override_flags(overrides)
    artifact_dir = Path(artifact_dir)
    batch_npz = Path(batch_npz)
    if not batch_npz.is_file():
        raise DeviceError(f"batch {batch_npz} not found")
    manifest, model, digest = read_artifact(artifact_dir)
    name = _artifact_name(artifact_dir, manifest)

    transport, profile, owned = _open(target)
    try:
        if threads is None:
            threads = profile.threads if profile else 1
        if timeout_s is None:
            timeout_s = profile.timeout_s if profile else 900.0
        try:
            if transport.kind == "adb" and _adb_mode(profile) == "benchmark_model":
                return _run_benchmark_model(transport, profile, artifact_dir, manifest, model, digest,
                                            name=name, mode=mode, threads=threads,
                                            profile_name=profile_name, timeout_s=timeout_s,
                                            overrides=overrides)
            if manifest.get("format") == "torch" and transport.kind == "local":
                from edgefair.models.torch_runner import PLUGIN_PATH

                override_flags = [*override_flags, "--plugin", str(PLUGIN_PATH)]
            return _run_agent(transport, profile, artifact_dir, batch_npz, digest, name=name,
                              mode=mode, threads=threads, profile_name=profile_name,
                              timeout_s=timeout_s, override_flags=override_flags)
        except RunFailed:
            raise
        except DeviceError as e:
            # The link failed: the device may have lost what we pushed (a reboot); push
            # everything again next time.
            _memo(transport).clear()
            # Transport-level errors do not know the artefact: name it.
            if name not in str(e):
                raise DeviceError(f"{e} [artefact {name}]") from None
            raise
    finally:
        if owned:
            transport.close()


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


def _run_agent(transport: Transport, profile: DeviceProfile | None, artifact_dir: Path,
               batch_npz: Path, digest: str, *, name: str, mode: str, threads: int,
               profile_name: str, timeout_s: float, override_flags: list[str]) -> dict:
    where = f"{transport.describe()}: {name}"
    t0 = time.perf_counter()
    transport.prepare()
    if not AGENT_PATH.is_file():
        raise DeviceError(f"agent not found at {AGENT_PATH}")
    _push_once(transport, AGENT_PATH, R_AGENT, _sha256(AGENT_PATH))
    batch_digest = _sha256(batch_npz)
    remote_batch = f"batch-{batch_digest[:16]}.npz"
    _push_once(transport, batch_npz, remote_batch, batch_digest)
    transport.put(artifact_dir, R_ARTIFACT)
    push_s = time.perf_counter() - t0

    # A stale result.json must never be mistaken for this run's.
    rm = transport.run(CommandRequest(["rm", "-f", R_RESULT], timeout_s=60))
    if not rm.ok:
        raise DeviceError(f"{where}: cannot clear the previous result "
                          f"({rm.last_error_line() or f'exit {rm.exit_code}'})")

    state_before = _device_state(transport)
    argv = [*_pin_prefix(transport), *transport.python, R_AGENT, "run", "--artifact", R_ARTIFACT, "--batch", remote_batch,
            "--out", R_RESULT, "--mode", mode, "--threads", str(threads),
            "--profile", profile_name, "--expect-sha256", digest, *override_flags]
    env = dict(profile.env) if profile else {}
    t1 = time.perf_counter()
    out = transport.run(CommandRequest(argv, timeout_s=timeout_s, env=env))
    run_s = time.perf_counter() - t1
    state_after = _device_state(transport)

    t2 = time.perf_counter()
    result: dict | None = None
    with tempfile.TemporaryDirectory(prefix="edgefair-result-") as tmp:
        local = Path(tmp) / "result.json"
        try:
            transport.get(R_RESULT, local)
            result = json.loads(local.read_text())
        except DeviceError:
            if transport.kind == "ssh" and out.exit_code == 255:
                raise
            result = None
        except ValueError as e:
            raise DeviceError(f"{where}: result.json is not valid JSON ({e})") from None
    pull_s = time.perf_counter() - t2

    if result is None or not isinstance(result, dict):
        if out.timed_out:
            raise DeviceError(f"{where}: agent timed out after {timeout_s:g} s")
        if out.exit_code == 127:
            raise DeviceError(f"{where}: python {shlex.join(transport.python)} not found on the "
                              f"device ({out.last_error_line()})")
        raise DeviceError(f"{where}: agent exited {out.exit_code} without a result"
                          + (f" ({out.last_error_line()})" if out.last_error_line() else ""))

    _host_fields(result, transport, profile, {
        "command": argv, "exit_code": out.exit_code, "timed_out": out.timed_out,
        "push_s": round(push_s, 4), "run_s": round(run_s, 4), "pull_s": round(pull_s, 4),
        "total_s": round(time.perf_counter() - t0, 4),
        "stderr_tail": out.stderr[-2000:] if out.stderr else ""})
    if state_before is not None:
        result["device_state"] = {"before": state_before, "after": state_after,
                                  "taskset": getattr(transport, "taskset", None)}
    if not result.get("ok"):
        err = result.get("error") or f"exit {out.exit_code}"
        if out.timed_out:
            err = f"agent timed out after {timeout_s:g} s ({err})"
        raise RunFailed(f"{where}: {err}", result)
    if out.timed_out:
        raise RunFailed(f"{where}: agent timed out after {timeout_s:g} s", result)
    got = ((result.get("artifact") or {}).get("sha256") or "").lower()
    if got != digest:
        raise RunFailed(f"{where}: the device measured a file with sha256 {got[:12] or '?'}…, "
                        f"expected {digest[:12]}…", result)
    return result


def _run_benchmark_model(transport: Transport, profile: DeviceProfile | None,
                         artifact_dir: Path, manifest: dict, model: Path, digest: str, *,
                         name: str, mode: str, threads: int, profile_name: str,
                         timeout_s: float, overrides: Mapping[str, Any] | None) -> dict:
    where = f"{transport.describe()}: {name}"
    fmt = manifest.get("format") or model.suffix.lstrip(".")
    if fmt != "tflite":
        raise DeviceError(f"{where}: benchmark_model mode runs only TFLite artefacts "
                          f"(this one is {fmt})")
    if mode == "eval":
        raise DeviceError(f"{where}: benchmark_model mode gives no predictions; evaluate "
                          f"accuracy on the host")
    binary = profile.adb.benchmark_model if profile and profile.adb else "benchmark_model"
    protocol = dict(_agent_protocols()[profile_name])
    for k, v in (overrides or {}).items():
        if k not in OVERRIDE_KEYS:
            raise ValueError(f"unknown protocol override {k!r}")
        if v is not None:
            protocol[k] = v

    t0 = time.perf_counter()
    transport.prepare()
    remote_model = f"{R_ARTIFACT}/{model.name}"
    transport.put(artifact_dir, R_ARTIFACT)
    push_s = time.perf_counter() - t0

    # Integrity on the device before measuring: toybox's sha256sum.
    chk = transport.run(CommandRequest(["sha256sum", remote_model], timeout_s=120))
    dev_digest = chk.stdout.split()[0].lower() if chk.ok and chk.stdout.split() else ""
    if not dev_digest:
        raise DeviceError(f"{where}: cannot verify sha256 on the device "
                          f"({chk.last_error_line() or f'exit {chk.exit_code}'})")
    if dev_digest != digest:
        raise DeviceError(f"{where}: sha256 mismatch on the device: expected {digest}, "
                          f"got {dev_digest}")

    state_before = _device_state(transport)
    argv = _pin_prefix(transport) + benchmark_argv(binary, transport.remote(remote_model),
                                                   threads=threads, protocol=protocol)
    env = dict(profile.env) if profile else {}
    t1 = time.perf_counter()
    out = transport.run(CommandRequest(argv, timeout_s=timeout_s, env=env))
    run_s = time.perf_counter() - t1
    state_after = _device_state(transport)
    if out.timed_out:
        raise DeviceError(f"{where}: benchmark_model timed out after {timeout_s:g} s")
    if out.exit_code == 127 or (not out.ok and "not found" in out.stderr + out.stdout):
        raise DeviceError(f"{where}: benchmark_model binary {binary} not found on the device "
                          f"(push TensorFlow Lite's benchmark_model there or fix "
                          f"adb.benchmark_model)")
    if not out.ok:
        raise DeviceError(f"{where}: benchmark_model exited {out.exit_code} "
                          f"({out.last_error_line()})")
    try:
        parsed = parse_benchmark_output(out.stdout + "\n" + out.stderr)
    except BenchmarkModelParseError as e:
        raise DeviceError(f"{where}: {e}") from None

    env_fp = {"device_state_before": state_before, "device_state_after": state_after,
              "emulated": False, "threads": threads}
    if state_before:
        env_fp.update({"cpu_model": state_before.get("soc") or state_before.get("model"),
                       "board_model": state_before.get("model"),
                       "os": f"Android {state_before.get('android')}"
                       if state_before.get("android") else None,
                       "cores": state_before.get("nproc")})
    artifact = {"name": name, "sha256": dev_digest, "path": R_ARTIFACT,
                "artifact_id": manifest.get("artifact_id"), "target": manifest.get("target"),
                "format": "tflite", "size_bytes": model.stat().st_size}
    result = result_from_benchmark(parsed, artifact=artifact, threads=threads,
                                   profile=profile_name, protocol=protocol, binary=binary,
                                   env=env_fp)
    if mode == "both":
        result["warnings"].append("mode 'both' ran bench only: evaluate accuracy on the host")
    _host_fields(result, transport, profile, {
        "command": argv,
        "exit_code": out.exit_code, "timed_out": False, "push_s": round(push_s, 4),
        "run_s": round(run_s, 4), "pull_s": 0.0, "total_s": round(time.perf_counter() - t0, 4),
        "stdout_tail": out.stdout[-4000:]})
    result["device_state"] = {"before": state_before, "after": state_after,
                              "taskset": getattr(transport, "taskset", None)}
    return result


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
            binary = profile.adb.benchmark_model if profile and profile.adb else "benchmark_model"
            chk = transport.run(CommandRequest(["ls", "-l", binary], timeout_s=60))
            res = {"ok": True, "mode": "benchmark_model",
                   "benchmark_model": {"path": binary, "present": chk.ok,
                                       "detail": chk.last_error_line()},
                   "device_state": _device_state(transport)}
            return _host_fields(res, transport, profile,
                                {"total_s": round(time.perf_counter() - t0, 4)})
        _push_once(transport, AGENT_PATH, R_AGENT, _sha256(AGENT_PATH))
        argv = [*transport.python, R_AGENT, "probe", "--json"]
        env = dict(profile.env) if profile else {}
        out = transport.run(CommandRequest(argv, timeout_s=timeout_s, env=env))
        if out.timed_out:
            raise DeviceError(f"{where}: probe timed out after {timeout_s:g} s")
        if out.exit_code == 127:
            raise DeviceError(f"{where}: python {shlex.join(transport.python)} not found on the "
                              f"device ({out.last_error_line()})")
        res = None
        for line in reversed(out.stdout.strip().splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    res = json.loads(line)
                    break
                except ValueError:
                    continue
        if not isinstance(res, dict):
            raise DeviceError(f"{where}: probe gave no JSON (exit {out.exit_code}"
                              + (f": {out.last_error_line()})" if out.last_error_line() else ")"))
        if not res.get("ok", False):
            raise DeviceError(f"{where}: probe failed: {res.get('error') or out.last_error_line()}")
        state = _device_state(transport)
        if state is not None:
            res["device_state"] = state
        return _host_fields(res, transport, profile, {
            "command": argv, "exit_code": out.exit_code,
            "total_s": round(time.perf_counter() - t0, 4)})
    finally:
        if owned:
            transport.close()
