"""Anthropic messages through the official ``anthropic.AsyncAnthropic`` client, streaming:
text, thinking (with signatures, so thinking replays), tool use, usage with cache tokens."""

from __future__ import annotations

from typing import Any, cast

import anthropic
from anthropic.types import RawMessageStreamEvent

from ._base import SdkProvider, Turn, replayable
from ._types import ModelRequest, StopReason

__all__ = ["AnthropicProvider", "anthropic_params", "thinking_budget_tokens"]

API = "anthropic-messages"

_STOP: dict[str, StopReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "toolUse",
    "refusal": "error",
}
#: Thinking budget per pi thinking level; the API wants at least 1024 and less than max_tokens.
_BUDGET = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
MIN_THINKING_BUDGET = 1024


def thinking_budget_tokens(level: str | None, max_tokens: int) -> int | None:
    """Pure: the thinking budget for a level, or None when thinking is off or cannot fit."""
    if not level or level == "off":
        return None
    budget = min(_BUDGET[level], max_tokens - 1)
    return budget if budget >= MIN_THINKING_BUDGET else None


def _blocks(content: object) -> list[dict[str, Any]]:
    """pi user / tool-result content as Anthropic content blocks (text and images)."""
    if not isinstance(content, list):
        return [{"type": "text", "text": str(content)}] if content else []
    out: list[dict[str, Any]] = []
    for b in content:
        if not isinstance(b, dict):
            continue
        if b.get("type") == "text" and b.get("text"):
            out.append({"type": "text", "text": str(b["text"])})
        elif b.get("type") == "image":
            source = {"type": "base64", "media_type": b.get("mimeType"), "data": b.get("data")}
            out.append({"type": "image", "source": source})
    return out


def _assistant_blocks(content: object) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for b in content if isinstance(content, list) else []:
        if not isinstance(b, dict):
            continue
        kind = b.get("type")
        if kind == "text" and b.get("text"):
            out.append({"type": "text", "text": str(b["text"])})
        elif kind == "thinking" and b.get("thinkingSignature"):
            # Thinking without a signature came from another provider: it cannot be replayed.
            if b.get("redacted"):
                out.append({"type": "redacted_thinking", "data": b["thinkingSignature"]})
            else:
                sig = b["thinkingSignature"]
                out.append(
                    {"type": "thinking", "thinking": b.get("thinking", ""), "signature": sig}
                )
        elif kind == "toolCall":
            out.append(
                {
                    "type": "tool_use",
                    "id": str(b.get("id")),
                    "name": str(b.get("name")),
                    "input": b.get("arguments") or {},
                }
            )
    return out


def anthropic_messages(request: ModelRequest) -> list[dict[str, Any]]:
    """Pure: pi messages as Anthropic messages. Consecutive tool results share one user turn."""
    out: list[dict[str, Any]] = []
    for m in replayable(request.messages):
        role = m.get("role")
        if role == "user":
            out.append({"role": "user", "content": _blocks(m.get("content")) or "(empty)"})
        elif role == "assistant":
            blocks = _assistant_blocks(m.get("content"))
            if blocks:
                out.append({"role": "assistant", "content": blocks})
        elif role == "toolResult":
            result = {
                "type": "tool_result",
                "tool_use_id": str(m.get("toolCallId")),
                "content": _blocks(m.get("content")),
                "is_error": bool(m.get("isError")),
            }
            last = out[-1] if out else None
            if last and last["role"] == "user" and last.get("_tool_results"):
                last["content"].append(result)
            else:
                out.append({"role": "user", "content": [result], "_tool_results": True})
        else:
            raise ValueError(f"not a pi message role: {role!r}")
    for m in out:
        m.pop("_tool_results", None)
    return out


def anthropic_params(model: str, request: ModelRequest) -> dict[str, Any]:
    """Pure: the keyword arguments of ``messages.create`` for this request."""
    params: dict[str, Any] = {
        "model": model,
        "messages": anthropic_messages(request),
        "max_tokens": request.max_tokens,
        "stream": True,
    }
    if request.system:
        params["system"] = request.system
    if request.tools:
        params["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
            for t in request.tools
        ]
    budget = thinking_budget_tokens(request.thinking, request.max_tokens)
    if budget is not None:
        params["thinking"] = {"type": "enabled", "budget_tokens": budget}
    return params


class AnthropicProvider(SdkProvider[RawMessageStreamEvent]):
    """Messages over ``anthropic.AsyncAnthropic(base_url=...)``, SDK retries off."""

    api = API

    def _make_client(self, **options: Any) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(**options)

    async def _open_stream(
        self, model: str, request: ModelRequest
    ) -> anthropic.AsyncStream[RawMessageStreamEvent]:
        params = anthropic_params(model, request)
        timeout = request.timeout_s if request.timeout_s is not None else anthropic.NOT_GIVEN
        create = cast(Any, self._client.messages.create)
        return cast(
            "anthropic.AsyncStream[RawMessageStreamEvent]",
            await create(**params, timeout=timeout),
        )

    async def _handle(self, event: RawMessageStreamEvent, turn: Turn) -> None:
        if event.type == "message_start":
            u = event.message.usage
            turn.usage(
                input=u.input_tokens,
                output=u.output_tokens,
                cache_read=u.cache_read_input_tokens,
                cache_write=u.cache_creation_input_tokens,
            )
        elif event.type == "content_block_start":
            block = event.content_block
            if block.type == "text":
                await turn.text(block.text)
            elif block.type == "thinking":
                await turn.thinking(block.thinking)
            elif block.type == "redacted_thinking":
                turn.redacted_thinking(block.data)
            elif block.type == "tool_use":
                initial = block.input if isinstance(block.input, dict) else None
                await turn.tool_call_started(event.index, block.id, block.name, initial)
        elif event.type == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta":
                await turn.text(delta.text)
            elif delta.type == "thinking_delta":
                await turn.thinking(delta.thinking)
            elif delta.type == "signature_delta":
                turn.thinking_signature(delta.signature)
            elif delta.type == "input_json_delta":
                turn.tool_call_arguments(event.index, delta.partial_json)
        elif event.type == "content_block_stop":
            await turn.tool_call_finished(event.index)
        elif event.type == "message_delta":
            u2 = event.usage
            turn.usage(
                input=u2.input_tokens,
                output=u2.output_tokens,
                cache_read=u2.cache_read_input_tokens,
                cache_write=u2.cache_creation_input_tokens,
            )
            reason = event.delta.stop_reason
            if reason:
                refused = "the model declined to answer" if reason == "refusal" else None
                turn.stop(_STOP.get(reason, "stop"), refused)
