#!/usr/bin/env python3
"""STAND-IN for Android's ``adb`` — a TEST DOUBLE, not a real adb.

There is no phone on the test machines, so the adb tests put an executable named ``adb``
that runs this file first on PATH. It emulates one attached device whose filesystem lives
under ``$FAKE_ADB_ROOT/device``:

* ``adb devices``; ``adb [-s SERIAL] push SRC DST``; ``adb [-s SERIAL] pull SRC DST``;
* ``adb [-s SERIAL] shell CMD...``: the words are joined with spaces (as real adb does)
  and run by ``sh -c`` with the device paths ``/data/local/tmp`` and
  ``/sys/devices/system/cpu`` rewritten to the stand-in's folders; the exit status comes
  back (adb's shell protocol v2). ``getprop``, ``dumpsys battery`` and ``taskset`` are
  stand-in scripts on the device PATH; taskset records the mask it was given;
* a device that has Python: commands may start the host's Python (agent mode).

Knobs (environment): FAKE_ADB_ROOT (required), FAKE_ADB_SERIAL (default STANDIN01),
FAKE_ADB_CORRUPT=1 (push flips a byte of every .tflite/.onnx file: a bad transfer),
FAKE_ADB_OFFLINE=1 (every command fails like a device that went away),
FAKE_ADB_VANISH_AT_PUSH=N (the N-th push copies half of its file, then the device is gone: that
push and every later command fail as a cable pulled mid-transfer would).
Every call is appended to ``$FAKE_ADB_ROOT/adb.log`` as one JSON line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

DEVICE_PREFIXES = ("/data/local/tmp", "/sys/devices/system/cpu")


def _root() -> Path:
    return Path(os.environ["FAKE_ADB_ROOT"]).resolve()


def _device() -> Path:
    return _root() / "device"


def _map(path: str) -> Path:
    """A device path to the stand-in folder holding it."""
    if not path.startswith("/"):
        path = "/" + path
    return _device() / path.lstrip("/")


def _rewrite(cmd: str) -> str:
    dev = str(_device())
    for prefix in DEVICE_PREFIXES:
        cmd = cmd.replace(prefix, dev + prefix)
    return cmd


def _log(argv: list[str]) -> None:
    with open(_root() / "adb.log", "a") as f:
        f.write(json.dumps(argv) + "\n")


def _corrupt(path: Path) -> None:
    for p in ([path] if path.is_file() else list(path.rglob("*"))):
        if p.is_file() and p.suffix in (".tflite", ".onnx"):
            data = bytearray(p.read_bytes())
            data[len(data) // 2] ^= 0xFF
            p.write_bytes(bytes(data))


def _gone() -> bool:
    return os.environ.get("FAKE_ADB_OFFLINE") == "1" or (_root() / "vanished").exists()


def _vanishes_now() -> bool:
    """Count pushes; at FAKE_ADB_VANISH_AT_PUSH the device disappears (for good)."""
    at = os.environ.get("FAKE_ADB_VANISH_AT_PUSH")
    if not at:
        return False
    counter = _root() / "pushes"
    n = int(counter.read_text() or 0) + 1 if counter.exists() else 1
    counter.write_text(str(n))
    if n >= int(at):
        (_root() / "vanished").write_text("gone")
        return True
    return False


def push(src: str, dst: str) -> int:
    s = Path(src)
    if not s.exists():
        print(f"adb: error: cannot stat '{src}': No such file or directory", file=sys.stderr)
        return 1
    d = _map(dst)
    if d.is_dir():
        d = d / s.name
    if _vanishes_now():
        if s.is_file() and d.parent.is_dir():
            d.write_bytes(s.read_bytes()[: s.stat().st_size // 2])  # a partial file stays behind
        print(f"adb: error: failed to copy '{src}' to '{dst}': no devices/emulators found", file=sys.stderr)
        return 1
    if not d.parent.is_dir():
        print(f"adb: error: failed to copy '{src}' to '{dst}': remote couldn't create file: "
              f"No such file or directory", file=sys.stderr)
        return 1
    if s.is_dir():
        shutil.copytree(s, d, dirs_exist_ok=True)
        n = sum(1 for p in s.rglob("*") if p.is_file())
    else:
        shutil.copy2(s, d)
        n = 1
    if os.environ.get("FAKE_ADB_CORRUPT") == "1":
        _corrupt(d)
    print(f"{src}: {n} file{'s' if n != 1 else ''} pushed, 0 skipped.")
    return 0


def pull(src: str, dst: str) -> int:
    s = _map(src)
    if not s.exists():
        print(f"adb: error: failed to stat remote object '{src}': No such file or directory",
              file=sys.stderr)
        return 1
    d = Path(dst)
    if d.is_dir():
        d = d / s.name
    shutil.copy2(s, d)
    print(f"{src}: 1 file pulled, 0 skipped.")
    return 0


def shell(words: list[str]) -> int:
    if not words:
        print("adb: interactive shell is not supported by the stand-in", file=sys.stderr)
        return 1
    cmd = _rewrite(" ".join(words))
    env = dict(os.environ)
    env["PATH"] = str(_device() / "system" / "bin") + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(["sh", "-c", cmd], cwd=str(_device()), env=env)
    return proc.returncode


_GETPROP = """#!/bin/sh
# stand-in getprop (test double)
case "$1" in
  ro.product.model) echo "Stand-in Phone 8" ;;
  ro.product.manufacturer) echo "edgefair-test" ;;
  ro.build.version.release) echo "14" ;;
  ro.build.version.sdk) echo "34" ;;
  ro.product.cpu.abi) echo "arm64-v8a" ;;
  ro.soc.model) echo "SM8550" ;;
  "") printf '[ro.product.model]: [Stand-in Phone 8]\\n[ro.build.version.release]: [14]\\n' ;;
  *) echo "" ;;
esac
"""

_DUMPSYS = """#!/bin/sh
# stand-in dumpsys (test double): `dumpsys battery` and `dumpsys thermalservice`.
# FAKE_ADB_HEAT=1: every reading is hotter than the last (a phone that throttles).
n=0
if [ "$FAKE_ADB_HEAT" = "1" ]; then
  n=$(cat "$FAKE_ADB_ROOT/heat" 2>/dev/null || echo 0); echo $((n + 1)) > "$FAKE_ADB_ROOT/heat"
fi
if [ "$1" = "thermalservice" ]; then
  s=$((n > 3 ? 3 : n)); echo "IsStatusOverride: false"; echo "Thermal Status: $s"; exit 0
fi
if [ "$1" = "battery" ]; then
cat <<EOT
Current Battery Service state:
  AC powered: false
  USB powered: true
  Wireless powered: false
  Max charging current: 500000
  Max charging voltage: 5000000
  Charge counter: 3411000
  status: 2
  health: 2
  present: true
  level: 87
  scale: 100
  voltage: 4213
  temperature: $((312 + 40 * n))
  technology: Li-ion
EOT
else
  echo "Can't find service: $1" >&2; exit 1
fi
"""

_TASKSET = """#!/bin/sh
# stand-in taskset (test double): records the mask, runs the command unpinned
echo "$1" >> "$FAKE_ADB_ROOT/taskset.log"
shift
exec "$@"
"""


def install(root: Path, *, python: str = sys.executable, cpus: int = 8) -> Path:
    """Create the stand-in device under ``root`` and an ``adb`` launcher in ``root/bin``.

    Returns the bin folder to put first on PATH (with FAKE_ADB_ROOT=root).
    """
    root = Path(root).resolve()
    dev = root / "device"
    (dev / "data/local/tmp").mkdir(parents=True, exist_ok=True)
    sysbin = dev / "system/bin"
    sysbin.mkdir(parents=True, exist_ok=True)
    for name, text in (("getprop", _GETPROP), ("dumpsys", _DUMPSYS), ("taskset", _TASKSET)):
        (sysbin / name).write_text(text)
        (sysbin / name).chmod(0o755)
    for i in range(cpus):
        d = dev / f"sys/devices/system/cpu/cpu{i}/cpufreq"
        d.mkdir(parents=True, exist_ok=True)
        big = i >= cpus // 2
        (d / "scaling_governor").write_text("schedutil\n")
        (d / "scaling_cur_freq").write_text(("2841600" if big else "1785600") + "\n")
        (d / "cpuinfo_max_freq").write_text(("3187200" if big else "2016000") + "\n")
        (d / "scaling_max_freq").write_text(("3187200" if big else "2016000") + "\n")
    bindir = root / "bin"
    bindir.mkdir(exist_ok=True)
    launcher = bindir / "adb"
    launcher.write_text("#!/bin/sh\n# STAND-IN adb (test double): see tests/devices/fake_adb.py\n"
                        f"exec '{python}' '{Path(__file__).resolve()}' \"$@\"\n")
    launcher.chmod(0o755)
    return bindir


def main(argv: list[str]) -> int:
    _log(argv)
    serial_env = os.environ.get("FAKE_ADB_SERIAL", "STANDIN01")
    args = list(argv)
    serial = None
    if len(args) >= 2 and args[0] == "-s":
        serial = args[1]
        args = args[2:]
    if not args:
        print("adb: usage: adb [-s SERIAL] devices|push|pull|shell", file=sys.stderr)
        return 1
    if args[0] == "devices":
        print("List of devices attached")
        if not _gone():
            print(f"{serial_env}\tdevice")
        return 0
    if _gone():
        print("adb: no devices/emulators found", file=sys.stderr)
        return 1
    if serial is not None and serial != serial_env:
        print(f"adb: device '{serial}' not found", file=sys.stderr)
        print(f"error: device '{serial}' not found", file=sys.stderr)
        return 1
    cmd, rest = args[0], args[1:]
    if cmd == "push" and len(rest) == 2:
        return push(*rest)
    if cmd == "pull" and len(rest) == 2:
        return pull(*rest)
    if cmd == "shell":
        return shell(rest)
    print(f"adb: stand-in does not implement {' '.join(args)!r}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
