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
    "LeaseBusyError",
    "MessageNotWrittenError",
    "ChangeReason",
    "TakeoverReason",
    "CronError",
    "InvalidScheduleError",
    "InvalidJobError",
    "JobNotFoundError",
    "JobRunningError",
    "CronStateError",
    "DeliveryError",
    "GatewayError",
    "ApprovalNotFoundError",
    "ApprovalDecidedError",
    "McpServerError",
    "McpFailureReason",
    "ProviderError",
    "ProviderErrorKind",
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

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        line: int | None = None,
        file: str | None = None,
    ) -> None:
        where = ""
        if key is not None:
            where += f" (key {key!r}"
            where += f", line {line})" if line is not None else ")"
        elif line is not None:
            where += f" (line {line})"
        super().__init__(message + where)
        self.key = key
        self.line = line
        #: The config file at fault, when there is one (the message names it too).
        self.file = file
        self.detail: str = message


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


class LeaseBusyError(SessionError):
    """Another attempt held the session's lease for longer than this one was willing to wait."""

    def __init__(
        self, session_id: str, holder_run_id: str, holder_pid: int, host: str, waited_s: float
    ) -> None:
        super().__init__(
            f"session {session_id!r} is busy: run {holder_run_id} (pid {holder_pid} on {host}) "
            f"holds its lease; waited {waited_s:g} s. Wait longer, or preempt=True to supersede it"
        )
        self.session_id = session_id
        self.holder_run_id = holder_run_id
        self.holder_pid = holder_pid
        self.host = host
        self.waited_s = waited_s


class MessageNotWrittenError(SessionError):
    """A message's turn ended before it wrote the message: nothing was accepted (GATEWAY-I6)."""

    def __init__(self, session_id: str, run_id: str, status: str, detail: str | None) -> None:
        super().__init__(
            f"the message to session {session_id!r} was not written: its turn {run_id} ended "
            f"{status} first ({detail or 'no detail'}); nothing was accepted"
        )
        self.session_id = session_id
        self.run_id = run_id
        self.status = status


#: Why a model call failed (docs/design/providers.md). ``malformed_response`` is a broken or
#: truncated stream; ``connection`` is a provider that could not be reached.
ProviderErrorKind = Literal[
    "rate_limit",
    "overloaded",
    "server_error",
    "timeout",
    "connection",
    "malformed_response",
    "auth",
    "bad_request",
    "context_overflow",
]

#: Kinds that may succeed when the same request is sent again a little later.
_TRANSIENT_KINDS: frozenset[str] = frozenset(
    {"rate_limit", "overloaded", "server_error", "timeout", "connection", "malformed_response"}
)

_PROVIDER_ADVICE: dict[str, str] = {
    "rate_limit": "the provider is rate limiting this key; slow down, or add a fallback model",
    "overloaded": "the provider is overloaded; retry later, or add a fallback model",
    "server_error": "the provider failed; retry later, or add a fallback model",
    "timeout": "no reply within the timeout; raise timeout_s for slow models, or check the server",
    "connection": "the provider could not be reached; check base_url and the network",
    "malformed_response": "the reply stream was broken or incomplete; retry, or check any proxy",
    "auth": "the API key was refused; check the environment variable named by api_key_env",
    "bad_request": "the provider refused the request; check the model name and the request",
    "context_overflow": "the conversation is too long for this model; compact the session, "
    "or use a model with a larger context window",
}


class ProviderError(FencepostError):
    """A model call failed. ``kind`` is closed; the SDK's exception is ``__cause__``.

    ``transient`` kinds are retried with backoff; every kind moves a fallback chain on to the next
    model (docs/design/providers.md). Never raised for a session takeover or a cancellation.
    """

    def __init__(
        self,
        kind: ProviderErrorKind,
        detail: str,
        *,
        provider: str,
        model: str,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        status_text = f" (HTTP {status})" if status is not None else ""
        super().__init__(
            f"{provider}/{model}: {kind}{status_text}: {detail}; {_PROVIDER_ADVICE[kind]}"
        )
        self.kind: ProviderErrorKind = kind
        self.detail = detail
        self.provider = provider
        self.model = model
        self.status = status
        self.retry_after_s = retry_after_s
        self.transient = kind in _TRANSIENT_KINDS

    @property
    def retryable(self) -> bool:
        """The same as ``transient`` (the name docs/reference uses)."""
        return self.transient


class CronError(FencepostError):
    """Something about a scheduled job, its state database or its delivery."""


class InvalidScheduleError(CronError, ConfigError):
    """An ``at``, ``every`` or ``cron`` schedule that cannot fire, refused when given."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message, key=key)
        self.detail = message


class InvalidJobError(CronError, ConfigError):
    """A job field that is wrong: unknown agent or model, bad target, payload, delivery or id."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message, key=key)
        self.detail = message


class JobNotFoundError(CronError, LookupError):
    def __init__(self, job_id: str, why: str = "no such job") -> None:
        super().__init__(f"cron job {job_id!r}: {why}; list jobs with 'fencepost cron list'")
        self.job_id = job_id


class JobRunningError(CronError):
    """A job already has a run in flight (one running instance per job)."""

    def __init__(self, job_id: str, run_id: str) -> None:
        super().__init__(
            f"cron job {job_id!r} is already running (run {run_id}); wait for it to finish"
        )
        self.job_id = job_id
        self.run_id = run_id


class CronStateError(CronError):
    """The cron state database cannot be used (e.g. written by a newer fencepost)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.detail = message


class DeliveryError(CronError):
    """A run's reply could not be delivered; the reply stays in the run ledger."""

    def __init__(self, target: str, message: str, *, attempts: int = 1) -> None:
        super().__init__(f"delivery to {target} failed after {attempts} attempt(s): {message}")
        self.target = target
        self.detail = message
        self.attempts = attempts


class GatewayError(FencepostError):
    """Starting a gateway, or talking to a running one, failed.

    From the CLI's gateway client (docs/design/cli.md, CLI-I4): ``url`` is the gateway's,
    ``status`` the HTTP status (None when it did not answer) and ``code`` the API's ``error.code``.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.code = code


class ApprovalNotFoundError(GatewayError, LookupError):
    """No pending approval request has this id (docs/design/approvals.md)."""

    def __init__(self, approval_id: str) -> None:
        super().__init__(
            f"no approval request {approval_id!r} is waiting; list them with "
            "'fencepost approvals list'"
        )
        self.approval_id = approval_id


class ApprovalDecidedError(GatewayError):
    """An approval request was already decided (by an operator, its timeout or its run's end);
    a second decision changes nothing."""

    def __init__(self, approval_id: str, *, approved: bool, by: str) -> None:
        verdict = "approved" if approved else "denied"
        super().__init__(f"approval request {approval_id!r} was already decided: {verdict} by {by}")
        self.approval_id = approval_id
        self.approved = approved
        self.by = by


#: Why an MCP server could not serve a request (docs/design/mcp.md).
McpFailureReason = Literal[
    "not_configured",
    "disabled",
    "start_failed",
    "backoff",
    "crashed",
    "stopped",
    "refused",
    "timeout",
]


class McpServerError(FencepostError):
    """An MCP server could not list its tools or answer a call: not configured or disabled, it
    did not start, it waits out its restart backoff, it crashed or was stopped during the call,
    it refused the request, or the call timed out. In a turn it becomes the tool's ``isError``
    result, never a crashed turn (docs/design/mcp.md MCP-I4)."""

    def __init__(self, server: str, reason: McpFailureReason, detail: str) -> None:
        super().__init__(f"MCP server {server!r}: {detail}")
        self.server = server
        self.reason: McpFailureReason = reason
        self.detail = detail
