"""Approvals: tool calls an ``ask`` policy holds until an operator decides (docs/design/
approvals.md).

A tool asks through the ``Approver`` its ``ToolContext`` carries; the gateway builds that
approver with ``ApprovalService.approver`` for each turn, with the wait its policy gives (an
interactive turn waits ``[approvals] timeout_s``; a cron or heartbeat turn is denied at once or
waits a bounded time). The request and its decision are cooperative ``custom`` records in the
session's transcript (writer ``approval``); while a request waits it is listed by
``pending()`` and decided by ``decide()``, which the CLI, the HTTP API and the dashboard call.
Nothing the model writes reaches ``decide``: the decision comes from an operator's channel, the
request's timeout, its run's end, or the policy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ...core import SessionStore, custom
from ...errors import ApprovalDecidedError, ApprovalNotFoundError, ConfigError
from ..agent import ApprovalDecision, ApprovalRequest, Approver

__all__ = [
    "APPROVAL_DECISION",
    "APPROVAL_REQUEST",
    "APPROVAL_WRITER",
    "ApprovalService",
    "ApprovalStatistics",
    "DecidedApproval",
    "PendingApproval",
    "check_decider",
]

log = logging.getLogger("fencepost.approvals")

#: customType of the record that says a tool call waits for an operator.
APPROVAL_REQUEST = "fencepost.approval-request"
#: customType of the record that says how a request was decided, by whom and when.
APPROVAL_DECISION = "fencepost.approval-decision"
#: The writer kind of both records (a cooperative writer: no lease).
APPROVAL_WRITER = "approval"

#: What an operator reads in one line; a tool whose summary is longer is denied, not cut, so
#: nobody approves a command whose end they did not see.
MAX_SUMMARY_CHARS = 2000
#: The request's details as JSON (for exec: argv, cwd): far past any command line, far inside
#: the transcript's record limit.
MAX_DETAILS_BYTES = 64 * 1024
#: An operator's reason.
MAX_REASON_CHARS = 2000
#: Decided ids remembered, so a second decision is a conflict (not "unknown") for a while;
#: older ones are forgotten and answer "not found" (memory stays bounded, APPROVAL-I6).
DECIDED_MEMORY = 1024

#: Who may decide through ``decide``: a channel (``http``, ``dashboard``) or ``<channel>:<name>``
#: (``cli:alice``). The service's own deciders (``timeout``, ``cancelled``, ``policy:<why>``)
#: are refused, so no channel passes itself off as the policy.
_DECIDER = re.compile(r"^[a-z][a-z0-9-]{0,31}(?::[A-Za-z0-9._@-]{1,64})?$")
_RESERVED = frozenset({"timeout", "cancelled", "policy"})


def check_decider(by: object) -> str:
    """``by`` if an operator's channel may decide under that name, else a ConfigError (key
    ``by``). Pure."""
    if not isinstance(by, str) or not _DECIDER.fullmatch(by):
        raise ConfigError(
            "who decides must be a channel name like 'http', 'dashboard' or 'cli:<user>' "
            "(lowercase letters, digits and '-', then ':' and up to 64 of letters, digits, "
            "'.', '_', '@', '-')",
            key="by",
        )
    if by.split(":")[0] in _RESERVED:
        raise ConfigError(f"{by!r} is reserved for the gateway's own decisions", key="by")
    return by


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class PendingApproval:
    """A request waiting for an operator, as the operator sees it."""

    approval_id: str
    session_id: str
    run_id: str
    agent: str
    tool: str
    summary: str
    details: Mapping[str, Any]
    requested_at: datetime
    expires_at: datetime

    def to_json(self, now: datetime | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "approval_id": self.approval_id,
            "session_id": self.session_id,
            "run_id": self.run_id,
            "agent": self.agent,
            "tool": self.tool,
            "summary": self.summary,
            "details": dict(self.details),
            "requested_at": _iso(self.requested_at),
            "expires_at": _iso(self.expires_at),
        }
        if now is not None:
            out["age_s"] = round(max(0.0, (now - self.requested_at).total_seconds()), 3)
            out["expires_in_s"] = round(max(0.0, (self.expires_at - now).total_seconds()), 3)
        return out

    def record(self) -> dict[str, Any]:
        """The transcript record of the request."""
        data = self.to_json()
        del data["session_id"]  # the transcript is the session
        return custom(APPROVAL_REQUEST, data)


@dataclass(frozen=True)
class DecidedApproval:
    """How a request ended. ``recorded`` is False when its decision record could not be
    written; an approval that is not recorded is never given (APPROVAL-I3)."""

    approval_id: str
    session_id: str
    run_id: str
    agent: str
    tool: str
    approved: bool
    by: str
    reason: str
    decided_at: datetime
    recorded: bool = True

    @property
    def decision(self) -> ApprovalDecision:
        return ApprovalDecision(self.approved, self.by, self.reason)

    def to_json(self) -> dict[str, Any]:
        return {
            "approval_id": self.approval_id,
            "session_id": self.session_id,
            "run_id": self.run_id,
            "agent": self.agent,
            "tool": self.tool,
            "decision": "approve" if self.approved else "deny",
            "approved": self.approved,
            "by": self.by,
            "reason": self.reason,
            "decided_at": _iso(self.decided_at),
            "recorded": self.recorded,
        }

    def record(self) -> dict[str, Any]:
        data = self.to_json()
        del data["session_id"], data["recorded"]
        return custom(APPROVAL_DECISION, data)


@dataclass(frozen=True)
class ApprovalStatistics:
    pending: int
    max_pending: int
    requested: int
    approved: int
    denied: int  # by an operator
    timed_out: int
    withdrawn: int  # the run ended, was cancelled, or the gateway stopped
    denied_at_once: int  # by the policy: unattended, too many pending, too large
    unrecorded: int  # decisions whose record could not be written (each a denial)


@dataclass
class _Entry:
    request: PendingApproval
    future: asyncio.Future[DecidedApproval]
    #: The decision being recorded (set once, synchronously: the first decider wins).
    proposed: ApprovalDecision | None = None
    settling: asyncio.Task[tuple[DecidedApproval, BaseException | None]] | None = None


Sleep = Callable[[float], Awaitable[object]]


class ApprovalService:
    """The gateway's approval requests: recorded, listed, decided, bounded.

    ``now`` gives the wall-clock times written into records; ``sleep`` is how a request waits
    out its time (injectable, like every clock here); ``publish`` gets a JSON-able event when a
    request starts waiting or is decided (the gateway's live feed).
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        now: Callable[[], datetime],
        max_pending: int = 100,
        publish: Callable[[dict[str, Any]], None] | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.store = store
        self.max_pending = max_pending
        self._now = now
        self._publish = publish or (lambda event: None)
        self._sleep = sleep
        self._pending: dict[str, _Entry] = {}
        self._reserved = 0  # requests whose record is being written (they count toward the cap)
        self._decided: OrderedDict[str, DecidedApproval] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._counts = dict.fromkeys(
            ["requested", "approved", "denied", "timed_out", "withdrawn", "at_once", "unrecorded"],
            0,
        )

    def __repr__(self) -> str:
        return f"<ApprovalService pending={len(self._pending)} max_pending={self.max_pending}>"

    def statistics(self) -> ApprovalStatistics:
        c = self._counts
        return ApprovalStatistics(
            pending=len(self._pending),
            max_pending=self.max_pending,
            requested=c["requested"],
            approved=c["approved"],
            denied=c["denied"],
            timed_out=c["timed_out"],
            withdrawn=c["withdrawn"],
            denied_at_once=c["at_once"],
            unrecorded=c["unrecorded"],
        )

    # ---- reading --------------------------------------------------------------------------

    def pending(self) -> list[PendingApproval]:
        """Requests waiting for an operator, oldest first (none being decided)."""
        out = [e.request for e in self._pending.values() if e.proposed is None]
        return sorted(out, key=lambda p: (p.requested_at, p.approval_id))

    def get(self, approval_id: str) -> PendingApproval:
        entry = self._pending.get(approval_id)
        if entry is None:
            raise ApprovalNotFoundError(approval_id)
        return entry.request

    # ---- asking ---------------------------------------------------------------------------

    def approver(self, session_id: str, run_id: str, agent: str, *, wait_s: float) -> Approver:
        """The ``Approver`` for the tools of one run: each request waits at most ``wait_s``
        seconds (0: denied at once, by ``policy:unattended``)."""
        if wait_s < 0:
            raise ValueError("wait_s must be 0 or more")

        async def approve(request: ApprovalRequest) -> ApprovalDecision:
            decided = await self.request(session_id, run_id, agent, request, wait_s=wait_s)
            return decided.decision

        return approve

    async def request(
        self,
        session_id: str,
        run_id: str,
        agent: str,
        request: ApprovalRequest,
        *,
        wait_s: float,
    ) -> DecidedApproval:
        """Record ``request``, wait for its decision (at most ``wait_s``), record that, and
        return it. Never raises for a refusal: a request that cannot wait, cannot be recorded
        or is not answered is a denial. Cancellation propagates (the request is withdrawn)."""
        now = self._now()
        summary, details, too_large = _normalized(request)
        pending = PendingApproval(
            approval_id=f"ap-{secrets.token_hex(8)}",
            session_id=session_id,
            run_id=run_id,
            agent=agent,
            tool=str(request.tool),
            summary=summary,
            details=details,
            requested_at=now,
            expires_at=now + timedelta(seconds=wait_s),
        )
        self._counts["requested"] += 1
        at_once = self._refusal(wait_s, too_large)
        if at_once is not None:
            # Invariant APPROVAL-I4: a request that may not wait is denied without waiting, and
            # both records are still written (one batch).
            return await self._deny_at_once(pending, at_once)
        self._reserved += 1
        write = asyncio.ensure_future(self._append(pending, [pending.record()]))
        try:
            # Invariant APPROVAL-I1: a request is listed (and so decidable) only once its
            # record is in the transcript.
            error = await asyncio.shield(write)
        except asyncio.CancelledError:
            self._reserved -= 1
            self._spawn(self._cancelled_while_recording(write, pending), name="approval cancel")
            raise
        self._reserved -= 1
        if error is not None:
            self._counts["unrecorded"] += 1
            return self._unrecorded(pending, "policy:unrecorded", error)
        entry = _Entry(pending, asyncio.get_running_loop().create_future())
        self._pending[pending.approval_id] = entry
        log.info(
            "approval %s requested: %s: %s",
            pending.approval_id,
            pending.tool,
            pending.summary,
            extra={"action": "approval", "session": session_id, "run": run_id},
        )
        self._publish({"type": "approval_requested", **pending.to_json(now)})
        return await self._wait(entry, wait_s)

    def _refusal(self, wait_s: float, too_large: str | None) -> ApprovalDecision | None:
        if self._closed:
            return ApprovalDecision(False, "policy:stopping", "the gateway is stopping")
        if too_large is not None:
            return ApprovalDecision(False, "policy:too-large", too_large)
        if wait_s <= 0:
            return ApprovalDecision(
                False,
                "policy:unattended",
                "this run is unattended and its policy denies calls that need approval",
            )
        if len(self._pending) + self._reserved >= self.max_pending:
            # Invariant APPROVAL-I6: the cap bounds what waits; past it, a request is denied.
            return ApprovalDecision(
                False,
                "policy:max-pending",
                f"{self.max_pending} approval requests are already waiting "
                "([approvals] max_pending)",
            )
        return None

    async def _deny_at_once(
        self, pending: PendingApproval, decision: ApprovalDecision
    ) -> DecidedApproval:
        self._counts["at_once"] += 1
        decided = self._decided_from(pending, decision)
        error = await asyncio.shield(
            asyncio.ensure_future(self._append(pending, [pending.record(), decided.record()]))
        )
        if error is not None:
            self._counts["unrecorded"] += 1
            decided = self._unrecorded(pending, decision.by, error)
        self._remember(decided)
        log.info(
            "approval %s denied at once by %s: %s",
            pending.approval_id,
            decision.by,
            pending.summary,
            extra={"action": "approval", "session": pending.session_id, "run": pending.run_id},
        )
        return decided

    async def _wait(self, entry: _Entry, wait_s: float) -> DecidedApproval:
        timer: asyncio.Future[Any] = asyncio.ensure_future(self._sleep(wait_s))
        waits: set[asyncio.Future[Any]] = {entry.future, timer}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # Invariant APPROVAL-I5: a withdrawn request is denied by "cancelled", recorded if
            # the transcript still takes it; the caller's cancellation goes on.
            self._start(entry, ApprovalDecision(False, "cancelled", "the run was cancelled"))
            raise
        finally:
            timer.cancel()
        if not entry.future.done():
            # Invariant APPROVAL-I2: unanswered in time is denied, by "timeout". An operator's
            # decision being recorded right now wins (the first decider does).
            self._start(
                entry,
                ApprovalDecision(False, "timeout", f"no decision within {wait_s:g} s"),
            )
        return await asyncio.shield(entry.future)

    # ---- deciding -------------------------------------------------------------------------

    async def decide(
        self, approval_id: str, *, approved: bool, by: str, reason: str = ""
    ) -> DecidedApproval:
        """An operator's decision (``by``: their channel, ``check_decider``), recorded before
        it is returned and before the tool sees it.

        ApprovalNotFoundError: no such request waits (never asked, or decided long ago);
        ApprovalDecidedError: it was decided already (a second decision changes nothing). If
        the decision record cannot be written, the request is denied and the write's error is
        raised (an approval is given only once recorded, APPROVAL-I3)."""
        check_decider(by)
        if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
            raise ConfigError(f"reason must be text of at most {MAX_REASON_CHARS} characters")
        reason = reason.encode("utf-8", "replace").decode("utf-8")
        entry = self._pending.get(approval_id)
        if entry is None:
            past = self._decided.get(approval_id)
            if past is not None:
                raise ApprovalDecidedError(approval_id, approved=past.approved, by=past.by)
            raise ApprovalNotFoundError(approval_id)
        task = self._start(entry, ApprovalDecision(approved, by, reason))
        if task is None:
            assert entry.proposed is not None
            raise ApprovalDecidedError(
                approval_id, approved=entry.proposed.approved, by=entry.proposed.by
            )
        decided, error = await asyncio.shield(task)
        if error is not None:
            raise error
        return decided

    async def withdraw_run(self, run_id: str, reason: str = "the run ended") -> int:
        """Deny (by ``cancelled``) every request of ``run_id`` still waiting, and wait until
        their decisions are recorded or found unwritable. Returns how many were withdrawn."""
        tasks = [
            t
            for e in list(self._pending.values())
            if e.request.run_id == run_id
            and (t := self._start(e, ApprovalDecision(False, "cancelled", reason))) is not None
        ]
        settling = [e.settling for e in self._pending.values() if e.request.run_id == run_id]
        waits = [t for t in {*tasks, *settling} if t is not None]
        if waits:
            await asyncio.shield(asyncio.gather(*waits))
        return len(tasks)

    async def aclose(self) -> None:
        """Withdraw every waiting request (the gateway stops) and wait for the records."""
        self._closed = True
        for entry in list(self._pending.values()):
            self._start(entry, ApprovalDecision(False, "cancelled", "the gateway stopped"))
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ---- settling: the one place a request is decided ---------------------------------------

    def _start(
        self, entry: _Entry, decision: ApprovalDecision
    ) -> asyncio.Task[tuple[DecidedApproval, BaseException | None]] | None:
        """Begin recording ``decision`` for ``entry``, or None when a decision came first.
        Synchronous up to the task's creation: exactly one decider wins (APPROVAL-I3)."""
        if entry.proposed is not None:
            return None
        entry.proposed = decision
        entry.settling = self._spawn(self._settle(entry, decision), name="approval decision")
        return entry.settling

    async def _settle(
        self, entry: _Entry, decision: ApprovalDecision
    ) -> tuple[DecidedApproval, BaseException | None]:
        pending = entry.request
        decided = self._decided_from(pending, decision)
        error = await self._append(pending, [decided.record()])
        if error is not None:
            # Invariant APPROVAL-I3: what is not recorded is not approved.
            self._counts["unrecorded"] += 1
            decided = self._unrecorded(pending, decision.by, error)
        kind = {"timeout": "timed_out", "cancelled": "withdrawn"}.get(decision.by)
        self._counts[kind or ("approved" if decided.approved else "denied")] += 1
        del self._pending[pending.approval_id]
        self._remember(decided)
        entry.future.set_result(decided)
        log.info(
            "approval %s %s by %s%s",
            pending.approval_id,
            "approved" if decided.approved else "denied",
            decided.by,
            "" if decided.recorded else " (not recorded)",
            extra={"action": "approval", "session": pending.session_id, "run": pending.run_id},
        )
        self._publish(
            {
                "type": "approval_decided",
                "approval_id": pending.approval_id,
                "session_id": pending.session_id,
                "run_id": pending.run_id,
                "approved": decided.approved,
                "by": decided.by,
            }
        )
        return decided, error

    def _decided_from(
        self, pending: PendingApproval, decision: ApprovalDecision, *, recorded: bool = True
    ) -> DecidedApproval:
        return DecidedApproval(
            approval_id=pending.approval_id,
            session_id=pending.session_id,
            run_id=pending.run_id,
            agent=pending.agent,
            tool=pending.tool,
            approved=decision.approved,
            by=decision.by,
            reason=decision.reason,
            decided_at=self._now(),
            recorded=recorded,
        )

    def _unrecorded(
        self, pending: PendingApproval, by: str, error: BaseException
    ) -> DecidedApproval:
        by = by if by.startswith("policy:") or by in _RESERVED else "policy:unrecorded"
        why = f"denied: the decision could not be recorded in the transcript ({error})"
        return self._decided_from(pending, ApprovalDecision(False, by, why), recorded=False)

    def _remember(self, decided: DecidedApproval) -> None:
        self._decided[decided.approval_id] = decided
        while len(self._decided) > DECIDED_MEMORY:
            self._decided.popitem(last=False)

    async def _append(
        self, pending: PendingApproval, entries: list[dict[str, Any]]
    ) -> BaseException | None:
        """Append as the cooperative ``approval`` writer; the error instead of raising it."""
        try:
            await self.store.session(pending.session_id).append(
                entries, writer=APPROVAL_WRITER, run_id=pending.run_id
            )
        except Exception as exc:  # a refused write is a denial, never a crashed tool
            log.warning(
                "approval %s: could not write to the transcript: %s",
                pending.approval_id,
                exc,
                extra={"action": "approval", "session": pending.session_id, "run": pending.run_id},
            )
            return exc
        return None

    async def _cancelled_while_recording(
        self, write: asyncio.Future[BaseException | None], pending: PendingApproval
    ) -> None:
        """The asker went away while its request was being written: once the request is in
        the transcript, its withdrawal goes there too (APPROVAL-I5)."""
        if await write is None:
            decided = self._decided_from(
                pending, ApprovalDecision(False, "cancelled", "the run was cancelled")
            )
            self._counts["withdrawn"] += 1
            if await self._append(pending, [decided.record()]) is not None:
                self._counts["unrecorded"] += 1
            self._remember(decided)

    def _spawn(self, coro: Any, *, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _normalized(request: ApprovalRequest) -> tuple[str, dict[str, Any], str | None]:
    """The summary and details as they are recorded and shown (valid UTF-8, JSON data), and
    why the request is too large to show whole (None: it is not)."""
    summary = str(request.summary).encode("utf-8", "replace").decode("utf-8")
    try:
        text = json.dumps(dict(request.details), ensure_ascii=False, default=str, sort_keys=True)
    except (TypeError, ValueError) as exc:
        text = json.dumps({"unserializable": repr(exc)})
    raw = text.encode("utf-8", "replace")
    if len(summary) > MAX_SUMMARY_CHARS:
        return (
            summary[:MAX_SUMMARY_CHARS],
            {},
            (
                f"the request's summary has {len(summary)} characters, more than an operator "
                f"can check ({MAX_SUMMARY_CHARS})"
            ),
        )
    if len(raw) > MAX_DETAILS_BYTES:
        return (
            summary,
            {},
            (f"the request's details have {len(raw)} bytes, more than {MAX_DETAILS_BYTES}"),
        )
    details: dict[str, Any] = json.loads(raw)
    return summary, details, None
