"""Injectable time: the system clock, and a manual clock for tests that never sleep."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]

#: The system clock re-reads wall time at least this often while sleeping, so a wall-clock jump
#: (NTP step, suspend and resume) delays a due job by at most this much.
MAX_SLEEP_STEP_S = 30.0


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, aware UTC."""
        ...

    async def sleep_until(self, when: datetime) -> None:
        """Return at or after ``when`` (immediately if it has passed)."""
        ...


class SystemClock:
    """Wall-clock time; sleeps with the event loop's timer."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        while True:
            remaining = (when - self.now()).total_seconds()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, MAX_SLEEP_STEP_S))

    def __repr__(self) -> str:
        return "<SystemClock>"


class ManualClock:
    """A clock that moves only when told to (``advance`` / ``set``); sleepers wake in order."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware start time")
        self._now = start.astimezone(UTC)
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()

    def __repr__(self) -> str:
        return f"<ManualClock {self._now.isoformat()} sleepers={len(self._sleepers)}>"

    def now(self) -> datetime:
        return self._now

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def next_wake(self) -> datetime | None:
        live = [w for w, _, f in self._sleepers if not f.done()]
        return min(live) if live else None

    async def sleep_until(self, when: datetime) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, next(self._counter), fut))
        await fut

    def set(self, when: datetime) -> None:
        if when < self._now:
            raise ValueError("ManualClock does not go backwards")
        self._now = when.astimezone(UTC)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    def advance(self, seconds: float) -> None:
        self.set(self._now + timedelta(seconds=seconds))
