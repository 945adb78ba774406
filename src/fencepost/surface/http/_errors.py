"""One table from errors to HTTP statuses, and the JSON error body (docs/design/http.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...errors import (
    ApprovalDecidedError,
    ApprovalNotFoundError,
    ConfigError,
    InvalidSessionIdError,
    JobNotFoundError,
    JobRunningError,
    LeaseBusyError,
    LockTimeoutError,
    MessageNotWrittenError,
    OutsideProtocolChangeError,
    RecordTooLargeError,
    SessionNotFoundError,
    SessionTakeoverError,
    TranscriptFormatError,
)

__all__ = [
    "ERROR_CODES",
    "ApiError",
    "ErrorCode",
    "api_error",
    "config_refused",
    "error_body",
    "error_response",
    "translate",
]


class ErrorCode(NamedTuple):
    status: int
    description: str


#: Every ``error.code`` the app answers with, its status and what it means: the one table the
#: handlers, the guard, ``translate`` and the OpenAPI document share (Invariants HTTP-I2, HTTP-I10).
ERROR_CODES: dict[str, ErrorCode] = {
    "bad_json": ErrorCode(400, "The body is not JSON, or it nests deeper than the limit"),
    "invalid_job_id": ErrorCode(400, "A malformed job id, or an ambiguous prefix"),
    "invalid_session_id": ErrorCode(400, "A malformed or path-like session id"),
    "unauthorized": ErrorCode(401, "A token is configured and the request did not carry it"),
    "not_loopback": ErrorCode(403, "No token is configured and the client is not on loopback"),
    "cross_site": ErrorCode(
        403, "A change without a bearer token, JSON content type or X-Fencepost header"
    ),
    "job_not_found": ErrorCode(404, "No job with this id or prefix"),
    "run_not_found": ErrorCode(404, "No run with this id in the ledger"),
    "session_not_found": ErrorCode(404, "No session with this id"),
    "approval_not_found": ErrorCode(404, "No approval request with this id is waiting"),
    "not_found": ErrorCode(404, "No such route or page"),
    "method_not_allowed": ErrorCode(405, "The route does not take this method (see Allow)"),
    "job_running": ErrorCode(409, "The job has a run in flight"),
    "approval_decided": ErrorCode(
        409, "The approval request was already decided (error.by, error.approved say how)"
    ),
    "outside_protocol_change": ErrorCode(
        409, "The transcript was changed outside the protocol; nothing was written"
    ),
    "session_takeover": ErrorCode(409, "The turn was fenced out before it wrote the message"),
    "body_too_large": ErrorCode(413, "The request body is larger than server.max_body_bytes"),
    "record_too_large": ErrorCode(413, "The message would make a record past the size limit"),
    "invalid": ErrorCode(422, "A field is invalid; error.field names it"),
    "config_invalid": ErrorCode(
        422,
        "The config read again is invalid and was not applied (error.file, error.field, "
        "error.line); the old one stays in force",
    ),
    "lock_timeout": ErrorCode(503, "The session's write lock stayed busy; try again"),
    "session_busy": ErrorCode(503, "The session's lease stayed busy; try again"),
}

#: Where the validation error of a runtime parser points in a request body. The runtime names
#: the CLI's option (``cron``, ``message``); the API names the JSON field.
_FIELD_FOR_KEY = {
    "at": "schedule.at",
    "every": "schedule.every",
    "cron": "schedule.expr",
    "tz": "schedule.tz",
    "stagger": "schedule.stagger",
    "schedule": "schedule",
    "message": "payload.text",
    "payload": "payload.kind",
    "timeout": "timeout_s",
    "fallback": "fallbacks",
}


class ApiError(Exception):
    """An error the API answers with ``{"error": {"code", "message", "field"?}}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})
        #: More members of ``error`` (``file`` and ``line`` of a config error).
        self.extra = dict(extra or {})


def api_error(
    code: str,
    message: str,
    *,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ApiError:
    """An ``ApiError`` whose status is the one ``ERROR_CODES`` gives ``code``."""
    return ApiError(
        ERROR_CODES[code].status, code, message, field=field, headers=headers, extra=extra
    )


def error_body(
    code: str, message: str, field: str | None = None, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        err["field"] = field
    err.update({k: v for k, v in (extra or {}).items() if v is not None})
    return {"error": err}


def config_refused(exc: ConfigError) -> ApiError:
    """A config the gateway read again and refused: the file, key and line (GATEWAY-I8)."""
    return api_error(
        "config_invalid", str(exc), field=exc.key, extra={"file": exc.file, "line": exc.line}
    )


def error_response(exc: ApiError) -> JSONResponse:
    # Invariant HTTP-I2: every error the API answers has this one JSON shape.
    return JSONResponse(
        error_body(exc.code, exc.message, exc.field, exc.extra),
        status_code=exc.status,
        headers=exc.headers,
    )


def translate(exc: Exception) -> ApiError | None:
    """The API error for a fencepost error (None: not ours to translate; a 500)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InvalidSessionIdError):
        return api_error("invalid_session_id", str(exc), field="session_id")
    if isinstance(exc, SessionNotFoundError):
        return api_error("session_not_found", f"no session {exc.session_id!r}")
    if isinstance(exc, JobNotFoundError):
        return api_error("job_not_found", str(exc))
    if isinstance(exc, ApprovalNotFoundError):
        return api_error("approval_not_found", str(exc), field="approval_id")
    if isinstance(exc, ApprovalDecidedError):
        return api_error(
            "approval_decided", str(exc), extra={"by": exc.by, "approved": exc.approved}
        )
    if isinstance(exc, JobRunningError):
        return api_error("job_running", str(exc))
    if isinstance(exc, OutsideProtocolChangeError):
        return api_error("outside_protocol_change", str(exc))
    if isinstance(exc, SessionTakeoverError):
        return api_error("session_takeover", str(exc))
    if isinstance(exc, RecordTooLargeError):
        return api_error("record_too_large", str(exc), field="text")
    if isinstance(exc, TranscriptFormatError):
        return api_error("invalid", exc.detail, field="text")
    if isinstance(exc, LockTimeoutError):
        return api_error("lock_timeout", str(exc))
    if isinstance(exc, MessageNotWrittenError) and exc.status == "takeover":
        return api_error("session_takeover", str(exc))
    if isinstance(exc, LeaseBusyError | MessageNotWrittenError):
        return api_error("session_busy", str(exc))
    if isinstance(exc, ConfigError):  # InvalidJobError, InvalidScheduleError included
        field = _FIELD_FOR_KEY.get(exc.key or "", exc.key)
        detail = getattr(exc, "detail", None) or str(exc)
        return api_error("invalid", detail, field=field)
    if isinstance(exc, HTTPException):
        # Starlette's headers stay: a 405 carries Allow (RFC 9110).
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return ApiError(exc.status_code, code, str(exc.detail), headers=exc.headers)
    return None


async def handle(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for the API: fencepost errors → statuses (one table)."""
    api = translate(exc)
    if api is None:
        raise exc
    return error_response(api)
