"""Approvals through a real gateway on the scripted model: which wait each kind of turn gets,
and what is left of a request when its turn ends (docs/design/approvals.md). The asking tool is
tests/helpers/asking.py, offered by a plugin."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from fencepost import read_transcript, verify_transcript
from fencepost.runtime.config import AgentConfig, ApprovalsConfig, GatewayConfig, StatePaths
from fencepost.runtime.cron import EverySchedule, Payload, new_job
from fencepost.runtime.gateway import APPROVAL_DECISION, APPROVAL_REQUEST, Gateway
from tests.helpers.asking import SCRIPT, AskingPlugin


def config(**approvals) -> GatewayConfig:
    return GatewayConfig(
        agents={"ops": AgentConfig(name="ops", model="scripted/guarded", tools=("guarded",))},
        plugins=(),
        durability="buffered",
        scripts={"guarded": SCRIPT},
        approvals=ApprovalsConfig(**approvals),
    )


@pytest.fixture
async def start(tmp_path):
    gateways = []

    async def make(**approvals) -> Gateway:
        gw = Gateway(
            StatePaths(tmp_path / f"gw{len(gateways)}"),
            config(**approvals),
            plugins=[AskingPlugin()],
            load_entry_points=False,
        )
        await gw.start()
        gateways.append(gw)
        return gw

    yield make
    for gw in gateways:
        await gw.stop(grace_s=2)


def add_job(gw: Gateway, **fields):
    now = datetime.now(UTC)
    job = new_job(
        name="nightly check",
        agent="ops",
        schedule=EverySchedule(3600, anchor=now),
        payload=Payload("agent_turn", "make the marker"),
        now=now,
        target="main",
        **fields,
    )
    gw.cron.add_job(job, next_run_at=None)
    return job


def decisions(gw: Gateway, session_id: str) -> list[dict]:
    entries = read_transcript(gw.store.session(session_id).path).entries
    kinds = [r.data.get("customType") for r in entries]
    assert kinds.count(APPROVAL_REQUEST) == kinds.count(APPROVAL_DECISION)
    return [r.data["data"] for r in entries if r.data.get("customType") == APPROVAL_DECISION]


async def test_a_cron_turn_whose_policy_denies_never_waits_for_an_operator(start):
    """Invariant APPROVAL-I4: with the default policy (unattended = "deny") a cron run's call
    that needs approval is denied at once, recorded, and the run ends ok; nothing was pending."""
    gw = await start(timeout_s=3600)  # an interactive wait this long would hang the test
    seen: list[str] = []
    gw.subscribe(lambda e: seen.append(e["type"]))
    job = add_job(gw)
    began = time.monotonic()
    row = await asyncio.wait_for((await gw.scheduler.run_now(job.job_id)).wait(), 30)
    assert time.monotonic() - began < 10
    assert row.status == "ok", (row.error_kind, row.error_message)
    (dec,) = decisions(gw, row.session_id)
    assert dec["by"] == "policy:unattended" and not dec["approved"]
    assert dec["run_id"] == row.run_id
    assert "approval_requested" not in seen
    assert gw.approvals.statistics().denied_at_once == 1
    assert not (gw.specs["ops"].workspace / "marker.txt").exists()
    assert verify_transcript(gw.store.session(row.session_id).path).ok


async def test_a_job_that_may_wait_waits_its_bounded_time_and_an_operator_can_answer(start):
    """Invariant APPROVAL-I4: on_ask = "wait" waits unattended_timeout_s (not the interactive
    timeout), and the operator's approval lets the run act."""
    gw = await start(timeout_s=3600, unattended_timeout_s=45)
    job = add_job(gw, on_ask="wait")
    requested = asyncio.Event()
    gw.subscribe(lambda e: requested.set() if e["type"] == "approval_requested" else None)
    handle = await gw.scheduler.run_now(job.job_id)
    await asyncio.wait_for(requested.wait(), 30)
    (p,) = gw.approvals.pending()
    assert (p.expires_at - p.requested_at).total_seconds() == 45
    assert p.run_id == handle.run_id
    await gw.approvals.decide(p.approval_id, approved=True, by="cli:ops")
    row = await asyncio.wait_for(handle.wait(), 30)
    assert row.status == "ok"
    assert [d["by"] for d in decisions(gw, row.session_id)] == ["cli:ops"]
    assert (gw.specs["ops"].workspace / "marker.txt").exists()


async def test_a_heartbeat_is_unattended_too(start):
    """Invariant APPROVAL-I4: nobody watches a heartbeat either."""
    gw = await start(timeout_s=3600)
    result = await asyncio.wait_for(gw.heartbeat("ops"), 30)
    assert result is not None and result.ok
    assert [d["by"] for d in decisions(gw, "ops-main")] == ["policy:unattended"]


async def test_an_interactive_turn_waits_the_configured_time(start):
    gw = await start(timeout_s=120)
    requested = asyncio.Event()
    gw.subscribe(lambda e: requested.set() if e["type"] == "approval_requested" else None)
    turn = asyncio.ensure_future(gw.turn("s1", "ops", prompt="make the marker"))
    await asyncio.wait_for(requested.wait(), 30)
    (p,) = gw.approvals.pending()
    assert (p.expires_at - p.requested_at).total_seconds() == 120
    await gw.approvals.decide(p.approval_id, approved=False, by="dashboard", reason="no")
    result = await asyncio.wait_for(turn, 30)
    assert result.ok and [d["by"] for d in decisions(gw, "s1")] == ["dashboard"]


async def test_a_turn_that_times_out_while_its_call_waits_withdraws_the_request(start):
    """Invariant APPROVAL-I5: the turn's end leaves nothing pending; the request's decision is
    `cancelled`, in the transcript beside the runner's own record of the interrupted call."""
    gw = await start(timeout_s=3600)
    requested = asyncio.Event()
    gw.subscribe(lambda e: requested.set() if e["type"] == "approval_requested" else None)
    result = await asyncio.wait_for(
        gw.turn("s1", "ops", prompt="make the marker", timeout_s=1.0), 30
    )
    assert requested.is_set()
    assert result.status == "timeout"
    assert gw.approvals.pending() == []
    (dec,) = decisions(gw, "s1")
    assert dec["by"] == "cancelled" and not dec["approved"]
    assert verify_transcript(gw.store.session("s1").path).ok


async def test_stopping_the_gateway_withdraws_what_still_waits(tmp_path):
    """Invariant APPROVAL-I5: a stop leaves no request behind and records each withdrawal."""
    gw = Gateway(StatePaths(tmp_path), config(), plugins=[AskingPlugin()], load_entry_points=False)
    await gw.start()
    requested = asyncio.Event()
    gw.subscribe(lambda e: requested.set() if e["type"] == "approval_requested" else None)
    turn = gw.spawn(gw.turn("s1", "ops", prompt="make the marker"), name="asking turn")
    await asyncio.wait_for(requested.wait(), 30)
    await gw.stop(grace_s=1)
    assert turn.done()
    entries = read_transcript(str(StatePaths(tmp_path).sessions / "s1.jsonl")).entries
    (dec,) = [r.data["data"] for r in entries if r.data.get("customType") == APPROVAL_DECISION]
    assert dec["by"] == "cancelled"
