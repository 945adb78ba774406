"""The attempt runner: one agent turn on one session, through the lease (DESIGN.md §4).

prep (lock held): read the active path, write the model snapshot and the prompt
loop:   model call (lock released) → fence → write the reply
        tool calls (lock released, each bounded) → fence → write the results
        steering sent meanwhile → written after them, and the model answers it
until the model stops or the step limit. See docs/design/agent-runner.md.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ...core import (
    MAX_RECORD_BYTES,
    Attempt,
    ContextRead,
    Record,
    Session,
    custom,
    custom_message,
    message,
    read_context,
    text_problem,
)
from ...errors import ConfigError, ProviderError, RecordTooLargeError, SessionTakeoverError
from ..providers import (
    ChainEvent,
    Completion,
    Message,
    ModelRef,
    ModelRequest,
    ProviderRegistry,
    RetryPolicy,
    ThinkingLevel,
    complete,
    context_messages,
)
from ._compaction import (
    CompactionSettings,
    bytes_after,
    compact,
    model_summariser,
    plan_compaction,
)
from ._tools import (
    Approver,
    Tool,
    ToolContext,
    ToolDenied,
    ToolFailed,
    ToolSource,
    check_arguments,
)

__all__ = [
    "STEERING_MESSAGE",
    "AgentSpec",
    "Arrivals",
    "TurnResult",
    "TurnStatus",
    "run_turn",
    "sort_arrivals",
]

TurnStatus = Literal["ok", "error", "timeout", "takeover"]

#: customType of the record that says which model the following turns use.
MODEL_SNAPSHOT = "model-snapshot"
#: customType of a system event delivered into a session (a heartbeat, a cron system_event).
SYSTEM_EVENT = "system-event"
#: customType of a message sent to a running turn (``Gateway.send``): ``{"id", "run_id",
#: "text"}``. The turn it names writes it as a user message where the model answers it
#: (Invariant RUNNER-I5); a turn that cannot leaves it to the sender's follow-up turn.
STEERING_MESSAGE = "fencepost.steering"


@dataclass(frozen=True)
class AgentSpec:
    """What an agent is: its model chain, prompt, tools and limits."""

    name: str
    model: str
    fallbacks: tuple[str, ...] = ()
    system_prompt: str = ""
    tools: Mapping[str, Tool] = field(default_factory=dict)
    #: Tools known only at run time (MCP servers), listed once per turn before the lease.
    tool_sources: tuple[ToolSource, ...] = ()
    workspace: Path | None = None
    max_steps: int = 8
    max_tokens: int = 4096
    thinking: ThinkingLevel | None = None
    #: How long one tool call may take unless the tool says (``Tool.timeout_s``). Tools run with
    #: the write lock released (Invariant RUNNER-I4), so this bounds the turn, not the writers.
    tool_timeout_s: float = 30.0
    http_allow: frozenset[str] = frozenset()
    #: When and how much to compact (the window comes with the model: ``[models."p/m"]``).
    compaction: CompactionSettings = field(default_factory=CompactionSettings)

    def chain(self, model: str | None = None, fallbacks: Sequence[str] | None = None) -> list[str]:
        return [model or self.model, *(self.fallbacks if fallbacks is None else fallbacks)]


@dataclass(frozen=True)
class TurnResult:
    """What a turn did. A takeover keeps the reply that could not be written (DESIGN.md §3)."""

    run_id: str
    session_id: str
    status: TurnStatus
    reply: str
    model: str | None
    usage: Mapping[str, int]
    steps: int
    records_written: int
    error_kind: str | None = None
    error_message: str | None = None
    fence: Mapping[str, Any] | None = None
    failed_models: tuple[str, ...] = ()
    elapsed_s: float = 0.0
    #: Ids of the steering messages (``STEERING_MESSAGE``) this turn wrote and gave the model.
    steering: tuple[str, ...] = ()
    #: Messages the turn produced but could not write (a takeover): the reply, tool results.
    unwritten: tuple[Message, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"


EventSink = Callable[[ChainEvent], Awaitable[None]]

#: What a user message record carries besides its text (id, parentId, timestamp, role, the
#: provenance stamp), with room to spare: a text that fits with this much left always fits.
MESSAGE_ENVELOPE_BYTES = 1024


def check_message_text(text: object, *, key: str = "text") -> str:
    """``text`` if the store would write it as a user message; else the error, before anything
    is written (Invariants FORMAT-I5, GATEWAY-I6; pure).

    ConfigError (``key`` named) for an empty text, a lone surrogate or a control character;
    RecordTooLargeError when the record would pass ``MAX_RECORD_BYTES``.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{key} must be a non-empty string", key=key)
    problem = text_problem(text)
    if problem is not None:
        raise ConfigError(f"{key} is not text a message can hold: {problem}", key=key)
    size = len(_JSON_STR.encode(text).encode("utf-8")) + MESSAGE_ENVELOPE_BYTES
    if size > MAX_RECORD_BYTES:
        raise RecordTooLargeError(size, MAX_RECORD_BYTES)
    return text


_JSON_STR = json.JSONEncoder(ensure_ascii=False)


@dataclass(frozen=True)
class Arrivals:
    """What cooperative writers appended during a released window, sorted for the runner."""

    #: Messages already in the file that join the context: user messages and custom messages
    #: appended directly (announcements), as pi messages.
    messages: tuple[Message, ...] = ()
    #: Steering for this run, ``(id, text)``: not in the context yet; the runner writes them.
    steering: tuple[tuple[str, str], ...] = ()

    def __add__(self, other: Arrivals) -> Arrivals:
        return Arrivals(self.messages + other.messages, self.steering + other.steering)


def sort_arrivals(arrived: Sequence[Record], run_id: str) -> Arrivals:
    """The records of a window that concern the model: messages that join the context, and
    the steering sent to ``run_id`` (Invariant RUNNER-I5). Pure."""
    messages: list[Message] = []
    steering: list[tuple[str, str]] = []
    for rec in arrived:
        data = rec.data
        kind = data.get("type")
        if kind == "message":
            msg = data.get("message")
            if isinstance(msg, dict) and msg.get("role") == "user":
                messages.append(dict(msg))
        elif kind == "custom_message":
            messages.append({"role": "user", "content": data.get("content", "")})
        elif kind == "custom" and data.get("customType") == STEERING_MESSAGE:
            body = data.get("data") or {}
            text = body.get("text")
            if body.get("run_id") == run_id and isinstance(text, str) and text.strip():
                steering.append((str(body.get("id")), text))
    return Arrivals(tuple(messages), tuple(steering))


def _text(msg: Message) -> str:
    content = msg.get("content")
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    return "".join(
        p.get("text", "") for p in parts if isinstance(p, dict) and p.get("type") == "text"
    )


def _last_snapshot(entries: Sequence[Record]) -> str | None:
    for rec in reversed(entries):
        if rec.data.get("type") == "custom" and rec.data.get("customType") == MODEL_SNAPSHOT:
            data = rec.data.get("data") or {}
            return f"{data.get('provider')}/{data.get('modelId')}"
    return None


class _Turn:
    """The mutable state of one run_turn call (kept out of the function for readability)."""

    def __init__(self) -> None:
        self.steps = 0
        self.written = 0
        self.reply = ""
        self.model: str | None = None
        self.usage: dict[str, int] = {}
        self.failed: list[str] = []
        self.open_calls: list[dict[str, Any]] = []  # tool calls written without results yet
        self.pending: list[Message] = []  # produced, not yet written (kept on a takeover)
        self.steering: list[str] = []  # ids of the steering messages written and answered
        self.steering_written: list[str] = []  # written; answered once the next reply is
        self.denials = 0
        self.last_had_calls = False
        self.prompt_written: asyncio.Event | None = None

    def add_usage(self, msg: Message) -> None:
        for key, value in (msg.get("usage") or {}).items():
            if isinstance(value, int):
                self.usage[key] = self.usage.get(key, 0) + value

    async def write(self, attempt: Attempt, entries: list[dict[str, Any]]) -> None:
        await attempt.append(entries)
        self.written += len(entries)


async def run_turn(
    session: Session,
    agent: AgentSpec,
    *,
    providers: ProviderRegistry,
    run_id: str,
    prompt: str | None = None,
    system_event: str | None = None,
    model: str | None = None,
    fallbacks: Sequence[str] | None = None,
    timeout_s: float = 600.0,
    wait_timeout_s: float | None = None,
    on_event: EventSink | None = None,
    retry: RetryPolicy | None = None,
    prompt_written: asyncio.Event | None = None,
    approve: Approver | None = None,
) -> TurnResult:
    """Run one agent turn on ``session`` and say what happened.

    Provider failures, timeouts and takeovers are results, not exceptions; a ConfigError (bad
    model reference), LeaseBusyError (``wait_timeout_s`` ran out) and cancellation propagate.
    ``prompt_written`` is set once the prompt (or system event) is in the transcript.
    ``approve`` decides the calls a tool's ``ask`` policy holds (None: they are denied).
    """
    if (prompt is None) == (system_event is None):
        raise ValueError("run_turn needs exactly one of prompt or system_event")
    chain = agent.chain(model, fallbacks)
    for ref in chain:
        providers.check(ref)  # refuse a reference that cannot work before taking the lease
    started = time.monotonic()
    tools = await _turn_tools(agent)  # before the lease: a server may take a while to start
    turn = _Turn()
    turn.prompt_written = prompt_written
    status: TurnStatus = "ok"
    error_kind: str | None = None
    error_message: str | None = None
    fence: dict[str, Any] | None = None
    async with session.attempt(run_id, wait_timeout_s=wait_timeout_s) as attempt:
        step = _Step(attempt, agent, tools, turn, approve)
        try:
            async with asyncio.timeout(timeout_s):
                await _loop(step, chain, providers, prompt, system_event, on_event, retry)
        except SessionTakeoverError as exc:
            # Invariant RUNNER-I2: fenced out, nothing more is written; the result keeps it.
            status, error_kind, error_message = "takeover", exc.reason, str(exc)
            fence = {
                "reason": exc.reason,
                "description": exc.description,
                "epoch_held": exc.epoch_held,
                "epoch_seen": exc.epoch_seen,
            }
        except ProviderError as exc:
            status, error_kind, error_message = "error", exc.kind, str(exc)
            await _close_open_calls(attempt, turn, f"the model call failed: {exc.kind}")
        except _Denied as exc:
            status, error_kind, error_message = "error", "denied", str(exc)
        except TimeoutError:
            status, error_kind = "timeout", "timeout"
            error_message = f"the turn took longer than {timeout_s:g} s"
            await _close_open_calls(attempt, turn, error_message)
        except asyncio.CancelledError:
            await _close_open_calls(attempt, turn, "the run was cancelled")
            raise
    if status == "ok" and turn.last_had_calls:
        # Invariant RUNNER-I6: the steps ran out with tool results the model never saw.
        status, error_kind = "error", "step_limit"
        error_message = f"the model still called tools after {agent.max_steps} steps (max_steps)"
    return TurnResult(
        run_id=run_id,
        session_id=session.session_id,
        status=status,
        reply=turn.reply,
        model=turn.model,
        usage=dict(turn.usage),
        steps=turn.steps,
        records_written=turn.written,
        error_kind=error_kind,
        error_message=error_message,
        fence=fence,
        failed_models=tuple(turn.failed),
        elapsed_s=time.monotonic() - started,
        steering=tuple(turn.steering),
        unwritten=tuple(turn.pending) if status == "takeover" else (),
    )


async def _turn_tools(agent: AgentSpec) -> dict[str, Tool]:
    """The agent's tools for this turn: its fixed ones, then what each source offers now."""
    tools = dict(agent.tools)
    listed = await asyncio.gather(*(source.tools() for source in agent.tool_sources))
    for tool in itertools.chain.from_iterable(listed):
        tools.setdefault(tool.name, tool)
    return tools


class _Denied(Exception):
    """The model asked again for a call that was refused: the turn ends (RUNNER-I7)."""


@dataclass
class _Step:
    """What every step of one turn needs."""

    attempt: Attempt
    agent: AgentSpec
    tools: Mapping[str, Tool]
    turn: _Turn
    approve: Approver | None


async def _loop(
    step: _Step,
    chain: list[str],
    providers: ProviderRegistry,
    prompt: str | None,
    system_event: str | None,
    on_event: EventSink | None,
    retry: RetryPolicy | None,
) -> None:
    attempt, agent, turn = step.attempt, step.agent, step.turn
    session = attempt.session
    read = _read_context(session)
    extra = len(agent.system_prompt) + len(prompt or system_event or "")
    plan = (
        None
        if read is None
        else plan_compaction(
            read.context, agent.compaction, extra_chars=extra, sizes=bytes_after(read)
        )
    )
    if plan is not None:
        # Invariant COMPACT-I1: a context past its budget is compacted before the model call.
        try:
            summarise = model_summariser(
                chain,
                providers,
                max_tokens=agent.max_tokens,
                conversation=session.session_id,
                retry=retry,
            )
            await compact(attempt, plan, summarise)
            turn.written += 1
            read = _read_context(session)
        except ProviderError:
            pass  # no summary: the turn goes on uncompacted (and may still fit)
    entries: Sequence[Record] = () if read is None else read.entries
    messages = [] if read is None else context_messages(read.context)
    # Prep, under the lease: the model snapshot when the model changed, then the prompt.
    prep: list[dict[str, Any]] = []
    primary = ModelRef.parse(chain[0])
    if _last_snapshot(entries) != str(primary):
        prep.append(
            custom(MODEL_SNAPSHOT, {"provider": primary.provider, "modelId": primary.model})
        )
    if prompt is not None:
        prep.append(message("user", prompt))
        messages.append({"role": "user", "content": prompt})
    else:
        assert system_event is not None
        prep.append(custom_message(SYSTEM_EVENT, system_event, True))
        messages.append({"role": "user", "content": system_event})
    await turn.write(attempt, prep)
    if turn.prompt_written is not None:
        turn.prompt_written.set()
    specs = [t.spec() for t in step.tools.values()]
    while turn.steps < agent.max_steps:
        turn.steps += 1
        request = ModelRequest(
            messages=list(messages),
            system=agent.system_prompt,
            tools=specs,
            max_tokens=agent.max_tokens,
            thinking=agent.thinking,
            conversation=session.session_id,
        )
        # Invariant RUNNER-I1: the write lock is never held during a model call.
        async with attempt.released():
            completion = await _call(chain, request, providers, on_event, retry, turn)
            reply = completion.message  # kept by the result even if the fence refuses it
            turn.reply, turn.model = _text(reply), str(completion.model)
            turn.add_usage(reply)
            turn.pending = [reply]
        # The rest of the turn starts from the model that answered: a primary that just failed
        # is not asked again at every step.
        chain = chain[[str(ModelRef.parse(r)) for r in chain].index(turn.model) :]
        arrived = sort_arrivals(attempt.arrived, attempt.run_id)
        messages += arrived.messages  # they precede the reply in the file
        arrived = Arrivals(steering=arrived.steering)
        await turn.write(attempt, [{"type": "message", "message": reply}])
        turn.pending = []
        turn.steering += turn.steering_written  # the reply that answers them is written
        turn.steering_written = []
        messages.append(reply)
        calls = [
            b
            for b in reply.get("content") or []
            if isinstance(b, dict) and b.get("type") == "toolCall"
        ]
        if calls and reply.get("stopReason") in ("error", "aborted"):
            # A reply cut by an error (a content filter) does not run its calls; they are
            # answered all the same (Invariants RUNNER-I3, PROVIDER-I8) and the turn ends.
            why = f"not run: the reply ended with stopReason {reply.get('stopReason')!r}"
            results = [_tool_result(c, why, error=True) for c in calls]
            await turn.write(attempt, [{"type": "message", "message": r} for r in results])
            return
        turn.last_had_calls = bool(calls)
        if calls:
            results, during = await _run_tools(step, calls)
            messages += results
            arrived += during
        if arrived.steering and turn.steps < agent.max_steps:
            # Invariant RUNNER-I5: steering is written after the reply (and its results) and
            # the model takes one more step to answer it. With no step left it stays unwritten
            # for the sender's follow-up turn.
            texts = [text for _, text in arrived.steering]
            await turn.write(attempt, [message("user", text) for text in texts])
            turn.steering_written += [sid for sid, _ in arrived.steering]
            messages += arrived.messages + tuple({"role": "user", "content": t} for t in texts)
        elif calls:
            messages += arrived.messages
        else:
            return


async def _run_tools(step: _Step, calls: list[dict[str, Any]]) -> tuple[list[Message], Arrivals]:
    """Run a reply's tool calls with the write lock released, then write their results.

    Returns the results and what arrived meanwhile. Messages cooperative writers appended
    during the tools sit before the results in the file; they join the model's context after
    them (providers want a tool call's results right after it)."""
    attempt, turn = step.attempt, step.turn
    turn.open_calls = calls
    # Invariant RUNNER-I4: tools run with the write lock released, each under its own timeout;
    # the fence runs before the results are written.
    async with attempt.released():
        for call in calls:
            turn.pending.append(await _run_tool(step, call))
    results = list(turn.pending)
    arrived = sort_arrivals(attempt.arrived, attempt.run_id)
    await turn.write(attempt, [{"type": "message", "message": r} for r in results])
    turn.pending, turn.open_calls = [], []
    denied = sum(1 for r in results if r.get("details", {}).get("denied"))
    if denied and turn.denials:
        # Invariant RUNNER-I7: a refusal is told once; asking again ends the turn.
        turn.last_had_calls = False
        raise _Denied(f"the model asked again for a refused tool call ({turn.denials + denied})")
    turn.denials += denied
    return results, arrived


def _read_context(session: Session) -> ContextRead | None:
    """The model context from the last compaction on (O(tail), Invariant INDEX-I3)."""
    if not session.exists():
        return None
    return read_context(session.path)


async def _call(
    chain: list[str],
    request: ModelRequest,
    providers: ProviderRegistry,
    on_event: EventSink | None,
    retry: RetryPolicy | None,
    turn: _Turn,
) -> Completion:
    try:
        completion = await complete(
            chain, request, providers=providers, on_event=on_event, retry=retry
        )
    except ProviderError:
        turn.failed += [str(ModelRef.parse(r)) for r in chain]
        raise
    turn.failed += [str(f.model) for f in completion.failed]
    return completion


def _tool_result(
    call: Mapping[str, Any], text: str, *, error: bool, denied: bool = False
) -> Message:
    result: Message = {
        "role": "toolResult",
        "toolCallId": call.get("id"),
        "toolName": call.get("name"),
        "content": [{"type": "text", "text": text}],
        "isError": error,
        "timestamp": int(time.time() * 1000),
    }
    if denied:
        result["details"] = {"denied": True}
    return result


async def _run_tool(step: _Step, call: Mapping[str, Any]) -> Message:
    """Run one tool call under its own timeout; every failure becomes an isError result
    (Invariant RUNNER-I3)."""
    agent, attempt = step.agent, step.attempt
    name = str(call.get("name"))
    tool = step.tools.get(name)
    if tool is None:
        return _tool_result(call, f"unknown tool {name!r}", error=True)
    args = call.get("arguments") or {}
    problem = check_arguments(tool.parameters, args)
    if problem is not None:
        return _tool_result(call, f"bad arguments for {name}: {problem}", error=True)
    ctx = ToolContext(
        agent=agent.name,
        session_id=attempt.session.session_id,
        run_id=attempt.run_id,
        workspace=agent.workspace or Path(attempt.session.store.root) / "workspace",
        http_allow=agent.http_allow,
        approve=step.approve,
    )
    limit_s = tool.timeout_s or agent.tool_timeout_s
    try:
        async with asyncio.timeout(limit_s):
            return _tool_result(call, await tool.run(args, ctx), error=False)
    except ToolDenied as exc:
        return _tool_result(call, str(exc), error=True, denied=True)
    except ToolFailed as exc:
        return _tool_result(call, str(exc), error=True)
    except TimeoutError:
        return _tool_result(call, f"{name} took longer than {limit_s:.3g} s", error=True)
    except Exception as exc:  # a broken tool never breaks the turn
        return _tool_result(call, f"{name} failed: {type(exc).__name__}: {exc}", error=True)


async def _close_open_calls(attempt: Attempt, turn: _Turn, why: str) -> None:
    """Write the results of the calls that finished and a synthetic error result for every
    other tool call left without one (RUNNER-I3), unless the session was lost (then nothing
    more is written)."""
    if not turn.open_calls or attempt.takeover is not None:
        return
    done = {r.get("toolCallId"): r for r in turn.pending if r.get("role") == "toolResult"}
    try:
        await attempt.resume()
        results = [
            done.get(c.get("id")) or _tool_result(c, f"interrupted: {why}", error=True)
            for c in turn.open_calls
        ]
        await turn.write(attempt, [{"type": "message", "message": r} for r in results])
        turn.open_calls, turn.pending = [], []
    except SessionTakeoverError:
        pass  # fenced out while cleaning up: the transcript is not ours to write
