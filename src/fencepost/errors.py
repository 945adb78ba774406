"""The whole exception tree of fencepost (a leaf module: stdlib imports only).

Reasons and kinds are attributes with closed ``Literal`` sets, never subclasses.
See ``docs/reference/errors.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "FencepostError",
    "FencepostInternalError",
    "ConfigError",
    "SessionError",
    "SessionNotFoundError",
    "InvalidSessionIdError",
    "TranscriptFormatError",
    "RecordTooLargeError",
    "LockTimeoutError",
    "LockHolder",
    "OutsideProtocolChangeError",
    "SessionTakeoverError",
    "ChangeReason",
    "TakeoverReason",
]

#: What a protocol writer found when the transcript no longer matches the committed state
#: (DESIGN.md §3, fence step 3). Shared by cooperative writers and the lease fence.
ChangeReason = Literal["deleted", "replaced", "truncated", "rewritten", "foreign_append"]

#: Why an attempt lost its session: a change outside the protocol, a newer epoch, or no lock.
TakeoverReason = Literal[
    "lease_superseded",
    "deleted",
    "replaced",
    "truncated",
    "rewritten",
    "foreign_append",
    "lock_timeout",
]


class FencepostError(Exception):
    """Root of everything fencepost raises on purpose."""


class FencepostInternalError(Exception):
    """A bug in fencepost ("should never happen"). Deliberately not a FencepostError."""


class ConfigError(FencepostError, ValueError):
    """Bad configuration or bad input, refused when given."""

    def __init__(self, message: str, *, key: str | None = None, line: int | None = None) -> None:
        where = ""
        if key is not None:
            where += f" (key {key!r}"
            where += f", line {line})" if line is not None else ")"
        super().__init__(message + where)
        self.key = key
        self.line = line


class SessionError(FencepostError):
    """Something about one session."""


class SessionNotFoundError(SessionError, LookupError):
    def __init__(self, session_id: str, path: str) -> None:
        super().__init__(f"session {session_id!r} not found (no transcript at {path})")
        self.session_id = session_id
        self.path = path


class InvalidSessionIdError(SessionError, ValueError):
    """Path-like or malformed session ids."""

    def __init__(self, session_id: str, why: str) -> None:
        super().__init__(
            f"invalid session id {session_id!r}: {why}; use 1-128 characters from "
            "letters, digits, '.', '_' and '-', not starting with '.'"
        )
        self.session_id = session_id


class TranscriptFormatError(SessionError, ValueError):
    """A transcript line that is not a valid record. ``line`` is 1-based."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        where = f"{path or '<transcript>'}" + (f":{line}" if line is not None else "")
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
        self.detail = message


class RecordTooLargeError(SessionError, ValueError):
    """Refused before writing: nothing reached the transcript."""

    def __init__(self, size_bytes: int, limit_bytes: int) -> None:
        super().__init__(
            f"record of {size_bytes} bytes exceeds the limit of {limit_bytes} bytes; "
            "nothing was written (store large payloads in a file and reference it)"
        )
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes


@dataclass(frozen=True)
class LockHolder:
    """Who holds a write lock, from its diagnostic owner record (may be stale or absent)."""

    pid: int | None
    host: str | None
    run_id: str | None
    writer: str | None
    since: str | None

    def describe(self) -> str:
        if self.pid is None:
            return "an unknown holder (no owner record)"
        run = f", run {self.run_id}" if self.run_id else ""
        writer = f", writer {self.writer}" if self.writer else ""
        return f"pid {self.pid} on {self.host}{run}{writer}, since {self.since}"


class LockTimeoutError(SessionError, TimeoutError):
    def __init__(self, path: str, timeout_s: float, holder: LockHolder) -> None:
        super().__init__(
            f"could not take the write lock {path} within {timeout_s:g} s; "
            f"held by {holder.describe()}"
        )
        self.path = path
        self.timeout_s = timeout_s
        self.holder = holder


class OutsideProtocolChangeError(SessionError):
    """A protocol writer refused to append on top of a change made outside the protocol.

    The finding is recorded as a fence event; nothing was written (DESIGN.md §3, step 4).
    Inspect with ``fencepost sessions verify``; accept the change explicitly with
    ``fencepost sessions adopt`` once you know who made it.
    """

    def __init__(self, session_id: str, reason: ChangeReason, description: str) -> None:
        super().__init__(
            f"session {session_id!r} was changed outside the protocol ({reason}): {description}; "
            "nothing was written. Inspect it with 'fencepost sessions verify' and accept the "
            "change with 'fencepost sessions adopt' if it is legitimate."
        )
        self.session_id = session_id
        self.reason: ChangeReason = reason
        self.description = description


class SessionTakeoverError(SessionError):
    """An attempt lost its session. Sticky for that attempt; never a model failure."""

    def __init__(
        self,
        session_id: str,
        reason: TakeoverReason,
        description: str,
        *,
        epoch_held: int | None = None,
        epoch_seen: int | None = None,
    ) -> None:
        super().__init__(f"session {session_id!r} taken over ({reason}): {description}")
        self.session_id = session_id
        self.reason: TakeoverReason = reason
        self.description = description
        self.epoch_held = epoch_held
        self.epoch_seen = epoch_seen
