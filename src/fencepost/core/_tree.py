"""Active-path reconstruction and model context (pi's buildSessionContext semantics).

The active path is the chain of parentIds from the leaf to the root. The model context is built
from it: the latest compaction on the path replaces everything before its ``firstKeptEntryId``
with its summary; branch summaries and custom messages become user-role messages; ``custom``,
``label``, ``session_info``, model and thinking-level changes and unknown types are not messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from ._format import Record, Transcript

__all__ = ["ContextMessage", "ModelContext", "active_path", "build_context"]

COMPACTION_PREFIX = (
    "The conversation history before this point was compacted into the following summary:\n\n"
)
BRANCH_PREFIX = "The following is a summary of a branch that this conversation came back from:\n\n"


@dataclass(frozen=True)
class ContextMessage:
    role: Literal["user", "assistant", "toolResult"]
    content: Any
    entry_id: str
    source: Literal["message", "compaction_summary", "branch_summary", "custom_message"]
    message: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelContext:
    messages: tuple[ContextMessage, ...]
    model: tuple[str, str] | None
    thinking_level: str | None
    leaf_id: str | None


def _entries(source: Transcript | Iterable[Record]) -> list[Record]:
    return list(source.entries if isinstance(source, Transcript) else source)


def active_path(source: Transcript | Iterable[Record], leaf_id: str | None = None) -> list[Record]:
    """Root → leaf. The default leaf is the last entry with an id. A cycle or a missing parent
    ends the walk (``verify`` reports those)."""
    entries = _entries(source)
    by_id = {r.id: r for r in entries if r.id is not None}
    if leaf_id is None:
        leaf_id = next((r.id for r in reversed(entries) if r.id is not None), None)
    path: list[Record] = []
    seen: set[str] = set()
    cur = by_id.get(leaf_id) if leaf_id else None
    while cur is not None and cur.id not in seen:
        path.append(cur)
        seen.add(cur.id or "")
        cur = by_id.get(cur.parent_id) if cur.parent_id else None
    path.reverse()
    return path


def _as_message(rec: Record) -> ContextMessage | None:
    d = rec.data
    eid = rec.id or ""
    if rec.type == "message" and isinstance(d.get("message"), dict):
        msg = d["message"]
        role = msg.get("role")
        if role in ("user", "assistant", "toolResult"):
            return ContextMessage(role, msg.get("content"), eid, "message", dict(msg))
        return None
    if rec.type == "custom_message":
        return ContextMessage("user", d.get("content"), eid, "custom_message")
    if rec.type == "branch_summary":
        return ContextMessage(
            "user", BRANCH_PREFIX + str(d.get("summary", "")), eid, "branch_summary"
        )
    return None


def build_context(
    source: Transcript | Iterable[Record], leaf_id: str | None = None
) -> ModelContext:
    path = active_path(source, leaf_id)
    model: tuple[str, str] | None = None
    thinking: str | None = None
    for rec in path:
        d = rec.data
        if rec.type == "model_change":
            model = (str(d.get("provider")), str(d.get("modelId")))
        elif rec.type == "thinking_level_change":
            thinking = str(d.get("thinkingLevel"))
        elif rec.type == "message" and isinstance(d.get("message"), dict):
            msg = d["message"]
            if msg.get("role") == "assistant" and msg.get("provider") and msg.get("model"):
                model = (str(msg["provider"]), str(msg["model"]))
    compaction_at = max((i for i, r in enumerate(path) if r.type == "compaction"), default=None)
    out: list[ContextMessage] = []
    if compaction_at is None:
        kept = path
    else:
        comp = path[compaction_at]
        out.append(
            ContextMessage(
                "user",
                COMPACTION_PREFIX + str(comp.data.get("summary", "")),
                comp.id or "",
                "compaction_summary",
            )
        )
        first_kept = comp.data.get("firstKeptEntryId")
        start = next(
            (i for i, r in enumerate(path[:compaction_at]) if r.id == first_kept), compaction_at
        )
        kept = path[start:compaction_at] + path[compaction_at + 1 :]
    for rec in kept:
        m = _as_message(rec)
        if m is not None:
            out.append(m)
    return ModelContext(
        messages=tuple(out),
        model=model,
        thinking_level=thinking,
        leaf_id=path[-1].id if path else None,
    )
