"""The attempt runner on real sessions with the scripted model (docs/design/agent-runner.md)."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from fencepost import SessionStore, custom, label, message, read_transcript, verify_transcript
from fencepost.runtime.agent import AgentSpec, Tool, ToolFailed, ToolRegistry, run_turn
from fencepost.runtime.providers import (
    ProviderRegistry,
    ScriptedProvider,
    ScriptedToolCall,
    ScriptStep,
)


class Recording:
    """A provider-edge wrapper: remembers every request, optionally acts during the call."""

    def __init__(self, inner, during=None):
        self.name = inner.name
        self.inner = inner
        self.requests = []
        self.during = during

    async def complete(self, model, request, on_event=None):
        self.requests.append(request)
        if self.during is not None:
            await self.during(len(self.requests))
        return await self.inner.complete(model, request, on_event)

    async def aclose(self):
        await self.inner.aclose()


def tool_step(*names, text=""):
    return ScriptStep(
        text=text,
        tool_calls=tuple(ScriptedToolCall(n, {}, id=f"call-{n}-{i}") for i, n in enumerate(names)),
    )


@pytest.fixture
def store(tmp_path):
    s = SessionStore(tmp_path / "sessions", durability="buffered", lock_timeout_s=5)
    yield s
    s.close()


def types_of(path):
    out = []
    for r in read_transcript(path).entries:
        d = r.data
        if d["type"] == "message":
            out.append(d["message"]["role"])
        elif d["type"] in ("custom", "custom_message"):
            out.append(f"{d['type']}:{d['customType']}")
        else:
            out.append(d["type"])
    return out


def writers_of(path):
    return [r.stamp["writer"] for r in read_transcript(path).entries]


def agent(**kw):
    tools = ToolRegistry().select(kw.pop("tools", []))
    return AgentSpec(name="ops", model=kw.pop("model", "scripted/main"), tools=tools, **kw)


async def test_a_text_reply_writes_snapshot_prompt_and_reply(store):
    providers = ProviderRegistry(scripts={"main": (ScriptStep(text="all good"),)})
    async with providers:
        result = await run_turn(
            store.session("s"), agent(), providers=providers, run_id="r1", prompt="status?"
        )
    assert result.ok and result.reply == "all good" and result.model == "scripted/main"
    assert result.usage["output"] > 0
    path = store.session("s").path
    assert types_of(path) == ["custom:model-snapshot", "user", "assistant"]
    assert writers_of(path) == ["attempt"] * 3
    assert verify_transcript(path).ok


async def test_the_snapshot_is_written_only_when_the_model_changes(store):
    providers = ProviderRegistry(
        scripts={"main": (ScriptStep(text="a"),), "other": (ScriptStep(text="b"),)}
    )
    async with providers:
        for model in ("scripted/main", "scripted/main", "scripted/other"):
            await run_turn(
                store.session("s"),
                agent(model=model),
                providers=providers,
                run_id=f"r-{model}-{id(object())}",
                prompt="hi",
            )
    kinds = types_of(store.session("s").path)
    assert kinds.count("custom:model-snapshot") == 2


async def test_a_five_step_tool_turn_with_cooperative_writers_in_every_call(store):
    """Invariants RUNNER-I1, LEASE-I6: writers in every model call, no takeover, tree order."""
    script = (*(tool_step("current_time") for _ in range(4)), ScriptStep(text="done"))
    others = SessionStore(store.root, durability="buffered")
    kinds = itertools.cycle(["model-snapshot", "metadata", "delivery", "heartbeat"])

    async def during(n):
        w = next(kinds)
        await others.session("s").append(custom("bg", {"call": n, "by": w}), writer=w)

    scripted = ScriptedProvider(scripts={"main": script})
    rec = Recording(scripted, during)
    async with ProviderRegistry(providers={"scripted": rec}) as providers:
        result = await run_turn(
            store.session("s"),
            agent(tools=["current_time"]),
            providers=providers,
            run_id="r1",
            prompt="check the time five times",
        )
    others.close()
    assert result.ok, result
    assert result.steps == 5 and len(rec.requests) == 5
    path = store.session("s").path
    step = ["custom:bg", "assistant", "toolResult"]
    assert types_of(path) == ["custom:model-snapshot", "user", *step * 4, "custom:bg", "assistant"]
    entries = read_transcript(path).entries
    assert [e.parent_id for e in entries[1:]] == [e.id for e in entries[:-1]]
    assert verify_transcript(path).ok


async def test_a_steering_message_joins_the_next_model_call(store):
    others = SessionStore(store.root, durability="buffered")

    async def during(n):
        if n == 1:
            await others.session("s").append(
                message("user", "also check backups"), writer="steering"
            )

    scripted = ScriptedProvider(
        scripts={"main": (tool_step("current_time"), ScriptStep(text="ok"))}
    )
    rec = Recording(scripted, during)
    async with ProviderRegistry(providers={"scripted": rec}) as providers:
        result = await run_turn(
            store.session("s"),
            agent(tools=["current_time"]),
            providers=providers,
            run_id="r1",
            prompt="review",
        )
    others.close()
    assert result.ok
    first, second = rec.requests
    assert "also check backups" not in str(first.messages)
    assert any(m.get("content") == "also check backups" for m in second.messages)


async def test_a_takeover_in_the_second_call_stops_the_run_without_trying_the_fallback(store):
    """Invariant RUNNER-I2, PROVIDER-I6 seen from the runner."""
    path = store.session("s").path

    async def during(n):
        if n == 2:  # another program appends to the transcript during the second call
            with open(path, "ab") as f:
                f.write(b'{"type":"custom","customType":"intruder","data":{},"id":"0000abcd"}\n')

    primary = Recording(
        ScriptedProvider(scripts={"main": (tool_step("current_time"), ScriptStep(text="final"))}),
        during,
    )
    fallback = Recording(
        ScriptedProvider({"b": (ScriptStep(text="from fallback"),)}, name="backup")
    )
    async with ProviderRegistry(providers={"scripted": primary, "backup": fallback}) as providers:
        result = await run_turn(
            store.session("s"),
            agent(tools=["current_time"], fallbacks=("backup/b",)),
            providers=providers,
            run_id="r1",
            prompt="go",
        )
    assert result.status == "takeover" and result.error_kind == "foreign_append"
    assert result.fence["reason"] == "foreign_append"
    assert result.reply == "final"  # kept in the result, not written
    assert fallback.requests == []
    assert b"final" not in Path(path).read_bytes()


async def test_a_server_error_falls_back_to_the_next_model(store):
    scripts = {
        "flaky": (ScriptStep(error="server_error"),),
        "steady": (ScriptStep(text="from steady"),),
    }
    async with ProviderRegistry(scripts=scripts) as providers:
        result = await run_turn(
            store.session("s"),
            agent(model="scripted/flaky", fallbacks=("scripted/steady",)),
            providers=providers,
            run_id="r1",
            prompt="go",
            retry=None,
        )
    assert result.ok and result.reply == "from steady" and result.model == "scripted/steady"
    assert "scripted/flaky" in result.failed_models


async def test_every_model_failing_is_an_error_result_not_an_exception(store):
    scripts = {"down": (ScriptStep(error="auth"),)}
    async with ProviderRegistry(scripts=scripts) as providers:
        result = await run_turn(
            store.session("s"),
            agent(model="scripted/down"),
            providers=providers,
            run_id="r1",
            prompt="go",
        )
    assert result.status == "error" and result.error_kind == "auth"
    assert types_of(store.session("s").path) == ["custom:model-snapshot", "user"]


async def test_a_failing_tool_becomes_an_error_result_and_the_turn_goes_on(store):
    async def broken(args, ctx):
        raise ToolFailed("the disk is on fire")

    async def crashing(args, ctx):
        raise KeyError("boom")

    tools = ToolRegistry([Tool("broken", "x", broken), Tool("crashing", "y", crashing)])
    spec = AgentSpec(name="ops", model="scripted/main", tools=tools.select(["broken", "crashing"]))
    script = (tool_step("broken", "crashing", "nonexistent"), ScriptStep(text="recovered"))
    async with ProviderRegistry(scripts={"main": script}) as providers:
        result = await run_turn(
            store.session("s"), spec, providers=providers, run_id="r1", prompt="go"
        )
    assert result.ok and result.reply == "recovered"
    results = [
        r.data["message"]
        for r in read_transcript(store.session("s").path).entries
        if r.data.get("message", {}).get("role") == "toolResult"
    ]
    assert [r["isError"] for r in results] == [True, True, True]
    assert "disk is on fire" in results[0]["content"][0]["text"]
    assert "KeyError" in results[1]["content"][0]["text"]
    assert "unknown tool" in results[2]["content"][0]["text"]


async def test_a_timeout_during_a_tool_leaves_no_orphaned_tool_call(store):
    """Invariant RUNNER-I3."""

    async def slow(args, ctx):
        await asyncio.sleep(30)
        return "never"

    tools = ToolRegistry([Tool("slow", "x", slow)])
    spec = AgentSpec(
        name="ops", model="scripted/main", tools=tools.select(["slow"]), tool_timeout_s=60
    )
    async with ProviderRegistry(scripts={"main": (tool_step("slow"),)}) as providers:
        result = await run_turn(
            store.session("s"), spec, providers=providers, run_id="r1", prompt="go", timeout_s=0.3
        )
    assert result.status == "timeout"
    entries = [
        r.data["message"]
        for r in read_transcript(store.session("s").path).entries
        if r.data["type"] == "message"
    ]
    assert [m["role"] for m in entries] == ["user", "assistant", "toolResult"]
    assert entries[-1]["isError"] and "interrupted" in entries[-1]["content"][0]["text"]
    assert store.session("s").lease_holder() is None


async def test_the_original_reports_cron_shape_completes_every_time(store):
    """../shared/origin/bug-report.txt at CI scale: a long prompt, a model that answers after a
    long delay, snapshot/metadata/mirror writers in the window. Invariant LEASE-I6."""
    others = SessionStore(store.root, durability="buffered")
    slow = (ScriptStep(text="ops review: all green", first_token_delay_s=0.3),)

    async def writers(n):
        s = others.session(current["id"])
        await s.append(custom("model-snapshot", {"provider": "scripted"}), writer="model-snapshot")
        leaf = read_transcript(s.path).entries[-1].id
        await s.append(label(leaf, "cron"), writer="metadata")
        await s.append(message("assistant", "mirror of last run"), writer="delivery")

    current = {}
    rec = Recording(ScriptedProvider(scripts={"slow": slow}), writers)
    async with ProviderRegistry(providers={"scripted": rec}) as providers:
        for i in range(3):
            current["id"] = f"cron-{i}"
            result = await run_turn(
                store.session(f"cron-{i}"),
                agent(model="scripted/slow"),
                providers=providers,
                run_id=f"run-{i}",
                prompt="daily ops review. " + "context " * 4000,
            )
            assert result.ok, result
            assert verify_transcript(store.session(f"cron-{i}").path).ok
    others.close()


async def test_cancelling_a_turn_releases_the_session(store):
    slow = (ScriptStep(text="x", first_token_delay_s=30),)
    async with ProviderRegistry(scripts={"slow": slow}) as providers:
        task = asyncio.create_task(
            run_turn(
                store.session("s"),
                agent(model="scripted/slow"),
                providers=providers,
                run_id="r1",
                prompt="go",
            )
        )
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert store.session("s").lease_holder() is None


async def test_an_unknown_model_is_refused_before_the_lease_is_taken(store):
    from fencepost import ConfigError

    async with ProviderRegistry() as providers:
        with pytest.raises(ConfigError, match="unknown provider"):
            await run_turn(
                store.session("s"),
                agent(model="nope/x"),
                providers=providers,
                run_id="r1",
                prompt="go",
            )
    assert not store.session("s").exists()


async def test_the_tools_of_a_step_share_one_budget_so_a_waiting_writer_gets_in(tmp_path):
    """Invariant RUNNER-I4: five slow tool calls in one step hold the write lock for at most the
    step's budget, so a cooperative writer whose lock timeout is longer than the budget (and far
    shorter than five tools) gets in; every call still has a result (RUNNER-I3)."""
    store = SessionStore(tmp_path / "sessions", durability="buffered", lock_timeout_s=1.5)
    ran = []

    async def slow(args, ctx):
        ran.append(len(ran))
        await asyncio.sleep(0.4)
        return "slept"

    tools = ToolRegistry([Tool("slow", "x", slow)])
    spec = AgentSpec(
        name="ops",
        model="scripted/main",
        tools=tools.select(["slow"]),
        tool_timeout_s=5,
        step_tools_timeout_s=1.0,
    )
    script = (tool_step(*["slow"] * 5), ScriptStep(text="done"))
    session = store.session("s")
    async with ProviderRegistry(scripts={"main": script}) as providers:
        turn = asyncio.create_task(
            run_turn(session, spec, providers=providers, run_id="r1", prompt="go")
        )
        while not ran:  # the tools have started: the turn holds the write lock
            await asyncio.sleep(0.01)
        await session.append(custom("delivery", {"n": 1}), writer="delivery")  # waits ≤ 1.5 s
        result = await turn
    assert result.ok and result.reply == "done"
    assert len(ran) == 3  # 0.4 s each: the third is cut at the 1 s budget, two never run
    results = [
        r.data["message"]
        for r in read_transcript(session.path).entries
        if r.data.get("message", {}).get("role") == "toolResult"
    ]
    assert [r["isError"] for r in results] == [False, False, True, True, True]
    assert "took longer than" in results[2]["content"][0]["text"]
    assert "used up their 1 s" in results[4]["content"][0]["text"]
    assert types_of(session.path)[-3:] == ["toolResult", "custom:delivery", "assistant"]
    store.close()


async def test_two_sessions_running_one_multi_step_script_at_once_each_play_it_in_order(store):
    """The runner names the conversation, so the scripted model keeps one place per session."""

    async def clock(args, ctx):
        await asyncio.sleep(0.05)  # the other session's call lands meanwhile
        return "12:00"

    tools = ToolRegistry([Tool("clock", "x", clock)])
    spec = AgentSpec(name="ops", model="scripted/main", tools=tools.select(["clock"]))
    script = (tool_step("clock"), ScriptStep(text="it is noon"))
    async with ProviderRegistry(scripts={"main": script}) as providers:
        results = await asyncio.gather(
            *(
                run_turn(store.session(s), spec, providers=providers, run_id=f"r-{s}", prompt="?")
                for s in ("a", "b")
            )
        )
    assert [(r.status, r.reply, r.steps) for r in results] == [("ok", "it is noon", 2)] * 2


def test_the_default_step_tool_budget_is_well_inside_the_default_lock_timeout():
    """Invariant RUNNER-I4 with the defaults: a cooperative writer that waits behind a step's
    tools (budget plus the writes around them) gets the lock before its own timeout."""
    from fencepost.core._store import DEFAULT_LOCK_TIMEOUT_S

    spec = AgentSpec(name="ops", model="scripted/main")
    assert spec.step_tools_timeout_s * 1.5 <= DEFAULT_LOCK_TIMEOUT_S
    assert spec.tool_timeout_s <= spec.step_tools_timeout_s
