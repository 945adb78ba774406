"""The memory plugin on a real gateway: real transcripts, real SQLite, real turns."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
from datetime import UTC, datetime

from fencepost import SessionStore, compaction, custom_message, message, read_transcript
from fencepost.runtime.config import AgentConfig, StatePaths
from fencepost.runtime.cron import ManualClock
from fencepost.runtime.gateway.plugins._memory_index import _translate
from fencepost.runtime.gateway.plugins.memory import MemoryIndex, search_memory

from .conftest import TEST_DEBOUNCE_S, digests, memory_of


async def write_session(root, session_id, *texts, writer="operator"):
    store = SessionStore(root, durability="buffered")
    try:
        for text in texts:
            await store.session(session_id).append(message("user", text), writer=writer)
    finally:
        store.close()


def sessions_of(hits):
    return sorted({h.session_id for h in hits if h.kind == "session"})


async def test_the_index_catches_up_on_start_with_transcripts_and_notes_written_before(
    start_gateway, tmp_path
):
    paths = StatePaths(tmp_path)
    await write_session(paths.sessions, "before", "the kestrel nests under the bridge")
    notes = paths.workspace("ops")
    notes.mkdir(parents=True)
    (notes / "birds.md").write_text("# Birds\nA kestrel hovers before it strikes.\n")
    gw = await start_gateway()
    mem = memory_of(gw)
    await mem.wait_idle()
    hits = await mem.search("kestrel", agent="ops")
    assert sessions_of(hits) == ["before"]
    note = [h for h in hits if h.kind == "note"]
    assert len(note) == 1 and note[0].title == "Birds" and note[0].agent == "ops"
    session_hit = next(h for h in hits if h.kind == "session")
    assert session_hit.agent == ""  # never seen with an agent: shared
    assert session_hit.writer == "operator" and session_hit.role == "user"
    assert "[kestrel]" in session_hit.snippet


async def test_debounced_updates_pick_up_new_records_in_one_pass_after_the_delay(
    start_gateway, tmp_path
):
    """Invariant MEMORY-I5."""
    clock = ManualClock(datetime(2025, 1, 1, tzinfo=UTC))
    gw = await start_gateway(clock=clock)
    mem = memory_of(gw)
    await mem.wait_idle()
    syncs, sleepers = mem.statistics().syncs, clock.sleepers  # the scheduler sleeps too
    session = gw.store.session("live")
    await session.append(message("user", "first osprey"), writer="operator")
    await session.append(custom_message("note", "second osprey"), writer="operator")
    async with session.attempt("compact") as attempt:  # the lease holder's kind (STORE-I14)
        summary = compaction("third osprey summary", "00000000", 10)
        await attempt.append(summary, writer="compaction")
    for _ in range(5):
        await asyncio.sleep(0)
    assert await mem.search("osprey") == []  # not before the debounce delay
    assert clock.sleepers == sleepers + 1  # one pending sync for the session, however many events
    clock.advance(TEST_DEBOUNCE_S)
    await mem.wait_idle()
    hits = await mem.search("osprey")
    assert sorted(h.role for h in hits) == ["compaction", "custom_message", "user"]
    assert mem.statistics().syncs == syncs + 1


async def test_search_finds_by_word_and_each_agent_sees_only_its_own_sessions(start_gateway):
    """Invariant MEMORY-I4."""
    gw = await start_gateway()
    assert (await gw.turn("ops-1", "ops", prompt="plan the kestrel migration")).ok
    assert (await gw.turn("dev-1", "dev", prompt="kestrel rollback drill")).ok
    await gw.store.session("shared").append(message("user", "kestrel census"), writer="operator")
    mem = memory_of(gw)
    await mem.wait_idle()
    assert sessions_of(await mem.search("kestrel", agent="ops")) == ["ops-1", "shared"]
    assert sessions_of(await mem.search("kestrel", agent="dev")) == ["dev-1", "shared"]
    assert sessions_of(await mem.search("kestrel")) == ["dev-1", "ops-1", "shared"]
    assert sessions_of(await mem.search("migration", agent="dev")) == []
    best = await mem.search("kestrel migration", agent="ops")
    assert best[0].session_id == "ops-1"  # more of the words ranks first
    assert best[0].score >= best[-1].score


async def test_a_shared_session_moves_to_the_first_agent_that_runs_a_turn_in_it(start_gateway):
    gw = await start_gateway()
    mem = memory_of(gw)
    await gw.store.session("s").append(message("user", "heron sighting"), writer="operator")
    await mem.wait_idle()
    assert [h.agent for h in await mem.search("heron")] == [""]
    assert (await gw.turn("s", "ops", prompt="more about the heron")).ok
    assert (await gw.turn("s", "dev", prompt="heron again")).ok
    await mem.wait_idle()
    assert {h.agent for h in await mem.search("heron")} == {"ops"}
    assert await mem.search("heron", agent="dev") == []


async def test_a_replaced_or_truncated_transcript_is_reindexed_from_the_start(
    start_gateway, tmp_path
):
    """Invariant MEMORY-I3."""
    paths = StatePaths(tmp_path)
    await write_session(paths.sessions, "a", "old falcon words")
    await write_session(paths.sessions, "b", "plover one", "plover two")
    gw = await start_gateway()
    await memory_of(gw).wait_idle()
    await gw.stop()
    # replace "a" with another file (new inode); truncate "b" to its first record
    await write_session(tmp_path / "other", "a", "new swift words")
    os.replace(tmp_path / "other" / "a.jsonl", paths.sessions / "a.jsonl")
    b = paths.sessions / "b.jsonl"
    first_end = read_transcript(str(b)).entries[0].end
    os.truncate(b, first_end)
    gw = await start_gateway()
    mem = memory_of(gw)
    await mem.wait_idle()
    assert await mem.search("falcon") == []
    assert sessions_of(await mem.search("swift")) == ["a"]
    assert [h.snippet for h in await mem.search("plover")] == ["[plover] one"]
    assert mem.statistics().reindexed == 2


def test_a_same_inode_rewrite_of_the_indexed_bytes_is_noticed(tmp_path):
    """Invariant MEMORY-I3: same file, same or larger size, different bytes before the mark."""
    path = tmp_path / "s.jsonl"
    header = b'{"type":"session","version":3,"id":"s","timestamp":"t","cwd":"/"}\n'
    line = b'{"type":"message","id":"%s","message":{"role":"user","content":"%s"}}\n'
    path.write_bytes(header + line % (b"00000001", b"gannet"))
    with MemoryIndex.open(tmp_path / "m.db") as index:
        index.sync_session("s", path)
        with open(path, "r+b") as f:  # the same inode, rewritten in place and grown
            f.write(header + line % (b"00000001", b"puffin") + line % (b"00000002", b"tern"))
        index.sync_session("s", path)
        assert index.search("gannet") == []
        assert [h.snippet for h in index.search("puffin OR tern")] in (
            ["[puffin]", "[tern]"],
            ["[tern]", "[puffin]"],
        )


def test_incremental_indexing_equals_indexing_the_whole_file_at_once(tmp_path):
    """Invariant MEMORY-I2: a torn last line waits; the offset covers exactly the rows."""
    path = tmp_path / "s.jsonl"
    header = b'{"type":"session","version":3,"id":"s","timestamp":"t","cwd":"/"}\n'
    lines = [
        b'{"type":"message","id":"%08x","message":{"role":"user","content":"wren %d"}}\n' % (i, i)
        for i in range(6)
    ]
    data = header + b"".join(lines) + b"not json at all\n"
    with MemoryIndex.open(tmp_path / "inc.db") as inc:
        for cut in (10, len(header) + 5, len(header) + len(lines[0]) + 7, len(data) - 3, len(data)):
            path.write_bytes(data[:cut])  # a writer's progress, including torn lines
            inc.sync_session("s", path)
        incremental = [(h.entry_id, h.line, h.snippet) for h in inc.search("wren", limit=50)]
        assert inc.statistics().reindexed == 0
    with MemoryIndex.open(tmp_path / "full.db") as full:
        full.sync_session("s", path)
        whole = [(h.entry_id, h.line, h.snippet) for h in full.search("wren", limit=50)]
    assert sorted(incremental) == sorted(whole)
    assert len(whole) == 6 and {n for _, n, _ in whole} == set(range(2, 8))


async def test_the_plugin_never_changes_a_transcript_byte(start_gateway, tmp_path):
    """Invariant MEMORY-I1."""
    paths = StatePaths(tmp_path)
    await write_session(paths.sessions, "one", "ibis", "stork")
    await write_session(paths.sessions, "two", "crane")
    (paths.sessions / "torn.jsonl").write_bytes(b'{"type":"session","version":3}\n{"type":"mess')
    files_before = sorted(os.listdir(paths.sessions))
    before = digests(paths.sessions)
    stats = {n: os.stat(paths.sessions / n).st_mtime_ns for n in before}
    gw = await start_gateway()
    mem = memory_of(gw)
    await mem.wait_idle()
    assert sessions_of(await mem.search("ibis crane")) == ["one", "two"]
    await gw.stop()
    assert digests(paths.sessions) == before
    assert {n: os.stat(paths.sessions / n).st_mtime_ns for n in before} == stats
    assert sorted(os.listdir(paths.sessions)) == files_before  # no lock, state or quarantine


async def test_debounced_passes_after_live_turns_leave_every_transcript_byte_alone(
    start_gateway, tmp_path
):
    """Invariant MEMORY-I1, on the live path: turns write, then the index reads."""
    clock = ManualClock(datetime(2025, 1, 1, tzinfo=UTC))
    gw = await start_gateway(clock=clock)
    mem = memory_of(gw)
    await mem.wait_idle()
    for i in range(3):
        assert (await gw.turn(f"t{i}", "ops", prompt=f"sandpiper {i}")).ok
    await gw.store.session("t0").append(message("user", "sandpiper note"), writer="operator")
    before = digests(tmp_path / "sessions")
    files_before = sorted(os.listdir(tmp_path / "sessions"))
    clock.advance(TEST_DEBOUNCE_S)
    await mem.wait_idle()
    assert sessions_of(await mem.search("sandpiper", agent="ops")) == ["t0", "t1", "t2"]
    assert digests(tmp_path / "sessions") == before
    assert sorted(os.listdir(tmp_path / "sessions")) == files_before


async def test_the_memory_search_tool_answers_inside_a_turn_with_the_agents_memory(
    start_gateway, tmp_path
):
    """Invariant MEMORY-I4: the tool searches as the calling agent."""
    paths = StatePaths(tmp_path)
    (paths.workspace("dev")).mkdir(parents=True)
    (paths.workspace("dev") / "secret.md").write_text("the kestrel password is hunter2\n")
    gw = await start_gateway()
    assert (await gw.turn("ops-old", "ops", prompt="we saw a kestrel at dawn")).ok
    await memory_of(gw).wait_idle()
    result = await gw.turn("ops-new", "ops", prompt="what birds?", model="scripted/recall")
    assert result.ok and result.reply == "found it"
    entries = [r.data for r in read_transcript(gw.store.session("ops-new").path).entries]
    tool_results = [
        e["message"] for e in entries if e.get("message", {}).get("role") == "toolResult"
    ]
    assert len(tool_results) == 1 and not tool_results[0]["isError"]
    answer = tool_results[0]["content"][0]["text"]
    assert "session ops-old" in answer and "[kestrel] at dawn" in answer
    assert "hunter2" not in answer  # dev's notes are not ops's memory


async def test_notes_are_indexed_again_after_a_turn_and_deleted_notes_leave(
    start_gateway, tmp_path
):
    paths = StatePaths(tmp_path)
    ws = paths.workspace("ops")
    ws.mkdir(parents=True)
    (ws / "a.md").write_text("lark\n")
    (ws / "b.md").write_text("finch\n")
    gw = await start_gateway()
    mem = memory_of(gw)
    await mem.wait_idle()
    (ws / "a.md").write_text("lark and robin, a longer note\n")
    (ws / "b.md").unlink()
    assert (await gw.turn("s", "ops", prompt="hello")).ok
    assert [h.kind for h in await mem.search("robin", agent="ops")] == ["note"]
    assert await mem.search("finch") == []


async def test_the_index_survives_a_restart_and_only_reads_what_was_appended(
    start_gateway, tmp_path
):
    gw = await start_gateway()
    assert (await gw.turn("s", "ops", prompt="magpie")).ok
    await memory_of(gw).wait_idle()
    await gw.stop()
    gw = await start_gateway()
    mem = memory_of(gw)
    await mem.wait_idle()
    assert sessions_of(await mem.search("magpie", agent="ops")) == ["s"]
    assert mem.statistics().reindexed == 0
    assert len(await mem.search("magpie")) == 1  # not indexed twice


async def test_search_memory_reads_the_index_without_a_gateway(start_gateway, tmp_path):
    gw = await start_gateway()
    assert (await gw.turn("s", "ops", prompt="puffin colony")).ok
    await memory_of(gw).wait_idle()
    await gw.stop()
    hits = search_memory(tmp_path, "puffin", agent="ops")
    assert sessions_of(hits) == ["s"]
    assert search_memory(tmp_path, "puffin", agent="dev") == []


def test_a_sqlite_without_fts5_is_a_clear_error():
    err = _translate(sqlite3.OperationalError("no such module: fts5"), "/x/memory.db")
    assert err.reason == "fts5_unavailable" and "FTS5" in str(err)


async def test_an_agent_added_by_a_reload_gets_its_notes_indexed_after_its_turns(
    start_gateway, tmp_path
):
    """docs/design/gateway.md, "Reloading the config": plugins see the agents in force."""
    gw = await start_gateway()
    mem = memory_of(gw)
    ws = StatePaths(tmp_path).workspace("scout")
    ws.mkdir(parents=True)
    (ws / "seen.md").write_text("a kingfisher by the weir\n")
    scout = AgentConfig(name="scout", model=gw.agents["ops"].model)
    result = await gw.reload(
        dataclasses.replace(gw.config, agents={**gw.config.agents, "scout": scout})
    )
    assert result.agents_added == ("scout",)
    assert (await gw.turn("s2", "scout", prompt="hello")).ok
    assert [h.kind for h in await mem.search("kingfisher", agent="scout")] == ["note"]
