"""Automatic compaction (docs/design/agent-runner.md COMPACT-*): pure decisions, exhaustively,
and the runner on real sessions with the scripted model."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fencepost import (
    ContextMessage,
    ModelContext,
    SessionStore,
    message,
    read_transcript,
    verify_transcript,
)
from fencepost.runtime.agent import (
    AgentSpec,
    CompactionSettings,
    context_tokens,
    estimate_tokens,
    plan_compaction,
    run_turn,
)
from fencepost.runtime.providers import ProviderRegistry, ScriptedProvider, ScriptStep

PREFIX = "The conversation history before this point was compacted into the following summary:\n\n"


class Recording:
    def __init__(self, inner):
        self.name, self.inner, self.requests = inner.name, inner, []

    async def complete(self, model, request, on_event=None):
        self.requests.append(request)
        return await self.inner.complete(model, request, on_event)

    async def aclose(self):
        await self.inner.aclose()


# ---- pure decisions ------------------------------------------------------------------------


def _msg(i, role, content, **extra):
    return ContextMessage(
        role, content, f"{i:08x}", "message", {"role": role, "content": content, **extra}
    )


@st.composite
def contexts(draw):
    """A context of whole turns: user, then rounds of tool calls with their results, a reply."""
    out: list[ContextMessage] = []
    if draw(st.booleans()):
        out.append(ContextMessage("user", PREFIX + "earlier", "c0000000", "compaction_summary"))
    for _ in range(draw(st.integers(0, 8))):
        out.append(_msg(len(out), "user", "u" * draw(st.integers(0, 400))))
        for _ in range(draw(st.integers(0, 3))):
            calls = [
                {"type": "toolCall", "id": f"t{len(out)}-{k}", "name": "x", "arguments": {}}
                for k in range(draw(st.integers(1, 3)))
            ]
            out.append(_msg(len(out), "assistant", calls))
            for c in calls:
                text = [{"type": "text", "text": "r" * draw(st.integers(0, 300))}]
                out.append(_msg(len(out), "toolResult", text, toolCallId=c["id"]))
        out.append(
            _msg(len(out), "assistant", [{"type": "text", "text": "a" * draw(st.integers(0, 400))}])
        )
    return ModelContext(tuple(out), None, None, None)


@settings(max_examples=400, deadline=None)
@given(contexts(), st.integers(0, 2000), st.integers(0, 1000), st.integers(0, 800))
def test_the_cut_point_never_splits_a_tool_call_from_its_result_and_keeps_the_recent_tail(
    ctx, window, reserve, keep
):
    # Invariant COMPACT-I1 (threshold) and COMPACT-I2 (cut at a turn boundary).
    cfg = CompactionSettings(context_window=window, reserve_tokens=reserve, keep_recent_tokens=keep)
    plan = plan_compaction(ctx, cfg)
    tokens = context_tokens(ctx.messages)
    if tokens <= cfg.threshold_tokens:
        assert plan is None
        return
    users = [
        i
        for i, m in enumerate(ctx.messages)
        if m.role == "user"
        and m.source == "message"
        and i > (1 if ctx.messages and ctx.messages[0].source == "compaction_summary" else 0)
    ]
    if not users:
        assert plan is None
        return
    assert plan is not None and plan.tokens_before == tokens
    kept = plan.kept
    assert kept[0].role == "user" and kept[0].entry_id == plan.first_kept_entry_id
    assert plan.summarize, "a compaction summarises something"
    called = {
        b["id"]
        for m in plan.summarize
        if m.role == "assistant"
        for b in m.content
        if b["type"] == "toolCall"
    }
    answered_later = {m.message.get("toolCallId") for m in kept if m.role == "toolResult"}
    assert not called & answered_later
    kept_tokens = sum(estimate_tokens(m) for m in kept)
    if kept_tokens < keep:  # keeping less than asked only when no boundary keeps enough
        assert kept[0].entry_id == ctx.messages[users[0]].entry_id
    else:  # the latest boundary that keeps enough: the next one would keep too little
        later = [i for i in users if ctx.messages[i].entry_id > plan.first_kept_entry_id]
        if later:
            assert sum(estimate_tokens(m) for m in ctx.messages[later[0] :]) < keep


def test_a_disabled_compaction_never_plans_unless_forced():
    ctx = ModelContext(
        (_msg(0, "user", "x" * 4000), _msg(1, "assistant", "y"), _msg(2, "user", "z")),
        None,
        None,
        None,
    )
    off = CompactionSettings(enabled=False, context_window=10, reserve_tokens=0)
    assert plan_compaction(ctx, off) is None
    forced = plan_compaction(ctx, off, force=True)
    assert forced is not None and forced.first_kept_entry_id == "00000002"


def test_the_estimate_is_chars_over_four_rounded_up_with_images_as_1200_tokens():
    assert estimate_tokens(_msg(0, "user", "abcde")) == 2
    image = [{"type": "image", "data": "..."}, {"type": "text", "text": "abcd"}]
    assert estimate_tokens(_msg(0, "user", image)) == 1201


# ---- the runner ----------------------------------------------------------------------------


SMALL = CompactionSettings(context_window=600, reserve_tokens=100, keep_recent_tokens=150)


async def _history(sess, turns):
    for i in range(turns):
        await sess.append(
            [
                message("user", f"hourly check {i}: " + "q" * 200),
                message("assistant", [{"type": "text", "text": f"report {i}: " + "a" * 200}]),
            ],
            writer="delivery",
        )


def _expected_context(path, prompt):
    """pi's compacted context, computed from the file: summary, then from firstKeptEntryId."""
    entries = read_transcript(path).entries
    comp = [r for r in entries if r.type == "compaction"][-1]
    start = next(i for i, r in enumerate(entries) if r.id == comp.data["firstKeptEntryId"])
    out = [{"role": "user", "content": PREFIX + comp.data["summary"]}]
    for r in entries[start:]:
        if r.type == "message":
            out.append(r.data["message"])
        if out[-1] == {"role": "user", "content": prompt}:
            return out  # the reply written after the call is not part of what it saw
    raise AssertionError("the prompt is not in the transcript")


async def test_a_session_past_its_budget_is_compacted_before_the_next_model_call(tmp_path):
    # Invariants COMPACT-I1, COMPACT-I3, COMPACT-I4.
    store = SessionStore(tmp_path, durability="buffered")
    sess = store.session("main")
    await _history(sess, 8)
    size_before = len((tmp_path / "main.jsonl").read_bytes())
    prefix_before = (tmp_path / "main.jsonl").read_bytes()
    rec = Recording(ScriptedProvider(scripts={"main": (ScriptStep(text="all quiet"),)}))
    providers = ProviderRegistry(providers={"scripted": rec})
    spec = AgentSpec(name="ops", model="scripted/main", compaction=SMALL)
    async with providers:
        result = await run_turn(sess, spec, providers=providers, run_id="r1", prompt="check now")
    assert result.ok and result.reply == "all quiet"
    summary_call, turn_call = rec.requests
    assert summary_call.purpose == "summary" and turn_call.purpose == "turn"
    assert "hourly check 0" in summary_call.messages[0]["content"]
    comp = [r for r in read_transcript(sess.path).entries if r.type == "compaction"]
    assert len(comp) == 1
    c = comp[0]
    assert c.stamp["writer"] == "compaction" and c.data["tokensBefore"] > SMALL.threshold_tokens
    assert c.data["summary"].startswith("Scripted summary of")
    assert list(turn_call.messages) == _expected_context(sess.path, "check now")
    # the kept tail: at least keep_recent_tokens verbatim, starting at a user message
    assert turn_call.messages[1]["role"] == "user"
    # Invariant COMPACT-I4: every byte of the history is still there, and it verifies.
    assert (tmp_path / "main.jsonl").read_bytes().startswith(prefix_before)
    assert size_before < len((tmp_path / "main.jsonl").read_bytes())
    report = verify_transcript(sess.path)
    assert report.ok, report.problems
    store.close()


async def test_a_session_under_its_budget_is_not_compacted(tmp_path):
    store = SessionStore(tmp_path, durability="buffered")
    sess = store.session("main")
    await _history(sess, 1)
    providers = ProviderRegistry(scripts={"main": (ScriptStep(text="ok"),)})
    async with providers:
        result = await run_turn(
            sess,
            AgentSpec(name="ops", model="scripted/main", compaction=SMALL),
            providers=providers,
            run_id="r1",
            prompt="hi",
        )
    assert result.ok
    assert not [r for r in read_transcript(sess.path).entries if r.type == "compaction"]
    store.close()


async def test_later_turns_build_on_the_last_summary_and_the_history_still_verifies(tmp_path):
    store = SessionStore(tmp_path, durability="buffered")
    sess = store.session("main")
    await _history(sess, 6)
    providers = ProviderRegistry(scripts={"main": (ScriptStep(text="r" * 300),)})
    spec = AgentSpec(name="ops", model="scripted/main", compaction=SMALL)
    async with providers:
        for i in range(6):
            result = await run_turn(
                sess, spec, providers=providers, run_id=f"r{i}", prompt=f"p{i} " + "x" * 200
            )
            assert result.ok
    comps = [r for r in read_transcript(sess.path).entries if r.type == "compaction"]
    assert len(comps) >= 2
    assert verify_transcript(sess.path).ok
    store.close()


# ---- the byte bound (COMPACT-I5) -------------------------------------------------------------


def test_many_small_messages_past_the_byte_bound_are_compacted_to_half_of_it_compact_i5():
    """Invariant COMPACT-I5: few tokens, many bytes (delivery mirrors of one-word replies): the
    token budget never trips, the byte bound does, and the kept tail spans at most half of it."""
    msgs = []
    for i in range(400):
        msgs += [_msg(2 * i, "user", "hb"), _msg(2 * i + 1, "assistant", "ok")]
    context = ModelContext(tuple(msgs), None, None, None)
    sizes = {m.entry_id: (len(msgs) - i) * 500 for i, m in enumerate(msgs)}  # 500 B a record
    bound = CompactionSettings(max_context_bytes=100_000)
    assert plan_compaction(context, bound) is None  # tokens alone: far under the budget
    plan = plan_compaction(context, bound, sizes=sizes)
    assert plan is not None
    kept_bytes = sizes[plan.first_kept_entry_id]
    assert 50_000 - 1000 <= kept_bytes <= 50_000
    assert plan.kept[0].role == "user"
    under = {k: v // 10 for k, v in sizes.items()}  # the same context in 40 KB: under the bound
    assert plan_compaction(context, bound, sizes=under) is None


async def test_a_turn_on_a_session_of_many_small_records_reads_a_bounded_span_compact_i5(tmp_path):
    """Invariant COMPACT-I5, on a real session: after the compaction, the next turn's context
    read starts at the first kept entry, and spans less than the bound."""
    from fencepost import read_context

    store = SessionStore(tmp_path, durability="buffered")
    sess = store.session("main")
    for _ in range(300):
        await sess.append(
            [message("user", "hb"), message("assistant", [{"type": "text", "text": "ok"}])],
            writer="delivery",
        )
    bound = CompactionSettings(max_context_bytes=64 * 1024)
    assert read_context(sess.path).size > bound.max_context_bytes
    providers = ProviderRegistry(scripts={"main": (ScriptStep(text="ok"),)})
    spec = AgentSpec(name="ops", model="scripted/main", compaction=bound)
    async with providers:
        result = await run_turn(sess, spec, providers=providers, run_id="r1", prompt="status?")
    assert result.ok
    assert [r.type for r in read_transcript(sess.path).entries].count("compaction") == 1
    read = read_context(sess.path)
    assert read.size - read.start_offset < bound.max_context_bytes
    assert verify_transcript(sess.path).ok
    store.close()
