"""``/api/approvals``: the pending list and decisions over HTTP, on a real gateway's approvals
service (docs/design/approvals.md; the browser panel is in test_browser.py)."""

from __future__ import annotations

import asyncio

from fencepost import read_transcript
from fencepost.runtime.agent import ApprovalRequest
from fencepost.runtime.gateway import APPROVAL_DECISION

from .conftest import WRITE
from .test_api import assert_error

ASK = ApprovalRequest("exec", "git log -1", {"argv": ["git", "log", "-1"]})


async def waiting(gw, session="ops-main", run="run-1", wait_s=300.0):
    """A tool's request, waiting in the gateway, and its id once it is listed."""
    requested = asyncio.Event()
    unsubscribe = gw.subscribe(
        lambda e: requested.set() if e["type"] == "approval_requested" else None
    )
    task = asyncio.ensure_future(gw.approvals.request(session, run, "ops", ASK, wait_s=wait_s))
    try:
        await asyncio.wait_for(requested.wait(), 5)
    finally:
        unsubscribe()
    (p,) = [p for p in gw.approvals.pending() if p.run_id == run]
    return task, p.approval_id


def decisions(gw, session="ops-main"):
    return [
        r.data["data"]
        for r in read_transcript(gw.store.session(session).path).entries
        if r.data.get("customType") == APPROVAL_DECISION
    ]


async def test_pending_requests_are_listed_with_session_run_tool_age_and_expiry(client, gw):
    assert (await client.get("/api/approvals")).json() == {"approvals": [], "max_pending": 100}
    task, approval_id = await waiting(gw)
    (row,) = (await client.get("/api/approvals")).json()["approvals"]
    assert row["approval_id"] == approval_id
    assert (row["session_id"], row["run_id"], row["agent"], row["tool"]) == (
        "ops-main",
        "run-1",
        "ops",
        "exec",
    )
    assert row["summary"] == "git log -1" and row["details"] == {"argv": ["git", "log", "-1"]}
    assert row["age_s"] >= 0 and 0 < row["expires_in_s"] <= 300
    assert row["expires_at"] > row["requested_at"]
    health = (await client.get("/api/health")).json()
    assert health["approvals"]["pending"] == 1
    await gw.approvals.withdraw_run("run-1")
    await task


async def test_a_deny_over_http_is_recorded_by_http_and_reaches_the_tool(client, gw):
    """Invariants APPROVAL-I3, APPROVAL-I7: who decided is the channel, never the body."""
    task, approval_id = await waiting(gw)
    r = await client.post(
        f"/api/approvals/{approval_id}", json={"decision": "deny", "reason": "not today"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["decision"], body["by"], body["reason"], body["recorded"]) == (
        "deny",
        "http",
        "not today",
        True,
    )
    got = await task
    assert not got.approved and got.by == "http"
    (rec,) = decisions(gw)
    assert rec["by"] == "http" and rec["decision"] == "deny" and rec["reason"] == "not today"


async def test_the_client_names_itself_in_a_header_never_as_the_gateway(client, gw):
    """Invariant APPROVAL-I7."""
    task, approval_id = await waiting(gw)
    url = f"/api/approvals/{approval_id}"
    for bad in ("timeout", "policy:unattended", "Dashboard", "cli:"):
        r = await client.post(
            url, json={"decision": "approve"}, headers={"x-fencepost-decider": bad}
        )
        assert_error(r, 422, field="X-Fencepost-Decider")
    r = await client.post(
        url, json={"decision": "approve"}, headers={"x-fencepost-decider": "dashboard"}
    )
    assert r.status_code == 200 and r.json()["by"] == "dashboard"
    assert (await task).approved
    assert decisions(gw)[0]["by"] == "dashboard"


async def test_an_unknown_id_is_404_and_a_second_decision_is_409(client, gw):
    r = await client.post("/api/approvals/ap-nothing", json={"decision": "approve"})
    assert assert_error(r, 404, field="approval_id")["code"] == "approval_not_found"
    task, approval_id = await waiting(gw)
    r = await client.post(f"/api/approvals/{approval_id}", json={"decision": "approve"})
    assert r.status_code == 200
    again = await client.post(f"/api/approvals/{approval_id}", json={"decision": "deny"})
    err = assert_error(again, 409)
    assert (err["code"], err["by"], err["approved"]) == ("approval_decided", "http", True)
    assert (await task).approved
    assert len(decisions(gw)) == 1


async def test_bad_bodies_are_refused_and_the_request_keeps_waiting(client, gw):
    task, approval_id = await waiting(gw)
    url = f"/api/approvals/{approval_id}"
    bad = await client.post(url, content=b"{nope", headers={"content-type": "application/json"})
    assert assert_error(bad, 400)["code"] == "bad_json"
    for body, field in [
        ([], "body"),
        ({}, "decision"),
        ({"decision": "yes"}, "decision"),
        ({"decision": "approve", "by": "timeout"}, "by"),
        ({"decision": "approve", "reason": 3}, "reason"),
        ({"decision": "approve", "reason": "r" * 2001}, "reason"),
    ]:
        assert_error(await client.post(url, json=body), 422, field=field)
    assert [p.approval_id for p in gw.approvals.pending()] == [approval_id]
    r = await client.post(url, content=b'{"decision":"deny"}', headers=WRITE)
    assert r.status_code == 200
    assert not (await task).approved


async def test_a_job_body_carries_its_approval_policy(client):
    """Invariant APPROVAL-I4: on_ask over HTTP as with `cron add --on-ask`."""
    body = {
        "name": "nightly",
        "agent": "ops",
        "schedule": {"kind": "every", "every": "1h"},
        "payload": {"kind": "agent_turn", "text": "check"},
        "on_ask": "wait",
    }
    job = (await client.post("/api/jobs", json=body)).json()
    assert job["on_ask"] == "wait"
    r = await client.patch(f"/api/jobs/{job['job_id']}", json={"on_ask": None})
    assert r.status_code == 200 and r.json()["on_ask"] is None
    bad = await client.patch(f"/api/jobs/{job['job_id']}", json={"on_ask": "ask"})
    assert_error(bad, 422, field="on_ask")
