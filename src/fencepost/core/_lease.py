"""Leases, epochs and the reacquire fence (docs/design/leases-and-fencing.md).

An attempt holds its session's *lease* for a whole agent turn and the *write lock* only while it
prepares or persists a step. ``attempt.released()`` gives the lock up for model I/O; leaving it
takes the lock back and runs the fence, which tells the gateway's own cooperative writes (picked
up, never a takeover) from a real takeover (SessionTakeoverError, sticky).

The decisions are pure functions over values (``decide_lease``, ``fence_verdict``); the Attempt
class is the thin I/O around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from ..errors import (
    LeaseBusyError,
    LockTimeoutError,
    OutsideProtocolChangeError,
    SessionTakeoverError,
    TakeoverReason,
)
from ._format import Record, parse_transcript
from ._state import FileState, LeaseHolder, SessionState
from ._writelock import hostname, process_start_time

if TYPE_CHECKING:
    from ._store import AppendResult, Session

__all__ = [
    "DEFAULT_LEASE_TTL_S",
    "Attempt",
    "AttemptStatistics",
    "LeaseDecision",
    "decide_lease",
    "fence_verdict",
    "holder_alive",
    "open_attempt",
]

log = logging.getLogger("fencepost.lease")

#: A live holder renews its lease every third of this; one paused longer may be superseded.
DEFAULT_LEASE_TTL_S = 60.0

LeaseDecision = Literal["take", "wait", "take_dead", "take_expired", "preempt"]


def decide_lease(
    lease: LeaseHolder | None, *, now_ns: int, preempt: bool, alive: bool | None
) -> LeaseDecision:
    """Whether a new attempt may take the lease now (Invariant LEASE-I1).

    ``alive`` is what the caller could prove about the holder's process: False (dead, or its pid
    now belongs to another process), True, or None (another host: only the deadline counts).
    """
    if lease is None:
        return "take"
    if preempt:
        return "preempt"
    if alive is False:
        return "take_dead"
    if now_ns > lease.deadline_ns:
        return "take_expired"
    return "wait"


def holder_alive(lease: LeaseHolder) -> bool | None:
    """True/False for a holder on this host (pid and start time), None for another host."""
    if lease.host != hostname():
        return None
    start = process_start_time(lease.pid)
    return start is not None and (lease.pid_start is None or start == lease.pid_start)


FenceVerdict = Literal["ours", "lease_superseded"]


def fence_verdict(state: SessionState, *, epoch: int, run_id: str) -> FenceVerdict:
    """Step 2 of the fence: is the lease still ours? (Invariant LEASE-I2)"""
    lease = state.lease
    if state.epoch != epoch or lease is None or lease.run_id != run_id:
        return "lease_superseded"
    return "ours"


@dataclass(frozen=True)
class AttemptStatistics:
    epoch: int
    appends: int
    windows: int  # released() blocks completed
    fast_path: int  # reacquires that took the O(1) path
    slow_path: int
    arrived_records: int  # cooperative records picked up over the whole attempt
    arrived_by_writer: Mapping[str, int]
    renewals: int


class Attempt:
    """An agent turn holding its session's lease. Obtain with ``session.attempt(run_id)``."""

    def __init__(self, session: Session, run_id: str, *, lease_ttl_s: float) -> None:
        self.session = session
        self.run_id = run_id
        self.lease_ttl_s = lease_ttl_s
        self.epoch = 0
        #: Cooperative records that arrived during the last released() window, in file order.
        self.arrived: tuple[Record, ...] = ()
        #: Set once the attempt has lost its session; every later operation re-raises it.
        self.takeover: SessionTakeoverError | None = None
        self._holds_lock = False
        self._mark: FileState | None = None  # committed state when the lock was last given up
        self._renewer: asyncio.Task[None] | None = None
        self._appends = self._windows = self._fast = self._slow = self._renewals = 0
        self._arrived_by: Counter[str] = Counter()

    def __repr__(self) -> str:
        where = "holding the lock" if self._holds_lock else "released"
        lost = f" taken over ({self.takeover.reason})" if self.takeover else ""
        return (
            f"<Attempt {self.run_id} on {self.session.session_id} epoch={self.epoch} {where}{lost}>"
        )

    def statistics(self) -> AttemptStatistics:
        return AttemptStatistics(
            epoch=self.epoch,
            appends=self._appends,
            windows=self._windows,
            fast_path=self._fast,
            slow_path=self._slow,
            arrived_records=sum(self._arrived_by.values()),
            arrived_by_writer=dict(self._arrived_by),
            renewals=self._renewals,
        )

    # ---- the API the runner uses ---------------------------------------------------------

    async def append(
        self,
        entries: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        writer: Literal["attempt", "compaction"] = "attempt",
    ) -> AppendResult:
        """Write under the lease (writer kind ``attempt``, or ``compaction`` for a compaction
        entry the holder writes). Needs the write lock held."""
        self._check()
        if not self._holds_lock:
            raise RuntimeError("attempt.append inside released(): model I/O holds no lock")
        batch = [entries] if isinstance(entries, Mapping) else list(entries)
        if not batch:
            raise ValueError("append needs at least one entry")
        state = self.session._open_state().read()
        self._fence_epoch(state)  # Invariant LEASE-I3: no write under a stale epoch
        try:
            result = await self.session._append_locked(
                batch, writer=writer, run_id=self.run_id, epoch=self.epoch
            )
        except OutsideProtocolChangeError as exc:
            raise self._lose(exc.reason, exc.description) from None
        self._appends += 1
        return result

    @contextlib.asynccontextmanager
    async def released(self) -> AsyncIterator[Attempt]:
        """Give the write lock up for model I/O; take it back and run the fence on the way out.

        Cooperative writes meanwhile are picked up into ``attempt.arrived``. A real takeover
        raises SessionTakeoverError when the block ends (sticky for the attempt).
        """
        self._check()
        if not self._holds_lock:
            raise RuntimeError("released() is not reentrant")
        self._mark = self._settled_mark()
        self._give_up_lock()
        ok = False
        try:
            yield self
            ok = True
        finally:
            if ok:  # an exception or cancellation skips the fence: see resume()
                await self._reacquire()

    @property
    def holds_lock(self) -> bool:
        return self._holds_lock

    async def resume(self) -> None:
        """Take the lock back and run the fence after an exception left released() early.

        For cleanup that must still write (a synthetic tool result after a timeout). No-op when
        the lock is held; raises the sticky takeover if the session was lost.
        """
        self._check()
        if not self._holds_lock:
            await self._reacquire()

    # ---- the fence -----------------------------------------------------------------------

    async def _reacquire(self) -> None:
        session = self.session
        try:
            await session._lock.acquire(
                session.store.lock_timeout_s, run_id=self.run_id, writer="attempt"
            )
        except LockTimeoutError as exc:
            raise self._lose("lock_timeout", str(exc)) from None
        self._holds_lock = True
        self._windows += 1
        state = session._open_state().read()
        self._fence_epoch(state)
        mark = self._mark
        assert mark is not None
        try:
            committed, fast = session._settle_without_append(
                state, writer="attempt", run_id=self.run_id
            )
        except OutsideProtocolChangeError as exc:
            raise self._lose(exc.reason, exc.description) from None
        if fast or committed is None:  # None: the protocol has not written it yet
            self._fast += 1
        else:
            self._slow += 1
        self.arrived = () if committed is None else self._pick_up(mark, committed)

    def _fence_epoch(self, state: SessionState) -> None:
        if fence_verdict(state, epoch=self.epoch, run_id=self.run_id) == "ours":
            return
        lease = state.lease
        by = (
            f"run {lease.run_id} (pid {lease.pid} on {lease.host})"
            if lease is not None
            else "nobody (the lease was cleared)"
        )
        raise self._lose(
            "lease_superseded",
            f"the lease moved from epoch {self.epoch} to {state.epoch}, now held by {by}",
            epoch_seen=state.epoch,
        )

    def _pick_up(self, mark: FileState, committed: FileState) -> tuple[Record, ...]:
        """The protocol records between our mark and the committed end: O(bytes appended)."""
        if committed.size <= mark.size:
            return ()
        fd = self.session._transcript_fd()
        data = os.pread(fd, committed.size - mark.size, mark.size)
        got = parse_transcript(data, start_offset=mark.size, expect_header=False).entries
        for rec in got:
            stamp = rec.stamp or {}
            self._arrived_by[str(stamp.get("writer", "unstamped"))] += 1
        return got

    def _settled_mark(self) -> FileState:
        """The committed state as we give the lock up; a change found here is a takeover too."""
        session = self.session
        state = session._open_state().read()
        self._fence_epoch(state)
        try:
            committed, _ = session._settle_without_append(
                state, writer="attempt", run_id=self.run_id
            )
        except OutsideProtocolChangeError as exc:
            raise self._lose(exc.reason, exc.description) from None
        if committed is None:  # nothing written yet: an empty mark
            return FileState(0, 0, 0, 0, -1, None, None)
        session._transcript_fd()  # kept open: a recreated file cannot reuse the inode
        return committed

    def _lose(
        self, reason: TakeoverReason, description: str, *, epoch_seen: int | None = None
    ) -> SessionTakeoverError:
        err = SessionTakeoverError(
            self.session.session_id,
            reason,
            description,
            epoch_held=self.epoch,
            epoch_seen=epoch_seen,
        )
        if self.takeover is None:
            self.takeover = err
            if reason in ("lease_superseded", "lock_timeout"):
                # Outside changes were recorded by the fence already (STORE-I9).
                self.session._record_event(
                    "takeover",
                    reason=reason,
                    writer="attempt",
                    run_id=self.run_id,
                    epoch=self.epoch,
                    description=description,
                )
        return err

    def _check(self) -> None:
        # Invariant LEASE-I4: a takeover is sticky for the attempt.
        if self.takeover is not None:
            raise self.takeover

    def _give_up_lock(self) -> None:
        if self._holds_lock:
            self._holds_lock = False
            self.session._lock.release()

    # ---- lease lifecycle -----------------------------------------------------------------

    async def _enter(self, *, preempt: bool, wait_timeout_s: float | None) -> None:
        session = self.session
        lock_timeout = session.store.lock_timeout_s
        give_up_at = None if wait_timeout_s is None else time.monotonic() + wait_timeout_s
        delay_s = 0.005
        while True:
            await session._lock.acquire(lock_timeout, run_id=self.run_id, writer="attempt")
            try:
                state = session._open_state().read()
                lease = state.lease
                alive = None if lease is None else holder_alive(lease)
                decision = decide_lease(lease, now_ns=time.time_ns(), preempt=preempt, alive=alive)
                if decision != "wait":
                    self._take(state, decision)
                    self._holds_lock = True
                    break
            except BaseException:
                session._lock.release()
                raise
            session._lock.release()
            assert lease is not None
            if give_up_at is not None and time.monotonic() >= give_up_at:
                raise LeaseBusyError(
                    session.session_id, lease.run_id, lease.pid, lease.host, wait_timeout_s or 0
                )
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 0.1)
        self._renewer = asyncio.create_task(self._renew_forever(), name=f"lease {self.run_id}")

    def _take(self, state: SessionState, decision: LeaseDecision) -> None:
        now_ns = time.time_ns()
        pid = os.getpid()
        self.epoch = state.epoch + 1  # Invariant STORE-I10, LEASE-I1: every lease a new epoch
        holder = LeaseHolder(
            run_id=self.run_id,
            pid=pid,
            pid_start=process_start_time(pid),
            host=hostname(),
            acquired_ns=now_ns,
            deadline_ns=now_ns + int(self.lease_ttl_s * 1e9),
        )
        self.session._open_state().write(state.next(epoch=self.epoch, lease=holder))
        old = state.lease
        if decision != "take" and old is not None:
            why = {
                "preempt": "preempted",
                "take_dead": "took over from a dead holder",
                "take_expired": "took over from a holder past its deadline",
            }[decision]
            self.session._record_event(
                "lease_taken",
                reason=decision,
                writer="attempt",
                run_id=self.run_id,
                epoch=self.epoch,
                description=(
                    f"{why}: run {old.run_id} (pid {old.pid} on {old.host}, epoch {state.epoch})"
                ),
            )

    async def _renew_forever(self) -> None:
        """Push the deadline out every third of the TTL while the attempt lives."""
        period_s = self.lease_ttl_s / 3
        while self.takeover is None:
            await asyncio.sleep(period_s)
            try:
                await self._renew()
            except SessionTakeoverError:
                return  # sticky; the attempt raises it at its next step
            except LockTimeoutError:
                continue  # a busy lock; try again next period, the deadline has slack

    async def _renew(self) -> None:
        session = self.session
        async with session._lock.hold(session.store.lock_timeout_s, run_id=self.run_id):
            state = session._open_state().read()
            self._fence_epoch(state)
            assert state.lease is not None
            deadline_ns = time.time_ns() + int(self.lease_ttl_s * 1e9)
            session._open_state().write(
                state.next(lease=replace(state.lease, deadline_ns=deadline_ns))
            )
            self._renewals += 1

    async def _exit(self) -> None:
        """Release everything, on every path (Invariant LEASE-I5)."""
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.wait([self._renewer])  # never swallows our own cancellation
        if self._holds_lock:  # no await from here on: cancellation cannot cut it short
            self._clear_lease()
            self._give_up_lock()
            return
        # An exception or cancellation inside released(): take the lock back in a task of its
        # own, which finishes even if this one is cancelled while waiting for it.
        await asyncio.shield(asyncio.create_task(self._clear_lease_locked()))

    async def _clear_lease_locked(self) -> None:
        session = self.session
        try:
            async with session._lock.hold(session.store.lock_timeout_s, run_id=self.run_id):
                self._clear_lease()
        except LockTimeoutError:
            log.warning(
                "lease left to expire at its deadline: the write lock stayed busy",
                extra={
                    "action": "lease_release",
                    "session": session.session_id,
                    "run": self.run_id,
                    "epoch": self.epoch,
                },
            )

    def _clear_lease(self) -> None:
        state = self.session._open_state().read()
        if fence_verdict(state, epoch=self.epoch, run_id=self.run_id) == "ours":
            self.session._open_state().write(state.next(lease=None))


@contextlib.asynccontextmanager
async def open_attempt(
    session: Session,
    run_id: str,
    *,
    preempt: bool,
    wait_timeout_s: float | None,
    lease_ttl_s: float,
) -> AsyncIterator[Attempt]:
    attempt = Attempt(session, run_id, lease_ttl_s=lease_ttl_s)
    session._pin()  # Invariant STORE-I11: an attempt's files stay open until it ends
    try:
        await attempt._enter(preempt=preempt, wait_timeout_s=wait_timeout_s)
        try:
            yield attempt
        finally:
            await attempt._exit()
    finally:
        session._unpin()
