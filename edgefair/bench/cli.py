"""The ``bench`` command line (also ``python -m edgefair``): the group and its commands.

Every command takes ``--json`` (one JSON document on stdout, logs on stderr; on failure
``{"ok": false, "error": ...}``) and exits non-zero with a one-line reason on failure.
Each command lives in :mod:`edgefair.bench.commands`; shared options in
:mod:`edgefair.bench.options`.
"""

from __future__ import annotations

import os

import click

from edgefair.bench.commands.data import data
from edgefair.bench.commands.devices import devices_cmd
from edgefair.bench.commands.export import export_cmd
from edgefair.bench.commands.fairness import fairness_cmd
from edgefair.bench.commands.farm import farm_cmd
from edgefair.bench.commands.report import gate_cmd, report_cmd
from edgefair.bench.commands.run import run_cmd
from edgefair.bench.commands.study import study_cmd
from edgefair.bench.commands.sweep import sweep_cmd
from edgefair.bench.commands.train import train_cmd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgefair")
def main() -> None:
    """edgefair: benchmark compressed FER models for size, speed, RSS and subgroup fairness."""


for command in (data, train_cmd, devices_cmd, export_cmd, run_cmd, fairness_cmd, report_cmd, gate_cmd, sweep_cmd,
                study_cmd, farm_cmd):
    main.add_command(command)
