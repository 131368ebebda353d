"""Keep converter chatter (TensorFlow, onnx2tf, onnxruntime, torch warnings) out of the terminal.

Everything noisy runs inside :func:`quiet`, which points file descriptors 1 and 2 (so C++
logging too), ``sys.stdout``/``sys.stderr``, Python warnings and the root logger at the
export log (``<out>/export.log``) and restores them afterwards.

A progress display drawn from another thread while a ``quiet`` block is active would land
in the log as well: a CLI that shows a live progress bar should draw it on a duplicate of
fd 2 (``Console(file=os.fdopen(os.dup(2), "w"))``), which redirection does not touch.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

# set before TensorFlow can be imported anywhere in this process
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

_lock = threading.RLock()


class ExportLog:
    """Append-only log file of one export (``<out>/export.log``)."""

    def __init__(self, path: Path | None):
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, message: str) -> None:
        if self.path is None:
            return
        stamp = _dt.datetime.now().strftime("%H:%M:%S")
        with _lock, open(self.path, "a", encoding="utf-8") as f:
            for line in str(message).splitlines() or [""]:
                f.write(f"[{stamp}] {line}\n")

    @contextlib.contextmanager
    def quiet(self, what: str = "", *, fds: bool = True) -> Iterator[None]:
        """Send fd 1/2, sys.stdout/stderr, warnings and logging to the log for the block.

        ``fds=False`` captures only Python warnings and logging: for long pure-PyTorch work
        (fine-tuning) during which a caller's progress display must keep drawing.
        """
        if what:
            self.write(f"--- {what}")
        with _lock:
            sink = open(self.path, "a", encoding="utf-8") if self.path is not None else open(os.devnull, "w")
            redirect = _redirect_fds(sink) if fds else contextlib.nullcontext()
            with sink, redirect, warnings.catch_warnings():
                warnings.simplefilter("always")
                old_show = warnings.showwarning

                def show(message, category, filename, lineno, file=None, line=None):
                    sink.write(warnings.formatwarning(message, category, filename, lineno, line))

                warnings.showwarning = show
                root = logging.getLogger()
                handler = logging.StreamHandler(sink)
                handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
                root.addHandler(handler)
                # python handlers that already hold the terminal (lastResort, rich) are bypassed
                # by raising their threshold for the duration of the block
                saved = [(h, h.level) for h in root.handlers if h is not handler]
                for h, _ in saved:
                    h.setLevel(logging.CRITICAL + 1)
                old_last = logging.lastResort
                logging.lastResort = handler
                try:
                    yield
                finally:
                    logging.lastResort = old_last
                    for h, lvl in saved:
                        h.setLevel(lvl)
                    root.removeHandler(handler)
                    warnings.showwarning = old_show
                    sink.flush()


@contextlib.contextmanager
def _redirect_fds(sink) -> Iterator[None]:
    """os.dup2 the sink onto fd 1 and 2 (C/C++ output), and swap sys.stdout/err."""
    saved_py = (sys.stdout, sys.stderr)
    saved_fd: list[tuple[int, int]] = []
    try:
        for s in (sys.stdout, sys.stderr):
            try:
                s.flush()
            except Exception:
                pass
        for fd in (1, 2):
            try:
                saved_fd.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
            except OSError:
                pass
        sys.stdout = sink
        sys.stderr = sink
        yield
    finally:
        try:
            sink.flush()
        except Exception:
            pass
        sys.stdout, sys.stderr = saved_py
        for fd, dup in saved_fd:
            os.dup2(dup, fd)
            os.close(dup)
