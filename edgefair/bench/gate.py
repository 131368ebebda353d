"""``bench gate``: fail CI when an artefact got slower, bigger, less accurate or less fair.

    result = run_gate(Path("benchmarks/gate-baseline.json"), Path("results/results.db"), GateBounds())
    print(format_diff_table(result)); sys.exit(0 if result.ok else 1)

Each side is a list of rows, one per artefact × device, with ``artifact``, ``device``,
``size_bytes``, ``p90_s``, ``peak_rss_kb``, ``accuracy`` (fraction) and ``largest_gap``
(fraction: 0.02 = 2 accuracy points), read by ``load_side`` from:

- a results database (``.db``, ``.sqlite``, ``.sqlite3``): ``Store.summary_rows()``;
- a pytest-benchmark JSON (``--benchmark-json``): ``benchmarks[*].extra_info`` holding
  those keys (``artifact`` defaulting to the benchmark's name);
- a gate JSON (``{"schema": "edgefair.gate/1", "rows": [...]}``) that
  ``export_gate_json(db, path)`` writes: the small baseline file committed to the repo.

Rows are matched by artefact name + device. An artefact in the baseline but missing
from the current side fails the gate; one only in the current side is listed as new.
Bounds (``GateBounds``): p90 latency and size may grow by at most a fraction, RSS too
when a bound is set, accuracy may fall to at least a ratio of the baseline, and the
largest subgroup gap may grow by at most some accuracy points. Latency is not gated
on an emulated device (it means nothing there), and a current run flagged invalid
(stop rule not met, throttling, contention) fails the latency check (its numbers are not to be trusted) unless the
baseline's was invalid too.
"""

from __future__ import annotations

import io
import json
import math
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgefair.contracts.errors import EdgefairError
from edgefair.contracts.jsonio import atomic_write_text

GATE_SCHEMA = "edgefair.gate/1"
DB_SUFFIXES = (".db", ".sqlite", ".sqlite3")
ROW_KEYS = ("artifact", "device", "size_bytes", "p90_s", "peak_rss_kb", "accuracy", "largest_gap",
            "status", "valid", "emulated", "verdict", "state")
# Verdicts that say compression made an artefact worse: newly reaching one fails the gate.
WORSE_VERDICTS = ("gap-widened", "accuracy-drop")


class GateError(EdgefairError, ValueError):
    """A side cannot be read (missing file, unknown format, bad rows); names the file."""


@dataclass(frozen=True)
class GateBounds:
    """How much worse the current side may be than the baseline.

    - ``max_p90_regression``: p90 latency may grow by this fraction (0.10 = +10%).
    - ``max_size_regression``: model file size may grow by this fraction.
    - ``max_gap_increase_pt``: the largest subgroup gap may grow by this many accuracy points.
    - ``min_accuracy_ratio``: current accuracy must be >= this times the baseline's.
    - ``max_rss_regression``: peak RSS may grow by this fraction; None: not gated.
    """

    max_p90_regression: float = 0.10
    max_size_regression: float = 0.05
    max_gap_increase_pt: float = 2.0
    min_accuracy_ratio: float = 0.99
    max_rss_regression: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_p90_regression", "max_size_regression", "max_gap_increase_pt"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if not (0 < self.min_accuracy_ratio <= 1):
            raise ValueError(f"min_accuracy_ratio must be in (0, 1], got {self.min_accuracy_ratio!r}")
        if self.max_rss_regression is not None and not (
                math.isfinite(self.max_rss_regression) and self.max_rss_regression >= 0):
            raise ValueError(
                f"max_rss_regression must be a finite number >= 0 or None, got {self.max_rss_regression!r}")


@dataclass
class GateRow:
    """One check: a metric of one artefact on one device."""

    artifact: str
    device: str
    metric: str  # p90_s | size_bytes | accuracy | largest_gap | peak_rss_kb | presence | status | verdict
    baseline: float | str | None
    current: float | str | None
    change: float | None  # relative (p90, size, RSS), ratio (accuracy) or points (gap)
    bound: float | None
    ok: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GateResult:
    rows: list[GateRow]
    bounds: GateBounds
    new: list[tuple[str, str]] = field(default_factory=list)  # (artifact, device) only in current
    missing: list[tuple[str, str]] = field(default_factory=list)  # only in baseline
    baseline_source: str = ""
    current_source: str = ""

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def failures(self) -> list[GateRow]:
        return [r for r in self.rows if not r.ok]

    def summary(self) -> str:
        """One line: passed, or how many checks failed and the first few."""
        n_pairs = len({(r.artifact, r.device) for r in self.rows})
        if self.ok:
            extra = f"; new: {', '.join(f'{a}@{d}' for a, d in self.new)}" if self.new else ""
            return f"gate passed: {len(self.rows)} checks on {n_pairs} artefact × device pairs{extra}"
        shown = "; ".join(f"{r.artifact}@{r.device} {r.metric}: {r.note}" for r in self.failures[:3])
        more = f" (+{len(self.failures) - 3} more)" if len(self.failures) > 3 else ""
        return f"gate FAILED: {len(self.failures)} of {len(self.rows)} checks: {shown}{more}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "summary": self.summary(),
            "baseline": self.baseline_source,
            "current": self.current_source,
            "bounds": asdict(self.bounds),
            "rows": [r.to_dict() for r in self.rows],
            "failures": [r.to_dict() for r in self.failures],
            "new": [{"artifact": a, "device": d} for a, d in self.new],
            "missing": [{"artifact": a, "device": d} for a, d in self.missing],
        }


# ------------------------------------------------------------------ reading a side
def _num(v: Any, where: str, key: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise GateError(f"{where}: {key} must be a finite number or null, got {v!r}")
    return float(v)


def _normalise(raw: dict[str, Any], where: str) -> dict[str, Any]:
    if not raw.get("artifact") or not raw.get("device"):
        raise GateError(f"{where}: a row lacks 'artifact' or 'device': {json.dumps(raw, default=str)[:200]}")
    row: dict[str, Any] = {"artifact": str(raw["artifact"]), "device": str(raw["device"])}
    for key in ("size_bytes", "p90_s", "peak_rss_kb", "accuracy", "largest_gap"):
        v = _num(raw.get(key), where, key)
        row[key] = int(v) if v is not None and key in ("size_bytes", "peak_rss_kb") and v.is_integer() else v
    row["status"] = str(raw.get("status") or "ok")
    for key in ("verdict", "state"):  # the audit's two statements (optional: older baselines lack them)
        row[key] = None if raw.get(key) is None else str(raw[key])
    row["valid"] = bool(raw.get("valid", True))
    row["emulated"] = bool(raw.get("emulated", False))
    return row


def _db_rows(path: Path) -> list[dict[str, Any]]:
    from edgefair.bench.store import Store, StoreError

    try:
        with Store(path, readonly=True) as store:
            summary = store.summary_rows()
    except (StoreError, sqlite3.DatabaseError) as e:
        raise GateError(f"{path}: not a readable results database ({e})") from None
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for s in summary:
        accuracy = s.get("audit_accuracy") if s.get("audit_accuracy") is not None else s.get("run_accuracy")
        row = _normalise({"artifact": s["name"], "device": s["device"], "size_bytes": s.get("size_bytes"),
                          "p90_s": s.get("p90_s"), "peak_rss_kb": s.get("peak_rss_kb"), "accuracy": accuracy,
                          "largest_gap": s.get("largest_gap"), "status": s.get("status"),
                          "valid": bool(s.get("valid")) if s.get("status") == "ok" else True,
                          "emulated": bool(s.get("emulated")), "verdict": s.get("verdict"),
                          "state": _state(s.get("audit_summary"))}, str(path))
        key = (row["artifact"], row["device"])
        # Several settings per artefact × device: keep an ok one (the first, in the DB's order).
        if key not in rows or (rows[key]["status"] != "ok" and row["status"] == "ok"):
            rows[key] = row
    return list(rows.values())


def _state(summary: dict[str, Any] | None) -> str | None:
    """The audit's absolute state in a few words (pre-existing gaps, groups at chance)."""
    from edgefair.bench.report_fairness import short_state
    from edgefair.fairness.summary import AuditSummary

    if not summary:
        return None
    try:
        return short_state(AuditSummary.from_dict(summary))
    except (ValueError, TypeError, KeyError):
        return None


def _json_rows(path: Path, doc: Any) -> list[dict[str, Any]]:
    where = str(path)
    if isinstance(doc, dict) and isinstance(doc.get("benchmarks"), list):  # pytest-benchmark
        rows = []
        for b in doc["benchmarks"]:
            extra = dict(b.get("extra_info") or {})
            extra.setdefault("artifact", b.get("name"))
            rows.append(_normalise(extra, f"{where}: benchmark {b.get('name')!r}"))
        return rows
    if isinstance(doc, dict) and doc.get("schema") == GATE_SCHEMA and isinstance(doc.get("rows"), list):
        return [_normalise(r, where) for r in doc["rows"]]
    raise GateError(f"{where}: neither a pytest-benchmark JSON (no 'benchmarks' list) nor a gate JSON "
                    f"(schema {GATE_SCHEMA!r} with 'rows')")


def load_side(path: Path) -> list[dict[str, Any]]:
    """The rows of one side: a results DB, a pytest-benchmark JSON or a gate JSON."""
    path = Path(path)
    if not path.is_file():
        raise GateError(f"{path}: no such file")
    if path.suffix.lower() in DB_SUFFIXES:
        rows = _db_rows(path)
    else:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise GateError(
                f"{path}: not JSON ({e}); a results database must end in {', '.join(DB_SUFFIXES)}") from None
        rows = _json_rows(path, doc)
    seen: set[tuple[str, str]] = set()
    for r in rows:
        key = (r["artifact"], r["device"])
        if key in seen:
            raise GateError(f"{path}: {r['artifact']} on {r['device']} appears twice")
        seen.add(key)
    return rows


def export_gate_json(db: Path, path: Path) -> Path:
    """Write the gate rows of a results DB as a small JSON file (atomically): the baseline."""
    rows = load_side(Path(db))
    doc = {
        "schema": GATE_SCHEMA,
        "source": Path(db).name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "units": {"size_bytes": "bytes", "p90_s": "seconds", "peak_rss_kb": "KiB",
                  "accuracy": "fraction", "largest_gap": "fraction (0.02 = 2 accuracy points)"},
        "rows": [{k: r[k] for k in ROW_KEYS} for r in sorted(rows, key=lambda r: (r["device"], r["artifact"]))],
    }
    # One row per line: a small committed baseline with readable diffs.
    rows_text = ",\n  ".join(json.dumps(r, allow_nan=False) for r in doc.pop("rows"))
    head = json.dumps(doc, indent=1, allow_nan=False)[:-2]
    text = f'{head},\n "rows": [\n  {rows_text}\n ]\n}}\n'
    json.loads(text)  # still one valid JSON document
    return atomic_write_text(path, text)


# ------------------------------------------------------------------ comparing
def _relative(metric: str, a: str, d: str, base: float | None, cur: float | None, bound: float,
              what: str) -> GateRow:
    if base is None:
        return GateRow(a, d, metric, base, cur, None, bound, True, "no baseline value: not gated")
    if cur is None:
        return GateRow(a, d, metric, base, cur, None, bound, False, f"no current {what}")
    change = (cur - base) / base if base > 0 else (0.0 if cur == base else math.inf)
    ok = change <= bound + 1e-12
    note = f"{what} {change:+.1%} (bound +{bound:.0%})"
    return GateRow(a, d, metric, base, cur, None if math.isinf(change) else change, bound, ok, note)


def _compare_pair(a: str, d: str, base: dict[str, Any], cur: dict[str, Any], bounds: GateBounds) -> list[GateRow]:
    if cur["status"] != "ok":
        return [GateRow(a, d, "status", base["status"], cur["status"], None, None, base["status"] != "ok",
                        "the current run failed" if base["status"] == "ok" else "failed on both sides")]
    out = []
    if base["status"] != "ok":
        out.append(GateRow(a, d, "status", base["status"], cur["status"], None, None, True, "fixed: it runs now"))
    if cur["emulated"] or base["emulated"]:
        out.append(GateRow(a, d, "p90_s", base["p90_s"], cur["p90_s"], None, None, True,
                           "emulated device: latency not gated"))
    elif not cur["valid"] and not base["valid"]:
        out.append(GateRow(a, d, "p90_s", base["p90_s"], cur["p90_s"], None, bounds.max_p90_regression, True,
                           "invalid on both sides: latency not gated"))
    elif not cur["valid"]:
        out.append(GateRow(a, d, "p90_s", base["p90_s"], cur["p90_s"], None, bounds.max_p90_regression, False,
                           "current run invalid: latency not trusted, measure again"))
    else:
        out.append(_relative("p90_s", a, d, base["p90_s"], cur["p90_s"], bounds.max_p90_regression, "p90 latency"))
    out.append(_relative("size_bytes", a, d, base["size_bytes"], cur["size_bytes"], bounds.max_size_regression,
                         "size"))
    if bounds.max_rss_regression is not None:
        out.append(_relative("peak_rss_kb", a, d, base["peak_rss_kb"], cur["peak_rss_kb"],
                             bounds.max_rss_regression, "peak RSS"))
    b, c = base["accuracy"], cur["accuracy"]
    if b is None:
        out.append(GateRow(a, d, "accuracy", b, c, None, bounds.min_accuracy_ratio, True,
                           "no baseline value: not gated"))
    elif c is None:
        out.append(GateRow(a, d, "accuracy", b, c, None, bounds.min_accuracy_ratio, False, "no current accuracy"))
    else:
        ratio = c / b if b > 0 else 1.0
        ok = ratio >= bounds.min_accuracy_ratio - 1e-12
        out.append(GateRow(a, d, "accuracy", b, c, ratio, bounds.min_accuracy_ratio, ok,
                           f"accuracy {100 * (c - b):+.2f} pt, ratio {ratio:.4f} "
                           f"(bound >= {bounds.min_accuracy_ratio})"))
    b, c = base["largest_gap"], cur["largest_gap"]
    if b is None:
        out.append(GateRow(a, d, "largest_gap", b, c, None, bounds.max_gap_increase_pt, True,
                           "no baseline audit: not gated"))
    elif c is None:
        out.append(GateRow(a, d, "largest_gap", b, c, None, bounds.max_gap_increase_pt, False,
                           "no current audit (largest gap unknown)"))
    else:
        pts = 100 * (c - b)
        ok = pts <= bounds.max_gap_increase_pt + 1e-9
        out.append(GateRow(a, d, "largest_gap", b, c, pts, bounds.max_gap_increase_pt, ok,
                           f"largest gap {pts:+.2f} pt (bound +{bounds.max_gap_increase_pt:g} pt)"))
    if cur.get("verdict") is not None:
        out.append(_verdict_row(a, d, base, cur))
    return out


def _verdict_row(a: str, d: str, base: dict[str, Any], cur: dict[str, Any]) -> GateRow:
    """Both statements of the current audit; fails when compression newly made the artefact worse."""
    b, c = base.get("verdict"), cur["verdict"]
    worse = c in WORSE_VERDICTS and b is not None and b != c
    effect = (f"compression effect now {c} (baseline {b})" if worse else f"compression effect {c}"
              + ("" if b is not None else " (no baseline verdict: not gated)"))
    note = f"{effect}; state: {cur.get('state') or 'unknown'}"
    return GateRow(a, d, "verdict", b, c, None, None, not worse, note)


def compare(baseline: list[dict[str, Any]], current: list[dict[str, Any]],
            bounds: GateBounds | None = None) -> GateResult:
    """Check every baseline artefact × device against the current side."""
    bounds = bounds or GateBounds()
    base = {(r["artifact"], r["device"]): _normalise(r, "baseline") for r in baseline}
    cur = {(r["artifact"], r["device"]): _normalise(r, "current") for r in current}
    rows: list[GateRow] = []
    missing = []
    for key in sorted(base):
        a, d = key
        if key not in cur:
            missing.append(key)
            rows.append(GateRow(a, d, "presence", "present", "missing", None, None, False,
                                "in the baseline but missing from the current results"))
            continue
        rows += _compare_pair(a, d, base[key], cur[key], bounds)
    new = sorted(k for k in cur if k not in base)
    return GateResult(rows=rows, bounds=bounds, new=new, missing=missing)


def run_gate(baseline: Path, current: Path, bounds: GateBounds | None = None) -> GateResult:
    """Load both sides (see ``load_side``) and compare them."""
    base_rows = load_side(Path(baseline))
    if not base_rows:
        raise GateError(f"{baseline}: the baseline holds no rows to compare against (an empty or new database?)")
    result = compare(base_rows, load_side(Path(current)), bounds)
    result.baseline_source, result.current_source = str(baseline), str(current)
    return result


# ------------------------------------------------------------------ the diff table
def _fmt(metric: str, v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if metric == "p90_s":
        return f"{1000 * v:.3f} ms"
    if metric == "size_bytes":
        return f"{v / 1024:.1f} KiB"
    if metric == "peak_rss_kb":
        return f"{v / 1024:.1f} MiB"
    if metric in ("accuracy", "largest_gap"):
        return f"{100 * v:.2f}%" if metric == "accuracy" else f"{100 * v:.2f} pt"
    return f"{v:g}"


def _fmt_change(r: GateRow) -> str:
    if r.change is None:
        return "—"
    if r.metric == "accuracy":
        return f"×{r.change:.4f}"
    if r.metric == "largest_gap":
        return f"{r.change:+.2f} pt"
    return f"{r.change:+.1%}"


def _fmt_bound(r: GateRow) -> str:
    if r.bound is None:
        return "—"
    if r.metric == "accuracy":
        return f"≥ ×{r.bound:g}"
    if r.metric == "largest_gap":
        return f"≤ +{r.bound:g} pt"
    return f"≤ +{r.bound:.0%}"


def format_diff_table(result: GateResult, *, only_failures: bool = False, width: int = 150) -> str:
    """The checks as a text table (rich, no colour codes) followed by the summary line."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="bench gate: baseline → current", show_lines=False, header_style="bold")
    for col, justify in (("artefact", "left"), ("device", "left"), ("metric", "left"), ("baseline", "right"),
                         ("current", "right"), ("change", "right"), ("bound", "right"), ("", "left"),
                         ("note", "left")):
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for r in result.rows:
        if only_failures and r.ok:
            continue
        table.add_row(r.artifact, r.device, r.metric, _fmt(r.metric, r.baseline), _fmt(r.metric, r.current),
                      _fmt_change(r), _fmt_bound(r), "ok" if r.ok else "FAIL", "" if r.ok and not r.note.startswith(
                          ("no ", "emulated", "fixed", "invalid", "failed")) else r.note)
    for a, d in result.new:
        table.add_row(a, d, "presence", "—", "present", "—", "—", "new", "only in the current results")
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, highlight=False, emoji=False).print(table)
    return buf.getvalue().rstrip() + "\n" + result.summary() + "\n"
