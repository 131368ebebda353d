"""Results databases for the report and gate tests, built with the real Store API.

Nothing here is a hard-coded output: manifests follow docs/contracts.md and are hashed
like the exporter does, agent results carry latency samples drawn from a seeded
generator (their percentiles computed from the samples) and a fingerprint from the real
agent's ``fingerprint()``, and every audit comes from the real ``edgefair.fairness.audit``
on synthetic predictions with planted per-group accuracies.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from edgefair.bench.store import Store
from edgefair.contracts.audit import AuditKey
from edgefair.contracts.manifest import FileInfo, Manifest
from edgefair.contracts.result import AgentResult
from edgefair.fairness import AuditResult, audit, summarize
from edgefair.runtimes import agent
from tests.fairness.synth import CLASSES, perturb, predict
from tests.manifests import make_manifest

SETTINGS = {"mode": "both", "profile": "quick", "threads": 1}
REFERENCE = "torch-fp32-s0"
AUDIT_KEY = AuditKey(reference=REFERENCE, dataset="synthfer:n=3000:seed=3", attributes=("gender", "age"))
N_TEST = 1200

RUNTIMES = {"torch": ("torch", "torch"), "onnx": ("onnxruntime", "onnxruntime"),
            "tflite": ("ai_edge_litert", "ai-edge-litert")}


@dataclass(frozen=True)
class Spec:
    """One artefact of the fixture sweep.

    ``change``: how its predictions differ from the reference's: ("same",),
    ("noise", share) flips that share of all predictions, ("group", group, share)
    flips that share of one gender group only (a widened gap).
    """

    target: str
    sparsity: float
    size_bytes: int
    latency_ms: float  # on "local"; other devices scale it
    rss_mb: float
    change: tuple = ("same",)

    @property
    def name(self) -> str:
        return f"{self.target}-s{self.sparsity:g}"


SPECS = (
    Spec("torch-fp32", 0.0, 1_210_000, 2.10, 180.0, ("same",)),
    Spec("onnx-fp32", 0.0, 1_180_000, 1.15, 42.0, ("noise", 0.002)),
    Spec("onnx-int8", 0.0, 318_000, 0.600, 31.0, ("noise", 0.004)),
    Spec("tflite-int8", 0.5, 305_000, 0.603, 12.5, ("noise", 0.005)),
    Spec("tflite-int8", 0.9, 301_000, 0.41, 12.2, ("group", "female", 0.25)),
    Spec("tflite-fp16", 0.0, 605_000, 0.92, 14.0, ("noise", 0.07)),
    Spec("onnx-fp16", 0.5, 600_000, 1.02, 36.0, ("noise", 0.003)),
)

DEVICES = {  # device -> latency factor against "local"
    "local": 1.0,
    "pi4": 7.5,
    "pi4-emu": 41.0,
}


@dataclass
class Scenario:
    specs: tuple[Spec, ...] = SPECS
    devices: dict[str, float] = field(default_factory=lambda: dict(DEVICES))
    failed: dict[tuple[str, str], str] = field(default_factory=dict)  # (name, device) -> error
    throttled: set[tuple[str, str]] = field(default_factory=set)
    skip: set[tuple[str, str]] = field(default_factory=set)  # not run at all
    latency_scale: dict[str, float] = field(default_factory=dict)  # name -> factor (a regression)
    size_scale: dict[str, float] = field(default_factory=dict)
    seed: int = 7


def mixed() -> Scenario:
    """Three devices, a failure, a throttled run, an emulated device, every verdict but one."""
    return Scenario(
        failed={("onnx-fp16-s0.5", "pi4"): "onnxruntime: [ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : "
                                           "Could not find an implementation for Conv(11) node with name 'conv1'"},
        throttled={("onnx-int8-s0", "pi4")},
        skip={(s.name, "pi4-emu") for s in SPECS if s.target.startswith("torch") or s.target.endswith("fp16")},
    )


def none_pass() -> Scenario:
    """One device where every artefact fails its audit."""
    return Scenario(specs=tuple(s for s in SPECS if s.name in ("tflite-int8-s0.9", "tflite-fp16-s0")),
                    devices={"local": 1.0})


# ---------------------------------------------------------------- data and audits
@functools.cache
def _test_split(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(y_true, gender, age, reference predictions) of a synthetic test split."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), N_TEST)
    gender = np.where(rng.random(N_TEST) < 0.5, "female", "male").astype(object)
    age = rng.choice(np.array(["18-29", "30-49", "50+"], dtype=object), N_TEST, p=[0.45, 0.35, 0.2])
    ref = predict(y, gender, {"female": 0.81, "male": 0.83}, rng)
    return y, gender, age, ref


@functools.cache
def predictions(spec: Spec, seed: int) -> np.ndarray:
    _y, gender, _, ref = _test_split(seed)
    rng = np.random.default_rng([seed, int(hashlib.sha256(spec.name.encode()).hexdigest()[:8], 16)])
    kind = spec.change[0]
    if kind == "same":
        return ref.copy()
    if kind == "noise":
        return perturb(ref, spec.change[1], rng)
    if kind == "group":
        _, group, share = spec.change
        out = ref.copy()
        idx = np.flatnonzero(gender == group)
        hit = rng.choice(idx, int(round(share * idx.size)), replace=False)
        out[hit] = (out[hit] + rng.integers(1, len(CLASSES), hit.size)) % len(CLASSES)
        return out
    raise ValueError(spec.change)


@functools.cache
def audit_of(spec: Spec, seed: int) -> AuditResult:
    """The real audit of ``spec``'s predictions against the reference (the reference: on its own)."""
    y, gender, age, ref = _test_split(seed)
    return audit(y_true=y, y_pred=predictions(spec, seed), sensitive={"gender": gender, "age": age},
                 class_names=CLASSES, reference_pred=None if spec.name == REFERENCE else ref, min_n=30)


# ---------------------------------------------------------------- manifests and results
def manifest(spec: Spec, scenario: Scenario) -> Manifest:
    fmt, precision = spec.target.split("-")
    layout = "NCHW" if fmt in ("torch", "onnx") else "NHWC"
    shape = [1, 1, 48, 48] if layout == "NCHW" else [1, 48, 48, 1]
    quant = {"scale": 0.0078125, "zero_point": 0} if (precision == "int8" and fmt == "tflite") else None
    size = int(spec.size_bytes * scenario.size_scale.get(spec.name, 1.0))
    total = 25_000 + size // 100
    return make_manifest(
        name=spec.name, target=spec.target,
        model_file={"torch": "model.pt", "onnx": "model.onnx", "tflite": "model.tflite"}[fmt],
        sparsity=spec.sparsity, measured=round(spec.sparsity * 0.985, 4),
        input_spec={"name": "input", "shape": shape, "layout": layout, "dtype": "int8" if quant else "float32",
                    "quant": quant},
        output_spec={"name": "logits", "shape": [1, len(CLASSES)], "dtype": "int8" if quant else "float32",
                     "quant": {"scale": 0.1, "zero_point": -10} if quant else None},
        class_names=CLASSES, prep={"size": 48, "channels": 1, "mean": 0.5, "std": 0.25},
        file=FileInfo(sha256=hashlib.sha256(spec.name.encode()).hexdigest(), size_bytes=size,
                      gzip_bytes=int(size * (0.55 if spec.sparsity >= 0.5 else 0.9))),
        params=(total, int(total * (1 - spec.sparsity * 0.985))), checkpoint=hashlib.sha256(b"base").hexdigest(),
        arch="cnn")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _env(device: str, fmt: str, throttled: bool, rng: np.random.Generator) -> dict[str, Any]:
    """A fingerprint: this machine's real one for local, adapted for the Pi and its emulation."""
    name, dist = RUNTIMES[fmt]
    env = agent.fingerprint(runtime={"name": name, "version": _version(dist)}, threads=SETTINGS["threads"])
    agent.finish_fingerprint(env)
    if device == "local":
        return env
    t0 = float(rng.uniform(44, 52))
    env.update({
        "cpu_model": "Cortex-A72", "board_model": "Raspberry Pi 4 Model B Rev 1.4", "cores": 4,
        "affinity": [0, 1, 2, 3], "machine": "aarch64", "os": "Debian GNU/Linux 12 (bookworm)",
        "kernel": "6.6.51+rpt-rpi-v8", "hostname": "pi4",
        "cpufreq": {"governor": "ondemand", "cur_freq_khz": 1_500_000, "min_freq_khz": 600_000,
                    "max_freq_khz": 1_500_000, "cpuinfo_max_freq_khz": 1_500_000, "per_cpu": []},
        "temperature_before": {"thermal_zone0": {"type": "cpu-thermal", "temp_c": round(t0, 1)}},
        "temperature_after": {"thermal_zone0": {"type": "cpu-thermal",
                                                "temp_c": round(t0 + (38 if throttled else rng.uniform(1, 4)), 1)}},
        "throttled_before": 0, "throttled_after": 0x60006 if throttled else 0, "virtualised": False,
    })
    for key in ("throttled_before", "throttled_after"):
        env[key + "_hex"] = hex(env[key])
        env[key + "_flags"] = agent._decode_throttle(env[key])
    if device.endswith("-emu"):
        real = agent.fingerprint()
        env.update({"cpu_model": real["cpu_model"], "board_model": None, "cores": real["cores"],
                    "affinity": real["affinity"], "kernel": real["kernel"], "virtualised": real["virtualised"]})
        env.update({"emulated": True, "emulation_evidence": ["machine aarch64 but /proc/cpuinfo describes an x86 CPU"],
                    "cpufreq": {"governor": None, "cur_freq_khz": None, "per_cpu": []},
                    "temperature_before": {}, "temperature_after": {}, "throttled_before": None,
                    "throttled_after": None, "hostname": "vm"})
    return env


def agent_result(spec: Spec, device: str, scenario: Scenario, m: Manifest) -> dict[str, Any]:
    """What the agent's result.json would hold for this artefact on this device."""
    rng = np.random.default_rng([scenario.seed, sum(map(ord, spec.name + device))])
    fmt = m.format
    throttled = (spec.name, device) in scenario.throttled
    env = _env(device, fmt, throttled, rng)
    base = {
        "agent_version": agent.AGENT_VERSION,
        "artifact": {"name": spec.name, "sha256": m.file.sha256, "artifact_id": m.artifact_id},
        "runtime": env["runtime"], "threads": SETTINGS["threads"], "profile": SETTINGS["profile"],
        "mode": SETTINGS["mode"], "env": env,
    }
    error = scenario.failed.get((spec.name, device))
    if error:
        return {**base, "ok": False, "error": error, "phase": "load", "valid": False,
                "invalid_reasons": [], "timing": None, "rss": None}
    scale = spec.latency_ms * scenario.devices[device] * scenario.latency_scale.get(spec.name, 1.0) / 1000
    samples = scale * rng.lognormal(0.0, 0.015, 400) * np.where(rng.random(400) < 0.08, 1.3, 1.0)
    if throttled:
        samples[200:] *= 1.6
    s = np.sort(samples)
    p50, p90, p99 = (float(np.percentile(s, q)) for q in (50, 90, 99))
    ci = np.percentile(rng.choice(s, (200, s.size)), 50, axis=1)
    rss_kb = int(spec.rss_mb * 1024 * (1.12 if device.startswith("pi4") else 1.0))
    pred = predictions(spec, scenario.seed)
    warnings = ["running under emulation (qemu): latencies are not device latencies"] if env.get("emulated") else []
    invalid = ([f"throttled during the run: get_throttled={hex(env['throttled_after'])} at end "
                "(arm frequency capped; currently throttled)"] if throttled else [])
    return {
        **base, "ok": True, "error": None,
        "timing": {"load_s": 40 * scale, "first_inference_s": 3 * scale, "warmup_n": 10,
                   "warmup_s": float(samples[:10].sum()), "n": int(s.size), "duration_s": float(s.sum()),
                   "samples_s": [float(v) for v in samples], "p50_s": p50, "p90_s": p90, "p99_s": p99,
                   "mean_s": float(s.mean()), "std_s": float(s.std(ddof=1)),
                   "p50_ci_s": [float(np.percentile(ci, 2.5)), float(np.percentile(ci, 97.5))],
                   "percentile_method": "linear"},
        "rss": {"method": "proc_vmhwm_reset", "baseline_kb": 20_000, "after_load_kb": int(rss_kb * 0.8),
                "after_first_kb": int(rss_kb * 0.95), "steady_kb": rss_kb},
        "valid": not throttled, "invalid_reasons": invalid, "warnings": warnings,
        "eval": {"ids": [f"s{i:05d}" for i in range(pred.size)], "pred": pred.tolist(),
                 "logits": np.eye(len(CLASSES))[pred].tolist()},
    }


def build_db(path: Path, scenario: Scenario | None = None) -> Path:
    """Write the scenario's artefacts, runs and audits into a results database at ``path``."""
    scenario = scenario or mixed()
    y = _test_split(scenario.seed)[0]
    with Store(path) as store:
        for spec in scenario.specs:
            m = manifest(spec, scenario)
            aid = store.put_artifact(m, Path("artifacts") / spec.name)
            for device in scenario.devices:
                if (spec.name, device) in scenario.skip:
                    continue
                result = agent_result(spec, device, scenario, m)
                acc = None
                if result["ok"]:
                    acc = float(np.mean(np.asarray(result["eval"]["pred"]) == y))
                store.put_run(artifact_id=aid, device=device, settings=SETTINGS,
                              result=AgentResult.from_dict(result) if result["ok"] else AgentResult.failure(
                                  result["error"], result), accuracy=acc)
                if result["ok"]:
                    result = audit_of(spec, scenario.seed)
                    store.put_audit(artifact_id=aid, device=device, key=AUDIT_KEY, audit=result.to_dict(),
                                    summary=summarize(result, is_reference=spec.name == REFERENCE))
    return path
