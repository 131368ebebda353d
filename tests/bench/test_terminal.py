"""What the terminal shows: escaped names, a readable probe, progress with totals, one default database."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from click.testing import CliRunner

from edgefair.bench.cli import main
from edgefair.bench.console import err


def _run_row(name: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, size_bytes=1000, p50_ms=1.0, p90_ms=1.2, peak_rss_mb=20.0, status="ok",
                           valid=True, invalid_reasons=[], error=None, accuracy=None)


def test_terminal_tables_escape_names():
    from edgefair.bench.tables import print_run_table

    with err.capture() as cap:
        print_run_table([_run_row("evil\nname[bold red]x[/]\x1b[31m"), _run_row("plain")], device="local",
                        with_accuracy=False)
    out = cap.get()
    evil = [ln for ln in out.splitlines() if "evil" in ln]
    assert len(evil) == 1 and "name[bold red]x[/]?[31m" in evil[0], out  # one row, markup shown literally
    assert "\x1b" not in out and len([ln for ln in out.splitlines() if "plain" in ln]) == 1


def test_devices_probe_local_prints_no_raw_structures():
    with err.capture() as cap:  # the command prints on the shared stderr console
        res = CliRunner().invoke(main, ["devices", "probe", "local"])
    assert res.exit_code == 0, res.output
    text = cap.get()
    assert "runtime.onnx.version" in text and "cpu.isa" in text
    for raw in ("{", "}", "None", "True", "False", "'"):
        assert raw not in text, f"raw {raw!r} in the probe output"


def test_flatten_lists_of_dicts_and_units():
    from edgefair.bench.commands.devices import flatten

    rows = dict(flatten({"cpufreq": {"governor": None, "cur_freq_khz": 1_500_000,
                                     "per_cpu": [{"cpu": 0, "cur_freq_khz": 600_000}]},
                         "loadavg": [0.123, 1.5], "emulated": False, "zones": {}}))
    assert rows == {"cpufreq.governor": "—", "cpufreq.cur_freq (MHz)": "1500", "cpufreq.per_cpu[0].cpu": "0",
                    "cpufreq.per_cpu[0].cur_freq (MHz)": "600", "loadavg": "0.12, 1.50", "emulated": "no",
                    "zones": "—"}


def test_training_reports_every_batch():
    from edgefair.models.training import TrainConfig, fit

    rng = np.random.default_rng(0)
    x, y = rng.random((50, 4), dtype=np.float32), rng.integers(0, 3, 50)
    seen: list[tuple[int, int]] = []
    fit(torch.nn.Linear(4, 3), (x, y), None, TrainConfig(epochs=3, batch_size=16, augment=False),
        batch_progress=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 12) for i in range(1, 13)]  # 3 epochs × ceil(50 / 16) batches, total known up front


def test_sweep_bar_names_the_running_stage():
    from edgefair.bench.commands.sweep import _SweepProgress

    calls: list[tuple[int, str]] = []
    bar = _SweepProgress(lambda done, description=None: calls.append((done, description)))
    bar("stage", {"stage": "train", "arch": "cnn", "status": "start"})
    bar("progress", {"stage": "train", "arch": "cnn", "done": 40, "total": 400, "what": "train"})
    bar("stage", {"stage": "train", "arch": "cnn", "status": "done"})
    bar("progress", {"stage": "export", "arch": "cnn", "args": ["3", "10", "onnx-int8-s0.5"]})
    bar("artifact", {"stage": "run", "device": "local", "kind": "done", "name": "onnx-int8-s0.5"})
    assert calls == [(0, "train cnn: starting"), (0, "train cnn: batch 40/400"), (1, "train cnn: done"),
                     (1, "export cnn: 3/10 onnx-int8-s0.5"), (2, "run local: measuring onnx-int8-s0.5")]


def test_one_default_database_for_every_command():
    from edgefair.bench.commands.fairness import fairness_cmd
    from edgefair.bench.commands.report import gate_cmd, report_cmd
    from edgefair.bench.commands.run import run_cmd
    from edgefair.bench.commands.sweep import sweep_cmd
    from edgefair.paths import DEFAULT_DB, DEFAULT_REPORT

    def default(cmd, name):
        return next(p.default for p in cmd.params if p.name == name)

    assert {default(run_cmd, "db"), default(fairness_cmd, "db"), default(report_cmd, "db"),
            default(gate_cmd, "current")} == {DEFAULT_DB}
    assert default(sweep_cmd, "out") / "results.db" == DEFAULT_DB  # the sweep writes <out>/results.db
    assert default(report_cmd, "out") == DEFAULT_REPORT == default(sweep_cmd, "out") / "report"
