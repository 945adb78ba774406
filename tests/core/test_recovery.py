"""Crash recovery (docs/design/crash-recovery.md): real child processes that die at exact points
of the write protocol, by SIGKILL, and a parent that carries on."""

from __future__ import annotations

import base64
import json
import os
import signal
from pathlib import Path

import pytest

from fencepost import SessionStore, custom, message, walk_chain
from tests.helpers import procs

# A child that appends once and SIGKILLs itself at a chosen point of the protocol.
DIE_AT = """
import asyncio, os, signal, sys
from fencepost import SessionStore, custom
root, point = sys.argv[1], sys.argv[2]
store = SessionStore(root, durability="buffered")
session = store.session("s")
real_write, real_utime = os.write, os.utime

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def write(fd, data):
    if fd == session._fd:
        if point == "before_write":
            die()
        if point == "mid_write":
            real_write(fd, data[: len(data) // 3])
            die()
    return real_write(fd, data)

def utime(fd, *a, **k):
    if fd == session._fd and point == "before_commit":
        die()
    return real_utime(fd, *a, **k)

os.write, os.utime = write, utime
asyncio.run(session.append([custom("crash", {"n": 1}), custom("crash", {"n": 2})],
                           writer="plugin:crashy", run_id="r-crash"))
print("survived")
"""


async def _seed(root) -> SessionStore:
    store = SessionStore(root, durability="buffered")
    await store.session("s").append(message("user", "before"), writer="delivery")
    return store


def _crash(root, point: str) -> None:
    res = procs.run(DIE_AT, str(root), point)
    assert res.returncode == -signal.SIGKILL, res.stderr.decode()


async def test_a_torn_protocol_write_is_quarantined_and_the_next_write_succeeds(tmp_path):
    """Invariant RECOVERY-I1, RECOVERY-G2, RECOVERY-G3."""
    store = await _seed(tmp_path)
    session = store.session("s")
    committed = Path(session.path).read_bytes()
    _crash(tmp_path, "mid_write")
    torn = Path(session.path).read_bytes()[len(committed) :]
    assert torn and not torn.endswith(b"\n")

    await session.append(message("user", "after"), writer="delivery")  # not a takeover

    data = Path(session.path).read_bytes()
    assert data.startswith(committed) and torn not in data
    assert walk_chain(data).ok
    [q] = [json.loads(x) for x in Path(session.quarantine_path).read_bytes().splitlines()]
    assert base64.b64decode(q["base64"]) == torn
    assert (q["offset"], q["writer"], q["run_id"]) == (len(committed), "plugin:crashy", "r-crash")
    assert [e.kind for e in session.fence_events()] == ["quarantined"]
    store.close()


async def test_complete_records_of_a_crashed_writer_are_recovered(tmp_path):
    """Invariant RECOVERY-I3: written but never committed is kept, not quarantined."""
    store = await _seed(tmp_path)
    session = store.session("s")
    _crash(tmp_path, "before_commit")
    await session.append(message("user", "after"), writer="delivery")
    recs = [json.loads(x) for x in Path(session.path).read_bytes().splitlines()]
    assert [r.get("data", {}).get("n") for r in recs[2:4]] == [1, 2]
    assert recs[4]["fencepost"]["seq"] == 4
    assert walk_chain(Path(session.path).read_bytes()).ok
    assert not os.path.exists(session.quarantine_path)
    [event] = session.fence_events()
    assert event.kind == "recovered" and event.writer == "plugin:crashy"
    store.close()


async def test_a_writer_that_dies_before_writing_leaves_nothing_to_recover(tmp_path):
    store = await _seed(tmp_path)
    session = store.session("s")
    _crash(tmp_path, "before_write")
    await session.append(message("user", "after"), writer="delivery")
    assert walk_chain(Path(session.path).read_bytes()).ok
    assert session.fence_events() == []
    store.close()


async def test_a_crashed_writer_is_not_a_change_outside_the_protocol_for_any_writer(tmp_path):
    """RECOVERY-G3: after each kind of crash, three different writers carry on."""
    for point in ["mid_write", "before_commit", "before_write"]:
        root = tmp_path / point
        store = await _seed(root)
        _crash(root, point)
        for writer in ["delivery", "metadata", "heartbeat"]:
            await store.session("s").append(custom("k", {}), writer=writer)
        assert walk_chain(Path(store.session("s").path).read_bytes()).ok
        store.close()


async def test_a_foreign_files_torn_tail_is_quarantined_when_adopting(tmp_path):
    store = SessionStore(tmp_path, durability="buffered")
    path = tmp_path / "pi.jsonl"
    good = b'{"type":"session","version":3,"id":"pi","timestamp":"t","cwd":"/"}\n'
    path.write_bytes(good + b'{"torn-fragm')
    await store.session("pi").append(message("user", "x"), writer="delivery")
    data = path.read_bytes()
    assert data.startswith(good) and b'{"torn-fragm' not in data
    assert walk_chain(data).ok
    q = json.loads((tmp_path / "pi.jsonl.quarantine").read_bytes())
    assert base64.b64decode(q["base64"]) == b'{"torn-fragm'
    store.close()


@pytest.mark.parametrize("slot", [0, 1])
async def test_a_torn_state_slot_falls_back_to_the_other_one(tmp_path, slot):
    """Invariant STORE-I6."""
    store = await _seed(tmp_path)
    session = store.session("s")
    await session.append(custom("k", {}), writer="metadata")
    with open(session.state_path, "r+b") as f:
        f.seek(slot * 2048 + 20)
        f.write(b"garbage")
    await session.append(custom("k", {}), writer="metadata")
    assert walk_chain(Path(session.path).read_bytes()).ok
    store.close()


async def test_recover_quarantines_a_torn_tail_without_appending(tmp_path):
    """Invariants RECOVERY-I1, STORE-I9: the safe repair of `fencepost doctor --fix`."""
    from fencepost import OutsideProtocolChangeError, SessionStore, message

    store = SessionStore(tmp_path, durability="buffered")
    session = store.session("s")
    await session.append(message("user", "kept"), writer="delivery")
    size = os.path.getsize(session.path)
    assert await session.recover() == 0
    with open(session.path, "ab") as f:
        f.write(b'{"type":"message","id":"torn')  # no newline: a torn tail, but not ours
    with pytest.raises(OutsideProtocolChangeError):
        await session.recover()  # no intent names it: an outside change is never repaired
    assert os.path.getsize(session.path) > size
    store.close()


async def test_recover_after_a_crash_mid_write_quarantines_and_appends_nothing(tmp_path):
    """Invariant RECOVERY-I1 through Session.recover (doctor --fix)."""
    store = await _seed(tmp_path)
    session = store.session("s")
    committed = Path(session.path).read_bytes()
    _crash(tmp_path, "mid_write")
    assert await session.recover() == 1
    assert Path(session.path).read_bytes() == committed  # torn bytes moved, nothing added
    assert Path(session.quarantine_path).exists()
    assert await session.recover() == 0
    store.close()
