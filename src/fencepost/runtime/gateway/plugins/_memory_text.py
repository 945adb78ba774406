"""Pure decisions of the memory index: what a record contributes, how a note is cut into
sections, how a search query becomes an FTS5 expression (docs/design/memory.md).

Nothing here touches a file or SQLite; the I/O lives in ``_memory_index.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "INDEXED_TYPES",
    "MAX_QUERY_TERMS",
    "Indexable",
    "entry_text",
    "fts_query",
    "indexable",
    "note_sections",
]

#: Entry types whose text is worth finding again; everything else (custom data, labels, model
#: changes) is bookkeeping and stays out of the index.
INDEXED_TYPES = frozenset({"message", "custom_message", "compaction", "branch_summary"})

#: A query longer than this is cut: FTS5 cost grows with the terms, and a model pasting a
#: whole page into the tool is asking for "anything like this", which 32 words find as well.
MAX_QUERY_TERMS = 32

_WORD = re.compile(r"\w+", re.UNICODE)
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclass(frozen=True)
class Indexable:
    """One row of the index, as decided from one transcript record."""

    role: str  # user | assistant | toolResult | custom_message | compaction | branch_summary
    text: str
    entry_id: str | None
    writer: str | None  # the stamp's writer kind; None for records without a stamp
    timestamp: str | None


def entry_text(content: Any) -> str:
    """The human text of a message's ``content``: a string, or the ``text`` blocks of a list
    (tool calls, images and thinking are not text a person wrote or read). Pure."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = [
        str(b.get("text", ""))
        for b in content
        if isinstance(b, Mapping) and b.get("type") == "text" and b.get("text")
    ]
    return "\n".join(parts)


def indexable(record: Mapping[str, Any]) -> Indexable | None:
    """What a decoded transcript record contributes to the index, or None. Pure."""
    kind = record.get("type")
    if kind not in INDEXED_TYPES:
        return None
    if kind == "message":
        msg = record.get("message")
        if not isinstance(msg, Mapping):
            return None
        role = str(msg.get("role") or "message")
        text = entry_text(msg.get("content"))
    elif kind == "custom_message":
        role = "custom_message"
        text = entry_text(record.get("content"))
    else:  # compaction, branch_summary
        role = str(kind)
        summary = record.get("summary")
        text = summary if isinstance(summary, str) else ""
    if not text.strip():
        return None
    stamp = record.get("fencepost")
    writer = stamp.get("writer") if isinstance(stamp, Mapping) else None
    entry_id = record.get("id")
    timestamp = record.get("timestamp")
    return Indexable(
        role=role,
        text=text,
        entry_id=entry_id if isinstance(entry_id, str) else None,
        writer=writer if isinstance(writer, str) else None,
        timestamp=timestamp if isinstance(timestamp, str) else None,
    )


def note_sections(text: str) -> list[tuple[str, str, int]]:
    """A markdown note cut at its headings: ``(heading, body, first line)`` per section with
    text; the part before the first heading has heading ``""``. Pure."""
    out: list[tuple[str, str, int]] = []
    heading, start = "", 1
    body: list[str] = []
    in_fence = False

    def flush() -> None:
        joined = "\n".join(body).strip()
        if joined or heading:
            out.append((heading, joined, start))

    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            flush()
            heading, start, body = match.group(2), number, []
        else:
            body.append(line)
    flush()
    return out


def fts_query(text: str) -> str | None:
    """An FTS5 MATCH expression for free text: every word quoted (so no user input is FTS5
    syntax), joined by OR so that bm25 ranks the rows with more of the words first. A word
    typed with a trailing ``*`` is a prefix. None when the text has no words. Pure."""
    terms: list[str] = []
    for match in _WORD.finditer(text):
        word = match.group(0)
        prefix = text[match.end() : match.end() + 1] == "*"
        term = '"' + word.replace('"', '""') + '"' + ("*" if prefix else "")
        if term not in terms:
            terms.append(term)
        if len(terms) == MAX_QUERY_TERMS:
            break
    return " OR ".join(terms) if terms else None
