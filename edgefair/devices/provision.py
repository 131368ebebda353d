"""``bench devices setup``: provision a device from zero so that the agent can run there.

- SSH devices (a fresh Raspberry Pi): a virtual environment at the profile's ``venv``
  (default ``~/edgefair/venv``; PEP 668 forbids installing into Raspberry Pi OS's own
  Python), made with the device's ``python3``; the runtime versions this host uses
  (numpy, onnxruntime, ai-edge-litert; tflite-runtime where ai-edge-litert has no wheel)
  installed by the device's pip from its package index, or with ``wheels`` from wheels
  this host downloads for the device's platform (``pip download --platform ...
  --only-binary=:all:``) and pushes; verified with the agent's ``probe`` in the venv;
  recorded in ``<venv>/edgefair-setup.json``. A second call finds the versions in place
  and only probes.
- adb devices in ``benchmark_model`` mode: the binary the profile names is checked, or
  pushed from ``benchmark_model`` (a host file) and its sha256 checked on the phone.
- ``pi4-emu``: the arm64 sysroot (:func:`edgefair.devices.emulated.setup_emulated_pi`).
- ``local``: nothing to install; the probe says what is there.

Every device command is an argv list (quoted for the remote shell by the transport).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from edgefair.devices.base import CommandOutcome, CommandRequest, DeviceError, Transport
from edgefair.devices.local import run_subprocess
from edgefair.devices.profiles import DeviceProfile, open_transport
from edgefair.files import sha256_file

Progress = Callable[[str], None]

#: What the agent needs on a device, in install order; the host's own versions are pinned.
RUNTIME_PACKAGES = ("numpy", "onnxruntime", "ai-edge-litert")
#: Installed (unpinned: the host has none) where ai-edge-litert has no wheel for the device.
TFLITE_FALLBACK = "tflite-runtime"
RECORD = "edgefair-setup.json"
REMOTE_WHEELS = "wheels"
PIP_TIMEOUT_S = 1800.0

_PLATFORM_SCRIPT = ("import json, platform, sys, sysconfig\n"
                    "libc, ver = platform.libc_ver()\n"
                    "print(json.dumps({'machine': platform.machine(), 'python': platform.python_version(),"
                    " 'implementation': sys.implementation.name, 'libc': libc, 'libc_version': ver,"
                    " 'executable': sys.executable}))\n")
_VERSIONS_SCRIPT = ("import json\nfrom importlib import metadata\nout = {}\n"
                    f"for n in {(*RUNTIME_PACKAGES, TFLITE_FALLBACK)!r}:\n"
                    "    try:\n        out[n] = metadata.version(n)\n"
                    "    except metadata.PackageNotFoundError:\n        pass\n"
                    "print(json.dumps(out))\n")


def host_versions() -> dict[str, str]:
    """The runtime versions this host uses (what a device is provisioned with)."""
    out: dict[str, str] = {}
    for name in RUNTIME_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise DeviceError(f"setup: {name} is not installed on this host, so there is no version to "
                              "install on the device (pip install -e . first)") from None
    return out


@dataclass(frozen=True)
class DevicePlatform:
    """What pip on the host needs to know to download wheels for the device."""

    machine: str
    python: str
    implementation: str = "cpython"
    libc: str = "glibc"
    libc_version: str = ""

    @property
    def python_tag(self) -> str:
        major, minor = self.python.split(".")[:2]
        return f"{major}{minor}"

    def platform_tags(self) -> list[str]:
        """manylinux tags from glibc 2.17 up to the device's glibc, newest first."""
        m = re.match(r"2\.(\d+)", self.libc_version or "")
        if self.libc != "glibc" or not m:
            raise DeviceError(f"setup: the device's C library is {self.libc or 'unknown'} "
                              f"{self.libc_version}: only glibc (manylinux) wheels can be downloaded for it")
        minors = range(int(m.group(1)), 16, -1)
        return [f"manylinux_2_{i}_{self.machine}" for i in minors] + [f"manylinux2014_{self.machine}"]

    def pip_download_args(self) -> list[str]:
        args = ["--only-binary=:all:", "--python-version", self.python_tag, "--implementation", "cp",
                "--abi", f"cp{self.python_tag}"]
        for tag in self.platform_tags():
            args += ["--platform", tag]
        return args


@dataclass
class SetupReport:
    """What ``bench devices setup`` did on one device."""

    device: str
    transport: str
    target: str
    status: str  # provisioned | already-provisioned | checked
    venv: str | None = None
    python: list[str] = field(default_factory=list)
    installed: dict[str, str] = field(default_factory=dict)
    wanted: dict[str, str] = field(default_factory=dict)
    source: str | None = None  # "package index" | "wheels pushed from DIR"
    platform: dict[str, Any] | None = None
    runtimes: dict[str, Any] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    connections: int | None = None  # SSH connections the setup opened
    seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------- helpers
def _last_json(out: CommandOutcome, what: str, where: str) -> dict[str, Any]:
    for line in reversed(out.stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except ValueError:
                break
            if isinstance(doc, dict):
                return doc
    raise DeviceError(f"{where}: {what} failed ({out.last_error_line() or f'exit {out.exit_code}'})")


def _run(t: Transport, argv: Sequence[str], what: str, *, timeout_s: float = 300.0) -> CommandOutcome:
    out = t.run(CommandRequest(list(argv), timeout_s=timeout_s, env={"PIP_NO_INPUT": "1"}))
    if out.timed_out:
        raise DeviceError(f"{t.describe()}: {what} timed out after {timeout_s:g} s")
    return out


def device_platform(t: Transport, python: Sequence[str]) -> DevicePlatform:
    """Machine, Python version and C library of the device's base Python."""
    out = _run(t, [*python, "-c", _PLATFORM_SCRIPT], "reading the device's platform", timeout_s=120)
    if out.exit_code == 127:
        raise DeviceError(f"{t.describe()}: {python[0]} not found on the device (install python3 there, or set "
                          "the profile's python)")
    d = _last_json(out, f"{' '.join(python)} -c (platform)", t.describe())
    return DevicePlatform(machine=d["machine"], python=d["python"], implementation=d["implementation"],
                          libc=d.get("libc") or "", libc_version=d.get("libc_version") or "")


def venv_versions(t: Transport, venv_python: str) -> dict[str, str]:
    """The runtime packages present in the device's venv (name -> version)."""
    out = _run(t, [venv_python, "-c", _VERSIONS_SCRIPT], "reading the venv's packages", timeout_s=120)
    return {str(k): str(v) for k, v in _last_json(out, "reading the venv's packages", t.describe()).items()}


def satisfied(have: dict[str, str], wanted: dict[str, str]) -> bool:
    """numpy and onnxruntime at the host's versions, and a TFLite runtime (ai-edge-litert pinned, or the fallback)."""
    core = all(have.get(n) == v for n, v in wanted.items() if n != "ai-edge-litert")
    tflite = have.get("ai-edge-litert") == wanted.get("ai-edge-litert") or TFLITE_FALLBACK in have
    return core and tflite


# ---------------------------------------------------------------------------- pip
PipRunner = Callable[[list[str]], CommandOutcome]


@dataclass
class PlanOutcome:
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def pip_plan(run_pip: PipRunner, wanted: dict[str, str]) -> PlanOutcome:
    """Install (or download) everything in one pip call; if that fails, one requirement at a time
    so that what can be had is had: numpy is required, onnxruntime optional, ai-edge-litert
    falls back to tflite-runtime."""
    reqs = [f"{n}=={v}" for n, v in wanted.items()]
    first = run_pip(reqs)
    if first.ok:
        return PlanOutcome(done=reqs)
    res = PlanOutcome()
    for req in reqs:
        alternatives = [req, TFLITE_FALLBACK] if req.startswith("ai-edge-litert==") else [req]
        for alt in alternatives:
            out = run_pip([alt])
            if out.ok:
                res.done.append(alt)
                break
            res.failed[alt] = out.last_error_line() or f"exit {out.exit_code}"
        if req.startswith("numpy==") and req not in res.done:
            break
    return res


def download_wheels(dest: Path, plat: DevicePlatform, wanted: dict[str, str], progress: Progress) -> list[str]:
    """Wheels for the device's platform into ``dest`` on this host (files already there are reused,
    and an offline host manages with them). Returns the wheel file names."""
    dest.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q", "-d", str(dest),
            *plat.pip_download_args()]

    def run_pip(reqs: list[str]) -> CommandOutcome:
        offline = run_subprocess([*base, "--no-index", "--find-links", str(dest), *reqs], cwd=None, env=None,
                                 timeout_s=PIP_TIMEOUT_S)
        if offline.ok:
            return offline
        return run_subprocess([*base, "--find-links", str(dest), *reqs], cwd=None, env=None, timeout_s=PIP_TIMEOUT_S)

    progress(f"downloading wheels for {plat.machine} / Python {plat.python} into {dest}")
    res = pip_plan(run_pip, wanted)
    if not any(r.startswith("numpy") for r in res.done):
        raise DeviceError(f"setup: pip download for {plat.machine} / Python {plat.python} failed "
                          f"({'; '.join(res.failed.values()) or 'no wheels'})")
    return sorted(p.name for p in dest.glob("*.whl"))


# ---------------------------------------------------------------------------- the venv
@dataclass
class _Venv:
    """One SSH provisioning run: the open transport and what it learnt."""

    t: Any  # SSHTransport (venv_path, venv_ready, refresh)
    profile: DeviceProfile
    report: SetupReport
    progress: Progress

    @property
    def where(self) -> str:
        return self.t.describe()

    @property
    def python(self) -> str:
        return posixpath.join(self.t.venv_path, "bin", "python")

    def say(self, msg: str) -> None:
        self.report.actions.append(msg)
        self.progress(msg)

    def create(self, base: Sequence[str], force: bool) -> None:
        argv = [*base, "-m", "venv", *(["--clear"] if force else []), self.t.venv_path]
        self.say(f"creating the venv {self.t.venv_path} with {' '.join(base)}")
        out = _run(self.t, argv, "creating the venv", timeout_s=600)
        if out.ok:
            return
        reason = out.last_error_line() or f"exit {out.exit_code}"
        if "ensurepip" in out.stdout + out.stderr:
            reason = "the device's Python has no venv module: sudo apt install python3-venv there"
        raise DeviceError(f"{self.where}: cannot create the venv {self.t.venv_path} ({reason})")

    def install(self, wanted: dict[str, str], find_links: str | None) -> PlanOutcome:
        index = ["--no-index", "--find-links", find_links] if find_links else []
        base = [self.python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                "--only-binary=:all:", *index]

        def run_pip(reqs: list[str]) -> CommandOutcome:
            return _run(self.t, [*base, *reqs], "pip install", timeout_s=PIP_TIMEOUT_S)

        self.say("installing " + " ".join(f"{n}=={v}" for n, v in wanted.items())
                 + (" from the pushed wheels" if find_links else " from the device's package index"))
        res = pip_plan(run_pip, wanted)
        for req, why in res.failed.items():
            self.report.warnings.append(f"{req}: {why}")
        return res

    def push_wheels(self, wheels: Path, plat: DevicePlatform, wanted: dict[str, str]) -> str:
        names = download_wheels(wheels, plat, wanted, self.progress)
        with tempfile.TemporaryDirectory(prefix="edgefair-wheels-") as tmp:
            for n in names:  # only the wheels, never anything else that lies in DIR
                _link_or_copy(wheels / n, Path(tmp) / n)
            self.say(f"pushing {len(names)} wheels from {wheels} to the device")
            self.t.put(Path(tmp), REMOTE_WHEELS)
        return self.t.remote(REMOTE_WHEELS)

    def write_record(self, record: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory(prefix="edgefair-setup-") as tmp:
            path = Path(tmp) / RECORD
            path.write_text(json.dumps(record, indent=2) + "\n")
            self.t.put(path, posixpath.join(self.t.venv_path, RECORD))


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _verify(v: _Venv, wanted: dict[str, str]) -> dict[str, Any]:
    """The agent's probe, run with the venv's Python: both runtimes must import."""
    from edgefair.devices.runner import probe_device

    saved = list(v.t.python)
    v.t.python = [v.python]
    try:
        probe = probe_device(v.t)
    finally:
        v.t.python = saved
    runtimes = probe.get("runtimes") or {}
    v.report.runtimes = runtimes
    missing = [k for k in ("onnx", "tflite") if not (runtimes.get(k) or {}).get("importable")]
    if len(missing) == 2:
        raise DeviceError(f"{v.where}: setup finished but the agent's probe finds no runtime in {v.t.venv_path} "
                          f"({(runtimes.get('tflite') or {}).get('error')})")
    for k in missing:
        v.report.warnings.append(f"no {k} runtime on this device: {(runtimes.get(k) or {}).get('error')}")
    return probe


def setup_ssh(t: Any, profile: DeviceProfile, *, wheels: Path | None, force: bool,
              progress: Progress) -> SetupReport:
    """Provision an SSH device's venv (see the module docstring)."""
    t0 = time.perf_counter()
    report = SetupReport(device=profile.name, transport="ssh", target=t.describe(), status="provisioned")
    if not profile.venv:
        raise DeviceError(f"{t.describe()}: profile {profile.name} names no venv to install into "
                          f"(set venv = \"~/edgefair/venv\" in {profile.source})")
    wanted = host_versions()
    v = _Venv(t, profile, report, progress)
    t.prepare()
    base = list(t.base_python)
    plat = device_platform(t, base)
    report.venv, report.wanted, report.platform = t.venv_path, wanted, asdict(plat)
    have = venv_versions(t, v.python) if t.venv_ready and not force else {}
    if have and satisfied(have, wanted):
        report.status, report.installed = "already-provisioned", have
        v.say(f"{t.venv_path} already holds " + ", ".join(f"{k} {x}" for k, x in sorted(have.items())))
    else:
        _provision(v, base, plat, wanted, wheels, force)
    _verify(v, wanted)
    t.refresh()
    report.python = list(t.python)
    report.seconds = round(time.perf_counter() - t0, 2)
    return report


def _provision(v: _Venv, base: list[str], plat: DevicePlatform, wanted: dict[str, str], wheels: Path | None,
               force: bool) -> None:
    if force or not v.t.venv_ready:
        v.create(base, force)
    find_links = v.push_wheels(wheels, plat, wanted) if wheels is not None else None
    res = v.install(wanted, find_links)
    if not any(r.startswith("numpy") for r in res.done):
        raise DeviceError(f"{v.where}: pip could not install numpy=={wanted['numpy']} in {v.t.venv_path} "
                          f"({'; '.join(res.failed.values())})")
    v.report.installed = venv_versions(v.t, v.python)
    v.report.source = f"wheels pushed from {wheels}" if wheels is not None else "the device's package index"
    v.write_record({"edgefair_setup": 1, "wanted": wanted, "installed": v.report.installed,
                    "source": v.report.source, "platform": asdict(plat), "venv": v.t.venv_path,
                    "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


# ---------------------------------------------------------------------------- adb
def setup_benchmark_model(t: Any, profile: DeviceProfile, *, binary_file: Path | None,
                          progress: Progress) -> SetupReport:
    """Check (or push, from ``binary_file``) the benchmark_model binary the adb profile names."""
    from edgefair.devices.runner import probe_device

    t0 = time.perf_counter()
    assert profile.adb is not None
    remote = profile.adb.benchmark_model
    report = SetupReport(device=profile.name, transport="adb", target=t.describe(), status="checked")
    t.prepare()
    present = _run(t, ["test", "-x", remote], "checking benchmark_model").ok
    if binary_file is not None:
        _push_binary(t, binary_file, remote, present, report, progress)
    elif not present:
        raise DeviceError(f"{t.describe()}: no benchmark_model at {remote}: download TensorFlow Lite's "
                          f"benchmark_model for the phone's ABI and run bench devices setup {profile.name} "
                          "--benchmark-model FILE")
    report.detail = probe_device(t)
    report.seconds = round(time.perf_counter() - t0, 2)
    return report


def _push_binary(t: Any, binary_file: Path, remote: str, present: bool, report: SetupReport,
                 progress: Progress) -> None:
    if not binary_file.is_file():
        raise DeviceError(f"--benchmark-model {binary_file}: no such file")
    digest = sha256_file(binary_file)
    if present and _device_sha256(t, remote) == digest:
        report.actions.append(f"{remote} already matches {binary_file}")
        return
    progress(f"pushing {binary_file} to {remote}")
    t.put(binary_file, remote)
    _run(t, ["chmod", "755", remote], "chmod benchmark_model")
    got = _device_sha256(t, remote)
    if got != digest:
        raise DeviceError(f"{t.describe()}: {remote} sha256 {got[:12] or '?'}… on the device, "
                          f"{digest[:12]}… pushed")
    report.status = "provisioned"
    report.installed = {"benchmark_model": digest}
    report.actions.append(f"pushed {binary_file} to {remote} (sha256 {digest[:12]}…)")


def _device_sha256(t: Any, remote: str) -> str:
    out = _run(t, ["sha256sum", remote], "sha256sum")
    return out.stdout.split()[0].lower() if out.ok and out.stdout.split() else ""


# ---------------------------------------------------------------------------- entry point
def setup_device(profile: DeviceProfile, *, wheels: Path | None = None, force: bool = False,
                 benchmark_model: Path | None = None, progress: Progress | None = None) -> SetupReport:
    """Provision the device ``profile`` describes; DeviceError (one line) on any failure."""
    say: Progress = progress or (lambda msg: None)
    if profile.transport == "emulated":
        return _setup_emulated(profile, force, say)
    if wheels is not None and profile.transport != "ssh":
        raise DeviceError(f"--wheels applies to SSH devices ({profile.name} is {profile.transport})")
    if benchmark_model is not None and profile.transport != "adb":
        raise DeviceError(f"--benchmark-model applies to adb devices ({profile.name} is {profile.transport})")
    t = open_transport(profile)
    try:
        if profile.transport == "ssh":
            report = setup_ssh(t, profile, wheels=wheels, force=force, progress=say)
            report.connections = getattr(t, "connections_opened", None)
            return report
        if profile.transport == "adb" and profile.adb is not None and profile.adb.mode == "benchmark_model":
            return setup_benchmark_model(t, profile, binary_file=benchmark_model, progress=say)
        return _setup_probe_only(t, profile)
    finally:
        t.close()


def _setup_probe_only(t: Transport, profile: DeviceProfile) -> SetupReport:
    """local, adb in agent mode: nothing edgefair installs; the probe says what is there."""
    from edgefair.devices.runner import probe_device

    probe = probe_device(t)
    report = SetupReport(device=profile.name, transport=profile.transport, target=t.describe(), status="checked",
                         python=list(t.python), runtimes=probe.get("runtimes") or {})
    missing = [k for k, r in report.runtimes.items() if not r.get("importable")]
    for k in missing:
        report.warnings.append(f"no {k} runtime for {' '.join(t.python)}: {report.runtimes[k].get('error')}")
    return report


def _setup_emulated(profile: DeviceProfile, force: bool, say: Progress) -> SetupReport:
    from edgefair.devices.emulated import describe_sysroot, setup_emulated_pi

    t0 = time.perf_counter()
    e = profile.emulated_settings
    cache = Path(e.cache_dir).expanduser() if e and e.cache_dir else None
    path = setup_emulated_pi(cache, progress=say, force=force, qemu=e.qemu if e else "qemu-aarch64-static")
    desc = describe_sysroot(cache)
    marker = desc.get("marker") or {}
    return SetupReport(device=profile.name, transport="emulated", target=str(path), status="provisioned",
                       installed=dict((marker.get("spec") or {}).get("wheels") or {}), detail=desc,
                       seconds=round(time.perf_counter() - t0, 2))
