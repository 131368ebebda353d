"""Commands registered on the bench CLI from their own modules: devices, run, fairness."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgefair.bench.cli import command_errors, json_option, main
from edgefair.bench.console import CLIError, emit_json, err, progress_bar

DEFAULT_DB = Path("results/edgefair.db")


# ---------------------------------------------------------------- devices
@main.group("devices", invoke_without_command=True)
@json_option
@click.pass_context
@command_errors
def devices_cmd(ctx: click.Context, as_json: bool) -> None:
    """List device profiles (built-in and ~/.config/edgefair/devices/*.toml)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from edgefair.devices import list_profiles
    from edgefair.devices.emulated import is_ready

    profiles = list_profiles()
    docs = []
    for p in profiles:
        d = p.to_dict()
        d["target"] = p.target()
        if p.emulated:
            d["ready"] = is_ready()
        docs.append(d)
    if as_json:
        emit_json({"devices": docs})
        return
    table = Table(title="device profiles (also: ssh://user@host:port, adb:SERIAL)")
    for col in ("name", "transport", "target", "description", "source"):
        table.add_column(col)
    for p, d in zip(profiles, docs):
        extra = "" if "ready" not in d else (" [green](ready)[/]" if d["ready"] else " [yellow](run: bench devices setup pi4-emu)[/]")
        table.add_row(p.name, p.transport, p.target() + extra, p.description, p.source)
    err.print(table)


@devices_cmd.command("probe")
@click.argument("name")
@json_option
@command_errors
def devices_probe_cmd(name: str, as_json: bool) -> None:
    """Print a device's fingerprint and which runtimes it has."""
    from edgefair.devices import open_transport, probe_device, resolve_device

    profile = resolve_device(name)
    transport = open_transport(profile, setup=False)
    try:
        info = probe_device(transport)
    finally:
        transport.close()
    if as_json:
        emit_json(info)
        return
    env = info.get("env", info)
    for k in sorted(env):
        err.print(f"{k:>22}: {env[k]}", markup=False)
    rts = info.get("runtimes") or {}
    for k, v in rts.items():
        err.print(f"{'runtime ' + k:>22}: {v}", markup=False)


@devices_cmd.command("setup")
@click.argument("name", type=click.Choice(["pi4-emu"]))
@click.option("--force", is_flag=True, help="Rebuild even when the cached sysroot is ready.")
@json_option
@command_errors
def devices_setup_cmd(name: str, force: bool, as_json: bool) -> None:
    """Build the emulated Raspberry Pi (arm64 Debian sysroot under qemu) once into the cache."""
    import time

    from edgefair.devices.emulated import describe_sysroot, setup_emulated_pi

    t0 = time.perf_counter()
    with progress_bar("building pi4-emu sysroot", None) as update:
        path = setup_emulated_pi(progress=lambda msg: update(0, description=str(msg)[:60]), force=force)
    doc = {"sysroot": str(path), "seconds": time.perf_counter() - t0, **describe_sysroot()}
    if as_json:
        emit_json(doc)
    else:
        err.print(f"pi4-emu sysroot ready at {path} ({doc['seconds']:.1f} s)")


# ---------------------------------------------------------------- run
def _overrides(min_runs: int | None, min_seconds: float | None, max_seconds: float | None) -> dict[str, Any]:
    o: dict[str, Any] = {}
    if min_runs is not None:
        o["min_runs"] = min_runs
    if min_seconds is not None:
        o["min_seconds"] = min_seconds
    if max_seconds is not None:
        o["max_seconds"] = max_seconds
    return o


@main.command("run")
@click.option("--device", default="local", show_default=True, help="local | pi4 | pi5 | android | pi4-emu | ssh://user@host:port | adb:SERIAL")
@click.option("--artifacts", type=click.Path(path_type=Path), default=Path("artifacts"), show_default=True)
@click.option("--profile", type=click.Choice(["quick", "standard", "mlperf"]), default="quick", show_default=True)
@click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--eval", "do_eval", is_flag=True, help="Also run the labelled test split and report accuracy.")
@click.option("--dataset", default=None, help="Test data (default: the dataset the source run was trained on).")
@click.option("--eval-limit", type=click.IntRange(min=1), default=None, help="With --eval: only the first N test samples (slow emulated devices).")
@click.option("--db", type=click.Path(path_type=Path), default=DEFAULT_DB, show_default=True)
@click.option("--only", multiple=True, help="Only these artefact names (repeatable).")
@click.option("--force", is_flag=True, help="Measure again even when the database has this result.")
@click.option("--min-runs", type=click.IntRange(min=1), default=None, help="Override the profile's minimum measured runs.")
@click.option("--min-seconds", type=float, default=None, help="Override the profile's minimum measurement time.")
@click.option("--max-seconds", type=float, default=None, help="Override the profile's cap per phase.")
@json_option
@command_errors
def run_cmd(device: str, artifacts: Path, profile: str, threads: int, do_eval: bool, dataset: str | None,
            eval_limit: int | None, db: Path,
            only: tuple[str, ...], force: bool, min_runs: int | None, min_seconds: float | None,
            max_seconds: float | None, as_json: bool) -> None:
    """Measure size, latency and peak RSS of every artefact on a device."""
    from dataclasses import asdict

    from edgefair.bench.measure import RunSettings, discover_artifacts, measure_artifacts
    from edgefair.bench.tables import print_run_table

    settings = RunSettings(profile=profile, threads=threads, mode="both" if do_eval else "bench",
                           overrides=_overrides(min_runs, min_seconds, max_seconds), eval_limit=eval_limit)
    found = discover_artifacts(artifacts)
    total = len([m for p, m in found if not only or m.get("name", p.name) in only])
    done = 0
    with progress_bar(f"{device}", total) as update:
        def on_event(kind: str, name: str, info: dict) -> None:
            nonlocal done
            if kind == "start":
                update(done, description=f"{device}: {name}")
                return
            done += 1
            update(done)
            if kind == "failed":
                err.print(f"  {name}: [red]failed[/]: {info.get('error')}", highlight=False)
            elif kind == "done":
                p50 = info.get("p50_ms")
                err.print(f"  {name}: p50 {p50:.3f} ms" if p50 is not None else f"  {name}: measured", highlight=False)

        rows = measure_artifacts(artifacts=artifacts, device=device, db=db, settings=settings, dataset=dataset,
                                 force=force, only=list(only) or None, on_event=on_event)
    failed = [r for r in rows if r.status == "failed"]
    if as_json:
        emit_json({"device": device, "db": str(db), "settings": settings.key_dict(), "artifacts": [asdict(r) for r in rows],
                   "failed": len(failed)})
    else:
        print_run_table(rows, device=device, with_accuracy=do_eval)
        err.print(f"results in {db} (raw latency samples in {db.parent / 'samples'})")
    if failed:
        raise SystemExit(1)


# ---------------------------------------------------------------- fairness
@main.command("fairness")
@click.option("--artifacts", type=click.Path(path_type=Path), default=Path("artifacts"), show_default=True)
@click.option("--dataset", default=None, help="Labelled test data (default: the source run's dataset).")
@click.option("--device", default="local", show_default=True, help="Use predictions from bench run --eval on this device.")
@click.option("--attributes", default=None, help="Comma-separated, e.g. gender,skin_tone,age (default: all).")
@click.option("--intersections", is_flag=True, help="Also audit every pair of attributes (e.g. skin_tone×gender).")
@click.option("--reference", default=None, help="Reference artefact (default: torch-fp32-s0, else onnx-fp32-s0).")
@click.option("--min-n", type=click.IntRange(min=1), default=30, show_default=True, help="Smaller groups are 'insufficient evidence'.")
@click.option("--gap-points", type=float, default=2.0, show_default=True, help="Gap growth (points) that counts as widened.")
@click.option("--min-accuracy-ratio", type=float, default=0.99, show_default=True)
@click.option("--db", type=click.Path(path_type=Path), default=DEFAULT_DB, show_default=True)
@click.option("--plots", type=click.Path(path_type=Path), default=Path("results/plots"), show_default=True)
@click.option("--fail-on-verdict", is_flag=True, help="Exit 1 when any artefact's verdict is not pass (for CI).")
@json_option
@command_errors
def fairness_cmd(artifacts: Path, dataset: str | None, device: str, attributes: str | None, intersections: bool,
                 reference: str | None, min_n: int, gap_points: float, min_accuracy_ratio: float, db: Path,
                 plots: Path, fail_on_verdict: bool, as_json: bool) -> None:
    """Audit every artefact for subgroup accuracy gaps against the uncompressed reference."""
    from edgefair.bench.audit_run import audit_artifacts
    from edgefair.bench.tables import print_audit_table
    from edgefair.fairness import VerdictThresholds, format_table

    thresholds = VerdictThresholds(min_relative_accuracy=min_accuracy_ratio, gap_widening_points=gap_points)
    attrs = [a.strip() for a in attributes.split(",") if a.strip()] if attributes else None
    with progress_bar("auditing", None) as update:
        summaries, full = audit_artifacts(
            artifacts=artifacts, db=db, device=device, dataset=dataset, attributes=attrs, intersections=intersections,
            reference=reference, min_n=min_n, thresholds=thresholds, plots_dir=plots,
            on_event=lambda k, n, i: update(0, description=f"{k}: {n}"[:60]))
    if as_json:
        emit_json({"reference": full["reference"], "dataset": full["dataset"], "device": device, "attributes": full["attributes"],
                   "summaries": [s.to_dict() for s in summaries],
                   "audits": {k: v.to_dict() for k, v in full["results"].items()}, "plots": str(plots)})
    else:
        for name, res in full["results"].items():
            err.print(f"\n[bold]{name}[/]" + (" (reference)" if name == full["reference"] else ""))
            err.print(format_table(res), markup=False, highlight=False)
        print_audit_table(summaries, reference=full["reference"])
        err.print(f"plots in {plots}/group-accuracy-*.png; audits stored in {db}")
    if fail_on_verdict and any(s.verdict != "pass" for s in summaries if not s.is_reference):
        raise SystemExit(1)


# ---------------------------------------------------------------- report and gate
def _fraction(value: str, name: str) -> float:
    """'10%' or '0.1' → 0.1."""
    v = value.strip()
    try:
        return float(v[:-1]) / 100 if v.endswith("%") else float(v)
    except ValueError:
        raise CLIError(f"{name}: '{value}' is not a number or a percentage like 10%") from None


def _points(value: str, name: str) -> float:
    v = value.strip().removesuffix("pt").strip()
    try:
        return float(v)
    except ValueError:
        raise CLIError(f"{name}: '{value}' is not a number of points like 2pt") from None


@main.command("report")
@click.option("--db", type=click.Path(path_type=Path), default=DEFAULT_DB, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("report"), show_default=True)
@json_option
@command_errors
def report_cmd(db: Path, out: Path, as_json: bool) -> None:
    """Write report.html (self-contained) and report.md from the results database."""
    from edgefair.bench.report import write_report

    info = write_report(db, out)
    if as_json:
        emit_json(info.to_dict())
        return
    err.print(f"wrote {info.html} and {info.markdown} ({info.n_rows} rows)")
    for rec in info.recommendations:
        err.print(f"recommendation: {rec}", markup=False)


@main.command("gate")
@click.option("--baseline", type=click.Path(path_type=Path), required=True, help="Results DB, pytest-benchmark JSON or gate JSON.")
@click.option("--current", type=click.Path(path_type=Path), required=True, help="Results DB, pytest-benchmark JSON or gate JSON.")
@click.option("--max-p90-regression", default="10%", show_default=True)
@click.option("--max-size-regression", default="5%", show_default=True)
@click.option("--max-gap-increase", default="2pt", show_default=True)
@click.option("--min-accuracy-ratio", default="0.99", show_default=True)
@click.option("--max-rss-regression", default=None, help="Also gate peak RSS (e.g. 20%).")
@click.option("--write-baseline", type=click.Path(path_type=Path), default=None, help="Also write CURRENT as a gate JSON baseline here.")
@json_option
@command_errors
def gate_cmd(baseline: Path, current: Path, max_p90_regression: str, max_size_regression: str, max_gap_increase: str,
             min_accuracy_ratio: str, max_rss_regression: str | None, write_baseline: Path | None, as_json: bool) -> None:
    """Fail (exit 1) when CURRENT is slower, bigger, less accurate or less fair than BASELINE."""
    from edgefair.bench.gate import GateBounds, export_gate_json, format_diff_table, run_gate

    bounds = GateBounds(
        max_p90_regression=_fraction(max_p90_regression, "--max-p90-regression"),
        max_size_regression=_fraction(max_size_regression, "--max-size-regression"),
        max_gap_increase_pt=_points(max_gap_increase, "--max-gap-increase"),
        min_accuracy_ratio=_fraction(min_accuracy_ratio, "--min-accuracy-ratio"),
        max_rss_regression=None if max_rss_regression is None else _fraction(max_rss_regression, "--max-rss-regression"),
    )
    result = run_gate(baseline, current, bounds)
    if write_baseline is not None:
        export_gate_json(current, write_baseline)
    if as_json:
        emit_json(result.to_dict())
    else:
        err.print(format_diff_table(result), markup=False, highlight=False)
    if not result.ok:
        raise SystemExit(1)


# ---------------------------------------------------------------- sweep
@main.command("sweep")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None, help="sweep.toml (default: built-in defaults).")
@click.option("--device", "devices", multiple=True, help="Override the config's devices (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("results/sweep"), show_default=True)
@click.option("--print-config", is_flag=True, help="Print the effective configuration as TOML and exit.")
@json_option
@command_errors
def sweep_cmd(config_path: Path | None, devices: tuple[str, ...], out: Path, print_config: bool, as_json: bool) -> None:
    """Train → export matrix → run on each device → audit → report; resumable after a kill."""
    from edgefair.bench.config import load_config, validate
    from edgefair.bench.sweep import run_sweep

    cfg = load_config(config_path)
    if devices:
        cfg.devices = list(devices)
        validate(cfg, "--device")
    if print_config:
        if as_json:
            emit_json(cfg.to_dict())
        else:
            click.echo(cfg.to_toml(), nl=False)
        return
    n_art = len(cfg.targets) * len(cfg.sparsities) * len(cfg.archs)
    total = len(cfg.archs) * 2 + n_art * len(cfg.devices) * 2 + 1
    done = 0
    with progress_bar("sweep", total) as update:
        def on_event(kind: str, info: dict) -> None:
            nonlocal done
            if kind == "stage":
                label = f"{info['stage']} {info.get('arch', '')} {info.get('device', '')}".strip()
                if info["status"] in ("done", "cached"):
                    done += 1 if info["stage"] in ("train", "export") else 0
                update(done, description=f"{label}: {info['status']}")
            elif kind == "artifact" and info["kind"] in ("done", "failed", "cached", "audited"):
                done += 1
                update(done, description=f"{info['stage']} {info['device']}: {info['name']}")
            elif kind == "progress":
                update(done, description=f"{info['stage']} {info.get('arch', '')}: {' '.join(info.get('args', []))[:40]}")

        outcome = run_sweep(cfg, out=out, on_event=on_event)
        update(total)
    if as_json:
        emit_json(outcome.to_dict())
    else:
        _print_sweep_summary(outcome)
        for f in outcome.failed:
            err.print(f"[red]failed[/]: {f}", highlight=False)
    if outcome.failed:
        raise SystemExit(1)


# ---------------------------------------------------------------- export
@main.command("export")
@click.option("--model", "run_dir", type=click.Path(path_type=Path), default=None, help="Run directory written by bench train.")
@click.option("--target", "targets", multiple=True, help="Target (repeatable) or 'all': torch-fp32 torch-int8 onnx-fp32 onnx-fp16 onnx-int8 tflite-fp32 tflite-fp16 tflite-int8 tflite-dynamic.")
@click.option("--sparsity", default="0", show_default=True, help="Comma-separated levels in [0, 1), e.g. 0,0.5,0.75,0.9.")
@click.option("--pruning", type=click.Choice(["unstructured", "structured"]), default="unstructured", show_default=True)
@click.option("--finetune-epochs", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--calib", type=click.IntRange(min=1), default=256, show_default=True, help="Calibration images for int8.")
@click.option("--qat", is_flag=True, help="Quantisation-aware fine-tuning before the int8 exports.")
@click.option("--parity-n", type=click.IntRange(min=1), default=512, show_default=True, help="Validation images for the parity check.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("artifacts"), show_default=True)
@click.option("--force", is_flag=True, help="Convert again even when a cached artefact matches.")
@click.option("--import", "import_file", type=click.Path(path_type=Path), default=None, help="Wrap your own .onnx/.tflite file as an artefact.")
@click.option("--like", "like_run", type=click.Path(path_type=Path), default=None, help="With --import: the run whose preprocessing and classes it shares.")
@json_option
@command_errors
def export_cmd(run_dir: Path | None, targets: tuple[str, ...], sparsity: str, pruning: str, finetune_epochs: int, calib: int,
               qat: bool, parity_n: int, out: Path, force: bool, import_file: Path | None, like_run: Path | None,
               as_json: bool) -> None:
    """Export a trained model to every target × sparsity, with manifests and parity checks."""
    from edgefair.bench.tables import print_export_table
    from edgefair.export.matrix import export_matrix

    if import_file is not None:
        from edgefair.export.matrix import import_artifact

        if like_run is None:
            raise CLIError("--import needs --like runs/NAME (the run whose preprocessing and class names it uses)")
        res = import_artifact(import_file, like_run, out)
        doc = res.to_dict() if hasattr(res, "to_dict") else res
        if as_json:
            emit_json(doc)
        else:
            err.print(f"imported {import_file} as {doc.get('path') or doc}", markup=False)
        return
    if run_dir is None:
        raise CLIError("--model runs/NAME is required (or --import FILE --like runs/NAME)")
    if not targets:
        raise CLIError("name at least one --target (or --target all)")
    with progress_bar("export", None) as update:
        report = export_matrix(run_dir, targets=list(targets), sparsities=sparsity, out=out, pruning=pruning,
                               finetune_epochs=finetune_epochs, calib=calib, qat=qat, force=force, parity_n=parity_n,
                               progress=lambda done, total, msg="": update(done, total=total, description=str(msg)[:50]))
    if as_json:
        emit_json(report.to_dict())
    else:
        print_export_table(report)
    if not report.ok:
        raise SystemExit(1)


def _print_sweep_summary(outcome: Any) -> None:
    """Training per-group table, the run table with verdicts, and the recommendation."""
    import json as _json

    from rich.table import Table

    from edgefair.bench.store import Store
    from edgefair.bench.tables import print_train_summary

    for st in outcome.stages:
        if st["stage"] == "train":
            meta = _json.loads((Path(st["run"]) / "model.json").read_text())
            m = meta["metrics"]
            print_train_summary({"arch": meta["arch"], "dataset": meta["dataset"]["spec"], "params": m["params"],
                                 "epochs": meta["epochs"], "train_seconds": m["train_seconds"],
                                 "best_val_accuracy": m["best_val_accuracy"], "best_epoch": m["best_epoch"],
                                 "test": m["test"], "run": st["run"]})
    with Store(Path(outcome.db)) as store:
        rows = store.summary_rows()
    table = Table(title="sweep results (p50/p90 in ms, size in KB)")
    for c in ("artefact", "device", "KB", "gzip KB", "sparsity", "p50", "p90", "RSS MB", "accuracy", "largest gap [95% CI]", "verdict"):
        table.add_column(c, justify="left" if c in ("artefact", "device", "verdict") else "right")
    colours = {"pass": "green", "gap-widened": "red", "accuracy-drop": "red", "insufficient-evidence": "yellow"}
    f = lambda v, k=1e3, d=3: "—" if v is None else f"{v * k:.{d}f}"  # noqa: E731
    for r in rows:
        acc = r["audit_accuracy"] if r["audit_accuracy"] is not None else r["run_accuracy"]
        gap = "—" if r["largest_gap"] is None else (
            f"{100 * r['largest_gap']:.1f} pt" + ("" if r["gap_lo"] is None else f" [{100 * r['gap_lo']:.1f}, {100 * r['gap_hi']:.1f}]"))
        v = r["verdict"] or ("failed: " + (r["error"] or "") if r["status"] == "failed" else "—")
        table.add_row(r["name"], r["device"] + (" (emulated)" if r["emulated"] else ""), f(r["size_bytes"], 1 / 1024, 1),
                      f(r["gzip_bytes"], 1 / 1024, 1), f(r["sparsity_measured"], 1, 2), f(r["p50_s"]), f(r["p90_s"]),
                      f(r["peak_rss_kb"], 1 / 1024, 1), "—" if acc is None else f"{100 * acc:.1f}%", gap,
                      f"[{colours.get(v, 'white')}]{v}[/]")
    err.print(table)
    err.print(f"report: {outcome.report}  database: {outcome.db}  ({outcome.seconds:.0f} s)")
    for rec in outcome.recommendations:
        err.print(f"recommendation: {rec}", markup=False, soft_wrap=True)
