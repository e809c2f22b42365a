"""The job store: every job on every platform, in one SQLite file (WAL) under the user's data directory.

Each write is one short `BEGIN IMMEDIATE` transaction, so many `fth` processes can update it at once.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from finetune_hub.errors import ConfigError, redact
from finetune_hub.records import JobEvent, JobStatus, to_plain, utcnow

# Each entry upgrades the schema by one version; never edit a released entry, append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        remote_id TEXT,
        idempotency_key TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        spec TEXT NOT NULL,
        spec_hash TEXT NOT NULL,
        data_hash TEXT NOT NULL,
        account TEXT,
        status TEXT NOT NULL,
        native_status TEXT,
        model TEXT,
        result TEXT,
        estimated_usd REAL,
        actual_usd REAL,
        error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX jobs_remote ON jobs(provider, remote_id);
    CREATE INDEX jobs_request ON jobs(provider, spec_hash, data_hash);
    CREATE TABLE status_history (
        job_id TEXT NOT NULL REFERENCES jobs(id),
        status TEXT NOT NULL,
        native_status TEXT,
        at TEXT NOT NULL
    );
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL REFERENCES jobs(id),
        event_id TEXT,
        time TEXT NOT NULL,
        level TEXT NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL,
        data TEXT NOT NULL,
        UNIQUE (job_id, event_id)
    );
    CREATE TABLE uploads (
        content_hash TEXT NOT NULL,
        provider TEXT NOT NULL,
        account TEXT NOT NULL,
        remote_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (content_hash, provider, account)
    );
    """,
)


def fth_home() -> Path:
    """Where finetune-hub keeps its state: `$FTH_HOME`, else the platform's user data directory."""
    if env := os.environ.get("FTH_HOME"):
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("finetune-hub", appauthor=False))


@dataclass(frozen=True)
class JobRecord:
    id: str
    provider: str
    remote_id: str | None
    idempotency_key: str
    name: str
    spec: dict[str, Any]
    spec_hash: str
    data_hash: str
    account: str | None
    status: JobStatus
    native_status: str | None
    model: str | None
    result: dict[str, Any] | None
    estimated_usd: float | None
    actual_usd: float | None
    error: str | None
    created_at: str
    updated_at: str

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> JobRecord:
        data = dict(row)
        data["spec"] = json.loads(data["spec"])
        data["result"] = json.loads(data["result"]) if data["result"] else None
        data["status"] = JobStatus(data["status"])
        return cls(**data)


def _event(row: sqlite3.Row) -> JobEvent:
    return JobEvent(
        time=datetime.fromisoformat(row["time"]),
        message=row["message"],
        level=row["level"],
        kind=row["kind"],
        data=json.loads(row["data"]),
        id=row["event_id"],
    )


def _event_key(event: JobEvent) -> str:
    """A stable id for events the platform gives none, so re-fetching them adds nothing."""
    import hashlib

    return "h-" + hashlib.sha256(f"{event.time.isoformat()}|{event.kind}|{event.message}".encode()).hexdigest()[:24]


def _code(exc: sqlite3.Error) -> int:
    """The primary SQLite result code (the low byte of the extended one Python reports; 0 for errors of
    Python's own, such as ProgrammingError)."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF


_COLUMNS = frozenset({"remote_id", "status", "native_status", "model", "result", "actual_usd", "estimated_usd",
                      "error", "account"})  # fmt: skip


def _columns(fields: dict[str, Any]) -> dict[str, Any]:
    """Job columns as stored: statuses by value, results as JSON, errors redacted."""
    if unknown := set(fields) - _COLUMNS:
        raise ValueError(f"not a job column: {sorted(unknown)}")
    values = dict(fields)
    if values.get("result") is not None:
        values["result"] = json.dumps(to_plain(values["result"]))
    if values.get("error"):
        values["error"] = redact(str(values["error"]))
    if isinstance(values.get("status"), JobStatus):
        values["status"] = values["status"].value
    return values


class JobStore:
    #: how long opening the store waits for other processes to finish setting it up
    LOCK_WAIT_S = 60.0

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path else fth_home() / "jobs.db"
        self._migrated = False

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the job store at {self.path}: {exc}", hint="set FTH_HOME") from None
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA busy_timeout = 60000")
            if not self._migrated:
                self._migrate(conn)
            if write:
                conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if conn.in_transaction:
                conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if _code(exc) not in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
                raise
            raise ConfigError(
                f"the job store at {self.path} is damaged or not an SQLite database ({exc})",
                hint=f"move it aside (e.g. `mv {self.path} {self.path}.bad`) and run again: a new, empty store is "
                "created; the old file is kept for recovery",
            ) from None
        finally:
            conn.close()

    def _set_wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL, waiting (bounded) while another process holds a lock: SQLite answers "database is
        locked" at once here instead of using the busy timeout, e.g. when several processes open a new store."""
        deadline = time.monotonic() + self.LOCK_WAIT_S
        delay = 0.005
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if _code(exc) not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise
                if time.monotonic() >= deadline:
                    raise ConfigError(
                        f"the job store at {self.path} stayed locked for {self.LOCK_WAIT_S:.0f} s",
                        hint="another fth process is using it; try again when it is done",
                    ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        self._set_wal(conn)
        conn.execute("BEGIN IMMEDIATE")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            conn.execute("ROLLBACK")
            raise ConfigError(
                f"the job store at {self.path} has schema version {version}, newer than this finetune-hub "
                f"understands ({len(MIGRATIONS)})",
                hint="upgrade finetune-hub",
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
        self._migrated = True

    @property
    def schema_version(self) -> int:
        with self._connect() as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    # -- jobs ----------------------------------------------------------------------------------------

    def create_job(
        self,
        *,
        provider: str,
        name: str,
        spec: dict[str, Any],
        spec_hash: str,
        data_hash: str,
        account: str | None = None,
        estimated_usd: float | None = None,
    ) -> JobRecord:
        """Record a job before anything is sent, with the idempotency key the adapter will send."""
        job_id = "fth-" + secrets.token_hex(4)
        now = utcnow().isoformat()
        with self._connect(write=True) as conn:
            conn.execute(
                "INSERT INTO jobs (id, provider, idempotency_key, name, spec, spec_hash, data_hash, account, "
                "status, estimated_usd, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    job_id,
                    provider,
                    "fth-" + secrets.token_hex(12),
                    name,
                    json.dumps(spec),
                    spec_hash,
                    data_hash,
                    account,
                    JobStatus.CREATED.value,
                    estimated_usd,
                    now,
                    now,
                ),
            )
            conn.execute(
                "INSERT INTO status_history (job_id, status, at) VALUES (?,?,?)",
                (job_id, JobStatus.CREATED.value, now),
            )
        return self.get(job_id)

    def find_unsent(self, provider: str, spec_hash: str, data_hash: str, account: str | None) -> JobRecord | None:
        """A job recorded for the same request on the same account whose remote id never came back (a crash
        mid-submit), also one cleared with `fth cancel` since: its idempotency key finds the job if the platform
        created it after all."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT * FROM jobs WHERE provider=? AND spec_hash=? AND data_hash=? AND account IS ? "
                "AND remote_id IS NULL AND status IN (?, ?) ORDER BY created_at DESC LIMIT 1",
                (provider, spec_hash, data_hash, account, JobStatus.CREATED.value, JobStatus.CANCELLED.value),
            ).fetchone()
        return JobRecord._from_row(row) if row else None

    def unfinished_twins(self, provider: str, spec_hash: str, data_hash: str) -> list[JobRecord]:
        """Jobs sent for the same request (spec and data) that have not finished: a second submit is most
        likely a mistake, and trains (and bills) twice."""
        active = [s.value for s in JobStatus if not s.terminal]  # (sent: remote_id is set)
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT * FROM jobs WHERE provider=? AND spec_hash=? AND data_hash=? AND remote_id IS NOT NULL "
                f"AND status IN ({', '.join('?' * len(active))}) ORDER BY created_at",
                (provider, spec_hash, data_hash, *active),
            ).fetchall()
        return [JobRecord._from_row(row) for row in rows]

    def get(self, ref: str) -> JobRecord:
        """A job by local id, remote id, or a unique prefix of the local id."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT * FROM jobs WHERE id = ? OR remote_id = ? OR substr(id, 1, ?) = ? LIMIT 2",
                (ref, ref, len(ref), ref),
            ).fetchall()
        exact = [r for r in rows if ref in (r["id"], r["remote_id"])]
        if len(exact) == 1 or len(rows) == 1:
            return JobRecord._from_row(exact[0] if exact else rows[0])
        if not rows:
            raise ConfigError(f"no job '{ref}' in the job store ({self.path})", hint="`fth list` shows the jobs")
        raise ConfigError(f"'{ref}' matches more than one job", hint="give more characters of the id")

    def list_jobs(self, *, provider: str | None = None, status: str | None = None, limit: int = 100) -> list[JobRecord]:
        sql, args = "SELECT * FROM jobs WHERE 1=1", list[str]()
        if provider:
            sql, args = sql + " AND provider = ?", [*args, provider]
        if status:
            sql, args = sql + " AND status = ?", [*args, status]
        with self._connect() as conn:
            rows = conn.execute(sql + " ORDER BY created_at DESC LIMIT ?", (*args, str(limit))).fetchall()
        return [JobRecord._from_row(r) for r in rows]

    def update(
        self, job_id: str, decide: Callable[[dict[str, Any]], dict[str, Any]] | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Set columns of one job; a status change is appended to its history in the same transaction. `decide`,
        given the job's current status and remote id, returns the columns to set instead: a change that depends
        on what another process wrote (a cancel racing a submit) is then decided under the write lock. Returns
        the columns set."""
        now = utcnow().isoformat()
        with self._connect(write=True) as conn:
            current = conn.execute("SELECT status, native_status, remote_id FROM jobs WHERE id=?", (job_id,)).fetchone()
            if current is None:
                raise ConfigError(f"no job '{job_id}' in the job store")
            if decide is not None:
                fields = decide(dict(current))
            if not fields:
                return fields
            values = _columns(fields)
            sets = ", ".join(f"{k} = ?" for k in values)
            conn.execute(f"UPDATE jobs SET {sets}, updated_at = ? WHERE id = ?", (*values.values(), now, job_id))
            status, native = values.get("status"), values.get("native_status", current["native_status"])
            if status and (status, native) != (current["status"], current["native_status"]):
                conn.execute(
                    "INSERT INTO status_history (job_id, status, native_status, at) VALUES (?,?,?,?)",
                    (job_id, status, native, now),
                )
        return fields

    def forget_unsent(self, job_id: str) -> bool:
        """Delete a job the platform was never asked to create (no remote id), with its history and events;
        returns whether it was deleted."""
        with self._connect(write=True) as conn:
            if conn.execute("SELECT 1 FROM jobs WHERE id=? AND remote_id IS NULL", (job_id,)).fetchone() is None:
                return False
            conn.execute("DELETE FROM events WHERE job_id=?", (job_id,))
            conn.execute("DELETE FROM status_history WHERE job_id=?", (job_id,))
            conn.execute("DELETE FROM jobs WHERE id=?", (job_id,))
        return True

    def history(self, job_id: str) -> list[tuple[JobStatus, str | None, str]]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT status, native_status, at FROM status_history WHERE job_id=? ORDER BY rowid", (job_id,)
            ).fetchall()
        return [(JobStatus(r["status"]), r["native_status"], r["at"]) for r in rows]

    # -- events --------------------------------------------------------------------------------------

    def add_events(self, job_id: str, events: Iterable[JobEvent]) -> int:
        """Append events, skipping ones already stored (same event id); returns how many were new."""
        rows = [
            (
                job_id,
                e.id or _event_key(e),
                e.time.isoformat(),
                e.level,
                e.kind,
                redact(e.message),
                json.dumps(to_plain(e.data)),
            )
            for e in events
        ]
        with self._connect(write=True) as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO events (job_id, event_id, time, level, kind, message, data) "
                "VALUES (?,?,?,?,?,?,?)",
                rows,
            )
            return conn.total_changes - before

    def events(self, job_id: str, *, after_seq: int = 0) -> list[tuple[int, JobEvent]]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT * FROM events WHERE job_id=? AND seq>? ORDER BY time, seq", (job_id, after_seq)
            ).fetchall()
        return [(r["seq"], _event(r)) for r in rows]

    def last_event(self, job_id: str) -> JobEvent | None:
        """The newest event the platform sent (what `sync` asks it to continue from). The events fth writes itself
        (a rerun's links, an auto-cancel) are stamped with this machine's clock and would hide platform events
        stamped earlier that were not fetched yet. Their ids are matched exactly: SageMaker's start fth-<spec>- too."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT * FROM events WHERE job_id=? AND NOT (event_id = 'fth-rerun-of' "
                "OR event_id GLOB 'fth-rerun-as-fth-*' OR event_id GLOB 'fth-budget-fth-*') "
                "ORDER BY time DESC, seq DESC LIMIT 1",
                (job_id,),
            ).fetchone()
        return _event(row) if row else None

    # -- uploads -------------------------------------------------------------------------------------

    def find_upload(self, content_hash: str, provider: str, account: str) -> str | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT remote_id FROM uploads WHERE content_hash=? AND provider=? AND account=?",
                (content_hash, provider, account),
            ).fetchone()
        return row["remote_id"] if row else None

    def record_upload(self, content_hash: str, provider: str, account: str, remote_id: str) -> None:
        with self._connect(write=True) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO uploads (content_hash, provider, account, remote_id, created_at) "
                "VALUES (?,?,?,?,?)",
                (content_hash, provider, account, remote_id, utcnow().isoformat()),
            )

    def forget_upload(self, content_hash: str, provider: str, account: str) -> None:
        """Drop a mapping the platform no longer honours (the remote file was deleted)."""
        with self._connect(write=True) as conn:
            conn.execute(
                "DELETE FROM uploads WHERE content_hash=? AND provider=? AND account=?",
                (content_hash, provider, account),
            )
