"""ONNX -> TFLite with onnx2tf, one conversion per sparsity level for all four TFLite targets.

onnx2tf and TensorFlow run in a separate worker process (spawned once per export, its
stdout/stderr — C++ logging included — pointed at ``export.log`` before anything is
imported). That keeps the terminal clean, keeps TensorFlow's ~1 GB and global state out of
the caller, lets the next level's fine-tune run while a level converts, and turns a crash
inside the converter into a failed target rather than a dead CLI.

Calibration for full-integer quantisation: NHWC float32 in [0, 1] (pixel/255) saved as
``.npy``; the representative data fed to the converter is (x − mean)/std, exactly what the
agent computes before it quantises with the TFLite input scale/zero-point.
"""

from __future__ import annotations

import collections
import os
import re
import sys
from concurrent.futures import Future
from pathlib import Path
from typing import Any

# onnx2tf output suffix -> target
VARIANTS = {
    "tflite-fp32": "_float32.tflite",
    "tflite-fp16": "_float16.tflite",
    "tflite-dynamic": "_dynamic_range_quant.tflite",
    "tflite-int8": "_full_integer_quant.tflite",
}


def warm_up() -> str:
    """Import onnx2tf/TensorFlow ahead of the first conversion (overlaps the first fine-tune)."""
    import onnx2tf  # noqa: F401
    import tensorflow as tf

    return tf.__version__


def convert(onnx_path: str, work_dir: str, calib_npy: str | None, mean: list[float], std: list[float],
            want: list[str]) -> dict[str, Any]:
    """One onnx2tf run (+ one calibrated int8 conversion); {target: tflite path} for ``want``, and errors.

    onnx2tf writes the float32/float16 files (and the dynamic-range one when asked) and the
    saved model. Full-integer int8 is then converted once from that saved model with
    TensorFlow's own converter (:func:`full_integer_quant`), instead of onnx2tf's
    ``output_integer_quantized_tflite``, which runs four calibrated conversions (integer,
    full integer and two int16-activation variants) of which only one is used. Raises when
    onnx2tf fails as a whole; a variant that was not written is reported in ``errors``.
    """
    import onnx2tf

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = dict(
        input_onnx_file_path=onnx_path, output_folder_path=str(work), non_verbose=True,
        output_signaturedefs=True, output_dynamic_range_quantized_tflite="tflite-dynamic" in want)
    print(f"onnx2tf.convert({onnx_path}) -> {work} want={want}", flush=True)
    _run_logged(lambda: onnx2tf.convert(**kwargs))
    stem = Path(onnx_path).stem
    out: dict[str, Any] = {"files": {}, "errors": {}}
    if "tflite-int8" in want:
        if calib_npy is None:
            raise ValueError("full-integer quantisation needs calibration data")
        try:
            full_integer_quant(work, work / f"{stem}{VARIANTS['tflite-int8']}", calib_npy, mean, std)
        except Exception as e:  # the other variants are still good
            out["errors"]["tflite-int8"] = f"TFLiteConverter full-integer quantisation failed: {_first_line(e)}"
    for target in want:
        p = work / f"{stem}{VARIANTS[target]}"
        if p.exists() and p.stat().st_size > 0:
            out["files"][target] = str(p)
        else:
            out["errors"].setdefault(target, f"onnx2tf wrote no {p.name} (see export.log)")
    sys.stdout.flush()
    return out


def _first_line(e: BaseException) -> str:
    first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _run_logged(fn: Any) -> None:
    """Run onnx2tf with its stdout teed, so its own last ERROR line becomes the failure reason."""
    tee = _Tee(sys.stdout)
    sys.stdout = tee
    try:
        fn()
    except SystemExit as e:  # onnx2tf calls sys.exit(1) after printing the reason
        raise RuntimeError(tee.last_error() or f"onnx2tf exited with status {e.code}") from None
    except Exception as e:
        reason = tee.last_error()
        if reason:
            raise RuntimeError(f"{reason} ({type(e).__name__})") from None
        raise
    finally:
        sys.stdout = tee.inner


def full_integer_quant(saved_model: Path, dst: Path, calib_npy: str, mean: list[float], std: list[float]) -> Path:
    """Full-integer int8 (int8 input and output, per-channel weights) from onnx2tf's saved model.

    The settings are onnx2tf's own for ``_full_integer_quant.tflite`` (TFLITE_BUILTINS_INT8
    with SELECT_TF_OPS, per-channel, representative data (x - mean)/std one image at a
    time), so the file is the one onnx2tf would have written.
    """
    import numpy as np
    import tensorflow as tf

    calib = np.load(calib_npy)
    mean_a = np.asarray(mean, np.float32).reshape(1, 1, 1, -1)
    std_a = np.asarray(std, np.float32).reshape(1, 1, 1, -1)
    signature = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    (input_key,) = signature.structured_input_signature[1].keys()

    def representative() -> Any:
        for i in range(calib.shape[0]):
            yield {input_key: tf.convert_to_tensor((calib[i:i + 1] - mean_a) / std_a, tf.float32)}

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.SELECT_TF_OPS]
    converter._experimental_disable_per_channel = False
    converter.representative_dataset = representative
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    dst.write_bytes(converter.convert())
    return dst


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _Tee:
    """sys.stdout wrapper that remembers onnx2tf's last ERROR line (its own reason for failing)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.tail: collections.deque[str] = collections.deque(maxlen=200)
        self._buf = ""

    def write(self, text: str) -> int:
        self.inner.write(text)
        self._buf += text
        *lines, self._buf = self._buf.split("\n")
        self.tail.extend(lines)
        return len(text)

    def flush(self) -> None:
        self.inner.flush()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def last_error(self) -> str | None:
        for line in reversed(list(self.tail) + [self._buf]):
            clean = _ANSI.sub("", line).strip()
            if "ERROR" in clean.upper() and len(clean) > 6:
                clean = clean.split("ERROR:", 1)[-1].strip() or clean
                return "onnx2tf: " + (clean if len(clean) < 250 else clean[:247] + "...")
        return None


class ConverterError(RuntimeError):
    """onnx2tf failed in the worker; the message is its own one-line reason."""


class WorkerDied(RuntimeError):
    """The converter process ended while a job was pending."""


def split_cores(cores: int) -> tuple[int, int]:
    """(converter threads, exporting process threads). The fine-tune is most of the export's
    time and keeps every core; onnx2tf, a few seconds per level beside it, keeps half of them
    (TensorFlow spreading over all cores as well oversubscribed the machine two to one)."""
    return max(1, cores // 2), max(1, cores)


class TFLitePool:
    """One worker process (``python -m edgefair.export.tflite_convert``) that runs onnx2tf jobs in order.

    Jobs go to its stdin as JSON lines; results come back on a separate pipe (its fd 1/2 are
    the export log). A plain subprocess rather than multiprocessing, so nothing depends on
    the caller's ``__main__`` being importable.
    """

    def __init__(self, log_path: Path, *, threads: int = 0):
        import subprocess
        import threading

        self._futures: dict[int, Future] = {}
        self._lock = threading.Lock()
        self._next = 0
        r, w = os.pipe()
        env = dict(os.environ, EDGEFAIR_RESULT_FD=str(w), TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
        env.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
        env.setdefault("CUDA_VISIBLE_DEVICES", "")
        if threads:  # its share of the cores: the exporting process fine-tunes the next level meanwhile
            for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
                env.setdefault(name, str(threads))
            env.setdefault("TF_NUM_INTEROP_THREADS", "1")
        with open(log_path, "ab") as log:
            self._proc = subprocess.Popen([sys.executable, "-m", "edgefair.export.tflite_convert"],
                                          stdin=subprocess.PIPE, stdout=log, stderr=log, pass_fds=(w,), env=env,
                                          start_new_session=False)
        os.close(w)
        self._results = os.fdopen(r, "r", encoding="utf-8")
        self._reader = threading.Thread(target=self._read, name="onnx2tf-results", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        import json

        with self._results:  # closed at EOF (the worker exited): no ResourceWarning for the pipe
            for line in self._results:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                with self._lock:
                    fut = self._futures.pop(msg.get("id"), None)
                if fut is None:
                    continue
                if msg.get("ok"):
                    fut.set_result(msg["result"])
                else:
                    fut.set_exception(ConverterError(msg.get("error") or "unknown error"))
        code = self._proc.wait()
        how = f"signal {-code}" if code < 0 else f"exit status {code}"
        with self._lock:
            pending, self._futures = self._futures, {}
        for fut in pending.values():
            fut.set_exception(WorkerDied(f"onnx2tf worker process died ({how}; crash or out of memory? "
                                         "see export.log)"))

    def submit(self, onnx_path: Path, work_dir: Path, calib_npy: Path | None, mean: list[float],
               std: list[float], want: list[str]) -> Future:
        import json

        fut: Future = Future()
        with self._lock:
            self._next += 1
            job_id = self._next
            self._futures[job_id] = fut
        job = {"id": job_id, "onnx_path": str(onnx_path), "work_dir": str(work_dir),
               "calib_npy": str(calib_npy) if calib_npy else None, "mean": list(mean), "std": list(std),
               "want": list(want)}
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write((json.dumps(job) + "\n").encode())
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            with self._lock:
                self._futures.pop(job_id, None)
            raise WorkerDied("onnx2tf worker process is not running (see export.log)") from None
        return fut

    def close(self, timeout: float = 30.0) -> None:
        import subprocess

        try:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout=timeout) if timeout > 0 else self._proc.kill()
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._proc.wait()
        self._reader.join(timeout=5)


def _worker_main() -> int:
    """Worker loop: warm up, then one JSON job per stdin line, one JSON result per job on the result fd."""
    import json
    import traceback

    out = os.fdopen(int(os.environ["EDGEFAIR_RESULT_FD"]), "w", buffering=1, encoding="utf-8")
    try:
        warm_up()
    except Exception:
        traceback.print_exc()
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        job_id = job.pop("id")
        try:
            res = {"id": job_id, "ok": True, "result": convert(**job)}
        except BaseException as e:  # SystemExit from onnx2tf included
            traceback.print_exc()
            first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
            res = {"id": job_id, "ok": False, "error": f"{type(e).__name__}: {first}" if first else type(e).__name__}
        sys.stdout.flush()
        sys.stderr.flush()
        out.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())
