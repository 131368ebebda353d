#!/usr/bin/env python3
"""edgefair device agent: measure one artefact on the machine it runs on.

ONE self-contained file.  It is copied alone to a device (Raspberry Pi, arm64
emulator, Android with Python, or a fresh local subprocess) and run as

    python3 agent.py probe [--json]
    python3 agent.py run --artifact DIR --batch batch.npz --out result.json
                         [--mode bench|eval|both] [--threads 1]
                         [--profile quick|standard|mlperf] [--expect-sha256 HEX]
                         [--min-runs N] [--min-seconds S] [--max-seconds S]
                         [--warmup-runs N] [--warmup-seconds S]

Imports: the standard library and numpy at top level; exactly one runtime,
lazily, chosen by the manifest's format:
  .tflite -> ai_edge_litert.interpreter, else tflite_runtime.interpreter,
             else tensorflow.lite
  .onnx   -> onnxruntime
  torch   -> host-only reference rows (torch-fp32 / torch-int8): served by the
             runner file the host passes with --plugin (edgefair/models/torch_runner.py);
             this file never imports torch
psutil is an optional RSS fallback, imported only when /proc is unusable.
It never imports edgefair.  Runs on Python >= 3.9 (no 3.10+ syntax).

Exit codes: 0 ok, 1 failure, 2 usage error, 3 sha256 mismatch.
Every failure still writes result.json (ok=false, one-line ``error``)
when --out is known; result.json is written atomically (tmp + os.replace).
``run`` measures in a fresh worker process (this same file, re-executed)
so that a native crash of the runtime (SIGSEGV on a corrupt model, SIGILL on
a wrong-CPU wheel, the OOM killer) still ends in result.json with ok=false;
--no-supervise measures in the calling process instead.

Measurement protocol (see docs/contracts.md and DESIGN.md):
  load -> first inference -> warm-up -> measurement.  Warm-up and measurement
  each stop when BOTH a minimum run count and a minimum duration are reached,
  or at the maximum duration, whichever comes first.  Each sample is
  time.perf_counter_ns() around the bare invoke()/run() call only; inputs are
  set before the loop.  The garbage collector is disabled during timed loops.
  Percentiles use numpy's 'linear' method (type 7, numpy's default); the p50
  confidence interval is the distribution-free order-statistic (binomial)
  interval.  Peak RSS by phase from /proc/self/status VmHWM, reset between
  phases by writing "5" to /proc/self/clear_refs when the kernel honours it.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import time
import traceback
from typing import Any

import numpy as np

AGENT_VERSION = "1.0.0"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_SHA_MISMATCH = 3

PERCENTILE_METHOD = "linear"  # numpy's default (Hyndman & Fan type 7)
P50_CI_LEVEL = 0.95
MIN_BLOCK_SECONDS = 0.2  # sensors are read between measurement blocks at most this often

# Validity bounds (each tripped rule is an invalid_reasons entry with its numbers).
CONTENTION_MIN_CPU_SHARE = 0.9      # process CPU time / wall time over the measurement
CONTENTION_MAX_INVOLUNTARY_CS = 50.0  # involuntary context switches per second
FREQUENCY_MAX_DROP = 0.10            # a core's clock falling by more than this share
TEMPERATURE_MAX_RISE_C = 10.0        # warning: hotter by this much at the end
LOAD_PER_CORE_WARN = 1.0             # warning: 1-minute load / cores before the run
INSTABILITY_MAX_CV = 0.5             # warning: std / mean of the samples
INSTABILITY_MAX_P99_P50 = 2.5        # warning: p99 / p50
MIN_EFFECTIVE_N = 100               # warning: n * (1 - r1) / (1 + r1) below this (p50 interval too narrow)


# Protocol presets.  Each phase ends when BOTH the minimum run count and the
# minimum duration are met, or at max_seconds (per phase) whichever is first.
PROFILES = {
    "quick": {
        "warmup_runs": 10, "warmup_seconds": 0.2,
        "min_runs": 100, "min_seconds": 1.0, "max_seconds": 10.0,
    },
    "standard": {
        "warmup_runs": 50, "warmup_seconds": 1.0,
        "min_runs": 1000, "min_seconds": 10.0, "max_seconds": 120.0,
    },
    # MLPerf Mobile submission rule: >= 1024 queries and >= 60 s.
    "mlperf": {
        "warmup_runs": 100, "warmup_seconds": 5.0,
        "min_runs": 1024, "min_seconds": 60.0, "max_seconds": 600.0,
    },
}

# Raspberry Pi `vcgencmd get_throttled` bits.
_THROTTLE_BITS = {
    0: "under-voltage detected",
    1: "arm frequency capped",
    2: "currently throttled",
    3: "soft temperature limit active",
    16: "under-voltage has occurred",
    17: "arm frequency capping has occurred",
    18: "throttling has occurred",
    19: "soft temperature limit has occurred",
}
_THROTTLE_INVALID_NOW = (1 << 1) | (1 << 2)       # capped / throttled right now
_THROTTLE_INVALID_STICKY = (1 << 17) | (1 << 18)  # newly set during the run
_THROTTLE_WARN = (1 << 0) | (1 << 3)

# ARM "CPU part" ids (implementer 0x41) -> core name, for /proc/cpuinfo on arm.
_ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57", "0xd08": "Cortex-A72", "0xd09": "Cortex-A73",
    "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76", "0xd0c": "Neoverse-N1",
    "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd44": "Cortex-X1",
    "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd48": "Cortex-X2",
    "0xd4d": "Cortex-A715", "0xd4e": "Cortex-X3", "0xd80": "Cortex-A520",
    "0xd81": "Cortex-A720", "0xd82": "Cortex-X4",
}


class AgentError(Exception):
    """A failure with a clear one-line message and an exit code."""

    def __init__(self, message, code=EXIT_FAILURE):
        Exception.__init__(self, message)
        self.code = code


class UsageError(AgentError):
    def __init__(self, message):
        AgentError.__init__(self, message, EXIT_USAGE)


class _Terminated(BaseException):
    pass


def one_line(text, limit=300):
    """Collapse whitespace so an error is one line, and cap its length."""
    s = " ".join(str(text).split())
    if len(s) > limit:
        s = s[: limit - 3] + "..."
    return s


def _error_text(exc):
    """An AgentError's own message; anything else ``Type: first line`` (as edgefair.contracts.jsonio)."""
    if isinstance(exc, AgentError):
        return one_line(str(exc))
    first = next((ln for ln in str(exc).splitlines() if ln.strip()), "")
    return one_line(type(exc).__name__ + (": " + first if first else ""))


# --------------------------------------------------------------------------
# small file helpers
# --------------------------------------------------------------------------

def _read(path, default=None):
    try:
        with open(path, "r") as f:
            return f.read().strip()
    except Exception:
        return default


def _read_int(path):
    s = _read(path)
    if s is None:
        return None
    try:
        return int(s)
    except ValueError:
        return None


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def write_json_atomic(path, obj):
    """Write JSON to ``path`` via a temporary file and os.replace."""
    path = os.path.abspath(path)
    d = os.path.dirname(path)
    if d and not os.path.isdir(d):
        os.makedirs(d, exist_ok=True)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    text = json.dumps(_sanitize(obj), allow_nan=False, default=_json_default)
    with open(tmp, "w") as f:
        f.write(text)
        f.write("\n")
        f.flush()
        try:
            os.fsync(f.fileno())
        except OSError:
            pass
    os.replace(tmp, path)


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return _finite(float(o))
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (bytes, bytearray)):
        return o.decode("utf-8", "replace")
    return str(o)


def _sanitize(o):
    """Copy of ``o`` with non-finite floats replaced by None (JSON has no NaN)."""
    if isinstance(o, float):
        return _finite(o)
    if isinstance(o, dict):
        return dict((str(k), _sanitize(v)) for k, v in o.items())
    if isinstance(o, (list, tuple)):
        return [_sanitize(v) for v in o]
    if isinstance(o, np.ndarray):
        return _sanitize(o.tolist())
    if isinstance(o, np.generic):
        return _sanitize(o.item())
    return o


def _finite(x):
    """JSON has no NaN/inf: map them to None."""
    if x is None:
        return None
    x = float(x)
    if math.isnan(x) or math.isinf(x):
        return None
    return x


# --------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------

def _binom_half_cdf(k, n):
    """P(B <= k) for B ~ Binomial(n, 1/2), computed by hand (no scipy on devices).

    Terms are summed in log space (pmf = C(n,i) / 2^n underflows for n > ~1000);
    terms more than ~8 standard deviations below the mean are < 1e-15 and
    skipped, so the loop is O(sqrt(n)).
    """
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    log_norm = math.lgamma(n + 1) - n * math.log(2.0)
    start = max(0, int(n / 2.0 - 8.0 * math.sqrt(n) / 2.0) - 1)
    start = min(start, k)
    terms = []
    for i in range(start, k + 1):
        terms.append(math.exp(log_norm - math.lgamma(i + 1) - math.lgamma(n - i + 1)))
    return min(1.0, math.fsum(terms))


def median_ci_ranks(n, level=P50_CI_LEVEL):
    """Order-statistic confidence interval for the median (distribution-free).

    With sorted samples x_(1) <= ... <= x_(n) and B ~ Binomial(n, 1/2) the number
    of samples below the true median m:
        P(x_(j) <= m <= x_(n+1-j)) >= 1 - 2 * P(B <= j-1).
    We pick the largest j with 2 * P(B <= j-1) <= 1 - level, so the coverage is
    at least ``level``.  Returns (j, n+1-j, coverage) as 1-based ranks, or the
    widest interval (1, n) with its (lower) achieved coverage when n is too
    small to reach ``level`` (n <= 5 for 95 %).
    """
    if n <= 0:
        return None
    alpha_half = (1.0 - level) / 2.0
    # j-1 is at most about n/2 - z*sqrt(n)/2; search upward from a safe start.
    j = 1
    if 2.0 * _binom_half_cdf(0, n) > 1.0 - level:
        return 1, n, 1.0 - 2.0 * _binom_half_cdf(0, n)
    # start next to the normal approximation so only a few exact steps are needed
    try:
        from statistics import NormalDist
        z = NormalDist().inv_cdf(1.0 - alpha_half)
    except Exception:
        z = 3.0
    j = max(1, int(n / 2.0 - z * math.sqrt(n) / 2.0))
    # move down until valid, then up while the next one is still valid
    while j > 1 and _binom_half_cdf(j - 1, n) > alpha_half:
        j -= 1
    while j + 1 <= (n + 1) // 2 and _binom_half_cdf(j, n) <= alpha_half:
        j += 1
    coverage = 1.0 - 2.0 * _binom_half_cdf(j - 1, n)
    return j, n + 1 - j, coverage


# Two-sided 97.5 % t quantiles for the batch counts used below (no scipy on devices).
_T975 = {9: 2.262, 14: 2.145, 29: 2.045}
BATCH_COUNTS = (30, 15, 10)
MIN_BATCH = 10


def lag1_autocorrelation(a):
    """Lag-1 autocorrelation of a sequence (0 for a constant one)."""
    x = np.asarray(a, dtype=np.float64)
    if x.size < 3:
        return 0.0
    x = x - x.mean()
    d = float((x * x).sum())
    return float((x[1:] * x[:-1]).sum() / d) if d > 0 else 0.0


def batch_median_ci(a, p50):
    """Interval for the median that holds for correlated samples (batch medians).

    Consecutive samples are cut into k batches (30, else 15, else 10: the first k whose
    batch medians show no significant lag-1 autocorrelation, |r1| <= 2/sqrt(k)); the
    interval is p50 +- t(k-1) * sd(batch medians) / sqrt(k). Returns (lo, hi, k) or None
    when there are fewer than 10 batches of 10 samples. ``summarise`` reports the union of
    this and the order-statistic interval; scripts/p50_interval_sim.py measures the
    coverage of that union under AR(1) noise.
    """
    n = len(a)
    for k in BATCH_COUNTS:
        m = n // k
        if m < MIN_BATCH:
            continue
        meds = np.median(np.asarray(a[: m * k], dtype=np.float64).reshape(k, m), axis=1)
        if abs(lag1_autocorrelation(meds)) <= 2.0 / math.sqrt(k) or k == BATCH_COUNTS[-1]:
            half = _T975[k - 1] * float(meds.std(ddof=1)) / math.sqrt(k)
            return p50 - half, p50 + half, k
    return None


def summarise(samples_ns):
    """Statistics of raw latency samples (nanoseconds in, seconds out, in measurement order)."""
    a = np.asarray(samples_ns, dtype=np.float64) / 1e9
    n = int(a.size)
    out = {"n": n, "percentile_method": PERCENTILE_METHOD}
    if n == 0:
        out.update({"p50_s": None, "p90_s": None, "p99_s": None, "mean_s": None,
                    "std_s": None, "min_s": None, "max_s": None,
                    "p50_ci_s": None, "p50_ci_level": None, "p50_ci_method": None})
        return out
    # np.percentile's default method is 'linear' in every numpy version; we do
    # not pass method=/interpolation= because the keyword changed in numpy 1.22.
    p50, p90, p99 = (float(v) for v in np.percentile(a, [50.0, 90.0, 99.0]))
    s = np.sort(a)
    lo_r, hi_r, cov = median_ci_ranks(n)
    iid = [float(s[lo_r - 1]), float(s[hi_r - 1])]
    r1 = lag1_autocorrelation(a)
    out.update({
        "p50_s": p50, "p90_s": p90, "p99_s": p99,
        "mean_s": float(a.mean()),
        "std_s": float(a.std(ddof=1)) if n > 1 else 0.0,  # sample std (ddof=1)
        "min_s": float(s[0]), "max_s": float(s[-1]),
        "p50_ci_iid_s": iid, "lag1_autocorrelation": r1,
        "effective_n": float(n * (1.0 - r1) / (1.0 + r1)) if -1.0 < r1 < 1.0 else float(n),
    })
    batch = batch_median_ci(a, p50)
    if batch is None:
        out.update({"p50_ci_s": iid, "p50_ci_level": float(cov),
                    "p50_ci_method": "order statistics (assumes independent samples; too few for batches)"})
    else:  # the union: exact for independent samples, batch medians where consecutive ones correlate
        out.update({"p50_ci_s": [min(batch[0], iid[0]), max(batch[1], iid[1])], "p50_ci_level": P50_CI_LEVEL,
                    "p50_ci_method": "union of order statistics and batch medians (%d consecutive batches, "
                                     "t interval)" % batch[2]})
    return out


# --------------------------------------------------------------------------
# peak RSS by phase
# --------------------------------------------------------------------------

def _vmhwm_kb():
    s = _read("/proc/self/status")
    if not s:
        return None
    m = re.search(r"^VmHWM:\s+(\d+)\s*kB", s, re.M)
    return int(m.group(1)) if m else None


def _clear_refs():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except Exception:
        return False


class RSSMeter(object):
    """Peak resident set size per phase, in kB, by the best available method.

    Methods, best first:
      proc_vmhwm_reset  /proc/self/status VmHWM, reset per phase with
                        /proc/self/clear_refs "5" (verified to actually reset)
      proc_vmhwm        VmHWM without reset: peak since process start
      psutil_rss        psutil's current RSS at the end of each phase (not a peak)
      getrusage_maxrss  resource.getrusage ru_maxrss: peak since process start
      none
    """

    def __init__(self):
        self.method = "none"
        self.note = None
        self._psutil_proc: Any = None
        if _vmhwm_kb() is not None:
            if self._reset_works():
                self.method = "proc_vmhwm_reset"
            else:
                self.method = "proc_vmhwm"
                self.note = "clear_refs reset unavailable: peaks are since process start"
            return
        try:
            import psutil  # optional fallback; absent on most devices
            self._psutil_proc = psutil.Process()
            self._psutil_proc.memory_info()
            self.method = "psutil_rss"
            self.note = "psutil current RSS at phase end, not a peak"
            return
        except Exception:
            self._psutil_proc = None
        try:
            import resource
            resource.getrusage(resource.RUSAGE_SELF)
            self.method = "getrusage_maxrss"
            self.note = "ru_maxrss: peaks are since process start"
        except Exception:
            self.method = "none"

    @staticmethod
    def _reset_works():
        """Write clear_refs and check that VmHWM really drops (some kernels ignore it)."""
        if not _clear_refs():
            return False
        before = _vmhwm_kb()
        blob = np.ones(4 * 1024 * 1024, dtype=np.float64)  # 32 MiB, touched
        blob[::512] += 1.0
        peak = _vmhwm_kb()
        del blob
        gc.collect()
        if not _clear_refs():
            return False
        after = _vmhwm_kb()
        if before is None or peak is None or after is None:
            return False
        return peak - before > 16 * 1024 and after < peak - 16 * 1024

    def reset(self):
        if self.method == "proc_vmhwm_reset":
            _clear_refs()

    def read_kb(self):
        if self.method in ("proc_vmhwm_reset", "proc_vmhwm"):
            return _vmhwm_kb()
        if self.method == "psutil_rss":
            try:
                return int(self._psutil_proc.memory_info().rss // 1024)
            except Exception:
                return None
        if self.method == "getrusage_maxrss":
            import resource
            v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            if sys.platform == "darwin":  # bytes on macOS, kB on Linux
                v = v // 1024
            return int(v)
        return None


# --------------------------------------------------------------------------
# environment fingerprint
# --------------------------------------------------------------------------

def _cpuinfo():
    return _read("/proc/cpuinfo", "") or ""


def _cpuinfo_field(text, key):
    m = re.search(r"^%s\s*:\s*(.+)$" % re.escape(key), text, re.M)  # case matters: "model" != "Model"
    return m.group(1).strip() if m else None


def _cpu_model(text):
    for key in ("model name", "Processor", "cpu model", "Hardware"):
        v = _cpuinfo_field(text, key)
        if v:
            return v
    parts = sorted(set(re.findall(r"^CPU part\s*:\s*(0x[0-9a-fA-F]+)", text, re.M)))
    if parts:
        return " + ".join(_ARM_PARTS.get(p.lower(), "ARM part " + p) for p in parts)
    return platform.processor() or None


def _board_model(text):
    m = _read("/proc/device-tree/model")
    if m:
        return m.replace("\x00", "").strip()
    return _cpuinfo_field(text, "Model")


def _emulation(cpuinfo_text):
    """Are we running under qemu?  Returns (emulated: bool, evidence: list)."""
    evidence = []
    env = os.environ.get("EDGEFAIR_EMULATED", "")
    if env and env.lower() not in ("0", "false", "no"):
        evidence.append("EDGEFAIR_EMULATED=%s" % env)
    if re.search(r"qemu", cpuinfo_text, re.I):
        evidence.append("/proc/cpuinfo mentions QEMU")
    mach = platform.machine().lower()
    x86_cpuinfo = bool(re.search(r"^(vendor_id\s*:\s*(GenuineIntel|AuthenticAMD)|flags\s*:.*\bsse2\b)",
                                 cpuinfo_text, re.M))
    arm_cpuinfo = bool(re.search(r"^(CPU implementer|Features)\s*:", cpuinfo_text, re.M))
    if mach in ("aarch64", "arm64") or mach.startswith("arm"):
        if x86_cpuinfo:
            # qemu-user passes the host's /proc/cpuinfo through
            evidence.append("machine %s but /proc/cpuinfo describes an x86 CPU" % mach)
    elif mach in ("x86_64", "amd64", "i686", "i386"):
        if arm_cpuinfo and not x86_cpuinfo:
            evidence.append("machine %s but /proc/cpuinfo describes an ARM CPU" % mach)
    return bool(evidence), evidence


def _os_release():
    s = _read("/etc/os-release")
    if not s:
        return None
    m = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', s, re.M)
    return m.group(1) if m else None


def _cpufreq():
    base = "/sys/devices/system/cpu"
    out = {}
    c0 = os.path.join(base, "cpu0", "cpufreq")
    out["governor"] = _read(os.path.join(c0, "scaling_governor"))
    out["cur_freq_khz"] = _read_int(os.path.join(c0, "scaling_cur_freq")) or \
        _read_int(os.path.join(c0, "cpuinfo_cur_freq"))
    out["min_freq_khz"] = _read_int(os.path.join(c0, "scaling_min_freq"))
    out["max_freq_khz"] = _read_int(os.path.join(c0, "scaling_max_freq"))
    out["cpuinfo_max_freq_khz"] = _read_int(os.path.join(c0, "cpuinfo_max_freq"))
    per = []
    try:
        cpus = sorted((d for d in os.listdir(base) if re.match(r"cpu\d+$", d)),
                      key=lambda d: int(d[3:]))
    except Exception:
        cpus = []
    for d in cpus:
        cf = os.path.join(base, d, "cpufreq")
        if not os.path.isdir(cf):
            continue
        per.append({
            "cpu": int(d[3:]),
            "governor": _read(os.path.join(cf, "scaling_governor")),
            "cur_freq_khz": _read_int(os.path.join(cf, "scaling_cur_freq")),
            "max_freq_khz": _read_int(os.path.join(cf, "cpuinfo_max_freq")),
        })
    out["per_cpu"] = per
    return out


def _temperatures():
    """{zone: {"type": ..., "temp_c": ...}} from /sys/class/thermal."""
    base = "/sys/class/thermal"
    out: dict = {}
    try:
        zones = sorted(d for d in os.listdir(base) if d.startswith("thermal_zone"))
    except Exception:
        return out
    for z in zones:
        t = _read_int(os.path.join(base, z, "temp"))
        if t is None:
            continue
        out[z] = {"type": _read(os.path.join(base, z, "type")),
                  "temp_c": t / 1000.0 if abs(t) > 200 else float(t)}
    return out


def _throttled():
    """Raw `vcgencmd get_throttled` value as int, or None when unavailable."""
    try:
        r = subprocess.run(["vcgencmd", "get_throttled"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=5, universal_newlines=True)
    except Exception:
        return None
    m = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", r.stdout or "")
    if not m:
        return None
    return int(m.group(1), 0)


def _throttled_problem():
    """Why `vcgencmd get_throttled` gave no value (for the warning naming the sensor)."""
    try:
        r = subprocess.run(["vcgencmd", "get_throttled"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=5, universal_newlines=True)
    except FileNotFoundError:
        return "vcgencmd not found"
    except Exception as e:
        return "vcgencmd failed: %s" % _error_text(e)
    if r.returncode != 0:
        return "vcgencmd get_throttled exited %d (%s)" % (r.returncode, one_line(r.stderr or r.stdout or "", 120))
    return "vcgencmd printed no throttled= value"


def _cur_freqs_khz():
    """Current clock of every core with cpufreq, kHz, in core order (empty when unreadable)."""
    base = "/sys/devices/system/cpu"
    try:
        cpus = sorted((d for d in os.listdir(base) if re.match(r"cpu\d+$", d)), key=lambda d: int(d[3:]))
    except Exception:
        return []
    out = []
    for d in cpus:
        v = _read_int(os.path.join(base, d, "cpufreq", "scaling_cur_freq"))
        if v is not None:
            out.append(v)
    return out


def _max_temp_c():
    temps = [z["temp_c"] for z in _temperatures().values() if z.get("temp_c") is not None]
    return max(temps) if temps else None


def _battery_c():
    """Battery temperature (Android and laptops report tenths of a degree), or None."""
    v = _read_int("/sys/class/power_supply/battery/temp")
    return None if v is None else v / 10.0


def _load1():
    try:
        return float(os.getloadavg()[0])
    except Exception:
        return None


def _usage():
    """(CPU seconds, involuntary and voluntary context switches) of this process so far."""
    try:
        import resource
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime, r.ru_nivcsw, r.ru_nvcsw
    except Exception:
        t = os.times()
        return t[0] + t[1], None, None


class Monitor(object):
    """The machine's state at the start, between measurement blocks and at the end.

    Each reading: `vcgencmd get_throttled` (where the device is a Raspberry Pi or has
    vcgencmd), every core's clock, the hottest thermal zone, the battery, the load.
    A sensor that cannot be read is remembered with the reason, for a warning.
    """

    def __init__(self, pi):
        self.pi = pi
        self.readings = []
        self.unreadable = {}

    def _note(self, sensor, ok, why):
        if not ok and sensor not in self.unreadable:
            self.unreadable[sensor] = why

    def read(self, label):
        r = {"label": label, "t": time.time(), "throttled": _throttled() if self.pi else None,
             "freq_khz": _cur_freqs_khz(), "temp_c": _max_temp_c(), "battery_c": _battery_c(), "load1": _load1()}
        if self.pi:
            self._note("vcgencmd get_throttled", r["throttled"] is not None, _throttled_problem)
        self._note("cpu frequency", bool(r["freq_khz"]),
                   "/sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq unreadable")
        self._note("temperature", r["temp_c"] is not None, "no readable zone in /sys/class/thermal")
        self._note("load average", r["load1"] is not None, "os.getloadavg() unavailable")
        self.readings.append(r)
        return r

    def problems(self):
        return dict((k, v() if callable(v) else v) for k, v in self.unreadable.items())


def _decode_throttle(v):
    if v is None:
        return None
    return [name for bit, name in sorted(_THROTTLE_BITS.items()) if v & (1 << bit)]


def _affinity():
    try:
        return sorted(os.sched_getaffinity(0))
    except Exception:
        return None


_X86_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
              "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
_ARM_FEATURES = ("fp", "asimd", "asimdhp", "asimddp", "asimdfhm", "i8mm", "bf16", "sve", "sve2", "sme")


def _core_types(text):
    """Core kinds: ARM parts per core (big.LITTLE), x86 hybrid P/E core lists."""
    parts = re.findall(r"^CPU part\s*:\s*(0x[0-9a-fA-F]+)", text, re.M)
    if parts:
        counts: dict = {}
        for p in parts:
            name = _ARM_PARTS.get(p.lower(), "ARM part " + p)
            counts[name] = counts.get(name, 0) + 1
        return counts
    hybrid = dict((kind, _read("/sys/devices/%s/cpus" % kind)) for kind in ("cpu_core", "cpu_atom"))
    return dict((k, v) for k, v in hybrid.items() if v) or None


def cpu_identity(text):
    """What picks the kernels: vendor, family/model/stepping (x86) or implementer/part (ARM), ISA flags."""
    flags = set((_cpuinfo_field(text, "flags") or _cpuinfo_field(text, "Features") or "").split())
    return {
        "vendor": _cpuinfo_field(text, "vendor_id") or _cpuinfo_field(text, "CPU implementer"),
        "family": _cpuinfo_field(text, "cpu family") or _cpuinfo_field(text, "CPU architecture"),
        "model": _cpuinfo_field(text, "model") or _cpuinfo_field(text, "CPU part"),
        "stepping": _cpuinfo_field(text, "stepping") or _cpuinfo_field(text, "CPU revision"),
        "variant": _cpuinfo_field(text, "CPU variant"),
        "isa": sorted(f for f in flags if f in _X86_FLAGS or f in _ARM_FEATURES),
        "core_types": _core_types(text),
    }


def fingerprint(runtime=None, threads=None):
    ci = _cpuinfo()
    emulated, evidence = _emulation(ci)
    virt = bool(re.search(r"^flags\s*:.*\bhypervisor\b", ci, re.M))
    try:
        load = list(os.getloadavg())
    except Exception:
        load = None
    env = {
        "cpu_model": _cpu_model(ci),
        "cpu": cpu_identity(ci),
        "board_model": _board_model(ci),
        "cores": os.cpu_count(),
        "affinity": _affinity(),
        "cpufreq": _cpufreq(),
        "temperature_before": _temperatures(),
        "throttled_before": _throttled(),
        "loadavg_before": load,
        "os": _os_release() or platform.platform(),
        "platform": platform.platform(),
        "kernel": platform.release(),
        "system": platform.system(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "numpy": np.__version__,
        "emulated": emulated,
        "emulation_evidence": evidence,
        "virtualised": virt,
        "hostname": platform.node(),
    }
    if runtime is not None:
        env["runtime"] = runtime
    if threads is not None:
        env["threads"] = threads
    return env


def finish_fingerprint(env):
    """Fill the 'after' readings and decode the throttle values; return the emulation warning."""
    env["temperature_after"] = _temperatures()
    env["cpufreq_after"] = {k: v for k, v in _cpufreq().items() if k != "per_cpu"}
    env["throttled_after"] = _throttled()
    try:
        env["loadavg_after"] = list(os.getloadavg())
    except Exception:
        env["loadavg_after"] = None
    for key in ("throttled_before", "throttled_after"):
        v = env.get(key)
        env[key + "_hex"] = None if v is None else hex(v)
        env[key + "_flags"] = _decode_throttle(v)
    if env.get("emulated"):
        return ["running under emulation (qemu): latencies are not device latencies"]
    return []


def is_raspberry_pi(env):
    return "raspberry pi" in str(env.get("board_model") or "").lower()


# --------------------------------------------------------------------------
# validity: every rule that trips is an invalid_reasons entry (or a warning) with its numbers
# --------------------------------------------------------------------------

def rule_stop(timing, proto):
    """The stop rule: BOTH the minimum count and the minimum duration must be reached."""
    if timing.get("stopped_by") != "max_seconds":
        return []
    return ["stop rule not met: n=%d of min_runs=%d and %.2f s of min_seconds=%g when max_seconds=%g was reached"
            % (timing.get("n") or 0, proto["min_runs"], timing.get("duration_s") or 0.0, proto["min_seconds"],
               proto["max_seconds"])]


def rule_throttle(values):
    """Raspberry Pi `get_throttled` readings in order (label, value): (invalid, warnings)."""
    seen = [(label, v) for label, v in values if v is not None]
    invalid: list = []
    warnings: list = []
    if not seen:
        return invalid, warnings
    for label, v in seen:
        if v & _THROTTLE_INVALID_NOW:
            invalid.append("throttled during the run: get_throttled=%s at %s (%s)"
                           % (hex(v), label, "; ".join(_decode_throttle(v & 0xF))))
            break
    for (la, a), (lb, b) in zip(seen, seen[1:]):
        new = b & ~a & _THROTTLE_INVALID_STICKY
        if new:
            invalid.append("throttling occurred during the run: get_throttled %s -> %s between %s and %s"
                           % (hex(a), hex(b), la, lb))
            break
    if any(v & _THROTTLE_WARN for _, v in seen):
        warnings.append("under-voltage or soft temperature limit flagged (get_throttled %s)"
                        % ", ".join(sorted(set(hex(v) for _, v in seen))))
    if seen[0][1] & _THROTTLE_INVALID_STICKY:
        warnings.append("throttling had occurred before the run (get_throttled %s): only changes during "
                        "the run are checked" % hex(seen[0][1]))
    return invalid, warnings


def rule_frequency(readings, governor, pi):
    """A core whose clock fell during the measurement: invalid where the clock should be fixed."""
    freqs = [r["freq_khz"] for r in readings if r.get("freq_khz")]
    if len(freqs) < 2:
        return [], []
    worst = None
    for cpu in range(min(len(f) for f in freqs)):
        first, low = freqs[0][cpu], min(f[cpu] for f in freqs)
        if first and (first - low) / float(first) > FREQUENCY_MAX_DROP:
            if worst is None or (first - low) / float(first) > worst[3]:
                worst = (cpu, first, low, (first - low) / float(first))
    if worst is None:
        return [], []
    text = "CPU clock fell during the measurement: cpu%d %.0f -> %.0f MHz (-%.0f%%, bound %.0f%%)" % (
        worst[0], worst[1] / 1e3, worst[2] / 1e3, 100 * worst[3], 100 * FREQUENCY_MAX_DROP)
    fixed = pi or (governor or "") in ("performance", "userspace")
    return ([text], []) if fixed else ([], [text + "; governor %s scales the clock by design" % governor])


def rule_temperature(readings):
    warnings = []
    for key, what in (("temp_c", "hottest thermal zone"), ("battery_c", "battery temperature")):
        vals = [r[key] for r in readings if r.get(key) is not None]
        if len(vals) >= 2 and max(vals) - vals[0] > TEMPERATURE_MAX_RISE_C:
            warnings.append("%s rose %.1f -> %.1f C during the run (bound +%g C)"
                            % (what, vals[0], max(vals), TEMPERATURE_MAX_RISE_C))
    return warnings


def rule_contention(usage, loads, cores):
    """Other work sharing the CPU: the process's CPU share and involuntary context switches."""
    invalid, warnings = [], []
    wall = usage.get("wall_s") or 0.0
    load_text = "; load %s on %s cores" % (
        " -> ".join("%.1f" % v for v in loads if v is not None) or "unknown", cores)
    share = usage.get("cpu_share")
    if wall > 0 and share is not None and share < CONTENTION_MIN_CPU_SHARE:
        invalid.append("contention: the process ran %.0f%% of the measurement's wall time (bound %.0f%%)%s"
                       % (100 * share, 100 * CONTENTION_MIN_CPU_SHARE, load_text))
    rate = usage.get("involuntary_cs_per_s")
    if rate is not None and rate > CONTENTION_MAX_INVOLUNTARY_CS:
        invalid.append("contention: %.0f involuntary context switches per second (bound %.0f)%s"
                       % (rate, CONTENTION_MAX_INVOLUNTARY_CS, load_text))
    if loads and loads[0] is not None and cores and loads[0] / float(cores) > LOAD_PER_CORE_WARN:
        warnings.append("busy machine before the run: load %.1f on %d cores" % (loads[0], cores))
    return invalid, warnings


def rule_instability(timing):
    warnings = []
    mean, std, p50, p99 = (timing.get(k) for k in ("mean_s", "std_s", "p50_s", "p99_s"))
    if mean and std is not None and std / mean > INSTABILITY_MAX_CV:
        warnings.append("unstable timing: coefficient of variation %.2f (bound %.2f)" % (std / mean,
                                                                                      INSTABILITY_MAX_CV))
    if p50 and p99 and p99 / p50 > INSTABILITY_MAX_P99_P50:
        warnings.append("unstable timing: p99/p50 %.2f (bound %.2f)" % (p99 / p50, INSTABILITY_MAX_P99_P50))
    eff = timing.get("effective_n")
    if eff is not None and (timing.get("n") or 0) >= 100 and eff < MIN_EFFECTIVE_N:
        warnings.append("samples strongly correlated (lag-1 autocorrelation %.2f, effective n %.0f): the p50 "
                        "interval may be too narrow; measure longer" % (timing.get("lag1_autocorrelation"), eff))
    return warnings


def measurement_validity(result, proto, monitor, usage):
    """(invalid_reasons, warnings) of a finished measurement, from every rule above."""
    env = result.get("env") or {}
    timing = result["timing"]
    readings = monitor.readings
    invalid, warnings = list(rule_stop(timing, proto)), []
    th = [("process start", env.get("throttled_before"))] + [(r["label"], r["throttled"]) for r in readings]
    bad, warn = rule_throttle(th)
    invalid += bad
    warnings += warn
    bad, warn = rule_frequency(readings, (env.get("cpufreq") or {}).get("governor"), monitor.pi)
    invalid += bad
    warnings += warn
    warnings += rule_temperature(readings)
    loads = [readings[0]["load1"], readings[-1]["load1"]] if readings else []
    bad, warn = rule_contention(usage, loads, env.get("cores"))
    invalid += bad
    warnings += warn
    warnings += rule_instability(timing)
    warnings += ["sensor not readable: %s (%s)" % (k, v) for k, v in sorted(monitor.problems().items())]
    return invalid, warnings


# --------------------------------------------------------------------------
# runtimes (each imported lazily; exactly one per run)
# --------------------------------------------------------------------------

def _import_tflite():
    """Return (Interpreter class, runtime name, version)."""
    try:
        from ai_edge_litert import interpreter as litert_interpreter
        try:
            import ai_edge_litert
            ver = getattr(ai_edge_litert, "__version__", None)
        except Exception:
            ver = None
        return litert_interpreter.Interpreter, "ai_edge_litert", ver or _dist_version("ai-edge-litert")
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as tflite_interpreter
        try:
            import tflite_runtime
            ver = getattr(tflite_runtime, "__version__", None)
        except Exception:
            ver = None
        return tflite_interpreter.Interpreter, "tflite_runtime", ver or _dist_version("tflite-runtime")
    except ImportError:
        pass
    try:
        import tensorflow as tf
    except ImportError:
        raise AgentError("no TFLite runtime: install ai-edge-litert (or tflite-runtime, or tensorflow)")
    return tf.lite.Interpreter, "tensorflow.lite", tf.__version__


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise AgentError("no ONNX runtime: install onnxruntime")
    return onnxruntime, "onnxruntime", onnxruntime.__version__


def _dist_version(name):
    try:
        from importlib import metadata
        return metadata.version(name)
    except Exception:
        return None


_NP_DTYPES: Any = {
    "float32": np.float32, "float16": np.float16, "float64": np.float64,
    "int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32,
    "int64": np.int64,
}
_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16",
    "tensor(int32)": "int32", "tensor(int64)": "int64",
}


class Runner(object):
    """Common interface: load(), set_input(x), invoke(), output(), run_one(x)."""

    name: Any = None
    version: Any = None
    input_dtype: Any = "float32"
    input_shape: Any = None     # list, -1 for dynamic dims
    input_quant: Any = None     # (scale, zero_point) or None
    output_quant: Any = None
    settings: Any = None

    def load(self):
        raise NotImplementedError

    def set_input(self, x):
        raise NotImplementedError

    def invoke(self):
        raise NotImplementedError

    def output(self):
        raise NotImplementedError

    def run_one(self, x):
        self.set_input(x)
        self.invoke()
        return self.output()

    def evidence(self):
        """What the runtime says it did with the model (kernels, providers, threads)."""
        return {}

    def profile_ops(self, x, n):
        """Per-operator times over ``n`` invokes, where the runtime can measure them."""
        return {"method": "none", "ops": [], "note": "this runtime offers no per-operator profile"}


def _delegated(ops):
    """How many of a TFLite graph's nodes the delegate nodes took (by data flow from their inputs)."""
    original = [o for o in ops if o["op_name"] != "DELEGATE"]
    covered = set()
    for d in (o for o in ops if o["op_name"] == "DELEGATE"):
        have = set(int(i) for i in d["inputs"])
        for i, o in enumerate(original):
            if i not in covered and all(int(t) in have for t in o["inputs"] if int(t) >= 0):
                covered.add(i)
                have.update(int(t) for t in o["outputs"])
    return original, covered


def tflite_delegation(ops):
    """XNNPACK (or any delegate) applied?  Nodes it took, and the ops left to the builtin kernels."""
    original, covered = _delegated(ops)
    return {"delegate_nodes": sum(1 for o in ops if o["op_name"] == "DELEGATE"),
            "xnnpack_applied": any(o["op_name"] == "DELEGATE" for o in ops),
            "nodes": len(original), "delegated_nodes": len(covered),
            "not_delegated": [o["op_name"] for i, o in enumerate(original) if i not in covered]}


class TFLiteRunner(Runner):
    def __init__(self, path, threads, manifest):
        Interpreter, self.name, self.version = _import_tflite()
        self._Interpreter = Interpreter
        self.path = path
        self.threads = threads
        self.manifest = manifest

    def load(self):
        kw = {"model_path": self.path}
        if self.threads and self.threads > 0:
            kw["num_threads"] = int(self.threads)
        it = self._Interpreter(**kw)
        it.allocate_tensors()
        self.it = it
        ins = it.get_input_details()
        outs = it.get_output_details()
        if len(ins) != 1:
            raise AgentError("model has %d inputs; the agent supports exactly 1" % len(ins))
        self.in_d = ins[0]
        self.out_d = _pick_output(outs, (self.manifest.get("output") or {}).get("name"),
                                  lambda d: d["name"])
        self.input_dtype = np.dtype(self.in_d["dtype"]).name
        self.input_shape = [int(v) for v in self.in_d["shape"]]
        self.input_quant = _tfl_quant(self.in_d)
        self.output_quant = _tfl_quant(self.out_d)
        self.output_dtype = np.dtype(self.out_d["dtype"]).name
        self._in_idx = self.in_d["index"]
        self._out_idx = self.out_d["index"]
        self._invoke = it.invoke
        self.settings = {"num_threads": self.threads,
                         "op_resolver": "default (XNNPACK delegate where the runtime applies it)"}

    def set_input(self, x):
        self.it.set_tensor(self._in_idx, x)

    def invoke(self):
        self._invoke()

    def output(self):
        return np.array(self.it.get_tensor(self._out_idx), copy=True)

    def _ops(self):
        try:
            return self.it._get_ops_details()
        except Exception:
            return []

    def evidence(self):
        ops = self._ops()
        out = {"op_resolver": "default (the XNNPACK delegate where the runtime applies it)"}
        if not ops:
            out["note"] = "the interpreter gave no op details"
            return out
        out.update(tflite_delegation(ops))
        return out

    def profile_ops(self, x, n):
        ops = self._ops()
        original, covered = _delegated(ops)
        rows = [{"name": "%s_%d" % (o["op_name"].lower(), i), "op": o["op_name"],
                 "kernel": "delegate (XNNPACK)" if i in covered else "builtin"} for i, o in enumerate(original)]
        return {"method": "static op list", "ops": rows,
                "note": "LiteRT's Python interpreter has no per-operator profiler: the graph's ops and which "
                        "kernels run them; on an adb device benchmark_model --enable_op_profiling times them"}


def _tfl_quant(d):
    q = d.get("quantization")
    if q and q[0]:
        return float(q[0]), int(q[1])
    qp = d.get("quantization_parameters") or {}
    sc = qp.get("scales")
    if sc is not None and len(sc) == 1 and float(sc[0]) != 0.0:
        return float(sc[0]), int(qp["zero_points"][0])
    return None


def _pick_output(outs, wanted, name_of):
    if not outs:
        raise AgentError("model has no outputs")
    if wanted:
        for o in outs:
            if name_of(o) == wanted:
                return o
    return outs[0]


class ONNXRunner(Runner):
    def __init__(self, path, threads, manifest):
        self.ort, self.name, self.version = _import_onnxruntime()
        self.path = path
        self.threads = threads
        self.manifest = manifest

    def load(self):
        ort = self.ort
        so = ort.SessionOptions()
        if self.threads and self.threads > 0:
            so.intra_op_num_threads = int(self.threads)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        sess = ort.InferenceSession(self.path, sess_options=so, providers=["CPUExecutionProvider"])
        self.sess = sess
        ins = sess.get_inputs()
        if len(ins) != 1:
            raise AgentError("model has %d inputs; the agent supports exactly 1" % len(ins))
        self.in_meta = ins[0]
        outs = sess.get_outputs()
        self.out_meta = _pick_output(outs, (self.manifest.get("output") or {}).get("name"),
                                     lambda o: o.name)
        self.input_dtype = _ORT_TYPES.get(self.in_meta.type)
        if self.input_dtype is None:
            raise AgentError("unsupported ONNX input type %s" % self.in_meta.type)
        self.output_dtype = _ORT_TYPES.get(self.out_meta.type, self.out_meta.type)
        self.input_shape = [d if isinstance(d, int) and d > 0 else -1 for d in self.in_meta.shape]
        # QDQ models keep float I/O; a quantised input (QOperator) takes its
        # scale from the manifest.
        self.input_quant = _manifest_quant(self.manifest.get("input"))
        self.output_quant = _manifest_quant(self.manifest.get("output"))
        self._in_name = self.in_meta.name
        self._out_names = [self.out_meta.name]
        self._run = sess.run
        self._feed: Any = None
        self._last: Any = None
        self.settings = {"intra_op_num_threads": self.threads, "inter_op_num_threads": 1,
                         "execution_mode": "ORT_SEQUENTIAL", "graph_optimization_level": "ORT_ENABLE_ALL",
                         "providers": sess.get_providers()}

    def set_input(self, x):
        self._feed = {self._in_name: x}
        self._last = None

    def invoke(self):
        self._last = self._run(self._out_names, self._feed)

    def output(self):
        return np.asarray(self._last[0])

    def evidence(self):
        return {"providers": self.sess.get_providers(), "graph_optimization_level": "ORT_ENABLE_ALL",
                "intra_op_num_threads": self.threads, "inter_op_num_threads": 1,
                "execution_mode": "ORT_SEQUENTIAL"}

    def profile_ops(self, x, n):
        """onnxruntime's own profiler (SessionOptions.enable_profiling) over ``n`` runs, per node."""
        import tempfile

        ort = self.ort
        so = ort.SessionOptions()
        if self.threads and self.threads > 0:
            so.intra_op_num_threads = int(self.threads)
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        so.enable_profiling = True
        tmp = tempfile.mkdtemp(prefix="edgefair-ortprof-")
        so.profile_file_prefix = os.path.join(tmp, "ort")
        sess = ort.InferenceSession(self.path, sess_options=so, providers=["CPUExecutionProvider"])
        feed = {self._in_name: x}
        for _ in range(int(n)):
            sess.run(self._out_names, feed)
        path = sess.end_profiling()
        try:
            with open(path, "r") as f:
                events = json.load(f)
        finally:
            try:
                os.remove(path)
                os.rmdir(tmp)
            except OSError:
                pass
        return {"method": "onnxruntime profiler", "runs": int(n), "ops": aggregate_ort_profile(events)}


def aggregate_ort_profile(events):
    """Per node: op type, calls, total and mean microseconds, share of the total (largest first)."""
    nodes: dict = {}
    for e in events if isinstance(events, list) else []:
        name = e.get("name", "")
        if e.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        key = name[: -len("_kernel_time")]
        row = nodes.setdefault(key, {"name": key, "op": (e.get("args") or {}).get("op_name"),
                                     "provider": (e.get("args") or {}).get("provider"), "calls": 0, "total_us": 0.0})
        row["calls"] += 1
        row["total_us"] += float(e.get("dur") or 0.0)
    total = sum(r["total_us"] for r in nodes.values()) or 1.0
    rows = sorted(nodes.values(), key=lambda r: -r["total_us"])
    for r in rows:
        r["mean_us"] = r["total_us"] / r["calls"]
        r["share"] = r["total_us"] / total
    return rows


def _manifest_quant(spec):
    q = (spec or {}).get("quant")
    if q and q.get("scale"):
        return float(q["scale"]), int(q.get("zero_point", 0))
    return None


# Formats served by a host-side runner file given with --plugin (the torch reference
# rows: edgefair/models/torch_runner.py). The agent itself never imports torch.
_PLUGINS: dict = {}


def register_runner(fmt, factory):
    """Serve ``fmt`` with ``factory(path, threads, manifest)`` (a runner object)."""
    _PLUGINS[fmt] = factory


def load_plugin(path):
    """Load a runner file by path: it defines FORMAT and make_runner(path, threads, manifest)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("edgefair_agent_plugin_%d" % len(_PLUGINS), path)
    if spec is None or spec.loader is None or not os.path.isfile(path):
        raise AgentError("runner plugin %s not found" % path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    register_runner(mod.FORMAT, mod.make_runner)


def make_runner(fmt, path, threads, manifest):
    if fmt == "tflite":
        return TFLiteRunner(path, threads, manifest)
    if fmt == "onnx":
        return ONNXRunner(path, threads, manifest)
    if fmt in _PLUGINS:
        try:
            return _PLUGINS[fmt](path, threads, manifest)
        except RuntimeError as e:
            raise AgentError(str(e))
    if fmt == "torch":
        raise AgentError("torch artefacts run on the host only: pass --plugin "
                         "<edgefair>/models/torch_runner.py (bench run --device local does)")
    raise AgentError("unknown artefact format %r (expected tflite, onnx or torch)" % (fmt,))


# --------------------------------------------------------------------------
# pre / post processing
# --------------------------------------------------------------------------

def _normalised(images_u8, manifest):
    """uint8 NHWC -> float32 (pixel/255 - mean)/std, after checking size and channels."""
    imgs = np.asarray(images_u8)
    if imgs.ndim == 3:
        imgs = imgs[:, :, :, None]
    if imgs.ndim != 4:
        raise AgentError("batch images must be NHWC uint8, got shape %s" % (imgs.shape,))
    prep = manifest.get("preprocessing") or {}
    size, ch = prep.get("size"), prep.get("channels")
    if size is not None and (imgs.shape[1] != int(size) or imgs.shape[2] != int(size)):
        raise AgentError("batch images are %dx%d but the manifest expects %dx%d"
                         % (imgs.shape[1], imgs.shape[2], int(size), int(size)))
    if ch is not None and imgs.shape[3] != int(ch):
        raise AgentError("batch images have %d channels but the manifest expects %d"
                         % (imgs.shape[3], int(ch)))
    mean = np.asarray(prep.get("mean", 0.0), dtype=np.float32)
    std = np.asarray(prep.get("std", 1.0), dtype=np.float32)
    return (imgs.astype(np.float32) / np.float32(255.0) - mean) / std


def _to_dtype(x, manifest, runner):
    """Quantise with the input scale/zero-point (round half to even, clip) or cast, as the model wants."""
    dt = runner.input_dtype
    if dt in ("int8", "uint8", "int16"):
        q = runner.input_quant or _manifest_quant(manifest.get("input"))
        if q is None:
            raise AgentError("model input is %s but no quantisation scale/zero_point is known" % dt)
        scale, zp = q
        info = np.iinfo(_NP_DTYPES[dt])
        return np.clip(np.round(x / np.float32(scale)) + zp, info.min, info.max).astype(_NP_DTYPES[dt])
    if dt in ("float16", "float64"):
        return x.astype(_NP_DTYPES[dt])
    if dt != "float32":
        raise AgentError("unsupported model input dtype %s" % dt)
    return x


def preprocess(images_u8, manifest, runner):
    """uint8 NHWC images -> model input array exactly as the model wants it.

    x = (pixel/255 - mean)/std in float32; NCHW transpose when the manifest
    layout is NCHW; quantise with the input scale/zero-point (round half to
    even, then clip to the dtype range) for int8/uint8 inputs; cast to float16
    for fp16 inputs.
    """
    x = _normalised(images_u8, manifest)
    layout = ((manifest.get("input") or {}).get("layout") or "NHWC").upper()
    if layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    elif layout != "NHWC":
        raise AgentError("unknown input layout %r" % layout)
    x = np.ascontiguousarray(_to_dtype(x, manifest, runner))
    shp = runner.input_shape
    if shp and len(shp) == x.ndim:
        for got, want in zip(x.shape[1:], shp[1:]):
            if want > 0 and got != want:
                raise AgentError("preprocessed input shape %s does not fit the model input %s "
                                 "(layout %s)" % (list(x.shape), shp, layout))
    return x


def dequantise(y, runner):
    y = np.asarray(y)
    if y.dtype.kind in "iu" and runner.output_quant is not None:
        scale, zp = runner.output_quant
        return (y.astype(np.float32) - np.float32(zp)) * np.float32(scale)
    return y.astype(np.float32)


# --------------------------------------------------------------------------
# timed loops
# --------------------------------------------------------------------------

def block_seconds(min_seconds):
    """How often the machine's state is sampled during a measurement: about ten blocks."""
    return max(MIN_BLOCK_SECONDS, float(min_seconds) / 10.0)


def timed_loop(invoke, min_runs, min_seconds, max_seconds, on_block=None, block_s=None):
    """Call ``invoke`` until n >= min_runs AND elapsed >= min_seconds, or elapsed >= max_seconds.

    Returns (samples_ns, elapsed_s, stopped_by).  Each sample is the
    perf_counter_ns difference around one invoke() call only.  Every ``block_s``
    seconds ``on_block()`` runs between two invokes (sensor readings); its time is
    excluded from the elapsed time the stop rule sees.
    """
    clock = time.perf_counter_ns
    samples: list = []
    append = samples.append
    min_runs = int(min_runs)
    min_ns = int(float(min_seconds) * 1e9)
    max_ns = int(float(max_seconds) * 1e9)
    if min_runs <= 0 and min_ns <= 0:
        return samples, 0.0, "criteria"
    block_ns = int(float(block_s if block_s is not None else block_seconds(min_seconds)) * 1e9)
    n = 0
    paused = 0
    gc_was = gc.isenabled()
    gc.disable()
    try:
        start = clock()
        next_block = start + block_ns
        while True:
            t0 = clock()
            invoke()
            t1 = clock()
            append(t1 - t0)
            n += 1
            el = t1 - start - paused
            if n >= min_runs and el >= min_ns:
                stopped = "criteria"
                break
            if el >= max_ns:
                stopped = "max_seconds"
                break
            if on_block is not None and t1 >= next_block:
                on_block()
                t2 = clock()
                paused += t2 - t1
                next_block = t2 + block_ns
    finally:
        if gc_was:
            gc.enable()
    return samples, el / 1e9, stopped


# --------------------------------------------------------------------------
# the run command
# --------------------------------------------------------------------------

def _load_manifest(art_dir):
    mpath = os.path.join(art_dir, "manifest.json")
    if not os.path.isfile(mpath):
        raise AgentError("no manifest.json in %s" % art_dir)
    try:
        with open(mpath, "r") as f:
            m = json.load(f)
    except ValueError as e:
        raise AgentError("manifest.json is not valid JSON: %s" % e)
    if not isinstance(m, dict):
        raise AgentError("manifest.json is not a JSON object")
    return m


def _format_of(manifest, model_path):
    fmt = manifest.get("format")
    if not fmt:
        ext = os.path.splitext(model_path)[1].lower()
        fmt = {".tflite": "tflite", ".onnx": "onnx", ".pt": "torch", ".ts": "torch"}.get(ext)
    if not fmt:
        raise AgentError("cannot tell the model format: manifest has no 'format'")
    return fmt


def _load_batch(path):
    if not os.path.isfile(path):
        raise AgentError("batch file not found: %s" % path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "images" not in z.files:
                raise AgentError("batch %s has no 'images' array" % path)
            images = np.asarray(z["images"])
            ids = z["ids"] if "ids" in z.files else None
    except AgentError:
        raise
    except Exception as e:
        raise AgentError("cannot read batch %s: %s" % (path, _error_text(e)))
    if images.dtype != np.uint8:
        raise AgentError("batch images must be uint8, got %s" % images.dtype)
    if images.shape[0] == 0:
        raise AgentError("batch has no images")
    if ids is None:
        ids = [str(i) for i in range(images.shape[0])]
    else:
        ids = [str(v) for v in np.asarray(ids).tolist()]
        if len(ids) != images.shape[0]:
            raise AgentError("batch has %d images but %d ids" % (images.shape[0], len(ids)))
    return images, ids


def resolve_protocol(args):
    p = dict(PROFILES[args.profile])
    for key in ("min_runs", "min_seconds", "max_seconds", "warmup_runs", "warmup_seconds"):
        v = getattr(args, key, None)
        if v is not None:
            p[key] = v
    for key in ("min_runs", "warmup_runs"):
        p[key] = int(p[key])
        if p[key] < 0:
            raise UsageError("--%s must be >= 0" % key.replace("_", "-"))
    for key in ("min_seconds", "max_seconds", "warmup_seconds"):
        p[key] = float(p[key])
        if p[key] < 0 or math.isnan(p[key]):
            raise UsageError("--%s must be >= 0" % key.replace("_", "-"))
    if p["max_seconds"] <= 0:
        raise UsageError("--max-seconds must be > 0")
    return p


def _empty_timing():
    return {"load_s": None, "first_inference_s": None, "warmup_n": 0, "warmup_s": 0.0,
            "n": 0, "duration_s": 0.0, "samples_s": [], "p50_s": None, "p90_s": None,
            "p99_s": None, "mean_s": None, "std_s": None, "p50_ci_s": None,
            "p50_ci_level": None, "min_s": None, "max_s": None,
            "percentile_method": PERCENTILE_METHOD, "stopped_by": None}


def base_result(args):
    return {
        "agent_version": AGENT_VERSION,
        "ok": False,
        "error": None,
        "mode": getattr(args, "mode", None),
        "artifact": {"name": None, "sha256": None, "path": getattr(args, "artifact", None)},
        "runtime": {"name": None, "version": None},
        "threads": getattr(args, "threads", None),
        "profile": getattr(args, "profile", None),
        "protocol": None,
        "timing": _empty_timing(),
        "rss": {"method": None, "unit": "kB", "baseline_kb": None, "after_load_kb": None,
                "after_first_kb": None, "steady_kb": None},
        "env": None,
        "valid": False,
        "invalid_reasons": [],
        "warnings": [],
    }


_PROGRESS = {"path": None}


def phase(result, name):
    """Record the phase we are entering; in a supervised worker also leave a
    progress file so the parent can say where a native crash happened."""
    result["phase"] = name
    path = _PROGRESS["path"]
    if path:
        try:
            light = dict(result)
            light["timing"] = dict(result["timing"], samples_s=[])
            light.pop("eval", None)
            write_json_atomic(path, light)
        except Exception:
            pass


def _open_artifact(args, result):
    """(manifest, model path, format) of --artifact, recorded in the result."""
    art_dir = args.artifact
    if not os.path.isdir(art_dir):
        raise AgentError("artifact folder not found: %s" % art_dir)
    manifest = _load_manifest(art_dir)
    art = result["artifact"]
    art["name"] = manifest.get("name") or os.path.basename(os.path.normpath(art_dir))
    art["artifact_id"] = manifest.get("artifact_id")
    art["target"] = manifest.get("target")
    model_file = manifest.get("model_file")
    if not model_file:
        raise AgentError("manifest.json has no 'model_file'")
    model_path = os.path.join(art_dir, model_file)
    if not os.path.isfile(model_path):
        raise AgentError("model file not found: %s" % model_path)
    art["format"] = _format_of(manifest, model_path)
    return manifest, model_path, art["format"]


def _verify(args, result, manifest, model_path):
    """Integrity first: never load a file we did not mean to measure."""
    model_file = os.path.basename(model_path)
    digest = sha256_file(model_path)
    result["artifact"]["sha256"] = digest
    result["artifact"]["size_bytes"] = os.path.getsize(model_path)
    if args.expect_sha256 and digest.lower() != args.expect_sha256.strip().lower():
        raise AgentError("sha256 mismatch for %s: expected %s, got %s"
                         % (model_file, args.expect_sha256.strip().lower(), digest), EXIT_SHA_MISMATCH)
    man_sha = (manifest.get("file") or {}).get("sha256")
    if man_sha and digest.lower() != str(man_sha).lower():
        raise AgentError("sha256 mismatch for %s: manifest says %s, file is %s"
                         % (model_file, str(man_sha).lower(), digest), EXIT_SHA_MISMATCH)


def _rss_phase(rss):
    """Start a memory phase: collect garbage, reset the peak."""
    gc.collect()
    rss.reset()


def _load_runner(result, runner, rss, model_path):
    """Load the model (timed; RSS after load) and record what the runtime says about its I/O."""
    _rss_phase(rss)
    t0 = time.perf_counter_ns()
    try:
        runner.load()
    except AgentError:
        raise
    except Exception as e:
        raise AgentError("cannot load %s with %s: %s" % (os.path.basename(model_path), runner.name, _error_text(e)))
    result["timing"]["load_s"] = (time.perf_counter_ns() - t0) / 1e9
    result["rss"]["after_load_kb"] = rss.read_kb()
    result["runtime"]["settings"] = runner.settings
    result["runtime"]["input"] = {"dtype": runner.input_dtype, "shape": runner.input_shape,
                                  "quant": list(runner.input_quant) if runner.input_quant else None}
    result["runtime"]["output"] = {"dtype": getattr(runner, "output_dtype", None),
                                   "quant": list(runner.output_quant) if runner.output_quant else None}


def _spec_warnings(result, runner, manifest):
    """Where the manifest and the model disagree, the model wins; say so."""
    m_in = manifest.get("input") or {}
    if m_in.get("dtype") and m_in.get("dtype") != runner.input_dtype:
        result["warnings"].append("manifest input dtype %s but the model wants %s; using the model's"
                                  % (m_in.get("dtype"), runner.input_dtype))
    for side, spec, q in (("input", m_in, runner.input_quant),
                          ("output", manifest.get("output") or {}, runner.output_quant)):
        mq = _manifest_quant(spec)
        if mq is not None and q is not None and (
                abs(mq[0] - q[0]) > 1e-6 * max(abs(q[0]), 1e-12) or mq[1] != q[1]):
            result["warnings"].append("manifest %s quant %s differs from the model's %s; using the model's"
                                      % (side, list(mq), list(q)))


def _first_inference(result, runner, rss, x0):
    _rss_phase(rss)
    runner.set_input(x0)
    t0 = time.perf_counter_ns()
    try:
        runner.invoke()
    except Exception as e:
        raise AgentError("first inference failed: %s" % _error_text(e))
    result["timing"]["first_inference_s"] = (time.perf_counter_ns() - t0) / 1e9
    result["rss"]["after_first_kb"] = rss.read_kb()
    y0 = dequantise(runner.output(), runner)
    if y0.size == 0:
        raise AgentError("model returned an empty output")
    if not np.all(np.isfinite(y0)):
        result["warnings"].append("first inference produced non-finite outputs")


def _usage_over(before, after, wall_s):
    cpu = after[0] - before[0]
    out = {"wall_s": wall_s, "cpu_s": cpu, "cpu_share": cpu / wall_s if wall_s > 0 else None}
    if before[1] is not None and after[1] is not None and wall_s > 0:
        out["involuntary_cs_per_s"] = (after[1] - before[1]) / wall_s
        out["voluntary_cs_per_s"] = (after[2] - before[2]) / wall_s
    return out


def _measure(result, runner, rss, x0, proto):
    """Warm-up, then the timed loop in blocks with sensor readings between them; raw samples kept."""
    _rss_phase(rss)
    runner.set_input(x0)
    invoke = runner.invoke
    timing = result["timing"]
    w, w_s, w_stop = timed_loop(invoke, proto["warmup_runs"], proto["warmup_seconds"], proto["max_seconds"])
    timing["warmup_n"] = len(w)
    timing["warmup_s"] = w_s
    if w_stop != "criteria":
        result["warnings"].append("warm-up stopped at max_seconds=%g after %d runs" % (proto["max_seconds"], len(w)))
    monitor = Monitor(is_raspberry_pi(result["env"] or {}) or result["env"].get("throttled_before") is not None)
    monitor.read("start")
    blocks = [0]
    u0, t0 = _usage(), time.perf_counter()

    def between_blocks():
        blocks[0] += 1
        monitor.read("block %d" % blocks[0])

    s, s_s, stopped = timed_loop(invoke, proto["min_runs"], proto["min_seconds"], proto["max_seconds"],
                                 on_block=between_blocks)
    usage = _usage_over(u0, _usage(), time.perf_counter() - t0)
    monitor.read("end")
    result["rss"]["steady_kb"] = rss.read_kb()
    timing.update(summarise(s))
    timing["duration_s"] = s_s
    timing["samples_s"] = [v / 1e9 for v in s]
    timing["stopped_by"] = stopped
    timing["blocks"] = blocks[0] + 1
    result["conditions"] = {"readings": monitor.readings, "usage": usage, "unreadable": monitor.problems()}
    invalid, warnings = measurement_validity(result, proto, monitor, usage)
    result["invalid_reasons"].extend(invalid)
    result["warnings"].extend(warnings)


def _evaluate(result, runner, rss, x_all, ids):
    """One inference per test image; predictions and logits by sample id."""
    _rss_phase(rss)
    logits = []
    t0 = time.perf_counter()
    for i in range(x_all.shape[0]):  # batch dim fixed to 1 is the normal case: loop
        try:
            y = runner.run_one(x_all[i:i + 1])
        except Exception as e:
            raise AgentError("inference failed on image %d (id %s): %s" % (i, ids[i], _error_text(e)))
        logits.append(dequantise(y, runner).reshape(-1))
    ev_s = time.perf_counter() - t0
    result["rss"]["eval_kb"] = rss.read_kb()
    L = np.stack(logits).astype(np.float32)
    if not np.all(np.isfinite(L)):
        result["warnings"].append("eval produced non-finite logits")
        L = np.nan_to_num(L, nan=0.0, posinf=float(np.finfo(np.float32).max),
                          neginf=float(np.finfo(np.float32).min))
    result["eval"] = {"n": int(L.shape[0]), "duration_s": ev_s, "ids": ids,
                      "pred": [int(v) for v in np.argmax(L, axis=1)], "logits": L.tolist()}


def _model_rss(rss):
    """What the model adds: the steady-state peak minus the process with the runtime imported and no
    model loaded, both read with the same method (never a max across methods)."""
    if rss.get("steady_kb") is not None and rss.get("baseline_kb") is not None:
        rss["model_kb"] = rss["steady_kb"] - rss["baseline_kb"]
        rss["model_note"] = ("steady-state peak minus the process with the runtime imported and no model "
                             "loaded (%s)" % rss.get("method"))


def _start_runtime(args, result, fmt, model_path, manifest):
    """Import the one runtime the format needs; fingerprint the machine with it."""
    for plugin in getattr(args, "plugin", None) or []:
        load_plugin(plugin)
    runner = make_runner(fmt, model_path, args.threads, manifest)  # imports the runtime
    result["runtime"] = {"name": runner.name, "version": runner.version}
    result["env"] = fingerprint(runtime={"name": runner.name, "version": runner.version}, threads=args.threads)
    return runner


def cmd_run(args, result):
    """load -> first inference -> warm-up + measurement and/or eval, each phase recorded."""
    t_start = time.time()
    phase(result, "start")
    rss = RSSMeter()
    result["rss"]["method"] = rss.method
    if rss.note:
        result["rss"]["note"] = rss.note
    proto = resolve_protocol(args)
    result["protocol"] = proto
    if args.threads is None or args.threads < 0:
        raise UsageError("--threads must be >= 0 (0 = runtime default)")
    manifest, model_path, fmt = _open_artifact(args, result)
    phase(result, "verify")
    _verify(args, result, manifest, model_path)
    phase(result, "read_batch")
    images, ids = _load_batch(args.batch)
    phase(result, "import_runtime")
    runner = _start_runtime(args, result, fmt, model_path, manifest)
    _rss_phase(rss)
    result["rss"]["baseline_kb"] = rss.read_kb()
    phase(result, "load")
    _load_runner(result, runner, rss, model_path)
    result["runtime"]["evidence"] = runner.evidence() if hasattr(runner, "evidence") else {}
    _spec_warnings(result, runner, manifest)
    phase(result, "preprocess")
    x_all = preprocess(images, manifest, runner)
    phase(result, "first_inference")
    _first_inference(result, runner, rss, x_all[:1])
    if args.mode in ("bench", "both"):
        phase(result, "warmup+measure")
        _measure(result, runner, rss, x_all[:1], proto)
        _model_rss(result["rss"])
    if getattr(args, "profile_ops", 0):
        phase(result, "profile_ops")
        result["op_profile"] = (runner.profile_ops(x_all[:1], args.profile_ops) if hasattr(runner, "profile_ops")
                                else Runner.profile_ops(runner, x_all[:1], args.profile_ops))
    if args.mode in ("eval", "both"):
        phase(result, "eval")
        _evaluate(result, runner, rss, x_all, ids)
    phase(result, "finish")
    result["warnings"].extend(finish_fingerprint(result["env"]))
    result["valid"] = not result["invalid_reasons"]
    result["wall_s"] = time.time() - t_start
    result["ok"] = True
    result["error"] = None
    result.pop("phase", None)


def cmd_probe(args):
    env = fingerprint()
    env["temperature_after"] = None
    rss = RSSMeter()
    env["rss_method"] = rss.method
    runtimes = {}
    # each runtime is imported in its own child process: a wheel built for the
    # wrong CPU dies with SIGILL, which must not take the probe down with it
    for key in ("tflite", "onnx"):
        try:
            r = subprocess.run([sys.executable, os.path.abspath(__file__), "_probe-runtime", key],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300,
                               universal_newlines=True)
            if r.returncode < 0:
                runtimes[key] = {"importable": False,
                                 "error": "import crashed with %s" % _signal_name(-r.returncode)}
            else:
                lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
                runtimes[key] = json.loads(lines[-1]) if lines else {
                    "importable": False, "error": one_line(r.stderr[-300:] or "no output")}
        except Exception as e:
            runtimes[key] = {"importable": False, "error": _error_text(e)}
    out = {"agent_version": AGENT_VERSION, "ok": True, "env": env, "runtimes": runtimes,
           "profiles": PROFILES}
    if args.json:
        sys.stdout.write(json.dumps(out, default=_json_default) + "\n")
    else:
        sys.stdout.write(json.dumps(out, default=_json_default, indent=2) + "\n")
    return EXIT_OK


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def build_parser():
    p = _Parser(prog="agent.py", description="edgefair device agent")
    sub = p.add_subparsers(dest="command")
    pr = sub.add_parser("probe", help="print an environment fingerprint and the importable runtimes")
    pr.add_argument("--json", action="store_true", help="one JSON line (default: indented JSON)")
    r = sub.add_parser("run", help="measure one artefact")
    r.add_argument("--artifact", required=True, help="artefact folder holding manifest.json")
    r.add_argument("--batch", required=True, help="batch.npz with 'images' (uint8 NHWC) and 'ids'")
    r.add_argument("--out", required=True, help="result.json path (written atomically)")
    r.add_argument("--mode", choices=("bench", "eval", "both"), default="both")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    r.add_argument("--expect-sha256", default=None)
    r.add_argument("--profile-ops", type=int, default=0,
                   help="after measuring, profile N more invokes per operator (where the runtime can)")
    r.add_argument("--plugin", action="append", default=[],
                   help="host-side runner file for another format (torch reference rows)")
    r.add_argument("--min-runs", type=int, default=None)
    r.add_argument("--min-seconds", type=float, default=None)
    r.add_argument("--max-seconds", type=float, default=None)
    r.add_argument("--warmup-runs", type=int, default=None)
    r.add_argument("--warmup-seconds", type=float, default=None)
    r.add_argument("--no-supervise", action="store_true",
                   help="measure in this process (default: in a fresh worker process, so a "
                        "native crash of the runtime still yields result.json)")
    return p


def _out_from_argv(argv):
    for i, a in enumerate(argv):
        if a == "--out" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--out="):
            return a[len("--out="):]
    return None


def _on_sigterm(signum, frame):
    raise _Terminated("terminated by signal %d" % signum)


_CHILD_ENV = "EDGEFAIR_AGENT_WORKER"


def _signal_name(num):
    try:
        return signal.Signals(num).name
    except Exception:
        return "signal %d" % num


def supervise(argv, args):
    """Run the measurement in a fresh worker process and survive its native crashes.

    A corrupt model or a runtime bug can kill the interpreter with SIGSEGV /
    SIGILL / SIGABRT (or the OOM killer can), which no Python handler can turn
    into a result.  The parent (stdlib + numpy only, no runtime) re-runs this
    file as a worker, forwards SIGTERM/SIGINT to it, and if the worker dies
    without writing result.json writes ok=false itself, naming the signal and
    the phase the worker had reached (from its progress file).
    """
    out = os.path.abspath(args.out)
    progress = out + ".progress"
    for p in (out, progress):
        try:
            os.remove(p)
        except OSError:
            pass
    env = dict(os.environ)
    env[_CHILD_ENV] = "1"
    cmd = [sys.executable, os.path.abspath(__file__)] + argv
    try:
        child = subprocess.Popen(cmd, env=env)
    except Exception as e:
        res = base_result(args)
        res["error"] = one_line("cannot start the agent worker: %s" % _error_text(e))
        write_json_atomic(out, res)
        return EXIT_FAILURE

    def forward(signum, frame):
        try:
            child.send_signal(signum)
        except Exception:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, forward)
        except Exception:
            pass
    while True:
        try:
            rc = child.wait()
            break
        except KeyboardInterrupt:
            continue
    have_result = os.path.isfile(out)
    if rc < 0 or not have_result:
        res = None
        try:
            with open(progress, "r") as f:
                res = json.load(f)
        except Exception:
            res = None
        if not isinstance(res, dict):
            res = base_result(args)
        where = res.get("phase") or "startup"
        if rc < 0:
            err = "agent worker killed by %s during %s (the runtime crashed or the process was killed)" \
                % (_signal_name(-rc), where)
        else:
            err = "agent worker exited with code %d during %s without writing a result" % (rc, where)
        res["ok"] = False
        res["valid"] = False
        res["error"] = err
        res["phase"] = where
        try:
            write_json_atomic(out, res)
        except Exception as e:
            sys.stderr.write("agent.py: error: cannot write %s: %s\n" % (out, _error_text(e)))
        sys.stdout.write(json.dumps({"ok": False, "out": args.out, "error": err, "p50_s": None,
                                     "valid": False}) + "\n")
        sys.stderr.write("agent.py: error: %s\n" % err)
        code = EXIT_FAILURE
    else:
        code = rc
    try:
        os.remove(progress)
    except OSError:
        pass
    return code


def _probe_runtime_child(key):
    """Hidden sub-command: import one runtime and print one JSON line."""
    fn = {"tflite": _import_tflite, "onnx": _import_onnxruntime}[key]
    try:
        _, name, ver = fn()
        d = {"importable": True, "name": name, "version": ver}
    except Exception as e:
        d = {"importable": False, "error": _error_text(e)}
    sys.stdout.write(json.dumps(d) + "\n")
    return EXIT_OK


def _parse(argv):
    """(args, None) or (None, exit code) after a usage error (result.json written when --out is known)."""
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise UsageError("missing command: probe or run")
        return args, None
    except UsageError as e:
        sys.stderr.write("agent.py: error: %s\n" % e)
        out = _out_from_argv(argv)
        if out and "run" in argv:
            res = base_result(argparse.Namespace())
            res["error"] = _error_text(e)
            try:
                write_json_atomic(out, res)
            except Exception:
                pass
        return None, EXIT_USAGE


def _probe(args):
    try:
        return cmd_probe(args)
    except Exception as e:
        sys.stderr.write("agent.py: error: %s\n" % _error_text(e))
        sys.stdout.write(json.dumps({"agent_version": AGENT_VERSION, "ok": False, "error": _error_text(e)}) + "\n")
        return EXIT_FAILURE


def _run_here(args, worker):
    """Measure in this process; result.json is always written (ok or not)."""
    result = base_result(args)
    result["supervised"] = worker
    code = EXIT_OK
    try:
        try:
            signal.signal(signal.SIGTERM, _on_sigterm)
        except Exception:
            pass
        cmd_run(args, result)
    except AgentError as e:
        result["ok"] = False
        result["error"] = _error_text(e)
        code = e.code
    except (Exception, KeyboardInterrupt, _Terminated) as e:
        traceback.print_exc(file=sys.stderr)
        result["ok"] = False
        result["error"] = _error_text(e) if not isinstance(e, KeyboardInterrupt) else "interrupted"
        code = EXIT_FAILURE
    if not result["ok"]:
        result["valid"] = False
    return result, code


def _write_result(args, result, code):
    try:
        write_json_atomic(args.out, result)
    except Exception as e:
        sys.stderr.write("agent.py: error: cannot write %s: %s\n" % (args.out, _error_text(e)))
        return code or EXIT_FAILURE
    finally:
        if _PROGRESS["path"]:
            try:
                os.remove(_PROGRESS["path"])
            except OSError:
                pass
    summary = {"ok": result["ok"], "out": args.out, "error": result["error"],
               "p50_s": result["timing"].get("p50_s"), "valid": result["valid"]}
    sys.stdout.write(json.dumps(summary) + "\n")
    if not result["ok"]:
        sys.stderr.write("agent.py: error: %s\n" % result["error"])
    return code


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 2 and argv[0] == "_probe-runtime" and argv[1] in ("tflite", "onnx"):
        return _probe_runtime_child(argv[1])
    args, code = _parse(argv)
    if args is None:
        return code
    if args.command == "probe":
        return _probe(args)
    worker = os.environ.get(_CHILD_ENV) == "1"
    if not worker and not args.no_supervise:
        return supervise(argv, args)
    if worker:
        _PROGRESS["path"] = os.path.abspath(args.out) + ".progress"
    result, code = _run_here(args, worker)
    return _write_result(args, result, code)


if __name__ == "__main__":
    sys.exit(main())
