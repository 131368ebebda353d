"""The pinned content of the emulated Pi (``pi4-emu.lock.json``) and how it is fetched exactly.

The lock names the Debian suite, the mirrors, a snapshot.debian.org time that holds the
pinned versions, every arm64 ``.deb`` (package, version, file, sha256) and every aarch64
wheel (name, version, file, sha256). Two machines building from the same lock get the
same bytes, or an error that says which file differs:

- ``.deb`` files come from a private apt configuration (its own sources list, lists and
  cache under the sysroot cache; the host's apt sources and dpkg architectures are never
  used), ``apt-get download NAME:arm64=VERSION``; when the mirror no longer carries a
  pinned version, the same from the snapshot the lock names;
- wheels come from ``pip download --require-hashes`` of a requirements file with the
  pinned hashes;
- every file is then checked against its sha256 here as well.

``python -m edgefair.devices.sysroot_lock`` re-pins: the current versions of the same
packages and wheels, their hashes, the snapshot time now (maintainers only; commit the
result).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from edgefair.devices.base import CommandOutcome, DeviceError
from edgefair.devices.local import run_subprocess
from edgefair.files import sha256_file

LOCK_FILE = Path(__file__).resolve().with_name("pi4-emu.lock.json")
LOCK_VERSION = 1
SNAPSHOT_ROOT = "http://snapshot.debian.org/archive"


@dataclass(frozen=True)
class Pin:
    """One pinned file: a .deb or a wheel."""

    name: str
    version: str
    file: str
    sha256: str


@dataclass(frozen=True)
class Mirror:
    uri: str  # e.g. http://deb.debian.org/debian
    suites: tuple[str, ...]  # e.g. ("bookworm", "bookworm-updates")
    archive: str  # snapshot.debian.org archive name: "debian" | "debian-security"


@dataclass(frozen=True)
class SysrootLock:
    suite: str
    architecture: str
    mirrors: tuple[Mirror, ...]
    snapshot: str | None  # YYYYMMDDTHHMMSSZ on snapshot.debian.org, or None
    keyring: str
    debs: tuple[Pin, ...]
    python: str  # e.g. "3.11"
    wheel_platforms: tuple[str, ...]
    wheels: tuple[Pin, ...]
    sha256: str  # of the pins (what a cached sysroot is compared against)


def _fail(path: Path, problem: str) -> DeviceError:
    return DeviceError(f"{path}: {problem}")


def _pins(path: Path, doc: Any, key: str) -> tuple[Pin, ...]:
    items = doc.get(key)
    if not isinstance(items, list) or not items:
        raise _fail(path, f"'{key}' must be a non-empty list")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or any(not isinstance(item.get(k), str) or not item.get(k)
                                             for k in ("name", "version", "file", "sha256")):
            raise _fail(path, f"{key}[{i}] needs name, version, file and sha256 strings")
        if len(item["sha256"]) != 64 or "/" in item["file"]:
            raise _fail(path, f"{key}[{i}] ({item['name']}): bad sha256 or file name")
        out.append(Pin(item["name"], item["version"], item["file"], item["sha256"].lower()))
    return tuple(out)


def _digest(debs: tuple[Pin, ...], wheels: tuple[Pin, ...], extra: dict[str, Any]) -> str:
    blob = json.dumps({"debs": [list(vars(p).values()) for p in debs],
                       "wheels": [list(vars(p).values()) for p in wheels], **extra}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def parse_lock(doc: Any, path: Path = LOCK_FILE) -> SysrootLock:
    """A validated lock; DeviceError naming the file and the key on any problem."""
    if not isinstance(doc, dict) or doc.get("lock_version") != LOCK_VERSION:
        raise _fail(path, f"not a version-{LOCK_VERSION} sysroot lock")
    deb, whl = doc.get("debian"), doc.get("wheels")
    if not isinstance(deb, dict) or not isinstance(whl, dict):
        raise _fail(path, "needs 'debian' and 'wheels' tables")
    try:
        mirrors = tuple(Mirror(m["uri"].rstrip("/"), tuple(m["suites"]), m["archive"]) for m in deb["mirrors"])
        head: dict[str, Any] = {"suite": str(deb["suite"]), "architecture": str(deb["architecture"]),
                                "keyring": str(deb["keyring"]), "python": str(whl["python"]),
                                "wheel_platforms": tuple(whl["platforms"])}
    except (KeyError, TypeError, AttributeError) as e:
        raise _fail(path, f"missing or malformed key {e}") from None
    debs, wheels = _pins(path, deb, "packages"), _pins(path, whl, "files")
    extra = {"suite": head["suite"], "python": head["python"], "platforms": list(head["wheel_platforms"])}
    return SysrootLock(mirrors=mirrors, snapshot=deb.get("snapshot") or None, debs=debs, wheels=wheels,
                       sha256=_digest(debs, wheels, extra), **head)


@lru_cache(maxsize=4)
def read_lock(path: Path = LOCK_FILE) -> SysrootLock:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise _fail(Path(path), f"unreadable ({' '.join(str(e).split())})") from None
    return parse_lock(doc, Path(path))


# ---------------------------------------------------------------------------- apt
def sources_list(lock: SysrootLock, *, snapshot: bool = False) -> str:
    """The private sources.list: the lock's mirrors, or the same suites at its snapshot time."""
    lines = []
    for m in lock.mirrors:
        opts = f"arch={lock.architecture} signed-by={lock.keyring}"
        uri = m.uri
        if snapshot:
            if not lock.snapshot:
                raise DeviceError("pi4-emu setup: the lock names no snapshot to fall back on")
            uri, opts = f"{SNAPSHOT_ROOT}/{m.archive}/{lock.snapshot}", opts + " check-valid-until=no"
        lines += [f"deb [{opts}] {uri} {suite} main" for suite in m.suites]
    return "\n".join(lines) + "\n"


class PrivateApt:
    """apt-get with its own sources, lists and cache in ``root`` (never the host's)."""

    def __init__(self, root: Path, lock: SysrootLock, *, snapshot: bool = False):
        self.root, self.lock, self.snapshot = Path(root), lock, snapshot
        self.etc = self.root / ("etc-snapshot" if snapshot else "etc")

    def options(self) -> list[str]:
        state, cache = self.root / "state", self.root / "cache"
        opts = {"Dir::Etc::SourceList": self.etc / "sources.list", "Dir::Etc::SourceParts": self.etc / "parts.d",
                "Dir::Etc::Preferences": self.etc / "preferences", "Dir::Etc::PreferencesParts": self.etc / "prefs.d",
                "Dir::State": state / ("snapshot" if self.snapshot else "mirror"),
                "Dir::State::status": self.root / "status", "Dir::Cache": cache,
                "APT::Architecture": self.lock.architecture, "APT::Architectures::": self.lock.architecture,
                "Acquire::Languages": "none", "Debug::NoLocking": "1"}
        out = [a for k, v in opts.items() for a in ("-o", f"{k}={v}")]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            out += ["-o", "APT::Sandbox::User=root"]
        return out

    def _layout(self) -> None:
        for d in (self.etc / "parts.d", self.etc / "prefs.d", self.root / "cache" / "archives" / "partial",
                  self.root / "state" / ("snapshot" if self.snapshot else "mirror") / "lists" / "partial"):
            d.mkdir(parents=True, exist_ok=True)
        (self.root / "status").touch()
        (self.etc / "sources.list").write_text(sources_list(self.lock, snapshot=self.snapshot))
        if not Path(self.lock.keyring).is_file():
            raise DeviceError(f"pi4-emu setup: Debian's archive keyring {self.lock.keyring} is missing "
                              "(apt-get install debian-archive-keyring)")

    def run(self, *args: str, cwd: Path | None = None, timeout_s: float = 900) -> CommandOutcome:
        return run_subprocess(["apt-get", *self.options(), *args], cwd=cwd, env=None, timeout_s=timeout_s)

    def update(self) -> None:
        self._layout()
        _check(self.run("update", "-q"), "apt-get update (private sources: " + self.where() + ")")

    def where(self) -> str:
        return ", ".join(f"{m.uri} {' '.join(m.suites)}" for m in self.lock.mirrors) if not self.snapshot else \
            f"{SNAPSHOT_ROOT} at {self.lock.snapshot}"

    def download(self, dest: Path, specs: list[str]) -> CommandOutcome:
        return self.run("download", "-q", *specs, cwd=dest)


def _check(out: CommandOutcome, what: str) -> None:
    if not out.ok:
        reason = "timed out" if out.timed_out else (out.last_error_line() or f"exit {out.exit_code}")
        raise DeviceError(f"pi4-emu setup: {what} failed ({reason})")


def verify(folder: Path, pins: tuple[Pin, ...], lock_path: Path = LOCK_FILE) -> dict[str, str]:
    """Every pinned file present in ``folder`` with its pinned sha256 (file -> sha256)."""
    out: dict[str, str] = {}
    for p in pins:
        f = folder / p.file
        if not f.is_file():
            have = ", ".join(sorted(x.name for x in folder.iterdir() if x.name.startswith(p.name.replace("-", "_"))
                                    or x.name.startswith(p.name))) or "nothing"
            raise DeviceError(f"pi4-emu setup: {p.file} (pinned in {lock_path.name}) was not downloaded "
                              f"(got {have})")
        got = sha256_file(f)
        if got != p.sha256:
            raise DeviceError(f"pi4-emu setup: {p.file} has sha256 {got[:16]}…, {lock_path.name} pins "
                              f"{p.sha256[:16]}… (a different build of {p.name} {p.version}: refused)")
        out[p.file] = got
    return out


def download_debs(dest: Path, apt_root: Path, lock: SysrootLock, say: Any) -> dict[str, str]:
    """The pinned .debs into ``dest`` (mirror first, then the snapshot), each sha256 checked."""
    specs = [f"{p.name}:{lock.architecture}={p.version}" for p in lock.debs]
    apt = PrivateApt(apt_root, lock)
    say(f"downloading {len(specs)} pinned Debian {lock.suite} {lock.architecture} packages ({apt.where()})")
    apt.update()
    out = apt.download(dest, specs)
    if not out.ok and lock.snapshot:
        say(f"a pinned version is gone from the mirror ({out.last_error_line()}): trying the snapshot "
            f"{lock.snapshot}")
        snap = PrivateApt(apt_root, lock, snapshot=True)
        snap.update()
        out = snap.download(dest, specs)
    _check(out, f"apt-get download of the pinned packages (re-pin with python -m {__name__} if the "
                "archive dropped them)")
    return verify(dest, lock.debs)


def requirements(lock: SysrootLock) -> str:
    return "".join(f"{p.name}=={p.version} --hash=sha256:{p.sha256}\n" for p in lock.wheels)


def download_wheels(dest: Path, lock: SysrootLock, say: Any) -> dict[str, str]:
    """The pinned aarch64 wheels into ``dest`` with ``pip download --require-hashes``, each checked."""
    req = dest / "requirements.txt"
    req.write_text(requirements(lock))
    say("downloading pinned aarch64 wheels: " + ", ".join(f"{p.name}=={p.version}" for p in lock.wheels))
    argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--require-hashes",
            "--only-binary=:all:", "--no-deps", "--python-version", lock.python, "--implementation", "cp",
            "--abi", "cp" + lock.python.replace(".", ""), "-d", str(dest), "-r", str(req)]
    for plat in lock.wheel_platforms:
        argv += ["--platform", plat]
    _check(run_subprocess(argv, cwd=None, env=None, timeout_s=900), "pip download --require-hashes (aarch64 wheels)")
    req.unlink()
    return verify(dest, lock.wheels)


# ---------------------------------------------------------------------------- re-pinning
def _deb_version(path: Path) -> str:
    out = run_subprocess(["dpkg-deb", "-f", str(path), "Package", "Version"], cwd=None, env=None, timeout_s=60)
    _check(out, f"dpkg-deb -f {path.name}")
    fields = dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
    return fields["Version"]


def repin(lock_path: Path = LOCK_FILE, work: Path | None = None) -> dict[str, Any]:
    """The lock document with today's versions of the same packages and wheels, hashed."""
    import tempfile

    old = json.loads(lock_path.read_text())
    lock = parse_lock(old, lock_path)
    work = Path(work or tempfile.mkdtemp(prefix="edgefair-repin-"))
    debs_dir, wheels_dir = work / "debs", work / "wheels"
    debs_dir.mkdir(parents=True, exist_ok=True)
    wheels_dir.mkdir(parents=True, exist_ok=True)
    apt = PrivateApt(work / "apt", lock)
    apt.update()
    _check(apt.download(debs_dir, [f"{p.name}:{lock.architecture}" for p in lock.debs]), "apt-get download")
    packages = []
    for p in lock.debs:
        f = next(x for x in debs_dir.glob("*.deb") if x.name.split("_")[0] == p.name)
        packages.append({"name": p.name, "version": _deb_version(f), "file": f.name, "sha256": sha256_file(f)})
    argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:",
            "--no-deps", "--python-version", lock.python, "--implementation", "cp",
            "--abi", "cp" + lock.python.replace(".", ""), "-d", str(wheels_dir),
            *[a for plat in lock.wheel_platforms for a in ("--platform", plat)],
            *[f"{p.name}=={p.version}" for p in lock.wheels]]
    _check(run_subprocess(argv, cwd=None, env=None, timeout_s=900), "pip download")
    files = []
    for p in lock.wheels:
        f = next(x for x in wheels_dir.glob("*.whl") if x.name.split("-")[0].lower() == p.name.replace("-", "_"))
        files.append({"name": p.name, "version": p.version, "file": f.name, "sha256": sha256_file(f)})
    old["debian"]["packages"], old["wheels"]["files"] = packages, files
    old["debian"]["snapshot"] = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    old["generated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return old


if __name__ == "__main__":  # maintainers: re-pin, check the diff, commit
    doc = repin()
    LOCK_FILE.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {LOCK_FILE} ({len(doc['debian']['packages'])} packages, {len(doc['wheels']['files'])} wheels)")
