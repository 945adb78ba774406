"""The Provider interface and the one path every implementation streams and answers through.

Every provider drives a :class:`Turn` with what arrives (text, thinking, tool-call fragments,
usage, the stop reason); the Turn sends the events and builds the assistant message. The
SDK stream is read through :func:`sdk_stream`, the single place SDK exceptions are translated.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from ...errors import ProviderError
from ._classify import translate_error
from ._types import (
    EventCallback,
    FirstTokenReceived,
    Message,
    ModelRequest,
    ProviderConfig,
    ProviderEvent,
    StopReason,
    TextStreamed,
    ThinkingStreamed,
    ToolCallReceived,
)

__all__ = ["Provider", "SdkProvider", "Turn", "sdk_stream", "text_of", "replayable"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Provider(Protocol):
    """A model provider. ``complete`` answers with one pi assistant message (usage filled in),
    streaming events to ``on_event`` as they arrive; failures are ProviderError."""

    name: str

    async def complete(
        self, model: str, request: ModelRequest, on_event: EventCallback | None = None
    ) -> Message: ...

    async def aclose(self) -> None: ...


@dataclass
class _ToolCallDraft:
    block: dict[str, Any]
    fragments: list[str] = field(default_factory=list)
    initial: dict[str, Any] = field(default_factory=dict)


@dataclass
class _WireCall:
    """A tool call as an OpenAI-compatible stream names it: its key in the Turn, and the id the
    server gave it (None until a fragment carries one)."""

    key: tuple[str, int]
    call_id: str | None


class Turn:
    """Accumulates one streamed reply into a pi assistant message, sending events on the way."""

    def __init__(
        self,
        *,
        api: str,
        provider: str,
        model: str,
        on_event: EventCallback | None,
        now_s: Callable[[], float] = time.time,
        monotonic_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.provider = provider
        self.model = model
        self._on_event = on_event
        self._now_s = now_s
        self._monotonic_s = monotonic_s
        self._started_s = monotonic_s()
        self._first_token = False
        self.content: list[dict[str, Any]] = []
        self._tools: dict[object, _ToolCallDraft] = {}
        self._wire_calls: list[_WireCall] = []  # in the order they started
        self._wire_by_index: dict[int, _WireCall] = {}  # the call an index last started
        self._wire_by_id: dict[str, _WireCall] = {}
        self._usage = {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0}
        self.stop_reason: StopReason | None = None
        self.error_message: str | None = None

    async def _emit(self, event: ProviderEvent) -> None:
        if self._on_event is not None:
            await self._on_event(event)

    async def _token(self) -> None:
        if not self._first_token:
            self._first_token = True
            await self._emit(FirstTokenReceived(self._monotonic_s() - self._started_s))

    def _block(self, kind: str, key: str) -> dict[str, Any]:
        if not self.content or self.content[-1].get("type") != kind:
            self.content.append({"type": kind, key: ""})
        return self.content[-1]

    async def text(self, delta: str) -> None:
        if delta:
            await self._token()
            self._block("text", "text")["text"] += delta
            await self._emit(TextStreamed(delta))

    async def thinking(self, delta: str) -> None:
        if delta:
            await self._token()
            self._block("thinking", "thinking")["thinking"] += delta
            await self._emit(ThinkingStreamed(delta))

    def thinking_signature(self, signature: str) -> None:
        self._block("thinking", "thinking")["thinkingSignature"] = signature

    def redacted_thinking(self, data: str) -> None:
        self.content.append(
            {"type": "thinking", "thinking": "", "thinkingSignature": data, "redacted": True}
        )

    async def tool_call_started(
        self, key: object, call_id: str | None, name: str, initial: dict[str, Any] | None = None
    ) -> None:
        if key in self._tools:  # some servers repeat the id on every fragment
            return
        await self._token()
        block = {
            "type": "toolCall",
            "id": call_id or f"call_{secrets.token_hex(6)}",
            "name": name,
            "arguments": {},
        }
        self.content.append(block)
        self._tools[key] = _ToolCallDraft(block, initial=dict(initial or {}))

    def tool_call_key(self, index: int | None, call_id: str | None) -> object:
        """The key of the tool call a fragment belongs to, for wire formats that name a call by
        a position which compatible servers sometimes leave out or repeat (OpenAI chat
        completions: ``delta.tool_calls[].index``). Pass the key to ``tool_call_started`` and
        ``tool_call_arguments``; a key seen for the first time is a new call."""
        # Invariant PROVIDER-I7: an index seen for the first time starts a call (the wire
        # format's rule, kept exactly); a fragment with an index already seen, or with none,
        # continues the call that index (or, without one, the stream) started last, unless it
        # carries an id different from that call's: then it belongs to the call with that id,
        # or starts a new one. So calls without an index, or sharing index 0, stay apart.
        call_id = call_id or None  # some servers send "" on continuation fragments
        if index is None:
            current = self._wire_calls[-1] if self._wire_calls else None
        else:
            current = self._wire_by_index.get(index)
        if current is not None:
            if call_id is None or call_id == current.call_id:
                return current.key
            known = self._wire_by_id.get(call_id)
            if known is not None:
                return known.key
        wire = _WireCall(("wire", len(self._wire_calls)), call_id)
        self._wire_calls.append(wire)
        if index is not None:
            self._wire_by_index[index] = wire
        if call_id is not None:
            self._wire_by_id.setdefault(call_id, wire)
        return wire.key

    def tool_call_arguments(self, key: object, fragment: str) -> None:
        draft = self._tools.get(key)
        if draft is None:
            raise self.malformed(f"arguments for tool call {key!r} before its start")
        draft.fragments.append(fragment)

    async def tool_call_finished(self, key: object) -> None:
        draft = self._tools.pop(key, None)
        if draft is None:
            return
        raw = "".join(draft.fragments)
        try:
            arguments = json.loads(raw) if raw.strip() else draft.initial
        except ValueError as exc:
            raise self.malformed(f"tool call {draft.block['name']!r}: bad JSON arguments") from exc
        if not isinstance(arguments, dict):
            raise self.malformed(f"tool call {draft.block['name']!r}: arguments are not an object")
        draft.block["arguments"] = arguments
        await self._emit(ToolCallReceived(draft.block["id"], draft.block["name"], arguments))

    def usage(
        self,
        *,
        input: int | None = None,
        output: int | None = None,
        cache_read: int | None = None,
        cache_write: int | None = None,
    ) -> None:
        """Record token counts; a later report of the same count replaces an earlier one."""
        for key, value in (
            ("input", input),
            ("output", output),
            ("cacheRead", cache_read),
            ("cacheWrite", cache_write),
        ):
            if value is not None:
                self._usage[key] = max(0, int(value))

    def stop(self, reason: StopReason, error_message: str | None = None) -> None:
        self.stop_reason = reason
        self.error_message = error_message

    def malformed(self, detail: str) -> ProviderError:
        return ProviderError("malformed_response", detail, provider=self.provider, model=self.model)

    async def finish(self) -> Message:
        """The assistant message. A stream that ended without a stop reason was cut short."""
        for key in list(self._tools):
            await self.tool_call_finished(key)
        if self.stop_reason is None:
            # Invariant PROVIDER-I3: a reply is returned only when the stream said it was complete.
            raise self.malformed("the stream ended before the reply was complete")
        if self.stop_reason not in ("error", "aborted") and any(
            b.get("type") == "toolCall" for b in self.content
        ):
            # Invariant PROVIDER-I8: a reply that carries tool calls asks for them to run, whatever
            # the server's finish reason ("stop" and "end_turn" are seen); a reply the provider
            # flagged (content filter, refusal) stays an error and is not replayed.
            self.stop_reason = "toolUse"
        usage = dict(self._usage)
        usage["totalTokens"] = sum(self._usage.values())
        message: Message = {
            "role": "assistant",
            "content": self.content,
            "api": self.api,
            "provider": self.provider,
            "model": self.model,
            "usage": usage,
            "stopReason": self.stop_reason,
            "timestamp": int(self._now_s() * 1000),
        }
        if self.error_message is not None:
            message["errorMessage"] = self.error_message
        return message


class SdkStream(Protocol[T_co]):
    """What both SDKs' ``AsyncStream`` offer."""

    def __aiter__(self) -> AsyncIterator[T_co]: ...

    async def close(self) -> None: ...


async def sdk_stream(
    open_stream: Callable[[], Awaitable[SdkStream[T]]],
    *,
    provider: str,
    model: str,
    now_s: Callable[[], float] = time.time,
) -> AsyncGenerator[T, None]:
    """Open an SDK stream and yield its items; SDK and transport failures come out as
    ProviderError (``from`` the original), anything else untouched. Use with
    ``contextlib.aclosing`` so the HTTP response is always closed."""
    try:
        stream = await open_stream()
        try:
            async for item in stream:
                yield item
        finally:
            await stream.close()
    except Exception as exc:
        # Invariant PROVIDER-I4: only provider failures become ProviderError; the rest propagate.
        error = translate_error(exc, provider=provider, model=model, now_s=now_s())
        if error is None or error is exc:
            raise
        raise error from exc


class SdkProvider(Generic[T]):
    """What the OpenAI and Anthropic providers share: an SDK client built from the config with the
    SDK's own retries off, and one stream per call, read through :func:`sdk_stream` into a
    :class:`Turn`. A subclass builds the client, opens the stream and handles one streamed item."""

    api: ClassVar[str]

    def __init__(
        self,
        config: ProviderConfig,
        *,
        env: Mapping[str, str] | None = None,
        now_s: Callable[[], float] = time.time,
    ) -> None:
        self.name = config.name
        self.config = config
        self._now_s = now_s
        # Invariant PROVIDER-I5: the SDK never retries on its own; our policy is the only one.
        self._client = self._make_client(
            api_key=config.api_key(env),
            base_url=config.base_url,
            timeout=config.timeout_s,
            max_retries=0,
        )

    def _make_client(self, **options: Any) -> Any:
        raise NotImplementedError

    async def _open_stream(self, model: str, request: ModelRequest) -> SdkStream[T]:
        raise NotImplementedError

    async def _handle(self, item: T, turn: Turn) -> None:
        raise NotImplementedError

    async def complete(
        self, model: str, request: ModelRequest, on_event: EventCallback | None = None
    ) -> Message:
        turn = Turn(
            api=self.api, provider=self.name, model=model, on_event=on_event, now_s=self._now_s
        )
        items = sdk_stream(
            lambda: self._open_stream(model, request),
            provider=self.name,
            model=model,
            now_s=self._now_s,
        )
        async with aclosing(items):
            async for item in items:
                await self._handle(item, turn)
        return await turn.finish()

    async def aclose(self) -> None:
        await self._client.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} base_url={self.config.base_url!r}>"


def text_of(content: object) -> str:
    """The text of a pi content value: a string, or the text blocks of a list, joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(b.get("text", ""))
            for b in content
            if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def replayable(messages: Iterable[Message]) -> Iterable[Message]:
    """The messages worth sending back to a model: failed or aborted replies are left out
    (pi's rule; their partial content would confuse the next call)."""
    for m in messages:
        if m.get("role") == "assistant" and m.get("stopReason") in ("error", "aborted"):
            continue
        yield m
