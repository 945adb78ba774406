"""The built-in scripted model: deterministic, offline, through the same Turn as the real ones."""

from __future__ import annotations

import json

import pytest

from fencepost import ConfigError, ProviderError
from fencepost.runtime.providers import (
    ModelRequest,
    ProviderRegistry,
    ScriptedProvider,
    ScriptStep,
    complete,
    load_script,
    parse_script,
)

ASK = ModelRequest([{"role": "user", "content": "go"}])

TOOL_TURN = [
    {
        "thinking": "need a file",
        "text": "Reading.",
        "tool_calls": [{"name": "read", "arguments": {"path": "a"}}],
        "first_token_delay_s": 2.0,
        "latency_s": 1.0,
        "chunk_chars": 4,
    },
    "All done.",
]


async def test_a_script_streams_thinking_text_and_tool_calls_with_its_latency(sleep, events):
    provider = ScriptedProvider({"tools": parse_script(TOOL_TURN)}, sleep=sleep)
    msg = await provider.complete("tools", ASK, events)
    assert msg["content"] == [
        {"type": "thinking", "thinking": "need a file"},
        {"type": "text", "text": "Reading."},
        {"type": "toolCall", "id": "call_1_0", "name": "read", "arguments": {"path": "a"}},
    ]
    assert (msg["api"], msg["provider"], msg["model"]) == ("scripted", "scripted", "tools")
    assert msg["stopReason"] == "toolUse"
    assert msg["usage"]["input"] > 0 and msg["usage"]["output"] > 0
    assert events.names() == [
        "first_token",
        *["thinking_delta"] * 3,
        *["text_delta"] * 2,
        "tool_call",
    ]
    # first-token delay, then 1 s spread over 3 thinking + 2 text chunks + 1 tool call
    assert sleep.calls[0] == 2.0
    assert sum(sleep.calls[1:]) == pytest.approx(1.0)
    second = await provider.complete("tools", ASK)
    assert second["content"] == [{"type": "text", "text": "All done."}]
    assert second["stopReason"] == "stop"


async def test_a_script_wraps_round_after_its_last_step():
    provider = ScriptedProvider({"two": parse_script(["one", "two"])})
    texts = [(await provider.complete("two", ASK))["content"][0]["text"] for _ in range(3)]
    assert texts == ["one", "two", "one"]
    assert provider.statistics().calls == {"two": 3}


async def test_each_conversation_has_its_own_place_in_a_script():
    """Two sessions running one tool-then-answer script at the same time each get the tool call
    first and the answer second, however their calls interleave."""
    provider = ScriptedProvider({"two": parse_script(["tool", "answer"])})

    def ask(conversation):
        return ModelRequest([{"role": "user", "content": "go"}], conversation=conversation)

    order = ["a", "b", "b", "a", "a"]
    texts = [(await provider.complete("two", ask(c)))["content"][0]["text"] for c in order]
    assert texts == ["tool", "tool", "answer", "answer", "tool"]
    assert provider.statistics().calls == {"two": 5}


def test_places_in_a_script_are_kept_for_a_bounded_number_of_conversations():
    """Invariant GATEWAY-I4: memory does not grow with the sessions ever run (one isolated cron
    run is one conversation); the conversation idle longest forgets its place first."""
    from fencepost.runtime.providers._scripted import MAX_CONVERSATIONS

    provider = ScriptedProvider({"two": parse_script(["tool", "answer"])})
    provider.step_for("two", "old")
    for i in range(MAX_CONVERSATIONS):
        provider.step_for("two", f"run-{i}")
    assert len(provider._cursor) == MAX_CONVERSATIONS
    assert provider.step_for("two", f"run-{MAX_CONVERSATIONS - 1}").text == "answer"
    assert provider.step_for("two", "old").text == "tool"  # forgotten: starts over


async def test_an_error_step_raises_its_provider_error_after_the_first_token_delay(sleep):
    script = parse_script([{"error": "rate_limit", "retry_after_s": 3, "first_token_delay_s": 1}])
    provider = ScriptedProvider({"limited": script}, sleep=sleep)
    with pytest.raises(ProviderError) as err:
        await provider.complete("limited", ASK)
    assert (err.value.kind, err.value.retry_after_s, err.value.transient) == ("rate_limit", 3, True)
    assert sleep.calls == [1.0]


async def test_the_builtin_scripts_are_always_available_under_scripted(sleep):
    async with ProviderRegistry(sleep=sleep) as reg:
        fast = await complete(["scripted/fast"], ASK, providers=reg, sleep=sleep)
        slow = await complete(["scripted/slow"], ASK, providers=reg, sleep=sleep)
    assert fast.message["content"] == [{"type": "text", "text": "ok"}]
    assert str(slow.model) == "scripted/slow"
    assert sleep.calls[0] == 20.0  # the slow model of DESIGN.md section 1, without waiting


async def test_an_unknown_script_is_a_bad_request():
    with pytest.raises(ProviderError) as err:
        await ScriptedProvider().complete("nope", ASK)
    assert err.value.kind == "bad_request"
    assert "fast" in str(err.value)


def test_scripts_load_from_json_and_toml(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"steps": TOOL_TURN}))
    (tmp_path / "s.toml").write_text(
        """
[[steps]]
text = "Reading."
thinking = "need a file"
first_token_delay_s = 2.0
latency_s = 1.0
chunk_chars = 4
tool_calls = [{ name = "read", arguments = { path = "a" } }]

[[steps]]
text = "All done."
"""
    )
    from_json = load_script(tmp_path / "s.json")
    assert from_json == load_script(tmp_path / "s.toml")
    assert from_json[1] == ScriptStep(text="All done.")


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ([], "steps"),
        ("just text", "steps"),
        ([{"txet": "typo"}], "steps[0]"),
        ([{"error": "flaky"}], "steps[0]"),
        ([{"latency_s": -1}], "steps[0].latency_s"),
        ([{"tool_calls": [{"arguments": {}}]}], "steps[0].tool_calls[0]"),
        (["ok", {"chunk_chars": 0}], "steps[1]"),
    ],
)
def test_a_bad_script_is_refused_naming_the_step(data, key):
    with pytest.raises(ConfigError) as err:
        parse_script(data)
    assert err.value.key == key


def test_an_unreadable_script_file_is_a_config_error(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError):
        load_script(tmp_path / "bad.json")
    with pytest.raises(ConfigError):
        load_script(tmp_path / "missing.toml")
