"""The hash chain walk (Invariant STORE-I3) over hand-built byte strings."""

from __future__ import annotations

import hashlib
import json

from fencepost import walk_chain
from fencepost.core._stamp import Stamp, line_hash


def rec(seq: int, prev: str | None, *, adopted: tuple[int, str] | None = None) -> bytes:
    st = Stamp("delivery", None, 0, seq, prev)
    if adopted:
        st = Stamp("delivery", None, 0, seq, prev, adopted[0], adopted[1])
    return json.dumps({"type": "custom", "id": f"{seq:08x}", "fencepost": st.to_json()}).encode()


def chain(n: int, start: int = 0, prev: str | None = None) -> list[bytes]:
    out = []
    for seq in range(start, start + n):
        raw = rec(seq, prev)
        out.append(raw)
        prev = line_hash(raw)
    return out


def join(lines: list[bytes]) -> bytes:
    return b"".join(x + b"\n" for x in lines)


def test_a_clean_chain_verifies():
    report = walk_chain(join(chain(5)))
    assert report.ok and report.last_seq == 4 and report.lines == 5


def test_a_seq_gap_and_a_broken_link_are_named_by_line():
    lines = chain(5)
    lines[2] = rec(9, line_hash(lines[1]))
    kinds = {(p.line, p.kind) for p in walk_chain(join(lines)).problems}
    assert (3, "seq_gap") in kinds and (4, "seq_gap") in kinds and (4, "broken_link") in kinds


def test_unstamped_lines_between_protocol_records_are_outside_the_protocol():
    lines = chain(3)
    lines.insert(2, b'{"type":"custom"}')
    problems = walk_chain(join(lines)).problems
    assert [(p.line, p.kind) for p in problems] == [(3, "outside_protocol")]


def test_an_adoption_covers_the_bytes_before_it_and_restarts_the_chain():
    foreign = b'{"type":"session"}\n{"not":"stamped"}\n'
    data = foreign + join(
        [rec(1, None, adopted=(len(foreign), hashlib.sha256(foreign).hexdigest()))]
    )
    assert walk_chain(data).ok
    tampered = data.replace(b"stamped", b"STAMPED")
    assert [p.kind for p in walk_chain(tampered).problems] == [
        "bad_adoption",
        "outside_protocol",
        "outside_protocol",
    ]


def test_a_file_no_protocol_writer_touched_has_nothing_to_prove():
    report = walk_chain(b'{"type":"session"}\n{"type":"message"}\n')
    assert report.ok and not report.stamped


def test_malformed_lines_and_a_torn_tail_are_reported_with_line_numbers():
    data = join(chain(2)) + b"\xff\xfe not json\n" + b'{"partial'
    kinds = [(p.line, p.kind) for p in walk_chain(data).problems]
    assert (3, "malformed") in kinds and (4, "torn_tail") in kinds
