"""``bench export``: a trained run -> the target × sparsity matrix of artefacts, each checked for parity.

Per sparsity level: prune + fine-tune (pruning.py) -> the level's PyTorch model (the parity
reference) -> TorchScript fp32/int8, ONNX fp32/fp16/int8 here, and one onnx2tf conversion in
a worker process for the four TFLite targets (overlapping the next level's fine-tune). Every
artefact is built in ``<out>/.staging/<name>``, measured (sparsity from the file, sizes,
I/O spec, parity through the agent's own code path) and only then renamed into place.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgefair.export import cache as _cache
from edgefair.export import manifest as _manifest
from edgefair.export.errors import ExportError
from edgefair.export.logs import ExportLog
from edgefair.export.targets import TARGETS, artefact_name, format_sparsity, missing_modules, parse_sparsities, parse_targets

ProgressFn = Callable[[int, int, str], None]  # (artefacts done, artefacts total, message)

STAGING = ".staging"
FAILED = ".failed"
DEFAULT_ENGINE = "x86"
PIP_NAMES = {"onnx2tf": "onnx2tf", "tensorflow": "tensorflow", "ai_edge_litert": "ai-edge-litert",
             "onnxruntime": "onnxruntime", "onnxruntime.quantization": "onnxruntime",
             "onnxconverter_common": "onnxconverter-common", "onnx": "onnx", "torch": "torch"}


@dataclass
class TargetResult:
    """What happened to one artefact (one target at one sparsity)."""

    name: str
    target: str
    sparsity: float
    status: str                      # converted | cached | failed | imported
    path: str | None = None
    reason: str | None = None        # one line, for failed
    seconds: float = 0.0
    manifest: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def to_dict(self, *, full: bool = False) -> dict[str, Any]:
        m = self.manifest or {}
        sp, f, par = m.get("sparsity") or {}, m.get("file") or {}, m.get("parity") or {}
        d = {"name": self.name, "target": self.target, "sparsity": self.sparsity, "status": self.status,
             "path": self.path, "reason": self.reason, "seconds": round(self.seconds, 3),
             "artifact_id": m.get("artifact_id"), "size_bytes": f.get("size_bytes"), "gzip_bytes": f.get("gzip_bytes"),
             "zip_bytes": f.get("zip_bytes"), "measured_sparsity": sp.get("measured"),
             "agreement": par.get("agreement"), "max_abs_logit_diff": par.get("max_abs_logit_diff"),
             "val_accuracy": par.get("val_accuracy"), "reference_val_accuracy": par.get("reference_val_accuracy"),
             "params": (m.get("params") or {}).get("total")}
        if full:
            d["manifest"] = m or None
        return d


@dataclass
class ExportReport:
    """All results of one ``export_matrix`` call."""

    run: str
    out: str
    targets: list[str]
    sparsities: list[float]
    pruning: str
    finetune_epochs: int
    calib: int
    qat: bool
    results: list[TargetResult]
    seconds: float
    log: str

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> list[TargetResult]:
        return [r for r in self.results if r.status == "failed"]

    def counts(self) -> dict[str, int]:
        c = {"converted": 0, "cached": 0, "failed": 0}
        for r in self.results:
            c[r.status] = c.get(r.status, 0) + 1
        return c

    def to_dict(self, *, full: bool = False) -> dict[str, Any]:
        return {"ok": self.ok, "run": self.run, "out": self.out, "targets": self.targets, "sparsities": self.sparsities,
                "pruning": self.pruning, "finetune_epochs": self.finetune_epochs, "calib": self.calib, "qat": self.qat,
                "counts": self.counts(), "seconds": round(self.seconds, 3), "log": self.log,
                "results": [r.to_dict(full=full) for r in self.results]}


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    msg = f"{type(e).__name__}: {first}" if first else type(e).__name__
    return msg if len(msg) <= 300 else msg[:297] + "..."


# ------------------------------------------------------------------ data of one export


@dataclass
class _Data:
    train: tuple[np.ndarray, np.ndarray]    # NCHW float32, labels
    val_u8: np.ndarray                     # uint8 NHWC (agent input)
    val_nchw: np.ndarray
    val_y: np.ndarray
    calib_u8: np.ndarray
    calib_nchw: np.ndarray
    notes: list[str]


def _load_data(meta, *, calib: int, parity_n: int, log: ExportLog) -> _Data:
    from edgefair.data.preprocess import labels_of, normalise_nhwc, samples_to_uint8
    from edgefair.data.registry import load_dataset

    spec = (meta.dataset or {}).get("spec")
    if not spec:
        raise ExportError("the run's model.json names no dataset spec: cannot fine-tune, calibrate or check parity")
    ds = load_dataset(spec, seed=meta.seed)
    fp = (meta.dataset or {}).get("fingerprint")
    if fp and ds.fingerprint() != fp:
        raise ExportError(f"dataset '{spec}' no longer matches the run's fingerprint (data changed since training)")
    prep = meta.prep
    notes: list[str] = []
    train, val = ds.split("train"), ds.split("val")
    tr_u8 = samples_to_uint8(train, prep)
    tr_x = np.ascontiguousarray(normalise_nhwc(tr_u8, prep).transpose(0, 3, 1, 2))
    tr_y = labels_of(train)
    idx = np.sort(np.random.default_rng(0).permutation(len(val))[:parity_n])
    if len(val) < parity_n:
        notes.append(f"parity sample: the validation split has {len(val)} images (< {parity_n} asked)")
    val_s = [val[i] for i in idx]
    val_u8 = samples_to_uint8(val_s, prep)
    val_nchw = np.ascontiguousarray(normalise_nhwc(val_u8, prep).transpose(0, 3, 1, 2))
    cidx = np.sort(np.random.default_rng(1).permutation(len(train))[:calib])
    if len(train) < calib:
        notes.append(f"calibration: the training split has {len(train)} images (< {calib} asked)")
    calib_u8 = tr_u8[cidx]
    log.write(f"data: {spec} train={len(train)} parity={len(val_s)} calib={len(cidx)}")
    return _Data(train=(tr_x, tr_y), val_u8=val_u8, val_nchw=val_nchw, val_y=labels_of(val_s),
                 calib_u8=calib_u8, calib_nchw=np.ascontiguousarray(tr_x[cidx]), notes=notes)


# ------------------------------------------------------------------ one sparsity level


@dataclass
class _Level:
    sparsity: float
    model: Any                       # the pruned + fine-tuned PyTorch model (parity reference)
    info: Any                        # PruneInfo
    ref_logits: np.ndarray
    qat_model: Any = None            # QAT GraphModule (fake-quant) when --qat
    qat_float: Any = None            # its float view (QAT weights, fake-quant off)
    qat_ref_logits: np.ndarray | None = None
    onnx_path: Path | None = None
    qat_onnx_path: Path | None = None
    tflite_jobs: list[tuple[list[str], Future | None, str | None, bool]] = field(default_factory=list)


class _Exporter:
    def __init__(self, run_dir: Path, out: Path, *, targets: list[str], sparsities: list[float], pruning: str,
                 finetune_epochs: int, calib: int, qat: bool, force: bool, parity_n: int, engine: str,
                 progress: ProgressFn | None):
        self.run_dir, self.out = run_dir, out
        self.targets, self.sparsities = targets, sparsities
        self.pruning, self.epochs, self.calib, self.qat, self.force = pruning, finetune_epochs, calib, qat, force
        self.parity_n, self.engine = parity_n, engine
        self._progress = progress
        self.log = ExportLog(out / "export.log")
        self.results: dict[tuple[str, float], TargetResult] = {}
        self.total = len(targets) * len(sparsities)
        self.pool = None
        self.work = out / STAGING / f"work-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    # -- progress -----------------------------------------------------------------
    def say(self, message: str) -> None:
        self.log.write(message)
        if self._progress is not None:
            done = sum(1 for r in self.results.values())
            self._progress(done, self.total, message)

    def record(self, r: TargetResult) -> None:
        self.results[(r.target, r.sparsity)] = r
        if r.status == "failed":
            self.log.write(f"FAILED {r.name}: {r.reason}")
        self.say(f"{r.name}: {r.status}" + (f" ({r.reason})" if r.reason else ""))

    def fail(self, targets: Sequence[str], sparsity: float, reason: str, t0: float) -> None:
        for t in targets:
            if (t, sparsity) not in self.results:
                self.record(TargetResult(artefact_name(t, sparsity), t, sparsity, "failed", None, reason,
                                         time.perf_counter() - t0))

    # -- keys -----------------------------------------------------------------------
    def key(self, target: str, sparsity: float) -> str:
        t = TARGETS[target]
        calibrated = target in ("torch-int8", "onnx-int8", "tflite-int8")
        return _cache.cache_key(
            checkpoint_sha256=self.meta.checkpoint_sha256, target=target, sparsity=sparsity, pruning=self.pruning,
            finetune_epochs=self.epochs if (sparsity > 0 or (self.qat and t.is_int8)) else 0,
            calib=self.calib if calibrated else 0, qat=self.qat and t.is_int8, parity_n=self.parity_n,
            extra={"engine": self.engine} if target == "torch-int8" else None)

    # -- main -----------------------------------------------------------------------
    def run(self) -> list[TargetResult]:
        from edgefair.models.checkpoint import load_run

        self.model, self.meta = load_run(self.run_dir)  # CheckpointError on a missing/mismatched checkpoint
        self.out.mkdir(parents=True, exist_ok=True)
        self._clean_stale()
        self.log.write(f"=== export {self.run_dir} -> {self.out}: targets={self.targets} sparsities={self.sparsities} "
                       f"pruning={self.pruning} finetune_epochs={self.epochs} calib={self.calib} qat={self.qat} "
                       f"force={self.force} code={_cache.code_version()}")
        pending: dict[float, list[str]] = {}
        for s in self.sparsities:
            for t in self.targets:
                name = artefact_name(t, s)
                k = self.key(t, s)
                m = None if self.force else _cache.cached_manifest(self.out / name, k)
                if m is not None:
                    self.record(TargetResult(name, t, s, "cached", str(self.out / name), None, 0.0, m))
                else:
                    pending.setdefault(s, []).append(t)
        if not pending:
            return self._ordered()
        completed = False
        try:
            self.say("loading data")
            self.data = _load_data(self.meta, calib=self.calib, parity_n=self.parity_n, log=self.log)
            self.work.mkdir(parents=True, exist_ok=True)
            from edgefair.export.pruning import dense_weight_count

            self.dense_weights = dense_weight_count(self.model)
            if any(TARGETS[t].format == "tflite" for ts in pending.values() for t in ts):
                from edgefair.export.tflite_convert import TFLitePool

                self.calib_npy = self.work / "calib_nhwc.npy"
                np.save(self.calib_npy, (self.data.calib_u8.astype(np.float32) / np.float32(255.0)))
                self.pool = TFLitePool(self.out / "export.log")
            levels: list[_Level] = []
            for s in sorted(pending):
                lvl = self._level(s, pending[s])
                if lvl is not None:
                    levels.append(lvl)
                    self._collect_tflite(levels, wait=False)
            self._collect_tflite(levels, wait=True)
            completed = True
        finally:
            if self.pool is not None:  # on an error or Ctrl-C, do not wait for a conversion nobody will use
                self.pool.close(timeout=30 if completed else 0)
            shutil.rmtree(self.work, ignore_errors=True)
            try:
                (self.out / STAGING).rmdir()  # only when empty
            except OSError:
                pass
        return self._ordered()

    def _ordered(self) -> list[TargetResult]:
        return [self.results[(t, s)] for s in self.sparsities for t in self.targets if (t, s) in self.results]

    def _clean_stale(self) -> None:
        st = self.out / STAGING
        if st.is_dir():
            for p in st.iterdir():
                m = re.match(r"work-(\d+)-", p.name)
                alive = False
                if m:
                    try:
                        os.kill(int(m.group(1)), 0)
                        alive = int(m.group(1)) != os.getpid()
                    except OSError:
                        alive = False
                if not alive and time.time() - p.stat().st_mtime > 60:
                    shutil.rmtree(p, ignore_errors=True)

    # -- one sparsity level ---------------------------------------------------------
    def _level(self, s: float, targets: list[str]) -> _Level | None:
        import torch

        from edgefair.export import onnx_export, pruning, torch_quant
        from edgefair.models.training import predict_logits

        t0 = time.perf_counter()
        tag = f"s{format_sparsity(s)}"
        prep = self.meta.prep
        example = torch.zeros(1, prep.channels, prep.size, prep.size)
        try:
            what = f"{self.pruning} pruning + fine-tune ({self.epochs} epoch{'s' if self.epochs != 1 else ''})" if s > 0 else "dense model"
            self.say(f"{tag}: {what}")
            with self.log.quiet(f"{tag}: prune", fds=False):
                model, info = pruning.prepare_level(
                    self.model, s, self.pruning, self.data.train, epochs=self.epochs, example=example,
                    seed=self.meta.seed,
                    progress=lambda e, n: self.log.write(f"{tag}: fine-tune epoch {e}/{n}"))
            lvl = _Level(s, model, info, predict_logits(model, self.data.val_nchw))
            self.log.write(f"{tag}: pruned ({info.schedule}); torch zero fraction {info.torch_zero_fraction:.4f}, "
                           f"params {info.params_after}/{info.params_before}")
        except Exception as e:
            self.fail(targets, s, f"pruning/fine-tune failed: {_one_line(e)}", t0)
            return None
        int8_targets = [t for t in targets if TARGETS[t].is_int8]
        if self.qat and int8_targets:
            try:
                self.say(f"{tag}: quantisation-aware fine-tune ({self.epochs} epoch{'s' if self.epochs != 1 else ''})")
                with self.log.quiet(f"{tag}: QAT", fds=False):
                    qm, twin = torch_quant.prepare_qat(model, example, engine=self.engine)
                    pruning.finetune(qm, self.data.train, self.epochs, seed=self.meta.seed,
                                     after_step=torch_quant.sparsity_keeper(qm))
                    qm.eval()
                    lvl.qat_model = qm
                    lvl.qat_float = twin.eval()  # shares the QAT-trained weights and BN statistics
                    lvl.qat_ref_logits = predict_logits(lvl.qat_float, self.data.val_nchw)
            except Exception as e:
                self.fail(int8_targets, s, f"quantisation-aware fine-tune failed: {_one_line(e)}", t0)
                targets = [t for t in targets if t not in int8_targets]
        # ONNX float export: the source of every ONNX and TFLite target
        need_onnx = [t for t in targets if TARGETS[t].format in ("onnx", "tflite")]
        lvl_dir = self.work / tag
        lvl_dir.mkdir(parents=True, exist_ok=True)
        if need_onnx:
            try:
                with self.log.quiet(f"{tag}: torch.onnx.export"):
                    lvl.onnx_path = onnx_export.export_onnx(model, lvl_dir / "model.onnx", channels=prep.channels, size=prep.size)
            except Exception as e:
                self.fail(need_onnx, s, f"ONNX export failed: {_one_line(e)}", t0)
                targets = [t for t in targets if t not in need_onnx]
        qat_onnx = [t for t in targets if TARGETS[t].format in ("onnx", "tflite") and TARGETS[t].is_int8]
        if self.qat and lvl.qat_float is not None and qat_onnx:
            try:
                with self.log.quiet(f"{tag}: torch.onnx.export (QAT weights)"):
                    (lvl_dir / "qat").mkdir(exist_ok=True)
                    lvl.qat_onnx_path = onnx_export.export_onnx(lvl.qat_float, lvl_dir / "qat" / "model.onnx",
                                                                channels=prep.channels, size=prep.size)
            except Exception as e:
                self.fail(qat_onnx, s, f"ONNX export of the QAT model failed: {_one_line(e)}", t0)
                targets = [t for t in targets if t not in qat_onnx]
        # TFLite: one onnx2tf run per source model, in the worker
        tfl = [t for t in targets if TARGETS[t].format == "tflite"]
        if tfl:
            self._submit_tflite(lvl, tfl, lvl_dir)
        for t in targets:
            if TARGETS[t].format == "torch":
                self._build(lvl, t, self._make_torch)
            elif TARGETS[t].format == "onnx":
                self._build(lvl, t, self._make_onnx)
        return lvl

    def _submit_tflite(self, lvl: _Level, tfl: list[str], lvl_dir: Path) -> None:
        prep = self.meta.prep
        mean = [prep.mean] * prep.channels
        std = [prep.std] * prep.channels
        groups: list[tuple[list[str], Path, bool]] = []
        if self.qat and lvl.qat_onnx_path is not None:
            groups.append(([t for t in tfl if not TARGETS[t].is_int8], lvl.onnx_path, False))
            groups.append(([t for t in tfl if TARGETS[t].is_int8], lvl.qat_onnx_path, True))
        else:
            groups.append((tfl, lvl.onnx_path, False))
        for want, src, is_qat in groups:
            if not want:
                continue
            work = src.parent / ("tflite-qat" if is_qat else "tflite")
            try:
                fut = self.pool.submit(src, work, self.calib_npy if "tflite-int8" in want else None, mean, std,
                                       "input", want)
                lvl.tflite_jobs.append((want, fut, None, is_qat))
                self.say(f"s{format_sparsity(lvl.sparsity)}: onnx2tf conversion queued ({', '.join(want)})")
            except Exception as e:
                lvl.tflite_jobs.append((want, None, f"onnx2tf could not be started: {_one_line(e)}", is_qat))

    def _collect_tflite(self, levels: list[_Level], *, wait: bool) -> None:
        for lvl in levels:
            rest = []
            for want, fut, err, is_qat in lvl.tflite_jobs:
                t0 = time.perf_counter()
                if fut is not None and not fut.done() and not wait:
                    rest.append((want, fut, err, is_qat))
                    continue
                if fut is not None:
                    self.say(f"s{format_sparsity(lvl.sparsity)}: waiting for onnx2tf ({', '.join(want)})")
                    try:
                        res = fut.result()
                    except Exception as e:
                        from edgefair.export.tflite_convert import ConverterError, WorkerDied

                        err = (str(e) if isinstance(e, WorkerDied) else
                               f"onnx2tf failed: {e}" if isinstance(e, ConverterError) else
                               f"onnx2tf failed: {_one_line(e)}")
                if err is not None:
                    self.fail(want, lvl.sparsity, err, t0)
                    continue
                for t in want:
                    if t in res["errors"]:
                        self.fail([t], lvl.sparsity, res["errors"][t], t0)
                    else:
                        path = Path(res["files"][t])
                        self._build(lvl, t, lambda lvl, t, d, p=path, q=is_qat: self._make_tflite(lvl, t, d, p, q))
            lvl.tflite_jobs = rest

    # -- per-target producers: write the model file into the staging folder -----------
    def _make_torch(self, lvl: _Level, target: str, folder: Path) -> dict[str, Any]:
        from edgefair.export import torch_quant

        prep = self.meta.prep
        notes: list[str] = []
        extra: dict[str, Any] = {}
        with self.log.quiet(f"{target} s{format_sparsity(lvl.sparsity)}"):
            if target == "torch-fp32":
                torch_quant.save_torchscript(lvl.model, folder / "model.pt", channels=prep.channels, size=prep.size)
            else:
                if self.qat and lvl.qat_model is not None:
                    q = torch_quant.convert_qat(lvl.qat_model)
                    notes.append(f"quantisation-aware fine-tune (torch.ao fake-quant, {self.epochs} epoch(s)); "
                                 "int8 weights and activation ranges are the QAT ones")
                else:
                    q = torch_quant.ptq_int8(lvl.model, self.data.calib_nchw, engine=self.engine)
                    notes.append(f"post-training static int8 (torch.ao FX), calibrated on {len(self.data.calib_nchw)} training images")
                torch_quant.save_torchscript(q, folder / "model.pt", channels=prep.channels, size=prep.size)
                notes.append(f"quantized engine '{self.engine}': load with torch.backends.quantized.engine = '{self.engine}' "
                             "(qnnpack on ARM needs a re-export with engine='qnnpack')")
                extra["quantization"] = {"tool": "torch.ao.quantization.quantize_fx", "engine": self.engine,
                                         "qat": bool(self.qat and lvl.qat_model is not None)}
        spec_in = {"name": "input", "shape": [1, prep.channels, prep.size, prep.size], "layout": "NCHW",
                   "dtype": "float32", "quant": None}
        spec_out = {"name": "logits", "shape": [1, int(lvl.ref_logits.shape[1])], "dtype": "float32", "quant": None}
        return {"model_file": "model.pt", "input": spec_in, "output": spec_out, "notes": notes, "extra": extra}

    def _make_onnx(self, lvl: _Level, target: str, folder: Path) -> dict[str, Any]:
        from edgefair.export import onnx_export, onnx_quant

        notes: list[str] = []
        extra: dict[str, Any] = {}
        dst = folder / "model.onnx"
        with self.log.quiet(f"{target} s{format_sparsity(lvl.sparsity)}"):
            if target == "onnx-fp32":
                shutil.copyfile(lvl.onnx_path, dst)
            elif target == "onnx-fp16":
                onnx_export.to_fp16(lvl.onnx_path, dst)
                notes.append("float16 weights and compute (onnxconverter-common, keep_io_types): input/output stay float32")
            else:
                src = lvl.qat_onnx_path if (self.qat and lvl.qat_onnx_path is not None) else lvl.onnx_path
                extra["quantization"] = onnx_quant.quantize_int8(src, dst, self.data.calib_nchw)
                notes.append(f"static QDQ int8, per-channel 7-bit weights (reduce_range: avoids u8s8 saturation on x86 "
                             f"without VNNI), calibrated (MinMax) on {len(self.data.calib_nchw)} training images; "
                             "input/output stay float32")
                if src is lvl.qat_onnx_path:
                    notes.append("--qat: weights from the quantisation-aware fine-tune, but onnxruntime re-calibrates the "
                                 "activation ranges: ONNX QDQ from this exporter cannot carry torch.ao's learned ranges")
        spec_in, spec_out = _manifest.onnx_io(dst)
        spec_in["layout"] = "NCHW"
        return {"model_file": "model.onnx", "input": spec_in, "output": spec_out, "notes": notes, "extra": extra}

    def _make_tflite(self, lvl: _Level, target: str, folder: Path, src: Path, is_qat: bool) -> dict[str, Any]:
        notes: list[str] = []
        extra: dict[str, Any] = {"converter": "onnx2tf"}
        shutil.copyfile(src, folder / "model.tflite")
        with self.log.quiet():
            spec_in, spec_out = _manifest.tflite_io(folder / "model.tflite")
        spec_in["layout"] = "NHWC"
        prep = self.meta.prep
        if target == "tflite-int8":
            notes.append(f"full-integer int8 with int8 input/output (onnx2tf), calibrated on {len(self.data.calib_u8)} "
                         f"training images fed as (pixel/255 - {prep.mean:g})/{prep.std:g}; the input scale/zero-point "
                         "apply to that normalised value")
            extra["quantization"] = {"tool": "onnx2tf full_integer_quant", "input_quant_dtype": "int8",
                                     "output_quant_dtype": "int8", "quant_type": "per-channel",
                                     "calibration_images": int(len(self.data.calib_u8)),
                                     "calibration_mean": prep.mean, "calibration_std": prep.std}
        elif target == "tflite-fp16":
            notes.append("float16 weights (dequantised to float32 at load); input/output float32")
        elif target == "tflite-dynamic":
            notes.append("dynamic-range quantisation: int8 weights, float32 activations and I/O")
        if is_qat:
            notes.append("--qat: weights from the quantisation-aware fine-tune; TFLite's converter re-derives the "
                         "ranges (it cannot take torch.ao's fake-quant ranges from ONNX)" if target == "tflite-int8" else
                         "--qat: weights from the quantisation-aware fine-tune")
        return {"model_file": "model.tflite", "input": spec_in, "output": spec_out, "notes": notes, "extra": extra}

    # -- common build: produce -> measure -> manifest -> parity -> publish -----------
    def _build(self, lvl: _Level, target: str, produce: Callable[[_Level, str, Path], dict[str, Any]]) -> None:
        from edgefair.export import parity as _parity
        from edgefair.export.sparsity import weight_stats

        t0 = time.perf_counter()
        s = lvl.sparsity
        name = artefact_name(target, s)
        tdef = TARGETS[target]
        self.say(f"{name}: building")
        staging = self.out / STAGING / f"{name}-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
        try:
            try:
                made = produce(lvl, target, staging)
            except Exception as e:
                raise _Fail(f"{_converter_of(target)} failed: {_one_line(e)}") from None
            model_path = staging / made["model_file"]
            with self.log.quiet():
                ws = weight_stats(model_path, tdef.format)
            dense = max(self.dense_weights, ws.total)
            measured = max(0.0, min(1.0, 1.0 - (ws.total - ws.zeros) / dense)) if dense else 0.0
            use_qat = bool(self.qat and tdef.is_int8 and lvl.qat_model is not None)
            ref_logits = lvl.qat_ref_logits if use_qat else lvl.ref_logits
            from edgefair.export.pruning import param_count

            total, nonzero = param_count(lvl.qat_float if use_qat else lvl.model)
            prep = self.meta.prep
            notes = list(made.get("notes", [])) + list(self.data.notes)
            if s == 0 and tdef.is_int8 and ws.zeros:
                notes.append(f"measured sparsity at s0 counts {ws.zeros} weights that int8 rounding sent to zero")
            if lvl.info.method == "structured":
                notes.append(f"structured: {s:g} of each layer's channels removed; measured sparsity = weights removed "
                             f"or zero relative to the dense model ({dense} kernel weights)")
            m: dict[str, Any] = {
                "name": name, "target": target, "format": tdef.format, "precision": tdef.precision,
                "model_file": made["model_file"],
                "sparsity": {"requested": float(s), "measured": round(measured, 6), "method": lvl.info.method,
                             "zero_fraction": round(ws.zero_fraction, 6),
                             "weights": {"total": ws.total, "zeros": ws.zeros, "tensors": ws.tensors, "dense_total": dense},
                             "definition": "1 - nonzero rank>=2 weights in the file / kernel weights of the dense model"},
                "input": made["input"], "output": made["output"],
                "class_names": list(self.meta.class_names),
                "preprocessing": {"size": prep.size, "channels": prep.channels, "mean": prep.mean, "std": prep.std},
                "source": {"run": str(self.run_dir), "checkpoint_sha256": self.meta.checkpoint_sha256,
                           "arch": self.meta.arch, "arch_kwargs": self.meta.arch_kwargs,
                           "dataset": (self.meta.dataset or {}).get("spec"),
                           "reference": ("QAT float model (fake-quant off)" if use_qat else "PyTorch model")
                           + (f" after {lvl.info.method} pruning to {s:g} and {lvl.info.finetune_epochs} fine-tune epoch(s)"
                              if s > 0 else " (dense checkpoint)")},
                "file": _manifest.file_info(model_path),
                "params": {"total": int(total), "nonzero": int(nonzero)},
                "parity": None,
                "tools": _manifest.tool_versions(),
                "qat": use_qat,
                "notes": notes,
                "export": {"cache_key": self.key(target, s), "code_version": _cache.code_version(),
                           "pruning": lvl.info.to_dict(), "finetune_epochs": lvl.info.finetune_epochs,
                           "calib": self.calib, "parity_n": self.parity_n, **made.get("extra", {})},
            }
            _manifest.write_manifest(staging, _manifest.finalize(m))
            # parity through the agent's own code path
            try:
                logits, runtime = _parity.run_artifact(staging, m, self.data.val_u8, quiet=self.log.quiet)
            except Exception as e:
                raise _Fail(f"the agent cannot run the artefact: {_one_line(e)}") from None
            gate = _parity.FP32_GATE if tdef.is_fp32 else None
            par = _parity.compare(logits, ref_logits, self.data.val_y, reference=m["source"]["reference"],
                                  runtime=runtime, gate=gate)
            m["parity"] = par.to_dict()
            m = _manifest.finalize(m)
            _manifest.write_manifest(staging, m)
            if not par.passed:
                ref_model = lvl.model
                from edgefair.models.training import predict_logits

                cause = _parity.diagnose(logits, self.data.val_u8, m["preprocessing"],
                                         lambda x: predict_logits(ref_model, x))
                kept = self._keep_failed(staging, name)
                raise _Fail(f"parity: top-1 agreement {par.agreement:.4f} < {gate} with the PyTorch model "
                            f"(max |logit diff| {par.max_abs_logit_diff:.3g}); {cause}; kept in {kept}")
            final = self._publish(staging, name)
            self.record(TargetResult(name, target, s, "converted", str(final), None, time.perf_counter() - t0, m))
        except _Fail as e:
            self.record(TargetResult(name, target, s, "failed", None, str(e), time.perf_counter() - t0))
        except Exception as e:  # anything else in measuring/publishing: still one target, one line
            self.record(TargetResult(name, target, s, "failed", None, _one_line(e), time.perf_counter() - t0))
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _keep_failed(self, staging: Path, name: str) -> Path:
        dst = self.out / FAILED / name
        shutil.rmtree(dst, ignore_errors=True)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staging, dst)
        return dst

    def _publish(self, staging: Path, name: str) -> Path:
        """Rename the finished folder into place; an older artefact of that name is swapped out first."""
        final = self.out / name
        old = None
        if final.exists():
            old = self.out / STAGING / f"old-{name}-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
        os.replace(staging, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(self.out / FAILED / name, ignore_errors=True)
        return final


class _Fail(Exception):
    """A target failed; the message is the one-line reason."""


def _converter_of(target: str) -> str:
    return {"torch-fp32": "torch.jit.trace", "torch-int8": "torch.ao quantization",
            "onnx-fp32": "torch.onnx.export", "onnx-fp16": "onnxconverter-common float16",
            "onnx-int8": "onnxruntime quantize_static"}.get(target, "onnx2tf")


# ------------------------------------------------------------------ public API


def import_artifact(file: Path | str, like_run: Path | str, out: Path | str, **kwargs: Any) -> TargetResult:
    """Wrap a user's .onnx/.tflite as an artefact (see :func:`edgefair.export.importer.import_artifact`)."""
    from edgefair.export.importer import import_artifact as _import

    return _import(file, like_run, out, **kwargs)


def export_matrix(run_dir: Path | str, *, targets: Sequence[str] | str, sparsities: Sequence[float] | str | float,
                  out: Path | str, pruning: str = "unstructured", finetune_epochs: int = 1, calib: int = 256,
                  qat: bool = False, force: bool = False, parity_n: int = 512, engine: str = DEFAULT_ENGINE,
                  progress: ProgressFn | None = None) -> ExportReport:
    """Export ``run_dir`` to every target × sparsity under ``out`` and check each artefact's parity.

    ``targets``: names or ``all``; ``sparsities``: values in [0, 1) (``"0,0.5,0.9"`` works).
    ``progress(done, total, message)`` is called as artefacts finish (and at each stage).
    Raises ExportError (a ValueError) on bad input and CheckpointError on a bad run; a
    target that fails to convert or to pass parity is reported in the result, not raised.
    """
    t0 = time.perf_counter()
    tlist = parse_targets([targets] if isinstance(targets, str) else targets)
    slist = parse_sparsities(sparsities)
    if pruning not in ("unstructured", "structured"):
        raise ExportError(f"unknown pruning method '{pruning}': expected unstructured or structured")
    if not isinstance(finetune_epochs, int) or finetune_epochs < 0:
        raise ExportError(f"finetune epochs must be an integer >= 0, got {finetune_epochs!r}")
    if not isinstance(calib, int) or calib < 1:
        raise ExportError(f"calibration image count must be >= 1, got {calib!r}")
    if not isinstance(parity_n, int) or parity_n < 1:
        raise ExportError(f"parity sample size must be >= 1, got {parity_n!r}")
    if qat and finetune_epochs < 1:
        raise ExportError("--qat needs at least one fine-tune epoch (--finetune-epochs >= 1)")
    if engine not in ("x86", "fbgemm", "qnnpack", "onednn"):
        raise ExportError(f"unknown quantized engine '{engine}': expected x86, fbgemm, qnnpack or onednn")
    missing = missing_modules(tlist)
    if missing:
        t, mods = next(iter(missing.items()))
        pkgs = " ".join(dict.fromkeys(PIP_NAMES.get(m, m) for m in mods))
        raise ExportError(f"target {t} needs {', '.join(mods)}, which is not installed (pip install {pkgs})")
    run_dir, out = Path(run_dir), Path(out)
    ex = _Exporter(run_dir, out, targets=tlist, sparsities=slist, pruning=pruning, finetune_epochs=finetune_epochs,
                   calib=calib, qat=qat, force=force, parity_n=parity_n, engine=engine, progress=progress)
    results = ex.run()
    rep = ExportReport(run=str(run_dir), out=str(out), targets=tlist, sparsities=slist, pruning=pruning,
                       finetune_epochs=finetune_epochs, calib=calib, qat=qat, results=results,
                       seconds=time.perf_counter() - t0, log=str(out / "export.log"))
    ex.log.write(f"=== done in {rep.seconds:.1f} s: {rep.counts()}")
    return rep
