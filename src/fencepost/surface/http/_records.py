"""Read-only views of session transcripts for the API and the dashboard.

Nothing here opens a transcript for writing (Invariant HTTP-I3): every read is ``open(path,
"rb")`` or a core reader (``parse_transcript``, ``Session.lease_holder``, ``fence_events``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from ...core import (
    STAMP_KEY,
    Record,
    Session,
    SessionStore,
    Transcript,
    active_path,
    decode_stamped,
    parse_transcript,
)
from ...errors import SessionNotFoundError

__all__ = [
    "Snapshot",
    "TailReader",
    "record_json",
    "session_summary",
    "snapshot",
    "summary",
    "thread_page",
]

#: Enough to hold the last record of nearly every transcript; a longer last line shows no writer.
_LAST_LINE_BYTES = 256 * 1024


def summary(data: dict[str, Any], width: int = 160) -> str:
    """One line a person can read for a record (like ``fencepost sessions show``)."""
    kind = data.get("type")
    if kind == "message":
        msg: dict[str, Any] = data["message"] if isinstance(data.get("message"), dict) else {}
        content = msg.get("content")
        if isinstance(content, list):
            parts = [
                c.get("text", f"[{c.get('type')}]") if isinstance(c, dict) else str(c)
                for c in content
            ]
            content = " ".join(str(p) for p in parts)
        text = f"{msg.get('role')}: {content}"
    elif kind in ("custom", "custom_message"):
        body = data.get("data") if kind == "custom" else data.get("content")
        text = f"{data.get('customType')}: {body}"
    elif kind in ("compaction", "branch_summary"):
        text = f"summary: {data.get('summary')}"
    elif kind == "model_change":
        text = f"{data.get('provider')}/{data.get('modelId')}"
    elif kind == "label":
        text = f"{data.get('targetId')} = {data.get('label')}"
    else:
        rest = {k: v for k, v in data.items() if k not in {"type", "id", "parentId", "timestamp"}}
        rest.pop(STAMP_KEY, None)
        text = str(rest)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def record_json(index: int, rec: Record) -> dict[str, Any]:
    """A record with its position and who wrote it (the stamp's writer, run, epoch, seq)."""
    stamp = rec.stamp or {}
    return {
        "index": index,
        "line": rec.line,
        "offset": rec.offset,
        "id": rec.id,
        "parentId": rec.parent_id,
        "type": rec.type,
        "timestamp": rec.data.get("timestamp"),
        "writer": stamp.get("writer"),
        "run_id": stamp.get("run_id"),
        "epoch": stamp.get("epoch"),
        "seq": stamp.get("seq"),
        "summary": summary(rec.data),
        "data": rec.data,
    }


@dataclass(frozen=True)
class Snapshot:
    """One read of a transcript: what was complete at that moment, and where it ended."""

    transcript: Transcript
    lines: int  # complete lines read (the next line is lines + 1)
    ino: int


def snapshot(session: Session) -> Snapshot:
    """Read the whole transcript once (read-only); SessionNotFoundError if there is none."""
    try:
        with open(session.path, "rb") as f:
            ino = os.fstat(f.fileno()).st_ino
            data = f.read()
    except FileNotFoundError:
        raise SessionNotFoundError(session.session_id, session.path) from None
    t = parse_transcript(data, path=session.path)
    return Snapshot(t, data[: t.size].count(b"\n"), ino)


def thread_page(
    t: Transcript, offset: int, limit: int, open_branch: str | None = None
) -> dict[str, Any]:
    """Records ``offset .. offset + limit`` (file order) as a thread (Invariant HTTP-I11).

    The active path and records without an id are ``main`` items, flat: no indentation per
    tree level. Every other record belongs to the side branch rooted at its highest ancestor
    off the active path; a page shows each branch once, as one ``branch`` item at the place of
    its first record on the page, with its records (flat, file order), how many it has in the
    whole transcript, and the index of the active record it forks from. O(records): parents
    come before children in a transcript, so one pass in file order finds every branch root.
    """
    entries = t.entries
    active = {r.id for r in active_path(t) if r.id is not None}
    index_of: dict[str, int] = {}
    root_of: dict[str, str] = {}  # off-path record id -> the id of its branch's root
    sizes: dict[str, int] = {}
    for i, rec in enumerate(entries):
        if rec.id is None:
            continue
        index_of.setdefault(rec.id, i)
        if rec.id in active:
            continue
        parent = rec.parent_id
        root = root_of.get(parent, rec.id) if parent and parent not in active else rec.id
        root_of.setdefault(rec.id, root)
        sizes[root] = sizes.get(root, 0) + 1
    items: list[dict[str, Any]] = []
    branches: dict[str, dict[str, Any]] = {}
    last_main: int | None = None
    for i in range(offset, min(offset + limit, len(entries))):
        rec = entries[i]
        row = record_json(i, rec)
        row["active"] = rec.id in active
        parent_index = index_of.get(rec.parent_id) if rec.parent_id else None
        row["parent_index"] = parent_index
        if rec.id is None or rec.id in active:
            row["follows"] = parent_index is None or parent_index == last_main
            last_main = i if rec.id is not None else last_main
            items.append({"kind": "main", "record": row})
            continue
        root = root_of.get(rec.id, rec.id)
        branch = branches.get(root)
        if branch is None:
            root_rec = entries[index_of.get(root, i)]
            branch = {
                "kind": "branch",
                "branch_id": root,
                "anchor_index": index_of.get(root_rec.parent_id) if root_rec.parent_id else None,
                "total": sizes.get(root, 1),
                "open": root == open_branch,
                "records": [],
            }
            branches[root] = branch
            items.append(branch)
        prev = branch["records"][-1]["index"] if branch["records"] else branch["anchor_index"]
        row["follows"] = parent_index is None or parent_index == prev
        branch["records"].append(row)
    leaf = next((r.id for r in reversed(entries) if r.id is not None), None)
    return {"items": items, "total": len(entries), "leaf": leaf}


def _last_record(path: str, size: int) -> dict[str, Any] | None:
    with open(path, "rb") as f:
        f.seek(max(0, size - _LAST_LINE_BYTES))
        tail = f.read(_LAST_LINE_BYTES)
    end = tail.rfind(b"\n")
    if end < 0:
        return None
    start = tail.rfind(b"\n", 0, end) + 1
    if start == 0 and size > _LAST_LINE_BYTES:
        return None  # the line began before what we read
    rec, _, _ = decode_stamped(tail[start:end])
    return rec


def session_summary(store: SessionStore, session_id: str) -> dict[str, Any] | None:
    """Size, last writer and lease holder of one session; None if it vanished meanwhile."""
    session = store.session(session_id)
    try:
        st = os.stat(session.path)
        last = _last_record(session.path, st.st_size)
    except FileNotFoundError:
        return None
    stamp: dict[str, Any] = {}
    if last is not None and isinstance(last.get(STAMP_KEY), dict):
        stamp = last[STAMP_KEY]
    holder = session.lease_holder()
    return {
        "session_id": session_id,
        "size_bytes": st.st_size,
        "modified_at": st.st_mtime,
        "last_type": last.get("type") if last else None,
        "last_writer": stamp.get("writer"),
        "last_run_id": stamp.get("run_id"),
        "last_seq": stamp.get("seq"),
        "epoch": session.epoch(),
        "lease_holder": dataclasses.asdict(holder) if holder else None,
    }


class TailReader:
    """Records appended after a position, read-only, for a live tail.

    ``read_new`` returns the complete records that landed since the last call, or None when
    the transcript was truncated, replaced or deleted (the position no longer means anything).
    """

    def __init__(self, path: str, snap: Snapshot) -> None:
        self.path = path
        self.ino = snap.ino
        self.pos = snap.transcript.size
        self.next_line = snap.lines + 1
        self.next_index = len(snap.transcript.entries)

    def read_new(self) -> list[dict[str, Any]] | None:
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                if st.st_ino != self.ino or st.st_size < self.pos:
                    return None
                if st.st_size == self.pos:
                    return []
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return None
        t = parse_transcript(
            data,
            path=self.path,
            start_line=self.next_line,
            start_offset=self.pos,
            expect_header=False,
        )
        out = []
        for rec in t.entries:
            out.append(record_json(self.next_index, rec))
            self.next_index += 1
        self.pos += t.size
        self.next_line += data[: t.size].count(b"\n")
        return out
