"""`Session.adopt` as a baseline `verify` honours (docs/design/write-protocol.md STORE-I15)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fencepost import (
    OutsideProtocolChangeError,
    TranscriptFormatError,
    active_path,
    custom,
    message,
    read_transcript,
    verify_transcript,
)


async def _seeded(store, sid="s"):
    session = store.session(sid)
    ids = []
    for role, text in [("user", "one"), ("assistant", "two"), ("user", "three")]:
        ids += (await session.append(message(role, text), writer="delivery")).entry_ids
    return session, ids


def _append_raw(path, obj):
    with open(path, "ab") as f:
        f.write(json.dumps(obj).encode() + b"\n")


async def test_an_adopted_transcript_verifies_ok_with_the_problems_listed_as_adopted(store):
    """Invariant STORE-I15: the issue's case, a repeated id written by hand, then adopted."""
    session, ids = await _seeded(store)
    _append_raw(session.path, {**message("user", "dup"), "id": ids[1], "parentId": ids[2]})
    failing = verify_transcript(session.path)
    assert not failing.ok and {p.kind for p in failing.problems} >= {"format", "outside_protocol"}
    result = await session.adopt(note="alice pasted a message by hand", by="alice@desk")
    report = verify_transcript(session.path)
    assert report.ok and report.problems == ()
    assert [(p.line, p.kind) for p in report.adopted_problems] == [(5, "format")]
    assert "duplicate id" in report.adopted_problems[0].message
    assert all(p.adopted_at == 6 for p in report.adopted_problems)
    [adoption] = report.adoptions
    assert (adoption.line, adoption.note, adoption.by) == (6, result.note, "alice@desk")
    assert adoption.entry_id == result.entry_id
    as_json = report.to_json()
    assert as_json["ok"] and as_json["adopted_problems"][0]["adopted_at"] == 6


async def test_a_problem_after_the_adoption_still_fails(store):
    """Invariant STORE-I15: the baseline covers what was inspected, nothing written later."""
    session, ids = await _seeded(store)
    _append_raw(session.path, custom("by-hand"))
    await session.adopt(note="kept", by="alice@desk")
    await session.append(message("assistant", "after"), writer="delivery")
    assert verify_transcript(session.path).ok
    _append_raw(session.path, {**custom("again"), "id": ids[0]})
    report = verify_transcript(session.path)
    assert not report.ok
    assert {p.line for p in report.problems} == {8}
    assert report.adopted_problems == ()  # the chain already accepts the adopted line


async def test_adopt_says_which_records_left_the_active_path(store):
    """Invariant STORE-I15: a foreign new root takes the conversation out of the context; adopt
    names the records, in its result and in its record, instead of dropping them silently."""
    session, ids = await _seeded(store)
    _append_raw(session.path, {**custom("by-hand"), "id": "f0f0f0f0", "parentId": None})
    result = await session.adopt(note="kept", by="alice@desk")
    assert result.leaf_before == ids[-1] and result.leaf_after == "f0f0f0f0"
    assert result.left_active_path == tuple(ids)
    record = read_transcript(session.path).entries[-1].data
    assert record["customType"] == "fencepost.adopt"
    assert record["data"]["left_active_path"] == ids and record["data"]["left_count"] == 3
    assert verify_transcript(session.path).adoptions[0].left_active_path == tuple(ids)


async def test_adopt_with_the_previous_leaf_keeps_the_conversation_on_the_active_path(store):
    """Invariant STORE-I15: `--leaf` reconnects; the foreign record stays in the file, a branch."""
    session, ids = await _seeded(store)
    _append_raw(session.path, {**custom("by-hand"), "id": "f0f0f0f0", "parentId": None})
    result = await session.adopt(note="kept", leaf_id=ids[-1], by="alice@desk")
    assert result.left_active_path == () and result.leaf_after == ids[-1]
    await session.append(message("assistant", "four"), writer="delivery")
    transcript = read_transcript(session.path)
    on_path = [r.id for r in active_path(transcript)]
    assert on_path[:3] == ids and "f0f0f0f0" not in on_path
    assert "f0f0f0f0" in transcript.by_id()
    assert verify_transcript(session.path).ok


async def test_adopt_refuses_a_leaf_naming_no_record_and_writes_nothing(store):
    session, _ = await _seeded(store)
    _append_raw(session.path, custom("by-hand"))
    before = Path(session.path).read_bytes()
    with pytest.raises(TranscriptFormatError, match="--leaf 'nope' names no record"):
        await session.adopt(note="kept", leaf_id="nope")
    assert Path(session.path).read_bytes() == before
    with pytest.raises(OutsideProtocolChangeError):  # still not adopted
        await session.append(custom("k"), writer="delivery")


async def test_the_first_write_on_another_tools_file_is_no_baseline(store, tmp_path):
    """Invariant STORE-I15: only an operator's adoption accepts problems; an automatic one did
    not inspect anything."""
    header = {"type": "session", "version": 3, "id": "pi", "timestamp": "t", "cwd": "/"}
    path = tmp_path / "pi.jsonl"
    path.write_bytes(json.dumps(header).encode() + b"\n{not json}\n")
    await store.session("pi").append(message("user", "x"), writer="delivery")
    report = verify_transcript(path)
    assert not report.ok and report.adoptions == () and report.adopted_problems == ()
