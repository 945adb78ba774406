"""The pi v3 transcript format (docs/design/transcript-format.md)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fencepost import (
    RecordTooLargeError,
    SyncSessionStore,
    TranscriptFormatError,
    parse_transcript,
)
from fencepost.core import (
    branch_summary,
    compaction,
    custom,
    custom_message,
    label,
    message,
    model_change,
    read_transcript,
    session_info,
    text_problem,
    thinking_level_change,
)
from fencepost.core._format import encode_record, make_header, utc_timestamp, validate_entry

HEADER = make_header("s", cwd="/w", timestamp="2026-01-01T00:00:00.000Z")

EVERY_TYPE = [
    message("user", "hi"),
    message("assistant", [{"type": "text", "text": "hello"}], provider="p", model="m"),
    message("toolResult", [{"type": "text", "text": "42"}], toolCallId="c1", isError=False),
    model_change("anthropic", "claude-opus-4-6"),
    thinking_level_change("high"),
    custom("model-snapshot", {"provider": "p", "model": "m"}),
    custom_message("subagent", "done", display=True),
    label("00000001", "checkpoint"),
    session_info("daily ops"),
    compaction("summary", "00000001", 12345),
    branch_summary("00000002", "tried X"),
]


def _lines(*objs) -> bytes:
    return b"".join(encode_record(o) + b"\n" for o in objs)


def _with_ids(entries):
    out, parent = [], None
    for i, e in enumerate(entries, start=1):
        eid = f"{i:08x}"
        out.append({**e, "id": eid, "parentId": parent, "timestamp": "2026-01-01T00:00:01.000Z"})
        parent = eid
    return out


def test_every_entry_type_round_trips_byte_for_byte():
    """Invariant FORMAT-I1, FORMAT-G1."""
    entries = _with_ids(EVERY_TYPE)
    data = _lines(HEADER, *entries)
    t = parse_transcript(data)
    assert not t.problems and t.torn_tail == b"" and t.size == len(data)
    assert t.header is not None and t.header.data == HEADER
    assert [r.data for r in t.entries] == entries
    assert b"".join(r.raw + b"\n" for r in (t.header, *t.entries)) == data
    for entry in EVERY_TYPE:
        validate_entry(entry)
        assert b"\n" not in encode_record(entry)


def test_unknown_types_and_keys_survive_byte_for_byte():
    """Invariant FORMAT-I2."""
    raw = (
        b'{"type":"future_thing","id":"0000000a","parentId":null,"zeta":1,"alpha":{"x":[1,2]}}\n'
        b'{"type":"message","id":"0000000b","parentId":"0000000a","message":{"role":"user",'
        b'"content":"x","newField":true},"extra":"kept"}\n'
    )
    t = parse_transcript(encode_record(HEADER) + b"\n" + raw)
    assert not t.problems
    assert b"".join(r.raw + b"\n" for r in t.entries) == raw
    assert list(t.entries[0].data) == ["type", "id", "parentId", "zeta", "alpha"]
    assert encode_record(t.entries[1].data) + b"\n" == raw.split(b"\n", 1)[1]
    validate_entry(t.entries[0].data)  # unknown types are accepted for appends too


def test_bad_lines_are_reported_by_line_number_and_later_lines_still_parse():
    """FORMAT-G2."""
    good = encode_record(_with_ids([message("user", "ok")])[0])
    data = b"\n".join(
        [encode_record(HEADER), b"{broken", b"\xff\xfe\xfd", b"[1,2,3]", b"", good, b"tail"]
    )
    t = parse_transcript(data, path="x.jsonl")
    by_line = {p.line: p.detail for p in t.problems}
    assert set(by_line) == {2, 3, 4, 5}
    assert "not JSON" in by_line[2] and "not UTF-8" in by_line[3]
    assert "not an object" in by_line[4] and "blank" in by_line[5]
    assert [r.line for r in t.entries] == [6]
    assert t.torn_tail == b"tail"
    assert "x.jsonl:2" in str(t.problems[0])


def test_a_missing_header_is_a_problem_not_an_exception():
    t = parse_transcript(encode_record(_with_ids([message("user", "x")])[0]) + b"\n")
    assert [p.line for p in t.problems] == [1]
    assert "header" in t.problems[0].detail and len(t.entries) == 1


def test_duplicate_ids_and_dangling_parents_are_reported_by_line():
    """Invariant FORMAT-I4."""
    a = {**message("user", "a"), "id": "0000000a", "parentId": None}
    dup = {**message("user", "b"), "id": "0000000a", "parentId": None}
    dangling = {**message("user", "c"), "id": "0000000c", "parentId": "ffffffff"}
    t = parse_transcript(_lines(HEADER, a, dup, dangling))
    assert [(p.line, "duplicate" in p.detail) for p in t.problems] == [(3, True), (4, False)]
    assert "names no earlier entry" in t.problems[1].detail


def test_an_oversize_record_is_refused_before_writing():
    """Invariant FORMAT-I1."""
    with pytest.raises(RecordTooLargeError, match="exceeds the limit"):
        encode_record(custom("big", "x" * (1024 * 1024)))


def test_a_record_with_a_lone_surrogate_is_refused_before_writing_format_i5(tmp_path):
    """Invariant FORMAT-I5: a lone surrogate has no UTF-8 form; the record is refused, and the
    store writes nothing (no transcript, no state)."""
    with pytest.raises(TranscriptFormatError, match="lone UTF-16 surrogate at character"):
        encode_record(message("user", "ok \ud800 not ok"))
    with (
        SyncSessionStore(tmp_path, durability="buffered") as store,
        pytest.raises(TranscriptFormatError),
    ):
        store.session("s").append(message("user", "x\udfff"), writer="delivery")
    assert not (tmp_path / "s.jsonl").exists()
    encode_record(message("user", "a pair is fine: \U0001f600 \u00e9"))


@pytest.mark.parametrize(
    ("text", "multiline", "problem"),
    [
        ("plain text\twith tab\r\nand lines", True, None),
        ("émoji \U0001f600 and CJK 漢字", False, None),
        ("a\ud800b", True, "lone UTF-16 surrogate ('\\ud800') at character 1"),
        ("a\udfff", False, "lone UTF-16 surrogate"),
        ("nul\x00", True, "control character ('\\x00') at character 3"),
        ("bell\x07", True, "control character"),
        ("del\x7f", True, "control character"),
        ("two\nlines", False, "control character ('\\n') at character 3"),
        ("tab\there", False, "control character"),
    ],
)
def test_text_problem_names_surrogates_and_control_characters_format_i5(text, multiline, problem):
    """Invariant FORMAT-I5: the one text rule of the edges."""
    found = text_problem(text, multiline=multiline)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ({"type": "session"}, "reserved for the header"),
        ({"no": "type"}, "string 'type'"),
        ({"type": "message", "message": {"content": "x"}}, "message.role"),
        ({"type": "message"}, "needs 'message'"),
        ({"type": "compaction", "summary": "s"}, "needs 'firstKeptEntryId'"),
        ({"type": "custom", "customType": "x", "id": 5}, "'id' must be"),
    ],
)
def test_entries_that_cannot_be_appended_are_refused_with_the_field_named(entry, complaint):
    with pytest.raises(TranscriptFormatError, match=complaint):
        validate_entry(entry)


def test_reading_never_changes_the_file(tmp_path):
    """Invariant FORMAT-I3."""
    path = tmp_path / "s.jsonl"
    path.write_bytes(_lines(HEADER, *_with_ids(EVERY_TYPE)) + b'{"torn')
    os.chmod(path, 0o444)  # a reader must not even need write permission
    before = (path.read_bytes(), os.stat(path).st_mtime_ns)
    t = read_transcript(str(path))
    assert t.torn_tail == b'{"torn' and len(t.entries) == len(EVERY_TYPE)
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before


@given(
    st.lists(
        st.dictionaries(st.text(min_size=1, max_size=5), st.integers() | st.text()), max_size=5
    )
)
def test_any_json_objects_with_a_type_round_trip(extras):
    """Invariant FORMAT-I2, for arbitrary keys and values."""
    entries = [{**e, "type": f"t{i}"} for i, e in enumerate(extras)]
    data = _lines(HEADER, *entries)
    t = parse_transcript(data)
    assert [json.loads(r.raw) for r in t.entries] == [r.data for r in t.entries]
    assert b"".join(r.raw + b"\n" for r in t.entries) == data.split(b"\n", 1)[1]


@given(st.integers(min_value=0, max_value=2**62))
def test_timestamps_are_the_isoformat_of_the_instant_truncated_to_milliseconds(now_ns):
    """utc_timestamp formats each second once (a hot-path cost); it must say what datetime says."""
    dt = datetime.fromtimestamp(now_ns // 1_000_000_000, UTC).replace(
        microsecond=now_ns % 1_000_000_000 // 1000
    )
    assert utc_timestamp(now_ns) == dt.isoformat(timespec="milliseconds")[:-6] + "Z"
