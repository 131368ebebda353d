"""Was a device run taken under conditions that hold? Host-side rules over device-state readings.

The agent judges what it can see from inside the process (stop rule, throttling bits,
clocks, contention: ``edgefair/runtimes/agent.py``). Android phones are also read from
the host over adb before, during (a sampler thread) and after a run — thermal status,
battery temperature, per-CPU clock limits — and ``benchmark_model`` runs have no agent at
all, so their rules are applied here. Each tripped rule is one line with its numbers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Android thermal status (PowerManager.THERMAL_STATUS_*): 0 none, 1 light, 2 moderate, 3 severe, ...
THERMAL_NAMES = ("none", "light", "moderate", "severe", "critical", "emergency", "shutdown")
BATTERY_MAX_RISE_C = 5.0  # warning above this rise during one run


@dataclass
class StateSampler:
    """Reads the device state every ``interval_s`` in a thread while a command runs."""

    read: Callable[[], dict | None]
    interval_s: float
    readings: list[tuple[str, dict]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="device-state", daemon=True)

    def _loop(self) -> None:
        n = 0
        while not self._stop.wait(self.interval_s):
            n += 1
            state = self.read()
            if state is not None:
                self.readings.append((f"during {n}", state))

    def __enter__(self) -> StateSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=max(5.0, 2 * self.interval_s))


def sample_interval(protocol: dict[str, Any]) -> float:
    """About five readings over a measurement, at most one per second."""
    return max(1.0, float(protocol.get("min_seconds") or 0) / 5.0)


def _series(states: list[tuple[str, dict]], key: str) -> list[tuple[str, Any]]:
    return [(label, s.get(key)) for label, s in states if isinstance(s, dict) and s.get(key) is not None]


def thermal_rule(states: list[tuple[str, dict]]) -> tuple[list[str], list[str]]:
    """Thermal status rising during the run, or at moderate or above: the phone was throttling."""
    vals = _series(states, "thermal_status")
    if not vals:
        return [], ["sensor not readable: Android thermal status (dumpsys thermalservice)"]
    first, worst = vals[0], max(vals, key=lambda lv: lv[1])
    name = THERMAL_NAMES[worst[1]] if 0 <= worst[1] < len(THERMAL_NAMES) else str(worst[1])
    if worst[1] > first[1] or worst[1] >= 2:
        return [f"thermal throttling: Android thermal status {first[1]} -> {worst[1]} ({name}) at {worst[0]}"], []
    return [], []


def battery_rule(states: list[tuple[str, dict]]) -> list[str]:
    vals = _series(states, "battery_temperature_c")
    if not vals:
        return ["sensor not readable: battery temperature (dumpsys battery)"]
    rise = max(v for _, v in vals) - vals[0][1]
    if rise > BATTERY_MAX_RISE_C:
        return [f"battery temperature rose {vals[0][1]:.1f} -> {vals[0][1] + rise:.1f} C during the run "
                f"(bound +{BATTERY_MAX_RISE_C:g} C)"]
    return []


def clock_cap_rule(states: list[tuple[str, dict]]) -> list[str]:
    """A CPU whose maximum allowed clock (scaling_max_freq) fell: thermal capping."""
    caps = [(label, s.get("scaling_max_khz") or {}) for label, s in states if isinstance(s, dict)]
    caps = [(label, c) for label, c in caps if c]
    if len(caps) < 2:
        return []
    first = caps[0][1]
    for label, cap in caps[1:]:
        for cpu, v in cap.items():
            if isinstance(v, int) and isinstance(first.get(cpu), int) and v < first[cpu]:
                return [f"CPU clock capped during the run: {cpu} max {first[cpu] / 1e3:.0f} -> {v / 1e3:.0f} MHz "
                        f"at {label}"]
    return []


def android_rules(states: list[tuple[str, dict]]) -> tuple[list[str], list[str]]:
    """(invalid_reasons, warnings) of an adb run from its device-state readings in order."""
    invalid, warnings = thermal_rule(states)
    invalid += clock_cap_rule(states)
    warnings += battery_rule(states)
    return invalid, warnings


def benchmark_model_stop_rule(parsed: dict[str, Any], protocol: dict[str, Any]) -> list[str]:
    """benchmark_model stops at max_secs whatever num_runs says: count the runs it made."""
    n = (parsed.get("measurement") or {}).get("count")
    want = int(protocol.get("min_runs") or 0)
    if n is not None and n < want:
        return [f"stop rule not met: benchmark_model ran n={n} of min_runs={want} "
                f"(max_seconds={protocol.get('max_seconds')} reached)"]
    return []


def apply(result: dict[str, Any], invalid: list[str], warnings: list[str]) -> dict[str, Any]:
    """Add host-side findings to a result; ``valid`` follows its invalid reasons."""
    result.setdefault("invalid_reasons", []).extend(r for r in invalid if r not in result["invalid_reasons"])
    result.setdefault("warnings", []).extend(w for w in warnings if w not in result["warnings"])
    result["valid"] = bool(result.get("ok")) and not result["invalid_reasons"]
    return result

