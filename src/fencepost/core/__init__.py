"""fencepost.core: session transcripts shared safely by many writers (stdlib only).

A library on its own: ``SessionStore(root).session(id)`` gives a ``Session`` whose ``append``
writes through the protocol of docs/design/write-protocol.md.
"""

from ._chain import ChainProblem, ChainReport, decode_stamped, walk_chain
from ._format import (
    ENTRY_TYPES,
    FORMAT_VERSION,
    MAX_RECORD_BYTES,
    Record,
    Transcript,
    branch_summary,
    compaction,
    custom,
    custom_message,
    iter_lines,
    label,
    message,
    model_change,
    parse_transcript,
    read_transcript,
    session_info,
    text_problem,
    thinking_level_change,
)
from ._index import ContextRead, read_context
from ._lease import (
    DEFAULT_LEASE_TTL_S,
    Attempt,
    AttemptStatistics,
    decide_lease,
    fence_verdict,
    holder_alive,
)
from ._stamp import BUILTIN_WRITER_KINDS, STAMP_KEY, Stamp, WriterKind, validate_writer_kind
from ._state import LeaseHolder
from ._store import (
    DEFAULT_LOCK_TIMEOUT_S,
    DEFAULT_MAX_OPEN_SESSIONS,
    AppendResult,
    Durability,
    FenceEvent,
    Session,
    SessionStatistics,
    SessionStore,
    SessionStoreStatistics,
    TranscriptUpdated,
    validate_session_id,
)
from ._sync import SyncSession, SyncSessionStore
from ._tree import ContextMessage, ModelContext, active_path, build_context
from ._verify import VerifyProblem, VerifyReport, verify_transcript
from ._writelock import WriteLock, WriteLockStatistics

__all__ = [
    "BUILTIN_WRITER_KINDS",
    "DEFAULT_LOCK_TIMEOUT_S",
    "DEFAULT_MAX_OPEN_SESSIONS",
    "ENTRY_TYPES",
    "FORMAT_VERSION",
    "MAX_RECORD_BYTES",
    "STAMP_KEY",
    "DEFAULT_LEASE_TTL_S",
    "AppendResult",
    "Attempt",
    "AttemptStatistics",
    "LeaseHolder",
    "ChainProblem",
    "ChainReport",
    "ContextMessage",
    "ContextRead",
    "Durability",
    "FenceEvent",
    "ModelContext",
    "Record",
    "Session",
    "SessionStatistics",
    "SessionStore",
    "SessionStoreStatistics",
    "Stamp",
    "SyncSession",
    "SyncSessionStore",
    "Transcript",
    "TranscriptUpdated",
    "VerifyProblem",
    "VerifyReport",
    "WriteLock",
    "WriteLockStatistics",
    "WriterKind",
    "active_path",
    "branch_summary",
    "build_context",
    "compaction",
    "custom",
    "custom_message",
    "decide_lease",
    "fence_verdict",
    "holder_alive",
    "decode_stamped",
    "iter_lines",
    "label",
    "message",
    "model_change",
    "parse_transcript",
    "read_context",
    "read_transcript",
    "session_info",
    "text_problem",
    "thinking_level_change",
    "validate_session_id",
    "validate_writer_kind",
    "verify_transcript",
    "walk_chain",
]
