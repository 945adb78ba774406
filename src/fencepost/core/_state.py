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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..errors import FencepostInternalError
from ._format import json_str as _s

__all__ = [
    "FileState",
    "Pending",
    "LeaseHolder",
    "SessionState",
    "StateFile",
    "read_state",
    "write_state",
]

T = TypeVar("T")

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


class _Keep:
    """The type of KEEP: "leave this field as it is" where None is a value."""


KEEP = _Keep()


@dataclass(frozen=True)
class SessionState:
    gen: int
    epoch: int  # Invariant STORE-I10: never decreases
    lease: LeaseHolder | None
    committed: FileState | None  # None: the protocol never wrote this transcript
    pending: Pending | None

    def next(
        self,
        *,
        epoch: int | None = None,
        lease: LeaseHolder | _Keep | None = KEEP,
        committed: FileState | _Keep | None = KEEP,
        pending: Pending | _Keep | None = KEEP,
    ) -> SessionState:
        """The next generation, with the given fields changed (spelled out: it runs twice per
        append, where ``dataclasses.replace`` was a measurable cost)."""
        return SessionState(
            self.gen + 1,
            self.epoch if epoch is None else epoch,
            self.lease if isinstance(lease, _Keep) else lease,
            self.committed if isinstance(committed, _Keep) else committed,
            self.pending if isinstance(pending, _Keep) else pending,
        )


EMPTY_STATE = SessionState(gen=0, epoch=0, lease=None, committed=None, pending=None)


class _LastEncoded(Generic[T]):
    """``encode`` with a one-entry cache keyed by identity. The values are immutable, and an
    append encodes the same objects again (the committed state of one write is the ``after`` of
    the one before; the lease rarely changes), so identity is a sound and cheap key. The entry is
    one tuple, read once, so threads sharing the cache never mix two entries."""

    def __init__(self, encode: Callable[[T], str]) -> None:
        self._encode = encode
        self._last: tuple[T | None, str] = (None, "")

    def __call__(self, value: T | None) -> str:
        if value is None:
            return "null"
        last = self._last
        if value is last[0]:
            return last[1]
        out = self._encode(value)
        self._last = (value, out)
        return out


_file_json = _LastEncoded[FileState](
    lambda fs: (
        f'{{"dev":{fs.dev},"ino":{fs.ino},"size":{fs.size},"mtime_ns":{fs.mtime_ns},'
        f'"seq":{fs.seq},"last_hash":{_s(fs.last_hash)},"leaf_id":{_s(fs.leaf_id)}}}'
    )
)
_lease_json = _LastEncoded[LeaseHolder](
    lambda lease: (
        f'{{"run_id":{_s(lease.run_id)},"pid":{lease.pid},"pid_start":{_s(lease.pid_start)},'
        f'"host":{_s(lease.host)},"acquired_ns":{lease.acquired_ns},'
        f'"deadline_ns":{lease.deadline_ns}}}'
    )
)


def _pending_json(p: Pending | None) -> str:
    if p is None:
        return "null"
    return (
        f'{{"offset":{p.offset},"length":{p.length},"sha256":{_s(p.sha256)},'
        f'"after":{_file_json(p.after)},"writer":{_s(p.writer)},"run_id":{_s(p.run_id)},'
        f'"pid":{p.pid}}}'
    )


def _to_json(state: SessionState) -> bytes:
    """The slot body, JSON spelled out field by field: it is encoded twice per append, where
    ``dataclasses.asdict`` + ``json`` were a third of an append's cost. Every field is an int or
    an escaped string, so the output is plain JSON (tests/core/test_state.py checks it against
    ``json.loads``)."""
    body = (
        f'{{"gen":{state.gen},"epoch":{state.epoch},"lease":{_lease_json(state.lease)},'
        f'"committed":{_file_json(state.committed)},"pending":{_pending_json(state.pending)}}}'
    ).encode()
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
