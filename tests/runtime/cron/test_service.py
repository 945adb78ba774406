"""``JobService``: the one place jobs are created and changed (CRON-I17), over a real store."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from fencepost.errors import InvalidJobError, InvalidScheduleError
from fencepost.runtime.cron import (
    CronSchedule,
    CronStore,
    EverySchedule,
    Job,
    JobService,
    Payload,
    known_names_validator,
)

from .conftest import T0

SRC = Path(__file__).resolve().parents[3] / "src" / "fencepost"


class Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def wakes() -> Wakes:
    return Wakes()


@pytest.fixture
def service(store: CronStore, wakes: Wakes) -> JobService:
    return JobService(
        store,
        validator=lambda: known_names_validator(agents={"main"}, models=None),
        wake=wakes,
    )


def _create(service: JobService, **fields) -> Job:
    schedule = JobService.parse_schedule("every", "1h", tz=None, now=T0)
    job, _ = service.create(
        name="digest",
        agent=fields.pop("agent", "main"),
        schedule=schedule,
        payload=Payload("agent_turn", "summarise"),
        now=T0,
        **fields,
    )
    return job


def test_create_stores_the_job_with_its_next_run_and_wakes_once_cron_i17(
    service: JobService, store: CronStore, wakes: Wakes
) -> None:
    job = _create(service)
    stored, state = store.get_job(job.job_id), store.get_state(job.job_id)
    assert stored == job
    assert state.next_run_at == T0 + timedelta(hours=1)
    assert wakes.count == 1


def test_edit_revalidates_stores_and_wakes_once_cron_i17(
    service: JobService, store: CronStore, wakes: Wakes
) -> None:
    job = _create(service)
    later = T0 + timedelta(minutes=10)
    new = JobService.parse_schedule("cron", "0 7 * * *", tz="Europe/Berlin", now=later)
    edited, state = service.edit(job.job_id, now=later, name="morning", schedule=new)
    assert store.get_job(job.job_id) == edited
    assert edited.name == "morning" and isinstance(edited.schedule, CronSchedule)
    assert state.next_run_at is not None and state.next_run_at > later
    assert wakes.count == 2
    with pytest.raises(InvalidJobError) as err:
        service.edit(job.job_id, now=later, agent="ghost")
    assert err.value.key == "agent"
    assert store.get_job(job.job_id) == edited  # nothing written
    assert wakes.count == 2  # a refused change wakes nothing


def test_disable_then_enable_record_the_reason_and_wake_each_time_cron_i17(
    service: JobService, store: CronStore, wakes: Wakes
) -> None:
    job = _create(service)
    off, state = service.disable(job.job_id, now=T0, reason="holiday")
    assert not off.enabled and state.disabled_reason == "holiday"
    on, state = service.enable(job.job_id, now=T0 + timedelta(minutes=5))
    assert on.enabled and state.disabled_reason is None
    assert state.next_run_at is not None and state.next_run_at > T0 + timedelta(minutes=5)
    assert store.get_job(job.job_id).enabled
    assert wakes.count == 3


def test_a_bad_schedule_is_refused_naming_the_key_and_nothing_is_written_cron_i17(
    service: JobService, store: CronStore, wakes: Wakes
) -> None:
    with pytest.raises(InvalidScheduleError) as err:
        JobService.parse_schedule("every", "1h", tz="Europe/Berlin", now=T0, tz_option="tz")
    assert err.value.key == "tz" and "tz 'Europe/Berlin'" in str(err.value)
    with pytest.raises(InvalidScheduleError) as err:
        JobService.parse_schedule("cron", "61 * * * *", tz=None, now=T0)
    assert err.value.key is not None
    with pytest.raises(InvalidJobError) as jerr:
        _create(service, agent="ghost")  # the validator refuses before anything is stored
    assert jerr.value.key == "agent"
    assert store.list_jobs() == []
    assert wakes.count == 0


def test_rezone_keeps_the_expression_and_stagger() -> None:
    cron = JobService.parse_schedule("cron", "0 7 * * *", tz=None, now=T0)
    assert isinstance(cron, CronSchedule)
    moved = JobService.rezone(cron, "Europe/Berlin", T0)
    assert (moved.expr, moved.tz, moved.stagger_s) == (cron.expr, "Europe/Berlin", cron.stagger_s)
    assert isinstance(JobService.parse_schedule("every", "30m", tz=None, now=T0), EverySchedule)


def test_a_service_without_wake_or_validator_still_stores_cron_i17(store: CronStore) -> None:
    job = _create(JobService(store), agent="anyone")
    assert store.get_job(job.job_id).agent == "anyone"


def test_the_surfaces_create_and_change_jobs_only_through_the_service_cron_i17() -> None:
    """No CLI command or HTTP handler builds, edits or writes a job itself."""
    offenders = []
    for path in (SRC / "surface").rglob("*.py"):
        text = path.read_text()
        for call in ("new_job(", "edit_job(", ".add_job(", ".replace_job("):
            if call in text:
                offenders.append(f"{path.relative_to(SRC)}: {call}")
    assert offenders == []
