"""The built-in scripted model: deterministic replies, tool calls, latency and errors, offline.

A script is a list of steps; each call of ``scripted/<script>`` plays the script's next step
(wrapping round after the last) through the same Turn as the real providers. Each conversation
(``ModelRequest.conversation``, the session) has its own position in each script, so concurrent
sessions running one multi-step script do not take each other's steps.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import tomllib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from ...errors import ConfigError, ProviderError, ProviderErrorKind
from ._base import Turn
from ._types import EventCallback, Message, ModelRequest, StopReason

__all__ = [
    "BUILTIN_SCRIPTS",
    "Script",
    "ScriptStep",
    "ScriptedProvider",
    "ScriptedStatistics",
    "ScriptedToolCall",
    "load_script",
    "parse_script",
    "scripted_summary",
]

API = "scripted"
_KINDS = frozenset(get_args(ProviderErrorKind))
_STOPS = frozenset({"stop", "length", "toolUse", "error", "aborted"})


@dataclass(frozen=True)
class ScriptedToolCall:
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class ScriptStep:
    """One scripted reply. Timing: ``first_token_delay_s`` before anything streams, then
    ``latency_s`` spread evenly over the chunks. ``error`` raises that ProviderError kind
    after the first-token delay, instead of replying."""

    text: str = ""
    thinking: str = ""
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    latency_s: float = 0.0
    first_token_delay_s: float = 0.0
    chunk_chars: int = 16
    error: ProviderErrorKind | None = None
    retry_after_s: float | None = None
    stop_reason: StopReason | None = None


Script = tuple[ScriptStep, ...]

BUILTIN_SCRIPTS: Mapping[str, Script] = {
    "fast": (ScriptStep(text="ok"),),
    #: The slow model of DESIGN.md §1: about 20 s before the first token.
    "slow": (ScriptStep(text="ok, after a long think", first_token_delay_s=20.0, latency_s=2.0),),
}

_STEP_KEYS = frozenset(ScriptStep.__dataclass_fields__)


def _number(value: object, key: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{source}: {key} must be a number of seconds >= 0", key=key)
    return float(value)


def _step(raw: object, where: str, source: str) -> ScriptStep:
    if isinstance(raw, str):
        return ScriptStep(text=raw)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: a step is a table or a string", key=where)
    unknown = set(raw) - _STEP_KEYS
    if unknown:
        known = ", ".join(sorted(_STEP_KEYS))
        raise ConfigError(f"{source}: unknown keys {sorted(unknown)}; use {known}", key=where)
    calls: list[ScriptedToolCall] = []
    for i, c in enumerate(raw.get("tool_calls") or []):
        if not isinstance(c, Mapping) or not isinstance(c.get("name"), str):
            raise ConfigError(f"{source}: a tool call needs a name", key=f"{where}.tool_calls[{i}]")
        args = c.get("arguments") or {}
        if not isinstance(args, Mapping):
            raise ConfigError(
                f"{source}: tool call arguments must be a table", key=f"{where}.tool_calls[{i}]"
            )
        calls.append(ScriptedToolCall(c["name"], dict(args), c.get("id")))
    error = raw.get("error")
    if error is not None and error not in _KINDS:
        kinds = ", ".join(sorted(_KINDS))
        raise ConfigError(f"{source}: unknown error kind {error!r}; use {kinds}", key=where)
    stop = raw.get("stop_reason")
    if stop is not None and stop not in _STOPS:
        raise ConfigError(f"{source}: unknown stop_reason {stop!r}", key=f"{where}.stop_reason")
    chunk = raw.get("chunk_chars", 16)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ConfigError(f"{source}: chunk_chars must be a positive integer", key=where)
    retry_after = raw.get("retry_after_s")
    return ScriptStep(
        text=str(raw.get("text", "")),
        thinking=str(raw.get("thinking", "")),
        tool_calls=tuple(calls),
        latency_s=_number(raw.get("latency_s", 0.0), f"{where}.latency_s", source),
        first_token_delay_s=_number(
            raw.get("first_token_delay_s", 0.0), f"{where}.first_token_delay_s", source
        ),
        chunk_chars=chunk,
        error=error,
        retry_after_s=None
        if retry_after is None
        else _number(retry_after, f"{where}.retry_after_s", source),
        stop_reason=stop,
    )


def parse_script(data: object, *, source: str = "<script>") -> Script:
    """A script from decoded JSON/TOML: a list of steps, or a table with ``steps``. A step is
    a table (keys as :class:`ScriptStep`) or a plain string (a text reply)."""
    steps = data.get("steps") if isinstance(data, Mapping) else data
    if isinstance(steps, str | bytes) or not isinstance(steps, Sequence) or not steps:
        raise ConfigError(f"{source}: a script is a non-empty list of steps", key="steps")
    return tuple(_step(s, f"steps[{i}]", source) for i, s in enumerate(steps))


def load_script(path: str | Path) -> Script:
    """Read a ``.json`` or ``.toml`` script file (TOML: ``[[steps]]`` tables)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
        data = tomllib.loads(raw.decode()) if p.suffix == ".toml" else json.loads(raw)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read script {p}: {exc}") from exc
    return parse_script(data, source=str(p))


@dataclass(frozen=True)
class ScriptedStatistics:
    calls: Mapping[str, int]


def _tokens(text: str) -> int:
    return (len(text) + 3) // 4


#: Conversations whose place in their script is remembered: far more than run at once, so only
#: one that has been idle longest forgets and starts its script over.
MAX_CONVERSATIONS = 4096


def scripted_summary(request: ModelRequest) -> str:
    """The scripted model's answer to a compaction summary request: deterministic, and it
    names what it summarised (its size and digest), so a test can check what the model saw."""
    text = "".join(str(m.get("content", "")) for m in request.messages)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"Scripted summary of {len(text)} characters of conversation (sha256 {digest})."


class ScriptedProvider:
    """Plays scripts by model name. ``sleep`` is injectable so tests never wait for real."""

    api = API

    def __init__(
        self,
        scripts: Mapping[str, Script] | None = None,
        *,
        name: str = "scripted",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now_s: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.scripts: dict[str, Script] = {**BUILTIN_SCRIPTS, **(scripts or {})}
        self._sleep = sleep
        self._now_s = now_s
        self._calls: dict[str, int] = {}  # calls per script, for statistics
        # per (script, conversation), least recently used first; bounded (GATEWAY-I4)
        self._cursor: OrderedDict[tuple[str, str | None], int] = OrderedDict()

    def step_for(self, model: str, conversation: str | None = None) -> ScriptStep:
        """The step the next call of ``model`` in ``conversation`` plays (and advance)."""
        script = self.scripts.get(model)
        if script is None:
            raise ProviderError(
                "bad_request",
                f"no script named {model!r} (known: {', '.join(sorted(self.scripts))})",
                provider=self.name,
                model=model,
            )
        self._calls[model] = self._calls.get(model, 0) + 1
        key = (model, conversation)
        n = self._cursor.pop(key, 0)
        self._cursor[key] = n + 1
        if len(self._cursor) > MAX_CONVERSATIONS:
            self._cursor.popitem(last=False)  # the conversation unused the longest starts over
        return script[n % len(script)]

    async def complete(
        self, model: str, request: ModelRequest, on_event: EventCallback | None = None
    ) -> Message:
        if request.purpose == "summary":
            step = ScriptStep(text=scripted_summary(request))
        else:
            step = self.step_for(model, request.conversation)
        turn = Turn(api=API, provider=self.name, model=model, on_event=on_event, now_s=self._now_s)
        if step.first_token_delay_s:
            await self._sleep(step.first_token_delay_s)
        if step.error is not None:
            raise ProviderError(
                step.error,
                "scripted failure",
                provider=self.name,
                model=model,
                retry_after_s=step.retry_after_s,
            )
        size = step.chunk_chars
        pieces: list[tuple[str, str]] = [
            *(
                ("thinking", step.thinking[i : i + size])
                for i in range(0, len(step.thinking), size)
            ),
            *(("text", step.text[i : i + size]) for i in range(0, len(step.text), size)),
        ]
        pause_s = step.latency_s / max(1, len(pieces) + len(step.tool_calls))
        for kind, piece in pieces:
            await (turn.thinking(piece) if kind == "thinking" else turn.text(piece))
            if pause_s:
                await self._sleep(pause_s)
        for i, call in enumerate(step.tool_calls):
            call_id = call.id or f"call_{self._calls[model]}_{i}"
            await turn.tool_call_started(i, call_id, call.name)
            turn.tool_call_arguments(i, json.dumps(dict(call.arguments)))
            await turn.tool_call_finished(i)
            if pause_s:
                await self._sleep(pause_s)
        context = json.dumps(list(request.messages), default=str) + request.system
        reply = (
            step.thinking
            + step.text
            + "".join(json.dumps(dict(c.arguments)) for c in step.tool_calls)
        )
        turn.usage(input=_tokens(context), output=_tokens(reply))
        turn.stop(step.stop_reason or ("toolUse" if step.tool_calls else "stop"))
        return await turn.finish()

    def statistics(self) -> ScriptedStatistics:
        return ScriptedStatistics(dict(self._calls))

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return (
            f"<ScriptedProvider {self.name!r} scripts={sorted(self.scripts)} calls={self._calls}>"
        )
