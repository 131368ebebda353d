"""``bench export``: a trained run -> the target × sparsity matrix of artefacts, each checked for parity.

Per sparsity level (``levels``): prune + fine-tune (cached per level) -> the level's PyTorch
model, the parity reference -> one producer per target (``producers``): TorchScript here,
ONNX fp32/fp16/int8 here, and one onnx2tf conversion per level in a worker process for the
four TFLite targets (overlapping the next level's fine-tune). Every artefact goes through
``build``: staging -> measured -> manifest -> parity through the agent's own code path ->
renamed into place. Artefacts whose conversion key is unchanged are reused (``cache``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgefair.contracts.jsonio import error_text
from edgefair.contracts.targets import TARGETS, parse_sparsities, parse_targets
from edgefair.export import levels as _levels
from edgefair.export.build import BuildContext, build_artifact, gate_warnings, recheck_parity
from edgefair.export.cache import ExportSettings, LevelCache, cached_manifest, code_version, parity_key
from edgefair.export.errors import ExportError
from edgefair.export.logs import ExportLog
from edgefair.export.producers import ProduceContext, producer_for, tflite_producer
from edgefair.export.results import ExportReport, TargetResult
from edgefair.export.staging import Staging
from edgefair.export.targets import missing_modules, pip_names

ProgressFn = Callable[[int, int, str], None]  # (artefacts done, artefacts total, message)
DEFAULT_ENGINE = "x86"
ENGINES = ("x86", "fbgemm", "qnnpack", "onednn")
PRUNING = ("unstructured", "structured")
MITIGATIONS = ("none", "kd")
PRUNE_SCOPES = ("global", "layer")
DEFAULT_FINETUNE_EPOCHS = 2


@dataclass(frozen=True)
class ExportRequest:
    """One ``export_matrix`` call, validated."""

    run_dir: Path
    out: Path
    targets: list[str]
    sparsities: list[float]
    pruning: str = "unstructured"
    finetune_epochs: int = DEFAULT_FINETUNE_EPOCHS
    calib: int = 256
    qat: bool = False
    force: bool = False
    parity_n: int = 512
    engine: str = DEFAULT_ENGINE
    clustering: int | None = None
    mitigation: str = "none"
    kd_alpha: float = 0.9
    kd_temperature: float = 4.0
    prune_scope: str = "global"

    def __post_init__(self) -> None:
        if self.pruning not in PRUNING:
            raise ExportError(f"unknown pruning method '{self.pruning}': expected unstructured or structured")
        check_compression_options(clustering=self.clustering, mitigation=self.mitigation, kd_alpha=self.kd_alpha,
                                  kd_temperature=self.kd_temperature, prune_scope=self.prune_scope)
        for name, value, low in (("finetune epochs", self.finetune_epochs, 0), ("calibration image count",
                                 self.calib, 1), ("parity sample size", self.parity_n, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ExportError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.qat and self.finetune_epochs < 1:
            raise ExportError("--qat needs at least one fine-tune epoch (--finetune-epochs >= 1)")
        if self.engine not in ENGINES:
            raise ExportError(f"unknown quantized engine '{self.engine}': expected {', '.join(ENGINES)}")
        missing = missing_modules(self.targets)
        if missing:
            t, mods = next(iter(missing.items()))
            raise ExportError(f"target {t} needs {', '.join(mods)}, which is not installed (pip install "
                              f"{pip_names(mods)})")
        if self.out.exists() and not self.out.is_dir():
            raise ExportError(f"--out {self.out}: exists and is not a folder")

    def log_line(self) -> str:
        return (f"=== export {self.run_dir} -> {self.out}: targets={self.targets} sparsities={self.sparsities} "
                f"pruning={self.pruning} scope={self.prune_scope} finetune_epochs={self.finetune_epochs} "
                f"clustering={self.clustering} mitigation={self.mitigation} (alpha {self.kd_alpha:g}, "
                f"T {self.kd_temperature:g}) calib={self.calib} qat={self.qat} force={self.force} "
                f"code={code_version()}")


def check_compression_options(*, clustering: int | None, mitigation: str, kd_alpha: float, kd_temperature: float,
                              prune_scope: str) -> None:
    """ExportError (a UsageError: exit 2) naming the flag and the allowed range."""
    if clustering is not None and (isinstance(clustering, bool) or not isinstance(clustering, int) or clustering < 2):
        raise ExportError(f"--clustering: {clustering!r} is outside the allowed range: an integer K >= 2 "
                          "(or none)", exit_code=2)
    if mitigation not in MITIGATIONS:
        raise ExportError(f"--mitigation: '{mitigation}' is not allowed; allowed values: {', '.join(MITIGATIONS)}",
                          exit_code=2)
    if isinstance(kd_alpha, bool) or not isinstance(kd_alpha, (int, float)) or not 0 <= kd_alpha <= 1:
        raise ExportError(f"--kd-alpha: {kd_alpha!r} is outside the allowed range [0, 1]", exit_code=2)
    if (isinstance(kd_temperature, bool) or not isinstance(kd_temperature, (int, float))
            or not 0 < kd_temperature < float("inf")):
        raise ExportError(f"--kd-temperature: {kd_temperature!r} is outside the allowed range (0, inf)", exit_code=2)
    if prune_scope not in PRUNE_SCOPES:
        raise ExportError(f"--prune-scope: '{prune_scope}' is not allowed; allowed values: {', '.join(PRUNE_SCOPES)}",
                          exit_code=2)


@dataclass
class _Plan:
    """Per level: targets to build, and cached artefacts whose parity must be checked again."""

    build: dict[float, list[str]]
    recheck: dict[float, list[tuple[str, Any]]]

    @property
    def levels(self) -> list[float]:
        return sorted(set(self.build) | set(self.recheck))


class _Exporter:
    def __init__(self, req: ExportRequest, progress: ProgressFn | None) -> None:
        self.req = req
        self._progress = progress
        self.log = ExportLog(req.out / "export.log")
        self.staging = Staging(req.out)
        self.results: dict[tuple[str, float], TargetResult] = {}
        self.total = len(req.targets) * len(req.sparsities)
        self.pool: Any = None
        self._torch_threads = 0
        self.levels: list[_levels.Level] = []

    # -- progress ---------------------------------------------------------------------
    def say(self, message: str) -> None:
        self.log.write(message)
        if self._progress is not None:
            self._progress(len(self.results), self.total, message)

    def record(self, r: TargetResult) -> None:
        self.results[(r.target, r.sparsity)] = r
        if r.status == "failed":
            self.log.write(f"FAILED {r.name}: {r.reason}")
        self.say(f"{r.name}: {r.status}" + (f" ({r.reason})" if r.reason else ""))

    def fail(self, targets: Sequence[str], sparsity: float, reason: str, t0: float) -> None:
        for t in targets:
            if (t, sparsity) not in self.results:
                self.record(TargetResult(self.settings.name(t, sparsity), t, sparsity, "failed", None, reason,
                                         time.perf_counter() - t0))

    # -- main -------------------------------------------------------------------------
    def run(self) -> list[TargetResult]:
        from edgefair.models.checkpoint import load_run

        self.dense, self.meta = load_run(self.req.run_dir)  # CheckpointError on a missing/mismatched checkpoint
        ref = self.meta.dataset_ref()
        self.settings = ExportSettings(
            checkpoint_sha256=self.meta.checkpoint_sha256, dataset_fingerprint=ref.fingerprint if ref else None,
            pruning=self.req.pruning, finetune_epochs=self.req.finetune_epochs, calib=self.req.calib,
            qat=self.req.qat, engine=self.req.engine, seed=self.meta.seed, clustering=self.req.clustering,
            mitigation=self.req.mitigation, kd_alpha=float(self.req.kd_alpha),
            kd_temperature=float(self.req.kd_temperature), prune_scope=self.req.prune_scope)
        self.req.out.mkdir(parents=True, exist_ok=True)
        self.staging.clean_stale()
        self.log.write(self.req.log_line())
        plan = self._plan()
        if plan.levels:
            self._run_levels(plan)
        return [self.results[(t, s)] for s in self.req.sparsities for t in self.req.targets if (t, s) in self.results]

    def _plan(self) -> _Plan:
        plan = _Plan(build={}, recheck={})
        want_parity = parity_key(self.req.parity_n)
        for s in self.req.sparsities:
            for t in self.req.targets:
                folder = self.req.out / self.settings.name(t, s)
                m = None if self.req.force else cached_manifest(folder, self.settings.conversion_key(t, s))
                if m is None:
                    plan.build.setdefault(s, []).append(t)
                elif m.export.get("parity_key") != want_parity:
                    plan.recheck.setdefault(s, []).append((t, m))
                else:
                    self.record(TargetResult(m.name, t, s, "cached", str(folder), None, 0.0, m, gate_warnings(m)))
        return plan

    def _run_levels(self, plan: _Plan) -> None:
        from edgefair.export.data import load_export_data
        from edgefair.export.pruning import dense_weight_count

        work = self.staging.work_dir()
        completed = False
        try:
            self.say("loading data")
            data = load_export_data(self.meta, calib=self.req.calib, parity_n=self.req.parity_n, log=self.log)
            work.mkdir(parents=True, exist_ok=True)
            self.ctx = BuildContext(ProduceContext(self.meta, data, self.settings, self.log), self.req.run_dir,
                                    self.req.out, self.staging, dense_weight_count(self.dense), self.req.parity_n)
            self._start_tflite(plan, work, data)
            for s in plan.levels:
                self._level(s, plan.build.get(s, []), plan.recheck.get(s, []), work)
                self._collect_tflite(wait=False)
            self._collect_tflite(wait=True)
            completed = True
        finally:
            if self.pool is not None:  # on an error or Ctrl-C, do not wait for a conversion nobody will use
                self.pool.close(timeout=30 if completed else 0)
                _restore_torch_threads(self._torch_threads)
            shutil.rmtree(work, ignore_errors=True)
            self.staging.remove_if_empty()

    def _start_tflite(self, plan: _Plan, work: Path, data: Any) -> None:
        if not any(TARGETS[t].format == "tflite" for ts in plan.build.values() for t in ts):
            return
        import torch

        from edgefair.export.tflite_convert import TFLitePool, split_cores

        self.calib_npy = work / "calib_nhwc.npy"
        np.save(self.calib_npy, data.calib_u8.astype(np.float32) / np.float32(255.0))
        converter_threads, own_threads = split_cores(os.cpu_count() or 1)
        self.pool = TFLitePool(self.req.out / "export.log", threads=converter_threads)
        self._torch_threads = torch.get_num_threads()
        torch.set_num_threads(own_threads)

    # -- one sparsity level -----------------------------------------------------------
    def _level(self, s: float, targets: list[str], recheck: list[tuple[str, Any]], work: Path) -> None:
        t0 = time.perf_counter()
        try:
            what = ("dense model" if s == 0 else f"{self.req.pruning} pruning + fine-tune ({self.req.finetune_epochs} "
                    "epoch(s))") + (f", clustering K={self.req.clustering}" if self.req.clustering else "") + \
                (" (distilled)" if self.req.mitigation == "kd" and self.settings.level_tuned(s) else "")
            self.say(f"s{s:g}: {what}")
            lvl = _levels.prune_level(self.dense, self.meta, s, self.settings, self.ctx.produce.data,
                                      LevelCache(self.req.out), self.log)
        except Exception as e:
            self.fail(targets + [t for t, _ in recheck], s, f"pruning/fine-tune failed: {error_text(e)}", t0)
            return
        for t, m in recheck:
            self.record(recheck_parity(self.ctx, lvl, t, self.req.out / m.name, m))
        targets = self._with_qat(lvl, targets, t0)
        targets = self._with_onnx(lvl, targets, work, t0)
        tfl = [t for t in targets if TARGETS[t].format == "tflite"]
        if tfl:
            self._submit_tflite(lvl, tfl)
        for t in targets:
            if TARGETS[t].format != "tflite":
                self.say(f"{self.settings.name(t, s)}: building")
                self.record(build_artifact(self.ctx, lvl, t, producer_for(t)))
        self.levels.append(lvl)

    def _with_qat(self, lvl: _levels.Level, targets: list[str], t0: float) -> list[str]:
        int8 = [t for t in targets if TARGETS[t].is_int8]
        if not (self.req.qat and int8):
            return targets
        try:
            self.say(f"{lvl.tag}: quantisation-aware fine-tune ({self.req.finetune_epochs} epoch(s))")
            _levels.add_qat(lvl, self.meta, self.settings, self.ctx.produce.data, self.log, dense=self.dense)
        except Exception as e:
            self.fail(int8, lvl.sparsity, f"quantisation-aware fine-tune failed: {error_text(e)}", t0)
            return [t for t in targets if t not in int8]
        return targets

    def _with_onnx(self, lvl: _levels.Level, targets: list[str], work: Path, t0: float) -> list[str]:
        need = [t for t in targets if TARGETS[t].format in ("onnx", "tflite")]
        if not need:
            return targets
        try:
            _levels.export_float_onnx(lvl, self.meta, work, self.log)
        except Exception as e:
            self.fail(need, lvl.sparsity, f"ONNX export failed: {error_text(e)}", t0)
            return [t for t in targets if t not in need]
        qat_need = [t for t in need if TARGETS[t].is_int8 and lvl.qat_float is not None]
        if not qat_need:
            return targets
        try:
            _levels.export_qat_onnx(lvl, self.meta, work, self.log)
        except Exception as e:
            self.fail(qat_need, lvl.sparsity, f"ONNX export of the QAT model failed: {error_text(e)}", t0)
            return [t for t in targets if t not in qat_need]
        return targets

    # -- TFLite: one onnx2tf run per source model, in the worker ---------------------
    def _submit_tflite(self, lvl: _levels.Level, tfl: list[str]) -> None:
        prep = self.meta.prep
        groups: list[tuple[list[str], Path | None, bool]] = [(tfl, lvl.onnx_path, False)]
        if lvl.qat_onnx_path is not None:
            groups = [([t for t in tfl if not TARGETS[t].is_int8], lvl.onnx_path, False),
                      ([t for t in tfl if TARGETS[t].is_int8], lvl.qat_onnx_path, True)]
        for want, src, is_qat in groups:
            if not want or src is None:
                continue
            try:
                fut = self.pool.submit(src, src.parent / ("tflite-qat" if is_qat else "tflite"),
                                       self.calib_npy if "tflite-int8" in want else None,
                                       [prep.mean] * prep.channels, [prep.std] * prep.channels, want)
                lvl.tflite_jobs.append(_levels.TFLiteJob(want, fut, None, is_qat))
                self.say(f"{lvl.tag}: onnx2tf conversion queued ({', '.join(want)})")
            except Exception as e:
                lvl.tflite_jobs.append(_levels.TFLiteJob(want, None, f"onnx2tf could not be started: "
                                                                     f"{error_text(e)}", is_qat))

    def _collect_tflite(self, *, wait: bool) -> None:
        for lvl in self.levels:
            pending = []
            for job in lvl.tflite_jobs:
                if job.future is not None and not job.future.done() and not wait:
                    pending.append(job)
                else:
                    self._finish_tflite(lvl, job)
            lvl.tflite_jobs = pending

    def _finish_tflite(self, lvl: _levels.Level, job: _levels.TFLiteJob) -> None:
        from edgefair.export.tflite_convert import ConverterError, WorkerDied

        t0 = time.perf_counter()
        err, res = job.error, None
        if job.future is not None:
            self.say(f"{lvl.tag}: waiting for onnx2tf ({', '.join(job.targets)})")
            try:
                res = job.future.result()
            except (WorkerDied, ConverterError) as e:
                err = str(e) if isinstance(e, WorkerDied) else f"onnx2tf failed: {e}"
            except Exception as e:
                err = f"onnx2tf failed: {error_text(e)}"
        if err is not None or res is None:
            self.fail(job.targets, lvl.sparsity, err or "onnx2tf gave no result", t0)
            return
        for t in job.targets:
            if t in res["errors"]:
                self.fail([t], lvl.sparsity, res["errors"][t], t0)
            else:
                self.record(build_artifact(self.ctx, lvl, t, tflite_producer(Path(res["files"][t]), qat=job.qat)))


def export_matrix(run_dir: Path | str, *, targets: Sequence[str] | str, sparsities: Sequence[float] | str | float,
                  out: Path | str, pruning: str = "unstructured", finetune_epochs: int = DEFAULT_FINETUNE_EPOCHS,
                  calib: int = 256, qat: bool = False, force: bool = False, parity_n: int = 512,
                  engine: str = DEFAULT_ENGINE, clustering: int | None = None, mitigation: str = "none",
                  kd_alpha: float = 0.9, kd_temperature: float = 4.0, prune_scope: str = "global",
                  progress: ProgressFn | None = None) -> ExportReport:
    """Export ``run_dir`` to every target × sparsity under ``out`` and check each artefact's parity.

    ``targets``: names or ``all``; ``sparsities``: values in [0, 1) (``"0,0.5,0.9"`` works).
    ``clustering``: K >= 2 shared weight values per Conv/Linear kernel (None: no clustering);
    ``mitigation``: ``kd`` distils every fine-tune from the uncompressed model
    ((1 - kd_alpha)·CE + kd_alpha·KL·T², T = ``kd_temperature``); ``prune_scope``: the
    unstructured magnitude threshold, ``global`` or per ``layer``.
    ``progress(done, total, message)`` is called as artefacts finish (and at each stage).
    Raises ExportError / TargetError (ValueErrors) on bad input and CheckpointError on a bad
    run; a target that fails to convert or to pass parity is reported in the result, not raised.
    """
    t0 = time.perf_counter()
    req = ExportRequest(run_dir=Path(run_dir), out=Path(out),
                        targets=parse_targets([targets] if isinstance(targets, str) else targets),
                        sparsities=parse_sparsities(sparsities), pruning=pruning, finetune_epochs=finetune_epochs,
                        calib=calib, qat=qat, force=force, parity_n=parity_n, engine=engine, clustering=clustering,
                        mitigation=mitigation, kd_alpha=kd_alpha, kd_temperature=kd_temperature,
                        prune_scope=prune_scope)
    ex = _Exporter(req, progress)
    results = ex.run()
    rep = ExportReport(run=str(req.run_dir), out=str(req.out), targets=req.targets, sparsities=req.sparsities,
                       pruning=pruning, finetune_epochs=finetune_epochs, calib=calib, qat=qat, results=results,
                       seconds=time.perf_counter() - t0, log=str(req.out / "export.log"), clustering=clustering,
                       mitigation=mitigation, prune_scope=prune_scope)
    ex.log.write(f"=== done in {rep.seconds:.1f} s: {rep.counts()}")
    return rep


def _restore_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
