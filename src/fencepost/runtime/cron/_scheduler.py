"""The scheduler: thin async I/O around the pure decisions of ``_policy`` (docs/design/cron.md).

It never runs an agent turn itself: ``execute(job, context) -> RunOutcome`` is injected (the
attempt runner, wired by the gateway), and so is the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from fencepost.errors import (
    DeliveryError,
    FencepostError,
    JobNotFoundError,
    JobRunningError,
    SessionTakeoverError,
)

from ._clock import Clock, SystemClock
from ._delivery import Deliverer
from ._job import Job
from ._policy import (
    DEFAULT_CATCHUP_GRACE_S,
    DEFAULT_CATCHUP_PACE_S,
    MAX_SLOTS_PER_PLAN,
    CatchupItem,
    RetryPolicy,
    RunStatus,
    SlotPlan,
    Trigger,
    decide_after_run,
    decide_slot,
    plan_catchup,
    plan_slots,
)
from ._schedule import next_run_after
from ._store import CronStore, JobState, RunRecord

__all__ = [
    "DEFAULT_MAX_CONCURRENT_RUNS",
    "DEFAULT_POLL_INTERVAL_S",
    "Execute",
    "OutcomeStatus",
    "RunContext",
    "RunHandle",
    "RunOutcome",
    "Scheduler",
    "SchedulerStatistics",
    "StartReport",
]

log = logging.getLogger("fencepost.cron")

#: Agent runs spend their time waiting on providers; a few at once keeps a small host responsive.
DEFAULT_MAX_CONCURRENT_RUNS = 4

#: Jobs added by another process (the CLI) are seen within this long; in-process changes call
#: ``wake()`` and are seen at once.
DEFAULT_POLL_INTERVAL_S = 10.0

OutcomeStatus = Literal["ok", "error", "timeout", "takeover"]


@dataclass(frozen=True)
class RunOutcome:
    """What ``execute`` reports about one run. Exceptions it raises are translated into one."""

    status: OutcomeStatus
    error_kind: str | None = None
    error_message: str | None = None
    retryable: bool | None = None  # None: decided from error_kind (RetryPolicy.transient_kinds)
    session_id: str | None = None
    model: str | None = None
    usage: dict[str, Any] | None = None
    reply: str | None = None
    fence: dict[str, Any] | None = None  # the takeover description, for ``takeover``

    @classmethod
    def from_exception(cls, exc: BaseException) -> RunOutcome:
        if isinstance(exc, SessionTakeoverError):
            return cls(
                "takeover",
                error_kind=exc.reason,
                error_message=exc.description,
                session_id=exc.session_id,
                fence={
                    "reason": exc.reason,
                    "description": exc.description,
                    "epoch_held": exc.epoch_held,
                    "epoch_seen": exc.epoch_seen,
                },
            )
        kind = getattr(exc, "kind", None)
        if isinstance(kind, str):  # a ProviderError (kind, retryable)
            retryable = getattr(exc, "retryable", None)
            return cls(
                "error",
                error_kind=kind,
                error_message=str(exc),
                retryable=retryable if isinstance(retryable, bool) else None,
                model=getattr(exc, "model", None),
            )
        name = type(exc).__name__
        if not isinstance(exc, FencepostError):
            name = "internal:" + name
        return cls("error", error_kind=name, error_message=str(exc) or name, retryable=False)


@dataclass(frozen=True)
class RunContext:
    """What the scheduler tells ``execute`` about the run it is asked to do."""

    run_id: str
    job_id: str
    scheduled_at: datetime
    started_at: datetime
    deadline: datetime  # the scheduler cancels the run at this instant
    attempt: int
    trigger: Trigger
    #: ``isolated``: a fresh id for this run; ``session:<id>``: that id; ``main``: None (the
    #: runner uses the agent's main session)
    session_id: str | None
    timeout_s: float


Execute = Callable[[Job, RunContext], Awaitable[RunOutcome]]


@dataclass(frozen=True)
class StartReport:
    interrupted: tuple[str, ...]  # run ids found ``running`` and recorded ``interrupted``
    catchup_runs: int  # jobs that will run once for their latest missed slot
    missed: int  # slots recorded ``missed``


@dataclass(frozen=True)
class SchedulerStatistics:
    started: bool
    stopping: bool
    running: int
    max_concurrent_runs: int
    dispatched: int
    missed: int
    skipped: int
    ticks: int


@dataclass
class RunHandle:
    """A dispatched run; ``await handle.wait()`` gives its final ledger row."""

    run_id: str
    job_id: str
    _task: asyncio.Task[RunRecord] = field(repr=False)

    async def wait(self) -> RunRecord:
        return await asyncio.shield(self._task)

    def done(self) -> bool:
        return self._task.done()


@dataclass(frozen=True)
class _Attempt:
    slot: datetime
    trigger: Trigger
    attempt: int = 1
    transient_retries: int = 0
    takeover_retries: int = 0


class Scheduler:
    """Dispatches due jobs from a ``CronStore`` to ``execute``; one instance per state dir.

    Drive it with ``await run()`` (start, then tick and sleep until stopped), or step it in tests
    with ``start()``, ``tick()`` and ``wait_idle()``.
    """

    def __init__(
        self,
        store: CronStore,
        execute: Execute,
        *,
        clock: Clock | None = None,
        max_concurrent_runs: int = DEFAULT_MAX_CONCURRENT_RUNS,
        catchup_grace_s: float = DEFAULT_CATCHUP_GRACE_S,
        catchup_pace_s: float = DEFAULT_CATCHUP_PACE_S,
        retry_policy: RetryPolicy | None = None,
        deliverers: Mapping[str, Deliverer] | None = None,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        max_slots: int = MAX_SLOTS_PER_PLAN,
    ) -> None:
        if max_concurrent_runs < 1:
            raise ValueError("max_concurrent_runs must be at least 1")
        self.store = store
        self.execute = execute
        self.clock: Clock = clock or SystemClock()
        self.max_concurrent_runs = max_concurrent_runs
        self.catchup_grace_s = catchup_grace_s
        self.catchup_pace_s = catchup_pace_s
        self.retry_policy = retry_policy or RetryPolicy()
        self.deliverers = dict(deliverers or {})
        self.poll_interval_s = poll_interval_s
        self.max_slots = max_slots
        self._tasks: dict[str, asyncio.Task[RunRecord]] = {}
        self._scheduled_running = 0
        self._wakeup = asyncio.Event()
        self._started = False
        self._stopping = False
        self._counts = {"dispatched": 0, "missed": 0, "skipped": 0, "ticks": 0}

    def __repr__(self) -> str:
        return (
            f"<Scheduler {self.store.path} running={len(self._tasks)}/"
            f"{self.max_concurrent_runs} started={self._started} stopping={self._stopping}>"
        )

    def statistics(self) -> SchedulerStatistics:
        return SchedulerStatistics(
            started=self._started,
            stopping=self._stopping,
            running=len(self._tasks),
            max_concurrent_runs=self.max_concurrent_runs,
            **self._counts,
        )

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> StartReport:
        """Recover from the last process: interrupted runs, then catch-up. Idempotent per object."""
        now = self.clock.now()
        interrupted = self.store.recover_interrupted(now)  # Invariant CRON-I7
        for run_id in interrupted:
            log.warning("run interrupted by a restart", extra={"action": "recover", "run": run_id})
        due = {
            job.job_id: (job, st)
            for job, st in self.store.due(now, limit=1_000_000)
            if st.next_run_at is not None and st.due_at is not None and st.due_at <= now
        }
        items = [
            CatchupItem(job.job_id, job.schedule, st.next_run_at, st.due_at)
            for job, st in due.values()
            if st.next_run_at is not None and st.due_at is not None
        ]
        decisions = plan_catchup(
            items,
            now,
            grace_s=self.catchup_grace_s,
            pace_s=self.catchup_pace_s,
            max_slots=self.max_slots,
        )
        missed = runs = 0
        with self.store.transaction():
            for d in decisions:
                job = due[d.job_id][0]
                reason = "missed during downtime; only the latest slot within the grace window runs"
                missed += self._record_missed(job, d.plan, reason, now)
                if d.run:
                    runs += 1
                    self.store.update_state(
                        job.job_id, next_run_at=d.plan.latest, due_at=d.dispatch_at
                    )
                else:
                    missed += self._record_slot(job, d.plan.latest, "missed", d.reason, now)
                    self._advance(job.job_id, d.plan.following)
        self._started = True
        self._counts["missed"] += missed
        return StartReport(tuple(interrupted), runs, missed)

    async def run(self) -> None:
        """Start (if not yet), then dispatch due jobs until ``stop()``."""
        if not self._started:
            await self.start()
        while not self._stopping:
            await self.tick()
            await self._sleep_until_next()

    def wake(self) -> None:
        """Re-read the store now (call after adding or changing a job in this process)."""
        self._wakeup.set()

    async def stop(self, *, cancel_running: bool = True) -> None:
        """Stop the loop; cancel in-flight runs (recorded ``interrupted``) or wait for them."""
        self._stopping = True
        self._wakeup.set()
        if cancel_running:
            for task in list(self._tasks.values()):
                task.cancel()
        await self.wait_idle()

    async def wait_idle(self) -> None:
        """Wait until no run dispatched by this scheduler is in flight."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def _sleep_until_next(self) -> None:
        now = self.clock.now()
        wake = now + timedelta(seconds=self.poll_interval_s)
        if self._scheduled_running < self.max_concurrent_runs:
            nxt = self.store.next_wake_at()
            if nxt is not None:
                wake = min(wake, nxt)
        if wake <= now or self._wakeup.is_set():
            await asyncio.sleep(0)
            return
        sleeper = asyncio.ensure_future(self.clock.sleep_until(wake))
        waiter = asyncio.ensure_future(self._wakeup.wait())
        try:
            await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (sleeper, waiter):
                t.cancel()
            await asyncio.gather(sleeper, waiter, return_exceptions=True)

    # ---- one pass --------------------------------------------------------------------------

    async def tick(self) -> list[str]:
        """Handle every due job once: run, skip, miss or wait. Returns the run ids started."""
        self._wakeup.clear()
        self._counts["ticks"] += 1
        now = self.clock.now()
        started = []
        for job, st in self.store.due(now):
            if st.due_at is not None and st.due_at <= now and st.next_run_at is not None:
                try:
                    run_id = self._handle_slot(job, st, now)
                except JobRunningError as exc:  # claimed by another process since we read it
                    with self.store.transaction():
                        reason = f"previous run {exc.run_id} still running"
                        self._record_slot(job, st.next_run_at, "skipped", reason, now)
                        self._advance(job.job_id, next_run_after(job.schedule, now))
                    continue
            elif st.retry is not None and st.running_run_id is None:
                if not self._capacity_free():
                    continue
                r = st.retry
                attempt = _Attempt(
                    r.slot, "retry", r.attempt, r.transient_retries, r.takeover_retries
                )
                run_id = self._dispatch(job, attempt, now, advance=False)
            else:
                continue
            if run_id is not None:
                started.append(run_id)
        return started

    def _capacity_free(self) -> bool:
        # Invariant CRON-I6
        return self._scheduled_running < self.max_concurrent_runs

    def _handle_slot(self, job: Job, st: JobState, now: datetime) -> str | None:
        assert st.next_run_at is not None and st.due_at is not None
        plan = plan_slots(job.schedule, st.next_run_at, st.due_at, now, max_slots=self.max_slots)
        decision = decide_slot(
            plan,
            now=now,
            grace_s=self.catchup_grace_s,
            running_run_id=st.running_run_id,
            backoff_until=st.backoff_until,
            capacity_free=self._capacity_free(),
        )
        with self.store.transaction():
            self._counts["missed"] += self._record_missed(
                job, plan, "not started: the scheduler was busy or paused past this slot", now
            )
            if decision.verdict == "wait":
                if plan.latest != st.next_run_at:
                    self.store.update_state(job.job_id, next_run_at=plan.latest, due_at=plan.latest)
                return None
            if decision.verdict != "run":
                status: RunStatus = "missed" if decision.verdict == "missed" else "skipped"
                n = self._record_slot(job, plan.latest, status, decision.reason, now)
                self._counts["missed" if status == "missed" else "skipped"] += n
                self._advance(job.job_id, plan.following)
                return None
            paced = plan.latest == st.next_run_at and st.due_at > plan.latest
            trigger: Trigger = "catchup" if paced else "schedule"
            return self._dispatch(job, _Attempt(plan.latest, trigger), now, following=plan)

    def _advance(self, job_id: str, following: datetime | None) -> None:
        self.store.update_state(job_id, next_run_at=following, due_at=following)

    def _record_missed(self, job: Job, plan: SlotPlan, reason: str, now: datetime) -> int:
        n = 0
        for i, slot in enumerate(plan.missed):
            why = reason
            if plan.more_missed and i == len(plan.missed) - 1:
                why += f"; {plan.more_missed} further slots up to the latest were also missed"
            n += self._record_slot(job, slot, "missed", why, now)
        return n

    def _record_slot(
        self, job: Job, slot: datetime, status: RunStatus, reason: str | None, now: datetime
    ) -> int:
        """A ledger row for a slot that does not run (``missed`` / ``skipped``). Idempotent."""
        run_id = str(uuid.uuid4())
        if not self.store.insert_occurrence(job.job_id, slot, run_id, now):  # CRON-I4
            return 0
        log.warning(  # Invariant CRON-I16
            "slot %s %s: job %r: %s",
            slot.isoformat(),
            status,
            job.name,
            reason,
            extra={"action": status, "job": job.job_id, "run": run_id, "st": status},
        )
        self.store.insert_run(
            RunRecord(
                run_id=run_id,
                job_id=job.job_id,
                job_name=job.name,
                scheduled_at=slot,
                trigger="schedule",
                attempt=1,
                status=status,
                recorded_at=now,
                error_kind=status,
                error_message=reason,
            )
        )
        return 1

    # ---- dispatch and the run task ----------------------------------------------------------

    def _dispatch(
        self,
        job: Job,
        attempt: _Attempt,
        now: datetime,
        *,
        advance: bool = True,
        following: SlotPlan | None = None,
    ) -> str | None:
        run_id = str(uuid.uuid4())
        session_id = f"cron-{run_id}" if job.target == "isolated" else job.target_session_id
        with self.store.transaction():
            if attempt.trigger in ("schedule", "catchup") and not self.store.insert_occurrence(
                job.job_id, attempt.slot, run_id, now
            ):
                # Invariant CRON-I4: this slot was handled already (another pass or process)
                if following is not None:
                    self._advance(job.job_id, following.following)
                return None
            if not self.store.claim(job.job_id, run_id):
                # Invariant CRON-I5: another instance of this job is running
                holder = self.store.get_state(job.job_id).running_run_id
                raise JobRunningError(job.job_id, holder or "?")
            # Invariant CRON-I10: the ledger row exists before the run starts
            self.store.insert_run(
                RunRecord(
                    run_id=run_id,
                    job_id=job.job_id,
                    job_name=job.name,
                    scheduled_at=attempt.slot,
                    trigger=attempt.trigger,
                    attempt=attempt.attempt,
                    status="running",
                    recorded_at=now,
                    started_at=now,
                    session_id=session_id,
                    model=job.model,
                )
            )
            # Invariant CRON-I3: the next slot is committed before this one is dispatched
            state: dict[str, Any] = {"last_run_id": run_id, "last_run_at": now}
            if advance and following is not None:
                state.update(next_run_at=following.following, due_at=following.following)
            if attempt.trigger != "manual":
                state["retry"] = None
            self.store.update_state(job.job_id, **state)
        ctx = RunContext(
            run_id=run_id,
            job_id=job.job_id,
            scheduled_at=attempt.slot,
            started_at=now,
            deadline=now + timedelta(seconds=job.timeout_s),
            attempt=attempt.attempt,
            trigger=attempt.trigger,
            session_id=session_id,
            timeout_s=job.timeout_s,
        )
        counted = attempt.trigger != "manual"
        if counted:
            self._scheduled_running += 1
        self._counts["dispatched"] += 1
        task = asyncio.create_task(self._run(job, ctx, attempt, counted), name=f"cron-run-{run_id}")
        self._tasks[run_id] = task
        log.info(
            "run dispatched",
            extra={"action": "dispatch", "job": job.job_id, "run": run_id, "session": session_id},
        )
        return run_id

    async def run_now(self, job_id: str) -> RunHandle:
        """Run a job now, outside its schedule (trigger ``manual``; not retried automatically).

        Refused with JobRunningError while the job has a run in flight. Manual runs do not wait
        for the global limit.
        """
        job = self.store.get_job(job_id)
        st = self.store.get_state(job_id)
        if st.running_run_id is not None:
            raise JobRunningError(job_id, st.running_run_id)
        now = self.clock.now()
        run_id = self._dispatch(job, _Attempt(now, "manual"), now, advance=False)
        assert run_id is not None
        return RunHandle(run_id, job_id, self._tasks[run_id])

    async def _run(self, job: Job, ctx: RunContext, attempt: _Attempt, counted: bool) -> RunRecord:
        try:
            try:
                outcome = await self._execute_with_deadline(job, ctx)
            except asyncio.CancelledError:
                self._finish_cancelled(job, ctx)
                raise
            return await self._finish(job, ctx, attempt, outcome)
        finally:
            self._tasks.pop(ctx.run_id, None)
            if counted:
                self._scheduled_running -= 1
            self._wakeup.set()

    async def _execute_with_deadline(self, job: Job, ctx: RunContext) -> RunOutcome:
        work = asyncio.ensure_future(self.execute(job, ctx))
        timer = asyncio.ensure_future(self.clock.sleep_until(ctx.deadline))
        try:
            await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not work.done():
                work.cancel()
            await asyncio.gather(timer, return_exceptions=True)
        if work.cancelled() or not work.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work
            return RunOutcome(
                "timeout",
                error_kind="timeout",
                error_message=f"no result within the job's timeout of {ctx.timeout_s:g} s",
                session_id=ctx.session_id,
            )
        exc = work.exception()
        if exc is not None:
            if not isinstance(exc, FencepostError):
                log.error(
                    "execute raised",
                    exc_info=exc,
                    extra={"action": "execute", "job": job.job_id, "run": ctx.run_id},
                )
            outcome = RunOutcome.from_exception(exc)
        else:
            outcome = work.result()
        if outcome.session_id is None and ctx.session_id is not None:
            outcome = replace(outcome, session_id=ctx.session_id)
        return outcome

    def _finish_cancelled(self, job: Job, ctx: RunContext) -> None:
        now = self.clock.now()
        with self.store.transaction():
            self.store.update_run(
                ctx.run_id,
                status="interrupted",
                ended_at=now,
                error_kind="interrupted",
                error_message="the scheduler stopped while this run was in flight",
            )
            with contextlib.suppress(JobNotFoundError):
                self.store.update_state(job.job_id, running_run_id=None, last_status="interrupted")

    async def _finish(
        self, job: Job, ctx: RunContext, attempt: _Attempt, outcome: RunOutcome
    ) -> RunRecord:
        now = self.clock.now()
        deliverer = self.deliverers.get(job.delivery.kind) if job.delivery.kind != "none" else None
        deliver = outcome.status == "ok" and job.delivery.kind != "none"
        fields: dict[str, Any] = {
            "status": outcome.status,
            "ended_at": now,
            "error_kind": outcome.error_kind,
            "error_message": outcome.error_message,
            "session_id": outcome.session_id,
            "model": outcome.model or job.model,
            "usage": outcome.usage,
            "reply": outcome.reply,
            "fence": outcome.fence,
        }
        if deliver:
            fields["delivery_status"] = "pending"  # Invariant CRON-I11: recorded before sending
        self.store.update_run(ctx.run_id, **fields)
        run = self.store.get_run(ctx.run_id)
        if deliver:
            status, error = "delivered", None
            if deliverer is None:
                status, error = "failed", f"no deliverer configured for {job.delivery.kind}"
            else:
                try:
                    await deliverer.deliver(job, run)
                except DeliveryError as exc:
                    status, error = "failed", str(exc)
                except Exception as exc:
                    log.exception(
                        "deliverer raised",
                        extra={"action": "deliver", "job": job.job_id, "run": ctx.run_id},
                    )
                    status, error = "failed", f"{type(exc).__name__}: {exc}"
            self.store.update_run(ctx.run_id, delivery_status=status, delivery_error=error)
        self._apply_after_run(job, ctx, attempt, outcome, now)
        # Invariant CRON-I16: a run that did not end ok is a warning naming job, run and reason.
        ok = outcome.status == "ok"
        log.log(
            logging.INFO if ok else logging.WARNING,
            "run finished" if ok else "run %s: job %r, %s: %s",
            *(() if ok else (outcome.status, job.name, outcome.error_kind, outcome.error_message)),
            extra={"action": "finish", "job": job.job_id, "run": ctx.run_id, "st": outcome.status},
        )
        return self.store.get_run(ctx.run_id)

    def _apply_after_run(
        self, job: Job, ctx: RunContext, attempt: _Attempt, outcome: RunOutcome, now: datetime
    ) -> None:
        with self.store.transaction():
            try:
                st = self.store.get_state(job.job_id)
                current = self.store.get_job(job.job_id)
            except JobNotFoundError:
                return  # removed while it ran; the ledger row stays
            after = decide_after_run(
                status=outcome.status,
                now=now,
                slot=attempt.slot,
                one_shot=current.one_shot,
                delete_after_run=current.delete_after_run,
                trigger=attempt.trigger,
                attempt=attempt.attempt,
                transient_retries=attempt.transient_retries,
                takeover_retries=attempt.takeover_retries,
                consecutive_errors=st.consecutive_errors,
                backoff_until=st.backoff_until,
                error_kind=outcome.error_kind,
                retryable=outcome.retryable,
                error_message=outcome.error_message,
                policy=self.retry_policy,
            )
            if after.delete_job:
                self.store.delete_job(job.job_id)
                return
            self.store.update_state(
                job.job_id,
                running_run_id=None,
                last_status=outcome.status,
                consecutive_errors=after.consecutive_errors,
                backoff_until=after.backoff_until,
                retry=after.retry,
            )
            if after.disable_reason is not None:  # Invariant CRON-I13
                self.store.save_job(replace(current, enabled=False, updated_at=now))
                self.store.update_state(job.job_id, disabled_reason=after.disable_reason)
                log.warning(
                    "job auto-disabled",
                    extra={"action": "disable", "job": job.job_id, "run": ctx.run_id},
                )
