"""The results database: one SQLite file (WAL), one transaction per result.

Keys are artefact id × device × settings key, so a killed sweep resumes where it
stopped: a result either committed whole or is absent. ``report`` reads only this file.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgefair.contracts.audit import AuditKey, audit_breadth
from edgefair.contracts.errors import EdgefairError
from edgefair.contracts.jsonio import dumps
from edgefair.contracts.manifest import Manifest
from edgefair.contracts.measurement import settings_key
from edgefair.contracts.result import AgentResult

if TYPE_CHECKING:
    from edgefair.fairness.summary import AuditSummary

SCHEMA_VERSION = 3
# Columns added since schema 1, as (table, column, type): an older database gains them on open.
_MIGRATIONS = {2: [("runs", "rss_method", "TEXT"), ("runs", "model_rss_kb", "INTEGER"), ("runs", "threads", "INTEGER")],
               3: [("audits", "settings_json", "TEXT"), ("audits", "summary_json", "TEXT")]}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS artifacts (
    artifact_id TEXT PRIMARY KEY, name TEXT NOT NULL, target TEXT NOT NULL, format TEXT NOT NULL,
    precision TEXT NOT NULL, sparsity_requested REAL, sparsity_measured REAL,
    size_bytes INTEGER, gzip_bytes INTEGER, params_total INTEGER, params_nonzero INTEGER,
    path TEXT NOT NULL, manifest_json TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, artifact_id TEXT NOT NULL, device TEXT NOT NULL, settings_key TEXT NOT NULL,
    settings_json TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('ok', 'failed')), error TEXT,
    p50_s REAL, p90_s REAL, p99_s REAL, mean_s REAL, std_s REAL, n INTEGER,
    peak_rss_kb INTEGER, accuracy REAL, valid INTEGER, emulated INTEGER,
    samples_path TEXT, result_json TEXT NOT NULL, created_at REAL NOT NULL,
    rss_method TEXT, model_rss_kb INTEGER, threads INTEGER,
    UNIQUE (artifact_id, device, settings_key)
);
CREATE TABLE IF NOT EXISTS audits (
    id INTEGER PRIMARY KEY, artifact_id TEXT NOT NULL, device TEXT NOT NULL, settings_key TEXT NOT NULL,
    reference TEXT, verdict TEXT NOT NULL, accuracy REAL, largest_gap REAL, gap_lo REAL, gap_hi REAL,
    gap_attribute TEXT, audit_json TEXT NOT NULL, created_at REAL NOT NULL,
    settings_json TEXT, summary_json TEXT,
    UNIQUE (artifact_id, device, settings_key)
);
CREATE TABLE IF NOT EXISTS stages (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL, detail_json TEXT NOT NULL, created_at REAL NOT NULL
);
"""


_SUMMARY_ARTIFACT = ("artifact_id", "name", "target", "format", "precision", "sparsity_requested",
                     "sparsity_measured", "size_bytes", "gzip_bytes", "params_total", "params_nonzero")
_SUMMARY_RUN = ("device", "status", "error", "p50_s", "p90_s", "p99_s", "mean_s", "n", "peak_rss_kb", "valid",
                "emulated")


class StoreError(EdgefairError, RuntimeError):
    """The database file is unreadable, of another schema, or corrupt."""


__all__ = ["SCHEMA_VERSION", "Store", "StoreError", "settings_key"]


class Store:
    """A results database at ``path`` (created on first use)."""

    def __init__(self, path: Path, *, readonly: bool = False):
        """Open (or create) the database; ``readonly`` opens an existing one without writing to it."""
        self.path = Path(path)
        try:
            self._conn = self._connect(readonly)
            if readonly:
                self._check_readable()
            else:
                self._create_or_migrate()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path}: not a usable results database ({e})") from None

    def _connect(self, readonly: bool) -> sqlite3.Connection:
        if readonly:
            if not self.path.is_file():
                raise StoreError(f"{self.path}: no results database there")
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30, isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        return conn

    def _version(self) -> int | None:
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.OperationalError:
            return None
        return None if row is None else int(row[0])

    def _check_readable(self) -> None:
        version = self._version()
        if version is None:
            raise StoreError(f"{self.path}: not an edgefair results database (no schema version)")
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {version} is newer than this edgefair's "
                             f"{SCHEMA_VERSION}: upgrade edgefair to read it")

    def _create_or_migrate(self) -> None:
        version = self._version()  # read before anything is written: a newer file stays untouched
        if version is not None and version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {version} is newer than this edgefair's "
                             f"{SCHEMA_VERSION}: upgrade edgefair to read it")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        for step in range((version or SCHEMA_VERSION) + 1, SCHEMA_VERSION + 1):
            for table, column, kind in _MIGRATIONS.get(step, []):
                have = {r[1] for r in self._conn.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT; rolled back whole on any exception (a full disk included:
        StoreError, and every result committed before it stays)."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        except sqlite3.DatabaseError as e:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise StoreError(f"{self.path}: cannot write ({e}); this result was not stored, earlier ones are "
                             "kept") from None

    # ------------------------------------------------------------ writes
    def put_artifact(self, manifest: Manifest, path: Path) -> str:
        sp, f, p = manifest.sparsity, manifest.file, manifest.params
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO artifacts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (manifest.artifact_id, manifest.name, manifest.target, manifest.format, manifest.precision,
                 sp.requested, sp.measured, f.size_bytes, f.gzip_bytes, p.total, p.nonzero, str(Path(path).resolve()),
                 dumps(manifest.to_dict()), time.time()),
            )
        return manifest.artifact_id

    def put_run(self, *, artifact_id: str, device: str, settings: dict[str, Any], result: AgentResult,
                accuracy: float | None = None, samples_path: str | None = None) -> None:
        """Store one agent result (ok or failed) for artefact × device × settings.

        ``peak_rss_kb`` is the largest of one run's phases, all read with ``rss_method``;
        ``model_rss_kb`` is what the model adds (see the agent's ``rss.model_kb``)."""
        t, rss = result.timing, result.rss
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO runs (artifact_id, device, settings_key, settings_json, status, error, p50_s, "
                "p90_s, p99_s, mean_s, std_s, n, peak_rss_kb, accuracy, valid, emulated, samples_path, result_json, "
                "created_at, rss_method, model_rss_kb, threads) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (artifact_id, device, settings_key(settings), json.dumps(settings, sort_keys=True),
                 "ok" if result.ok else "failed", None if result.ok else (result.error or "unknown error"),
                 t.p50_s, t.p90_s, t.p99_s, t.mean_s, t.std_s, t.n, rss.peak_kb, accuracy,
                 int(result.valid), int(result.emulated), samples_path, dumps(result.to_dict()), time.time(),
                 rss.method, rss.model_kb, settings.get("threads")),
            )

    def put_audit(self, *, artifact_id: str, device: str, key: AuditKey, audit: dict[str, Any],
                  summary: AuditSummary) -> None:
        """Store one audit under its settings (``key``): a narrower audit sits beside a wider one."""
        gap = summary.largest_gap
        ci = (gap.ci if gap is not None else None) or (None, None)
        where = None if gap is None else f"{gap.attribute}: {gap.high} vs {gap.low}"
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO audits (artifact_id, device, settings_key, reference, verdict, accuracy, "
                "largest_gap, gap_lo, gap_hi, gap_attribute, audit_json, created_at, settings_json, summary_json) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (artifact_id, device, settings_key(key.to_dict()), key.reference, summary.verdict, summary.accuracy,
                 None if gap is None else gap.estimate, ci[0], ci[1], where, dumps(audit), time.time(),
                 dumps(key.to_dict()), dumps(summary.to_dict())),
            )

    def put_stage(self, key: str, kind: str, status: str, detail: dict[str, Any]) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO stages VALUES (?,?,?,?,?)",
                      (key, kind, status, dumps(detail), time.time()))

    # ------------------------------------------------------------ reads
    def get_stage(self, key: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT * FROM stages WHERE key=?", (key,)).fetchone()
        return None if row is None else {**dict(row), "detail": json.loads(row["detail_json"])}

    def has_run(self, artifact_id: str, device: str, settings: dict[str, Any], *, ok_only: bool = True) -> bool:
        q = "SELECT status FROM runs WHERE artifact_id=? AND device=? AND settings_key=?"
        row = self._conn.execute(q, (artifact_id, device, settings_key(settings))).fetchone()
        return row is not None and (row["status"] == "ok" or not ok_only)

    def get_run(self, artifact_id: str, device: str, settings: dict[str, Any]) -> dict[str, Any] | None:
        q = "SELECT * FROM runs WHERE artifact_id=? AND device=? AND settings_key=?"
        row = self._conn.execute(q, (artifact_id, device, settings_key(settings))).fetchone()
        return None if row is None else {**dict(row), "result": json.loads(row["result_json"])}

    def get_audit(self, artifact_id: str, device: str, settings: dict[str, Any]) -> dict[str, Any] | None:
        q = "SELECT * FROM audits WHERE artifact_id=? AND device=? AND settings_key=?"
        row = self._conn.execute(q, (artifact_id, device, settings_key(settings))).fetchone()
        return None if row is None else dict(row)

    def runs_for(self, artifact_id: str, device: str) -> list[dict[str, Any]]:
        """Runs of one artefact on one device, newest first."""
        q = "SELECT * FROM runs WHERE artifact_id=? AND device=? ORDER BY created_at DESC"
        return [dict(r) for r in self._conn.execute(q, (artifact_id, device))]

    def artifacts(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._conn.execute("SELECT * FROM artifacts ORDER BY name")]

    def runs(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._conn.execute("SELECT * FROM runs ORDER BY artifact_id, device")]

    def audits(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._conn.execute("SELECT * FROM audits ORDER BY artifact_id, device")]

    def widest_audits(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Per artefact × device, the audit covering the most attributes (``AuditKey.breadth``), then the newest."""
        best: dict[tuple[str, str], dict[str, Any]] = {}
        for au in self.audits():
            key = (au["artifact_id"], au["device"])
            rank = (audit_breadth(_loads(au.get("settings_json"))), au["created_at"])
            if key not in best or rank >= best[key]["_rank"]:
                best[key] = {**au, "_rank": rank}
        return best

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per artefact × device: its newest timed run (else newest run) and newest audit.

        An eval-only run (predictions for an audit, no timing) stands in only when the
        artefact has no timed run on that device.
        """
        arts = {a["artifact_id"]: a for a in self.artifacts()}
        best_run: dict[tuple[str, str], dict[str, Any]] = {}
        for r in self.runs():
            key = (r["artifact_id"], r["device"])
            cur = best_run.get(key)
            rank = (r["p50_s"] is not None, r["status"] == "ok", r["created_at"])
            if cur is None or rank > (cur["p50_s"] is not None, cur["status"] == "ok", cur["created_at"]):
                best_run[key] = r
        best_audit = self.widest_audits()
        rows = []
        for key, r in best_run.items():
            a = arts.get(key[0])
            if a is None:
                continue
            au = best_audit.get(key) or {}
            rows.append({
                **{k: a[k] for k in _SUMMARY_ARTIFACT}, **{k: r[k] for k in _SUMMARY_RUN},
                "run_accuracy": r["accuracy"],
                **{k: au.get(k) for k in ("verdict", "largest_gap", "gap_lo", "gap_hi", "gap_attribute")},
                "audit_accuracy": au.get("accuracy"), "audit_summary": _loads(au.get("summary_json")),
            })
        rows.sort(key=lambda x: (x["name"], x["device"]))
        return rows

    def stages(self) -> list[dict[str, Any]]:
        rows = self._conn.execute("SELECT * FROM stages ORDER BY created_at")
        return [{**dict(r), "detail": json.loads(r["detail_json"])} for r in rows]

    def integrity_ok(self) -> bool:
        return self._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _loads(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None
