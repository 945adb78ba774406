"""Versioned schema migrations of the cron state database (docs/design/cron.md §10).

Append only: a released step is never edited. ``PRAGMA user_version`` is the number of steps
applied. Each step is a name and its statements, applied in one transaction.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

_RUN_STATUSES = (
    "'running', 'ok', 'error', 'timeout', 'takeover', 'missed', 'interrupted', 'skipped'"
)

MIGRATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "0001_initial",
        (
            """
            CREATE TABLE schema_migrations (
                version INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                applied_at TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE jobs (
                job_id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                agent TEXT NOT NULL,
                enabled INTEGER NOT NULL,
                spec TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE job_state (
                job_id TEXT PRIMARY KEY REFERENCES jobs(job_id) ON DELETE CASCADE,
                next_run_at TEXT,
                due_at TEXT,
                retry_at TEXT,
                retry TEXT,
                backoff_until TEXT,
                consecutive_errors INTEGER NOT NULL DEFAULT 0,
                last_run_id TEXT,
                last_status TEXT,
                last_run_at TEXT,
                running_run_id TEXT,
                disabled_reason TEXT
            )
            """,
            "CREATE INDEX job_state_due ON job_state(due_at) WHERE due_at IS NOT NULL",
            "CREATE INDEX job_state_retry ON job_state(retry_at) WHERE retry_at IS NOT NULL",
            """
            CREATE TABLE occurrences (
                job_id TEXT NOT NULL,
                scheduled_at TEXT NOT NULL,
                run_id TEXT NOT NULL,
                recorded_at TEXT NOT NULL,
                PRIMARY KEY (job_id, scheduled_at)
            ) WITHOUT ROWID
            """,
            f"""
            CREATE TABLE runs (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                run_id TEXT NOT NULL UNIQUE,
                job_id TEXT NOT NULL,
                job_name TEXT NOT NULL,
                scheduled_at TEXT NOT NULL,
                trigger TEXT NOT NULL,
                attempt INTEGER NOT NULL DEFAULT 1,
                status TEXT NOT NULL CHECK (status IN ({_RUN_STATUSES})),
                started_at TEXT,
                ended_at TEXT,
                error_kind TEXT,
                error_message TEXT,
                session_id TEXT,
                model TEXT,
                usage TEXT,
                reply TEXT,
                delivery_status TEXT,
                delivery_error TEXT,
                fence TEXT,
                recorded_at TEXT NOT NULL
            )
            """,
            "CREATE INDEX runs_job ON runs(job_id, seq)",
            "CREATE INDEX runs_status ON runs(status, seq)",
        ),
    ),
    (
        "0002_pruned_run_counts",
        (
            # Invariant RETENTION-I3: what pruning deletes from runs is counted here first.
            """
            CREATE TABLE pruned_run_counts (
                job_id TEXT NOT NULL,
                status TEXT NOT NULL,
                n INTEGER NOT NULL,
                PRIMARY KEY (job_id, status)
            ) WITHOUT ROWID
            """,
        ),
    ),
    (
        "0003_job_origin",
        (
            # Invariant DEMO-I1: a job is the demo's only if demo mode installed it. Jobs that
            # demo mode installed before this column existed are the three it names exactly.
            "ALTER TABLE jobs ADD COLUMN origin TEXT NOT NULL DEFAULT 'user'"
            " CHECK (origin IN ('user', 'demo'))",
            """
            UPDATE jobs SET origin = 'demo' WHERE (name, agent) IN (
                VALUES ('demo: slow isolated report', 'analyst'),
                       ('demo: slow review on main', 'analyst'),
                       ('demo: fast check on main', 'assistant')
            )
            """,
        ),
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)
