"""The per-session state record: lease epoch and committed state (docs/design/write-protocol.md).

Stored in ``<id>.jsonl.state`` as two fixed-size slots written alternately (A/B, like a
filesystem superblock). Each slot is ``<crc32 hex> <json>`` padded to SLOT_BYTES; a reader takes
the valid slot with the highest generation, so a torn slot write falls back to the previous one
(Invariant STORE-I6).

Only the holder of the write lock writes it. It is not fsynced: everything in it except the epoch
can be re-derived from the transcript's hash chain, and the epoch only matters while a lease
holder is alive (see the failure table of the design page).
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from typing import Any

from ..errors import FencepostInternalError

__all__ = [
    "FileState",
    "Pending",
    "LeaseHolder",
    "SessionState",
    "StateFile",
    "read_state",
    "write_state",
]

#: Big enough for the lease and both file states with long run ids; small enough for one page.
SLOT_BYTES = 2048


@dataclass(frozen=True)
class FileState:
    """What the protocol committed: the transcript as the last protocol write left it."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    seq: int  # seq of the last protocol record (0 = the header)
    last_hash: str | None  # hash of the last protocol line (Invariant STORE-I3)
    leaf_id: str | None  # id of the last entry, the default parent of the next one


@dataclass(frozen=True)
class Pending:
    """Write-ahead intent: a protocol write of ``length`` bytes at ``offset`` is in progress."""

    offset: int
    length: int
    sha256: str
    after: FileState
    writer: str
    run_id: str | None
    pid: int


@dataclass(frozen=True)
class LeaseHolder:
    run_id: str
    pid: int
    pid_start: str | None  # process start time, to tell a reused pid from the holder
    host: str
    acquired_ns: int
    deadline_ns: int  # wall clock; a holder past it may be superseded


@dataclass(frozen=True)
class SessionState:
    gen: int
    epoch: int  # Invariant STORE-I10: never decreases
    lease: LeaseHolder | None
    committed: FileState | None  # None: the protocol never wrote this transcript
    pending: Pending | None

    def next(self, **changes: Any) -> SessionState:
        """The next generation with ``changes`` (spelled out: on the hot path twice per append,
        where ``dataclasses.replace`` was a measurable cost)."""
        unknown = changes.keys() - {"epoch", "lease", "committed", "pending"}
        if unknown:
            raise TypeError(f"SessionState has no field(s) {sorted(unknown)}")
        get = changes.get
        return SessionState(
            gen=self.gen + 1,
            epoch=get("epoch", self.epoch),
            lease=get("lease", self.lease),
            committed=get("committed", self.committed),
            pending=get("pending", self.pending),
        )


EMPTY_STATE = SessionState(gen=0, epoch=0, lease=None, committed=None, pending=None)


def _plain(state: SessionState) -> dict[str, Any]:
    """``dataclasses.asdict(state)`` spelled out: no recursion, no copies (it runs twice per
    append; the generic version was a third of an append's cost)."""
    pending = state.pending
    return {
        "gen": state.gen,
        "epoch": state.epoch,
        "lease": None if state.lease is None else vars(state.lease),
        "committed": None if state.committed is None else vars(state.committed),
        "pending": None if pending is None else {**vars(pending), "after": vars(pending.after)},
    }


_ENCODER = json.JSONEncoder(separators=(",", ":"))  # built once, not per call


def _to_json(state: SessionState) -> bytes:
    body = _ENCODER.encode(_plain(state)).encode()
    return f"{zlib.crc32(body):08x} ".encode() + body


def _from_json(body: dict[str, Any]) -> SessionState:
    def fs(v: dict[str, Any] | None) -> FileState | None:
        return None if v is None else FileState(**v)

    pend = body["pending"]
    pending = None
    if pend is not None:
        after = fs(pend.pop("after"))
        assert after is not None
        pending = Pending(after=after, **pend)
    lease = body["lease"]
    return SessionState(
        gen=body["gen"],
        epoch=body["epoch"],
        lease=None if lease is None else LeaseHolder(**lease),
        committed=fs(body["committed"]),
        pending=pending,
    )


def _parse_slot(raw: bytes) -> SessionState | None:
    raw = raw.rstrip(b" \n\x00")
    if len(raw) < 10 or raw[8:9] != b" ":
        return None
    body = raw[9:]
    try:
        if int(raw[:8], 16) != zlib.crc32(body):
            return None
        return _from_json(json.loads(body))
    except (ValueError, KeyError, TypeError, AssertionError):
        return None


def read_state(fd: int) -> SessionState:
    """The newest valid slot, or EMPTY_STATE for a new session."""
    return _parse_slots(os.pread(fd, 2 * SLOT_BYTES, 0))


def _parse_slots(data: bytes) -> SessionState:
    best = EMPTY_STATE
    for i in range(2):
        got = _parse_slot(data[i * SLOT_BYTES : (i + 1) * SLOT_BYTES])
        if got is not None and got.gen > best.gen:
            best = got
    return best


def write_state(fd: int, state: SessionState) -> bytes:
    """Write ``state`` into slot ``gen % 2``; the other slot keeps the previous generation."""
    line = _to_json(state)
    if len(line) + 1 > SLOT_BYTES:
        raise FencepostInternalError(f"state record of {len(line)} bytes exceeds one slot")
    slot = line.ljust(SLOT_BYTES - 1) + b"\n"
    if os.pwrite(fd, slot, (state.gen % 2) * SLOT_BYTES) != SLOT_BYTES:
        raise OSError("short write of the session state record")
    return slot


class StateFile:
    """One session's state record, remembering the bytes this handle last read or wrote.

    Every read still goes to the file (another process may have written it); only the parse
    is skipped when the bytes are the ones we already know.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._raw = b""
        self._state = EMPTY_STATE

    def read(self) -> SessionState:
        data = os.pread(self.fd, 2 * SLOT_BYTES, 0)
        if data != self._raw:
            self._raw, self._state = data, _parse_slots(data)
        return self._state

    def write(self, state: SessionState) -> None:
        slot = write_state(self.fd, state)
        if len(self._raw) == 2 * SLOT_BYTES:
            at = (state.gen % 2) * SLOT_BYTES
            self._raw = self._raw[:at] + slot + self._raw[at + SLOT_BYTES :]
            self._state = state
        else:
            self._raw = b""
