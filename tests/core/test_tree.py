"""Active path and model context (pi's buildSessionContext semantics)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from fencepost import active_path, build_context, parse_transcript
from fencepost.core import (
    branch_summary,
    compaction,
    custom,
    custom_message,
    label,
    message,
    model_change,
    thinking_level_change,
)
from fencepost.core._format import encode_record, make_header

HEADER = make_header("s", cwd="/", timestamp="2026-01-01T00:00:00.000Z")


def transcript(*entries: tuple[str, str | None, dict]):
    lines = [encode_record(HEADER)]
    for eid, parent, body in entries:
        lines.append(encode_record({**body, "id": eid, "parentId": parent, "timestamp": "t"}))
    return parse_transcript(b"\n".join(lines) + b"\n")


def test_the_active_path_follows_the_chosen_branch():
    t = transcript(
        ("a", None, message("user", "root")),
        ("b", "a", message("assistant", "left")),
        ("c", "a", message("assistant", "right")),
        ("d", "c", message("user", "more right")),
    )
    assert [r.id for r in active_path(t)] == ["a", "c", "d"]  # default leaf: the last entry
    assert [r.id for r in active_path(t, "b")] == ["a", "b"]
    assert active_path(t, "nope") == []


def test_a_compaction_replaces_what_came_before_its_first_kept_entry():
    t = transcript(
        ("a", None, message("user", "old question")),
        ("b", "a", message("assistant", "old answer")),
        ("c", "b", message("user", "kept question")),
        ("d", "c", message("assistant", "kept answer")),
        ("e", "d", compaction("we talked about X", "c", 5000)),
        ("f", "e", message("user", "new question")),
    )
    ctx = build_context(t)
    assert [m.source for m in ctx.messages] == [
        "compaction_summary",
        "message",
        "message",
        "message",
    ]
    assert "we talked about X" in ctx.messages[0].content
    assert [m.content for m in ctx.messages[1:]] == ["kept question", "kept answer", "new question"]
    assert ctx.leaf_id == "f"


def test_branch_summaries_and_custom_messages_join_the_context_and_custom_records_do_not():
    t = transcript(
        ("a", None, message("user", "q")),
        ("b", "a", branch_summary("x", "tried another way")),
        ("c", "b", custom("model-snapshot", {"m": 1})),
        ("d", "c", custom_message("subagent", "sub-agent finished")),
        ("e", "d", label("a", "start")),
        ("f", "e", model_change("openai", "gpt-4.1")),
        ("g", "f", thinking_level_change("low")),
        ("h", "g", {"type": "future_kind", "x": 1}),
        ("i", "h", message("assistant", "a", provider="anthropic", model="claude")),
    )
    ctx = build_context(t)
    assert [(m.role, m.source) for m in ctx.messages] == [
        ("user", "message"),
        ("user", "branch_summary"),
        ("user", "custom_message"),
        ("assistant", "message"),
    ]
    assert ctx.model == ("anthropic", "claude") and ctx.thinking_level == "low"
    assert ctx.messages[-1].message["provider"] == "anthropic"


def test_a_cycle_or_missing_parent_ends_the_walk_without_an_exception():
    t = transcript(("a", "b", message("user", "x")), ("b", "a", message("user", "y")))
    assert [r.id for r in active_path(t)] == ["a", "b"]


@given(st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=40), st.data())
def test_the_active_path_is_a_parent_linked_chain_ending_at_the_leaf(parents, data):
    entries = []
    for i, p in enumerate(parents):
        parent = None if i == 0 else f"{p % i:08x}"
        entries.append((f"{i:08x}", parent, message("user", str(i))))
    t = transcript(*entries)
    leaf = data.draw(st.sampled_from([e[0] for e in entries]))
    path = active_path(t, leaf)
    assert path[-1].id == leaf and path[0].parent_id is None
    for parent, child in itertools.pairwise(path):
        assert child.parent_id == parent.id
