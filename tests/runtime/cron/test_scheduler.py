"""The scheduler with a real store, the manual clock and a fake runner: nothing sleeps."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from fencepost import JobNotFoundError, JobRunningError, SessionTakeoverError
from fencepost.runtime.cron import (
    AtSchedule,
    CronStore,
    EverySchedule,
    ManualClock,
    RetryPolicy,
    RunOutcome,
    RunRecord,
    Scheduler,
)

from .conftest import T0, add_cron_job, add_job


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


async def settle() -> None:
    """Let ready tasks run (no real time passes)."""
    for _ in range(20):
        await asyncio.sleep(0)


def statuses(store: CronStore, job_id: str | None = None) -> Counter[str]:
    return Counter(r.status for r in store.runs(job_id=job_id, limit=100_000))


# Invariant CRON-I10, Invariant CRON-I3
async def test_a_due_job_runs_with_its_ledger_row_written_before_and_after_cron_i10_cron_i3(
    store, clock, runner
):
    job = add_cron_job(store, T0)  # 07:00 UTC daily; now 06:00
    sched = Scheduler(store, runner, clock=clock)
    await sched.start()
    assert await sched.tick() == []
    runner.gate = asyncio.Event()
    clock.set(at(1))
    [run_id] = await sched.tick()
    await settle()
    # while the run is in flight: the row says running, the slot is logged, the next is set
    row = store.get_run(run_id)
    assert (row.status, row.started_at, row.ended_at) == ("running", at(1), None)
    assert store.occurrences(job.job_id) == [(at(1), run_id)]
    state = store.get_state(job.job_id)
    assert state.next_run_at == at(25) and state.running_run_id == run_id
    [(_, ctx)] = runner.calls
    assert ctx.session_id == f"cron-{run_id}" and ctx.deadline == at(1) + timedelta(seconds=600)
    clock.advance(20)
    runner.gate.set()
    await sched.wait_idle()
    row = store.get_run(run_id)
    assert row.status == "ok" and row.reply == "reply to daily ops review"
    assert row.ended_at == at(1) + timedelta(seconds=20) and row.model == "scripted/echo"
    assert row.session_id == f"cron-{run_id}" and row.trigger == "schedule"
    state = store.get_state(job.job_id)
    assert state.running_run_id is None and state.last_status == "ok"


async def test_each_isolated_run_gets_a_fresh_session_and_other_targets_keep_theirs(
    store, clock, runner
):
    iso_job = add_job(store, T0, EverySchedule(3600.0, T0), name="iso")
    shared = add_job(store, T0, EverySchedule(3600.0, T0), name="shared", target="session:ops-1")
    main = add_job(store, T0, EverySchedule(3600.0, T0), name="main", target="main")
    sched = Scheduler(store, runner, clock=clock)
    for hour in (1, 2):
        clock.set(at(hour))
        await sched.tick()
        await sched.wait_idle()
    by_job: dict[str, list[str | None]] = {}
    for job, ctx in runner.calls:
        by_job.setdefault(job.job_id, []).append(ctx.session_id)
    assert len(set(by_job[iso_job.job_id])) == 2
    assert by_job[shared.job_id] == ["ops-1", "ops-1"]
    assert by_job[main.job_id] == [None, None]


# Invariant CRON-I5
async def test_one_running_instance_per_job_and_a_slot_due_meanwhile_is_skipped_cron_i5(
    store, clock, runner
):
    job = add_job(store, T0, EverySchedule(3600.0, T0))
    sched = Scheduler(store, runner, clock=clock)
    runner.gate = asyncio.Event()
    clock.set(at(1))
    [first] = await sched.tick()
    await settle()
    clock.set(at(2))
    assert await sched.tick() == []
    with pytest.raises(JobRunningError, match="already running"):
        await sched.run_now(job.job_id)
    assert len(runner.calls) == 1
    runner.gate.set()
    await sched.wait_idle()
    rows = store.runs(job_id=job.job_id)
    assert [(r.status, r.scheduled_at) for r in rows] == [("skipped", at(2)), ("ok", at(1))]
    assert rows[0].error_message == f"previous run {first} still running"
    assert store.get_state(job.job_id).next_run_at == at(3)


# Invariant CRON-I6
async def test_the_global_concurrency_limit_holds_and_waiting_jobs_run_later_cron_i6(
    store, clock, runner
):
    jobs = [add_job(store, T0, AtSchedule(at(1)), name=f"j{i}") for i in range(5)]
    sched = Scheduler(store, runner, clock=clock, max_concurrent_runs=2)
    runner.gate = asyncio.Event()
    clock.set(at(1))
    assert len(await sched.tick()) == 2
    await settle()
    assert runner.active == 2 and sched.statistics().running == 2
    assert len(await sched.tick()) == 0  # full: the rest wait, nothing recorded for them
    assert len(store.runs()) == 2
    runner.gate.set()
    for _ in range(3):
        await sched.wait_idle()
        await sched.tick()
    await sched.wait_idle()
    assert runner.max_active == 2
    assert statuses(store) == Counter({"ok": 5})
    assert {store.runs(job_id=j.job_id)[0].status for j in jobs} == {"ok"}


# Invariant CRON-I7
async def test_runs_left_running_by_a_dead_process_become_interrupted_not_replayed_cron_i7(
    store, clock, runner
):
    job = add_cron_job(store, T0)
    dead = RunRecord(
        run_id="dead-run",
        job_id=job.job_id,
        job_name=job.name,
        scheduled_at=at(-23),
        trigger="schedule",
        attempt=1,
        status="running",
        recorded_at=at(-23),
        started_at=at(-23),
    )
    delivering = RunRecord(
        **{
            **dead.__dict__,
            "run_id": "mid-delivery",
            "status": "ok",
            "delivery_status": "pending",
            "seq": None,
        }
    )
    store.insert_run(dead)
    store.insert_run(delivering)
    store.update_state(job.job_id, running_run_id="dead-run")
    report = await Scheduler(store, runner, clock=clock).start()
    assert report.interrupted == ("dead-run",)
    row = store.get_run("dead-run")
    assert row.status == "interrupted" and "not replayed" in (row.error_message or "")
    assert store.get_run("mid-delivery").delivery_status == "interrupted"
    assert store.get_state(job.job_id).running_run_id is None
    assert runner.calls == []


# Invariant CRON-I8
async def test_restart_after_downtime_runs_each_job_once_and_records_other_slots_missed_cron_i8(
    tmp_path, runner
):
    path = tmp_path / "cron.db"
    with CronStore(path) as store:
        daily = add_cron_job(store, T0, "0 7 * * *", name="daily")  # 03-02 07:00 onwards
        hourly = add_job(store, T0, EverySchedule(3600.0, T0), name="hourly")  # 07:00 onwards
        early = add_cron_job(store, T0, "0 3 * * *", name="early")  # 03-03 03:00 onwards
    # the gateway was down from T0 (03-02 06:00) until 03-05 07:30
    clock = ManualClock(datetime(2026, 3, 5, 7, 30, tzinfo=UTC))
    with CronStore(path) as store:
        sched = Scheduler(store, runner, clock=clock, catchup_grace_s=3600, catchup_pace_s=5)
        report = await sched.start()
        assert (report.catchup_runs, report.missed) == (2, 3 + 72 + 3)
        # paced: one starts now, the other 5 s later
        assert len(await sched.tick()) == 1
        clock.advance(4)
        assert await sched.tick() == []
        clock.advance(1)
        assert len(await sched.tick()) == 1
        await sched.wait_idle()
        assert statuses(store, daily.job_id) == Counter({"missed": 3, "ok": 1})
        assert statuses(store, hourly.job_id) == Counter({"missed": 72, "ok": 1})
        assert statuses(store, early.job_id) == Counter({"missed": 3})
        # every slot has exactly one ledger row and one occurrence
        for job in (daily, hourly, early):
            rows = store.runs(job_id=job.job_id, limit=1000)
            slots = [r.scheduled_at for r in rows]
            assert len(slots) == len(set(slots)) == len(store.occurrences(job.job_id))
        ran = [r for r in store.runs(status="ok")]
        assert {r.scheduled_at for r in ran} == {datetime(2026, 3, 5, 7, tzinfo=UTC)}
        assert {r.trigger for r in ran} == {"catchup"}
        assert store.get_state(early.job_id).next_run_at == datetime(2026, 3, 6, 3, tzinfo=UTC)
        total = len(store.runs(limit=1000))
    # a second restart right away records nothing twice
    with CronStore(path) as store:
        report = await Scheduler(store, runner, clock=clock).start()
        assert report.missed == 0 and len(store.runs(limit=1000)) == total


async def test_a_transient_error_on_a_one_shot_is_retried_then_the_job_is_deleted(
    store, clock, runner
):
    job = add_job(store, T0, AtSchedule(at(1)), delete_after_run=True)
    results = iter(
        [
            RunOutcome("error", error_kind="rate_limit", error_message="429", retryable=True),
            RunOutcome("error", error_kind="overloaded", error_message="529"),
            RunOutcome("ok", reply="done"),
        ]
    )
    runner.outcome = lambda job, ctx: next(results)
    policy = RetryPolicy(transient_backoff_s=(30, 60))
    sched = Scheduler(store, runner, clock=clock, retry_policy=policy)
    clock.set(at(1))
    await sched.tick()
    await sched.wait_idle()
    retry = store.get_state(job.job_id).retry
    assert retry is not None and retry.at == at(1) + timedelta(seconds=30) and retry.attempt == 2
    clock.advance(29)
    assert await sched.tick() == []
    clock.advance(1)
    assert len(await sched.tick()) == 1
    await sched.wait_idle()
    clock.advance(60)
    await sched.tick()
    await sched.wait_idle()
    rows = store.runs(job_id=job.job_id, oldest_first=True)
    assert [(r.status, r.attempt, r.trigger) for r in rows] == [
        ("error", 1, "schedule"),
        ("error", 2, "retry"),
        ("ok", 3, "retry"),
    ]
    assert {r.scheduled_at for r in rows} == {at(1)}
    assert len(store.occurrences(job.job_id)) == 1
    with pytest.raises(JobNotFoundError):
        store.get_job(job.job_id)  # delete_after_run, after success


# Invariant CRON-I9
async def test_a_takeover_is_retried_twice_and_never_counted_as_a_failure_cron_i9(
    store, clock, runner
):
    job = add_job(store, T0, EverySchedule(86400.0, at(1)))

    async def taken_over(job, ctx):
        runner.calls.append((job, ctx))
        raise SessionTakeoverError(
            "ops", "foreign_append", "120 bytes appended by an unknown writer", epoch_held=3
        )

    sched = Scheduler(
        store,
        taken_over,
        clock=clock,
        retry_policy=RetryPolicy(takeover_retries=2, takeover_delay_s=(5,), auto_disable_after=1),
    )
    clock.set(at(1))
    await sched.tick()
    for _ in range(4):
        await sched.wait_idle()
        clock.advance(5)
        await sched.tick()
    await sched.wait_idle()
    rows = store.runs(job_id=job.job_id, oldest_first=True)
    assert [(r.status, r.attempt) for r in rows] == [
        ("takeover", 1),
        ("takeover", 2),
        ("takeover", 3),
    ]
    assert rows[0].fence == {
        "reason": "foreign_append",
        "description": "120 bytes appended by an unknown writer",
        "epoch_held": 3,
        "epoch_seen": None,
    }
    state = store.get_state(job.job_id)
    assert state.consecutive_errors == 0 and state.retry is None and state.backoff_until is None
    assert store.get_job(job.job_id).enabled  # auto_disable_after=1, yet not disabled


# Invariant CRON-I13
async def test_consecutive_errors_back_off_skip_slots_and_auto_disable_with_a_reason_cron_i13(
    store, clock, runner
):
    job = add_job(store, T0, EverySchedule(3600.0, T0))
    runner.outcome = lambda job, ctx: RunOutcome(
        "error", error_kind="bad_request", error_message="model refused"
    )
    policy = RetryPolicy(error_backoff_s=(60, 5400), auto_disable_after=3)
    sched = Scheduler(store, runner, clock=clock, retry_policy=policy)
    for hour in range(1, 7):
        clock.set(at(hour))
        await sched.tick()
        await sched.wait_idle()
    rows = store.runs(job_id=job.job_id, oldest_first=True)
    assert [(r.status, r.scheduled_at) for r in rows] == [
        ("error", at(1)),  # backoff 60 s
        ("error", at(2)),  # backoff 90 min: the 03:00 slot is skipped
        ("skipped", at(3)),
        ("error", at(4)),  # the third consecutive failure disables the job
    ]
    assert "error backoff" in (rows[2].error_message or "")
    assert not store.get_job(job.job_id).enabled
    reason = store.get_state(job.job_id).disabled_reason
    assert reason == (
        "auto-disabled after 3 consecutive failures; last: error (bad_request): model refused"
    )


# Invariant CRON-I13
async def test_success_resets_the_error_count_cron_i13(store, clock, runner):
    job = add_job(store, T0, EverySchedule(3600.0, T0))
    outcomes = iter([RunOutcome("error", error_kind="x"), RunOutcome("ok")])
    runner.outcome = lambda job, ctx: next(outcomes)
    sched = Scheduler(store, runner, clock=clock, retry_policy=RetryPolicy(error_backoff_s=(1,)))
    for hour in (1, 2):
        clock.set(at(hour))
        await sched.tick()
        await sched.wait_idle()
        if hour == 1:
            assert store.get_state(job.job_id).consecutive_errors == 1
    state = store.get_state(job.job_id)
    assert state.consecutive_errors == 0 and state.backoff_until is None


async def test_a_run_past_its_timeout_is_cancelled_and_recorded_timeout(store, clock, runner):
    job = add_job(store, T0, AtSchedule(at(1)), timeout_s=300)
    runner.gate = asyncio.Event()  # never set: the model never answers
    sched = Scheduler(store, runner, clock=clock)
    clock.set(at(1))
    [run_id] = await sched.tick()
    await settle()
    clock.advance(299)
    await settle()
    assert store.get_run(run_id).status == "running"
    clock.advance(1)
    await sched.wait_idle()
    row = store.get_run(run_id)
    assert row.status == "timeout" and "300 s" in (row.error_message or "")
    assert runner.active == 0  # the execute task was cancelled
    assert store.get_state(job.job_id).consecutive_errors == 1


async def test_exceptions_from_execute_become_error_rows_with_their_kind(store, clock, runner):
    class FakeProviderError(Exception):
        kind = "rate_limit"
        retryable = True
        model = "openai/gpt-x"

    errors = iter([RuntimeError("bug in the runner"), FakeProviderError("slow down")])
    job = add_job(store, T0, EverySchedule(3600.0, T0))

    async def failing(job, ctx):
        raise next(errors)

    sched = Scheduler(store, failing, clock=clock, retry_policy=RetryPolicy(error_backoff_s=(1,)))
    for hour in (1, 2):
        clock.set(at(hour))
        await sched.tick()
        await sched.wait_idle()
    rows = store.runs(job_id=job.job_id, oldest_first=True)
    assert [(r.status, r.error_kind) for r in rows] == [
        ("error", "internal:RuntimeError"),
        ("error", "rate_limit"),
    ]
    assert rows[0].error_message == "bug in the runner" and rows[1].model == "openai/gpt-x"


async def test_run_now_runs_a_job_outside_its_schedule_and_leaves_the_schedule_alone(
    store, clock, runner
):
    job = add_cron_job(store, T0)
    sched = Scheduler(store, runner, clock=clock)
    handle = await sched.run_now(job.job_id)
    row = await handle.wait()
    assert (row.status, row.trigger, row.scheduled_at) == ("ok", "manual", T0)
    assert store.get_state(job.job_id).next_run_at == at(1)
    assert store.occurrences(job.job_id) == []  # the occurrence log is for schedule slots
    with pytest.raises(JobNotFoundError):
        await sched.run_now("00000000-0000-4000-8000-000000000000")


async def test_stopping_cancels_in_flight_runs_and_records_them_interrupted(store, clock, runner):
    add_job(store, T0, AtSchedule(at(1)))
    runner.gate = asyncio.Event()
    sched = Scheduler(store, runner, clock=clock)
    clock.set(at(1))
    [run_id] = await sched.tick()
    await settle()
    await sched.stop()
    assert store.get_run(run_id).status == "interrupted"
    assert sched.statistics().running == 0


async def test_the_run_loop_sleeps_on_the_clock_and_wakes_for_due_jobs(store, clock, runner):
    job = add_job(store, T0, EverySchedule(3600.0, T0))
    sched = Scheduler(store, runner, clock=clock, poll_interval_s=600)
    loop = asyncio.create_task(sched.run())
    await settle()
    assert clock.next_wake() == T0 + timedelta(seconds=600)  # polls; the slot is at 07:00
    clock.set(at(1))
    await settle()
    await sched.wait_idle()
    await settle()
    assert [ctx.scheduled_at for _, ctx in runner.calls] == [at(1)]
    added = add_job(store, clock.now(), AtSchedule(at(1) + timedelta(seconds=30)), name="new")
    sched.wake()
    await settle()
    assert clock.next_wake() == at(1) + timedelta(seconds=30)
    clock.advance(30)
    await settle()
    await sched.wait_idle()
    assert [j.job_id for j, _ in runner.calls] == [job.job_id, added.job_id]
    await sched.stop()
    await loop
    assert "stopping=True" in repr(sched) and sched.statistics().dispatched == 2


async def test_failed_and_missed_runs_are_warnings_naming_job_run_and_reason_cron_i16(
    store, clock, caplog
):
    """Invariant CRON-I16: an operator reading the log at WARNING sees every run that did not
    end ok, with the job, the run and why; ok runs stay at INFO."""
    results = iter(
        [RunOutcome("ok"), RunOutcome("error", error_kind="rate_limit", error_message="slow down")]
    )

    async def run(job, ctx):
        return next(results)

    job = add_job(store, T0, EverySchedule(3600.0, T0), name="disk report")
    sched = Scheduler(store, run, clock=clock, retry_policy=RetryPolicy(error_backoff_s=(1,)))
    with caplog.at_level("INFO", logger="fencepost.cron"):
        for hour in (1, 2):
            clock.set(at(hour))
            await sched.tick()
            await sched.wait_idle()
        clock.set(at(5))  # hours 3 and 4 pass unrun: recorded missed at the next start
        await Scheduler(store, run, clock=clock, catchup_grace_s=60).start()
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    failed = [r for r in warnings if r.getMessage().startswith("run error")]
    assert len(failed) == 1
    assert "'disk report'" in failed[0].getMessage() and "slow down" in failed[0].getMessage()
    assert failed[0].job == job.job_id and failed[0].run
    missed = [r for r in warnings if " missed: " in r.getMessage()]
    assert missed and all(r.job == job.job_id and r.run for r in missed)
    ok = [r for r in caplog.records if r.getMessage() == "run finished"]
    assert len(ok) == 1 and ok[0].levelname == "INFO"
