"""The context offset index (docs/design/transcript-format.md INDEX-I1..I3) on real files."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fencepost import (
    build_context,
    compaction,
    message,
    read_context,
    read_transcript,
)


async def _turns(sess, n, start=0):
    ids = []
    for i in range(start, start + n):
        r = await sess.append(
            [
                message("user", f"question {i}"),
                message("assistant", [{"type": "text", "text": f"answer {i}"}]),
            ],
            writer="delivery",
        )
        ids.append(r.entry_ids[0])
    return ids


async def _compact(sess, entry):
    """A compaction is the lease holder's to write (Invariant STORE-I14)."""
    async with sess.attempt("compact") as attempt:
        await attempt.append(entry, writer="compaction")


def _full(path):
    return build_context(read_transcript(path))


async def test_a_session_without_compaction_reads_the_whole_file_and_matches_the_full_parse(store):
    sess = store.session("s")
    await _turns(sess, 3)
    got = read_context(sess.path)
    assert not got.used_index and got.start_offset == 0
    assert got.context == _full(sess.path)
    assert not os.path.exists(sess.path + ".index")


async def test_after_a_compaction_the_context_is_read_from_the_first_kept_entry(store):
    # Invariant INDEX-I1: one scan builds the index; INDEX-I3: later reads use the slice.
    sess = store.session("s")
    ids = await _turns(sess, 6)
    await _compact(sess, compaction("six turns happened", ids[4], 1234))
    await _turns(sess, 2, start=6)
    first = read_context(sess.path)
    assert not first.used_index and first.context == _full(sess.path)
    second = read_context(sess.path)
    assert second.used_index
    assert second.context == _full(sess.path)
    assert second.start_offset == next(
        r.offset for r in read_transcript(sess.path).entries if r.id == ids[4]
    )
    msgs = second.context.messages
    assert msgs[0].source == "compaction_summary" and "six turns happened" in msgs[0].content
    assert [m.entry_id for m in msgs[1:3]] == [ids[4], second.context.messages[2].entry_id]


async def test_a_newer_compaction_moves_the_index_forward(store):
    sess = store.session("s")
    ids = await _turns(sess, 4)
    await _compact(sess, compaction("first", ids[2], 10))
    read_context(sess.path)
    more = await _turns(sess, 4, start=4)
    await _compact(sess, compaction("second", more[2], 20))
    got = read_context(sess.path)
    assert got.used_index and got.context == _full(sess.path)
    again = read_context(sess.path)
    assert again.used_index and again.start_offset > got.start_offset
    assert again.context == _full(sess.path)


@pytest.mark.parametrize("damage", ["garbage", "wrong_offset", "wrong_id", "other_file"])
async def test_a_stale_or_damaged_index_is_verified_and_rebuilt_by_one_scan(store, damage):
    # Invariant INDEX-I2: the entry at the recorded offset must carry the recorded id and digest.
    sess = store.session("s")
    ids = await _turns(sess, 4)
    await _compact(sess, compaction("sum", ids[2], 10))
    read_context(sess.path)
    index = Path(sess.path + ".index")
    obj = json.loads(index.read_text())
    if damage == "garbage":
        index.write_text("{not json")
    else:
        if damage == "wrong_offset":
            obj["mark"]["comp_offset"] -= 7
        elif damage == "wrong_id":
            obj["mark"]["kept_id"] = "deadbeef"
        else:
            obj["file"][1] += 1
        index.write_text(json.dumps(obj))
    got = read_context(sess.path)
    assert not got.used_index and got.context == _full(sess.path)
    assert read_context(sess.path).used_index


async def test_a_leaf_on_a_branch_older_than_the_compaction_falls_back_to_the_full_file(store):
    sess = store.session("s")
    ids = await _turns(sess, 4)
    await _compact(sess, compaction("sum", ids[2], 10))
    read_context(sess.path)
    await sess.append(
        {**message("user", "back on an old branch"), "parentId": ids[0]}, writer="delivery"
    )
    got = read_context(sess.path)
    assert not got.used_index
    assert got.context == _full(sess.path)
    assert all(m.source != "compaction_summary" for m in got.context.messages)


async def test_reading_the_context_never_changes_a_byte_of_the_transcript(store):
    sess = store.session("s")
    ids = await _turns(sess, 3)
    await _compact(sess, compaction("sum", ids[1], 10))
    before = Path(sess.path).read_bytes(), os.stat(sess.path).st_mtime_ns
    read_context(sess.path)
    read_context(sess.path)
    assert (Path(sess.path).read_bytes(), os.stat(sess.path).st_mtime_ns) == before


@st.composite
def histories(draw):
    """Linear turns, compactions naming an earlier entry on the path, and branches."""
    ops = draw(
        st.lists(
            st.one_of(
                st.just(("user",)),
                st.just(("assistant",)),
                st.tuples(st.just("compact"), st.integers(0, 10**6)),
                st.tuples(st.just("branch"), st.integers(0, 10**6)),
                st.just(("read",)),
            ),
            max_size=40,
        )
    )
    return ops


@settings(max_examples=150, deadline=None)
@given(histories())
def test_read_context_always_gives_the_messages_of_a_full_parse(ops):
    # Invariants INDEX-I1, INDEX-I2, INDEX-I3 under any mix of compactions and branches.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s.jsonl")
        lines = [
            json.dumps({"type": "session", "version": 3, "id": "s", "timestamp": "t", "cwd": "/"})
        ]
        parents: dict[str, str | None] = {}
        leaf: str | None = None
        n = 0

        def add(obj):
            nonlocal leaf, n
            n += 1
            eid = f"{n:08x}"
            lines.append(json.dumps({**obj, "id": eid, "parentId": leaf, "timestamp": "t"}))
            parents[eid] = leaf
            leaf = eid

        def on_path():
            out, cur = [], leaf
            while cur is not None:
                out.append(cur)
                cur = parents[cur]
            return out[::-1]

        for op in ops:
            if op[0] in ("user", "assistant"):
                add(message(op[0], f"{op[0]} {n}"))
            elif op[0] == "compact" and leaf is not None:
                path_ids = on_path()
                add(compaction(f"summary {n}", path_ids[op[1] % len(path_ids)], n))
            elif op[0] == "branch" and parents:
                leaf = sorted(parents)[op[1] % len(parents)]
            Path(path).write_text("\n".join(lines) + "\n")
            if op[0] == "read" or op is ops[-1]:
                assert read_context(path).context.messages == _full(path).messages
        if len(lines) > 1:
            assert read_context(path).context.messages == _full(path).messages
