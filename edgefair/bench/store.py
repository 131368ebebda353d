"""The results database: one SQLite file (WAL), one transaction per result.

Keys are artefact id × device × settings key, so a killed sweep resumes where it
stopped: a result either committed whole or is absent. ``report`` reads only this file.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

SCHEMA_VERSION = 1

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
    UNIQUE (artifact_id, device, settings_key)
);
CREATE TABLE IF NOT EXISTS audits (
    id INTEGER PRIMARY KEY, artifact_id TEXT NOT NULL, device TEXT NOT NULL, settings_key TEXT NOT NULL,
    reference TEXT, verdict TEXT NOT NULL, accuracy REAL, largest_gap REAL, gap_lo REAL, gap_hi REAL,
    gap_attribute TEXT, audit_json TEXT NOT NULL, created_at REAL NOT NULL,
    UNIQUE (artifact_id, device, settings_key)
);
CREATE TABLE IF NOT EXISTS stages (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL, detail_json TEXT NOT NULL, created_at REAL NOT NULL
);
"""


class StoreError(RuntimeError):
    """The database file is unreadable, of another schema, or corrupt."""


def settings_key(settings: dict[str, Any]) -> str:
    """A stable short hash of measurement settings (profile, threads, mode...)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


class Store:
    """A results database at ``path`` (created on first use)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self._conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema version {row[0]}, this edgefair reads {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path}: not a usable results database ({e})") from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT; rolled back whole on any exception."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # ------------------------------------------------------------ writes
    def put_artifact(self, manifest: dict[str, Any], path: Path) -> str:
        sp = manifest.get("sparsity", {})
        f = manifest.get("file", {})
        p = manifest.get("params", {})
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO artifacts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (manifest["artifact_id"], manifest["name"], manifest["target"], manifest["format"], manifest["precision"],
                 sp.get("requested"), sp.get("measured"), f.get("size_bytes"), f.get("gzip_bytes"),
                 p.get("total"), p.get("nonzero"), str(path), json.dumps(manifest), time.time()),
            )
        return manifest["artifact_id"]

    def put_run(self, *, artifact_id: str, device: str, settings: dict[str, Any], result: dict[str, Any],
                accuracy: float | None = None, samples_path: str | None = None) -> None:
        """Store one agent result (ok or failed) for artefact × device × settings."""
        ok = bool(result.get("ok"))
        t = result.get("timing") or {}
        rss = result.get("rss") or {}
        peaks = [rss.get(k) for k in ("after_load_kb", "after_first_kb", "steady_kb") if rss.get(k) is not None]
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO runs (artifact_id, device, settings_key, settings_json, status, error, p50_s, p90_s, "
                "p99_s, mean_s, std_s, n, peak_rss_kb, accuracy, valid, emulated, samples_path, result_json, created_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (artifact_id, device, settings_key(settings), json.dumps(settings, sort_keys=True),
                 "ok" if ok else "failed", None if ok else (result.get("error") or "unknown error"),
                 t.get("p50_s"), t.get("p90_s"), t.get("p99_s"), t.get("mean_s"), t.get("std_s"), t.get("n"),
                 max(peaks) if peaks else None, accuracy, int(bool(result.get("valid", ok))),
                 int(bool((result.get("env") or {}).get("emulated") or result.get("emulated"))),
                 samples_path, json.dumps(result), time.time()),
            )

    def put_audit(self, *, artifact_id: str, device: str, settings: dict[str, Any], reference: str,
                  audit: dict[str, Any], summary: dict[str, Any]) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO audits (artifact_id, device, settings_key, reference, verdict, accuracy, largest_gap, "
                "gap_lo, gap_hi, gap_attribute, audit_json, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (artifact_id, device, settings_key(settings), reference, summary["verdict"], summary.get("accuracy"),
                 summary.get("largest_gap"), summary.get("gap_lo"), summary.get("gap_hi"), summary.get("gap_attribute"),
                 json.dumps(audit), time.time()),
            )

    def put_stage(self, key: str, kind: str, status: str, detail: dict[str, Any]) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO stages VALUES (?,?,?,?,?)", (key, kind, status, json.dumps(detail), time.time()))

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

    def has_audit(self, artifact_id: str, device: str, settings: dict[str, Any]) -> bool:
        q = "SELECT 1 FROM audits WHERE artifact_id=? AND device=? AND settings_key=?"
        return self._conn.execute(q, (artifact_id, device, settings_key(settings))).fetchone() is not None

    def artifacts(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._conn.execute("SELECT * FROM artifacts ORDER BY name")]

    def runs(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._conn.execute("SELECT * FROM runs ORDER BY artifact_id, device")]

    def audits(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._conn.execute("SELECT * FROM audits ORDER BY artifact_id, device")]

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per artefact × device with its latest run and audit (what report and gate read)."""
        q = """
        SELECT a.artifact_id, a.name, a.target, a.format, a.precision, a.sparsity_requested, a.sparsity_measured,
               a.size_bytes, a.gzip_bytes, a.params_total, a.params_nonzero,
               r.device, r.status, r.error, r.p50_s, r.p90_s, r.p99_s, r.mean_s, r.n, r.peak_rss_kb,
               r.accuracy AS run_accuracy, r.valid, r.emulated,
               au.verdict, au.accuracy AS audit_accuracy, au.largest_gap, au.gap_lo, au.gap_hi, au.gap_attribute
        FROM artifacts a
        JOIN runs r ON r.artifact_id = a.artifact_id
        LEFT JOIN audits au ON au.artifact_id = a.artifact_id AND au.device = r.device
        ORDER BY a.name, r.device
        """
        return [dict(r) for r in self._conn.execute(q)]

    def integrity_ok(self) -> bool:
        return self._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
