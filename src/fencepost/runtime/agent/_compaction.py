"""Automatic compaction, as pi and OpenClaw do it (docs/design/agent-runner.md COMPACT-*).

Pure decisions over the model context (token estimate, threshold, cut point) and one thin
coroutine that summarises with the lock released and writes the ``compaction`` entry under the
lease. The compacted context is pi's: the summary first, then the entries from
``firstKeptEntryId`` (``fencepost.core.build_context``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...core import (
    Attempt,
    ContextMessage,
    ContextRead,
    ModelContext,
    Session,
    compaction,
    read_context,
)
from ..providers import ModelRequest, ProviderRegistry, RetryPolicy, complete

__all__ = [
    "DEFAULT_CONTEXT_WINDOW",
    "DEFAULT_KEEP_RECENT_TOKENS",
    "DEFAULT_MAX_CONTEXT_BYTES",
    "DEFAULT_RESERVE_TOKENS",
    "SUMMARY_SYSTEM_PROMPT",
    "CompactionDone",
    "CompactionPlan",
    "CompactionSettings",
    "Summariser",
    "compact",
    "compact_session",
    "model_summariser",
    "bytes_after",
    "context_tokens",
    "estimate_tokens",
    "plan_compaction",
    "serialize_conversation",
]

#: A window most current models meet or exceed; configure the real one with the model.
DEFAULT_CONTEXT_WINDOW = 128_000
#: pi's reserveTokens: room left for the prompt, the reply and the summary call itself.
DEFAULT_RESERVE_TOKENS = 16_384
#: pi's keepRecentTokens: the most recent context kept verbatim after a compaction.
DEFAULT_KEEP_RECENT_TOKENS = 20_000
#: The transcript bytes a turn reads for its context (from the first kept entry to the end). Many
#: small records (delivery mirrors, heartbeats) weigh little in tokens and much in bytes: without
#: this bound, a main session fed by many jobs makes every turn read more, for months
#: (COMPACT-I5). Near the token budget's size for ordinary messages.
DEFAULT_MAX_CONTEXT_BYTES = 1024 * 1024
#: pi's estimate for an image block, in characters (1,200 tokens).
_IMAGE_CHARS = 4_800

SUMMARY_SYSTEM_PROMPT = (
    "You summarise a conversation between a user and an AI agent so that the agent can go on "
    "working from the summary alone. Keep goals, decisions, constraints, open tasks, file "
    "names, identifiers and numbers; drop pleasantries. Reply with the summary only."
)


@dataclass(frozen=True)
class CompactionSettings:
    enabled: bool = True
    context_window: int = DEFAULT_CONTEXT_WINDOW
    reserve_tokens: int = DEFAULT_RESERVE_TOKENS
    keep_recent_tokens: int = DEFAULT_KEEP_RECENT_TOKENS
    max_context_bytes: int = DEFAULT_MAX_CONTEXT_BYTES

    def __post_init__(self) -> None:
        counts = (self.context_window, self.reserve_tokens, self.keep_recent_tokens)
        if min(*counts, self.max_context_bytes) < 0:
            raise ValueError("compaction token counts must be 0 or more")

    @property
    def threshold_tokens(self) -> int:
        return max(0, self.context_window - self.reserve_tokens)


@dataclass(frozen=True)
class CompactionPlan:
    """What to compact: everything before ``first_kept_entry_id`` goes into the summary."""

    first_kept_entry_id: str
    tokens_before: int
    summarize: tuple[ContextMessage, ...]
    kept: tuple[ContextMessage, ...]
    previous_summary: str | None


def _chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    n = 0
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            n += len(str(block.get("text", "")))
        elif kind == "thinking":
            n += len(str(block.get("thinking", "")))
        elif kind == "toolCall":
            n += len(str(block.get("name", ""))) + len(json.dumps(block.get("arguments", {})))
        elif kind == "image":
            n += _IMAGE_CHARS
    return n


def estimate_tokens(msg: ContextMessage) -> int:
    """chars / 4, rounded up, as pi estimates (text, thinking, tool calls; images 1,200)."""
    return (_chars(msg.content) + 3) // 4


def context_tokens(messages: Sequence[ContextMessage], *, extra_chars: int = 0) -> int:
    """The estimated size of a context; ``extra_chars`` for the system and a pending prompt."""
    return sum(estimate_tokens(m) for m in messages) + (extra_chars + 3) // 4


def _tool_call_ids(msg: ContextMessage) -> list[str]:
    if msg.role != "assistant" or not isinstance(msg.content, list):
        return []
    return [
        str(b.get("id")) for b in msg.content if isinstance(b, dict) and b.get("type") == "toolCall"
    ]


def _cut_points(messages: Sequence[ContextMessage], start: int) -> list[int]:
    """Indices where a cut leaves no tool call apart from its result (Invariant COMPACT-I2):
    a user-role message (not the summary) with every earlier tool call answered before it."""
    open_calls: set[str] = set()
    out: list[int] = []
    for i, m in enumerate(messages):
        if i > start and m.role == "user" and m.source != "compaction_summary" and not open_calls:
            out.append(i)
        open_calls.update(_tool_call_ids(m))
        if m.role == "toolResult":
            open_calls.discard(str(m.message.get("toolCallId")))
    return out


def bytes_after(read: ContextRead) -> dict[str, int]:
    """For each entry read, the transcript bytes from its line to the end (what a context that
    starts there costs to read). Pure."""
    return {r.id: read.size - r.offset for r in read.entries if r.id is not None}


def plan_compaction(
    context: ModelContext,
    settings: CompactionSettings,
    *,
    extra_chars: int = 0,
    force: bool = False,
    sizes: Mapping[str, int] | None = None,
) -> CompactionPlan | None:
    """Whether to compact ``context`` and where to cut (pure; Invariants COMPACT-I1, COMPACT-I5).

    Compacts when the estimate exceeds ``context_window - reserve_tokens``, when the context
    spans more than ``max_context_bytes`` of transcript (``sizes``: ``bytes_after`` of the
    read), or with ``force``. The cut is the latest turn boundary that keeps at least
    ``keep_recent_tokens`` verbatim or half of ``max_context_bytes``, whichever keeps less;
    when every boundary keeps less than both, the earliest one. None: under both bounds, or no
    boundary to cut at.
    """
    messages = context.messages
    tokens = context_tokens(messages, extra_chars=extra_chars)
    sizes = sizes or {}
    span = max(sizes.values(), default=0)
    over = tokens > settings.threshold_tokens or span > settings.max_context_bytes
    if not force and (not settings.enabled or not over):
        return None
    has_summary = bool(messages) and messages[0].source == "compaction_summary"
    start = 1 if has_summary else 0  # a cut at start would summarise nothing
    points = _cut_points(messages, start)
    if not points:
        return None
    suffix = [0] * (len(messages) + 1)
    for i in range(len(messages) - 1, -1, -1):
        suffix[i] = suffix[i + 1] + estimate_tokens(messages[i])
    half_bytes = settings.max_context_bytes // 2
    enough = [
        c
        for c in points
        if suffix[c] >= settings.keep_recent_tokens
        or sizes.get(messages[c].entry_id, 0) >= half_bytes
    ]
    cut = max(enough) if enough else min(points)
    previous = None
    if has_summary:
        previous = str(messages[0].content)
    return CompactionPlan(
        first_kept_entry_id=messages[cut].entry_id,
        tokens_before=tokens,
        summarize=tuple(messages[1 if has_summary else 0 : cut]),
        kept=tuple(messages[cut:]),
        previous_summary=previous,
    )


def serialize_conversation(messages: Sequence[ContextMessage]) -> str:
    """The messages to summarise as plain text (pi sends the conversation as text, so the
    summariser does not continue it)."""
    lines = []
    for m in messages:
        if isinstance(m.content, str):
            text = m.content
        else:
            parts = []
            for b in m.content if isinstance(m.content, list) else ():
                if not isinstance(b, dict):
                    continue
                if b.get("type") == "text":
                    parts.append(str(b.get("text", "")))
                elif b.get("type") == "toolCall":
                    parts.append(f"(tool call {b.get('name')} {json.dumps(b.get('arguments'))})")
            text = "\n".join(parts)
        who = {"user": "User", "assistant": "Assistant", "toolResult": "Tool result"}[m.role]
        lines.append(f"[{who}]: {text}")
    return "\n\n".join(lines)


def summary_prompt(plan: CompactionPlan) -> str:
    head = ""
    if plan.previous_summary is not None:
        head = f"<previous-summary>\n{plan.previous_summary}\n</previous-summary>\n\n"
    return (
        f"{head}<conversation>\n{serialize_conversation(plan.summarize)}\n</conversation>\n\n"
        "Write the summary of everything above (including the previous summary, if any)."
    )


#: Makes the summary: the agent's model in the runner, the operator's text by hand.
Summariser = Callable[[str], Awaitable[str]]


async def compact(attempt: Attempt, plan: CompactionPlan, summarise: Summariser) -> tuple[str, str]:
    """Summarise with the write lock released, then write the ``compaction`` entry under the
    lease after the fence check (Invariant COMPACT-I3). Returns (entry id, summary)."""
    prompt = summary_prompt(plan)
    # Invariant RUNNER-I1: the summary is a model call, so the lock is free meanwhile.
    async with attempt.released():
        summary = (await summarise(prompt)).strip() or "(empty summary)"
    entry = compaction(summary, plan.first_kept_entry_id, plan.tokens_before)
    # Invariant COMPACT-I4: one entry appended; nothing before it is removed or rewritten.
    result = await attempt.append(entry, writer="compaction")
    return result.entry_ids[0], summary


def model_summariser(
    chain: Sequence[str],
    providers: ProviderRegistry,
    *,
    max_tokens: int = 4096,
    conversation: str | None = None,
    retry: RetryPolicy | None = None,
) -> Summariser:
    """A model chain asked for a summary (pi summarises with the agent's own model)."""

    async def summarise(prompt: str) -> str:
        request = ModelRequest(
            messages=[{"role": "user", "content": prompt}],
            system=SUMMARY_SYSTEM_PROMPT,
            max_tokens=max_tokens,
            conversation=conversation,
            purpose="summary",
        )
        completion = await complete(list(chain), request, providers=providers, retry=retry)
        content = completion.message.get("content")
        if isinstance(content, str):
            return content
        return "".join(
            str(b.get("text", ""))
            for b in content or []
            if isinstance(b, dict) and b.get("type") == "text"
        )

    return summarise


@dataclass(frozen=True)
class CompactionDone:
    """What ``compact_session`` did (``entry_id`` None: a dry run, or nothing to compact)."""

    plan: CompactionPlan | None
    entry_id: str | None
    summary: str | None


async def compact_session(
    session: Session,
    settings: CompactionSettings,
    summarise: Summariser,
    *,
    run_id: str,
    dry_run: bool = False,
    wait_timeout_s: float | None = None,
) -> CompactionDone:
    """Compact by hand (``fencepost sessions compact``): whatever the budget, under the lease.
    A dry run only reads: it takes no lease and writes nothing to the transcript."""
    if dry_run:
        read = read_context(session.path)
        plan = plan_compaction(read.context, settings, force=True, sizes=bytes_after(read))
        return CompactionDone(plan, None, None)
    async with session.attempt(run_id, wait_timeout_s=wait_timeout_s) as attempt:
        read = read_context(session.path)
        plan = plan_compaction(read.context, settings, force=True, sizes=bytes_after(read))
        if plan is None:
            return CompactionDone(None, None, None)
        entry_id, summary = await compact(attempt, plan, summarise)
        return CompactionDone(plan, entry_id, summary)
