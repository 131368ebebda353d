"""Build one artefact: produce the file in staging -> measure it -> manifest -> parity -> publish.

An artefact folder appears under ``<out>/`` only after it passed every step; any failure
is one line in its TargetResult, and the other artefacts go on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgefair.contracts.jsonio import error_text
from edgefair.contracts.manifest import Compression, Manifest, Params, Source, Sparsity, relative_run, write_manifest
from edgefair.contracts.targets import TARGETS
from edgefair.export.cache import code_version, parity_key
from edgefair.export.files import file_info, tool_versions
from edgefair.export.levels import Level
from edgefair.export.producers import CONVERTER, ProduceContext, Produced, Producer
from edgefair.export.results import TargetResult
from edgefair.export.staging import Staging

_GATE_NOTE = "warning: accuracy gate failed"
SPARSITY_DEFINITION = "1 - nonzero rank>=2 weights in the file / kernel weights of the dense model"


class BuildFailed(Exception):
    """A target failed; the message is the one-line reason."""


@dataclass
class BuildContext:
    """Everything the build steps share for one export call."""

    produce: ProduceContext
    run_dir: Path
    out: Path
    staging: Staging
    dense_weights: int
    parity_n: int


def build_artifact(ctx: BuildContext, level: Level, target: str, producer: Producer) -> TargetResult:
    """Run every step for one target at one level; a failure is recorded, never raised."""
    t0 = time.perf_counter()
    name = ctx.produce.settings.name(target, level.sparsity)
    folder = ctx.staging.new(name)
    try:
        try:
            produced = producer(ctx.produce, level, target, folder)
        except Exception as e:
            raise BuildFailed(f"{CONVERTER[target]} failed: {error_text(e)}") from None
        manifest = assemble_manifest(ctx, level, target, produced, folder)
        manifest = check_parity(ctx, level, target, folder, manifest)
        write_manifest(folder, manifest)
        final = ctx.staging.publish(folder, name)
        return TargetResult(name, target, level.sparsity, "converted", str(final), None,
                            time.perf_counter() - t0, manifest, gate_warnings(manifest))
    except BuildFailed as e:
        return TargetResult(name, target, level.sparsity, "failed", None, str(e), time.perf_counter() - t0)
    except Exception as e:  # measuring or publishing: still one target, one line
        return TargetResult(name, target, level.sparsity, "failed", None, error_text(e), time.perf_counter() - t0)
    finally:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def _sparsity(ctx: BuildContext, level: Level, target: str, model_path: Path) -> tuple[Sparsity, list[str]]:
    from edgefair.export.sparsity import weight_stats

    tdef = TARGETS[target]
    with ctx.produce.log.quiet():
        ws = weight_stats(model_path, tdef.format)
    dense = max(ctx.dense_weights, ws.total)
    measured = max(0.0, min(1.0, 1.0 - (ws.total - ws.zeros) / dense)) if dense else 0.0
    notes = []
    if level.sparsity == 0 and tdef.is_int8 and ws.zeros:
        notes.append(f"measured sparsity at s0 counts {ws.zeros} weights that int8 rounding sent to zero")
    detail = {"zero_fraction": round(ws.zero_fraction, 6), "definition": SPARSITY_DEFINITION,
              "weights": {"total": ws.total, "zeros": ws.zeros, "tensors": ws.tensors, "dense_total": dense}}
    if level.info.method == "structured":
        notes.append(f"structured: {level.sparsity:g} of the weights requested; {level.info.channel_ratio:g} of each "
                     f"layer's channels removed (found by bisection), {level.info.weight_share:.4f} of the dense "
                     f"model's {dense} kernel weights removed or zero")
        detail.update(channel_ratio=level.info.channel_ratio, layer_ratio=level.info.layer_ratio,
                      weight_share=level.info.weight_share)
    elif level.info.method == "unstructured":
        detail.update(scope=level.info.scope, weight_share=level.info.weight_share)
    return Sparsity(float(level.sparsity), round(measured, 6), level.info.method, detail), notes


def _compression(ctx: BuildContext, level: Level, target: str, produced: Produced) -> Compression:
    settings = ctx.produce.settings
    tuned = settings.level_tuned(level.sparsity) or level.uses_qat(target)
    cl = level.info.clustering
    clustering = None if not cl else {k: cl[k] for k in ("k", "tensors", "init", "folded_batchnorm")}
    mitigation = ({"method": "kd", "alpha": settings.kd_alpha, "temperature": settings.kd_temperature}
                  if settings.uses_kd(target, level.sparsity) else None)
    return Compression(finetune_epochs=settings.finetune_epochs if tuned else 0,
                       scope=settings.prune_scope if level.info.method == "unstructured" else None,
                       calibration=produced.calibration, qat=level.uses_qat(target), engine=produced.engine,
                       clustering=clustering, mitigation=mitigation)


def check_clusters(level: Level, target: str, model_path: Path) -> dict[str, Any] | None:
    """fp32 files of a clustered level: at most K distinct nonzero values per kernel, read back from the file."""
    from edgefair.export.clustering import check_file

    cl = level.info.clustering
    if not cl or not TARGETS[target].is_fp32:
        return None
    check = check_file(model_path, TARGETS[target].format, int(cl["k"]))
    if not check.ok or not check.tensors:
        raise BuildFailed(f"clustering: {len(check.violations)} of {check.tensors} kernels in the exported file hold "
                          f"more than K={check.k} distinct nonzero values (up to {check.max_distinct})" if
                          check.tensors else "clustering: no float kernel found in the exported file to verify")
    return check.to_dict()


def _source(ctx: BuildContext, level: Level, target: str) -> Source:
    meta = ctx.produce.meta
    what = "QAT float model (fake-quant off)" if level.uses_qat(target) else "PyTorch model"
    how = (f" after {level.info.method} pruning to {level.sparsity:g} and {level.info.finetune_epochs} fine-tune "
           "epoch(s)" if level.sparsity > 0 else " (dense checkpoint)")
    if level.info.clustering:
        how += f", clustered to K={level.info.clustering['k']} ({level.info.clustering['finetune_epochs']} epoch(s))"
    if ctx.produce.settings.uses_kd(target, level.sparsity):
        how += ", fine-tuned by distillation from the dense model"
    return Source(checkpoint_sha256=meta.checkpoint_sha256, arch=meta.arch, arch_kwargs=dict(meta.arch_kwargs),
                  run=str(ctx.run_dir.resolve()),
                  run_relative=relative_run(ctx.run_dir, ctx.out / ctx.produce.settings.name(target, level.sparsity)),
                  dataset=ctx.produce.data.ref, reference=what + how)


def assemble_manifest(ctx: BuildContext, level: Level, target: str, produced: Produced, folder: Path) -> Manifest:
    """The manifest of a produced file: measured sparsity, sizes, provenance, settings."""
    from edgefair.export.pruning import param_count

    tdef = TARGETS[target]
    model_path = folder / produced.model_file
    sparsity, notes = _sparsity(ctx, level, target, model_path)
    clusters = check_clusters(level, target, model_path)
    total, nonzero = param_count(level.qat_float if level.uses_qat(target) else level.model)
    meta = ctx.produce.meta
    return Manifest(
        name=ctx.produce.settings.name(target, level.sparsity), target=target, format=tdef.format,
        precision=tdef.precision,
        model_file=produced.model_file, sparsity=sparsity, input=produced.input, output=produced.output,
        class_names=list(meta.class_names), preprocessing=meta.prep, source=_source(ctx, level, target),
        file=file_info(model_path), params=Params(int(total), int(nonzero)),
        compression=_compression(ctx, level, target, produced), tools=tool_versions(),
        notes=produced.notes + list(ctx.produce.data.notes) + notes,
        export={"cache_key": ctx.produce.settings.conversion_key(target, level.sparsity),
                "parity_key": parity_key(ctx.parity_n), "code_version": code_version(),
                "pruning": level.info.to_dict(), **({"clustering_check": clusters} if clusters else {}),
                **produced.extra})


def check_parity(ctx: BuildContext, level: Level, target: str, folder: Path, manifest: Manifest) -> Manifest:
    """Run the artefact through the agent's code path on the parity sample; fp32 must agree with PyTorch."""
    from edgefair.export import parity as _parity

    data, log = ctx.produce.data, ctx.produce.log
    try:
        logits, runtime = _parity.run_artifact(folder, manifest.to_dict(), data.val_u8, quiet=log.quiet)
    except Exception as e:
        raise BuildFailed(f"the agent cannot run the artefact: {error_text(e)}") from None
    fp32 = TARGETS[target].is_fp32
    par = _parity.compare(logits, level.reference_logits(target), data.val_y, reference=manifest.source.reference
                          or "", runtime=runtime, gate=_parity.FP32_GATE if fp32 else _parity.ACCURACY_GATE,
                          kind="agreement" if fp32 else "accuracy", num_classes=len(manifest.class_names))
    checked = replace(manifest.with_parity(par.to_dict()),
                      export={**manifest.export, "parity_key": parity_key(ctx.parity_n)})
    checked = replace(checked, notes=[n for n in checked.notes if not n.startswith(_GATE_NOTE)])
    if par.passed is False and not fp32:  # a lossy artefact below the accuracy gate is kept, flagged
        return replace(checked, notes=[*checked.notes, f"{_GATE_NOTE}: {par.reason}"])
    if par.passed is not False:
        return checked
    gate = par.gate
    cause = _diagnose(logits, data.val_u8, manifest, level)
    write_manifest(folder, checked)
    kept = ctx.staging.keep_failed(folder, manifest.name)
    raise BuildFailed(f"parity: top-1 agreement {par.agreement:.4f} < {gate} with the PyTorch model "
                      f"(max |logit diff| {par.max_abs_logit_diff:.3g}); {cause}; kept in {kept}")


def _diagnose(logits: Any, images_u8: Any, manifest: Manifest, level: Level) -> str:
    from edgefair.export import parity as _parity
    from edgefair.models.training import predict_logits

    model = level.model
    return _parity.diagnose(logits, images_u8, manifest.preprocessing.to_dict(), lambda x: predict_logits(model, x))


def recheck_parity(ctx: BuildContext, level: Level, target: str, folder: Path, manifest: Manifest) -> TargetResult:
    """A cached artefact whose parity settings changed: check it again, rewrite its manifest in place."""
    t0 = time.perf_counter()
    try:
        checked = check_parity(ctx, level, target, folder, manifest)
    except BuildFailed as e:  # kept in .failed/ by check_parity; no longer a usable artefact
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        return TargetResult(manifest.name, target, level.sparsity, "failed", None, str(e), time.perf_counter() - t0)
    write_manifest(folder, checked)
    return TargetResult(manifest.name, target, level.sparsity, "cached", str(folder), None,
                        time.perf_counter() - t0, checked, gate_warnings(checked))


def gate_warnings(manifest: Manifest) -> list[str]:
    """The accuracy gate's verdict when it failed (the artefact is kept: a lossy model is still studied)."""
    par = manifest.parity or {}
    return [f"accuracy gate failed: {par.get('reason')}"] if par.get("passed") is False else []
