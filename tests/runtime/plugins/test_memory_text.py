"""The memory index's pure decisions: what a record contributes, note sections, queries."""

from __future__ import annotations

from fencepost.runtime.gateway.plugins.memory import fts_query, indexable, note_sections


def stamped(record, writer="attempt"):
    return {
        **record,
        "id": "0badcafe",
        "timestamp": "2025-01-01T00:00:00.000Z",
        "fencepost": {"writer": writer, "run_id": "r", "epoch": 1, "seq": 1, "prev": None},
    }


def test_a_user_message_is_indexed_with_its_role_id_writer_and_timestamp():
    got = indexable(stamped({"type": "message", "message": {"role": "user", "content": "hi"}}))
    assert got is not None
    assert (got.role, got.text, got.entry_id, got.writer, got.timestamp) == (
        "user",
        "hi",
        "0badcafe",
        "attempt",
        "2025-01-01T00:00:00.000Z",
    )


def test_only_the_text_blocks_of_a_message_are_indexed():
    content = [
        {"type": "thinking", "thinking": "secret"},
        {"type": "text", "text": "disk is full"},
        {"type": "toolCall", "name": "current_time", "arguments": {}},
    ]
    got = indexable({"type": "message", "message": {"role": "assistant", "content": content}})
    assert got is not None and got.text == "disk is full" and got.writer is None


def test_custom_messages_and_summaries_are_indexed_and_bookkeeping_is_not():
    cm = indexable({"type": "custom_message", "customType": "x", "content": "announce"})
    comp = indexable(
        {
            "type": "compaction",
            "summary": "we fixed dns",
            "firstKeptEntryId": "a",
            "tokensBefore": 1,
        }
    )
    assert cm is not None and cm.role == "custom_message"
    assert comp is not None and comp.role == "compaction" and comp.text == "we fixed dns"
    assert indexable({"type": "custom", "customType": "model-snapshot", "data": {"a": 1}}) is None
    assert indexable({"type": "model_change", "provider": "p", "modelId": "m"}) is None
    assert indexable({"type": "message", "message": {"role": "user", "content": "   "}}) is None
    assert indexable({"type": "message", "message": "not a dict"}) is None


def test_a_note_is_cut_at_its_headings_but_not_inside_code_fences():
    text = "intro line\n# Disks\nsda is full\n```\n# not a heading\n```\n## Network\ndns ok\n"
    sections = note_sections(text)
    assert [(h, n) for h, _, n in sections] == [("", 1), ("Disks", 2), ("Network", 7)]
    assert "# not a heading" in sections[1][1]


def test_a_query_quotes_every_word_so_user_text_is_never_fts_syntax():
    assert fts_query('disk AND "full" NEAR(x)') == '"disk" OR "AND" OR "full" OR "NEAR" OR "x"'
    assert fts_query("kest* nest") == '"kest"* OR "nest"'
    assert fts_query("  ?!  ") is None
    assert fts_query("a a a") == '"a"'
