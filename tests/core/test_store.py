"""The write protocol of docs/design/write-protocol.md, on real files."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

import fencepost
from fencepost import (
    InvalidSessionIdError,
    OutsideProtocolChangeError,
    RecordTooLargeError,
    SessionStore,
    TranscriptUpdated,
    custom,
    message,
    walk_chain,
)


def lines_of(path: str) -> list[dict]:
    with open(path, "rb") as f:
        return [json.loads(raw) for raw in f.read().splitlines()]


def snapshot(root: str) -> dict[str, bytes]:
    out = {}
    for name in sorted(os.listdir(root)):
        if name.endswith(".lock"):
            continue  # the lock's owner record is diagnostic: it names the last holder
        with open(os.path.join(root, name), "rb") as f:
            out[name] = f.read()
    return out


@pytest.fixture
def store(tmp_path):
    s = SessionStore(tmp_path / "sessions", durability="buffered")
    yield s
    s.close()


async def test_first_append_creates_a_stamped_header_and_the_entry(store):
    """Invariant STORE-I2."""
    session = store.session("s1")
    result = await session.append(message("user", "hello"), writer="delivery", run_id="r1")
    recs = lines_of(session.path)
    assert [r["type"] for r in recs] == ["session", "message"]
    assert recs[0]["version"] == 3 and recs[0]["id"] == "s1"
    assert recs[0]["fencepost"]["seq"] == 0 and recs[0]["fencepost"]["prev"] is None
    assert recs[1]["parentId"] is None
    assert recs[1]["fencepost"]["writer"] == "delivery"
    assert recs[1]["fencepost"]["run_id"] == "r1"
    assert (result.first_seq, result.last_seq) == (0, 1)
    assert result.entry_ids == (recs[1]["id"],)
    assert walk_chain(Path(session.path).read_bytes()).ok


async def test_every_record_is_stamped_with_writer_run_epoch_and_seq(store):
    """Invariant STORE-I2, STORE-I3."""
    session = store.session("s")
    kinds = ["steering", "model-snapshot", "delivery", "metadata", "plugin:memory", "heartbeat"]
    for i, kind in enumerate(kinds):
        await session.append(custom("k", {"i": i}), writer=kind)
    recs = lines_of(session.path)[1:]
    assert [r["fencepost"]["writer"] for r in recs] == kinds
    assert [r["fencepost"]["seq"] for r in recs] == list(range(1, len(kinds) + 1))
    assert all(r["fencepost"]["epoch"] == 0 for r in recs)
    report = walk_chain(Path(session.path).read_bytes())
    assert report.ok and report.last_seq == len(kinds)


async def test_a_batch_lands_as_consecutive_complete_lines(store):
    """Invariant STORE-I1."""
    session = store.session("s")
    await session.append(message("user", "a"), writer="delivery")
    size_before = os.path.getsize(session.path)
    result = await session.append(
        [message("assistant", str(i)) for i in range(5)], writer="delivery"
    )
    data = Path(session.path).read_bytes()
    assert result.start_offset == size_before and result.end_offset == len(data)
    tail = data[size_before:].splitlines()
    assert [json.loads(t)["message"]["content"] for t in tail] == [str(i) for i in range(5)]


async def test_assigned_entry_ids_are_unique_and_chain_parent_ids(store):
    """Invariant STORE-I5."""
    session = store.session("s")
    for _ in range(50):
        await session.append([custom("x", {}), custom("y", {})], writer="metadata")
    recs = lines_of(session.path)[1:]
    ids = [r["id"] for r in recs]
    assert len(set(ids)) == len(ids) == 100
    assert all(len(i) == 8 and int(i, 16) >= 0 for i in ids)
    assert recs[0]["parentId"] is None
    assert [r["parentId"] for r in recs[1:]] == ids[:-1]


async def test_explicit_ids_and_parents_are_kept(store):
    session = store.session("s")
    await session.append({**message("user", "a"), "id": "aaaaaaaa"}, writer="delivery")
    await session.append(
        {**message("user", "b"), "id": "bbbbbbbb", "parentId": "aaaaaaaa"}, writer="delivery"
    )
    recs = lines_of(session.path)
    assert recs[2]["parentId"] == "aaaaaaaa" and recs[2]["id"] == "bbbbbbbb"


async def test_readers_never_change_a_byte(store):
    """Invariant STORE-I8."""
    session = store.session("s")
    await session.append(message("user", "a"), writer="delivery")
    before = snapshot(store.root)
    stat_before = os.stat(session.path)
    session.read()
    session.verify_chain()
    session.fence_events()
    fencepost.read_transcript(session.path)
    assert snapshot(store.root) == before
    assert os.stat(session.path).st_mtime_ns == stat_before.st_mtime_ns


async def test_path_like_session_ids_are_refused_before_touching_the_disk(store):
    bad_ids = ["../etc", "a/b", "..", ".hidden", "", "x" * 200, "a\x00b", "a\\b", "sp ace"]
    for bad in [*bad_ids, "abc\n", "abc\r\n", "\nabc", "\udcff"]:
        with pytest.raises(InvalidSessionIdError):
            store.session(bad)
    assert os.listdir(store.root) == []


async def test_an_oversize_entry_is_refused_and_nothing_is_written(store):
    session = store.session("s")
    await session.append(message("user", "a"), writer="delivery")
    before = snapshot(store.root)
    with pytest.raises(RecordTooLargeError):
        await session.append(custom("big", {"x": "y" * (2 * 1024 * 1024)}), writer="metadata")
    assert snapshot(store.root) == before


async def test_an_unknown_writer_kind_is_misuse(store):
    with pytest.raises(ValueError, match="unknown writer kind"):
        await store.session("s").append(custom("k", {}), writer="sneaky")


async def test_subscribers_hear_about_every_protocol_write(store):
    events: list[TranscriptUpdated] = []
    unsubscribe = store.subscribe(events.append)
    session = store.session("s")
    await session.append(message("user", "a"), writer="delivery")
    await session.append([custom("k", {}), custom("k", {})], writer="metadata")
    unsubscribe()
    await session.append(custom("k", {}), writer="metadata")
    assert [(e.writer, e.first_seq, e.last_seq) for e in events] == [
        ("delivery", 0, 1),
        ("metadata", 2, 3),
    ]
    assert events[-1].end_offset == events[-1].start_offset + sum(
        len(raw) + 1 for raw in Path(session.path).read_bytes().splitlines()[3:5]
    )


async def test_a_failing_subscriber_does_not_break_the_writer(store, caplog):
    def boom(event: TranscriptUpdated) -> None:
        raise RuntimeError("indexer bug")

    store.subscribe(boom)
    await store.session("s").append(message("user", "a"), writer="delivery")
    assert "transcript subscriber failed" in caplog.text


# ---- outside changes -----------------------------------------------------------------------


async def _seeded(store, sid="s"):
    session = store.session(sid)
    await session.append(message("user", "one"), writer="delivery")
    await session.append(message("assistant", "two"), writer="delivery")
    return session


def _append_raw(path, data: bytes):
    with open(path, "ab") as f:
        f.write(data)


def _edit_in_place(path):
    data = bytearray(Path(path).read_bytes())
    i = data.index(b'"one"')
    data[i + 1 : i + 4] = b"ONE"
    with open(path, "r+b") as f:
        f.write(bytes(data))


def _truncate(path):
    size = os.path.getsize(path)
    os.truncate(path, size - 10)


def _restore_older_copy(path):
    old = path + ".bak"
    shutil.copy(path, old)
    _append_raw(old, b"")
    os.replace(old, path)


def _delete(path):
    os.unlink(path)


def _rename_away(path):
    os.rename(path, path + ".moved")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda p: _append_raw(p, b'{"type":"message","id":"f0f0f0f0"}\n'), "foreign_append"),
        (_truncate, "truncated"),
        (_edit_in_place, "rewritten"),
        (_restore_older_copy, "replaced"),
        (_delete, "deleted"),
        (_rename_away, "deleted"),
    ],
)
async def test_outside_changes_are_refused_with_their_reason(store, change, reason):
    """Invariant STORE-I9."""
    session = await _seeded(store)
    change(session.path)
    before = snapshot(store.root)
    with pytest.raises(OutsideProtocolChangeError) as info:
        await session.append(custom("k", {}), writer="delivery")
    assert info.value.reason == reason
    after = snapshot(store.root)
    # Nothing but the events file changed: the transcript is left for the operator.
    assert {k: v for k, v in after.items() if not k.endswith(".events")} == {
        k: v for k, v in before.items() if not k.endswith(".events")
    }
    events = session.fence_events()
    assert events[-1].kind == "outside_change" and events[-1].reason == reason
    assert events[-1].writer == "delivery"


async def test_a_refused_change_is_not_laundered_by_the_next_writer(store):
    """Invariant STORE-I9: every later writer sees the change too."""
    session = await _seeded(store)
    _append_raw(session.path, b"not even json\n")
    for writer in ["delivery", "metadata", "model-snapshot"]:
        with pytest.raises(OutsideProtocolChangeError, match="foreign_append"):
            await session.append(custom("k", {}), writer=writer)
    # Another process's store (a fresh handle) sees it as well.
    other = SessionStore(store.root, durability="buffered")
    with pytest.raises(OutsideProtocolChangeError):
        await other.session("s").append(custom("k", {}), writer="delivery")
    other.close()
    assert len(session.fence_events()) == 4


async def test_a_same_size_edit_in_the_same_clock_tick_is_still_caught(store):
    """Invariant STORE-I4: no racy window, whatever the timestamp granularity."""
    session = await _seeded(store)
    _edit_in_place(session.path)  # immediately after the write: same coarse clock tick
    with pytest.raises(OutsideProtocolChangeError, match="rewritten"):
        await session.append(custom("k", {}), writer="delivery")


async def test_touch_and_chmod_are_not_changes(store):
    """STORE-G4: metadata-only changes are adopted, not refused."""
    session = await _seeded(store)
    os.utime(session.path)
    os.chmod(session.path, 0o600)
    await session.append(custom("k", {}), writer="delivery")
    # An identical rewrite (same bytes, new mtime) is not a change either.
    data = Path(session.path).read_bytes()
    with open(session.path, "r+b") as f:
        f.write(data)
    await session.append(custom("k", {}), writer="delivery")
    assert walk_chain(Path(session.path).read_bytes()).ok
    assert [e.kind for e in session.fence_events()] == ["metadata_adopted", "metadata_adopted"]


async def test_a_file_from_another_tool_is_adopted_without_rewriting_a_byte(store):
    """Invariant STORE-I7."""
    path = os.path.join(store.root, "pi.jsonl")
    original = (
        b'{"type":"session","version":3,"id":"pi","timestamp":"2026-01-01T00:00:00.000Z",'
        b'"cwd":"/w"}\n'
        b'{"type":"message","id":"0a0a0a0a","parentId":null,"timestamp":"2026-01-01T00:00:01.000Z",'
        b'"message":{"role":"user","content":"hi"}}\n'
    )
    with open(path, "wb") as f:
        f.write(original)
    session = store.session("pi")
    await session.append(message("assistant", "hello"), writer="delivery")
    data = Path(path).read_bytes()
    assert data.startswith(original)
    new = json.loads(data[len(original) :])
    assert new["parentId"] == "0a0a0a0a"
    assert new["fencepost"]["adopted"] == {
        "bytes": len(original),
        "sha256": hashlib.sha256(original).hexdigest(),
    }
    assert walk_chain(data).ok
    assert session.fence_events()[-1].kind == "adopted"


async def test_an_operator_adopts_an_outside_append_and_the_chain_verifies(store):
    """Invariant STORE-I7: adoption keeps every byte and restarts the chain."""
    session = await _seeded(store)
    foreign = b'{"type":"custom","customType":"hand","data":{},"id":"abcdabcd","parentId":null}\n'
    _append_raw(session.path, foreign)
    with pytest.raises(OutsideProtocolChangeError):
        await session.append(custom("k", {}), writer="delivery")
    assert not walk_chain(Path(session.path).read_bytes()).ok
    result = await session.adopt(note="added by hand by alice, kept")
    assert result is not None
    assert await session.adopt(note="again") is None  # nothing left to adopt
    await session.append(custom("k", {}), writer="delivery")
    data = Path(session.path).read_bytes()
    assert foreign in data
    assert walk_chain(data).ok


async def test_a_failed_write_is_rolled_back_to_the_size_before_it(store, monkeypatch):
    """Invariant STORE-I1, RECOVERY-I2: a disk-full write leaves the transcript as it was."""
    session = await _seeded(store)
    before = Path(session.path).read_bytes()
    real_write = os.write

    def half_write(fd, data):
        if fd == session._fd:
            real_write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half_write)
    with pytest.raises(OSError, match="No space"):
        await session.append(custom("k", {"x": 1}), writer="delivery")
    monkeypatch.setattr(os, "write", real_write)
    assert Path(session.path).read_bytes() == before
    await session.append(custom("k", {"x": 2}), writer="delivery")  # and the session goes on
    assert walk_chain(Path(session.path).read_bytes()).ok
    assert session.fence_events() == []


async def test_concurrent_tasks_in_one_process_serialise_without_loss(store):
    session = store.session("s")
    await asyncio.gather(
        *(session.append(custom("k", {"i": i}), writer="metadata") for i in range(200))
    )
    recs = lines_of(session.path)[1:]
    assert sorted(r["data"]["i"] for r in recs) == list(range(200))
    assert walk_chain(Path(session.path).read_bytes()).ok


async def test_durable_appends_fsync_and_verify(tmp_path):
    store = SessionStore(tmp_path, durability="fsync")
    session = store.session("d")
    for i in range(5):
        await session.append(custom("k", {"i": i}), writer="metadata")
    assert walk_chain(Path(session.path).read_bytes()).ok
    assert session.statistics().records == 6
    store.close()


def test_the_sync_facade_delegates_to_the_async_store(tmp_path):
    with fencepost.SyncSessionStore(tmp_path, durability="buffered") as store:
        s = store.session("sync")
        r = s.append([message("user", "a"), message("assistant", "b")], writer="delivery")
        assert r.last_seq == 2
        assert [e.type for e in s.read().entries] == ["message", "message"]
        assert store.session_ids() == ["sync"]
