"""``verify``: everything wrong with a transcript, by line number, without changing a byte.

Combines the format check (``_format``: JSON, header, ids, parent links) with the chain check
(``_chain``: stamps, sequence, hash links, adoptions) and lists the fence events recorded for
the session. Pure reader (Invariant STORE-I8).

An operator's adoption (``sessions adopt``: a ``fencepost.adopt`` record whose stamp proves the
bytes before it) is a baseline: problems on the lines before the last one are reported as
``adopted``, not as failures, so an adopted transcript verifies ok and anything new after it
still fails (Invariant STORE-I15).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

from ._chain import walk_chain
from ._format import Transcript, parse_transcript, read_bytes

__all__ = ["ADOPT_CUSTOM_TYPE", "Adoption", "VerifyProblem", "VerifyReport", "verify_transcript"]

#: The customType of the record ``Session.adopt`` writes (writer ``operator``).
ADOPT_CUSTOM_TYPE = "fencepost.adopt"


@dataclass(frozen=True)
class VerifyProblem:
    line: int
    kind: str
    message: str
    adopted_at: int | None = None  # line of the operator's adoption that accepted it

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"line": self.line, "kind": self.kind, "message": self.message}
        if self.adopted_at is not None:
            out["adopted_at"] = self.adopted_at
        return out


@dataclass(frozen=True)
class Adoption:
    """An operator's ``sessions adopt``, as its record in the transcript shows it."""

    line: int
    entry_id: str | None
    timestamp: str | None
    note: str
    by: str | None
    adopted_bytes: int
    left_active_path: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "entry_id": self.entry_id,
            "timestamp": self.timestamp,
            "note": self.note,
            "by": self.by,
            "adopted_bytes": self.adopted_bytes,
            "left_active_path": list(self.left_active_path),
        }


@dataclass(frozen=True)
class VerifyReport:
    path: str
    size_bytes: int
    lines: int
    entries: int
    protocol_records: int
    adopted_only: bool  # no protocol record yet: another tool's file, adopted on first write
    writers: dict[str, int]
    problems: tuple[VerifyProblem, ...]
    fence_events: tuple[dict[str, Any], ...] = field(default=())
    adopted_problems: tuple[VerifyProblem, ...] = ()  # before the baseline: not failures
    adoptions: tuple[Adoption, ...] = ()

    @property
    def baseline(self) -> Adoption | None:
        """The last operator adoption: problems before its line are adopted (STORE-I15)."""
        return self.adoptions[-1] if self.adoptions else None

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "size_bytes": self.size_bytes,
            "lines": self.lines,
            "entries": self.entries,
            "protocol_records": self.protocol_records,
            "adopted_only": self.adopted_only,
            "writers": self.writers,
            "problems": [p.to_json() for p in self.problems],
            "adopted_problems": [p.to_json() for p in self.adopted_problems],
            "adoptions": [a.to_json() for a in self.adoptions],
            "fence_events": list(self.fence_events),
        }


def _adoptions(transcript: Transcript, lines: tuple[int, ...]) -> tuple[Adoption, ...]:
    """The chain's valid adoptions that an operator made (``sessions adopt``), oldest first.
    The first protocol write on another tool's file also adopts, but it is no baseline: nobody
    inspected what it accepted."""
    by_line = {r.line: r for r in transcript.entries}
    out = []
    for line in lines:
        rec = by_line.get(line)
        if rec is None or rec.type != "custom" or rec.data.get("customType") != ADOPT_CUSTOM_TYPE:
            continue
        if (rec.stamp or {}).get("writer") != "operator":
            continue
        data = rec.data.get("data")
        data = data if isinstance(data, dict) else {}
        left = data.get("left_active_path")
        out.append(
            Adoption(
                line=line,
                entry_id=rec.id,
                timestamp=rec.data.get("timestamp")
                if isinstance(rec.data.get("timestamp"), str)
                else None,
                note=str(data.get("note", "")),
                by=data.get("by") if isinstance(data.get("by"), str) else None,
                adopted_bytes=rec.offset,
                left_active_path=tuple(str(i) for i in left) if isinstance(left, list) else (),
            )
        )
    return tuple(out)


def verify_transcript(
    path: str | os.PathLike[str], fence_events: tuple[dict[str, Any], ...] = ()
) -> VerifyReport:
    p = os.fspath(path)
    data = read_bytes(p)  # read-only: verify never changes a byte; .gz archives too
    transcript = parse_transcript(data, path=p)
    chain = walk_chain(data)
    seen: set[tuple[int, str]] = set()
    problems: list[VerifyProblem] = []
    for cp in chain.problems:
        seen.add((cp.line, "malformed" if cp.kind == "malformed" else cp.kind))
        problems.append(VerifyProblem(cp.line, cp.kind, cp.message))
    for fp in transcript.problems:
        line = fp.line or 0
        if (line, "malformed") in seen or (line, "torn_tail") in seen:
            continue  # the chain walk already named this line
        problems.append(VerifyProblem(line, "format", fp.detail))
    problems.sort(key=lambda p: (p.line, p.kind))
    adoptions = _adoptions(transcript, chain.adoptions)
    adopted: list[VerifyProblem] = []
    if adoptions:
        # Invariant STORE-I15: what the operator inspected and accepted is not a failure.
        at = adoptions[-1].line
        adopted = [replace(p, adopted_at=at) for p in problems if p.line < at]
        problems = [p for p in problems if p.line >= at]
    return VerifyReport(
        path=p,
        size_bytes=len(data),
        lines=chain.lines,
        entries=len(transcript.entries),
        protocol_records=sum(chain.writers.values()),
        adopted_only=not chain.stamped,
        writers=dict(chain.writers),
        problems=tuple(problems),
        fence_events=fence_events,
        adopted_problems=tuple(adopted),
        adoptions=adoptions,
    )
