"""``verify``: everything wrong with a transcript, by line number, without changing a byte.

Combines the format check (``_format``: JSON, header, ids, parent links) with the chain check
(``_chain``: stamps, sequence, hash links, adoptions) and lists the fence events recorded for
the session. Pure reader (Invariant STORE-I8).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ._chain import walk_chain
from ._format import parse_transcript, read_bytes

__all__ = ["VerifyProblem", "VerifyReport", "verify_transcript"]


@dataclass(frozen=True)
class VerifyProblem:
    line: int
    kind: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "kind": self.kind, "message": self.message}


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
            "fence_events": list(self.fence_events),
        }


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
    )
