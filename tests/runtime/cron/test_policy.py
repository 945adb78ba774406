"""The pure decisions: due slots, catch-up, retry, backoff, auto-disable, takeover retries."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from fencepost.runtime.cron import (
    CatchupItem,
    CronSchedule,
    EverySchedule,
    RetryPolicy,
    decide_after_run,
    decide_slot,
    plan_catchup,
    plan_slots,
)

T = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
HOURLY = EverySchedule(3600.0, T)
DEFAULT_POLICY = RetryPolicy()


def h(n: float) -> datetime:
    return T + timedelta(hours=n)


# ---- due slots -----------------------------------------------------------------------------


def test_one_due_slot_runs_and_the_next_slot_follows():
    plan = plan_slots(HOURLY, h(1), h(1), h(1) + timedelta(seconds=2))
    assert plan.missed == () and plan.latest == h(1) and plan.following == h(2)
    assert plan.lateness_s == 2


def test_several_due_slots_keep_only_the_latest_and_list_the_rest_as_missed():
    plan = plan_slots(HOURLY, h(1), h(1), h(4.5))
    assert plan.missed == (h(1), h(2), h(3)) and plan.latest == h(4)
    assert plan.lateness_s == 1800 and plan.following == h(5)


def test_a_paced_catch_up_run_is_not_late_when_its_turn_comes():
    plan = plan_slots(HOURLY, h(1), h(1.5), h(1.5))
    assert plan.lateness_s == 0


def test_a_flood_of_slots_is_counted_not_enumerated_without_end():
    every = EverySchedule(10.0, T)
    plan = plan_slots(every, T, T, T + timedelta(days=30), max_slots=100)
    assert len(plan.missed) == 99
    assert len(plan.missed) + plan.more_missed + 1 == 30 * 8640 + 1
    assert plan.latest == T + timedelta(days=30)


def test_an_at_slot_has_no_following_slot():
    from fencepost.runtime.cron import AtSchedule

    plan = plan_slots(AtSchedule(h(1)), h(1), h(1), h(2))
    assert plan.latest == h(1) and plan.following is None and plan.missed == ()


@pytest.mark.parametrize(
    ("late_s", "running", "backoff", "capacity", "verdict"),
    [
        (0, None, None, True, "run"),
        (0, None, None, False, "wait"),
        (0, "r1", None, True, "skip_running"),
        (0, "r1", None, False, "skip_running"),
        (0, None, h(3), True, "skip_backoff"),
        (0, None, h(0.5), True, "run"),  # backoff already over
        (7200, None, None, True, "missed"),
        (7200, "r1", h(3), False, "missed"),
    ],
)
def test_the_latest_slot_runs_waits_is_skipped_or_missed(
    late_s, running, backoff, capacity, verdict
):
    now = h(1) + timedelta(seconds=late_s)
    plan = plan_slots(EverySchedule(86400.0, T), h(1), h(1), now)
    d = decide_slot(
        plan,
        now=now,
        grace_s=3600,
        running_run_id=running,
        backoff_until=backoff,
        capacity_free=capacity,
    )
    assert d.verdict == verdict
    assert (d.reason is None) == (verdict == "run")


# ---- catch-up: Invariant CRON-I8 -------------------------------------------------------------


# Invariant CRON-I8
def test_catch_up_runs_each_job_at_most_once_within_grace_and_paces_them_cron_i8():
    daily = CronSchedule("0 7 * * *", "UTC")
    now = datetime(2026, 3, 5, 7, 30, tzinfo=UTC)  # down since 2026-03-02 06:00
    items = [
        CatchupItem(
            "a", daily, datetime(2026, 3, 2, 7, tzinfo=UTC), datetime(2026, 3, 2, 7, tzinfo=UTC)
        ),
        CatchupItem("b", HOURLY, h(1), h(1)),
        CatchupItem(
            "c",
            CronSchedule("0 3 * * *", "UTC"),
            datetime(2026, 3, 3, 3, tzinfo=UTC),
            datetime(2026, 3, 3, 3, tzinfo=UTC),
        ),
        CatchupItem("later", HOURLY, now + timedelta(hours=1), now + timedelta(hours=1)),
    ]
    out = {d.job_id: d for d in plan_catchup(items, now, grace_s=3600, pace_s=2)}
    assert "later" not in out
    a, b, c = out["a"], out["b"], out["c"]
    assert a.run and a.plan.latest == datetime(2026, 3, 5, 7, tzinfo=UTC)
    assert len(a.plan.missed) == 3  # 3rd, 4th... 2nd, 3rd, 4th at 07:00
    assert b.run and b.plan.latest == datetime(2026, 3, 5, 7, tzinfo=UTC)
    assert not c.run and c.dispatch_at is None and "grace" in (c.reason or "")
    assert c.plan.latest == datetime(2026, 3, 5, 3, tzinfo=UTC)
    # paced: distinct dispatch instants pace_s apart, starting now
    times = sorted(d.dispatch_at for d in (a, b) if d.dispatch_at)
    assert times == [now, now + timedelta(seconds=2)]


# Invariant CRON-I8
def test_catch_up_of_many_jobs_never_starts_two_in_one_instant_cron_i8():
    now = h(10)
    items = [CatchupItem(f"j{i:03d}", HOURLY, h(9), h(9)) for i in range(50)]
    out = plan_catchup(items, now, grace_s=7200, pace_s=0.5)
    assert all(d.run for d in out)
    instants = sorted(d.dispatch_at for d in out if d.dispatch_at)
    assert len(set(instants)) == 50
    assert all(b - a == timedelta(seconds=0.5) for a, b in itertools.pairwise(instants))


# ---- after a run: Invariants CRON-I9, CRON-I13 ----------------------------------------------


def after(
    status,
    *,
    one_shot=False,
    trigger="schedule",
    errors=0,
    transient=0,
    takeovers=0,
    kind=None,
    retryable=None,
    policy=DEFAULT_POLICY,
    delete_after_run=False,
):
    return decide_after_run(
        status=status,
        now=T,
        slot=T,
        one_shot=one_shot,
        delete_after_run=delete_after_run,
        trigger=trigger,
        attempt=1 + transient + takeovers,
        transient_retries=transient,
        takeover_retries=takeovers,
        consecutive_errors=errors,
        backoff_until=None,
        error_kind=kind,
        retryable=retryable,
        error_message="boom",
        policy=policy,
    )


# Invariant CRON-I13
def test_success_resets_errors_and_backoff_and_deletes_a_finished_one_shot_cron_i13():
    a = after("ok", errors=4)
    assert (a.consecutive_errors, a.backoff_until, a.retry, a.disable_reason) == (
        0,
        None,
        None,
        None,
    )
    assert after("ok", one_shot=True, delete_after_run=True).delete_job
    assert not after("ok", one_shot=True).delete_job


def test_a_transient_error_on_a_one_shot_retries_with_bounded_backoff():
    policy = RetryPolicy(transient_retries=3, transient_backoff_s=(30, 60))
    delays = []
    for used in range(3):
        a = after("error", one_shot=True, kind="rate_limit", transient=used, policy=policy)
        assert a.retry is not None and not a.counts_as_failure and a.consecutive_errors == 0
        assert a.retry.attempt == used + 2 and a.retry.slot == T
        delays.append((a.retry.at - T).total_seconds())
    assert delays == [30, 60, 60]
    final = after("error", one_shot=True, kind="rate_limit", transient=3, policy=policy)
    assert final.retry is None and final.counts_as_failure and final.consecutive_errors == 1


def test_retryable_from_the_outcome_wins_over_the_error_kind():
    assert after("error", one_shot=True, kind="auth", retryable=True).retry is not None
    assert after("error", one_shot=True, kind="rate_limit", retryable=False).retry is None
    assert after("error", one_shot=True, kind="auth").retry is None


def test_recurring_jobs_and_manual_runs_do_not_retry_errors():
    assert after("error", kind="rate_limit").retry is None
    assert after("error", one_shot=True, kind="rate_limit", trigger="manual").retry is None
    assert after("timeout", one_shot=True).retry is None


# Invariant CRON-I13
def test_recurring_errors_back_off_longer_each_time_cron_i13():
    policy = RetryPolicy(error_backoff_s=(30, 300, 3600), auto_disable_after=0)
    waits = [
        (
            after("error", errors=n, kind="server_error", policy=policy).backoff_until - T
        ).total_seconds()
        for n in range(5)
    ]
    assert waits == [30, 300, 3600, 3600, 3600]
    assert after("error", one_shot=True, policy=policy).backoff_until is None


# Invariant CRON-I13
def test_the_nth_consecutive_failure_disables_the_job_with_the_reason_cron_i13():
    policy = RetryPolicy(auto_disable_after=3)
    assert after("error", errors=1, kind="bad_request", policy=policy).disable_reason is None
    a = after("timeout", errors=2, policy=policy)
    assert a.consecutive_errors == 3
    assert a.disable_reason == "auto-disabled after 3 consecutive failures; last: timeout: boom"
    assert (
        after("error", errors=50, policy=RetryPolicy(auto_disable_after=0)).disable_reason is None
    )


# Invariant CRON-I9
def test_a_takeover_is_retried_a_bounded_number_of_times_and_never_counts_as_a_failure_cron_i9():
    policy = RetryPolicy(takeover_retries=2, takeover_delay_s=(5, 30))
    for one_shot, errors in itertools.product((True, False), (0, 3)):
        a0 = after("takeover", one_shot=one_shot, errors=errors, policy=policy)
        a1 = after("takeover", one_shot=one_shot, errors=errors, takeovers=1, policy=policy)
        a2 = after("takeover", one_shot=one_shot, errors=errors, takeovers=2, policy=policy)
        assert a0.retry and (a0.retry.at - T).total_seconds() == 5
        assert a1.retry and (a1.retry.at - T).total_seconds() == 30
        assert a1.retry.takeover_retries == 2
        assert a2.retry is None
        for a in (a0, a1, a2):
            assert a.consecutive_errors == errors and not a.counts_as_failure
            assert a.disable_reason is None and a.backoff_until is None
    assert after("takeover", trigger="manual").retry is None


def test_after_run_refuses_a_status_that_is_not_final():
    with pytest.raises(ValueError, match="final run status"):
        after("running")


def test_state_after_edit_recomputes_on_a_new_schedule_resets_on_enable_records_disable():
    from fencepost.runtime.cron import EverySchedule, state_after_edit

    now = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    hourly, daily = EverySchedule(3600, anchor=now), EverySchedule(86400, anchor=now)
    assert state_after_edit(True, True, hourly, hourly, now) == {}
    moved = state_after_edit(True, True, hourly, daily, now)
    assert moved["next_run_at"] == moved["due_at"] == now + timedelta(days=1)
    assert moved["retry"] is None
    enabled = state_after_edit(False, True, hourly, hourly, now)
    assert enabled["consecutive_errors"] == 0 and enabled["disabled_reason"] is None
    assert state_after_edit(True, False, hourly, hourly, now, disabled_reason="why") == {
        "disabled_reason": "why"
    }
