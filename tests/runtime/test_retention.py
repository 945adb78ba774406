"""Retention: the pure plan, exhaustively, and the service on real files, SQLite and the CLI.

Time is injected (``now``; file ages set with ``os.utime``); nothing sleeps.
"""

from __future__ import annotations

import asyncio
import fcntl
import gzip
import hashlib
import json
import os
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from fencepost import (
    ConfigError,
    SessionStore,
    SyncSessionStore,
    build_context,
    compaction,
    message,
    read_context,
    read_transcript,
)
from fencepost.runtime.config import StatePaths, parse_config
from fencepost.runtime.cron import CronStore, RunRecord
from fencepost.runtime.retention import (
    ArchivedFact,
    RetentionPolicy,
    RunFact,
    SessionFact,
    is_isolated_run_session,
    plan_retention,
    run_retention,
)
from fencepost.surface.cli import cli

from .cron.conftest import add_cron_job

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=40)
POLICY = RetentionPolicy()


def iso_sid() -> str:
    return f"cron-{uuid.uuid4()}"


# ---- the pure plan ----------------------------------------------------------------------------


def test_only_old_isolated_run_sessions_are_planned_for_archive():
    old, young = iso_sid(), iso_sid()
    plan = plan_retention(
        POLICY,
        sessions=[
            SessionFact(old, OLD),
            SessionFact(young, NOW - timedelta(days=29)),
            SessionFact("main-ops", OLD),
            SessionFact("cron-not-a-uuid", OLD),
        ],
        archived=[],
        runs=[],
        now=NOW,
    )
    assert [(a.kind, a.target) for a in plan.actions] == [("archive", old)]


@pytest.mark.parametrize("flag", ["job_target", "lease_held", "lock_held", "running"])
def test_a_protected_session_is_kept_with_its_reason_retention_i1(flag):
    # Invariant RETENTION-I1
    sid = iso_sid()
    plan = plan_retention(
        POLICY, sessions=[SessionFact(sid, OLD, **{flag: True})], archived=[], runs=[], now=NOW
    )
    assert [a.kind for a in plan.actions] == ["keep"]
    assert not plan.of("archive") and not plan.of("delete")


def test_nothing_is_deleted_unless_configured_or_asked_retention_i2():
    # Invariant RETENTION-I2
    a = ArchivedFact(iso_sid(), NOW - timedelta(days=400), "/x")
    assert not plan_retention(POLICY, sessions=[], archived=[a], runs=[], now=NOW).of("delete")
    asked = plan_retention(
        POLICY, sessions=[], archived=[a], runs=[], now=NOW, delete_archived=True
    )
    assert [x.target for x in asked.of("delete")] == [a.session_id]
    configured = RetentionPolicy(delete_archived_after_days=500)
    assert not plan_retention(configured, sessions=[], archived=[a], runs=[], now=NOW).of("delete")
    configured = RetentionPolicy(delete_archived_after_days=300)
    assert plan_retention(configured, sessions=[], archived=[a], runs=[], now=NOW).of("delete")


def test_archiving_off_plans_no_archive():
    off = RetentionPolicy(archive_after_days=None)
    plan = plan_retention(
        off, sessions=[SessionFact(iso_sid(), OLD)], archived=[], runs=[], now=NOW
    )
    assert plan.actions == ()


def _runs(
    job: str, n: int, *, start: datetime, step: timedelta, status: str = "ok"
) -> list[RunFact]:
    return [RunFact(f"{job}-{i}", job, i, start + i * step, status) for i in range(n)]


def test_the_ledger_keeps_the_newest_n_per_job_and_drops_rows_past_the_age():
    policy = RetentionPolicy(ledger_keep_days=90, ledger_keep_per_job=3)
    runs = _runs("a", 5, start=NOW - timedelta(days=5), step=timedelta(days=1))
    runs += _runs("b", 3, start=NOW - timedelta(days=100), step=timedelta(days=4))
    plan = plan_retention(policy, sessions=[], archived=[], runs=runs, now=NOW)
    pruned = {a.target: set(a.run_ids) for a in plan.of("prune_runs")}
    assert pruned == {"a": {"a-0", "a-1"}, "b": {"b-0", "b-1", "b-2"}}


def test_a_running_row_is_never_pruned_and_does_not_count_toward_n_retention_i3():
    # Invariant RETENTION-I3
    policy = RetentionPolicy(ledger_keep_days=1, ledger_keep_per_job=1)
    runs = _runs("a", 3, start=NOW - timedelta(days=10), step=timedelta(hours=1), status="running")
    runs.append(RunFact("a-ok", "a", 10, NOW, "ok"))
    assert plan_retention(policy, sessions=[], archived=[], runs=runs, now=NOW).actions == ()


def test_the_isolated_run_naming_rule_matches_the_scheduler():
    assert is_isolated_run_session(f"cron-{uuid.uuid4()}")
    assert not is_isolated_run_session("cron-nightly")
    assert not is_isolated_run_session(str(uuid.uuid4()))


# ---- the service on real files ----------------------------------------------------------------


def make_session(paths: StatePaths, sid: str, *, age: datetime = OLD) -> Path:
    with SyncSessionStore(paths.sessions, durability="buffered") as store:
        store.session(sid).append(message("user", "hello"), writer="delivery")
    p = paths.sessions / f"{sid}.jsonl"
    os.utime(p, (age.timestamp(), age.timestamp()))
    return p


def make_indexed_session(paths: StatePaths, sid: str) -> Path:
    """An old session with a compaction, its offset index built by one read (INDEX-I1)."""
    with SyncSessionStore(paths.sessions, durability="buffered") as store:
        sess = store.session(sid)
        ids = [
            sess.append(message("user", f"question {i}"), writer="delivery").entry_ids[0]
            for i in range(4)
        ]

    async def compact() -> None:  # the lease holder's writer kind (Invariant STORE-I14)
        store = SessionStore(paths.sessions, durability="buffered")
        async with store.session(sid).attempt("compact") as attempt:
            await attempt.append(compaction("four questions", ids[2], 100), writer="compaction")
            await attempt.append(message("user", "after"))
        store.close()

    asyncio.run(compact())
    p = paths.sessions / f"{sid}.jsonl"
    read_context(str(p))
    assert Path(f"{p}.index").exists()
    os.utime(p, (OLD.timestamp(), OLD.timestamp()))
    return p


def ledger_row(store: CronStore, job, run_id: str, status: str, at: datetime, sid=None) -> None:
    store.insert_run(
        RunRecord(
            run_id=run_id,
            job_id=job.job_id,
            job_name=job.name,
            scheduled_at=at,
            trigger="schedule",
            attempt=1,
            status=status,  # type: ignore[arg-type]
            recorded_at=at,
            session_id=sid,
        )
    )


def snapshot(root: Path) -> dict[str, object]:
    files = {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith("cron.db")
    }
    conn = sqlite3.connect(root / "cron.db")
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = {t: sorted(map(repr, conn.execute(f"SELECT * FROM {t}"))) for t in tables}
    finally:
        conn.close()
    return {"files": files, "db": rows}


def test_a_session_a_job_a_lease_a_lock_or_a_running_run_points_at_is_never_archived_retention_i1(
    tmp_path,
):
    # Invariant RETENTION-I1, RETENTION-I4
    paths = StatePaths(tmp_path)
    targeted, leased, locked, running, free = (iso_sid() for _ in range(5))
    for sid in (targeted, leased, locked, running, free):
        make_session(paths, sid)
    with CronStore(paths.cron_db) as cron:
        job = add_cron_job(cron, OLD, target=f"session:{targeted}", enabled=False)
        ledger_row(cron, job, str(uuid.uuid4()), "running", NOW, sid=running)
    lock_fd = os.open(paths.sessions / f"{locked}.jsonl.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)

    async def with_lease() -> dict:
        store = SessionStore(paths.sessions, durability="buffered")
        async with store.session(leased).attempt("run-x"):
            report = run_retention(paths, POLICY, now=NOW, dry_run=False)
        store.close()
        return report.to_json()

    try:
        out = asyncio.run(with_lease())
    finally:
        os.close(lock_fd)
    archived = [d["target"] for d in out["done"] if d["action"] == "archive"]
    assert archived == [free]
    for sid in (targeted, leased, locked, running):
        assert (paths.sessions / f"{sid}.jsonl").exists(), sid
    assert not (paths.sessions / f"{free}.jsonl").exists()
    kept = {a["target"]: a["reason"] for a in out["plan"] if a["action"] == "keep"}
    assert set(kept) == {targeted, leased, locked, running}


def test_a_dry_run_changes_nothing_retention_i5(tmp_path):
    # Invariant RETENTION-I5
    paths = StatePaths(tmp_path)
    sid = iso_sid()
    make_session(paths, sid)
    with CronStore(paths.cron_db) as cron:
        job = add_cron_job(cron, OLD)
        for i in range(5):
            ledger_row(cron, job, f"r{i}", "ok", NOW - timedelta(days=200 + i), sid=sid)
    before = snapshot(tmp_path)
    result = CliRunner().invoke(
        cli, ["gc", "--state-dir", str(tmp_path), "--dry-run", "--delete-archived", "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert {a["action"] for a in out["plan"]} == {"archive", "prune_runs"}
    assert out["done"] == []
    assert snapshot(tmp_path) == before


def test_a_dry_run_leaves_the_derived_index_in_place_retention_i5(tmp_path):
    # Invariant RETENTION-I5, RETENTION-I7
    paths = StatePaths(tmp_path)
    sid = iso_sid()
    make_indexed_session(paths, sid)
    CronStore(paths.cron_db).close()
    before = snapshot(tmp_path)
    report = run_retention(paths, POLICY, now=NOW, dry_run=True, delete_archived=True)
    assert [a.kind for a in report.plan.actions] == ["archive"] and report.done == ()
    assert snapshot(tmp_path) == before
    assert f"sessions/{sid}.jsonl.index" in before["files"]  # type: ignore[operator]


def test_pruning_keeps_every_counter_right_retention_i3(tmp_path):
    # Invariant RETENTION-I3
    paths = StatePaths(tmp_path)
    statuses = ["ok", "error", "ok", "timeout", "ok", "ok", "error"]
    with CronStore(paths.cron_db) as cron:
        job = add_cron_job(cron, OLD)
        for i, st in enumerate(statuses):
            ledger_row(cron, job, f"r{i}", st, NOW - timedelta(days=len(statuses) - i))
        ledger_row(cron, job, "live", "running", NOW - timedelta(days=300))
        cron.update_state(job.job_id, last_status="error", last_run_id="r6")
        before = cron.run_counts(job.job_id)
    policy = RetentionPolicy(ledger_keep_per_job=2)
    report = run_retention(paths, policy, now=NOW, dry_run=False)
    assert [d["result"] for d in report.done] == [5]
    with CronStore(paths.cron_db) as cron:
        assert cron.run_counts(job.job_id) == before
        assert before == {"ok": 4, "error": 2, "timeout": 1, "running": 1, "runs": 8}
        assert {r.run_id for r in cron.runs(job_id=job.job_id)} == {"r5", "r6", "live"}
        assert cron.get_state(job.job_id).last_status == "error"
    again = run_retention(paths, policy, now=NOW, dry_run=False)
    assert again.done == ()
    shown = CliRunner().invoke(
        cli, ["cron", "show", "--state-dir", str(tmp_path), "--json", job.job_id]
    )
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["run_counts"] == before


def test_cron_list_shows_the_run_counts_unchanged_after_pruning_retention_i3(tmp_path):
    # Invariant RETENTION-I3, RETENTION-G5: list reads the same CronStore counts as show.
    paths = StatePaths(tmp_path)
    with CronStore(paths.cron_db) as cron:
        busy, idle = add_cron_job(cron, OLD), add_cron_job(cron, OLD)
        for i, st in enumerate(["ok", "error", "ok", "timeout", "ok"]):
            ledger_row(cron, busy, f"r{i}", st, NOW - timedelta(days=5 - i))
        cron.update_state(busy.job_id, last_status="ok", last_run_id="r4")
        gone = add_cron_job(cron, OLD)
        ledger_row(cron, gone, "g0", "ok", NOW)
        cron.delete_job(gone.job_id)  # its ledger rows stay; they count for no listed job

    def listed() -> dict[str, dict]:
        out = CliRunner().invoke(cli, ["cron", "list", "--state-dir", str(tmp_path), "--json"])
        assert out.exit_code == 0, out.output
        return {j["job_id"]: j for j in json.loads(out.output)}

    before = listed()
    assert before[busy.job_id]["run_counts"] == {"ok": 3, "error": 1, "timeout": 1, "runs": 5}
    assert before[idle.job_id]["run_counts"] == {"runs": 0}
    report = run_retention(paths, RetentionPolicy(ledger_keep_per_job=1), now=NOW, dry_run=False)
    assert [d["result"] for d in report.done] == [4]  # busy keeps its newest row
    after = listed()
    assert after == before
    assert after[busy.job_id]["state"]["last_status"] == "ok"
    with CronStore(paths.cron_db) as cron:
        assert cron.run_counts(busy.job_id) == after[busy.job_id]["run_counts"]
    wide = {"COLUMNS": "200"}
    table = CliRunner().invoke(cli, ["cron", "list", "--state-dir", str(tmp_path)], env=wide)
    assert table.exit_code == 0, table.output
    assert "5 (3 ok)" in table.output and "0 (0 ok)" in table.output


@pytest.mark.parametrize("gz", [True, False])
def test_an_archived_session_is_readable_by_show_and_verify_retention_i6(tmp_path, gz):
    # Invariant RETENTION-I6
    paths = StatePaths(tmp_path)
    sid = iso_sid()
    make_session(paths, sid)
    traj = paths.trajectories / f"{sid}.jsonl"
    traj.parent.mkdir(parents=True)
    traj.write_text("{}\n")
    run_retention(paths, RetentionPolicy(gzip=gz), now=NOW, dry_run=False)
    archived = tmp_path / "archive" / "sessions" / (f"{sid}.jsonl.gz" if gz else f"{sid}.jsonl")
    assert archived.exists()
    assert (tmp_path / "archive" / "sessions" / f"{sid}.jsonl.state").exists()
    assert (tmp_path / "archive" / "trajectories" / f"{sid}.jsonl").exists()
    assert not traj.exists()
    runner = CliRunner()
    root = str(paths.sessions)
    for target in (sid, str(archived)):
        shown = runner.invoke(cli, ["sessions", "show", "--root", root, "--json", target])
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.output)["records"][0]["message"]["content"] == "hello"
        verified = runner.invoke(cli, ["sessions", "verify", "--root", root, "--json", target])
        assert verified.exit_code == 0, verified.output
        assert json.loads(verified.output)["ok"] is True


@pytest.mark.parametrize("gz", [True, False])
def test_archiving_drops_the_derived_index_and_a_moved_back_session_rebuilds_it_retention_i7(
    tmp_path, gz
):
    # Invariant RETENTION-I7 (and INDEX-I1: a missing index costs one scan)
    paths = StatePaths(tmp_path)
    sid = iso_sid()
    live = make_indexed_session(paths, sid)
    want = build_context(read_transcript(str(live)))
    run_retention(paths, RetentionPolicy(gzip=gz), now=NOW, dry_run=False)
    archive = tmp_path / "archive" / "sessions"
    assert not live.exists()
    assert not list(tmp_path.rglob("*.index")), "no index outlives the move"
    archived = archive / (f"{sid}.jsonl.gz" if gz else f"{sid}.jsonl")
    if gz:  # moved back by hand (state machine d.)
        live.write_bytes(gzip.decompress(archived.read_bytes()))
        archived.unlink()
    else:
        os.replace(archived, live)
    first = read_context(str(live))
    assert not first.used_index and first.context == want
    second = read_context(str(live))
    assert second.used_index and second.context == want


def test_deleting_an_archived_session_removes_an_index_beside_it_retention_i7(tmp_path):
    # Invariant RETENTION-I7
    paths = StatePaths(tmp_path)
    sid = iso_sid()
    make_indexed_session(paths, sid)
    run_retention(paths, POLICY, now=NOW, dry_run=False)
    archive = tmp_path / "archive" / "sessions"
    (archive / f"{sid}.jsonl.index").write_text("{}")  # put there by hand or an older version
    report = run_retention(paths, POLICY, now=NOW, dry_run=False, delete_archived=True)
    assert [d["action"] for d in report.done] == ["delete"]
    assert not list(archive.iterdir())


def test_archived_sessions_are_deleted_only_when_asked_retention_i2(tmp_path):
    # Invariant RETENTION-I2
    paths = StatePaths(tmp_path)
    sid = iso_sid()
    make_session(paths, sid)
    runner = CliRunner()
    assert runner.invoke(cli, ["gc", "--state-dir", str(tmp_path)]).exit_code == 0
    archive = tmp_path / "archive" / "sessions"
    assert (archive / f"{sid}.jsonl.gz").exists()
    assert runner.invoke(cli, ["gc", "--state-dir", str(tmp_path)]).exit_code == 0
    assert (archive / f"{sid}.jsonl.gz").exists()
    result = runner.invoke(cli, ["gc", "--state-dir", str(tmp_path), "--delete-archived", "--json"])
    assert result.exit_code == 0, result.output
    assert [d["action"] for d in json.loads(result.output)["done"]] == ["delete"]
    assert not list(archive.iterdir())


def test_the_retention_section_has_safe_defaults_and_errors_name_the_key_and_line():
    assert parse_config({}).retention == RetentionPolicy()
    assert RetentionPolicy().delete_archived_after_days is None and RetentionPolicy().gzip
    text = "[retention]\narchive_after_days = 7\nledger_keep_per_job = 0\n"
    import tomllib

    with pytest.raises(ConfigError) as err:
        parse_config(tomllib.loads(text), source=text)
    assert err.value.key == "retention.ledger_keep_per_job" and err.value.line == 3
    with pytest.raises(ConfigError) as err:
        parse_config({"retention": {"keep": 1}})
    assert err.value.key == "retention.keep"


# ---- the gateway: the periodic pass and the log ---------------------------------------------


async def test_the_gateway_runs_the_same_policy_and_logs_what_it_did(tmp_path):
    from fencepost.runtime.config import GatewayConfig
    from fencepost.runtime.cron import ManualClock
    from fencepost.runtime.gateway import Gateway

    paths = StatePaths(tmp_path)
    sid = iso_sid()
    store = SessionStore(paths.sessions, durability="buffered")
    await store.session(sid).append(message("user", "hello"), writer="delivery")
    store.close()
    os.utime(paths.sessions / f"{sid}.jsonl", (OLD.timestamp(), OLD.timestamp()))
    cfg = GatewayConfig(plugins=(), durability="buffered")
    async with Gateway(paths, cfg, load_entry_points=False, clock=ManualClock(NOW)) as g:
        dry = await g.retention(dry_run=True)
        assert [a.kind for a in dry.plan.actions] == ["archive"] and dry.done == ()
        report = await g.retention()
    assert [d["action"] for d in report.done] == ["archive"]
    assert (tmp_path / "archive" / "sessions" / f"{sid}.jsonl.gz").exists()
    log = (paths.logs / "gateway.jsonl").read_text()
    assert '"action": "retention"' in log


def test_the_gateway_log_rotates_by_size_keeping_the_configured_backups(tmp_path):
    import logging

    from fencepost.runtime.gateway._logging import JsonLinesHandler

    path = tmp_path / "gateway.jsonl"
    handler = JsonLinesHandler(path, max_bytes=1024, backups=2)
    logger = logging.getLogger("fencepost.test.rotation")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for i in range(200):
            logger.warning("line %d %s", i, "x" * 40)
    finally:
        logger.removeHandler(handler)
        handler.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["gateway.jsonl", "gateway.jsonl.1", "gateway.jsonl.2"]
    assert all(p.stat().st_size < 1024 + 200 for p in tmp_path.iterdir())
    assert "line 199" in path.read_text()


def test_an_archived_session_leaves_the_memory_index(tmp_path):
    from fencepost.runtime.gateway.plugins.memory import MemoryIndex

    paths = StatePaths(tmp_path)
    sid, other = iso_sid(), iso_sid()
    make_session(paths, sid)
    make_session(paths, other, age=NOW)
    with MemoryIndex.open(paths.memory_db) as index:
        index.sync_sessions(paths.sessions)
        assert {h.session_id for h in index.search("hello")} == {sid, other}
    run_retention(paths, POLICY, now=NOW, dry_run=False)
    with MemoryIndex.open(paths.memory_db) as index:
        assert {h.session_id for h in index.search("hello")} == {other}
