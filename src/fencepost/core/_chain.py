"""Walking the hash chain of a transcript: pure functions over bytes (STORE-I2, STORE-I3).

Rules (docs/design/write-protocol.md, "Stamps and the chain"):

- a stamped line's ``seq`` is one more than the previous stamped line's, and its ``prev`` is the
  hash of the previous stamped line;
- a stamped line may carry ``adopted = {bytes, sha256}``: the SHA-256 of every byte before it.
  It accepts that prefix as it stands (a file from another tool, or a change an operator
  adopted) and restarts the chain;
- every other line must be stamped; an unstamped line that no later adoption covers was
  written outside the protocol.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from ._stamp import STAMP_KEY, Stamp, line_hash

__all__ = ["ChainProblem", "ChainReport", "ProblemKind", "walk_chain", "decode_stamped"]

ProblemKind = Literal[
    "malformed",  # not UTF-8 JSON object
    "bad_stamp",  # a stamp that does not parse
    "seq_gap",  # seq is not previous + 1
    "broken_link",  # prev is not the hash of the previous protocol line
    "outside_protocol",  # an unstamped line no adoption covers
    "bad_adoption",  # an adoption digest that does not match the bytes before it
    "torn_tail",  # bytes after the last newline
]


@dataclass(frozen=True)
class ChainProblem:
    line: int
    offset: int
    kind: ProblemKind
    message: str


@dataclass(frozen=True)
class ChainReport:
    lines: int
    size: int  # bytes up to and including the last newline
    problems: tuple[ChainProblem, ...]
    last_seq: int | None
    last_hash: str | None
    leaf_id: str | None
    writers: dict[str, int] = field(default_factory=dict)
    adoptions: tuple[int, ...] = ()  # lines whose stamp validly adopts every byte before them

    @property
    def stamped(self) -> bool:
        """False for a file no protocol writer has written yet."""
        return self.last_seq is not None

    @property
    def ok(self) -> bool:
        return not self.problems


def decode_stamped(raw: bytes) -> tuple[dict[str, Any] | None, Stamp | None, str | None]:
    """(record, stamp, error) for one line; record None when it is not a JSON object."""
    try:
        rec = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return None, None, f"not UTF-8 at byte {exc.start} of the line"
    except ValueError as exc:
        return None, None, f"not JSON ({exc})"
    if not isinstance(rec, dict):
        return None, None, f"a JSON {type(rec).__name__}, not an object"
    if STAMP_KEY not in rec:
        return rec, None, None
    try:
        return rec, Stamp.from_json(rec[STAMP_KEY]), None
    except ValueError as exc:
        return rec, None, f"bad stamp: {exc}"


def walk_chain(data: bytes) -> ChainReport:
    """Check the whole chain of a transcript's bytes (from offset 0). O(len(data))."""
    problems: list[ChainProblem] = []
    unstamped: list[tuple[int, int]] = []  # (line, offset) not yet covered
    last_seq: int | None = None
    last_hash: str | None = None
    leaf_id: str | None = None
    writers: Counter[str] = Counter()
    adoptions: list[int] = []
    line_no = 0
    pos = 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            break
        line_no += 1
        raw = data[pos:nl]
        rec, stamp, err = decode_stamped(raw)
        if rec is None:
            problems.append(ChainProblem(line_no, pos, "malformed", err or "malformed"))
            unstamped.append((line_no, pos))
        elif stamp is None:
            if err is not None:
                problems.append(ChainProblem(line_no, pos, "bad_stamp", err))
            unstamped.append((line_no, pos))
        else:
            restarted = False
            if stamp.adopted_bytes is not None:
                digest = hashlib.sha256(data[:pos]).hexdigest()
                if stamp.adopted_bytes != pos or stamp.adopted_sha256 != digest:
                    problems.append(
                        ChainProblem(
                            line_no,
                            pos,
                            "bad_adoption",
                            f"adopts {stamp.adopted_bytes} bytes but {pos} precede it, or "
                            "their digest differs: lines before it changed after adoption",
                        )
                    )
                else:
                    unstamped.clear()
                    restarted = True
                    adoptions.append(line_no)
            for u_line, u_off in unstamped:
                problems.append(
                    ChainProblem(
                        u_line, u_off, "outside_protocol", "no stamp: written outside the protocol"
                    )
                )
            unstamped.clear()
            if not restarted and last_seq is not None:
                if stamp.seq != last_seq + 1:
                    problems.append(
                        ChainProblem(
                            line_no,
                            pos,
                            "seq_gap",
                            f"seq {stamp.seq} follows seq {last_seq} (expected {last_seq + 1})",
                        )
                    )
                if stamp.prev != last_hash:
                    problems.append(
                        ChainProblem(
                            line_no,
                            pos,
                            "broken_link",
                            "prev does not match the hash of the previous protocol line",
                        )
                    )
            last_seq, last_hash = stamp.seq, line_hash(raw)
            writers[stamp.writer] += 1
        if rec is not None and isinstance(rec.get("id"), str) and rec.get("type") != "session":
            leaf_id = rec["id"]
        pos = nl + 1
    if last_seq is None:
        # A file no protocol writer has touched yet (another tool's): nothing to prove, and the
        # first protocol write adopts it (Invariant STORE-I7).
        unstamped.clear()
    for u_line, u_off in unstamped:
        problems.append(
            ChainProblem(
                u_line, u_off, "outside_protocol", "no stamp: written outside the protocol"
            )
        )
    if pos < len(data):
        problems.append(
            ChainProblem(
                line_no + 1,
                pos,
                "torn_tail",
                f"{len(data) - pos} bytes after the last newline (an interrupted write)",
            )
        )
    return ChainReport(
        lines=line_no,
        size=pos,
        problems=tuple(problems),
        last_seq=last_seq,
        last_hash=last_hash,
        leaf_id=leaf_id,
        writers=dict(writers),
        adoptions=tuple(adoptions),
    )
