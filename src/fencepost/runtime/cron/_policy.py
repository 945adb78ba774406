"""The scheduler's decisions as pure functions over values (docs/design/cron.md).

Which slots are due, which one runs and which are recorded ``missed``; how catch-up after
downtime is paced; what happens after a run (retry, backoff, auto-disable). No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from ._schedule import EverySchedule, Schedule, next_run_after

__all__ = [
    "state_after_edit",
    "DEFAULT_CATCHUP_GRACE_S",
    "DEFAULT_CATCHUP_PACE_S",
    "DEFAULT_TRANSIENT_KINDS",
    "MAX_SLOTS_PER_PLAN",
    "AfterRun",
    "CatchupDecision",
    "CatchupItem",
    "Retry",
    "RetryPolicy",
    "RunStatus",
    "SlotDecision",
    "SlotPlan",
    "SlotVerdict",
    "Trigger",
    "decide_after_run",
    "decide_slot",
    "plan_catchup",
    "plan_slots",
]

#: Status of a ledger row. ``running`` is the only non-final one.
RunStatus = Literal[
    "running", "ok", "error", "timeout", "takeover", "missed", "interrupted", "skipped"
]

#: Why a run started: its slot came due, catch-up after downtime, a retry, or a person.
Trigger = Literal["schedule", "catchup", "retry", "manual"]

#: A slot later than this is not worth running any more (a "daily 07:00" at 09:00 still is,
#: at 13:00 it is not); configurable per scheduler.
DEFAULT_CATCHUP_GRACE_S = 3600.0

#: Catch-up runs start this far apart, so a restart does not start every job in one instant.
DEFAULT_CATCHUP_PACE_S = 1.0

#: Enumerating more slots than this (an "every 10s" job down for a week) records the first ones
#: individually and counts the rest in the last ``missed`` row's message.
MAX_SLOTS_PER_PLAN = 500

#: Provider error kinds that may succeed a little later (used when an outcome does not say).
DEFAULT_TRANSIENT_KINDS: frozenset[str] = frozenset(
    {"rate_limit", "overloaded", "server_error", "timeout", "connection", "malformed_response"}
)


@dataclass(frozen=True)
class SlotPlan:
    """The slots of one job that are due at ``now``."""

    missed: tuple[datetime, ...]  # older due slots: never run, each gets a ``missed`` row
    more_missed: int  # further older slots beyond MAX_SLOTS_PER_PLAN, counted not listed
    latest: datetime  # the most recent due slot: the one that may run
    lateness_s: float  # how late ``latest`` would start now
    following: datetime | None  # the first slot after ``now`` (the new next_run_at)


def plan_slots(
    schedule: Schedule,
    next_run_at: datetime,
    due_at: datetime,
    now: datetime,
    *,
    max_slots: int = MAX_SLOTS_PER_PLAN,
) -> SlotPlan:
    """Enumerate the due slots ``next_run_at <= slot <= now`` (at least ``next_run_at``).

    Lateness is measured from ``due_at`` while the latest slot is still ``next_run_at`` (a paced
    catch-up run is not late when its turn comes), otherwise from the latest slot.
    """
    slots = [next_run_at]
    skipped_count = 0
    cursor: datetime | None = next_run_at
    while True:
        cursor = next_run_after(schedule, cursor) if cursor is not None else None
        if cursor is None or cursor > now:
            break
        if len(slots) >= max_slots:
            # keep the first max_slots - 1 and the latest; count what falls between
            if isinstance(schedule, EverySchedule):  # jump instead of walking every slot
                step = timedelta(seconds=schedule.every_s)
                jump = int((now - cursor) / step)
                skipped_count += jump
                cursor += jump * step
            skipped_count += 1
            slots[-1] = cursor
            continue
        slots.append(cursor)
    latest = slots[-1]
    reference = due_at if latest == next_run_at else latest
    return SlotPlan(
        missed=tuple(slots[:-1]),
        more_missed=skipped_count,
        latest=latest,
        lateness_s=max(0.0, (now - reference).total_seconds()),
        following=cursor,
    )


SlotVerdict = Literal["run", "missed", "skip_running", "skip_backoff", "wait"]


@dataclass(frozen=True)
class SlotDecision:
    verdict: SlotVerdict
    reason: str | None = None


def decide_slot(
    plan: SlotPlan,
    *,
    now: datetime,
    grace_s: float,
    running_run_id: str | None,
    backoff_until: datetime | None,
    capacity_free: bool,
) -> SlotDecision:
    """What to do with the latest due slot of a job.

    Order matters: a slot beyond the grace window is ``missed`` whatever else holds; a slot of a
    job that is still running is ``skipped`` (Invariant CRON-I5); then error backoff; then the
    global limit makes it wait (its lateness grows, and the grace window still applies).
    """
    if plan.lateness_s > grace_s:
        return SlotDecision(
            "missed",
            f"not started within the grace window ({plan.lateness_s:.0f} s late > {grace_s:g} s)",
        )
    if running_run_id is not None:
        return SlotDecision("skip_running", f"previous run {running_run_id} still running")
    if backoff_until is not None and backoff_until > now:
        return SlotDecision("skip_backoff", f"error backoff until {backoff_until.isoformat()}")
    if not capacity_free:
        return SlotDecision("wait", "global concurrency limit reached")
    return SlotDecision("run")


@dataclass(frozen=True)
class CatchupItem:
    job_id: str
    schedule: Schedule
    next_run_at: datetime
    due_at: datetime


@dataclass(frozen=True)
class CatchupDecision:
    job_id: str
    plan: SlotPlan
    run: bool  # True: the latest slot runs at ``dispatch_at``; False: it is missed too
    dispatch_at: datetime | None
    reason: str | None


def plan_catchup(
    items: Iterable[CatchupItem],
    now: datetime,
    *,
    grace_s: float = DEFAULT_CATCHUP_GRACE_S,
    pace_s: float = DEFAULT_CATCHUP_PACE_S,
    max_slots: int = MAX_SLOTS_PER_PLAN,
) -> list[CatchupDecision]:
    """Catch-up after downtime (Invariant CRON-I8).

    Each overdue job runs at most once: its latest missed slot, if that is within ``grace_s``;
    every other slot is ``missed``. The runs that remain are released ``pace_s`` apart, the
    longest-waiting first.
    """
    planned = []
    for item in items:
        if item.due_at > now:
            continue
        plan = plan_slots(item.schedule, item.next_run_at, item.due_at, now, max_slots=max_slots)
        planned.append((item, plan))
    runnable = sorted(
        (p for p in planned if p[1].lateness_s <= grace_s),
        key=lambda p: (p[1].latest, p[0].job_id),
    )
    rank = {p[0].job_id: i for i, p in enumerate(runnable)}
    out = []
    for item, plan in planned:
        if item.job_id in rank:
            at = now + timedelta(seconds=pace_s * rank[item.job_id])
            out.append(CatchupDecision(item.job_id, plan, True, at, None))
        else:
            reason = (
                f"missed during downtime; latest slot {plan.lateness_s:.0f} s late, beyond the "
                f"grace window of {grace_s:g} s"
            )
            out.append(CatchupDecision(item.job_id, plan, False, None, reason))
    return out


# ---- after a run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries and backoff. Durations in seconds; the last step repeats."""

    #: one-shots only: transient provider errors (rate limits, 5xx, timeouts of the provider)
    transient_retries: int = 3
    transient_backoff_s: tuple[float, ...] = (30.0, 60.0, 300.0)
    #: any job: a takeover is a coordination race with another writer, not a model failure
    takeover_retries: int = 2
    takeover_delay_s: tuple[float, ...] = (5.0, 30.0)
    #: recurring jobs: after the n-th consecutive failure, skip slots for this long
    error_backoff_s: tuple[float, ...] = (30.0, 60.0, 300.0, 900.0, 3600.0)
    #: disable a job after this many consecutive failures (0: never)
    auto_disable_after: int = 5
    transient_kinds: frozenset[str] = DEFAULT_TRANSIENT_KINDS


@dataclass(frozen=True)
class Retry:
    """Run the same slot again at ``at``, as attempt ``attempt``."""

    at: datetime
    slot: datetime
    attempt: int
    transient_retries: int  # used so far for this slot, including this one
    takeover_retries: int
    reason: str


@dataclass(frozen=True)
class AfterRun:
    consecutive_errors: int
    backoff_until: datetime | None
    retry: Retry | None
    disable_reason: str | None
    delete_job: bool
    counts_as_failure: bool


def _step(steps: tuple[float, ...], n: int) -> float:
    return steps[min(n, len(steps) - 1)] if steps else 0.0


def decide_after_run(
    *,
    status: RunStatus,
    now: datetime,
    slot: datetime,
    one_shot: bool,
    delete_after_run: bool,
    trigger: Trigger,
    attempt: int,
    transient_retries: int,
    takeover_retries: int,
    consecutive_errors: int,
    backoff_until: datetime | None,
    error_kind: str | None = None,
    retryable: bool | None = None,
    error_message: str | None = None,
    policy: RetryPolicy = RetryPolicy(),
) -> AfterRun:
    """Retry, backoff and auto-disable after a run ended with ``status``.

    Invariant CRON-I9: a takeover never changes ``consecutive_errors``, and is retried at most
    ``policy.takeover_retries`` times. Invariant CRON-I13: success resets errors and backoff; the
    ``auto_disable_after``-th consecutive failure disables the job with the reason recorded.
    Manual runs are never retried automatically (someone is watching).
    """
    if status == "ok":
        return AfterRun(0, None, None, None, one_shot and delete_after_run, False)
    if status == "takeover":
        retry = None
        if trigger != "manual" and takeover_retries < policy.takeover_retries:
            retry = Retry(
                at=now + timedelta(seconds=_step(policy.takeover_delay_s, takeover_retries)),
                slot=slot,
                attempt=attempt + 1,
                transient_retries=transient_retries,
                takeover_retries=takeover_retries + 1,
                reason=f"session takeover (retry {takeover_retries + 1} of "
                f"{policy.takeover_retries})",
            )
        return AfterRun(consecutive_errors, backoff_until, retry, None, False, False)
    if status not in ("error", "timeout"):
        raise ValueError(f"decide_after_run needs a final run status, not {status!r}")
    transient = status == "error" and (
        retryable if retryable is not None else error_kind in policy.transient_kinds
    )
    if (
        one_shot
        and transient
        and trigger != "manual"
        and transient_retries < policy.transient_retries
    ):
        retry = Retry(
            at=now + timedelta(seconds=_step(policy.transient_backoff_s, transient_retries)),
            slot=slot,
            attempt=attempt + 1,
            transient_retries=transient_retries + 1,
            takeover_retries=takeover_retries,
            reason=f"transient {error_kind} (retry {transient_retries + 1} of "
            f"{policy.transient_retries})",
        )
        return AfterRun(consecutive_errors, backoff_until, retry, None, False, False)
    errors = consecutive_errors + 1
    backoff = (
        None if one_shot else now + timedelta(seconds=_step(policy.error_backoff_s, errors - 1))
    )
    disable = None
    if policy.auto_disable_after and errors >= policy.auto_disable_after:
        last = f"{status}" + (f" ({error_kind})" if error_kind else "")
        if error_message:
            last += f": {error_message[:200]}"
        disable = f"auto-disabled after {errors} consecutive failures; last: {last}"
    return AfterRun(errors, backoff, None, disable, False, True)


def state_after_edit(
    old_enabled: bool,
    new_enabled: bool,
    old_schedule: Schedule,
    new_schedule: Schedule,
    now: datetime,
    *,
    disabled_reason: str = "disabled by user",
) -> dict[str, object]:
    """The job-state changes an edit implies (pure; shared by the CLI and the HTTP API).

    A new schedule or a re-enable recomputes the next run from ``now`` and drops a pending
    retry; a re-enable also resets errors and backoff; a disable records its reason.
    """
    changes: dict[str, object] = {}
    enabling = new_enabled and not old_enabled
    if new_schedule != old_schedule or enabling:
        nxt = next_run_after(new_schedule, now)
        changes.update(next_run_at=nxt, due_at=nxt, retry=None)
    if enabling:
        changes.update(disabled_reason=None, consecutive_errors=0, backoff_until=None)
    elif old_enabled and not new_enabled:
        changes.update(disabled_reason=disabled_reason)
    return changes
