"""The cron state database: jobs, per-job state, the occurrence log and the run ledger.

One SQLite file (stdlib ``sqlite3``, WAL) in the state directory. Thin I/O: every decision is made
by ``_policy`` and the scheduler; this module stores and reads values. Times are stored as
fixed-width UTC ISO 8601 text, so they sort as text.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, Self

from fencepost.errors import CronStateError, InvalidJobError, JobNotFoundError

from ._job import Job, validate_job_id, validate_job_id_prefix
from ._migrations import MIGRATIONS
from ._policy import Retry, RunStatus, Trigger, state_after_edit
from ._schedule import iso

__all__ = [
    "DB_FILENAME",
    "CronStore",
    "CronStoreStatistics",
    "JobOrigin",
    "JobState",
    "RunRecord",
    "default_db_path",
]

DB_FILENAME = "cron.db"

#: SQLite waits this long for another process's write transaction (the CLI beside a gateway).
BUSY_TIMEOUT_MS = 5000

Migration = tuple[str, tuple[str, ...]]

#: Who put a job in the database: the user (CLI, API, dashboard) or demo mode (DEMO-I1).
JobOrigin = Literal["user", "demo"]


def default_db_path(state_dir: str | os.PathLike[str]) -> str:
    return os.path.join(os.fspath(state_dir), DB_FILENAME)


def _ts(dt: datetime | None) -> str | None:
    return iso(dt) if dt is not None else None


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass(frozen=True)
class JobState:
    """The scheduler's state for one job."""

    job_id: str
    next_run_at: datetime | None  # the next slot (None: a one-shot that has fired)
    due_at: datetime | None  # when that slot is dispatched (later than the slot when paced)
    retry: Retry | None
    backoff_until: datetime | None
    consecutive_errors: int
    last_run_id: str | None
    last_status: str | None
    last_run_at: datetime | None
    running_run_id: str | None
    disabled_reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "next_run_at": _ts(self.next_run_at),
            "due_at": _ts(self.due_at),
            "retry_at": _ts(self.retry.at) if self.retry else None,
            "retry_reason": self.retry.reason if self.retry else None,
            "backoff_until": _ts(self.backoff_until),
            "consecutive_errors": self.consecutive_errors,
            "last_run_id": self.last_run_id,
            "last_status": self.last_status,
            "last_run_at": _ts(self.last_run_at),
            "running_run_id": self.running_run_id,
            "disabled_reason": self.disabled_reason,
        }


@dataclass(frozen=True)
class RunRecord:
    """One row of the run ledger. ``seq`` orders rows by when they were recorded."""

    run_id: str
    job_id: str
    job_name: str
    scheduled_at: datetime
    trigger: Trigger
    attempt: int
    status: RunStatus
    recorded_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error_kind: str | None = None
    error_message: str | None = None
    session_id: str | None = None
    model: str | None = None
    usage: dict[str, Any] | None = None
    reply: str | None = None
    delivery_status: str | None = None  # pending | delivered | failed | interrupted
    delivery_error: str | None = None
    fence: dict[str, Any] | None = None
    seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            out[key] = iso(value) if isinstance(value, datetime) else value
        return out


@dataclass(frozen=True)
class CronStoreStatistics:
    path: str
    schema_version: int
    jobs: int
    enabled_jobs: int
    runs: int
    running: int


_STATE_COLUMNS = {
    "next_run_at",
    "due_at",
    "retry",
    "backoff_until",
    "consecutive_errors",
    "last_run_id",
    "last_status",
    "last_run_at",
    "running_run_id",
    "disabled_reason",
}
_RUN_COLUMNS = {
    "status",
    "started_at",
    "ended_at",
    "error_kind",
    "error_message",
    "session_id",
    "model",
    "usage",
    "reply",
    "delivery_status",
    "delivery_error",
    "fence",
}


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Retry):
        return json.dumps(
            {
                "at": iso(value.at),
                "slot": iso(value.slot),
                "attempt": value.attempt,
                "transient_retries": value.transient_retries,
                "takeover_retries": value.takeover_retries,
                "reason": value.reason,
            }
        )
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value


def _decode_retry(text: str | None) -> Retry | None:
    if not text:
        return None
    obj = json.loads(text)
    return Retry(
        at=datetime.fromisoformat(obj["at"]),
        slot=datetime.fromisoformat(obj["slot"]),
        attempt=int(obj["attempt"]),
        transient_retries=int(obj["transient_retries"]),
        takeover_retries=int(obj["takeover_retries"]),
        reason=str(obj["reason"]),
    )


class CronStore:
    """The cron state database at ``path`` (created and migrated on open).

    Synchronous on purpose: each call is one short local transaction. Close it (or use ``with``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        if not create and not os.path.exists(self.path):
            raise CronStateError(self.path, "no cron database here yet; add a job first")
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._depth = 0
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            # the ledger is what users trust: a committed row survives a power cut
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self.schema_version = self._migrate(migrations)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise CronStateError(self.path, f"cannot open the cron database: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise

    # ---- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<CronStore {self.path} schema={self.schema_version}>"

    def statistics(self) -> CronStoreStatistics:
        row = self._conn.execute(
            "SELECT (SELECT COUNT(*) FROM jobs), (SELECT COUNT(*) FROM jobs WHERE enabled),"
            " (SELECT COUNT(*) FROM runs), (SELECT COUNT(*) FROM runs WHERE status='running')"
        ).fetchone()
        return CronStoreStatistics(self.path, self.schema_version, *row)

    def _migrate(self, migrations: Sequence[Migration]) -> int:
        """Apply pending steps, one transaction each. Invariant CRON-I12."""
        known = len(migrations)
        while True:
            version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
            if version > known:
                raise CronStateError(
                    self.path,
                    f"schema version {version} is newer than this fencepost understands "
                    f"({known}); upgrade fencepost, or use another --state-dir",
                )
            if version == known:
                return version
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                # another process may have migrated while we waited for the write lock
                if int(self._conn.execute("PRAGMA user_version").fetchone()[0]) == version:
                    name, statements = migrations[version]
                    for statement in statements:
                        self._conn.execute(statement)
                    self._conn.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?,?,?)",
                        (version + 1, name, iso(datetime.now(UTC))),
                    )
                    self._conn.execute(f"PRAGMA user_version = {version + 1}")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; calls inside join it. Everything commits or nothing does."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")
        finally:
            self._depth = 0

    def migrations_applied(self) -> list[tuple[int, str, str]]:
        rows = self._conn.execute(
            "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
        )
        return [(r[0], r[1], r[2]) for r in rows]

    # ---- jobs ------------------------------------------------------------------------------

    def add_job(
        self, job: Job, *, next_run_at: datetime | None, origin: JobOrigin = "user"
    ) -> None:
        """Store a new job. ``origin="demo"`` only for the jobs demo mode installs (DEMO-I1)."""
        validate_job_id(job.job_id)
        with self.transaction():
            self._conn.execute(
                "INSERT INTO jobs"
                " (job_id, name, agent, enabled, spec, created_at, updated_at, origin)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (
                    job.job_id,
                    job.name,
                    job.agent,
                    int(job.enabled),
                    json.dumps(job.to_json(), ensure_ascii=False),
                    _ts(job.created_at),
                    _ts(job.updated_at),
                    origin,
                ),
            )
            self._conn.execute(
                "INSERT INTO job_state (job_id, next_run_at, due_at) VALUES (?,?,?)",
                (job.job_id, _ts(next_run_at), _ts(next_run_at)),
            )

    def save_job(self, job: Job) -> None:
        """Store a changed job (its state is changed separately, with ``update_state``)."""
        cur = self._conn.execute(
            "UPDATE jobs SET name=?, agent=?, enabled=?, spec=?, updated_at=? WHERE job_id=?",
            (
                job.name,
                job.agent,
                int(job.enabled),
                json.dumps(job.to_json(), ensure_ascii=False),
                _ts(job.updated_at),
                job.job_id,
            ),
        )
        if cur.rowcount != 1:
            raise JobNotFoundError(job.job_id)

    def replace_job(
        self, old: Job, new: Job, now: datetime, *, disabled_reason: str = "disabled by user"
    ) -> None:
        """Store an edited job and the state changes the edit implies, in one transaction."""
        changes = state_after_edit(
            old.enabled,
            new.enabled,
            old.schedule,
            new.schedule,
            now,
            disabled_reason=disabled_reason,
        )
        with self.transaction():
            self.save_job(new)
            if changes:
                self.update_state(new.job_id, **changes)
            if replace(old, enabled=new.enabled, updated_at=new.updated_at) != new:
                # Invariant DEMO-I1: a demo job the user edited is the user's from now on.
                self._conn.execute("UPDATE jobs SET origin='user' WHERE job_id=?", (new.job_id,))

    def job_origins(self) -> dict[str, JobOrigin]:
        """Every job's origin by job id: ``demo`` for the jobs demo mode installed."""
        rows = self._conn.execute("SELECT job_id, origin FROM jobs")
        return {r[0]: "demo" if r[1] == "demo" else "user" for r in rows}

    def delete_job(self, job_id: str) -> None:
        """Remove a job and its state. Its occurrences and ledger rows are kept."""
        cur = self._conn.execute("DELETE FROM jobs WHERE job_id=?", (job_id,))
        if cur.rowcount != 1:
            raise JobNotFoundError(job_id)

    def _job_from_row(self, row: sqlite3.Row) -> Job:
        spec = json.loads(row["spec"])
        spec["enabled"] = bool(row["enabled"])
        return Job.from_json(spec)

    def get_job(self, job_id: str) -> Job:
        row = self._conn.execute("SELECT * FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(job_id)
        return self._job_from_row(row)

    def resolve_job_id(self, text: str) -> str:
        """A full job id from an id or a unique prefix of at least 4 characters."""
        validate_job_id_prefix(text)
        rows = self._conn.execute(
            "SELECT job_id FROM jobs WHERE job_id >= ? AND job_id < ? LIMIT 2",
            (text, text + "\uffff"),
        ).fetchall()
        if not rows:
            raise JobNotFoundError(text)
        if len(rows) > 1:
            raise InvalidJobError(f"job id prefix {text!r} is ambiguous; give more characters")
        return str(rows[0][0])

    def list_jobs(self) -> list[tuple[Job, JobState]]:
        rows = self._conn.execute(
            "SELECT jobs.*, job_state.* FROM jobs JOIN job_state USING (job_id)"
            " ORDER BY jobs.created_at, jobs.job_id"
        )
        return [(self._job_from_row(r), self._state_from_row(r)) for r in rows]

    # ---- job state -------------------------------------------------------------------------

    def _state_from_row(self, r: sqlite3.Row) -> JobState:
        return JobState(
            job_id=r["job_id"],
            next_run_at=_dt(r["next_run_at"]),
            due_at=_dt(r["due_at"]),
            retry=_decode_retry(r["retry"]),
            backoff_until=_dt(r["backoff_until"]),
            consecutive_errors=int(r["consecutive_errors"]),
            last_run_id=r["last_run_id"],
            last_status=r["last_status"],
            last_run_at=_dt(r["last_run_at"]),
            running_run_id=r["running_run_id"],
            disabled_reason=r["disabled_reason"],
        )

    def get_state(self, job_id: str) -> JobState:
        row = self._conn.execute("SELECT * FROM job_state WHERE job_id=?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(job_id)
        return self._state_from_row(row)

    def update_state(self, job_id: str, **fields: Any) -> None:
        unknown = set(fields) - _STATE_COLUMNS
        if unknown:
            raise ValueError(f"not job_state columns: {sorted(unknown)}")
        if "retry" in fields:
            retry = fields["retry"]
            fields["retry_at"] = retry.at if retry is not None else None
        cols = ", ".join(f"{k}=?" for k in fields)
        cur = self._conn.execute(
            f"UPDATE job_state SET {cols} WHERE job_id=?",
            (*(_encode(v) for v in fields.values()), job_id),
        )
        if cur.rowcount != 1:
            raise JobNotFoundError(job_id)

    def claim(self, job_id: str, run_id: str) -> bool:
        """Mark ``run_id`` as the job's running instance, if none is. Invariant CRON-I5."""
        cur = self._conn.execute(
            "UPDATE job_state SET running_run_id=? WHERE job_id=? AND running_run_id IS NULL",
            (run_id, job_id),
        )
        return cur.rowcount == 1

    def due(self, now: datetime, *, limit: int = 1000) -> list[tuple[Job, JobState]]:
        """Enabled jobs whose slot is due, or whose retry is due and which are not running."""
        t = iso(now)
        rows = self._conn.execute(
            "SELECT jobs.*, job_state.* FROM job_state JOIN jobs USING (job_id)"
            " WHERE jobs.enabled AND (job_state.due_at <= ?"
            "  OR (job_state.retry_at <= ? AND job_state.running_run_id IS NULL))"
            " ORDER BY MIN(COALESCE(job_state.due_at, job_state.retry_at),"
            "              COALESCE(job_state.retry_at, job_state.due_at)), job_id"
            " LIMIT ?",
            (t, t, limit),
        )
        return [(self._job_from_row(r), self._state_from_row(r)) for r in rows]

    def next_wake_at(self) -> datetime | None:
        """The earliest instant at which some enabled job becomes due."""
        row = self._conn.execute(
            "SELECT MIN(t) FROM ("
            " SELECT MIN(s.due_at) AS t FROM job_state s JOIN jobs j USING (job_id)"
            "  WHERE j.enabled AND s.due_at IS NOT NULL"
            " UNION ALL"
            " SELECT MIN(s.retry_at) FROM job_state s JOIN jobs j USING (job_id)"
            "  WHERE j.enabled AND s.retry_at IS NOT NULL AND s.running_run_id IS NULL)"
        ).fetchone()
        return _dt(row[0])

    # ---- occurrences and the ledger -------------------------------------------------------

    def insert_occurrence(self, job_id: str, slot: datetime, run_id: str, now: datetime) -> bool:
        """Record that ``slot`` of ``job_id`` is handled by ``run_id``; False if it already was.

        Invariant CRON-I4: one occurrence per (job, scheduled instant).
        """
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO occurrences (job_id, scheduled_at, run_id, recorded_at)"
            " VALUES (?,?,?,?)",
            (job_id, iso(slot), run_id, iso(now)),
        )
        return cur.rowcount == 1

    def occurrences(self, job_id: str) -> list[tuple[datetime, str]]:
        rows = self._conn.execute(
            "SELECT scheduled_at, run_id FROM occurrences WHERE job_id=? ORDER BY scheduled_at",
            (job_id,),
        )
        return [(datetime.fromisoformat(r[0]), r[1]) for r in rows]

    def insert_run(self, run: RunRecord) -> None:
        self._conn.execute(
            "INSERT INTO runs (run_id, job_id, job_name, scheduled_at, trigger, attempt, status,"
            " started_at, ended_at, error_kind, error_message, session_id, model, usage, reply,"
            " delivery_status, delivery_error, fence, recorded_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            tuple(
                _encode(v)
                for v in (
                    run.run_id,
                    run.job_id,
                    run.job_name,
                    run.scheduled_at,
                    run.trigger,
                    run.attempt,
                    run.status,
                    run.started_at,
                    run.ended_at,
                    run.error_kind,
                    run.error_message,
                    run.session_id,
                    run.model,
                    run.usage,
                    run.reply,
                    run.delivery_status,
                    run.delivery_error,
                    run.fence,
                    run.recorded_at,
                )
            ),
        )

    def update_run(self, run_id: str, **fields: Any) -> None:
        unknown = set(fields) - _RUN_COLUMNS
        if unknown:
            raise ValueError(f"not runs columns: {sorted(unknown)}")
        cols = ", ".join(f"{k}=?" for k in fields)
        cur = self._conn.execute(
            f"UPDATE runs SET {cols} WHERE run_id=?",
            (*(_encode(v) for v in fields.values()), run_id),
        )
        if cur.rowcount != 1:
            raise LookupError(f"no run {run_id!r} in the ledger")

    @staticmethod
    def _run_from_row(r: sqlite3.Row) -> RunRecord:
        return RunRecord(
            run_id=r["run_id"],
            job_id=r["job_id"],
            job_name=r["job_name"],
            scheduled_at=datetime.fromisoformat(r["scheduled_at"]),
            trigger=r["trigger"],
            attempt=int(r["attempt"]),
            status=r["status"],
            recorded_at=datetime.fromisoformat(r["recorded_at"]),
            started_at=_dt(r["started_at"]),
            ended_at=_dt(r["ended_at"]),
            error_kind=r["error_kind"],
            error_message=r["error_message"],
            session_id=r["session_id"],
            model=r["model"],
            usage=json.loads(r["usage"]) if r["usage"] else None,
            reply=r["reply"],
            delivery_status=r["delivery_status"],
            delivery_error=r["delivery_error"],
            fence=json.loads(r["fence"]) if r["fence"] else None,
            seq=int(r["seq"]),
        )

    def get_run(self, run_id: str) -> RunRecord:
        row = self._conn.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            raise LookupError(f"no run {run_id!r} in the ledger")
        return self._run_from_row(row)

    def runs(
        self,
        *,
        job_id: str | None = None,
        status: str | Sequence[str] | None = None,
        since: datetime | None = None,
        before_seq: int | None = None,
        limit: int = 50,
        oldest_first: bool = False,
    ) -> list[RunRecord]:
        """A page of the ledger, newest first; continue with ``before_seq`` = last row's seq."""
        where: list[str] = []
        args: list[Any] = []
        if job_id is not None:
            where.append("job_id = ?")
            args.append(job_id)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            args += statuses
        if since is not None:
            where.append("scheduled_at >= ?")
            args.append(iso(since))
        if before_seq is not None:
            where.append("seq < ?")
            args.append(before_seq)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += f" ORDER BY seq {'ASC' if oldest_first else 'DESC'} LIMIT ?"
        rows = self._conn.execute(sql, (*args, limit))
        return [self._run_from_row(r) for r in rows]

    # ---- retention (docs/design/retention.md) -----------------------------------------------

    def run_facts(self) -> list[tuple[str, str, int, datetime, str, str | None]]:
        """(run_id, job_id, seq, recorded_at, status, session_id) of every ledger row."""
        rows = self._conn.execute(
            "SELECT run_id, job_id, seq, recorded_at, status, session_id FROM runs ORDER BY seq"
        )
        return [(r[0], r[1], int(r[2]), datetime.fromisoformat(r[3]), r[4], r[5]) for r in rows]

    def run_counts(self, job_id: str) -> dict[str, int]:
        """Runs of a job by status, ``runs`` the total: the ledger's rows plus the rows pruning
        removed (Invariant RETENTION-I3), so pruning never changes a counter."""
        return self.run_counts_by_job([job_id])[job_id]

    def run_counts_by_job(self, job_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """``run_counts`` of each of these jobs (``{"runs": 0}`` when it has none), by one
        grouped query whatever their number (Invariant RETENTION-I3)."""
        out: dict[str, dict[str, int]] = {jid: {} for jid in job_ids}
        one = len(out) == 1
        where = "WHERE job_id=?" if one else ""
        rows = self._conn.execute(
            "SELECT job_id, status, SUM(n) FROM ("
            f" SELECT job_id, status, COUNT(*) AS n FROM runs {where} GROUP BY job_id, status"
            f" UNION ALL SELECT job_id, status, n FROM pruned_run_counts {where}"
            ") GROUP BY job_id, status",
            tuple(out) * 2 if one else (),
        )
        for jid, status, n in rows:
            if jid in out:
                out[jid][status] = int(n)
        for counts in out.values():
            counts["runs"] = sum(counts.values())
        return out

    def prune_runs(self, run_ids: Sequence[str]) -> int:
        """Delete these ledger rows (never a running one), counting them per job and status
        first, in one transaction. Returns the rows deleted. Invariant RETENTION-I3."""
        deleted = 0
        with self.transaction():
            for start in range(0, len(run_ids), 500):
                chunk = list(run_ids[start : start + 500])
                marks = ", ".join("?" * len(chunk))
                where = f"run_id IN ({marks}) AND status != 'running'"
                self._conn.execute(
                    "INSERT INTO pruned_run_counts (job_id, status, n)"
                    f" SELECT job_id, status, COUNT(*) FROM runs WHERE {where}"
                    " GROUP BY job_id, status"
                    " ON CONFLICT (job_id, status) DO UPDATE SET n = n + excluded.n",
                    chunk,
                )
                deleted += self._conn.execute(f"DELETE FROM runs WHERE {where}", chunk).rowcount
        return deleted

    def recover_interrupted(self, now: datetime) -> list[str]:
        """Mark runs left ``running`` as ``interrupted`` and free their jobs. Invariant CRON-I7.

        Deliveries left ``pending`` become ``interrupted`` too: they may or may not have arrived.
        """
        with self.transaction():
            ids = [
                r[0] for r in self._conn.execute("SELECT run_id FROM runs WHERE status='running'")
            ]
            self._conn.execute(
                "UPDATE runs SET status='interrupted', ended_at=?, error_kind='interrupted',"
                " error_message='the scheduler stopped while this run was in flight;"
                " it is not replayed (run it again with fencepost cron run)'"
                " WHERE status='running'",
                (iso(now),),
            )
            self._conn.execute(
                "UPDATE runs SET delivery_status='interrupted', delivery_error='the scheduler"
                " stopped during delivery; it may or may not have arrived'"
                " WHERE delivery_status='pending'"
            )
            self._conn.execute(
                "UPDATE job_state SET running_run_id=NULL WHERE running_run_id IS NOT NULL"
            )
        return ids
