"""SessionStore / Session: the write protocol over a directory of JSONL transcripts.

docs/design/write-protocol.md is the contract; invariants are cited where the state they
constrain changes. Layout per session ``<id>``:

- ``<id>.jsonl``            the transcript (pi v3 + one ``fencepost`` stamp per protocol record)
- ``<id>.jsonl.lock``       the write lock (flock) with a diagnostic owner record; never unlinked
- ``<id>.jsonl.state``      lease epoch + committed state, two A/B slots
- ``<id>.jsonl.events``     fence events, one JSON object per line (append-only)
- ``<id>.jsonl.quarantine`` bytes cut from a torn tail, one JSON object per cut (append-only)
- ``<id>.jsonl.index``      derived offset of the last compaction (``_index.py``; rebuildable)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import getpass
import hashlib
import json
import logging
import os
import re
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from ..errors import (
    ChangeReason,
    InvalidSessionIdError,
    OutsideProtocolChangeError,
    SessionNotFoundError,
    TranscriptFormatError,
)
from ._chain import ChainReport, walk_chain
from ._fence import (
    Observed,
    classify_growth,
    classify_stat,
    observe,
    prefix_intact,
    sentinel_mtime_ns,
    settle_pending,
)
from ._format import (
    Transcript,
    encode_record,
    iter_lines,
    make_header,
    parse_transcript,
    read_transcript,
    utc_timestamp,
    validate_entry,
)
from ._lease import DEFAULT_LEASE_TTL_S, Attempt, open_attempt
from ._stamp import STAMP_KEY, line_hash, stamp_json, validate_cooperative_writer_kind
from ._state import (
    EMPTY_STATE,
    FileState,
    LeaseHolder,
    Pending,
    SessionState,
    StateFile,
    read_state,
)
from ._tree import active_path
from ._verify import ADOPT_CUSTOM_TYPE
from ._writelock import WriteLock, WriteLockStatistics, hostname

__all__ = [
    "AdoptResult",
    "AppendResult",
    "Durability",
    "FenceEvent",
    "Session",
    "SessionStatistics",
    "SessionStore",
    "SessionStoreStatistics",
    "TranscriptUpdated",
    "DEFAULT_LOCK_TIMEOUT_S",
    "DEFAULT_MAX_OPEN_SESSIONS",
    "validate_session_id",
]

log = logging.getLogger("fencepost.core")

Durability = Literal["fsync", "buffered"]

#: Longer than anyone in fencepost holds the write lock at a time (an agent turn holds it for its
#: prep and for the tools of one step, 30 s by default: docs/design/agent-runner.md RUNNER-I4); a
#: holder that keeps it longer is stuck, and the waiter says who it is.
DEFAULT_LOCK_TIMEOUT_S = 60.0

#: Sessions whose files a store keeps open while idle (three descriptors each: transcript, state
#: record, lock). 384 descriptors leave most of the common ``ulimit -n 1024`` to busy sessions,
#: sockets and databases (256 would be 75%, past the default warning watermark), and it is far
#: above the sessions a gateway writes in any one minute; a reopen costs three ``open`` calls.
DEFAULT_MAX_OPEN_SESSIONS = 128

#: Busy sessions an eviction pass steps over before it gives up until the next use (amortized O(1)
#: even when most open sessions are busy).
_EVICTION_SCAN = 16

_SESSION_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")  # whole string: fullmatch


def validate_session_id(session_id: str) -> str:
    """Refuse path-like and malformed ids before they touch the filesystem (the one rule: the
    CLI, the HTTP API, cron targets and plugins all call this). Returns the id."""
    if not isinstance(session_id, str):
        raise TypeError(f"session id must be a str, not {type(session_id).__name__}")
    if "/" in session_id or "\\" in session_id or "\x00" in session_id:
        raise InvalidSessionIdError(session_id, "it contains a path separator")
    if session_id in {".", ".."} or ".." in session_id:
        raise InvalidSessionIdError(session_id, "it contains '..'")
    if not _SESSION_ID.fullmatch(session_id):
        raise InvalidSessionIdError(session_id, "it has characters outside the allowed set")
    return session_id


@dataclass(frozen=True)
class AppendResult:
    session_id: str
    writer: str
    run_id: str | None
    epoch: int
    first_seq: int
    last_seq: int
    start_offset: int
    end_offset: int
    entry_ids: tuple[str, ...]


@dataclass(frozen=True)
class AdoptResult:
    """What ``Session.adopt`` accepted and what it changed about the active path."""

    session_id: str
    seq: int  # the adoption record's seq: the chain restarts here
    entry_id: str
    adopted_bytes: int  # every byte before the adoption record (the baseline, STORE-I15)
    note: str
    by: str
    leaf_before: str | None  # the last committed record before the outside change
    leaf_before_missing: bool  # that record is no longer in the file
    leaf_after: str | None  # where the active path continues (the adoption record's parent)
    left_active_path: tuple[str, ...]  # ids on the path before that the path no longer has


#: Ids of records that left the active path, listed in the adoption record (the count is whole).
MAX_LISTED_LEFT = 1000


def _operator() -> str:
    """Who adopts: ``user@host`` of this process, as far as the OS knows it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{hostname()}"


@dataclass(frozen=True)
class TranscriptUpdated:
    """Event: protocol records landed in a transcript (in-process notification)."""

    name = "transcript_updated"
    session_id: str
    path: str
    writer: str
    run_id: str | None
    first_seq: int
    last_seq: int
    start_offset: int
    end_offset: int


@dataclass(frozen=True)
class FenceEvent:
    """A fence decision off the fast path, as recorded in ``<id>.jsonl.events``."""

    time: str
    session_id: str
    kind: str  # outside_change | recovered | quarantined | metadata_adopted | adopted
    reason: str | None
    writer: str | None
    run_id: str | None
    epoch: int | None
    byte_range: tuple[int, int] | None
    description: str

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> FenceEvent:
        br = obj.get("byte_range")
        return cls(
            time=str(obj.get("time")),
            session_id=str(obj.get("session_id")),
            kind=str(obj.get("kind")),
            reason=obj.get("reason"),
            writer=obj.get("writer"),
            run_id=obj.get("run_id"),
            epoch=obj.get("epoch"),
            byte_range=(int(br[0]), int(br[1])) if br else None,
            description=str(obj.get("description", "")),
        )


@dataclass(frozen=True)
class SessionStoreStatistics:
    open_sessions: int  # sessions holding descriptors now (busy ones included)
    max_open_sessions: int
    busy_sessions: int  # open sessions that may not be closed now (lock or attempt in use)
    handles: int  # Session objects alive (open ones plus those a caller still references)
    evictions: int  # idle sessions whose descriptors were closed to stay under the bound


@dataclass(frozen=True)
class SessionStatistics:
    appends: int
    records: int
    bytes_written: int
    fast_path: int
    slow_path: int
    lock: WriteLockStatistics


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _entry_id(salt: int, seq: int) -> str:
    # Invariant STORE-I5: a bijection of seq mod 2**32, so protocol ids never collide in a session.
    return f"{(seq * 0x9E3779B1 + salt) & 0xFFFFFFFF:08x}"


class _Refused(Exception):
    def __init__(self, reason: ChangeReason, description: str, byte_range: tuple[int, int]):
        self.reason: ChangeReason = reason
        self.description = description
        self.byte_range = byte_range


#: Syncs faster than this (moving average) run on the event loop; slower ones in a thread.
INLINE_SYNC_MAX_S = 0.0005


class SessionStore:
    """A directory of sessions. ``store.session(id)`` returns the one handle for that id.

    Descriptors are bounded (Invariant STORE-I11): at most ``max_open_sessions`` idle sessions
    keep their files open, least recently used first out; a busy session (its write lock held or
    waited for, or an attempt in progress) is never closed. A session handle is cheap and is
    reopened on its next use; its correctness never depends on a descriptor staying open
    between writes (Invariant STORE-I12).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        durability: Durability = "fsync",
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
        cwd: str | None = None,
        create: bool = True,
        max_open_sessions: int = DEFAULT_MAX_OPEN_SESSIONS,
    ) -> None:
        if durability not in ("fsync", "buffered"):
            raise ValueError(f"durability must be 'fsync' or 'buffered', not {durability!r}")
        if not isinstance(max_open_sessions, int) or max_open_sessions < 1:
            raise ValueError(f"max_open_sessions must be an int >= 1, not {max_open_sessions!r}")
        self.root = os.path.abspath(os.fspath(root))
        self.durability: Durability = durability
        self.lock_timeout_s = lock_timeout_s
        self.cwd = cwd
        if create:
            os.makedirs(self.root, exist_ok=True)
        elif not os.path.isdir(self.root):
            raise FileNotFoundError(f"session directory {self.root} does not exist")
        self.max_open_sessions = max_open_sessions
        # Every live handle, so one id has one Session (one in-process lock) in this process;
        # only the open set keeps a handle alive.
        self._sessions: weakref.WeakValueDictionary[str, Session] = weakref.WeakValueDictionary()
        self._open: OrderedDict[str, Session] = OrderedDict()  # least recently used first
        self._evictions = 0
        self._subscribers: list[Callable[[TranscriptUpdated], object]] = []
        self._sync_s = 0.0  # moving average of one fdatasync on this store's device

    async def _fdatasync(self, fd: int) -> None:
        """fdatasync, inline while this device syncs faster than a worker-thread hop costs.

        A thread hop costs ~0.1 ms; a fast device syncs in about as much. Inline, the event loop
        waits at most INLINE_SYNC_MAX_S per commit (plus one outlier before the average moves);
        a slower device syncs in a worker thread (docs/decisions/0005-inline-fdatasync.md).
        """
        start = time.perf_counter()
        if self._sync_s < INLINE_SYNC_MAX_S:
            os.fdatasync(fd)
        else:
            await asyncio.to_thread(os.fdatasync, fd)
        self._sync_s = 0.8 * self._sync_s + 0.2 * (time.perf_counter() - start)

    def __repr__(self) -> str:
        return (
            f"<SessionStore {self.root} durability={self.durability} "
            f"open={len(self._open)}/{self.max_open_sessions}>"
        )

    def statistics(self) -> SessionStoreStatistics:
        return SessionStoreStatistics(
            open_sessions=len(self._open),
            max_open_sessions=self.max_open_sessions,
            busy_sessions=sum(not s._idle() for s in self._open.values()),
            handles=len(self._sessions),
            evictions=self._evictions,
        )

    def session(self, session_id: str) -> Session:
        validate_session_id(session_id)
        sess = self._sessions.get(session_id)
        if sess is None:
            sess = self._sessions[session_id] = Session(self, session_id)
        return sess

    def _touch(self, sess: Session) -> None:
        """``sess`` is about to use its files: most recently used, then evict to the bound."""
        # Invariant STORE-I11: idle sessions beyond the bound lose their descriptors, oldest first.
        open_ = self._open
        if sess.session_id in open_:
            open_.move_to_end(sess.session_id)
        else:
            open_[sess.session_id] = sess
        self._trim(keep=sess)

    def _trim(self, keep: Session | None = None) -> None:
        """Close idle sessions beyond the bound, least recently used first. Runs when a session
        comes into use and when one goes idle, so the bound holds again once the rush is over."""
        open_ = self._open
        skipped = 0
        while len(open_) > self.max_open_sessions and skipped < _EVICTION_SCAN:
            sid, oldest = next(iter(open_.items()))
            if oldest is keep or not oldest._idle():
                open_.move_to_end(sid)  # busy: never closed; look again on a later use
                skipped += 1
                continue
            del open_[sid]
            oldest.close()
            self._evictions += 1

    def session_ids(self) -> list[str]:
        """Ids of the transcripts in the directory (read-only; no file is opened for writing)."""
        out = []
        for name in os.listdir(self.root):
            if name.endswith(".jsonl") and _SESSION_ID.fullmatch(name[:-6]) and ".." not in name:
                out.append(name[:-6])
        return sorted(out)

    def subscribe(self, callback: Callable[[TranscriptUpdated], object]) -> Callable[[], None]:
        """Call ``callback`` after every protocol write through this store; returns unsubscribe."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def _notify(self, event: TranscriptUpdated) -> None:
        for cb in list(self._subscribers):
            try:
                cb(event)
            except Exception:  # a subscriber never breaks a writer
                log.exception(
                    "transcript subscriber failed",
                    extra={"action": "notify", "session": event.session_id},
                )

    def close(self) -> None:
        for sess in list(self._sessions.values()):
            sess.close()
        self._open.clear()


class Session:
    """One session's transcript and its write protocol. Obtain with ``SessionStore.session``."""

    def __init__(self, store: SessionStore, session_id: str) -> None:
        self.store = store
        self.session_id = session_id
        self.path = os.path.join(store.root, session_id + ".jsonl")
        self.lock_path = self.path + ".lock"
        self.state_path = self.path + ".state"
        self.events_path = self.path + ".events"
        self.quarantine_path = self.path + ".quarantine"
        self._lock = WriteLock(self.lock_path)
        self._state: StateFile | None = None
        self._fd: int | None = None
        self._fd_ino: tuple[int, int] | None = None
        self._salt = int(hashlib.sha256(session_id.encode()).hexdigest()[:8], 16)
        self._pins = 0  # attempts in progress on this handle: never evicted meanwhile
        self._appends = self._records = self._bytes = self._fast = self._slow = 0

    def __repr__(self) -> str:
        return f"<Session {self.session_id} {self._lock!r}>"

    def statistics(self) -> SessionStatistics:
        return SessionStatistics(
            appends=self._appends,
            records=self._records,
            bytes_written=self._bytes,
            fast_path=self._fast,
            slow_path=self._slow,
            lock=self._lock.statistics(),
        )

    @property
    def write_lock(self) -> WriteLock:
        return self._lock

    def _idle(self) -> bool:
        """Whether the store may close this session's files now (STORE-I11)."""
        return not self._pins and self._lock.idle()

    def _pin(self) -> None:
        """An attempt begins: its files stay open until ``_unpin`` (an attempt keeps the
        transcript open across its windows, DESIGN.md §3)."""
        self._pins += 1
        self.store._touch(self)

    def _unpin(self) -> None:
        self._pins -= 1
        self.store._trim()

    def exists(self) -> bool:
        return os.path.exists(self.path)

    # ---- leases (docs/design/leases-and-fencing.md) --------------------------------------

    def attempt(
        self,
        run_id: str,
        *,
        preempt: bool = False,
        wait_timeout_s: float | None = None,
        lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
    ) -> contextlib.AbstractAsyncContextManager[Attempt]:
        """``async with session.attempt(run_id) as attempt:`` holds the lease for a turn.

        Takes the lease (epoch + 1) and the write lock for the prep phase. A second attempt
        waits for the holder to finish (queue semantics, across processes) for up to
        ``wait_timeout_s`` (None: forever) and then raises LeaseBusyError; ``preempt=True``
        supersedes the holder instead. Leaving the block releases the lease and lock on every
        path.
        """
        if not run_id:
            raise ValueError("an attempt needs a run id")
        return open_attempt(
            self,
            run_id,
            preempt=preempt,
            wait_timeout_s=wait_timeout_s,
            lease_ttl_s=lease_ttl_s,
        )

    def lease_holder(self) -> LeaseHolder | None:
        """Who holds the lease now (read-only; None when free). For "skip when busy" checks."""
        return self._peek_state().lease

    def epoch(self) -> int:
        """The session's current fencing epoch (read-only)."""
        return self._peek_state().epoch

    def _peek_state(self) -> SessionState:
        """The state record as it is now, read-only (EMPTY_STATE before the first write)."""
        try:
            with open(self.state_path, "rb") as f:
                return read_state(f.fileno())
        except FileNotFoundError:
            return EMPTY_STATE

    # ---- readers: never change a byte (Invariant STORE-I8) ---------------------------------

    def read(self) -> Transcript:
        if not os.path.exists(self.path):
            raise SessionNotFoundError(self.session_id, self.path)
        return read_transcript(self.path)

    def verify_chain(self) -> ChainReport:
        if not os.path.exists(self.path):
            raise SessionNotFoundError(self.session_id, self.path)
        with open(self.path, "rb") as f:
            return walk_chain(f.read())

    def fence_events(self) -> list[FenceEvent]:
        try:
            with open(self.events_path, "rb") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for raw in lines:
            try:
                out.append(FenceEvent.from_json(json.loads(raw)))
            except (ValueError, TypeError, AttributeError):
                continue  # a torn diagnostic line; the transcript is unaffected
        return out

    # ---- writers -------------------------------------------------------------------------

    async def append(
        self,
        entries: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        writer: str,
        run_id: str | None = None,
        timeout_s: float | None = None,
    ) -> AppendResult:
        """Append one entry or a batch as a cooperative writer (no lease).

        Missing ``id``, ``parentId`` and ``timestamp`` are filled in. The batch lands as
        consecutive complete lines or not at all. Raises OutsideProtocolChangeError (after
        recording a fence event) instead of writing on top of a change made outside the protocol.
        Refused before writing, nothing written: a lease holder's writer kind (ValueError,
        STORE-I14), a malformed entry, or an ``id`` / ``parentId`` that does not fit the
        transcript (TranscriptFormatError, STORE-I13).
        """
        validate_cooperative_writer_kind(writer)
        # Invariant LEASE-I6: cooperative writers never take or check the lease; they write
        # under the current epoch, and the holder's fence picks their records up.
        batch = [entries] if isinstance(entries, Mapping) else list(entries)
        if not batch:
            raise ValueError("append needs at least one entry")
        for entry in batch:
            validate_entry(entry)
        timeout = self.store.lock_timeout_s if timeout_s is None else timeout_s
        self.store._touch(self)
        try:
            async with self._lock.hold(timeout, run_id=run_id, writer=writer):
                return await self._append_locked(batch, writer=writer, run_id=run_id)
        finally:
            self.store._trim()

    async def _append_locked(
        self,
        batch: list[Mapping[str, Any]],
        *,
        writer: str,
        run_id: str | None,
        epoch: int | None = None,
    ) -> AppendResult:
        """Steps 1-9 of the write protocol; the caller holds the write lock."""
        state = self._open_state().read()
        committed, observed = self._settle(state, writer=writer, run_id=run_id)
        if committed is None:  # Step 2b: a new transcript, or one another tool wrote
            committed, observed, batch, adopted = self._prepare_first_write(batch)
        else:
            adopted = None
        # Invariant STORE-I13: a caller that names ids (rare: the protocol assigns them) pays
        # for one read of the transcript's ids; every other append stays O(1).
        known = None
        if any("id" in e or "parentId" in e for e in batch):
            known = self._ids_before(committed)
        return await self._write(
            state,
            committed,
            observed,
            batch,
            writer=writer,
            run_id=run_id,
            epoch=state.epoch if epoch is None else epoch,
            adopted=adopted,
            known=known,
        )

    def _ids_before(self, committed: FileState) -> dict[str, int]:
        """The ids of the committed prefix's entries and the line each is on (first one wins),
        plus ``""`` mapped to the number of lines. Caller holds the write lock."""
        data = os.pread(self._transcript_fd(), committed.size, 0) if committed.size else b""
        out: dict[str, int] = {}
        line_no = 0
        for line_no, (_, raw) in enumerate(iter_lines(data), start=1):
            try:
                rec = json.loads(raw)
            except ValueError:
                continue  # verify reports it; it has no id to collide with
            if isinstance(rec, dict) and rec.get("type") != "session":
                rid = rec.get("id")
                if isinstance(rid, str):
                    out.setdefault(rid, line_no)
        out[""] = line_no  # "" is never an id (validate_entry refuses it)
        return out

    async def _write(
        self,
        state: SessionState,
        committed: FileState,
        observed: Observed | None,
        batch: list[Mapping[str, Any]],
        *,
        writer: str,
        run_id: str | None,
        epoch: int,
        adopted: tuple[int, str] | None,
        known: dict[str, int] | None = None,
    ) -> AppendResult:
        """Steps 5-8: intent, one write, durability, commit. Caller holds the write lock."""
        state_file = self._open_state()
        data, result, after = self._encode_batch(
            batch,
            committed,
            writer=writer,
            run_id=run_id,
            epoch=epoch,
            adopted=adopted,
            known=known,
        )
        if observed is None or committed.ino == 0:  # a new transcript (steps 5-8 still apply)
            if observed is None:
                self._create_transcript()
            observed = self._observe_required()
            committed = replace(
                committed, dev=observed.dev, ino=observed.ino, mtime_ns=observed.mtime_ns
            )
        if (after.dev, after.ino) != (observed.dev, observed.ino):
            after = replace(after, dev=observed.dev, ino=observed.ino)
        fd = self._transcript_fd(observed)
        # Step 5: write-ahead intent, so a crash mid-write is attributable (RECOVERY-I1).
        intent = state.next(
            committed=committed,
            pending=Pending(
                offset=committed.size,
                length=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                after=after,
                writer=writer,
                run_id=run_id,
                pid=os.getpid(),
            ),
        )
        state_file.write(intent)
        # Step 6: one os.write of complete lines (Invariant STORE-I1).
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"short write: {written} of {len(data)} bytes")
            if self.store.durability == "fsync":
                await self.store._fdatasync(fd)
        except BaseException:
            os.ftruncate(fd, committed.size)  # RECOVERY-I2: roll back to the size before
            os.utime(fd, ns=(observed.atime_ns, committed.mtime_ns))
            raise
        # Step 7: the sentinel mtime commits the write (Invariant STORE-I4); clearing the
        # intent says so to the next writer (an intent left behind means a crash).
        os.utime(fd, ns=(observed.atime_ns, after.mtime_ns))
        state_file.write(intent.next(committed=after, pending=None))
        self._appends += 1
        self._records += result.last_seq - result.first_seq + 1
        self._bytes += len(data)
        if self.store._subscribers:  # no event object when nobody listens
            self.store._notify(
                TranscriptUpdated(
                    session_id=self.session_id,
                    path=self.path,
                    writer=writer,
                    run_id=run_id,
                    first_seq=result.first_seq,
                    last_seq=result.last_seq,
                    start_offset=result.start_offset,
                    end_offset=result.end_offset,
                )
            )
        return result

    def _encode_batch(
        self,
        batch: list[Mapping[str, Any]],
        committed: FileState,
        *,
        writer: str,
        run_id: str | None,
        epoch: int,
        adopted: tuple[int, str] | None,
        known: dict[str, int] | None = None,
    ) -> tuple[bytes, AppendResult, FileState]:
        lines: list[bytes] = []
        ids: list[str] = []
        seq, prev, leaf = committed.seq, committed.last_hash, committed.leaf_id
        if committed.last_hash is None and committed.size == 0:
            seq = -1  # the header of a new transcript is seq 0
        now = utc_timestamp()
        for entry in batch:
            seq += 1
            rec = dict(entry)
            is_header = rec.get("type") == "session"
            if not is_header:
                rec.setdefault("id", _entry_id(self._salt, seq))
                rec.setdefault("parentId", leaf)
                rec.setdefault("timestamp", now)
                if known is not None:
                    self._check_ids(rec, known, leaf, len(lines))
            rec[STAMP_KEY] = stamp_json(
                writer, run_id, epoch, seq, prev, adopted if not lines else None
            )
            raw = encode_record(rec)  # refuses oversize records before anything is written
            lines.append(raw)
            prev = line_hash(raw)
            if not is_header:
                leaf = rec["id"]
                ids.append(str(rec["id"]))
        data = b"\n".join(lines) + b"\n"
        first_seq = seq - len(lines) + 1
        after = FileState(
            dev=committed.dev,
            ino=committed.ino,
            size=committed.size + len(data),
            mtime_ns=sentinel_mtime_ns(time.time_ns()),
            seq=seq,
            last_hash=prev,
            leaf_id=leaf,
        )
        result = AppendResult(
            session_id=self.session_id,
            writer=writer,
            run_id=run_id,
            epoch=epoch,
            first_seq=first_seq,
            last_seq=seq,
            start_offset=committed.size,
            end_offset=after.size,
            entry_ids=tuple(ids),
        )
        return data, result, after

    def _check_ids(
        self, rec: dict[str, Any], known: dict[str, int], leaf: str | None, index: int
    ) -> None:
        """Invariant STORE-I13 (FORMAT-I4 before the write): the entry's id is new to the
        transcript and its parentId names a record of it, or it is the first entry. Raises
        TranscriptFormatError naming the field; nothing has been written yet."""
        rid, parent = rec["id"], rec["parentId"]
        line = known[""] + index + 1
        if rid in known:
            raise TranscriptFormatError(
                f"'id' {rid!r} is already the id of the record on line {known[rid]}; two "
                "records with one id make the active path skip one of them. Leave 'id' out "
                "and the protocol assigns a fresh one",
                path=self.path,
                line=line,
            )
        if parent is None and leaf is not None:
            raise TranscriptFormatError(
                "'parentId' null starts a second root: every record before it would leave the "
                "active path (the model's context). Leave 'parentId' out to continue from the "
                f"last record ({leaf}), or name the record to branch from",
                path=self.path,
                line=line,
            )
        if parent is not None and parent not in known:
            raise TranscriptFormatError(
                f"'parentId' {parent!r} names no record of the transcript; leave it out to "
                f"continue from the last record ({leaf}), or name an existing record's id",
                path=self.path,
                line=line,
            )
        known[rid] = line

    def _settle(
        self, state: SessionState, *, writer: str, run_id: str | None
    ) -> tuple[FileState | None, Observed | None]:
        """Steps 1-4: the committed state the next write builds on, or a refusal.

        Fast path O(1); anything else is classified reading only what it needs, recorded as a
        fence event, and either recovered (a crashed protocol writer, metadata-only changes) or
        refused with OutsideProtocolChangeError (Invariant STORE-I9: never laundered).
        """
        observed = self._observe()
        if state.committed is None:
            return None, observed
        committed = settle_pending(state.committed, state.pending, observed)
        verdict = classify_stat(committed, observed)
        if verdict == "unchanged":
            self._fast += 1
            return committed, observed
        self._slow += 1
        assert observed is not None or verdict == "deleted"
        try:
            settled = self._classify_slow(state, committed, observed, verdict)
        except _Refused as refusal:
            self._record_event(
                "outside_change",
                reason=refusal.reason,
                writer=writer,
                run_id=run_id,
                epoch=state.epoch,
                byte_range=refusal.byte_range,
                description=refusal.description,
            )
            raise OutsideProtocolChangeError(
                self.session_id, refusal.reason, refusal.description
            ) from None
        return settled, self._observe()

    def _classify_slow(
        self,
        state: SessionState,
        committed: FileState,
        observed: Observed | None,
        verdict: str,
    ) -> FileState:
        if verdict == "deleted" or observed is None:
            raise _Refused(
                "deleted",
                f"the transcript is gone (it had {committed.size} bytes up to seq {committed.seq})",
                (0, committed.size),
            )
        if verdict == "replaced":
            raise _Refused(
                "replaced",
                f"another file now sits at the path (inode {committed.ino} -> {observed.ino}, "
                f"{committed.size} -> {observed.size} bytes): a restore, copy or rename",
                (0, observed.size),
            )
        if verdict == "truncated":
            raise _Refused(
                "truncated",
                f"the transcript shrank from {committed.size} to {observed.size} bytes: "
                f"{committed.size - observed.size} committed bytes are gone",
                (observed.size, committed.size),
            )
        fd = self._transcript_fd()
        prefix = os.pread(fd, committed.size, 0)
        intact, why = prefix_intact(prefix, committed)
        if not intact:
            raise _Refused(
                "rewritten",
                f"committed bytes were changed in place: {why}",
                (0, committed.size),
            )
        if verdict == "same_size":
            # Same bytes, new metadata: not a change. Either a protocol writer died inside
            # write(2) before a byte landed (its intent is still there), or touch/chmod/an
            # identical rewrite.
            p = state.pending
            if p is not None:
                self._record_event(
                    "recovered",
                    writer=p.writer,
                    run_id=p.run_id,
                    byte_range=(p.offset, p.offset),
                    description=f"writer {p.writer} (pid {p.pid}) died before its write landed",
                )
            else:
                self._record_event(
                    "metadata_adopted",
                    description=f"mtime {committed.mtime_ns} -> {observed.mtime_ns}, same bytes",
                    byte_range=(0, committed.size),
                )
            return replace(committed, mtime_ns=observed.mtime_ns)
        tail = os.pread(fd, observed.size - committed.size, committed.size)
        growth = classify_growth(committed, state.pending, tail, observed)
        if growth.recovered_records and growth.foreign_offset is None:
            self._record_event(
                "recovered",
                writer=state.pending.writer if state.pending else None,
                run_id=state.pending.run_id if state.pending else None,
                byte_range=(committed.size, growth.committed.size),
                description=(
                    f"{growth.recovered_records} complete protocol records of a writer that "
                    "stopped before committing them were kept"
                ),
            )
        if growth.torn:
            self._quarantine(growth.committed.size, growth.torn, state.pending)
        if growth.foreign_offset is not None:
            start = growth.foreign_offset
            raise _Refused(
                "foreign_append",
                f"{growth.foreign_len} bytes were appended at byte {start} without the protocol "
                f"(they begin {growth.foreign_head[:80]!r})",
                (start, start + growth.foreign_len),
            )
        return replace(growth.committed, mtime_ns=self._observe_required().mtime_ns)

    def _prepare_first_write(
        self, batch: list[Mapping[str, Any]]
    ) -> tuple[FileState, Observed | None, list[Mapping[str, Any]], tuple[int, str] | None]:
        """A transcript the protocol has never written: create it, or adopt another tool's."""
        observed = self._observe()
        if observed is None or observed.size == 0:
            # Created by _write only once the batch has encoded: a refused batch leaves no file.
            header = make_header(self.session_id, cwd=self.store.cwd or os.getcwd())
            empty = FileState(0, 0, 0, 0, 0, None, None)
            return empty, observed, [header, *batch], None
        committed, observed, adopted = self._adopt_file(
            seq=0, note="written by another tool, adopted by the first protocol write"
        )
        return committed, observed, batch, adopted

    def _adopt_file(self, *, seq: int, note: str) -> tuple[FileState, Observed, tuple[int, str]]:
        """Accept the transcript's bytes as they stand (Invariant STORE-I7): nothing is
        rewritten; the next protocol record carries their digest and restarts the chain. A torn
        final line is quarantined first, since nothing can be appended after it."""
        observed = self._observe_required()
        fd = self._transcript_fd(observed)
        data = os.pread(fd, observed.size, 0)
        cut = data.rfind(b"\n") + 1
        if cut < len(data):
            self._quarantine(cut, data[cut:], None)
            data = data[:cut]
            observed = self._observe_required()
        report = walk_chain(data)
        committed = FileState(
            observed.dev,
            observed.ino,
            len(data),
            observed.mtime_ns,
            seq=seq,
            last_hash=None,
            leaf_id=report.leaf_id,
        )
        self._record_event(
            "adopted",
            description=f"{len(data)} bytes adopted as they are: {note}",
            byte_range=(0, len(data)),
        )
        return committed, observed, (len(data), hashlib.sha256(data).hexdigest())

    async def recover(self, *, timeout_s: float | None = None) -> int:
        """Safe repair: settle what a crashed protocol writer left (a torn tail goes to the
        quarantine, complete records are kept, the intent is cleared) without appending.

        Returns the number of fence events this recorded (0: nothing to do). A change made
        outside the protocol is never repaired: it raises OutsideProtocolChangeError, as an
        append would (Invariant STORE-I9). Never deletes a byte: torn bytes are quarantined.
        """
        timeout = self.store.lock_timeout_s if timeout_s is None else timeout_s
        self.store._touch(self)
        async with self._lock.hold(timeout, writer="operator"):
            state_file = self._open_state()
            state = state_file.read()
            if state.committed is None or self._observe() is None:
                return 0
            before = len(self.fence_events())
            self._settle_without_append(state, writer="operator", run_id=None)
            return len(self.fence_events()) - before

    def _settle_without_append(
        self, state: SessionState, *, writer: str, run_id: str | None
    ) -> tuple[FileState | None, bool]:
        """Steps 1-4 with no append after them: the settled committed state, persisted when
        settling changed it, and whether the fast path took it. Caller holds the write lock."""
        fast_before = self._fast
        committed, _ = self._settle(state, writer=writer, run_id=run_id)
        if committed is not None and (committed != state.committed or state.pending is not None):
            self._open_state().write(state.next(committed=committed, pending=None))
        return committed, self._fast > fast_before

    async def adopt(
        self,
        *,
        note: str,
        leaf_id: str | None = None,
        by: str | None = None,
        timeout_s: float | None = None,
    ) -> AdoptResult | None:
        """Operator action: accept a change made outside the protocol, after inspecting it.

        Writes one ``custom`` record (customType ``fencepost.adopt``, writer ``operator``) whose
        stamp carries the digest of every byte before it: the baseline ``verify`` honours
        (Invariant STORE-I15). The record continues the active path from ``leaf_id`` (default:
        the file's last record, as a reader of the file sees it; give the last committed leaf to
        reconnect the conversation past a foreign record) and lists the records of the active
        path before the change that the new path no longer includes. Returns None when there is
        nothing to adopt. Never deletes or rewrites a byte of the transcript.
        """
        if not note.strip():
            raise ValueError("adopt needs a note saying who made the change and why it is kept")
        timeout = self.store.lock_timeout_s if timeout_s is None else timeout_s
        self.store._touch(self)
        async with self._lock.hold(timeout, writer="operator"):
            state = self._open_state().read()
            observed = self._observe()
            if observed is None:
                raise SessionNotFoundError(self.session_id, self.path)
            if state.committed is not None:
                current = settle_pending(state.committed, state.pending, observed)
                if classify_stat(current, observed) == "unchanged":
                    return None
            # Operator action, rare: reading the whole file once is fine here.
            data = os.pread(self._transcript_fd(observed), observed.size, 0)
            transcript = parse_transcript(data[: data.rfind(b"\n") + 1], path=self.path)
            by_id = transcript.by_id()
            if leaf_id is not None and leaf_id not in by_id:
                raise TranscriptFormatError(
                    f"--leaf {leaf_id!r} names no record of the transcript; nothing adopted",
                    path=self.path,
                )
            leaf_before = state.committed.leaf_id if state.committed else None
            leaf_after = leaf_id if leaf_id is not None else transcript.leaf_id()
            on_path = {r.id for r in active_path(transcript, leaf_after)} if leaf_after else set()
            before = active_path(transcript, leaf_before) if leaf_before in by_id else []
            left = tuple(r.id for r in before if r.id is not None and r.id not in on_path)
            seq = state.committed.seq if state.committed else 0
            committed, observed, adopted = self._adopt_file(seq=seq, note=note)
            who = by or _operator()
            entry = {
                "type": "custom",
                "customType": ADOPT_CUSTOM_TYPE,
                "parentId": leaf_after,
                "data": {
                    "note": note,
                    "by": who,
                    "bytes": adopted[0],
                    "leaf_before": leaf_before,
                    "leaf_before_missing": leaf_before is not None and leaf_before not in by_id,
                    "left_active_path": list(left[:MAX_LISTED_LEFT]),
                    "left_count": len(left),
                },
            }
            result = await self._write(
                state,
                committed,
                observed,
                [entry],
                writer="operator",
                run_id=None,
                epoch=state.epoch,
                adopted=adopted,
            )
            return AdoptResult(
                session_id=self.session_id,
                seq=result.first_seq,
                entry_id=result.entry_ids[0],
                adopted_bytes=adopted[0],
                note=note,
                by=who,
                leaf_before=leaf_before,
                leaf_before_missing=leaf_before is not None and leaf_before not in by_id,
                leaf_after=leaf_after,
                left_active_path=left,
            )

    # ---- I/O helpers ---------------------------------------------------------------------

    def _observe(self) -> Observed | None:
        try:
            return observe(os.stat(self.path))
        except FileNotFoundError:
            return None

    def _observe_required(self) -> Observed:
        got = self._observe()
        if got is None:
            raise SessionNotFoundError(self.session_id, self.path)
        return got

    def _transcript_fd(self, observed: Observed | None = None) -> int:
        """An fd on the file now at ``path``. Kept open so a deleted-and-recreated file cannot
        reuse the inode number and pass as the same file (DESIGN.md §3)."""
        st = observed or self._observe_required()
        if self._fd is None or self._fd_ino != (st.dev, st.ino):
            if self._fd is not None:
                os.close(self._fd)
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
            fst = os.fstat(self._fd)
            self._fd_ino = (fst.st_dev, fst.st_ino)
        return self._fd

    def _open_state(self) -> StateFile:
        if self._state is None:
            fd = os.open(self.state_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._state = StateFile(fd)
        return self._state

    def _create_transcript(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        os.close(fd)
        _fsync_dir(self.store.root)  # new files fsync their directory

    def _quarantine(self, offset: int, torn: bytes, pending: Pending | None) -> None:
        """Cut a torn tail back to ``offset``, keeping its bytes (Invariant RECOVERY-I1)."""
        rec = {
            "time": _now_iso(),
            "session_id": self.session_id,
            "offset": offset,
            "length": len(torn),
            "sha256": hashlib.sha256(torn).hexdigest(),
            "writer": pending.writer if pending else None,
            "run_id": pending.run_id if pending else None,
            "pid": pending.pid if pending else None,
            "base64": base64.b64encode(torn).decode(),
        }
        _append_json_line(self.quarantine_path, rec, fsync=True)  # kept before the cut
        fd = self._transcript_fd()
        os.ftruncate(fd, offset)
        os.fsync(fd)
        who = f"writer {pending.writer} (pid {pending.pid})" if pending else "an unknown writer"
        self._record_event(
            "quarantined",
            writer=pending.writer if pending else None,
            run_id=pending.run_id if pending else None,
            byte_range=(offset, offset + len(torn)),
            description=(
                f"{len(torn)} bytes of an unfinished write by {who} moved to "
                f"{os.path.basename(self.quarantine_path)}"
            ),
        )

    def _record_event(
        self,
        kind: str,
        *,
        description: str,
        reason: str | None = None,
        writer: str | None = None,
        run_id: str | None = None,
        epoch: int | None = None,
        byte_range: tuple[int, int] | None = None,
    ) -> None:
        rec = {
            "time": _now_iso(),
            "session_id": self.session_id,
            "kind": kind,
            "reason": reason,
            "writer": writer,
            "run_id": run_id,
            "epoch": epoch,
            "byte_range": list(byte_range) if byte_range else None,
            "description": description,
            "pid": os.getpid(),
            "host": hostname(),
        }
        _append_json_line(self.events_path, rec, fsync=True)
        log.warning(
            "fence %s: %s",
            kind,
            description,
            extra={"action": kind, "session": self.session_id, "run": run_id, "epoch": epoch},
        )

    def close(self) -> None:
        """Close this session's files (reopened on its next use). The store does it to idle
        sessions beyond its bound; nothing the fence needs lives only in a descriptor
        (Invariant STORE-I12): the committed state is in the state record."""
        if not self._lock.idle():
            return  # the lock is held or waited for: its holder still needs the files
        for fd in (self._fd, None if self._state is None else self._state.fd):
            if fd is not None:
                os.close(fd)
        self._fd, self._fd_ino, self._state = None, None, None
        self._lock.close()


def _append_json_line(path: str, obj: Mapping[str, Any], *, fsync: bool) -> None:
    # Invariant RECOVERY-I4: events and quarantine files are only ever appended to.
    data = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
    created = not os.path.exists(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        _fsync_dir(os.path.dirname(path))


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
