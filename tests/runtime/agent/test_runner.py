"""The attempt runner on real sessions with the scripted model (docs/design/agent-runner.md)."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from fencepost import SessionStore, custom, label, message, read_transcript, verify_transcript
from fencepost.runtime.agent import (
    STEERING_MESSAGE,
    AgentSpec,
    Tool,
    ToolDenied,
    ToolFailed,
    ToolRegistry,
    run_turn,
)
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


async def test_tools_run_with_the_lock_released_so_writers_append_meanwhile_runner_i4(tmp_path):
    """Invariant RUNNER-I4: a tool that waits for five cooperative appends finishes only because
    they got the lock while it ran (its lock timeout, 1.5 s, is far shorter than the tool's)."""
    store = SessionStore(tmp_path / "sessions", durability="buffered", lock_timeout_s=1.5)
    appended = asyncio.Event()

    async def waits_for_writers(args, ctx):
        await asyncio.wait_for(appended.wait(), 10)
        return "the writers got in"

    tools = ToolRegistry([Tool("wait", "x", waits_for_writers)])
    spec = AgentSpec(name="ops", model="scripted/main", tools=tools.select(["wait"]))
    session = store.session("s")

    async def writers(n):
        if n == 1:
            asyncio.get_running_loop().call_later(0.2, lambda: asyncio.ensure_future(write()))

    async def write():
        for i in range(5):
            await session.append(custom("delivery", {"n": i}), writer="delivery")
        appended.set()

    scripted = ScriptedProvider(scripts={"main": (tool_step("wait"), ScriptStep(text="done"))})
    async with ProviderRegistry(providers={"scripted": Recording(scripted, writers)}) as providers:
        result = await run_turn(session, spec, providers=providers, run_id="r1", prompt="go")
    assert result.ok and result.reply == "done", result
    assert types_of(session.path)[2:] == [
        "assistant",
        *["custom:delivery"] * 5,
        "toolResult",
        "assistant",
    ]
    assert verify_transcript(session.path).ok
    assert session.fence_events() == []
    store.close()


async def test_each_tool_has_its_own_timeout_runner_i4(store):
    """Invariant RUNNER-I4: a tool's own ``timeout_s`` bounds it; the next tool still runs."""

    async def stuck(args, ctx):
        await asyncio.sleep(30)
        return "never"

    async def quick(args, ctx):
        return "quick"

    tools = ToolRegistry([Tool("stuck", "x", stuck, timeout_s=0.2), Tool("quick", "x", quick)])
    spec = AgentSpec(name="ops", model="scripted/main", tools=tools.select(["stuck", "quick"]))
    script = (tool_step("stuck", "quick"), ScriptStep(text="done"))
    async with ProviderRegistry(scripts={"main": script}) as providers:
        result = await run_turn(
            store.session("s"), spec, providers=providers, run_id="r1", prompt="go"
        )
    assert result.ok
    results = [
        r.data["message"]
        for r in read_transcript(store.session("s").path).entries
        if r.data.get("message", {}).get("role") == "toolResult"
    ]
    assert [(r["toolName"], r["isError"]) for r in results] == [("stuck", True), ("quick", False)]
    assert "took longer than 0.2 s" in results[0]["content"][0]["text"]


async def test_a_takeover_during_a_tool_is_named_and_keeps_the_tool_output(store):
    """Invariant RUNNER-I2 in the tool window: the fence runs before the results are written."""
    path = store.session("s").path

    async def meddles(args, ctx):
        with open(path, "ab") as f:  # another program appends while the tool runs
            f.write(b'{"type":"custom","customType":"intruder","data":{},"id":"0000abcd"}\n')
        return "tool output"

    tools = ToolRegistry([Tool("meddle", "x", meddles)])
    spec = AgentSpec(name="ops", model="scripted/main", tools=tools.select(["meddle"]))
    script = (tool_step("meddle"), ScriptStep(text="done"))
    async with ProviderRegistry(scripts={"main": script}) as providers:
        result = await run_turn(
            store.session("s"), spec, providers=providers, run_id="r1", prompt="go"
        )
    assert result.status == "takeover" and result.error_kind == "foreign_append"
    assert [m["role"] for m in result.unwritten] == ["toolResult"]
    assert result.unwritten[0]["content"][0]["text"] == "tool output"
    assert b"tool output" not in Path(path).read_bytes()


def steer(text, run_id="r1", sid="m1"):
    return custom(STEERING_MESSAGE, {"id": sid, "run_id": run_id, "text": text})


async def test_steering_sent_while_the_model_answers_is_answered_in_the_same_turn_runner_i5(store):
    """Invariant RUNNER-I5: the reply had no tool call, yet the turn takes one more step, with
    the steering message after the reply, in the file as in the model's context."""
    others = SessionStore(store.root, durability="buffered")

    async def during(n):
        if n == 1:
            await others.session("s").append(steer("also check backups"), writer="steering")
            await others.session("s").append(
                steer("not mine", run_id="r0", sid="m0"), writer="steering"
            )

    rec = Recording(ScriptedProvider(scripts={"main": (ScriptStep(text="answer"),)}), during)
    async with ProviderRegistry(providers={"scripted": rec}) as providers:
        result = await run_turn(
            store.session("s"), agent(), providers=providers, run_id="r1", prompt="review"
        )
    others.close()
    assert result.ok and result.steps == 2 and result.steering == ("m1",)
    last = rec.requests[1].messages
    assert [m["role"] for m in last[-3:]] == ["user", "assistant", "user"]
    assert last[-1]["content"] == "also check backups"
    path = store.session("s").path
    assert types_of(path) == [
        "custom:model-snapshot",
        "user",
        f"custom:{STEERING_MESSAGE}",
        f"custom:{STEERING_MESSAGE}",
        "assistant",
        "user",
        "assistant",
    ]
    assert verify_transcript(path).ok


async def test_steering_sent_during_a_tool_follows_its_result_runner_i5(store):
    """Invariant RUNNER-I5: a tool call is followed by its result, then the steering message."""
    session = store.session("s")

    async def slow(args, ctx):
        others = SessionStore(store.root, durability="buffered")
        await others.session("s").append(steer("and the disk?"), writer="steering")
        others.close()
        return "backups ok"

    tools = ToolRegistry([Tool("check", "x", slow)])
    spec = AgentSpec(name="ops", model="scripted/main", tools=tools.select(["check"]))
    rec = Recording(ScriptedProvider(scripts={"main": (tool_step("check"), ScriptStep(text="ok"))}))
    async with ProviderRegistry(providers={"scripted": rec}) as providers:
        result = await run_turn(session, spec, providers=providers, run_id="r1", prompt="go")
    assert result.ok and result.steps == 2 and result.steering == ("m1",)
    assert [m["role"] for m in rec.requests[1].messages[-3:]] == ["assistant", "toolResult", "user"]
    assert types_of(session.path)[2:] == [
        "assistant",
        f"custom:{STEERING_MESSAGE}",
        "toolResult",
        "user",
        "assistant",
    ]


async def test_steering_with_no_step_left_is_left_for_a_follow_up_turn_runner_i5(store):
    """Invariant RUNNER-I5: no step left to answer it, so the turn does not write it."""
    others = SessionStore(store.root, durability="buffered")

    async def during(n):
        await others.session("s").append(steer("one more thing"), writer="steering")

    rec = Recording(ScriptedProvider(scripts={"main": (ScriptStep(text="answer"),)}), during)
    async with ProviderRegistry(providers={"scripted": rec}) as providers:
        result = await run_turn(
            store.session("s"), agent(max_steps=1), providers=providers, run_id="r1", prompt="go"
        )
    others.close()
    assert result.ok and result.steering == ()
    assert types_of(store.session("s").path)[-2:] == [f"custom:{STEERING_MESSAGE}", "assistant"]


async def test_steps_running_out_with_tool_calls_pending_is_a_step_limit_error_runner_i6(store):
    """Invariant RUNNER-I6 (it was reported ok: the check could never fire)."""
    script = (tool_step("current_time"),)  # asks for the time forever
    async with ProviderRegistry(scripts={"main": script}) as providers:
        result = await run_turn(
            store.session("s"),
            agent(tools=["current_time"], max_steps=3),
            providers=providers,
            run_id="r1",
            prompt="go",
        )
    assert result.status == "error" and result.error_kind == "step_limit", result
    assert result.steps == 3
    assert types_of(store.session("s").path).count("toolResult") == 3  # every call answered


async def test_a_refused_call_is_told_once_and_asking_again_ends_the_turn_runner_i7(store):
    """Invariant RUNNER-I7: the model sees the refusal; the second refused call ends the turn
    cleanly (results paired, verify clean), however many steps are left."""

    async def refused(args, ctx):
        raise ToolDenied("deploy is not allowed for this agent; do not ask again")

    tools = ToolRegistry([Tool("deploy", "x", refused)])
    spec = AgentSpec(name="ops", model="scripted/main", tools=tools.select(["deploy"]), max_steps=8)
    async with ProviderRegistry(scripts={"main": (tool_step("deploy"),)}) as providers:
        result = await run_turn(
            store.session("s"), spec, providers=providers, run_id="r1", prompt="go"
        )
    assert result.status == "error" and result.error_kind == "denied", result
    assert result.steps == 2
    path = store.session("s").path
    assert types_of(path)[2:] == ["assistant", "toolResult"] * 2
    assert verify_transcript(path).ok


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


async def test_a_reply_cut_by_an_error_does_not_run_its_tool_calls_but_answers_them(store):
    """Invariant RUNNER-I3 with PROVIDER-I8: an ``error`` reply (a content filter) keeps its
    stop reason; its calls are not run, each gets an isError result, and the turn ends."""
    ran = []

    async def tool(args, ctx):
        ran.append(1)
        return "ran"

    tools = ToolRegistry([Tool("act", "x", tool)])
    spec = AgentSpec(name="ops", model="scripted/main", tools=tools.select(["act"]))
    cut = ScriptStep(tool_calls=(ScriptedToolCall("act", {}, id="c1"),), stop_reason="error")
    async with ProviderRegistry(scripts={"main": (cut,)}) as providers:
        result = await run_turn(
            store.session("s"), spec, providers=providers, run_id="r1", prompt="go"
        )
    assert ran == [] and result.steps == 1
    path = store.session("s").path
    assert types_of(path)[2:] == ["assistant", "toolResult"]
    last = read_transcript(path).entries[-1].data["message"]
    assert last["isError"] and "not run" in last["content"][0]["text"]


async def test_steering_counts_as_answered_only_once_the_reply_after_it_is_written_runner_i5(
    store,
):
    """Invariant RUNNER-I5: the call that should answer the steering fails, so the turn does
    not report it answered (the gateway's follow-up turn asks again)."""
    others = SessionStore(store.root, durability="buffered")

    async def during(n):
        if n == 1:
            await others.session("s").append(steer("and the disk?"), writer="steering")

    script = (ScriptStep(text="first"), ScriptStep(error="bad_request"))
    rec = Recording(ScriptedProvider(scripts={"main": script}), during)
    async with ProviderRegistry(providers={"scripted": rec}) as providers:
        result = await run_turn(
            store.session("s"), agent(), providers=providers, run_id="r1", prompt="go"
        )
    others.close()
    assert result.status == "error" and result.steering == ()
    assert types_of(store.session("s").path)[-2:] == ["assistant", "user"]
