"""OpenAI-compatible chat completions (OpenAI, DeepSeek, DashScope, vLLM, Ollama, llama.cpp,
OpenRouter) through the official ``openai.AsyncOpenAI`` client, streaming."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

import openai
from openai.types.chat import ChatCompletionChunk

from ._base import SdkProvider, Turn, replayable, text_of
from ._types import ModelRequest, ProviderConfig, StopReason

__all__ = ["OpenAIProvider", "openai_messages", "openai_params"]

API = "openai-completions"

_FINISH: dict[str, StopReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "toolUse",
    "function_call": "toolUse",
    "content_filter": "error",
}
_EFFORT = {"minimal": "minimal", "low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh"}


def _user_content(content: object) -> object:
    if not isinstance(content, list):
        return str(content) if content is not None else ""
    parts: list[dict[str, Any]] = []
    for b in content:
        if not isinstance(b, dict):
            continue
        if b.get("type") == "text":
            parts.append({"type": "text", "text": str(b.get("text", ""))})
        elif b.get("type") == "image":
            url = f"data:{b.get('mimeType', 'image/png')};base64,{b.get('data', '')}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)  # plain strings suit every compatible server
    return parts


def openai_messages(request: ModelRequest) -> list[dict[str, Any]]:
    """Pure: pi messages as chat-completion messages (thinking is not sent back)."""
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    for m in replayable(request.messages):
        role = m.get("role")
        content = m.get("content")
        if role == "user":
            out.append({"role": "user", "content": _user_content(content)})
        elif role == "assistant":
            blocks = content if isinstance(content, list) else []
            calls = [
                {
                    "id": str(b.get("id")),
                    "type": "function",
                    "function": {
                        "name": str(b.get("name")),
                        "arguments": json.dumps(b.get("arguments") or {}),
                    },
                }
                for b in blocks
                if isinstance(b, dict) and b.get("type") == "toolCall"
            ]
            text = text_of(content)
            if not text and not calls:
                continue
            msg: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                msg["tool_calls"] = calls
            out.append(msg)
        elif role == "toolResult":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": str(m.get("toolCallId")),
                    "content": text_of(content),
                }
            )
        else:
            raise ValueError(f"not a pi message role: {role!r}")
    return out


def openai_params(model: str, request: ModelRequest, config: ProviderConfig) -> dict[str, Any]:
    """Pure: the keyword arguments of ``chat.completions.create`` for this request."""
    params: dict[str, Any] = {
        "model": model,
        "messages": openai_messages(request),
        "stream": True,
        "stream_options": {"include_usage": True},
        config.max_tokens_param: request.max_tokens,
    }
    if request.tools:
        params["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": dict(t.parameters),
                },
            }
            for t in request.tools
        ]
    if request.thinking and request.thinking != "off":
        params["reasoning_effort"] = _EFFORT[request.thinking]
    return params


def _extra(delta: object, *names: str) -> str:
    """Reasoning text that compatible servers add to a delta under non-standard names."""
    extra = getattr(delta, "model_extra", None) or {}
    for name in names:
        value = extra.get(name) if isinstance(extra, Mapping) else None
        if isinstance(value, str) and value:
            return value
    return ""


class OpenAIProvider(SdkProvider[ChatCompletionChunk]):
    """Chat completions over ``openai.AsyncOpenAI(base_url=...)``, SDK retries off."""

    api = API

    def _make_client(self, **options: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(**options)

    async def _open_stream(
        self, model: str, request: ModelRequest
    ) -> openai.AsyncStream[ChatCompletionChunk]:
        params = openai_params(model, request, self.config)
        timeout = request.timeout_s if request.timeout_s is not None else openai.NOT_GIVEN
        create = cast(Any, self._client.chat.completions.create)
        return cast(
            "openai.AsyncStream[ChatCompletionChunk]", await create(**params, timeout=timeout)
        )

    async def _handle(self, chunk: ChatCompletionChunk, turn: Turn) -> None:
        if chunk.usage is not None:
            details = chunk.usage.prompt_tokens_details
            cached = (details.cached_tokens or 0) if details else 0
            written = (getattr(details, "cache_write_tokens", None) or 0) if details else 0
            turn.usage(
                input=chunk.usage.prompt_tokens - cached - written,
                output=chunk.usage.completion_tokens,
                cache_read=cached,
                cache_write=written,
            )
        for choice in chunk.choices[:1]:
            delta = choice.delta
            await turn.thinking(_extra(delta, "reasoning_content", "reasoning"))
            await turn.text(delta.content or "")
            for call in delta.tool_calls or []:
                fn = call.function
                # Invariant PROVIDER-I7: calls are told apart by id when the index is missing
                # (the SDK reads a missing index as None) or repeated.
                key = turn.tool_call_key(getattr(call, "index", None), call.id)
                if call.id or (fn and fn.name):
                    await turn.tool_call_started(key, call.id, (fn and fn.name) or "")
                if fn and fn.arguments:
                    turn.tool_call_arguments(key, fn.arguments)
            if choice.finish_reason:
                reason = _FINISH.get(choice.finish_reason, "stop")
                note = "the provider's content filter stopped the reply"
                turn.stop(reason, note if choice.finish_reason == "content_filter" else None)
