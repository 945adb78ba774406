"""The transcript format: pi / OpenClaw session files, version 3 (docs/design/transcript-format.md).

Records are kept as the decoded ``dict`` plus their raw line bytes, so unknown types and unknown
keys survive untouched (Invariant FORMAT-I2); lines are never rewritten.
"""

from __future__ import annotations

import gzip
import json
import re
import secrets
import time
from collections.abc import Container, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import RecordTooLargeError, TranscriptFormatError

__all__ = [
    "ENTRY_TYPES",
    "FORMAT_VERSION",
    "HEADER_TYPE",
    "MAX_RECORD_BYTES",
    "MESSAGE_ROLES",
    "Record",
    "Transcript",
    "branch_summary",
    "compaction",
    "custom",
    "custom_message",
    "encode_record",
    "iter_lines",
    "label",
    "make_header",
    "message",
    "model_change",
    "new_entry_id",
    "parse_transcript",
    "read_transcript",
    "session_info",
    "text_problem",
    "thinking_level_change",
    "utc_timestamp",
    "validate_entry",
]

HEADER_TYPE = "session"
FORMAT_VERSION = 3
ENTRY_TYPES: frozenset[str] = frozenset(
    {
        "message",
        "model_change",
        "thinking_level_change",
        "custom",
        "custom_message",
        "label",
        "session_info",
        "compaction",
        "branch_summary",
    }
)
MESSAGE_ROLES: frozenset[str] = frozenset({"user", "assistant", "toolResult"})

#: One line, newline included. Far above any real message; small enough that one bad writer
#: cannot make every reader load hundreds of megabytes into one string.
MAX_RECORD_BYTES = 1024 * 1024

#: Characters that make no sense in text a person or a model wrote: lone UTF-16 surrogates (not
#: Unicode text at all; they cannot be written as UTF-8) and control characters other than tab,
#: newline and carriage return. One-line values (names, addresses) refuse those three too.
_BAD_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_BAD_LINE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def text_problem(value: str, *, multiline: bool = True) -> str | None:
    """What makes ``value`` unfit to store as text, or None (Invariant FORMAT-I5; pure).

    The one text rule of the edges (HTTP API, CLI, config, job fields): a caller wraps the
    answer in its own error, naming its field.
    """
    found = (_BAD_TEXT if multiline else _BAD_LINE).search(value)
    if found is None:
        return None
    char = found.group()
    what = "a lone UTF-16 surrogate" if "\ud800" <= char <= "\udfff" else "a control character"
    return f"it contains {what} ({char!r}) at character {found.start()}"


# Required fields and their types, per known entry type (pi's SessionEntry union).
_REQUIRED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "message": {"message": dict},
    "model_change": {"provider": str, "modelId": str},
    "thinking_level_change": {"thinkingLevel": str},
    "custom": {"customType": str},
    "custom_message": {"customType": str, "content": (str, list)},
    "label": {"targetId": str},
    "session_info": {},
    "compaction": {"summary": str, "firstKeptEntryId": str, "tokensBefore": int},
    "branch_summary": {"fromId": str, "summary": str},
}


def new_entry_id(taken: Container[str] = ()) -> str:
    while True:
        candidate = secrets.token_hex(4)
        if candidate not in taken:
            return candidate


_last_second: tuple[int, str] = (-1, "")


def utc_iso_ms(now_ns: int | None = None) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmm`` in UTC (no zone suffix). Formats each second once: it runs
    on every append, where ``datetime.isoformat`` was a measurable cost."""
    global _last_second
    sec, ns = divmod(time.time_ns() if now_ns is None else now_ns, 1_000_000_000)
    last = _last_second  # read once: another thread may replace it meanwhile
    if last[0] != sec:
        last = _last_second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
    return f"{last[1]}.{ns // 1_000_000:03d}"


_json_str = json.encoder.encode_basestring_ascii  # the C escaper


def json_str(value: str | None) -> str:
    """``value`` as a JSON string literal, or ``null``: for records spelled out by hand on hot
    paths (the state slots, the owner record)."""
    return "null" if value is None else _json_str(value)


def utc_timestamp(now_ns: int | None = None) -> str:
    """The format's timestamp: ``2026-11-25T23:00:21.004Z``."""
    return utc_iso_ms(now_ns) + "Z"


def make_header(session_id: str, *, cwd: str, timestamp: str | None = None) -> dict[str, Any]:
    return {
        "type": HEADER_TYPE,
        "version": FORMAT_VERSION,
        "id": session_id,
        "timestamp": timestamp or utc_timestamp(),
        "cwd": cwd,
    }


# ---- constructors: plain dicts without id / parentId / timestamp (the store fills them) -----


def message(role: str, content: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "message", "message": {"role": role, "content": content, **extra}}


def custom(custom_type: str, data: Any = None) -> dict[str, Any]:
    return {"type": "custom", "customType": custom_type, "data": data}


def custom_message(custom_type: str, content: Any, display: bool = True) -> dict[str, Any]:
    return {
        "type": "custom_message",
        "customType": custom_type,
        "content": content,
        "display": display,
    }


def model_change(provider: str, model_id: str) -> dict[str, Any]:
    return {"type": "model_change", "provider": provider, "modelId": model_id}


def thinking_level_change(level: str) -> dict[str, Any]:
    return {"type": "thinking_level_change", "thinkingLevel": level}


def label(target_id: str, label: str | None) -> dict[str, Any]:
    return {"type": "label", "targetId": target_id, "label": label}


def session_info(name: str) -> dict[str, Any]:
    return {"type": "session_info", "name": name}


def compaction(summary: str, first_kept_entry_id: str, tokens_before: int) -> dict[str, Any]:
    return {
        "type": "compaction",
        "summary": summary,
        "firstKeptEntryId": first_kept_entry_id,
        "tokensBefore": tokens_before,
    }


def branch_summary(from_id: str, summary: str) -> dict[str, Any]:
    return {"type": "branch_summary", "fromId": from_id, "summary": summary}


# ---- validation and encoding ------------------------------------------------------------------


def validate_entry(entry: Mapping[str, Any]) -> None:
    """Refuse an entry that cannot be appended, naming the field. Unknown types are accepted.

    Pure and O(size of the entry). Whether a caller's ``id`` or ``parentId`` fits the
    transcript needs the transcript: the store checks that under its lock (STORE-I13)."""
    if not isinstance(entry, Mapping):
        raise TranscriptFormatError(f"an entry must be a JSON object, not {type(entry).__name__}")
    kind = entry.get("type")
    if not isinstance(kind, str) or not kind:
        raise TranscriptFormatError("an entry needs a string 'type'")
    if kind == HEADER_TYPE:
        raise TranscriptFormatError("type 'session' is reserved for the header on line 1")
    if "id" in entry and (not isinstance(entry["id"], str) or not entry["id"]):
        raise TranscriptFormatError(
            "'id' must be a non-empty string (leave it out and the protocol assigns one)"
        )
    parent = entry.get("parentId")
    if parent is not None and (not isinstance(parent, str) or not parent):
        raise TranscriptFormatError("'parentId' must be a non-empty string or null")
    if "timestamp" in entry and not isinstance(entry["timestamp"], str):
        raise TranscriptFormatError("'timestamp' must be a string (leave it out to use now)")
    if kind == "custom" and entry.get("customType") == "fencepost.adopt":
        # Invariant STORE-I15: only `Session.adopt` writes the baseline `verify` honours.
        raise TranscriptFormatError(
            "customType 'fencepost.adopt' is written only by `fencepost sessions adopt`"
        )
    if "fencepost" in entry:
        # Invariant STORE-I2: the stamp is the store's to write; a caller's would be replaced.
        raise TranscriptFormatError(
            "'fencepost' is the provenance stamp the store writes; leave it out of the entry"
        )
    for field, types in _REQUIRED.get(kind, {}).items():
        value = entry.get(field)
        if not isinstance(value, types) or isinstance(value, bool):
            raise TranscriptFormatError(f"a '{kind}' entry needs '{field}'")
    if kind == "message" and entry["message"].get("role") not in MESSAGE_ROLES:
        roles = ", ".join(sorted(MESSAGE_ROLES))
        raise TranscriptFormatError(f"message.role must be one of {roles}")


#: Built once: ``json.dumps`` with any option builds a new encoder per call (a hot-path cost).
_RECORD_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_record(record: Mapping[str, Any]) -> bytes:
    """One compact UTF-8 JSON line, without the newline (Invariant FORMAT-I1)."""
    if not isinstance(record.get("type"), str):
        raise TranscriptFormatError("a record needs a string 'type'")
    try:
        raw = _RECORD_ENCODER.encode(record)
    except (TypeError, ValueError) as exc:
        raise TranscriptFormatError(f"record is not JSON-serialisable: {exc}") from exc
    try:
        data = raw.encode("utf-8")
    except UnicodeEncodeError as exc:
        # Invariant FORMAT-I5: a lone surrogate has no UTF-8 form; written anyway (surrogatepass)
        # it would make the line unreadable and break the chain, so the record is refused.
        raise TranscriptFormatError(
            f"record text is not valid Unicode: a lone UTF-16 surrogate at character {exc.start}"
        ) from None
    if len(data) + 1 > MAX_RECORD_BYTES:
        raise RecordTooLargeError(len(data) + 1, MAX_RECORD_BYTES)
    return data


# ---- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    line: int  # 1-based
    offset: int  # byte offset of the line start
    raw: bytes  # the line without its newline
    data: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.data.get("type"))

    @property
    def id(self) -> str | None:
        v = self.data.get("id")
        return v if isinstance(v, str) else None

    @property
    def parent_id(self) -> str | None:
        v = self.data.get("parentId")
        return v if isinstance(v, str) else None

    @property
    def stamp(self) -> dict[str, Any] | None:
        v = self.data.get("fencepost")
        return v if isinstance(v, dict) else None

    @property
    def end(self) -> int:
        return self.offset + len(self.raw) + 1


@dataclass(frozen=True)
class Transcript:
    path: str | None
    header: Record | None
    entries: tuple[Record, ...]
    problems: tuple[TranscriptFormatError, ...]
    torn_tail: bytes
    size: int

    def by_id(self) -> dict[str, Record]:
        return {r.id: r for r in self.entries if r.id is not None}

    def leaf_id(self) -> str | None:
        for r in reversed(self.entries):
            if r.id is not None:
                return r.id
        return None


def iter_lines(data: bytes, start_offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """(offset, line without newline) for every complete line."""
    pos = 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return
        yield start_offset + pos, data[pos:nl]
        pos = nl + 1


def parse_transcript(
    data: bytes,
    *,
    path: str | None = None,
    start_line: int = 1,
    start_offset: int = 0,
    expect_header: bool = True,
) -> Transcript:
    """Parse every complete line; problems are collected with line numbers, never raised."""
    problems: list[TranscriptFormatError] = []
    header: Record | None = None
    entries: list[Record] = []
    seen: set[str] = set()

    def problem(msg: str, line: int) -> None:
        problems.append(TranscriptFormatError(msg, path=path, line=line))

    line_no = start_line - 1
    end = 0
    for offset, raw in iter_lines(data, start_offset):
        line_no += 1
        end = offset - start_offset + len(raw) + 1
        if not raw.strip():
            problem("blank line", line_no)
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            problem(f"not UTF-8 (byte {exc.start} of the line); line skipped", line_no)
            continue
        except ValueError as exc:
            problem(f"not JSON ({exc}); line skipped", line_no)
            continue
        if not isinstance(obj, dict):
            problem(f"a JSON {type(obj).__name__}, not an object; line skipped", line_no)
            continue
        rec = Record(line_no, offset, raw, obj)
        is_first = line_no == start_line and expect_header
        if is_first:
            if obj.get("type") != HEADER_TYPE:
                problem("missing session header (line 1 should have type 'session')", line_no)
            else:
                if obj.get("version") != FORMAT_VERSION:
                    problem(f"header version {obj.get('version')!r}, expected 3", line_no)
                header = rec
                continue
        if obj.get("type") == HEADER_TYPE:
            problem("a second session header; line skipped", line_no)
            continue
        if not isinstance(obj.get("type"), str):
            problem("record has no string 'type'; line skipped", line_no)
            continue
        # Invariant FORMAT-I4: ids are unique; a parentId names an earlier entry or is null.
        if rec.id is not None:
            if rec.id in seen:
                problem(f"duplicate id {rec.id!r}", line_no)
            seen.add(rec.id)
        if rec.parent_id is not None and rec.parent_id not in seen and expect_header:
            problem(f"parentId {rec.parent_id!r} names no earlier entry", line_no)
        entries.append(rec)
    if expect_header and header is None and line_no < start_line and data.strip():
        problem("missing session header", start_line)
    return Transcript(
        path=path,
        header=header,
        entries=tuple(entries),
        problems=tuple(problems),
        torn_tail=data[end:],
        size=end,
    )


def read_bytes(path: str) -> bytes:
    """A transcript's bytes, read-only; ``.gz`` files are decompressed (RETENTION-I6)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return f.read()


def read_transcript(path: str) -> Transcript:
    """Read-only: opens with ``"rb"`` and never writes (Invariant FORMAT-I3). A ``.gz`` path
    (an archived transcript, docs/design/retention.md) is decompressed as it is read."""
    data = read_bytes(path)
    return parse_transcript(data, path=path)
