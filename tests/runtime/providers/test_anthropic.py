"""The Anthropic provider: the real ``anthropic`` SDK against the loopback fake provider."""

from __future__ import annotations

import pytest

from fencepost import ProviderError
from fencepost.runtime.providers import (
    AnthropicProvider,
    ModelRequest,
    ProviderRegistry,
    ToolSpec,
    complete,
)
from fencepost.runtime.providers._anthropic import thinking_budget_tokens
from tests.helpers.fake_provider import Hang, Malformed, Reply, Status, StreamError, ToolCall

from .conftest import HANG_TIMEOUT_S, anthropic_config, recorded

READ = ToolSpec(
    "read", "Read a file", {"type": "object", "properties": {"path": {"type": "string"}}}
)
USER = {"role": "user", "content": "read both files", "timestamp": 1}


@pytest.fixture
async def provider(fake):
    p = AnthropicProvider(anthropic_config(fake))
    yield p
    await p.aclose()


async def test_a_text_reply_streams_with_usage_including_cache_tokens(fake, provider, events):
    fake.queue(Reply(text="Hi from claude", cache_read_tokens=5, cache_write_tokens=2))
    msg = await provider.complete("claude-x", ModelRequest([USER], system="sys"), events)
    assert msg["content"] == [{"type": "text", "text": "Hi from claude"}]
    assert (msg["api"], msg["provider"], msg["model"]) == ("anthropic-messages", "an", "claude-x")
    assert msg["stopReason"] == "stop"
    assert msg["usage"] == {
        "input": 11,
        "output": 7,
        "cacheRead": 5,
        "cacheWrite": 2,
        "totalTokens": 25,
    }
    assert events.names()[0] == "first_token"
    assert events.text() == "Hi from claude"
    body = fake.requests[0].body
    assert fake.requests[0].path == "/v1/messages"
    assert body["system"] == "sys"
    assert body["stream"] is True
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": USER["content"]}]}
    ]


async def test_thinking_blocks_keep_their_signature_and_stream_as_thinking(fake, provider, events):
    fake.queue(Reply(thinking="first, consider", signature="sig-xyz", text="done"))
    request = ModelRequest([USER], thinking="medium", max_tokens=16000)
    msg = await provider.complete("claude-x", request, events)
    assert msg["content"] == [
        {"type": "thinking", "thinking": "first, consider", "thinkingSignature": "sig-xyz"},
        {"type": "text", "text": "done"},
    ]
    assert "thinking_delta" in events.names()
    assert fake.requests[0].body["thinking"] == {"type": "enabled", "budget_tokens": 8192}


async def test_a_multi_tool_turn_and_its_results_round_trip_in_the_wire_format(fake, provider):
    calls = (
        ToolCall("read", {"path": "a.txt"}, "tu_1"),
        ToolCall("read", {"path": "b.txt"}, "tu_2"),
    )
    fake.queue(
        Reply(thinking="two reads", signature="s1", tool_calls=calls), Reply(text="both read")
    )
    first = await provider.complete("claude-x", ModelRequest([USER], tools=[READ]))
    assert first["stopReason"] == "toolUse"
    assert [b["type"] for b in first["content"]] == ["thinking", "toolCall", "toolCall"]
    assert first["content"][2] == {
        "type": "toolCall",
        "id": "tu_2",
        "name": "read",
        "arguments": {"path": "b.txt"},
    }
    results = [
        {
            "role": "toolResult",
            "toolCallId": call["id"],
            "toolName": "read",
            "content": [{"type": "text", "text": f"contents of {call['arguments']['path']}"}],
            "isError": call["id"] == "tu_2",
        }
        for call in first["content"][1:]
    ]
    second = await provider.complete(
        "claude-x", ModelRequest([USER, first, *results], tools=[READ])
    )
    assert second["content"] == [{"type": "text", "text": "both read"}]
    body = fake.requests[1].body
    assert body["tools"] == [
        {"name": "read", "description": "Read a file", "input_schema": dict(READ.parameters)}
    ]
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "two reads", "signature": "s1"},
            {"type": "tool_use", "id": "tu_1", "name": "read", "input": {"path": "a.txt"}},
            {"type": "tool_use", "id": "tu_2", "name": "read", "input": {"path": "b.txt"}},
        ],
    }
    assert body["messages"][2] == {  # both results in one user turn
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "tu_1",
                "content": [{"type": "text", "text": "contents of a.txt"}],
                "is_error": False,
            },
            {
                "type": "tool_result",
                "tool_use_id": "tu_2",
                "content": [{"type": "text", "text": "contents of b.txt"}],
                "is_error": True,
            },
        ],
    }


async def test_overloaded_is_retried_and_then_succeeds(fake, sleep):
    fake.queue(Status(529), Reply(text="back"))
    async with ProviderRegistry([anthropic_config(fake)]) as reg:
        done = await complete(
            ["an/claude-x"], ModelRequest([USER]), providers=reg, sleep=sleep, rand=lambda: 0.0
        )
    assert done.message["content"] == [{"type": "text", "text": "back"}]
    assert [(f.error.kind, f.error.status) for f in done.failed] == [("overloaded", 529)]
    assert sleep.calls == [0.5]  # base 1 s, equal jitter with rand 0: half of it
    assert len(fake.requests) == 2


async def test_an_error_event_in_the_middle_of_a_stream_is_classified_by_its_type(fake, provider):
    fake.queue(StreamError("overloaded_error"))
    with pytest.raises(ProviderError) as err:
        await provider.complete("claude-x", ModelRequest([USER]))
    assert err.value.kind == "overloaded"
    assert err.value.transient


async def test_bad_json_in_the_middle_of_a_stream_is_a_malformed_response(fake, provider):
    fake.queue(Malformed("bad_json"))
    with pytest.raises(ProviderError) as err:
        await provider.complete("claude-x", ModelRequest([USER]))
    assert err.value.kind == "malformed_response"
    assert isinstance(err.value.__cause__, ValueError)


async def test_a_stream_that_stalls_midway_is_a_timeout(fake, provider):
    """PROVIDER-I4: a stall mid-stream is a timeout, whether the SDK lets the raw transport
    timeout through (anthropic < 2.17) or wraps it in its own ``APITimeoutError`` (2.17+)."""
    fake.queue(Hang(after_events=4))
    with pytest.raises(ProviderError) as err:
        await provider.complete("claude-x", ModelRequest([USER], timeout_s=HANG_TIMEOUT_S))
    assert err.value.kind == "timeout"
    assert type(err.value.__cause__).__name__ in {"ReadTimeout", "APITimeoutError"}


@pytest.mark.parametrize("mode", ["truncated", "cut"])
async def test_a_truncated_stream_is_a_malformed_response(fake, provider, mode):
    """PROVIDER-I3."""
    fake.queue(Malformed(mode))
    with pytest.raises(ProviderError) as err:
        await provider.complete("claude-x", ModelRequest([USER]))
    assert err.value.kind == "malformed_response"


@pytest.mark.parametrize(
    ("level", "max_tokens", "budget"),
    [
        (None, 4096, None),
        ("off", 4096, None),
        ("minimal", 4096, 1024),
        ("high", 4096, 4095),
        ("xhigh", 64000, 32768),
        ("low", 1024, None),  # cannot fit the API's minimum below max_tokens
    ],
)
def test_the_thinking_budget_fits_below_max_tokens(level, max_tokens, budget):
    assert thinking_budget_tokens(level, max_tokens) == budget


async def test_tool_use_blocks_ended_with_end_turn_are_tool_use(fake, provider, events):
    """PROVIDER-I8: a compatible server's ``stop_reason: "end_turn"`` after tool_use blocks
    (replayed byte for byte from streams/) is still a toolUse reply."""
    fake.queue(recorded("anthropic-tool-use-end-turn.sse"))
    msg = await provider.complete("compat-claude", ModelRequest([USER], tools=[READ]), events)
    assert msg["content"] == [
        {"type": "text", "text": "Reading both."},
        {"type": "toolCall", "id": "toolu_a", "name": "read", "arguments": {"path": "a.txt"}},
        {"type": "toolCall", "id": "toolu_b", "name": "read", "arguments": {"path": "b.txt"}},
    ]
    assert msg["stopReason"] == "toolUse"
    received = [(e.id, e.arguments) for e in events.items if e.name == "tool_call"]
    assert received == [("toolu_a", {"path": "a.txt"}), ("toolu_b", {"path": "b.txt"})]
