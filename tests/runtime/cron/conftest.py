"""Fixtures for the cron tests: a real SQLite store in tmp_path, a manual clock, a fake runner."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from fencepost.runtime.cron import (
    CronStore,
    Job,
    ManualClock,
    Payload,
    RunContext,
    RunOutcome,
    new_job,
    next_run_after,
    parse_cron,
)

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


class FakeRunner:
    """The injected ``execute``: records calls; runs block on ``gate`` when it is set up."""

    def __init__(self) -> None:
        self.calls: list[tuple[Job, RunContext]] = []
        self.outcome: Callable[[Job, RunContext], RunOutcome] = lambda job, ctx: RunOutcome(
            "ok", reply=f"reply to {job.payload.text}", model="scripted/echo"
        )
        self.gate: asyncio.Event | None = None
        self.active = 0
        self.max_active = 0

    async def __call__(self, job: Job, ctx: RunContext) -> RunOutcome:
        self.calls.append((job, ctx))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.gate is not None:
                await self.gate.wait()
            return self.outcome(job, ctx)
        finally:
            self.active -= 1


@pytest.fixture
def store(tmp_path):
    s = CronStore(tmp_path / "cron.db")
    yield s
    s.close()


@pytest.fixture
def clock():
    return ManualClock(T0)


@pytest.fixture
def runner():
    return FakeRunner()


def add_cron_job(
    store: CronStore,
    now: datetime,
    expr: str = "0 7 * * *",
    tz: str = "UTC",
    *,
    name: str = "daily",
    **fields,
) -> Job:
    job = new_job(
        name=name,
        agent="ops",
        schedule=parse_cron(expr, tz, now=now),
        payload=Payload("agent_turn", "daily ops review"),
        now=now,
        stagger_s=fields.pop("stagger_s", 0),
        **fields,
    )
    store.add_job(job, next_run_at=next_run_after(job.schedule, now))
    return job


def add_job(store: CronStore, now: datetime, schedule, *, name: str = "job", **fields) -> Job:
    job = new_job(
        name=name,
        agent="ops",
        schedule=schedule,
        payload=Payload("agent_turn", name),
        now=now,
        **fields,
    )
    store.add_job(job, next_run_at=next_run_after(job.schedule, now))
    return job
