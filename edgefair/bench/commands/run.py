"""``bench run``: measure every artefact of a folder on one device."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from edgefair.bench.console import emit_json, err, progress_bar
from edgefair.bench.options import DEFAULT_DB, command_errors, json_option
from edgefair.contracts.measurement import PROFILE_NAMES


def overrides(min_runs: int | None, min_seconds: float | None, max_seconds: float | None) -> dict[str, Any]:
    """The protocol values given on the command line."""
    given = {"min_runs": min_runs, "min_seconds": min_seconds, "max_seconds": max_seconds}
    return {k: v for k, v in given.items() if v is not None}


@click.command("run")
@click.option("--device", default="local", show_default=True,
              help="local | pi4 | pi5 | android | pi4-emu | ssh://user@host:port | adb:SERIAL")
@click.option("--artifacts", type=click.Path(path_type=Path), default=Path("artifacts"), show_default=True)
@click.option("--profile", type=click.Choice(PROFILE_NAMES), default="quick", show_default=True)
@click.option("--threads", default=None,
              help="Thread count, or a comma list (1,2,4: one settings row each); default: the device profile's.")
@click.option("--profile-ops", type=click.IntRange(min=0), default=0, show_default=True,
              help="After measuring, time N more invokes per operator (onnxruntime's profiler; on adb "
                   "benchmark_model --enable_op_profiling; elsewhere the static op list).")
@click.option("--eval", "do_eval", is_flag=True, help="Also run the labelled test split and report accuracy.")
@click.option("--dataset", default=None, help="Test data (default: the dataset named in the artefacts' manifests).")
@click.option("--eval-limit", type=click.IntRange(min=1), default=None,
              help="With --eval: only the first N test samples (slow emulated devices).")
@click.option("--db", type=click.Path(path_type=Path), default=DEFAULT_DB, show_default=True)
@click.option("--only", multiple=True, help="Only these artefact names (repeatable).")
@click.option("--force", is_flag=True, help="Measure again even when the database has this result.")
@click.option("--min-runs", type=click.IntRange(min=1), default=None, help="Override the profile's minimum runs.")
@click.option("--min-seconds", type=click.FloatRange(min=0), default=None,
              help="Override the profile's minimum measurement time.")
@click.option("--max-seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Override the profile's cap per phase.")
@click.option("--keep-going", is_flag=True,
              help="After a device or link failure, still try every artefact (default: stop after the first).")
@click.option("--no-wait", is_flag=True, help="Refuse, instead of waiting, when another run holds the device.")
@json_option
@command_errors
def run_cmd(device: str, artifacts: Path, profile: str, threads: str | None, profile_ops: int, do_eval: bool,
            dataset: str | None, eval_limit: int | None, db: Path, only: tuple[str, ...], force: bool,
            min_runs: int | None, min_seconds: float | None, max_seconds: float | None, keep_going: bool,
            no_wait: bool, as_json: bool) -> None:
    """Measure size, latency and peak RSS of every artefact on a device."""
    from edgefair.bench.measure import discover_artifacts, measure_artifacts, select
    from edgefair.contracts.measurement import RunSettings, parse_threads
    from edgefair.devices import resolve_device

    counts = parse_threads(threads, resolve_device(device).threads)
    runs = [RunSettings(profile=profile, threads=t, mode="both" if do_eval else "bench",
                        overrides=overrides(min_runs, min_seconds, max_seconds), eval_limit=eval_limit,
                        profile_ops=profile_ops) for t in counts]
    total = len(select(discover_artifacts(artifacts), list(only) or None)) * len(runs)
    with progress_bar(f"{device}", total) as update:
        on_event = _RunProgress(device, update)
        by_threads = {s.threads: measure_artifacts(artifacts=artifacts, device=device, db=db, settings=s,
                                                   dataset=dataset, force=force, only=list(only) or None,
                                                   on_event=on_event, keep_going=keep_going, wait=not no_wait)
                      for s in runs}
    _report(device, db, runs, counts, by_threads, do_eval, as_json)


class _RunProgress:
    """Progress bar and one line per artefact; waits and retries said once."""

    def __init__(self, device: str, update: Any) -> None:
        self.device, self.update, self.done = device, update, 0

    def __call__(self, kind: str, name: str, info: dict) -> None:
        from edgefair.bench.tables import plain

        name = plain(name)
        if kind == "start":
            self.update(self.done, description=f"{self.device}: {name}")
        elif kind == "wait":
            err.print(info.get("message", ""), markup=False)
        elif kind == "retry":
            reasons = "; ".join(info.get("invalid_reasons") or [])
            err.print(f"  {name}: invalid ({reasons}): measuring again after a cool-down", markup=False)
        else:
            self.done += 1
            self.update(self.done)
            if kind == "failed":
                err.print(f"  {name}: failed: {info.get('error')}", markup=False)
            elif kind == "host-only":
                err.print(f"  {name}: host-only (torch reference row: measured with --device local)", markup=False)
            elif kind == "done":
                err.print(f"  {name}: {_done_text(info)}", markup=False)


def _done_text(info: dict) -> str:
    """'p50 0.318 ms', with the reasons when the run is invalid (after its one retry, too)."""
    p50 = info.get("p50_ms")
    text = f"p50 {p50:.3f} ms" if p50 is not None else "measured"
    if info.get("valid") is False:
        text += f", invalid: {'; '.join(info.get('invalid_reasons') or []) or 'flagged invalid'}"
    return text


def _report(device: str, db: Path, runs: list, counts: list[int], by_threads: dict, do_eval: bool,
            as_json: bool) -> None:
    from edgefair.bench.tables import print_run_table

    rows = [r for rs in by_threads.values() for r in rs]
    failed = [r for r in rows if r.status == "failed"]
    skipped = [r for r in rows if r.status == "not-measured"]
    stopped = skipped[0].error if skipped else None
    if as_json:
        emit_json({"ok": not failed, "device": device, "db": str(db), "settings": runs[0].key_dict(),
                   "threads": counts, "artifacts": [{**asdict(r), "threads": t} for t, rs in by_threads.items()
                                                     for r in rs], "failed": len(failed),
                   "not_measured": len(skipped), "stopped": stopped})
    else:
        for t, rs in by_threads.items():
            print_run_table([r for r in rs if r.status != "not-measured"],
                            device=f"{device}, {t} thread{'s' if t != 1 else ''}", with_accuracy=do_eval)
        err.print(f"results in {db} (raw latency samples in {db.parent / 'samples'})", markup=False)
    if stopped:
        err.print(f"bench run: error: {stopped}; stopped after the first failure: {len(skipped)} artefact(s) not "
                  "measured (--keep-going tries every artefact)", markup=False)
    if failed:
        raise SystemExit(1)
