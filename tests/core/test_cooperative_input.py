"""What a cooperative writer may send (docs/design/write-protocol.md STORE-I13, STORE-I14)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fencepost import (
    TranscriptFormatError,
    active_path,
    compaction,
    custom,
    message,
    read_transcript,
    verify_transcript,
)


def snapshot(path):
    return Path(path).read_bytes(), os.stat(path).st_mtime_ns


async def test_an_entry_whose_id_an_existing_record_has_is_refused_before_writing(store):
    """Invariant STORE-I13: a repeated id would make the active path skip a record."""
    session = store.session("s")
    first = await session.append(message("user", "a"), writer="delivery")
    await session.append(message("assistant", "b"), writer="delivery")
    before = snapshot(session.path)
    taken = r"'id' '\w+' is already the id of the record on line 2"
    with pytest.raises(TranscriptFormatError, match=taken) as exc:
        await session.append({**message("user", "c"), "id": first.entry_ids[0]}, writer="delivery")
    assert exc.value.line == 4
    assert snapshot(session.path) == before
    assert verify_transcript(session.path).ok
    assert len(active_path(read_transcript(session.path))) == 2


async def test_two_entries_of_one_batch_with_one_id_are_refused_whole(store):
    """Invariant STORE-I13 (and STORE-I1: the batch lands whole or not at all)."""
    session = store.session("s")
    await session.append(message("user", "a"), writer="delivery")
    before = snapshot(session.path)
    dup = [{**custom("k"), "id": "cafe0001"}, {**custom("k"), "id": "cafe0001"}]
    with pytest.raises(TranscriptFormatError, match="already the id of the record on line 3"):
        await session.append(dup, writer="metadata")
    assert snapshot(session.path) == before


async def test_a_parent_id_naming_no_record_is_refused_before_writing(store):
    """Invariant STORE-I13."""
    session = store.session("s")
    await session.append(message("user", "a"), writer="delivery")
    before = snapshot(session.path)
    with pytest.raises(TranscriptFormatError, match="'parentId' 'deadbeef' names no record"):
        await session.append({**message("user", "b"), "parentId": "deadbeef"}, writer="delivery")
    with pytest.raises(TranscriptFormatError, match="'parentId' null starts a second root"):
        await session.append({**message("user", "b"), "parentId": None}, writer="delivery")
    assert snapshot(session.path) == before


async def test_caller_ids_that_fit_the_transcript_are_written_as_given(store):
    """Invariant STORE-I13: a new id, a branch from an existing record, a parent in the batch."""
    session = store.session("s")
    root = await session.append({**message("user", "a"), "id": "0000aaaa"}, writer="delivery")
    await session.append(message("assistant", "b"), writer="delivery")
    batch = [
        {**message("user", "branch"), "id": "0000bbbb", "parentId": root.entry_ids[0]},
        {**message("assistant", "reply"), "parentId": "0000bbbb"},
    ]
    await session.append(batch, writer="delivery")
    assert verify_transcript(session.path).ok
    path = active_path(read_transcript(session.path))
    assert [r.id for r in path][:2] == ["0000aaaa", "0000bbbb"]


async def test_an_append_without_caller_ids_never_reads_the_transcript(store, monkeypatch):
    """Invariant STORE-I13 costs nothing on the normal path (STORE-G5 stays O(1))."""
    session = store.session("s")
    await session.append(custom("k", "x" * 20_000), writer="delivery")
    reads = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, off: reads.append(n) or real(fd, n, off))
    await session.append(message("assistant", "b"), writer="delivery")
    assert reads and max(reads) <= 4096  # the state record's two slots; never the transcript
    await session.append({**message("user", "c"), "id": "0000cccc"}, writer="delivery")
    assert max(reads) > 20_000  # a caller's id: one read of the ids, under the lock


@pytest.mark.parametrize("writer", ["attempt", "compaction"])
async def test_a_cooperative_writer_may_not_stamp_the_lease_holders_kinds(store, writer):
    """Invariant STORE-I14: `attempt` and `compaction` records come only from the lease holder."""
    session = store.session("s")
    with pytest.raises(ValueError, match=f"writer kind '{writer}' is reserved for the holder"):
        await session.append(message("user", "a"), writer=writer)
    assert not os.path.exists(session.path)
    async with session.attempt("r1") as attempt:
        await attempt.append(message("user", "a"))
        await attempt.append(compaction("sum", "ffffffff", 1), writer="compaction")
    writers = [r.stamp["writer"] for r in read_transcript(session.path).entries]
    assert writers == ["attempt", "compaction"]


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({**message("user", "a"), "id": ""}, "'id' must be a non-empty string"),
        ({**message("user", "a"), "id": 7}, "'id' must be a non-empty string"),
        ({**message("user", "a"), "parentId": 7}, "'parentId' must be a non-empty string"),
        ({**message("user", "a"), "timestamp": 12}, "'timestamp' must be a string"),
        ({**message("user", "a"), "fencepost": {"writer": "attempt"}}, "'fencepost' is the"),
        ({"type": "message", "message": {"role": "system"}}, "message.role must be one of"),
        ({"type": "compaction", "summary": "s"}, "needs 'firstKeptEntryId'"),
        (custom("fencepost.adopt", {"note": "forged"}), "written only by `fencepost sessions"),
    ],
)
async def test_a_malformed_entry_is_refused_naming_its_field(store, entry, field):
    """Invariant STORE-I13 (the entry's own shape, checked before the lock is taken)."""
    session = store.session("s")
    await session.append(message("user", "ok"), writer="delivery")
    before = snapshot(session.path)
    with pytest.raises(TranscriptFormatError, match=field):
        await session.append(entry, writer="delivery")
    assert snapshot(session.path) == before
