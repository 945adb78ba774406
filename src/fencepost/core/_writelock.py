"""The write lock: ``fcntl.flock`` on ``<id>.jsonl.lock`` + an in-process async lock with
per-task reentrancy (docs/design/write-lock.md).

- The lock file is never unlinked (Invariant LOCK-I1): deleting it would let two waiters lock two
  different inodes.
- The kernel drops a flock when its holder dies, so a crash never leaves a stale lock.
- Waiting never blocks the event loop: an uncontended lock is taken with LOCK_NB; a contended one
  is waited for in a dedicated thread (the kernel queues the waiters), abandoned on timeout or
  cancellation without leaking the lock (Invariant LOCK-I3).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import os
import socket
import threading
import time
from dataclasses import dataclass

from ..errors import LockHolder, LockTimeoutError
from ._format import json_str as _s
from ._format import utc_iso_ms

__all__ = [
    "WriteLock",
    "WriteLockStatistics",
    "hostname",
    "process_start_time",
    "read_owner_record",
]


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), None if unknown or gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses; fields resume after the last ')'.
    return stat[stat.rfind(b")") + 2 :].split()[19].decode()


@functools.cache
def hostname() -> str:
    return socket.gethostname()


#: The owner record is padded to this size (a longer one is written whole and truncated).
OWNER_RECORD_BYTES = 512

_identity: tuple[int, str] | None = None


def _this_process() -> str:
    """The owner record's first fields (pid, start time, host) as JSON, built once per process
    (fork-safe)."""
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[0] != pid:
        start, host = process_start_time(pid), hostname()
        _identity = (pid, f'{{"pid":{pid},"pid_start":{_s(start)},"host":{_s(host)}')
    return _identity[1]


def read_owner_record(path: str) -> LockHolder:
    """The diagnostic owner record of a lock file (best effort; never raises)."""
    try:
        with open(path, "rb") as f:
            rec = json.loads(f.read() or b"{}")
    except (OSError, ValueError):
        rec = {}
    if not isinstance(rec, dict):
        rec = {}
    return LockHolder(
        pid=rec.get("pid"),
        host=rec.get("host"),
        run_id=rec.get("run_id"),
        writer=rec.get("writer"),
        since=rec.get("since"),
    )


@dataclass(frozen=True)
class WriteLockStatistics:
    held: bool
    depth: int
    waiters: int
    acquisitions: int
    contended: int
    timeouts: int


class _FlockWaiter:
    """A blocking flock in its own thread that can be abandoned without leaking the lock.

    It locks through its *own* open file description: flock belongs to the description, so an
    abandoned waiter sharing the holder's would unlock the next holder's lock (LOCK-I3).
    """

    def __init__(self, path: str, loop: asyncio.AbstractEventLoop) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._mu = threading.Lock()
        self._abandoned = False
        self.acquired = False
        self.done: asyncio.Future[None] = loop.create_future()
        self._loop = loop
        threading.Thread(target=self._run, name="fencepost-flock", daemon=True).start()

    def _run(self) -> None:
        err: BaseException | None = None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError as exc:
            err = exc
        with self._mu:
            if self._abandoned:
                os.close(self.fd)  # releases the lock if we got it: nobody waits for it any more
                return
            self.acquired = err is None
            if err is not None:
                os.close(self.fd)
        with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting either
            self._loop.call_soon_threadsafe(self._finish, err)

    def _finish(self, err: BaseException | None) -> None:
        if not self.done.done():
            if err is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(err)

    def abandon(self) -> bool:
        """Give up waiting. True if the lock was acquired anyway and the caller now holds it."""
        with self._mu:
            if self.acquired:
                return True
            self._abandoned = True
            return False

    def close(self) -> None:
        os.close(self.fd)


class WriteLock:
    """Exclusive write lock of one session, shared by every task of one process through one
    ``Session`` handle and by every process through ``flock``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._held_fd: int | None = None  # the description that holds the flock
        self._inproc = asyncio.Lock()
        self._owner: asyncio.Task[object] | None = None
        self._depth = 0
        self._waiters = 0
        self._acquisitions = 0
        self._contended = 0
        self._timeouts = 0

    def __repr__(self) -> str:
        state = f"held depth={self._depth}" if self._depth else "free"
        return f"<WriteLock {self.path} {state} waiters={self._waiters}>"

    def statistics(self) -> WriteLockStatistics:
        return WriteLockStatistics(
            held=self._depth > 0,
            depth=self._depth,
            waiters=self._waiters,
            acquisitions=self._acquisitions,
            contended=self._contended,
            timeouts=self._timeouts,
        )

    def idle(self) -> bool:
        """Nobody in this process holds the lock or waits for it."""
        return not self._depth and not self._waiters and not self._inproc.locked()

    def owned_by_current_task(self) -> bool:
        # Invariant LOCK-I2: depth > 0 iff one task of this process holds both locks.
        return self._depth > 0 and self._owner is asyncio.current_task()

    def _lock_fd(self) -> int:
        if self._fd is None:
            # Invariant LOCK-I1: created if missing, never unlinked, never truncated on open.
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        return self._fd

    async def acquire(
        self, timeout_s: float, *, run_id: str | None = None, writer: str | None = None
    ) -> None:
        """Take the lock (reentrant for the task that holds it)."""
        if self.owned_by_current_task():
            self._depth += 1
            return
        deadline = time.monotonic() + timeout_s
        self._waiters += 1
        try:
            if self._inproc.locked():
                try:
                    await asyncio.wait_for(self._inproc.acquire(), timeout_s)
                except TimeoutError:
                    raise self._timeout(timeout_s) from None
            else:
                await self._inproc.acquire()  # free: returns at once, no timer needed
            try:
                await self._flock(max(0.0, deadline - time.monotonic()), timeout_s)
            except BaseException:
                self._inproc.release()
                raise
        finally:
            self._waiters -= 1
        self._owner = asyncio.current_task()
        self._depth = 1
        self._acquisitions += 1
        self._write_owner(run_id, writer)

    async def _flock(self, remaining_s: float, timeout_s: float) -> None:
        fd = self._lock_fd()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._held_fd = fd
            return
        except BlockingIOError:
            pass
        self._contended += 1
        # Invariant LOCK-I4: the blocking wait runs in a thread, never on the event loop.
        waiter = _FlockWaiter(self.path, asyncio.get_running_loop())
        try:
            await asyncio.wait_for(asyncio.shield(waiter.done), remaining_s)
        except BaseException as exc:
            if waiter.abandon():  # Invariant LOCK-I3: acquired as we gave up; keep it balanced
                if isinstance(exc, TimeoutError):
                    self._held_fd = waiter.fd
                    return
                waiter.close()
            if isinstance(exc, TimeoutError):
                raise self._timeout(timeout_s) from None
            raise
        self._held_fd = waiter.fd

    def _timeout(self, timeout_s: float) -> LockTimeoutError:
        self._timeouts += 1
        return LockTimeoutError(self.path, timeout_s, read_owner_record(self.path))

    def _write_owner(self, run_id: str | None, writer: str | None) -> None:
        # Spelled out rather than json.dumps: it is written on every acquisition.
        data = (
            f'{_this_process()},"run_id":{_s(run_id)},"writer":{_s(writer)},'
            f'"since":"{utc_iso_ms()}+00:00"}}\n'
        ).encode()
        fd = self._lock_fd()
        # Padded to a fixed size so the common case needs no truncate (JSON ignores the blanks).
        os.pwrite(fd, data.ljust(OWNER_RECORD_BYTES), 0)
        if len(data) > OWNER_RECORD_BYTES:
            os.ftruncate(fd, len(data))

    def release(self) -> None:
        if not self.owned_by_current_task():
            raise RuntimeError(f"{self!r} released by a task that does not hold it")
        self._depth -= 1
        if self._depth:
            return
        self._owner = None
        held, self._held_fd = self._held_fd, None
        assert held is not None
        if held == self._fd:
            fcntl.flock(held, fcntl.LOCK_UN)  # the owner record stays: it names the last holder
        else:
            os.close(held)  # a waiter's own description: closing it releases the flock
        self._inproc.release()

    def hold(
        self, timeout_s: float, *, run_id: str | None = None, writer: str | None = None
    ) -> _Hold:
        """``async with lock.hold(timeout_s):`` — acquire, and release on every path."""
        return _Hold(self, timeout_s, run_id, writer)

    def close(self) -> None:
        if self._fd is not None and not self._depth:
            os.close(self._fd)
            self._fd = None


class _Hold:
    """The async context manager of WriteLock.hold (a class: cheaper than a generator)."""

    __slots__ = ("lock", "run_id", "timeout_s", "writer")

    def __init__(
        self, lock: WriteLock, timeout_s: float, run_id: str | None, writer: str | None
    ) -> None:
        self.lock, self.timeout_s, self.run_id, self.writer = lock, timeout_s, run_id, writer

    async def __aenter__(self) -> None:
        await self.lock.acquire(self.timeout_s, run_id=self.run_id, writer=self.writer)

    async def __aexit__(self, *exc_info: object) -> None:
        self.lock.release()
