"""The approvals service on a real session store: requests and decisions as transcript records,
timeouts, unattended denials, withdrawals, conflicts and bounds (docs/design/approvals.md).

Time is the one fake: a request's wait ends when the test fires its timer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from fencepost import (
    ApprovalDecidedError,
    ApprovalNotFoundError,
    ConfigError,
    OutsideProtocolChangeError,
    SessionStore,
    read_transcript,
    verify_transcript,
)
from fencepost.runtime.agent import ApprovalRequest
from fencepost.runtime.gateway import (
    APPROVAL_DECISION,
    APPROVAL_REQUEST,
    ApprovalService,
    _approvals,
    check_decider,
)

T0 = datetime(2026, 3, 29, 7, 0, tzinfo=UTC)
ASK = ApprovalRequest("exec", "git log -1", {"argv": ["git", "log", "-1"], "cwd": "."})


class Timer:
    """The requests' clock: each wait ends only when the test fires it."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.fired = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        await self.fired.wait()

    def fire(self) -> None:
        self.fired.set()


class Harness:
    def __init__(self, root, **kw) -> None:
        self.store = SessionStore(root, durability="buffered")
        self.timer = Timer()
        self.events: list[dict] = []
        self.requested = asyncio.Event()
        self.now = T0
        self.seen: set[str] = set()
        self.svc = ApprovalService(
            self.store,
            now=lambda: self.now,
            publish=self._publish,
            sleep=self.timer.sleep,
            **kw,
        )

    def _publish(self, event: dict) -> None:
        self.events.append(event)
        if event["type"] == "approval_requested":
            self.requested.set()

    def ask(self, request=ASK, *, session="s1", run="run-1", wait_s=300.0) -> asyncio.Task:
        return asyncio.ensure_future(self.svc.request(session, run, "ops", request, wait_s=wait_s))

    async def pending_one(self):
        await asyncio.wait_for(self.requested.wait(), 5)
        self.requested.clear()
        (p,) = [p for p in self.svc.pending() if p.approval_id not in self.seen]
        self.seen.add(p.approval_id)
        return p

    def records(self, session="s1"):
        path = self.store.session(session).path
        return [
            (r.data["customType"], r.data["data"], r.stamp)
            for r in read_transcript(path).entries
            if r.data.get("type") == "custom"
        ]


@pytest.fixture
async def h(tmp_path):
    harness = Harness(tmp_path)
    yield harness
    await harness.svc.aclose()
    harness.store.close()


async def test_an_approved_request_is_recorded_before_it_is_listed_and_the_decision_with_who(h):
    """Invariants APPROVAL-I1, APPROVAL-I3, APPROVAL-I7: the request is in the transcript once
    it is listed; the approval, who gave it and when are recorded before the tool hears it."""
    asking = h.ask()
    p = await h.pending_one()
    (rec,) = h.records()
    assert rec[0] == APPROVAL_REQUEST
    assert rec[1]["approval_id"] == p.approval_id and rec[1]["summary"] == "git log -1"
    assert rec[1]["details"] == {"argv": ["git", "log", "-1"], "cwd": "."}
    assert rec[1]["run_id"] == "run-1" and rec[1]["agent"] == "ops" and rec[1]["tool"] == "exec"
    assert rec[1]["expires_at"] == (T0 + timedelta(seconds=300)).isoformat(timespec="milliseconds")
    assert rec[2]["writer"] == "approval" and rec[2]["run_id"] == "run-1"
    assert p.to_json(T0 + timedelta(seconds=10))["age_s"] == 10.0
    assert not asking.done()

    h.now = T0 + timedelta(seconds=42)
    decided = await h.svc.decide(p.approval_id, approved=True, by="cli:alice", reason="fine")
    assert decided.approved and decided.by == "cli:alice" and decided.recorded
    assert (await asking).approved
    _, decision = h.records()
    assert decision[0] == APPROVAL_DECISION
    assert decision[1] == {
        "approval_id": p.approval_id,
        "run_id": "run-1",
        "agent": "ops",
        "tool": "exec",
        "decision": "approve",
        "approved": True,
        "by": "cli:alice",
        "reason": "fine",
        "decided_at": (T0 + timedelta(seconds=42)).isoformat(timespec="milliseconds"),
    }
    assert h.svc.pending() == []
    assert [e["type"] for e in h.events] == ["approval_requested", "approval_decided"]
    assert verify_transcript(h.store.session("s1").path).ok


async def test_a_denial_reaches_the_tool_with_its_reason(h):
    asking = h.ask()
    p = await h.pending_one()
    await h.svc.decide(p.approval_id, approved=False, by="http", reason="not on prod")
    got = await asking
    assert (got.approved, got.by, got.reason) == (False, "http", "not on prod")
    assert h.records()[-1][1]["decision"] == "deny"
    assert h.svc.statistics().denied == 1


async def test_an_unanswered_request_is_denied_by_timeout_and_recorded(h):
    """Invariant APPROVAL-I2."""
    asking = h.ask(wait_s=120)
    p = await h.pending_one()
    assert h.timer.waits == [120]
    h.timer.fire()
    got = await asking
    assert not got.approved and got.by == "timeout" and "120 s" in got.reason
    assert h.records()[-1][1]["by"] == "timeout"
    with pytest.raises(ApprovalDecidedError, match="denied by timeout"):
        await h.svc.decide(p.approval_id, approved=True, by="http")
    assert h.svc.statistics().timed_out == 1


async def test_an_unattended_request_is_denied_at_once_without_waiting_and_both_are_recorded(h):
    """Invariant APPROVAL-I4: wait 0 (a cron job whose policy denies) never waits."""
    got = await asyncio.wait_for(h.svc.request("s1", "cron-1", "ops", ASK, wait_s=0), 5)
    assert not got.approved and got.by == "policy:unattended"
    assert h.timer.waits == [] and h.svc.pending() == []
    (req, dec) = h.records()
    assert req[0] == APPROVAL_REQUEST and dec[0] == APPROVAL_DECISION
    assert dec[1]["by"] == "policy:unattended" and req[1]["approval_id"] == dec[1]["approval_id"]
    assert h.svc.statistics().denied_at_once == 1


async def test_deciding_an_unknown_id_is_not_found(h):
    with pytest.raises(ApprovalNotFoundError, match="approvals list"):
        await h.svc.decide("ap-0000000000000000", approved=True, by="http")
    with pytest.raises(ApprovalNotFoundError):
        h.svc.get("ap-nope")


async def test_deciding_twice_is_a_conflict_and_changes_nothing(h):
    """Invariant APPROVAL-I2: one decision per request; the second is refused."""
    asking = h.ask()
    p = await h.pending_one()
    await h.svc.decide(p.approval_id, approved=False, by="dashboard")
    with pytest.raises(ApprovalDecidedError, match="denied by dashboard") as err:
        await h.svc.decide(p.approval_id, approved=True, by="cli:bob")
    assert err.value.by == "dashboard" and not err.value.approved
    assert not (await asking).approved
    assert [r[0] for r in h.records()] == [APPROVAL_REQUEST, APPROVAL_DECISION]


async def test_two_operators_at_once_one_wins_and_the_other_is_a_conflict(h):
    """Invariant APPROVAL-I2: the first decider wins, even while its record is being written."""
    asking = h.ask()
    p = await h.pending_one()
    first = asyncio.ensure_future(h.svc.decide(p.approval_id, approved=True, by="cli:alice"))
    second = asyncio.ensure_future(h.svc.decide(p.approval_id, approved=False, by="http"))
    done = await asyncio.gather(first, second, return_exceptions=True)
    assert done[0].approved and isinstance(done[1], ApprovalDecidedError)
    assert (await asking).approved
    assert [r[1]["by"] for r in h.records()[1:]] == ["cli:alice"]


async def test_an_operator_decision_and_the_timeout_together_the_operator_wins_once(h):
    """Invariant APPROVAL-I2: the timer firing while the decision is recorded changes nothing."""
    asking = h.ask()
    p = await h.pending_one()
    h.timer.fire()
    decided = await h.svc.decide(p.approval_id, approved=True, by="cli:alice")
    assert decided.approved and (await asking).approved
    assert [r[1]["by"] for r in h.records()[1:]] == ["cli:alice"]


async def test_cancelling_the_asker_withdraws_its_request_as_cancelled(h):
    """Invariant APPROVAL-I5."""
    asking = h.ask()
    p = await h.pending_one()
    asking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asking
    await h.svc.aclose()  # waits for the withdrawal's record
    assert h.svc.pending() == []
    assert h.records()[-1][1]["by"] == "cancelled"
    with pytest.raises(ApprovalDecidedError):
        await h.svc.decide(p.approval_id, approved=True, by="http")


async def test_the_end_of_a_run_withdraws_only_its_own_requests(h):
    """Invariant APPROVAL-I5."""
    mine = h.ask(run="run-1")
    await h.pending_one()
    other = h.ask(run="run-2", session="s2")
    kept = await h.pending_one()
    assert await h.svc.withdraw_run("run-1") == 1
    got = await mine
    assert not got.approved and got.by == "cancelled" and got.reason == "the run ended"
    assert [p.approval_id for p in h.svc.pending()] == [kept.approval_id]
    assert h.records("s1")[-1][1]["by"] == "cancelled"
    await h.svc.decide(kept.approval_id, approved=True, by="http")
    assert (await other).approved


async def test_past_max_pending_a_request_is_denied_at_once(tmp_path):
    """Invariant APPROVAL-I6: what waits is bounded; the request past the bound is recorded
    and denied without waiting."""
    h = Harness(tmp_path, max_pending=2)
    waiting = []
    for i in range(2):
        waiting.append(h.ask(session=f"s{i}", run=f"r{i}"))
        await h.pending_one()
    got = await h.svc.request("s9", "r9", "ops", ASK, wait_s=300)
    assert not got.approved and got.by == "policy:max-pending"
    assert h.records("s9")[-1][1]["by"] == "policy:max-pending"
    assert len(h.svc.pending()) == 2 and h.svc.statistics().max_pending == 2
    await h.svc.aclose()
    for t in waiting:
        assert (await t).by == "cancelled"
    h.store.close()


async def test_decided_ids_are_remembered_up_to_a_bound_then_forgotten(h, monkeypatch):
    """Invariant APPROVAL-I6: the memory of decided ids does not grow without end."""
    monkeypatch.setattr(_approvals, "DECIDED_MEMORY", 3)
    ids = []
    for i in range(5):
        got = await h.svc.request("s1", f"r{i}", "ops", ASK, wait_s=0)
        ids.append(got.approval_id)
    assert len(h.svc._decided) == 3
    with pytest.raises(ApprovalNotFoundError):
        await h.svc.decide(ids[0], approved=True, by="http")
    with pytest.raises(ApprovalDecidedError):
        await h.svc.decide(ids[-1], approved=True, by="http")


async def test_a_decision_that_cannot_be_recorded_is_a_denial_and_the_caller_hears_why(h):
    """Invariant APPROVAL-I3: no approval without its record. A transcript changed outside the
    protocol refuses the decision record, so the tool is denied and the operator told."""
    asking = h.ask()
    p = await h.pending_one()
    with open(h.store.session("s1").path, "ab") as f:
        f.write(b'{"type":"custom","customType":"edited by hand"}\n')
    with pytest.raises(OutsideProtocolChangeError):
        await h.svc.decide(p.approval_id, approved=True, by="cli:alice")
    got = await asking
    assert not got.approved and got.by == "policy:unrecorded" and not got.recorded
    assert "could not be recorded" in got.reason
    assert h.svc.statistics().unrecorded == 1


async def test_a_request_that_cannot_be_recorded_is_denied_and_never_listed(h):
    """Invariant APPROVAL-I1."""
    await h.store.session("s1").append({"type": "custom", "customType": "x"}, writer="operator")
    with open(h.store.session("s1").path, "ab") as f:
        f.write(b'{"type":"custom","customType":"edited by hand"}\n')
    got = await asyncio.wait_for(h.svc.request("s1", "r", "ops", ASK, wait_s=300), 5)
    assert not got.approved and got.by == "policy:unrecorded"
    assert h.svc.pending() == [] and h.timer.waits == []


async def test_a_request_too_large_to_check_is_denied_at_once_never_cut(h):
    long = ApprovalRequest("exec", "rm -rf " + "x" * 3000)
    got = await h.svc.request("s1", "r", "ops", long, wait_s=300)
    assert not got.approved and got.by == "policy:too-large"
    big = ApprovalRequest("exec", "cat", {"argv": ["cat", "y" * 70_000]})
    got = await h.svc.request("s1", "r", "ops", big, wait_s=300)
    assert got.by == "policy:too-large" and h.timer.waits == []


async def test_operators_decide_under_channel_names_and_never_as_the_gateway(h):
    """Invariant APPROVAL-I7: the names of the gateway's own decisions are not an operator's."""
    for ok in ("http", "dashboard", "cli:alice", "cli:svc_ops.2", "chat:bob@example.org"):
        assert check_decider(ok) == ok
    for bad in ("timeout", "cancelled", "policy:unattended", "policy", "", "CLI:x", "cli:", 7):
        with pytest.raises(ConfigError):
            check_decider(bad)
    asking = h.ask()
    p = await h.pending_one()
    with pytest.raises(ConfigError):
        await h.svc.decide(p.approval_id, approved=True, by="timeout")
    with pytest.raises(ConfigError):
        await h.svc.decide(p.approval_id, approved=True, by="http", reason="r" * 5000)
    assert [x.approval_id for x in h.svc.pending()] == [p.approval_id]  # still waiting
    h.timer.fire()
    assert (await asking).by == "timeout"


async def test_a_summary_that_is_not_valid_text_is_recorded_as_text(h):
    odd = ApprovalRequest("exec", "echo \udcff", {"path": object()})
    asking = h.ask(odd)
    p = await h.pending_one()
    assert p.summary == "echo ?" and isinstance(p.details["path"], str)
    await h.svc.decide(p.approval_id, approved=False, by="http")
    await asking
    assert verify_transcript(h.store.session("s1").path).ok


async def test_the_approver_a_tool_calls_gives_the_decision(h):
    approve = h.svc.approver("s1", "run-1", "ops", wait_s=0)
    decision = await approve(ASK)
    assert (decision.approved, decision.by) == (False, "policy:unattended")
    with pytest.raises(ValueError):
        h.svc.approver("s1", "run-1", "ops", wait_s=-1)
    assert "pending=0" in repr(h.svc)
