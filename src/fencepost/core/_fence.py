"""The fence verdict: pure functions from (committed state, observed file) to an outcome.

docs/design/write-protocol.md, "Protocol steps", and DESIGN.md §3 "The fence, on every
reacquire". The I/O around these functions lives in ``_store.py``; nothing here touches a file.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from typing import Literal

from ._chain import decode_stamped, walk_chain
from ._stamp import line_hash
from ._state import FileState, Pending

__all__ = [
    "Observed",
    "StatVerdict",
    "Growth",
    "observe",
    "sentinel_mtime_ns",
    "settle_pending",
    "classify_stat",
    "classify_growth",
    "prefix_intact",
]

#: Protocol writes set the transcript's mtime this far in the past, whole seconds. The kernel
#: stamps every other write with the present, so an outside write can never leave the committed
#: mtime in place, whatever the filesystem's timestamp granularity (Invariant STORE-I4; this
#: replaces git's racy-clean rule, see docs/decisions/0002-sentinel-mtime.md).
SENTINEL_LAG_S = 2


def sentinel_mtime_ns(now_ns: int) -> int:
    return (now_ns // 1_000_000_000 - SENTINEL_LAG_S) * 1_000_000_000


@dataclass(frozen=True)
class Observed:
    dev: int
    ino: int
    size: int
    mtime_ns: int
    atime_ns: int

    def matches(self, state: FileState) -> bool:
        """The O(1) fast path: nothing happened outside the protocol (Invariant STORE-I4)."""
        return (self.dev, self.ino, self.size, self.mtime_ns) == (
            state.dev,
            state.ino,
            state.size,
            state.mtime_ns,
        )


def observe(st: os.stat_result) -> Observed:
    return Observed(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_atime_ns)


StatVerdict = Literal["unchanged", "deleted", "replaced", "truncated", "same_size", "grown"]


def settle_pending(
    committed: FileState, pending: Pending | None, observed: Observed | None
) -> FileState:
    """The committed state, including a pending write that visibly completed (O(1))."""
    if pending is not None and observed is not None and observed.matches(pending.after):
        return pending.after
    return committed


def classify_stat(committed: FileState, observed: Observed | None) -> StatVerdict:
    if observed is None:
        return "deleted"
    if (observed.dev, observed.ino) != (committed.dev, committed.ino):
        return "replaced"
    if observed.matches(committed):
        return "unchanged"
    if observed.size < committed.size:
        return "truncated"
    if observed.size == committed.size:
        return "same_size"
    return "grown"


def prefix_intact(data: bytes, committed: FileState) -> tuple[bool, str]:
    """Whether ``data`` (the first ``committed.size`` bytes) is what the protocol committed.

    O(size): only used off the fast path. Returns (intact, description of the first difference).
    """
    if len(data) != committed.size:
        return False, f"expected {committed.size} bytes, found {len(data)}"
    report = walk_chain(data)
    if report.problems:
        p = report.problems[0]
        return False, f"line {p.line} (byte {p.offset}): {p.message}"
    if committed.last_hash is None:
        return True, "no protocol record to compare yet"  # a new or just-adopted transcript
    if report.last_hash != committed.last_hash or report.last_seq != committed.seq:
        return False, (
            f"the last protocol record is seq {report.last_seq}, expected seq {committed.seq} "
            "with the committed hash"
        )
    return True, "identical bytes"


@dataclass(frozen=True)
class Growth:
    """What the bytes past the committed end are.

    ``committed`` is advanced over complete protocol records a crashed writer left behind
    (recovery, not a change outside the protocol). ``torn`` are bytes of a protocol write that
    did not finish (quarantined, Invariant RECOVERY-I1). ``foreign_len`` bytes starting at
    ``foreign_offset`` were written by nobody the protocol knows.
    """

    committed: FileState
    recovered_records: int
    torn: bytes
    foreign_offset: int | None
    foreign_len: int
    foreign_head: bytes


def classify_growth(
    committed: FileState, pending: Pending | None, tail: bytes, observed: Observed
) -> Growth:
    """Classify ``tail``, the bytes in ``[committed.size, observed.size)``."""
    state = committed
    i = 0
    recovered = 0
    if pending is not None and pending.offset == committed.size:
        chunk = tail[: pending.length]
        if len(chunk) == pending.length and hashlib.sha256(chunk).hexdigest() == pending.sha256:
            # Invariant RECOVERY-I3: kept and committed, never quarantined. The intent's
            # writer wrote everything but died before (or while) settling it.
            state, i = pending.after, pending.length
            recovered += chunk.count(b"\n")
        elif len(tail) < pending.length:
            # A protocol write died midway: the whole tail is its prefix (RECOVERY-I1).
            return Growth(committed, 0, tail, None, 0, b"")
    # Complete records that continue the chain (an intent lost with the state record).
    while i < len(tail):
        nl = tail.find(b"\n", i)
        if nl < 0:
            break
        raw = tail[i:nl]
        rec, stamp, _ = decode_stamped(raw)
        if (
            rec is None
            or stamp is None
            or stamp.seq != state.seq + 1
            or stamp.prev != state.last_hash
            or stamp.adopted_bytes is not None
        ):
            break
        leaf = rec.get("id") if isinstance(rec.get("id"), str) else state.leaf_id
        state = replace(
            state,
            size=state.size + len(raw) + 1,
            seq=stamp.seq,
            last_hash=line_hash(raw),
            leaf_id=leaf,
        )
        recovered += 1
        i = nl + 1
    state = replace(state, dev=observed.dev, ino=observed.ino)
    if i == len(tail):
        return Growth(state, recovered, b"", None, 0, b"")
    return Growth(state, recovered, b"", committed.size + i, len(tail) - i, tail[i : i + 200])
