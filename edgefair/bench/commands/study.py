"""``bench study NAME``: a seed paper's experiment end to end (train population → compress or
re-balance → host predictions → tables and plots); resumable."""

from __future__ import annotations

from pathlib import Path

import click

from edgefair.bench.commands.farm import executor_options
from edgefair.bench.console import CLIError, emit_json, err
from edgefair.bench.options import command_errors, json_option


@click.command("study")
@click.argument("name")
@click.option("--quick", is_flag=True, help="The study's [quick] size (tiny trainings; a smoke run).")
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="Models per population (training seeds).")
@click.option("--dataset", default=None, help="Dataset spec replacing the study's (e.g. rafdb:/data/rafdb).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Folder (default: results/study/NAME).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="A study TOML (as --print-config shows it) instead of the shipped one.")
@click.option("--print-config", is_flag=True, help="Print the study's TOML and exit.")
@executor_options
@json_option
@command_errors
def study_cmd(name: str, quick: bool, seeds: int | None, dataset: str | None, out: Path | None,
              config_path: Path | None, print_config: bool, executor: str, ray_address: str | None,
              farm_path: Path | None, as_json: bool) -> None:
    """Run a predefined study: compression-fairness, distillation or data-balance."""
    from edgefair.bench.study import run_study
    from edgefair.bench.study.config import builtin_text, check, load_study

    cfg = load_study(name, config=config_path, quick=quick)  # a bad file fails here, before printing
    if print_config:
        if as_json:
            emit_json(cfg.to_dict())
        else:
            click.echo(config_path.read_text() if config_path else builtin_text(name), nl=False)
        return
    cfg = check(cfg.with_overrides(seeds=seeds, dataset=dataset), "--seeds/--dataset")
    if farm_path is not None:
        raise CLIError("--farm: a study measures on no device (its trainings run on --executor ray); drop it")
    from edgefair.bench.executor import executor_for

    with executor_for(executor, address=ray_address) as ex:
        outcome = run_study(cfg, out=out or Path("results/study") / cfg.name,
                            say=lambda msg: err.print(f"study {cfg.name}: {msg}", markup=False),
                            executor=ex if executor == "ray" else None)
    if as_json:
        emit_json(outcome.to_dict())
    else:
        for line in outcome.findings + outcome.notes:
            err.print(line, markup=False, soft_wrap=True)
        err.print(f"report: {outcome.html} ({outcome.seconds:.0f} s, {outcome.cpu_seconds:.0f} CPU-s)", markup=False)
    for f in outcome.failed:
        err.print(f"failed: {f}", markup=False)
    if outcome.failed:
        raise SystemExit(1)

