"""pi4-emu: a Debian bookworm arm64 sysroot run under ``qemu-aarch64-static``.

The sysroot holds Debian's own arm64 ``python3.11`` (the Python of Raspberry Pi OS
bookworm) with the shared libraries it loads, and the manylinux aarch64 wheels a Pi 4
installs: numpy, ai-edge-litert, onnxruntime. Latencies measured here mean nothing; what
it proves is that the exact agent and artefacts run on arm64 and predict as on x86.

:func:`setup_emulated_pi` builds it once into a cache dir (atomic: built in a temporary
dir, then renamed; a marker file records what went in; a second call returns at once).
What goes in is pinned in ``pi4-emu.lock.json`` (:mod:`edgefair.devices.sysroot_lock`):
the Debian suite and snapshot, every .deb and wheel with its sha256, fetched through a
private apt configuration (never the host's apt sources) and checked; a cached sysroot
built from other pins is rebuilt.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

from edgefair.devices import sysroot_lock
from edgefair.devices.base import CommandOutcome, CommandRequest, DeviceError
from edgefair.devices.local import LocalTransport, run_subprocess
from edgefair.devices.sysroot_lock import SysrootLock, read_lock

#: Bump when the sysroot's layout or content rules change; a cache with another value is rebuilt.
LAYOUT_VERSION = 4
PYTHON = "python3.11"

#: Debian arm64 packages extracted with ``dpkg -x`` (pinned in pi4-emu.lock.json):
#: python3.11 and the closure of shared libraries its interpreter, stdlib extension modules
#: and the wheels load (``apt-cache depends --recurse python3.11:arm64`` less dpkg/perl/tar
#: and data-only packages; libstdc++6 and libgomp1 for onnxruntime and the LiteRT interpreter).
#: The aarch64 wheels are those a Raspberry Pi 4 (64-bit OS, Python 3.11) installs with pip;
#: their import-time dependencies are numpy only (onnxruntime's flatbuffers/protobuf/sympy/
#: coloredlogs are needed by its tools, not by ``InferenceSession``).
_LOCK = read_lock()
DEBIAN_SUITE = _LOCK.suite
DEBIAN_PACKAGES = tuple(p.name for p in _LOCK.debs)
WHEELS = {p.name: p.version for p in _LOCK.wheels}
WHEEL_PLATFORMS = _LOCK.wheel_platforms

SITE_PACKAGES = "usr/lib/python3/dist-packages"
#: A host shell script inside the sysroot that starts its python3.11 under qemu. It is the
#: guest's ``sys.executable`` (qemu ``-0``), so the processes the agent starts with
#: ``sys.executable`` (its measurement worker, its runtime probes) run under qemu as well:
#: qemu-user cannot exec an aarch64 binary by itself without binfmt_misc.
WRAPPER = "usr/bin/python3.11-qemu"
_WRAPPER_TEXT = """#!/bin/sh
# edgefair pi4-emu: this sysroot's python3.11 under qemu-aarch64 (host-side launcher).
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd -P)
root=${here%/usr/bin}
exec "${EDGEFAIR_QEMU:-qemu-aarch64-static}" -L "$root" -0 "$root/usr/bin/python3.11-qemu" \\
    "$root/usr/bin/python3.11" "$@"
"""
MARKER = ".edgefair-sysroot.json"
QEMU = "qemu-aarch64-static"

Progress = Callable[[str], None]


def default_cache_dir() -> Path:
    env = os.environ.get("EDGEFAIR_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "pi4-emu"
    return Path("~/.cache/edgefair/pi4-emu").expanduser()


def _wanted_spec(lock: SysrootLock | None = None) -> dict:
    """What a cached sysroot must have been built from (any pin changed: rebuild)."""
    lock = lock or read_lock()
    return {"layout_version": LAYOUT_VERSION, "debian_suite": lock.suite, "snapshot": lock.snapshot,
            "python": PYTHON, "debian_packages": sorted(f"{p.name}={p.version}" for p in lock.debs),
            "wheels": dict(sorted((p.name, p.version) for p in lock.wheels)), "pins_sha256": lock.sha256}


def sysroot_path(cache_dir: Path | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()).expanduser().absolute() / "sysroot"


def read_marker(sysroot: Path) -> dict | None:
    try:
        return json.loads((sysroot / MARKER).read_text())
    except (OSError, ValueError):
        return None


def is_ready(cache_dir: Path | None = None) -> bool:
    root = sysroot_path(cache_dir)
    m = read_marker(root)
    return (m is not None and bool(m) and m.get("spec") == _wanted_spec() and (root / "usr/bin" / PYTHON).exists()
            and (root / WRAPPER).exists())


def find_qemu(qemu: str = QEMU) -> str:
    found = shutil.which(qemu) if os.sep not in qemu else (qemu if os.access(qemu, os.X_OK) else None)
    if not found:
        raise DeviceError(f"pi4-emu: {qemu} not found (install Debian's qemu-user-static: "
                          f"scripts/ci-system-packages.sh)")
    return found


def _check(out: CommandOutcome, what: str) -> None:
    if not out.ok:
        reason = "timed out" if out.timed_out else (out.last_error_line() or f"exit {out.exit_code}")
        raise DeviceError(f"pi4-emu setup: {what} failed ({reason})")


def _need_dpkg() -> None:
    if shutil.which("dpkg") is None or shutil.which("apt-get") is None:
        raise DeviceError("pi4-emu setup: dpkg and apt-get not found (the emulated Pi is built from Debian "
                          "packages on a Debian/Ubuntu host)")


def _download_debs(dest: Path, progress: Progress, apt_root: Path) -> dict[str, str]:
    """The pinned .debs, sha256-checked (file -> sha256)."""
    return sysroot_lock.download_debs(dest, apt_root, read_lock(), progress)


def _download_wheels(dest: Path, progress: Progress) -> dict[str, str]:
    """The pinned aarch64 wheels, sha256-checked (file -> sha256)."""
    return sysroot_lock.download_wheels(dest, read_lock(), progress)


def _unpack_wheel(wheel: Path, site: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            target = (site / info.filename).resolve()
            if not str(target).startswith(str(site.resolve()) + os.sep):
                raise DeviceError(f"pi4-emu setup: {wheel.name} has an unsafe path {info.filename}")
            zf.extract(info, site)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(target, mode)


def emulated_python_argv(sysroot: Path, qemu: str = QEMU) -> list[str]:
    """``qemu-aarch64-static -L SYSROOT -0 WRAPPER SYSROOT/usr/bin/python3.11``."""
    return [find_qemu(qemu), "-L", str(sysroot), "-0", str(sysroot / WRAPPER),
            str(sysroot / "usr/bin" / PYTHON)]


def emulated_env(sysroot: Path, qemu: str = QEMU) -> dict[str, str]:
    return {"PYTHONPATH": str(sysroot / SITE_PACKAGES), "EDGEFAIR_EMULATED": "1",
            "EDGEFAIR_QEMU": find_qemu(qemu), "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1"}


_SMOKE = ("import platform, sys, numpy, onnxruntime\n"
          "from ai_edge_litert.interpreter import Interpreter\n"
          "import json; print(json.dumps({'machine': platform.machine(), 'python': sys.version.split()[0],"
          " 'numpy': numpy.__version__, 'onnxruntime': onnxruntime.__version__}))\n")


def _precompile(root: Path, qemu_path: str, say: Progress) -> None:
    """Write __pycache__/*.cpython-311.pyc for the stdlib and the wheels.

    Debian ships no .pyc (its postinst makes them) and wheels ship none, so without this
    every emulated start would compile the whole import chain from source under qemu.
    Bytecode is platform-independent; the host's Python 3.11 writes it in seconds (same
    magic number as Debian's 3.11), else the sysroot's own interpreter does, under qemu.
    """
    dirs = [str(root / "usr/lib" / PYTHON), str(root / SITE_PACKAGES)]
    say("precompiling the stdlib and the wheels to bytecode")
    excl = r"(/test/|/tests/|/lib2to3/tests/|/idlelib/|/tkinter/|/turtledemo/|/ensurepip/)"
    if sys.version_info[:2] == (3, 11) and sys.implementation.name == "cpython":
        argv = [sys.executable, "-m", "compileall", "-q", "-j", "0", "-x", excl, *dirs]
    else:
        argv = [qemu_path, "-L", str(root), str(root / "usr/bin" / PYTHON), "-m", "compileall",
                "-q", "-x", excl, *dirs]
    out = run_subprocess(argv, cwd=None, env=None, timeout_s=1800)
    # A few files in the stdlib are deliberately invalid; compileall then exits 1. Only a
    # crash or a timeout is a failure.
    if out.timed_out or out.exit_code not in (0, 1):
        _check(out, "bytecode precompilation")


@contextlib.contextmanager
def _lock(cache_dir: Path):
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def setup_emulated_pi(cache_dir: Path | None = None, *, progress: Progress | None = None,
                      force: bool = False, qemu: str = QEMU) -> Path:
    """Build (once) the arm64 sysroot for pi4-emu and return its path.

    Cached: when ``cache_dir/sysroot`` has a marker with the wanted pins this returns at
    once. Otherwise it downloads the pinned Debian arm64 packages (private ``apt-get
    download``, then ``dpkg -x``) and aarch64 wheels (``pip download --require-hashes``),
    checks every sha256, builds the sysroot in a temporary dir, checks that numpy,
    onnxruntime and LiteRT import under qemu, writes the marker and renames it into place.
    Concurrent callers serialise on a lock file. DeviceError with a one-line reason on any
    failure.
    """
    say: Progress = progress or (lambda msg: None)
    cache = Path(cache_dir or default_cache_dir()).expanduser().absolute()
    root = cache / "sysroot"
    if not force and is_ready(cache):
        return root
    qemu_path = find_qemu(qemu)
    with _lock(cache):
        if not force and is_ready(cache):
            return root
        t0 = time.perf_counter()
        # Leftovers of a build that was killed (we hold the lock: nobody else is building).
        for stale in [*cache.glob(".build-*"), *cache.glob(".old-*")]:
            shutil.rmtree(stale, ignore_errors=True)
        _need_dpkg()
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
        try:
            new_root = _build(tmp, cache / "apt", qemu_path, say, t0)
            _swap_in(new_root, root, cache)
            say(f"pi4-emu sysroot ready in {time.perf_counter() - t0:.1f} s: {root}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _build(tmp: Path, apt_root: Path, qemu_path: str, say: Progress, t0: float) -> Path:
    """Download (pinned, checked), extract, precompile, smoke-test, mark: the new sysroot in ``tmp``."""
    debs_dir, wheels_dir, new_root = tmp / "debs", tmp / "wheels", tmp / "sysroot"
    for d in (debs_dir, wheels_dir, new_root):
        d.mkdir()
    debs = _download_debs(debs_dir, say, apt_root)
    wheels = _download_wheels(wheels_dir, say)
    say(f"extracting {len(debs)} packages into the sysroot (dpkg -x)")
    for deb in sorted(debs):
        _check(run_subprocess(["dpkg", "-x", str(debs_dir / deb), str(new_root)],
                              cwd=None, env=None, timeout_s=300), f"dpkg -x {deb}")
    site = new_root / SITE_PACKAGES
    site.mkdir(parents=True, exist_ok=True)
    say(f"unpacking {len(wheels)} wheels into {SITE_PACKAGES}")
    for w in sorted(wheels):
        _unpack_wheel(wheels_dir / w, site)
    _precompile(new_root, qemu_path, say)
    wrapper = new_root / WRAPPER
    wrapper.write_text(_WRAPPER_TEXT)
    wrapper.chmod(0o755)
    smoke = _smoke_check(new_root, wrapper, qemu_path, tmp, say)
    qv = run_subprocess([qemu_path, "--version"], cwd=None, env=None, timeout_s=30)
    marker = {"spec": _wanted_spec(), "debs": sorted(debs), "wheels": sorted(wheels),
              "sha256": {**debs, **wheels}, "lock": str(sysroot_lock.LOCK_FILE.name), "check": smoke,
              "qemu": (qv.stdout.splitlines() or ["?"])[0],
              "host": platform.machine(), "built_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "build_s": round(time.perf_counter() - t0, 1)}
    (new_root / MARKER).write_text(json.dumps(marker, indent=2))
    return new_root


def _smoke_check(new_root: Path, wrapper: Path, qemu_path: str, tmp: Path, say: Progress) -> dict:
    say("checking that numpy, onnxruntime and LiteRT import under qemu-aarch64")
    env = dict(os.environ)
    env.update(emulated_env(new_root, qemu_path))
    # Through the wrapper (as a child process of the agent would start it).
    out = run_subprocess([str(wrapper), "-c", _SMOKE], cwd=tmp, env=env, timeout_s=600)
    _check(out, "import check under qemu-aarch64")
    try:
        smoke = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise DeviceError(f"pi4-emu setup: import check printed no JSON ({out.last_error_line()})") from None
    if smoke.get("machine") != "aarch64":
        raise DeviceError(f"pi4-emu setup: interpreter reports {smoke.get('machine')!r}, not aarch64")
    return smoke


def _swap_in(new_root: Path, root: Path, cache: Path) -> None:
    old = None
    if root.exists():
        old = cache / f".old-{os.getpid()}-{time.time_ns()}"
        os.rename(root, old)
    os.rename(new_root, root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class EmulatedArm64Transport(LocalTransport):
    """A local work dir; the profile's python is the sysroot's python3.11 under qemu.

    Commands whose argv starts with the profile's python (``python3``, ``python``) run as
    ``qemu-aarch64-static -L SYSROOT SYSROOT/usr/bin/python3.11 ...`` with PYTHONPATH at
    the sysroot's site-packages and ``EDGEFAIR_EMULATED=1``.
    """

    kind = "emulated"
    emulated = True

    def __init__(self, *, name: str = "pi4-emu", sysroot: Path, qemu: str = QEMU,
                 workdir: str | None = None, env: Mapping[str, str] | None = None):
        self.sysroot = Path(sysroot).absolute()
        if not (self.sysroot / "usr/bin" / PYTHON).exists():
            raise DeviceError(f"pi4-emu: no sysroot at {self.sysroot} "
                              f"(run `bench devices setup pi4-emu`)")
        py = emulated_python_argv(self.sysroot, qemu)
        base_env = emulated_env(self.sysroot, qemu)
        base_env.update(env or {})
        super().__init__(name=name, workdir=workdir, python=py, env=base_env)

    def run(self, request: CommandRequest) -> CommandOutcome:
        argv = list(request.argv)
        if argv and argv[0] in ("python", "python3", PYTHON):
            argv = self.python + argv[1:]
            request = CommandRequest(argv, request.timeout_s, request.env, request.cwd)
        return super().run(request)

    def describe(self) -> str:
        return f"emulated {self.name} (qemu-aarch64, {self.sysroot})"


def emulated_transport(*, name: str, cache_dir: Path | None, qemu: str = QEMU,
                       setup: bool = False, progress: Progress | None = None
                       ) -> EmulatedArm64Transport:
    """The transport for a pi4-emu profile; builds the sysroot first when ``setup``."""
    if setup:
        root = setup_emulated_pi(cache_dir, progress=progress, qemu=qemu)
    else:
        root = sysroot_path(cache_dir)
        if not is_ready(cache_dir):
            raise DeviceError(f"pi4-emu: the arm64 sysroot is not built yet in {root.parent} "
                              f"(run `bench devices setup pi4-emu`)")
    return EmulatedArm64Transport(name=name, sysroot=root, qemu=qemu)


def describe_sysroot(cache_dir: Path | None = None) -> dict:
    root = sysroot_path(cache_dir)
    m = read_marker(root) or {}
    return {"path": str(root), "ready": is_ready(cache_dir), "marker": m}


__all__ = ["setup_emulated_pi", "EmulatedArm64Transport", "default_cache_dir", "is_ready",
           "sysroot_path", "emulated_transport", "describe_sysroot", "DEBIAN_PACKAGES", "WHEELS"]

