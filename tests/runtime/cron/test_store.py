"""The state database: migrations, jobs, occurrences and the paged run ledger (real SQLite)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from fencepost import CronStateError, InvalidJobError, JobNotFoundError
from fencepost.runtime.cron import MIGRATIONS, SCHEMA_VERSION, CronStore, RunRecord

from .conftest import T0, add_cron_job


def user_version(path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


# Invariant CRON-I12
def test_a_fresh_database_gets_every_migration_in_wal_mode_cron_i12(tmp_path):
    path = tmp_path / "state" / "cron.db"
    with CronStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert [m[1] for m in store.migrations_applied()] == [m[0] for m in MIGRATIONS]
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    assert user_version(path) == SCHEMA_VERSION


# Invariant CRON-I12
def test_reopening_is_idempotent_and_keeps_the_data_cron_i12(tmp_path):
    path = tmp_path / "cron.db"
    with CronStore(path) as store:
        job = add_cron_job(store, T0)
    with CronStore(path) as store:
        assert store.get_job(job.job_id) == job
        assert len(store.migrations_applied()) == SCHEMA_VERSION


# Invariant CRON-I12
def test_a_new_migration_is_applied_once_on_open_cron_i12(tmp_path):
    path = tmp_path / "cron.db"
    CronStore(path).close()
    newer = (*MIGRATIONS, ("0002_notes", ("ALTER TABLE jobs ADD COLUMN notes TEXT",)))
    with CronStore(path, migrations=newer) as store:
        assert store.schema_version == SCHEMA_VERSION + 1
    with CronStore(path, migrations=newer) as store:  # not applied twice
        assert [m[1] for m in store.migrations_applied()][-1] == "0002_notes"


# Invariant CRON-I12
def test_a_failing_migration_changes_nothing_cron_i12(tmp_path):
    path = tmp_path / "cron.db"
    CronStore(path).close()
    broken = (*MIGRATIONS, ("0002_broken", ("CREATE TABLE extra (x)", "NOT SQL AT ALL")))
    with pytest.raises(CronStateError, match="cannot open"):
        CronStore(path, migrations=broken)
    assert user_version(path) == SCHEMA_VERSION
    conn = sqlite3.connect(path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()
    assert "extra" not in tables


# Invariant CRON-I12
def test_a_database_newer_than_the_code_is_refused_clearly_cron_i12(tmp_path):
    path = tmp_path / "cron.db"
    newer = (*MIGRATIONS, ("0002_future", ("CREATE TABLE future (x)",)))
    CronStore(path, migrations=newer).close()
    with pytest.raises(CronStateError) as err:
        CronStore(path)
    assert f"schema version {SCHEMA_VERSION + 1} is newer" in str(err.value)
    assert "upgrade fencepost" in str(err.value)


def test_opening_without_create_needs_an_existing_database(tmp_path):
    with pytest.raises(CronStateError, match="no cron database"):
        CronStore(tmp_path / "missing.db", create=False)


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "cron.db"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(CronStateError, match="cannot open the cron database"):
        CronStore(path)


# Invariant CRON-I4
def test_an_occurrence_is_recorded_once_per_job_and_instant_cron_i4(store):
    job = add_cron_job(store, T0)
    slot = T0 + timedelta(hours=1)
    assert store.insert_occurrence(job.job_id, slot, "run-1", T0)
    assert not store.insert_occurrence(job.job_id, slot, "run-2", T0)
    assert store.occurrences(job.job_id) == [(slot, "run-1")]


def test_job_ids_resolve_by_unique_prefix_and_path_like_ids_are_refused(store):
    job = add_cron_job(store, T0)
    assert store.resolve_job_id(job.job_id[:6]) == job.job_id
    for bad in ("../etc", "a/b", "..", "x"):
        with pytest.raises(InvalidJobError, match="invalid job id"):
            store.resolve_job_id(bad)
    with pytest.raises(JobNotFoundError, match="fencepost cron list"):
        store.resolve_job_id("ffffffff")


def run(job, n, status, **kw) -> RunRecord:
    return RunRecord(
        run_id=f"run-{n:03d}",
        job_id=job.job_id,
        job_name=job.name,
        scheduled_at=T0 + timedelta(hours=n),
        trigger="schedule",
        attempt=1,
        status=status,
        recorded_at=T0 + timedelta(hours=n),
        **kw,
    )


def test_the_ledger_pages_newest_first_with_status_and_since_filters(store):
    a = add_cron_job(store, T0, name="a")
    b = add_cron_job(store, T0, name="b")
    statuses = ["ok", "error", "missed", "ok", "timeout"]
    for n in range(25):
        store.insert_run(run(a if n % 2 else b, n, statuses[n % 5], usage={"tokens": n}))
    page1 = store.runs(limit=10)
    assert [r.run_id for r in page1] == [f"run-{n:03d}" for n in range(24, 14, -1)]
    page2 = store.runs(limit=10, before_seq=page1[-1].seq)
    assert page2[0].run_id == "run-014"
    only_a_ok = store.runs(job_id=a.job_id, status="ok", limit=100)
    assert {r.status for r in only_a_ok} == {"ok"} and {r.job_id for r in only_a_ok} == {a.job_id}
    several = store.runs(status=["missed", "timeout"], limit=100)
    assert {r.status for r in several} == {"missed", "timeout"} and len(several) == 10
    recent = store.runs(since=T0 + timedelta(hours=20), limit=100)
    assert [r.run_id for r in recent] == [f"run-{n:03d}" for n in range(24, 19, -1)]
    assert store.get_run("run-003").usage == {"tokens": 3}


def test_removing_a_job_keeps_its_ledger_rows(store):
    job = add_cron_job(store, T0)
    store.insert_run(run(job, 1, "ok"))
    store.delete_job(job.job_id)
    with pytest.raises(JobNotFoundError):
        store.get_job(job.job_id)
    assert [r.run_id for r in store.runs(job_id=job.job_id)] == ["run-001"]


def test_the_ledger_refuses_a_status_outside_the_closed_set(store):
    job = add_cron_job(store, T0)
    with pytest.raises(sqlite3.IntegrityError):
        store.insert_run(run(job, 1, "exploded"))  # type: ignore[arg-type]


def test_a_write_transaction_commits_everything_or_nothing(store):
    job = add_cron_job(store, T0)
    with pytest.raises(RuntimeError), store.transaction():
        store.insert_run(run(job, 1, "ok"))
        store.update_state(job.job_id, consecutive_errors=7)
        raise RuntimeError("crash in the middle")
    assert store.runs() == []
    assert store.get_state(job.job_id).consecutive_errors == 0


def test_statistics_and_repr_show_the_state(store):
    add_cron_job(store, T0)
    stats = store.statistics()
    assert (stats.jobs, stats.enabled_jobs, stats.runs, stats.running) == (1, 1, 0, 0)
    assert f"schema={SCHEMA_VERSION}" in repr(store)
