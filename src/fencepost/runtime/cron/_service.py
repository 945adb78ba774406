"""``JobService``: the one place jobs are created and changed, for the CLI and the HTTP API.

The surfaces parse what people wrote (flags, a JSON body) into ``Job`` field values; the service
validates them with the gateway's job validator, writes through ``CronStore`` and wakes the
scheduler when one runs in this process. See docs/design/cron.md (CRON-I17).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from ._job import Job, JobValidator, Payload, edit_job, new_job
from ._schedule import (
    CronSchedule,
    Schedule,
    ScheduleKind,
    next_run_after,
    parse_cron,
    schedule_from_text,
)
from ._store import CronStore, JobState

__all__ = ["JobService"]


class JobService:
    """Create, edit, enable and disable jobs over ``store``.

    ``validator`` builds the job validator when a job is about to be stored (so a surface's
    config is read only once its own parsing has passed); None checks nothing beyond the job's
    own rules. ``wake`` (a running scheduler's ``wake``) is called once after every change the
    service stored, never for a refused one.
    """

    def __init__(
        self,
        store: CronStore | None,
        *,
        validator: Callable[[], JobValidator] | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._validator = validator
        self._wake = wake

    # ---- schedules ----------------------------------------------------------------------------

    @staticmethod
    def parse_schedule(
        kind: ScheduleKind, text: str, *, tz: str | None, now: datetime, tz_option: str = "--tz"
    ) -> Schedule:
        """A schedule from what people wrote; a zone is refused naming ``tz_option`` where it
        decides nothing (Invariant CRON-I15, ``schedule_from_text``)."""
        return schedule_from_text(kind, text, tz=tz, now=now, tz_option=tz_option)

    @staticmethod
    def rezone(current: CronSchedule, tz: str, now: datetime) -> CronSchedule:
        """A cron schedule moved to zone ``tz``, its expression and stagger kept."""
        return parse_cron(current.expr, tz, now=now, stagger_s=current.stagger_s)

    # ---- changes ------------------------------------------------------------------------------

    def build(
        self,
        *,
        name: str,
        agent: str,
        schedule: Schedule,
        payload: Payload,
        now: datetime,
        stagger_s: float | None = None,
        **fields: Any,
    ) -> Job:
        """A new job, validated; nothing is written (a refused job writes nothing, not even
        the ledger's file: the CLI opens it only after this)."""
        return new_job(
            name=name,
            agent=agent,
            schedule=schedule,
            payload=payload,
            now=now,
            validator=self._check(),
            stagger_s=stagger_s,
            **fields,
        )

    def create(self, *, now: datetime, **fields: Any) -> tuple[Job, JobState]:
        """Validate and store a new job (``build``'s arguments); its first run is the
        schedule's next slot after now."""
        return self.add(self.build(now=now, **fields), now=now)

    def add(self, job: Job, *, now: datetime) -> tuple[Job, JobState]:
        """Store a job ``build`` made and wake the scheduler."""
        # Invariant CRON-I17: validated by build, stored here, the scheduler woken here.
        self.store().add_job(job, next_run_at=next_run_after(job.schedule, now))
        self._changed()
        return job, self.store().get_state(job.job_id)

    def edit(
        self,
        job_id: str,
        *,
        now: datetime,
        stagger_s: float | None = None,
        disabled_reason: str = "disabled by user",
        **changes: Any,
    ) -> tuple[Job, JobState]:
        """Apply ``changes`` (``Job`` field values) to the job, validated again; a new schedule
        recomputes the next run from ``now``."""
        job = self.store().get_job(job_id)
        edited = edit_job(job, now=now, validator=self._check(), stagger_s=stagger_s, **changes)
        self.store().replace_job(job, edited, now, disabled_reason=disabled_reason)
        self._changed()
        return edited, self.store().get_state(job_id)

    def enable(self, job_id: str, *, now: datetime) -> tuple[Job, JobState]:
        """Enable a job: errors and backoff reset, the next run is computed from ``now``."""
        return self._set_enabled(job_id, True, now, "disabled by user")

    def disable(
        self, job_id: str, *, now: datetime, reason: str = "disabled by user"
    ) -> tuple[Job, JobState]:
        """Disable a job, recording ``reason``; an in-flight run finishes."""
        return self._set_enabled(job_id, False, now, reason)

    def _set_enabled(
        self, job_id: str, enabled: bool, now: datetime, reason: str
    ) -> tuple[Job, JobState]:
        job = self.store().get_job(job_id)
        self.store().replace_job(
            job, edit_job(job, now=now, enabled=enabled), now, disabled_reason=reason
        )
        self._changed()
        return self.store().get_job(job_id), self.store().get_state(job_id)

    def store(self) -> CronStore:
        """The ledger; a service made without one (to ``build`` a job) writes nothing."""
        if self._store is None:
            raise RuntimeError("this JobService has no store: it only builds jobs")
        return self._store

    def _check(self) -> JobValidator | None:
        return None if self._validator is None else self._validator()

    def _changed(self) -> None:
        if self._wake is not None:
            self._wake()
