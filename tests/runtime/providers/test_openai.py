"""The OpenAI-compatible provider: the real ``openai`` SDK against the loopback fake provider."""

from __future__ import annotations

import pytest

from fencepost import ProviderError
from fencepost.runtime.providers import (
    ModelRequest,
    OpenAIProvider,
    ProviderConfig,
    ProviderRegistry,
    ToolSpec,
    complete,
)
from fencepost.runtime.providers._base import Turn
from fencepost.runtime.providers._openai import API
from tests.helpers.fake_provider import Hang, Malformed, Reply, Status, StreamError, ToolCall

from .conftest import HANG_TIMEOUT_S, openai_config, recorded

WEATHER = ToolSpec(
    "weather",
    "Look up the weather",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)

HISTORY = [
    {"role": "user", "content": "what is the weather in Paris and Rome?", "timestamp": 1},
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "two cities", "thinkingSignature": "s"},
            {"type": "text", "text": "Checking."},
            {"type": "toolCall", "id": "call_a", "name": "weather", "arguments": {"city": "Paris"}},
        ],
        "stopReason": "toolUse",
    },
    {
        "role": "toolResult",
        "toolCallId": "call_a",
        "toolName": "weather",
        "content": [{"type": "text", "text": "sunny"}],
        "isError": False,
    },
    {"role": "assistant", "content": [{"type": "text", "text": "half"}], "stopReason": "error"},
    {"role": "user", "content": [{"type": "text", "text": "and "}, {"type": "text", "text": "?"}]},
]


@pytest.fixture
async def provider(fake):
    p = OpenAIProvider(openai_config(fake))
    yield p
    await p.aclose()


async def test_a_text_reply_streams_and_comes_back_as_a_pi_assistant_message(
    fake, provider, events
):
    fake.queue(Reply(text="Hello there, friend", cache_read_tokens=3))
    msg = await provider.complete(
        "gpt-x", ModelRequest([{"role": "user", "content": "hi"}]), events
    )
    assert msg["role"] == "assistant"
    assert msg["content"] == [{"type": "text", "text": "Hello there, friend"}]
    assert (msg["api"], msg["provider"], msg["model"]) == ("openai-completions", "oa", "gpt-x")
    assert msg["stopReason"] == "stop"
    assert msg["usage"] == {
        "input": 11,
        "output": 7,
        "cacheRead": 3,
        "cacheWrite": 0,
        "totalTokens": 21,
    }
    assert isinstance(msg["timestamp"], int)
    assert events.names()[0] == "first_token"
    assert events.text() == "Hello there, friend"
    assert len([n for n in events.names() if n == "text_delta"]) > 1  # it really streamed


async def test_the_sdk_sends_converted_messages_tools_and_asks_for_usage(fake, provider):
    fake.queue(Reply(text="ok"))
    request = ModelRequest(HISTORY, system="be brief", tools=[WEATHER], max_tokens=321)
    await provider.complete("gpt-x", request)
    sent = fake.requests[0]
    assert sent.path == "/v1/chat/completions"
    body = sent.body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 321
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Look up the weather",
                "parameters": dict(WEATHER.parameters),
            },
        }
    ]
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "what is the weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {"role": "user", "content": "and ?"},  # the failed reply is not replayed
    ]
    assert "reasoning_effort" not in body


async def test_a_multi_tool_turn_is_assembled_from_argument_fragments(fake, provider, events):
    calls = (ToolCall("weather", {"city": "Paris"}), ToolCall("weather", {"city": "Rome"}, "c2"))
    fake.queue(Reply(text="Let me look.", tool_calls=calls, chunk_chars=3))
    msg = await provider.complete("gpt-x", ModelRequest(HISTORY[:1], tools=[WEATHER]), events)
    assert msg["stopReason"] == "toolUse"
    assert msg["content"] == [
        {"type": "text", "text": "Let me look."},
        {"type": "toolCall", "id": "call_0", "name": "weather", "arguments": {"city": "Paris"}},
        {"type": "toolCall", "id": "c2", "name": "weather", "arguments": {"city": "Rome"}},
    ]
    received = [(e.id, e.arguments) for e in events.items if e.name == "tool_call"]
    assert received == [("call_0", {"city": "Paris"}), ("c2", {"city": "Rome"})]


async def test_reasoning_deltas_of_compatible_servers_become_thinking(fake, provider, events):
    fake.queue(Reply(thinking="let me think", text="42"))
    request = ModelRequest([{"role": "user", "content": "q"}], thinking="high")
    msg = await provider.complete("deepseek-r", request, events)
    assert msg["content"] == [
        {"type": "thinking", "thinking": "let me think"},
        {"type": "text", "text": "42"},
    ]
    assert "thinking_delta" in events.names()
    assert fake.requests[0].body["reasoning_effort"] == "high"


async def test_a_rate_limit_is_retried_after_its_retry_after_then_succeeds(fake, sleep):
    """PROVIDER-I5: one HTTP request per attempt; the SDK never retries on its own."""
    fake.queue(Status(429, headers={"retry-after": "7"}), Reply(text="fine"))
    async with ProviderRegistry([openai_config(fake)]) as reg:
        done = await complete(["oa/gpt-x"], ModelRequest(HISTORY[:1]), providers=reg, sleep=sleep)
    assert done.message["content"] == [{"type": "text", "text": "fine"}]
    assert [f.error.kind for f in done.failed] == ["rate_limit"]
    assert done.failed[0].error.retry_after_s == 7.0
    assert sleep.calls == [7.0]
    assert len(fake.requests) == 2
    assert {r.headers.get("x-stainless-retry-count") for r in fake.requests} == {"0"}


async def test_an_auth_error_is_not_retried(fake, sleep):
    """PROVIDER-I2: non-transient kinds are never retried."""
    fake.queue(Status(401, message="bad key"), Reply(text="never"))
    async with ProviderRegistry([openai_config(fake)]) as reg:
        with pytest.raises(ProviderError) as err:
            await complete(["oa/gpt-x"], ModelRequest(HISTORY[:1]), providers=reg, sleep=sleep)
    assert err.value.kind == "auth"
    assert err.value.status == 401
    assert not err.value.transient
    assert "api_key_env" in str(err.value)
    assert sleep.calls == []
    assert len(fake.requests) == 1


async def test_a_context_overflow_is_classified_from_the_error_code(fake, provider):
    fake.queue(Status(400, "context_length_exceeded", "maximum context length is 8192 tokens"))
    with pytest.raises(ProviderError) as err:
        await provider.complete("gpt-x", ModelRequest(HISTORY[:1]))
    assert err.value.kind == "context_overflow"
    assert "compact" in str(err.value)


async def test_a_server_that_hangs_past_the_timeout_is_a_timeout(fake, provider):
    fake.queue(Hang())
    request = ModelRequest(HISTORY[:1], timeout_s=HANG_TIMEOUT_S)
    with pytest.raises(ProviderError) as err:
        await provider.complete("gpt-x", request)
    assert err.value.kind == "timeout"
    assert err.value.transient
    assert err.value.__cause__ is not None


async def test_a_stream_that_stalls_midway_is_a_timeout(fake, provider, events):
    fake.queue(Hang(after_events=3))
    request = ModelRequest(HISTORY[:1], timeout_s=HANG_TIMEOUT_S)
    with pytest.raises(ProviderError) as err:
        await provider.complete("gpt-x", request, events)
    assert err.value.kind == "timeout"


@pytest.mark.parametrize("mode", ["bad_json", "truncated", "cut"])
async def test_a_broken_stream_is_a_malformed_response(fake, provider, mode):
    """PROVIDER-I3 (no reply without a stop reason) and PROVIDER-I4 (translated from the SDK)."""
    fake.queue(Malformed(mode))
    with pytest.raises(ProviderError) as err:
        await provider.complete("gpt-x", ModelRequest(HISTORY[:1]))
    assert err.value.kind == "malformed_response"
    assert err.value.transient
    if mode != "truncated":
        assert err.value.__cause__ is not None


async def test_an_unreachable_server_is_a_connection_error(fake):
    port = fake.port
    fake.close()  # nothing listens on the port any more
    p = OpenAIProvider(ProviderConfig("gone", "openai", base_url=f"http://127.0.0.1:{port}/v1"))
    try:
        with pytest.raises(ProviderError) as err:
            await p.complete("m", ModelRequest(HISTORY[:1], timeout_s=HANG_TIMEOUT_S))
    finally:
        await p.aclose()
    assert err.value.kind in ("connection", "timeout")


async def test_an_error_chunk_in_the_middle_of_a_stream_is_classified_by_its_type(fake, provider):
    fake.queue(StreamError("server_error"))
    with pytest.raises(ProviderError) as err:
        await provider.complete("gpt-x", ModelRequest(HISTORY[:1]))
    assert err.value.kind == "server_error"
    assert err.value.status is None


# ---- stream shapes of compatible servers, replayed byte for byte (streams/*.sse) ----------------

PARIS_AND_ROME = [
    {"type": "toolCall", "id": "call_paris", "name": "weather", "arguments": {"city": "Paris"}},
    {"type": "toolCall", "id": "call_rome", "name": "weather", "arguments": {"city": "Rome"}},
]


@pytest.mark.parametrize(
    "shape",
    [
        "openai-calls-without-index.sse",  # fragments; the id only on each call's first one
        "openai-whole-calls-without-index.sse",  # each call whole in one chunk
    ],
)
async def test_parallel_tool_calls_without_an_index_are_told_apart_by_their_id(
    fake, provider, events, shape
):
    """PROVIDER-I7: a fragment without index that carries a new id starts a new call; one
    without id continues the call started last."""
    fake.queue(recorded(shape))
    msg = await provider.complete(
        "compat-model", ModelRequest(HISTORY[:1], tools=[WEATHER]), events
    )
    calls = [b for b in msg["content"] if b["type"] == "toolCall"]
    assert calls == PARIS_AND_ROME
    assert msg["stopReason"] == "toolUse"
    received = [(e.id, e.tool_name, e.arguments) for e in events.items if e.name == "tool_call"]
    assert received == [(c["id"], c["name"], c["arguments"]) for c in PARIS_AND_ROME]


async def test_two_tool_calls_sharing_index_0_are_told_apart_by_their_id(fake, provider):
    """PROVIDER-I7: a repeated index with a different id starts a new call, and the fragments
    after it (index 0, no id) continue that new call, not the first one."""
    fake.queue(recorded("openai-calls-sharing-index-0.sse"))
    msg = await provider.complete("compat-model", ModelRequest(HISTORY[:1], tools=[WEATHER]))
    assert msg["content"] == PARIS_AND_ROME
    assert msg["stopReason"] == "toolUse"
    assert msg["usage"]["input"] == 40


async def test_interleaved_indexed_fragments_still_go_to_the_call_of_their_index(fake, provider):
    """PROVIDER-I7: with distinct indexes the index decides, as the OpenAI wire format says,
    even when a server repeats the id on some fragments and not on others."""
    fake.queue(recorded("openai-interleaved-indexed-calls.sse"))
    msg = await provider.complete("compat-model", ModelRequest(HISTORY[:1], tools=[WEATHER]))
    assert msg["content"] == PARIS_AND_ROME
    assert msg["stopReason"] == "toolUse"


async def test_a_tool_call_ended_with_finish_reason_stop_is_tool_use(fake, provider):
    """PROVIDER-I8: the reply carries a tool call, so it is toolUse whatever finish_reason says."""
    fake.queue(recorded("openai-tool-call-finish-stop.sse"))
    msg = await provider.complete("compat-model", ModelRequest(HISTORY[:1], tools=[WEATHER]))
    assert msg["content"] == PARIS_AND_ROME[:1]
    assert msg["stopReason"] == "toolUse"
    assert "errorMessage" not in msg


@pytest.mark.parametrize(
    ("fragments", "calls"),
    [
        # the wire format's own case: distinct indexes, ids repeated on some fragments
        ([(0, "a"), (1, "b"), (0, "a"), (1, None), (0, None)], [0, 1, 0, 1, 0]),
        # no index, the id on every fragment, interleaved: the id decides
        ([(None, "a"), (None, "b"), (None, "a"), (None, "b")], [0, 1, 0, 1]),
        # index 0 shared, continuation fragments with an empty id
        ([(0, "a"), (0, ""), (0, "b"), (0, ""), (0, "b")], [0, 0, 1, 1, 1]),
        # a fragment without index after indexed calls continues the call started last
        ([(0, "a"), (1, "b"), (None, None)], [0, 1, 1]),
        # a repeated index with an id seen before goes back to that call
        ([(0, "a"), (0, "b"), (0, "a")], [0, 1, 0]),
        # no id and no index anywhere: nothing tells calls apart, one call (a non-guarantee)
        ([(None, None), (None, None)], [0, 0]),
    ],
)
def test_tool_call_keys_follow_the_index_and_split_on_a_new_id(fragments, calls):
    """PROVIDER-I7, pure: which call each (index, id) fragment lands in."""
    turn = Turn(api=API, provider="oa", model="m", on_event=None)
    keys = [turn.tool_call_key(index, call_id) for index, call_id in fragments]
    order = list(dict.fromkeys(keys))
    assert [order.index(k) for k in keys] == calls
