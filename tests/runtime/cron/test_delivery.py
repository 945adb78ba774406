"""Delivery after a run: a mirror record in a real transcript, and a webhook with retries."""

from __future__ import annotations

import json

import httpx2
import pytest

from fencepost import DeliveryError, SessionStore, read_transcript, verify_transcript
from fencepost.runtime.cron import (
    AtSchedule,
    Job,
    RunRecord,
    Scheduler,
    SessionMirrorDeliverer,
    WebhookDeliverer,
    parse_delivery,
)

from .conftest import T0, add_job
from .test_scheduler import at


class RecordingDeliverer:
    """Sees what the ledger says while it is being called."""

    def __init__(self, store, inner=None):
        self.store = store
        self.inner = inner
        self.seen: list[str | None] = []

    async def deliver(self, job: Job, run: RunRecord) -> None:
        self.seen.append(self.store.get_run(run.run_id).delivery_status)
        if self.inner is not None:
            await self.inner.deliver(job, run)


# Invariant CRON-I11
async def test_a_mirror_lands_in_a_real_transcript_that_verifies_and_is_recorded_cron_i11(
    store, clock, runner, tmp_path
):
    sessions = SessionStore(tmp_path / "sessions", durability="buffered")
    try:
        job = add_job(store, T0, AtSchedule(at(1)), delivery=parse_delivery("session:ops-main"))
        deliverer = RecordingDeliverer(store, SessionMirrorDeliverer(sessions))
        sched = Scheduler(store, runner, clock=clock, deliverers={"session": deliverer})
        clock.set(at(1))
        [run_id] = await sched.tick()
        await sched.wait_idle()
        assert deliverer.seen == ["pending"]  # recorded before sending
        row = store.get_run(run_id)
        assert (row.delivery_status, row.delivery_error) == ("delivered", None)
        path = sessions.session("ops-main").path
        [entry] = read_transcript(path).entries
        assert entry.data["type"] == "message"
        assert entry.data["message"]["role"] == "assistant"
        assert entry.data["message"]["content"] == [{"type": "text", "text": row.reply}]
        assert entry.data["fencepost"]["writer"] == "delivery"
        assert entry.data["fencepost"]["run_id"] == run_id
        report = verify_transcript(path)
        assert report.ok, report.problems
        assert set(report.writers) == {"delivery"}
        assert job.delivery.to == "ops-main"
    finally:
        sessions.close()


# Invariant CRON-I11
async def test_a_mirror_refused_by_the_session_protocol_is_recorded_failed_cron_i11(
    store, clock, runner, tmp_path
):
    sessions = SessionStore(tmp_path / "sessions", durability="buffered")
    try:
        await sessions.session("ops").append(
            {"type": "message", "message": {"role": "user", "content": "hi"}}, writer="delivery"
        )
        with open(sessions.session("ops").path, "ab") as f:  # an edit outside the protocol
            f.write(b'{"type":"custom","customType":"x","id":"deadbeef","parentId":null}\n')
        add_job(store, T0, AtSchedule(at(1)), delivery=parse_delivery("session:ops"))
        sched = Scheduler(
            store, runner, clock=clock, deliverers={"session": SessionMirrorDeliverer(sessions)}
        )
        clock.set(at(1))
        [run_id] = await sched.tick()
        await sched.wait_idle()
        row = store.get_run(run_id)
        assert row.status == "ok" and row.reply  # the reply stays in the ledger
        assert row.delivery_status == "failed"
        assert "session:ops" in (row.delivery_error or "")
    finally:
        sessions.close()


async def test_no_delivery_for_failed_runs_and_a_missing_deliverer_is_recorded(
    store, clock, runner
):
    from fencepost.runtime.cron import RunOutcome

    hook = parse_delivery("https://hooks.example/cron")
    a = add_job(store, T0, AtSchedule(at(1)), name="a", delivery=hook)
    b = add_job(store, T0, AtSchedule(at(1)), name="b", delivery=hook)
    runner.outcome = lambda job, ctx: (
        RunOutcome("error", error_kind="auth") if job.name == "a" else RunOutcome("ok", reply="r")
    )
    sched = Scheduler(store, runner, clock=clock)
    clock.set(at(1))
    await sched.tick()
    await sched.wait_idle()
    assert store.runs(job_id=a.job_id)[0].delivery_status is None
    rb = store.runs(job_id=b.job_id)[0]
    assert rb.delivery_status == "failed" and "no deliverer" in (rb.delivery_error or "")


def job_with_hook(store, url="https://hooks.example/cron") -> Job:
    return add_job(store, T0, AtSchedule(at(1)), delivery=parse_delivery(url))


def record(job: Job) -> RunRecord:
    return RunRecord(
        run_id="r1",
        job_id=job.job_id,
        job_name=job.name,
        scheduled_at=at(1),
        trigger="schedule",
        attempt=1,
        status="ok",
        recorded_at=at(1),
        reply="all green",
    )


async def test_a_webhook_gets_the_run_as_json_and_retries_5xx_and_connection_errors(store):
    job = job_with_hook(store)
    answers = iter(["connect", 503, 200])
    requests: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        requests.append(request)
        answer = next(answers)
        if answer == "connect":
            raise httpx2.ConnectError("refused", request=request)
        return httpx2.Response(answer)

    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    hook = WebhookDeliverer(transport=httpx2.MockTransport(handler), sleep=sleep)
    await hook.deliver(job, record(job))
    assert len(requests) == 3 and slept == [1.0, 5.0]
    body = json.loads(requests[-1].content)
    assert body["reply"] == "all green" and body["job_id"] == job.job_id
    assert requests[-1].headers["x-fencepost-run-id"] == "r1"


async def test_a_webhook_gives_up_after_bounded_attempts_or_at_once_on_4xx(store):
    job = job_with_hook(store)
    calls = []

    async def no_sleep(s: float) -> None:
        return None

    def always_500(request):
        calls.append(1)
        return httpx2.Response(500)

    hook = WebhookDeliverer(transport=httpx2.MockTransport(always_500), sleep=no_sleep)
    with pytest.raises(DeliveryError, match="after 3 attempt"):
        await hook.deliver(job, record(job))
    assert len(calls) == 3
    gone = WebhookDeliverer(
        transport=httpx2.MockTransport(lambda r: httpx2.Response(404)), sleep=no_sleep
    )
    with pytest.raises(DeliveryError, match="HTTP 404 \\(not retried\\)"):
        await gone.deliver(job, record(job))


# Invariant CRON-I11
async def test_webhook_delivery_through_the_scheduler_is_recorded_before_and_after_cron_i11(
    store, clock, runner
):
    job_with_hook(store)
    seen_during: list[str | None] = []

    def handler(request):
        run_id = request.headers["x-fencepost-run-id"]
        seen_during.append(store.get_run(run_id).delivery_status)
        return httpx2.Response(204)

    hook = WebhookDeliverer(transport=httpx2.MockTransport(handler))
    sched = Scheduler(store, runner, clock=clock, deliverers={"webhook": hook})
    clock.set(at(1))
    [run_id] = await sched.tick()
    await sched.wait_idle()
    assert seen_during == ["pending"]
    assert store.get_run(run_id).delivery_status == "delivered"
