"""Bounded session handles (docs/design/write-protocol.md STORE-I11, STORE-I12), on real files.

A store keeps the files of at most ``max_open_sessions`` idle sessions open; the fence must not
need a descriptor to stay open between writes, so every change made while a session's files were
closed is still caught and named on its next write.
"""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest

from fencepost import (
    DEFAULT_MAX_OPEN_SESSIONS,
    OutsideProtocolChangeError,
    SessionStore,
    SyncSessionStore,
    message,
    walk_chain,
)


def open_paths(root: str) -> list[str]:
    """Paths under ``root`` this process has open, from /proc/self/fd."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed while we listed
        if target.startswith(root):
            out.append(target)
    return out


@pytest.fixture
def root(tmp_path):
    return str(tmp_path / "sessions")


async def fill(store: SessionStore, n: int, prefix: str = "other") -> None:
    for i in range(n):
        await store.session(f"{prefix}-{i}").append(message("user", "x"), writer="delivery")


async def test_descriptors_stay_bounded_however_many_sessions_are_written(root):
    """Invariant STORE-I11."""
    store = SessionStore(root, durability="buffered", max_open_sessions=8)
    try:
        await fill(store, 200)
        stats = store.statistics()
        assert stats.open_sessions == 8
        assert stats.evictions == 192
        assert len(open_paths(root)) <= 3 * 8
        assert stats.handles <= 8  # handles nobody references are freed with their files
    finally:
        store.close()
    assert open_paths(root) == []


def test_the_default_bound_fits_far_under_a_1024_descriptor_limit():
    """Invariant STORE-I11: three descriptors per open session, with room for everything else."""
    assert 3 * DEFAULT_MAX_OPEN_SESSIONS <= 1024 * 3 // 4


async def test_an_evicted_session_appends_with_the_chain_and_stamps_continuing(root):
    """Invariant STORE-I12."""
    store = SessionStore(root, durability="buffered", max_open_sessions=2)
    try:
        session = store.session("keep")
        first = await session.append(message("user", "one"), writer="delivery", run_id="r1")
        await fill(store, 5)
        assert "keep" not in store._open  # its files were closed
        second = await session.append(message("user", "two"), writer="heartbeat", run_id="r2")
        assert second.first_seq == first.last_seq + 1
        assert store.session("keep") is session  # one handle per id while it is referenced
        with open(session.path, "rb") as f:
            report = walk_chain(f.read())
        assert report.problems == ()
        assert report.last_seq == second.last_seq
        entries = session.read().entries
        assert [e.stamp["writer"] for e in entries] == ["delivery", "heartbeat"]
        assert entries[1].data["parentId"] == entries[0].id
        assert session.statistics().fast_path >= 1  # the reopened write took the O(1) path
    finally:
        store.close()


def _truncate(path: str) -> None:
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 10)


def _replace(path: str) -> None:
    shutil.copyfile(path, path + ".copy")
    with open(path + ".copy", "ab") as f:
        f.write(b'{"type":"custom","customType":"restored","data":{}}\n')
    os.replace(path + ".copy", path)


def _rewrite(path: str) -> None:
    with open(path, "r+b") as f:
        data = f.read()
        f.seek(0)
        f.write(data.replace(b'"one"', b'"ONE"'))


def _foreign_append(path: str) -> None:
    with open(path, "ab") as f:
        f.write(b'{"type":"custom","customType":"by-hand","data":{}}\n')


CHANGES = {
    "truncated": _truncate,
    "replaced": _replace,
    "rewritten": _rewrite,
    "foreign_append": _foreign_append,
    "deleted": os.unlink,
}


@pytest.mark.parametrize("reason", sorted(CHANGES))
async def test_a_change_made_while_the_files_were_closed_is_caught_and_named(root, reason):
    """Invariant STORE-I12: one test per reason, the change made while the handle was evicted."""
    store = SessionStore(root, durability="buffered", max_open_sessions=1)
    try:
        session = store.session("s")
        await session.append(message("user", "one"), writer="delivery")
        await fill(store, 2)
        assert open_paths(session.path) == []  # nothing of "s" is open
        CHANGES[reason](session.path)
        with pytest.raises(OutsideProtocolChangeError) as err:
            await session.append(message("user", "two"), writer="delivery")
        assert err.value.reason == reason
        events = [e for e in session.fence_events() if e.kind == "outside_change"]
        assert [e.reason for e in events] == [reason]
    finally:
        store.close()


async def test_a_file_deleted_and_recreated_while_closed_is_refused_whatever_its_inode(root):
    """Invariant STORE-I12: with no descriptor open the inode number may be reused; the bytes
    and the sentinel mtime still tell the new file from the committed one."""
    store = SessionStore(root, durability="buffered", max_open_sessions=1)
    try:
        session = store.session("s")
        await session.append(message("user", "one"), writer="delivery")
        await fill(store, 2)
        with open(session.path, "rb") as f:
            data = f.read()
        os.unlink(session.path)
        with open(session.path, "wb") as f:
            f.write(data.replace(b'"one"', b'"two"'))
        with pytest.raises(OutsideProtocolChangeError) as err:
            await session.append(message("user", "three"), writer="delivery")
        assert err.value.reason in ("replaced", "rewritten")
    finally:
        store.close()


async def test_a_session_in_an_attempt_keeps_its_files_while_others_are_evicted(root):
    """Invariant STORE-I11: a busy session is never closed; its fence stays on the fast path."""
    store = SessionStore(root, durability="buffered", max_open_sessions=1)
    try:
        session = store.session("busy")
        async with session.attempt("run-1") as attempt:
            await attempt.append(message("user", "question"))
            async with attempt.released():
                await fill(store, 20)
                assert open_paths(session.path)  # the transcript stays open in the window
                await session.append(message("user", "steer"), writer="steering")
                await fill(store, 20, prefix="more")
            assert attempt.statistics().fast_path == 1
            assert [r.stamp["writer"] for r in attempt.arrived] == ["steering"]
            await attempt.append(message("assistant", "answer"))
        assert store.statistics().busy_sessions == 0
        await fill(store, 3, prefix="after")
        assert open_paths(session.path) == []  # idle again: evicted like any other
    finally:
        store.close()


async def test_a_session_whose_lock_is_held_or_awaited_is_never_closed(root):
    """Invariant STORE-I11."""
    store = SessionStore(root, durability="buffered", max_open_sessions=1)
    try:
        session = store.session("held")
        await session.append(message("user", "x"), writer="delivery")
        async with session.write_lock.hold(5.0):
            waiter = asyncio.create_task(
                session.append(message("user", "queued"), writer="delivery")
            )
            await asyncio.sleep(0)  # the waiter is queued on the in-process lock
            await fill(store, 10)
            assert store._open.get("held") is session
            assert store.statistics().busy_sessions == 1
        result = await waiter
        assert result.first_seq == 2
    finally:
        store.close()


def test_the_sync_facade_takes_the_same_bound(root):
    """Invariant STORE-I11, through SyncSessionStore."""
    with SyncSessionStore(root, durability="buffered", max_open_sessions=3) as store:
        for i in range(10):
            store.session(f"s{i}").append(message("user", "x"), writer="delivery")
        assert store.store.statistics().open_sessions == 3
        assert len(open_paths(root)) <= 9


@pytest.mark.parametrize("bad", [0, -1, 1.5, None])
def test_a_bound_below_one_is_refused(root, bad):
    with pytest.raises(ValueError, match="max_open_sessions"):
        SessionStore(root, max_open_sessions=bad)
