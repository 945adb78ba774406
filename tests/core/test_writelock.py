"""The write lock of docs/design/write-lock.md, with real flocks and real processes."""

from __future__ import annotations

import asyncio
import os

import pytest

from fencepost import LockTimeoutError
from fencepost.core import WriteLock
from fencepost.core._writelock import read_owner_record
from tests.helpers import procs

HOLD_IN_CHILD = """
import fcntl, json, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": "h", "run_id": "r-child",
                          "writer": "attempt", "since": "now"}).encode(), 0)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _hold_in_child(path: str, seconds: float):
    p = procs.spawn(HOLD_IN_CHILD, path, str(seconds))
    assert p.stdout is not None
    assert p.stdout.readline().strip() == b"locked"
    return p


async def test_the_holder_can_reenter_and_other_tasks_wait(tmp_path):
    """Invariant LOCK-I2."""
    lock = WriteLock(str(tmp_path / "s.jsonl.lock"))
    order: list[str] = []

    async def other():
        async with lock.hold(5):
            order.append("other")

    await lock.acquire(5)
    await lock.acquire(5)  # reentrant
    assert lock.statistics().depth == 2
    task = asyncio.create_task(other())
    await asyncio.sleep(0)
    assert lock.statistics().waiters == 1
    lock.release()
    await asyncio.sleep(0)
    assert order == []  # still held at depth 1
    order.append("holder")
    lock.release()
    await task
    assert order == ["holder", "other"]
    with pytest.raises(RuntimeError, match="does not hold"):
        lock.release()
    lock.close()


async def test_a_timed_out_wait_names_the_holder_and_leaks_nothing(tmp_path):
    """Invariant LOCK-I3, LOCK-G3."""
    path = str(tmp_path / "s.jsonl.lock")
    child = _hold_in_child(path, 1.0)
    lock = WriteLock(path)
    with pytest.raises(LockTimeoutError) as info:
        await lock.acquire(0.2, writer="delivery")
    assert info.value.holder.pid == child.pid
    assert info.value.holder.run_id == "r-child"
    assert f"pid {child.pid}" in str(info.value)
    child.communicate()
    # The abandoned waiter thread got the lock when the child died and gave it back.
    await lock.acquire(5)
    assert lock.statistics().held and lock.statistics().timeouts == 1
    lock.release()
    lock.close()


async def test_a_cancelled_wait_leaks_nothing(tmp_path):
    """Invariant LOCK-I3."""
    path = str(tmp_path / "s.jsonl.lock")
    child = _hold_in_child(path, 0.5)
    lock = WriteLock(path)
    task = asyncio.create_task(lock.acquire(10))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    child.communicate()
    await lock.acquire(5)
    lock.release()
    assert not lock.statistics().held
    lock.close()


async def test_waiting_for_another_process_does_not_block_the_event_loop(tmp_path):
    """Invariant LOCK-I4."""
    path = str(tmp_path / "s.jsonl.lock")
    child = _hold_in_child(path, 0.6)
    lock = WriteLock(path)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    t = asyncio.create_task(ticker())
    await lock.acquire(10)
    t.cancel()
    assert ticks >= 10  # the loop kept running while we waited ~0.5 s
    assert lock.statistics().contended == 1
    lock.release()
    child.communicate()
    lock.close()


async def test_a_holder_killed_by_the_kernel_frees_the_lock(tmp_path):
    """LOCK-G2: no stale lock to reclaim after SIGKILL."""
    path = str(tmp_path / "s.jsonl.lock")
    child = _hold_in_child(path, 60)
    child.kill()
    child.communicate()
    lock = WriteLock(path)
    await lock.acquire(5)
    lock.release()
    lock.close()


async def test_the_lock_file_is_never_unlinked(tmp_path):
    """Invariant LOCK-I1."""
    path = str(tmp_path / "s.jsonl.lock")
    lock = WriteLock(path)
    async with lock.hold(1, run_id="r1", writer="attempt"):
        ino = os.stat(path).st_ino
    assert os.stat(path).st_ino == ino
    async with lock.hold(1):
        assert os.stat(path).st_ino == ino
    holder = read_owner_record(path)  # the last holder's record stays
    assert (holder.pid, holder.run_id, holder.writer) == (os.getpid(), None, None)
    assert "free" in repr(lock)
    lock.close()
