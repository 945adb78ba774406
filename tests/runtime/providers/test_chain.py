"""Fallback chains, the async-iterator facade, references and the registry."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest

from fencepost import ConfigError, ProviderError, SessionTakeoverError
from fencepost.core import build_context, message, parse_transcript
from fencepost.runtime.providers import (
    Completion,
    ModelRef,
    ModelRequest,
    ProviderConfig,
    ProviderRegistry,
    RetryPolicy,
    ScriptedProvider,
    complete,
    context_messages,
    parse_script,
    stream_complete,
)
from tests.helpers.fake_provider import Reply, Status

from .conftest import anthropic_config, openai_config

ASK = ModelRequest([{"role": "user", "content": "go"}])


class RecordingProvider:
    """A provider at the edge that raises what it is told to, and counts its calls."""

    def __init__(self, name: str, exc: BaseException | None = None) -> None:
        self.name = name
        self.exc = exc
        self.calls = 0

    async def complete(self, model, request, on_event=None):
        self.calls += 1
        if self.exc is not None:
            raise self.exc
        return {"role": "assistant", "content": [{"type": "text", "text": self.name}]}

    async def aclose(self) -> None:
        pass


async def test_a_5xx_that_outlasts_its_retries_falls_back_to_the_next_model(fake, sleep, events):
    fake.queue(Status(500), Status(502), Reply(text="from the fallback"))
    configs = [openai_config(fake, max_retries=1), anthropic_config(fake)]
    async with ProviderRegistry(configs) as reg:
        done = await complete(
            ["oa/primary", "an/backup"], ASK, providers=reg, sleep=sleep, on_event=events
        )
    assert done.model == ModelRef("an", "backup")
    assert done.fell_back
    assert done.message["provider"] == "an"
    assert done.message["content"] == [{"type": "text", "text": "from the fallback"}]
    assert [(str(f.model), f.attempt, f.error.status) for f in done.failed] == [
        ("oa/primary", 1, 500),
        ("oa/primary", 2, 502),
    ]
    assert [r.path for r in fake.requests] == ["/v1/chat/completions"] * 2 + ["/v1/messages"]
    failed = [e for e in events.items if e.name == "attempt_failed"]
    assert [e.retry_in_s is None for e in failed] == [False, True]  # retried, then moved on


async def test_an_auth_error_moves_to_the_fallback_without_retrying(fake, sleep):
    fake.queue(Status(401), Reply(text="backup"))
    async with ProviderRegistry([openai_config(fake), anthropic_config(fake)]) as reg:
        done = await complete(["oa/a", "an/b"], ASK, providers=reg, sleep=sleep)
    assert [f.error.kind for f in done.failed] == ["auth"]
    assert sleep.calls == []
    assert str(done.model) == "an/b"


async def test_a_session_takeover_propagates_and_the_fallback_is_never_called(sleep):
    """PROVIDER-I6."""
    takeover = SessionTakeoverError("s1", "lease_superseded", "epoch 5 > 4", epoch_held=4)
    primary = RecordingProvider("primary", takeover)
    backup = RecordingProvider("backup")
    reg = ProviderRegistry(providers={"primary": primary, "backup": backup})
    with pytest.raises(SessionTakeoverError) as err:
        await complete(["primary/m", "backup/m"], ASK, providers=reg, sleep=sleep)
    assert err.value is takeover
    assert (primary.calls, backup.calls) == (1, 0)
    assert sleep.calls == []


async def test_a_session_takeover_raised_by_the_event_callback_mid_stream_propagates(fake, sleep):
    """PROVIDER-I4 and PROVIDER-I6, through a real SDK stream."""
    fake.queue(Reply(text="a long streamed reply"), Reply(text="never asked"))

    async def on_event(event):
        if event.name == "text_delta":
            raise SessionTakeoverError("s1", "foreign_append", "someone appended")

    async with ProviderRegistry([anthropic_config(fake), openai_config(fake)]) as reg:
        with pytest.raises(SessionTakeoverError):
            await complete(["an/a", "oa/b"], ASK, providers=reg, sleep=sleep, on_event=on_event)
    assert len(fake.requests) == 1


async def test_a_cancelled_call_propagates_the_cancellation_not_a_fallback(sleep):
    blocked = asyncio.Event()

    class Blocking(RecordingProvider):
        async def complete(self, model, request, on_event=None):
            self.calls += 1
            blocked.set()
            await asyncio.Event().wait()

    primary, backup = Blocking("primary"), RecordingProvider("backup")
    reg = ProviderRegistry(providers={"primary": primary, "backup": backup})
    task = asyncio.ensure_future(complete(["primary/m", "backup/m"], ASK, providers=reg))
    await blocked.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert backup.calls == 0


async def test_when_every_model_fails_the_last_error_is_raised_with_the_others_as_notes(sleep):
    scripts = {
        "down": parse_script([{"error": "server_error"}]),
        "bad": parse_script([{"error": "auth"}]),
    }
    async with ProviderRegistry(scripts=scripts, sleep=sleep) as reg:
        with pytest.raises(ProviderError) as err:
            await complete(
                ["scripted/down", "scripted/bad"],
                ASK,
                providers=reg,
                sleep=sleep,
                retry=RetryPolicy(max_attempts=2),
            )
    assert err.value.kind == "auth"
    notes = err.value.__notes__
    assert len(notes) == 2 and all("scripted/down" in n for n in notes)


async def test_stream_complete_yields_the_events_then_the_completion(sleep):
    script = parse_script([{"error": "overloaded"}, {"text": "streamed text", "chunk_chars": 5}])
    async with ProviderRegistry(scripts={"s": script}, sleep=sleep) as reg:
        items = []
        async with aclosing(stream_complete(["scripted/s"], ASK, providers=reg, sleep=sleep)) as it:
            async for item in it:
                items.append(item)
    assert [getattr(i, "name", "completion") for i in items] == [
        "attempt_failed",
        "first_token",
        "text_delta",
        "text_delta",
        "text_delta",
        "completion",
    ]
    assert isinstance(items[-1], Completion)
    assert items[-1].message["content"] == [{"type": "text", "text": "streamed text"}]


async def test_stream_complete_raises_what_complete_raises():
    takeover = SessionTakeoverError("s1", "deleted", "gone")
    reg = ProviderRegistry(providers={"p": RecordingProvider("p", takeover)})
    with pytest.raises(SessionTakeoverError):
        async with aclosing(stream_complete(["p/m"], ASK, providers=reg)) as it:
            async for _ in it:
                pass


async def test_leaving_stream_complete_early_cancels_the_call(sleep):
    script = parse_script([{"text": "x" * 50, "chunk_chars": 1, "latency_s": 50}])
    slept = []

    async def real_short_sleep(seconds):
        slept.append(seconds)
        await asyncio.sleep(0)

    provider = ScriptedProvider({"long": script}, sleep=real_short_sleep)
    reg = ProviderRegistry(providers={"scripted": provider})
    async with aclosing(stream_complete(["scripted/long"], ASK, providers=reg)) as it:
        async for item in it:
            if getattr(item, "name", "") == "text_delta":
                break
    await asyncio.sleep(0)
    assert len(slept) < 50


@pytest.mark.parametrize(
    ("ref", "provider", "model"),
    [
        ("openai/gpt-4o", "openai", "gpt-4o"),
        ("openrouter/meta/llama-3", "openrouter", "meta/llama-3"),
        ("scripted/slow", "scripted", "slow"),
    ],
)
def test_a_model_reference_splits_on_the_first_slash(ref, provider, model):
    parsed = ModelRef.parse(ref)
    assert (parsed.provider, parsed.model) == (provider, model)
    assert str(parsed) == ref


@pytest.mark.parametrize("ref", ["", "gpt-4o", "/gpt", "openai/", " /x", 42])
def test_a_bad_model_reference_is_a_config_error(ref):
    with pytest.raises(ConfigError, match="provider/model"):
        ModelRef.parse(ref)


async def test_the_registry_refuses_unknown_providers_scripts_and_missing_keys_when_given():
    remote = ProviderConfig(
        "cloud", "anthropic", base_url="https://api.example.invalid", api_key_env="CLOUD_KEY"
    )
    async with ProviderRegistry([remote], env={}) as reg:
        with pytest.raises(ConfigError, match="unknown provider 'nope'"):
            reg.check("nope/m")
        with pytest.raises(ConfigError, match="no script named 'nope'"):
            reg.check("scripted/nope")
        with pytest.raises(ConfigError, match="CLOUD_KEY") as err:
            reg.check("cloud/claude")
        assert err.value.key == "providers.cloud.api_key_env"
        assert reg.check("scripted/fast") == ModelRef("scripted", "fast")


async def test_the_registry_builds_lazily_reads_the_key_from_env_and_closes_what_it_built():
    remote = ProviderConfig("cloud", "openai", base_url="https://api.example.invalid/v1")
    reg = ProviderRegistry([remote], env={"OPENAI_API_KEY": "sk-test"})
    assert reg.statistics().built == ()
    provider = reg.get("cloud")
    assert reg.get("cloud") is provider
    assert reg.statistics().built == ("cloud",)
    assert "cloud" in repr(reg)
    await reg.aclose()
    assert reg.statistics().built == ()


def test_a_local_server_needs_no_key_and_a_remote_one_does():
    local = ProviderConfig("ollama", "openai", base_url="http://localhost:11434/v1")
    assert local.is_local and local.api_key({}) == "not-needed"
    assert ProviderConfig("v", "openai", base_url="http://[::1]:8000/v1").is_local
    remote = ProviderConfig("ds", "openai", base_url="https://api.deepseek.com", api_key_env="DS")
    assert not remote.is_local
    assert remote.api_key({"DS": "k"}) == "k"
    with pytest.raises(ConfigError, match="DS"):
        remote.api_key({})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "", "api": "openai"},
        {"name": "a/b", "api": "openai"},
        {"name": "x", "api": "gemini"},
        {"name": "x", "api": "openai", "timeout_s": 0},
        {"name": "x", "api": "openai", "max_retries": -1},
    ],
)
def test_a_bad_provider_config_is_refused(kwargs):
    with pytest.raises(ConfigError):
        ProviderConfig(**kwargs)


def test_the_name_scripted_is_reserved_and_names_are_unique():
    with pytest.raises(ConfigError, match="reserved"):
        ProviderRegistry([ProviderConfig("scripted", "openai")])
    with pytest.raises(ConfigError, match="twice"):
        ProviderRegistry([ProviderConfig("a", "openai"), ProviderConfig("a", "anthropic")])


def test_context_messages_turns_a_transcript_context_into_pi_messages():
    entries = [
        {"type": "session", "version": 3, "id": "s", "timestamp": "t", "cwd": "/"},
        {"id": "a1", "parentId": None, **message("user", "hello")},
        {
            "id": "a2",
            "parentId": "a1",
            "type": "custom_message",
            "customType": "note",
            "content": "fyi",
        },
    ]
    import json

    data = "".join(json.dumps(e) + "\n" for e in entries).encode()
    msgs = context_messages(build_context(parse_transcript(data)))
    assert msgs == [
        {"role": "user", "content": "hello"},
        {"role": "user", "content": "fyi"},
    ]
