"""An Android device over ``adb -s SERIAL``: push, shell, pull in /data/local/tmp/edgefair/.

``adb push``/``adb pull`` take paths verbatim (the sync protocol, no shell); ``adb shell``
gets one POSIX sh script whose arguments are all ``shlex.quote``-d. Binaries started from
``adb shell`` are scheduled unlike apps, so the runner records CPU affinity (``taskset``),
governor, frequency and battery temperature around every run (:func:`device_state`).
"""

from __future__ import annotations

import posixpath
import re
import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path

from edgefair.devices.base import (
    TIMEOUT_EXIT,
    CommandOutcome,
    CommandRequest,
    DeviceError,
    Transport,
    local_path,
    shell_script,
)
from edgefair.devices.local import run_subprocess

DEFAULT_WORKDIR = "/data/local/tmp/edgefair"

_LOST = re.compile(r"device '[^']*' not found|error: device .*not found|"
                   r"no devices/emulators found|device offline|"
                   r"device unauthorized|error: closed|error: protocol fault|"
                   r"failed to get feature set|more than one device", re.I)

# One shell script that prints key=value lines describing the device's state.
STATE_SCRIPT = r"""
echo "model=$(getprop ro.product.model 2>/dev/null)"
echo "manufacturer=$(getprop ro.product.manufacturer 2>/dev/null)"
echo "android=$(getprop ro.build.version.release 2>/dev/null)"
echo "sdk=$(getprop ro.build.version.sdk 2>/dev/null)"
echo "abi=$(getprop ro.product.cpu.abi 2>/dev/null)"
echo "soc=$(getprop ro.soc.model 2>/dev/null)"
for d in /sys/devices/system/cpu/cpu[0-9]*; do
  n=${d##*/cpu}
  [ -r "$d/cpufreq/scaling_governor" ] && echo "governor.$n=$(cat "$d/cpufreq/scaling_governor" 2>/dev/null)"
  [ -r "$d/cpufreq/scaling_cur_freq" ] && echo "freq_khz.$n=$(cat "$d/cpufreq/scaling_cur_freq" 2>/dev/null)"
  [ -r "$d/cpufreq/cpuinfo_max_freq" ] && echo "max_freq_khz.$n=$(cat "$d/cpufreq/cpuinfo_max_freq" 2>/dev/null)"
  [ -r "$d/cpufreq/scaling_max_freq" ] && echo "scaling_max_khz.$n=$(cat "$d/cpufreq/scaling_max_freq" 2>/dev/null)"
done
echo "battery_temperature=$(dumpsys battery 2>/dev/null | grep -i 'temperature' | head -n 1 | tr -dc '0-9-')"
echo "thermal_status=$(dumpsys thermalservice 2>/dev/null | grep -i 'thermal status' | head -n 1 | tr -dc '0-9')"
echo "nproc=$(nproc 2>/dev/null)"
"""


def parse_state(text: str) -> dict:
    """key=value lines from :data:`STATE_SCRIPT` into a dict (per-CPU keys grouped)."""
    out: dict = {"governor": {}, "freq_khz": {}, "max_freq_khz": {}, "scaling_max_khz": {}}
    for line in text.splitlines():
        if "=" not in line:
            continue
        k, v = line.split("=", 1)
        k, v = k.strip(), v.strip()
        if "." in k:
            group, cpu = k.split(".", 1)
            if group in out:
                out[group][f"cpu{cpu}"] = int(v) if v.isdigit() else v
            continue
        if k == "battery_temperature":
            # dumpsys reports tenths of a degree Celsius.
            out["battery_temperature_c"] = (int(v) / 10.0) if re.fullmatch(r"-?\d+", v) else None
        elif k in ("nproc", "thermal_status"):
            out[k] = int(v) if v.isdigit() else None
        else:
            out[k] = v or None
    return out


class AdbTransport(Transport):
    """``adb -s SERIAL push/shell/pull``; the work dir defaults to /data/local/tmp/edgefair."""

    kind = "adb"

    def __init__(self, *, name: str, serial: str | None, workdir: str = DEFAULT_WORKDIR,
                 python: Sequence[str] = ("python3",), adb_binary: str = "adb",
                 taskset: str | None = None):
        super().__init__(name=name, workdir=workdir, python=python)
        if serial is not None and (not serial or serial.startswith("-")):
            raise DeviceError(f"adb: invalid serial {serial!r}")
        self.serial = serial
        self.adb_binary = adb_binary
        self.taskset = taskset

    def describe(self) -> str:
        return f"adb {self.serial or '(default device)'}"

    def adb_argv(self, *args: str) -> list[str]:
        argv = [self.adb_binary]
        if self.serial:
            argv += ["-s", self.serial]
        return argv + list(args)

    def _adb(self, *args: str, timeout_s: float | None, during: str) -> CommandOutcome:
        if shutil.which(self.adb_binary) is None:
            raise DeviceError(f"{self.describe()}: adb binary {self.adb_binary!r} not found "
                              f"(install Android platform-tools)")
        out = run_subprocess(self.adb_argv(*args), cwd=None, env=None, timeout_s=timeout_s)
        if out.exit_code != 0 and _LOST.search(out.stderr + out.stdout):
            raise DeviceError(f"{self.describe()}: device unreachable during {during} "
                              f"({out.last_error_line()})")
        if out.exit_code == 255 and args and args[0] == "shell":
            # adb's own failure status (USB unplugged, adbd restarted): nothing we run exits 255
            raise DeviceError(f"{self.describe()}: connection lost during {during} (exit 255)")
        return out

    def shell(self, script: str, *, timeout_s: float | None = 60, during: str = "shell"
              ) -> CommandOutcome:
        """Run one (already quoted) sh script on the device."""
        local_timeout = None if timeout_s is None else timeout_s + 15
        return self._adb("shell", script, timeout_s=local_timeout, during=during)

    def _prepare(self) -> None:
        q = shlex.quote(self.workdir)
        out = self.shell(f"mkdir -p {q} && cd {q} && echo ok", during="prepare")
        if not out.ok or "ok" not in out.stdout:
            raise DeviceError(f"{self.describe()}: cannot create work dir {self.workdir} "
                              f"({out.last_error_line() or f'exit {out.exit_code}'})")

    def pin_prefix(self) -> list[str]:
        """``taskset MASK`` for measured commands (the profile's CPU affinity), else []."""
        return ["taskset", self.taskset] if self.taskset else []

    def run(self, request: CommandRequest) -> CommandOutcome:
        self.prepare()
        argv = list(request.argv)
        out = self.shell(shell_script(request, self.workdir), timeout_s=request.timeout_s,
                         during="run")
        limit = request.timeout_s
        timed_out = out.timed_out or (out.exit_code == TIMEOUT_EXIT and limit is not None and limit > 0
                                      and out.duration_s >= limit * 0.9)
        return CommandOutcome(argv, out.exit_code, out.stdout, out.stderr, out.duration_s,
                              timed_out)

    def put(self, local_path_: Path | str, remote_path: str) -> None:
        self.prepare()
        src = local_path(local_path_)
        if not src.exists():
            raise DeviceError(f"local path {src} does not exist")
        dst = self.remote(remote_path)
        out = self.shell(f"rm -rf -- {shlex.quote(dst)} && mkdir -p -- "
                         f"{shlex.quote(posixpath.dirname(dst))}", during="put")
        if not out.ok:
            raise DeviceError(f"{self.describe()}: cannot create {dst} ({out.last_error_line()})")
        # With dst absent, `adb push DIR dst` creates dst holding DIR's entries.
        out = self._adb("push", str(src), dst, timeout_s=600, during="push")
        if not out.ok:
            raise DeviceError(f"{self.describe()}: push to {dst} failed "
                              f"({out.last_error_line() or f'exit {out.exit_code}'})")

    def get(self, remote_path: str, local_path_: Path | str) -> None:
        src = self.remote(remote_path)
        dst = local_path(local_path_)
        dst.parent.mkdir(parents=True, exist_ok=True)
        out = self._adb("pull", src, str(dst), timeout_s=600, during="pull")
        if not out.ok or not dst.exists():
            raise DeviceError(f"{self.describe()}: cannot fetch {src} "
                              f"({out.last_error_line() or f'exit {out.exit_code}'})")

    def device_state(self) -> dict:
        """Governor, frequency per CPU, battery temperature, model: recorded around runs."""
        out = self.shell(STATE_SCRIPT, timeout_s=60, during="state")
        state = parse_state(out.stdout)
        state["taskset"] = self.taskset
        return state
