"""Per device, the environment fingerprint of its runs as (field, value) pairs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgefair.bench.report_rows import ReportRow


def _max_temp(zones: Any) -> float | None:
    temps = [float(z["temp_c"]) for z in (zones or {}).values() if isinstance(z, dict) and z.get("temp_c") is not None]
    return max(temps) if temps else None


def _freq(e: dict[str, Any]) -> str | None:
    cf = e.get("cpufreq") or {}
    cur, mx = cf.get("cur_freq_khz"), cf.get("max_freq_khz") or cf.get("cpuinfo_max_freq_khz")
    if cur is None and mx is None:
        return None
    return f"{(cur or 0) / 1000:.0f} MHz" + (f" (max {mx / 1000:.0f} MHz)" if mx else "")


def _throttle(e: dict[str, Any]) -> str | None:
    if e.get("throttled_before") is None and e.get("throttled_after") is None:
        return None
    flags = sorted(set((e.get("throttled_before_flags") or []) + (e.get("throttled_after_flags") or [])))
    return (f"{e.get('throttled_before_hex') or e.get('throttled_before')} → "
            f"{e.get('throttled_after_hex') or e.get('throttled_after')}" + (f" ({'; '.join(flags)})" if flags else ""))


def _runtime(e: dict[str, Any]) -> str | None:
    rt = e.get("runtime")
    if isinstance(rt, dict):
        return " ".join(str(x) for x in (rt.get("name"), rt.get("version")) if x) or None
    return str(rt) if rt else None


def _cpu_id(e: dict[str, Any]) -> str | None:
    c = e.get("cpu") or {}
    parts = [f"{k} {c[k]}" for k in ("vendor", "family", "model", "stepping", "variant") if c.get(k)]
    return ", ".join(parts) or None


def _isa(e: dict[str, Any]) -> str | None:
    isa = (e.get("cpu") or {}).get("isa")
    return " ".join(isa) if isa else None


def _cores(e: dict[str, Any]) -> str | None:
    types = (e.get("cpu") or {}).get("core_types")
    return None if not types else ", ".join(f"{k}: {v}" for k, v in types.items())


ENV_FIELDS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("CPU", lambda e: e.get("cpu_model")),
    ("CPU identity", _cpu_id),
    ("ISA (kernel selection)", _isa),
    ("core types", _cores),
    ("board", lambda e: e.get("board_model")),
    ("cores", lambda e: None if e.get("cores") is None else
        f"{e['cores']}" + (f" (affinity {len(e['affinity'])})" if e.get("affinity") else "")),
    ("governor", lambda e: (e.get("cpufreq") or {}).get("governor")),
    ("frequency", _freq),
    ("throttling (vcgencmd)", _throttle),
    ("OS", lambda e: e.get("os")),
    ("kernel / machine", lambda e: " / ".join(str(x) for x in (e.get("kernel"), e.get("machine")) if x) or None),
    ("Python", lambda e: " ".join(str(x) for x in (e.get("python_implementation"), e.get("python")) if x) or None),
    ("numpy", lambda e: e.get("numpy")),
    ("runtimes", _runtime),
    ("threads", lambda e: e.get("threads")),
    ("emulated", lambda e: None if "emulated" not in e else
        ("yes: " + "; ".join(e.get("emulation_evidence") or []) if e.get("emulated") else "no")),
    ("virtualised", lambda e: None if "virtualised" not in e else ("yes" if e["virtualised"] else "no")),
]


def _field_value(label: str, get: Callable[[dict[str, Any]], Any], envs: list[dict[str, Any]]) -> str | None:
    """One fingerprint field over a device's runs: the value, or how it varied."""
    counts: dict[str, int] = {}
    for e in envs:
        try:
            v = get(e)
        except (TypeError, ValueError, AttributeError, KeyError):
            v = None
        if v is not None:
            counts[str(v)] = counts.get(str(v), 0) + 1
    if not counts:
        return None
    if len(counts) == 1:
        return next(iter(counts))
    if label == "runtimes":  # one per format: not a variation
        return " · ".join(counts)
    return "varies: " + " · ".join(f"{v} ({n} run{'s' if n > 1 else ''})" for v, n in counts.items())


def _temperatures(envs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    out = []
    for key, label in (("temperature_before", "temperature before"), ("temperature_after", "temperature after")):
        temps = [t for t in (_max_temp(e.get(key)) for e in envs) if t is not None]
        if temps:
            rng = f"{min(temps):.1f} °C" if min(temps) == max(temps) else f"{min(temps):.1f}–{max(temps):.1f} °C"
            out.append((label, f"{rng} (hottest zone; over {len(temps)} runs)"))
    return out


def _runtime_evidence(rows: list[ReportRow]) -> list[tuple[str, str]]:
    """Which kernels ran: the XNNPACK delegate's share of TFLite nodes, onnxruntime's providers."""
    out = []
    tfl = [r for r in rows if "xnnpack_applied" in r.runtime_evidence]
    if tfl:
        took = [r for r in tfl if r.runtime_evidence.get("xnnpack_applied")]
        partial = [f"{r.name} ({r.runtime_evidence.get('delegated_nodes')}/{r.runtime_evidence.get('nodes')})"
                   for r in took if r.runtime_evidence.get("delegated_nodes") != r.runtime_evidence.get("nodes")]
        text = f"XNNPACK delegate applied in {len(took)} of {len(tfl)} TFLite runs"
        out.append(("TFLite kernels", text + ("; partly: " + ", ".join(partial) if partial else "; all nodes")))
    providers = sorted({p for r in rows for p in r.runtime_evidence.get("providers") or []})
    if providers:
        out.append(("onnxruntime providers", ", ".join(providers)))
    return out


def environment(rows: list[ReportRow]) -> list[tuple[str, str]]:
    """(field, value) pairs of one device's runs; distinct values across runs are joined."""
    envs = [r.env for r in rows if r.env]
    out: list[tuple[str, str]] = [("runs", f"{len(rows)} ({len(envs)} with a fingerprint)")]
    if not envs:
        return out
    for label, get in ENV_FIELDS:
        value = _field_value(label, get, envs)
        if value is not None:
            out.append((label, value))
    out += _temperatures(envs)
    out += _runtime_evidence(rows)
    methods = sorted({r.percentile_method for r in rows if r.percentile_method})
    if methods:
        out.append(("percentile method", ", ".join(methods)))
    return out


