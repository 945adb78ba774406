"""The context offset index: where the last compaction sits, so a turn reads only the tail.

``<id>.jsonl.index`` is derived data (docs/design/transcript-format.md, INDEX-I1..I3): one small
JSON object naming the byte offset and id of the last ``compaction`` entry and of its first kept
entry. ``read_context`` verifies it cheaply (the line at the recorded offset has the recorded id
and digest), parses the transcript from the first kept entry to the end, and builds the model
context from that slice; a missing, stale or failing index is rebuilt by one full scan.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass

from ._format import MAX_RECORD_BYTES, Record, parse_transcript
from ._tree import ModelContext, active_path, build_context

__all__ = ["ContextRead", "INDEX_SUFFIX", "read_context"]

INDEX_SUFFIX = ".index"
_VERSION = 1


@dataclass(frozen=True)
class ContextRead:
    """A model context and the records it was built from (from ``start_offset`` to the end)."""

    context: ModelContext
    entries: tuple[Record, ...]
    start_offset: int
    size: int
    used_index: bool  # False: a full scan (no compaction yet, or the index was rebuilt)


@dataclass(frozen=True)
class _Mark:
    comp_id: str
    comp_offset: int
    comp_sha256: str
    kept_id: str
    kept_offset: int


def _line_at(fd: int, offset: int) -> bytes | None:
    data = os.pread(fd, MAX_RECORD_BYTES, offset)
    nl = data.find(b"\n")
    return None if nl < 0 else data[:nl]


def _load(index_path: str, fd: int, ino: tuple[int, int]) -> _Mark | None:
    """The recorded mark if it still describes this file, else None (Invariant INDEX-I2)."""
    try:
        with open(index_path, "rb") as f:
            obj = json.loads(f.read())
        if obj.get("version") != _VERSION or tuple(obj.get("file", ())) != ino:
            return None
        mark = _Mark(**obj["mark"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    for offset, want_id in ((mark.comp_offset, mark.comp_id), (mark.kept_offset, mark.kept_id)):
        raw = _line_at(fd, offset)
        if raw is None:
            return None
        try:
            rec = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(rec, dict) or rec.get("id") != want_id:
            return None
        if offset == mark.comp_offset and hashlib.sha256(raw).hexdigest() != mark.comp_sha256:
            return None
    return mark


def _store(index_path: str, ino: tuple[int, int], mark: _Mark) -> None:
    """Replace the index atomically; it is derived data, so a failure only costs a rescan."""
    obj = {"version": _VERSION, "file": list(ino), "mark": mark.__dict__}
    tmp = f"{index_path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f)
        os.replace(tmp, index_path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _mark_of(entries: tuple[Record, ...]) -> _Mark | None:
    """The last compaction on the active path and its first kept entry, if both are known."""
    path = active_path(entries)
    comps = [r for r in path if r.type == "compaction"]
    if not comps:
        return None
    comp = comps[-1]
    kept_id = comp.data.get("firstKeptEntryId")
    kept = next((r for r in path if r.id == kept_id and r.offset < comp.offset), None)
    if kept is None or comp.id is None:
        return None
    digest = hashlib.sha256(comp.raw).hexdigest()
    return _Mark(comp.id, comp.offset, digest, kept.id or "", kept.offset)


def read_context(path: str) -> ContextRead:
    """The model context of the transcript at ``path``, reading from its last compaction.

    Cost: O(bytes from the first kept entry to the end) when the index holds; one full scan
    (and an index rewrite) otherwise. Never changes a byte of the transcript (FORMAT-I3).
    """
    index_path = path + INDEX_SUFFIX
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        ino = (st.st_dev, st.st_ino)
        mark = _load(index_path, fd, ino)
        if mark is not None:
            data = os.pread(fd, st.st_size - mark.kept_offset, mark.kept_offset)
            cut = data.rfind(b"\n") + 1
            slice_ = parse_transcript(
                data[:cut], path=path, start_offset=mark.kept_offset, expect_header=False
            )
            on_path = any(r.id == mark.comp_id for r in active_path(slice_.entries))
            newer = _mark_of(slice_.entries) if on_path else None
            # Invariant INDEX-I3: the slice is used only when the active path runs through the
            # indexed compaction (or a later one) and the last one's first kept entry is in it;
            # a leaf on an older branch needs the whole file.
            if newer is not None:
                if newer != mark:
                    _store(index_path, ino, newer)
                ctx = build_context(slice_.entries)
                return ContextRead(
                    ctx, slice_.entries, mark.kept_offset, mark.kept_offset + cut, True
                )
        data = os.pread(fd, st.st_size, 0)
    finally:
        os.close(fd)
    cut = data.rfind(b"\n") + 1
    full = parse_transcript(data[:cut], path=path)
    ctx = build_context(full)
    found = _mark_of(full.entries)
    if found is not None and found != mark:
        _store(index_path, ino, found)  # Invariant INDEX-I1: rebuilt by one scan
    return ContextRead(ctx, full.entries, 0, cut, False)
