"""One table from errors to HTTP statuses, and the JSON error body (docs/design/http.md)."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...errors import (
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

__all__ = ["ApiError", "error_body", "error_response", "translate"]

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

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        err["field"] = field
    return {"error": err}


def error_response(exc: ApiError) -> JSONResponse:
    # Invariant HTTP-I2: every error the API answers has this one JSON shape.
    return JSONResponse(error_body(exc.code, exc.message, exc.field), status_code=exc.status)


def translate(exc: Exception) -> ApiError | None:
    """The API error for a fencepost error (None: not ours to translate; a 500)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InvalidSessionIdError):
        return ApiError(400, "invalid_session_id", str(exc), field="session_id")
    if isinstance(exc, SessionNotFoundError):
        return ApiError(404, "session_not_found", f"no session {exc.session_id!r}")
    if isinstance(exc, JobNotFoundError):
        return ApiError(404, "job_not_found", str(exc))
    if isinstance(exc, JobRunningError):
        return ApiError(409, "job_running", str(exc))
    if isinstance(exc, OutsideProtocolChangeError):
        return ApiError(409, "outside_protocol_change", str(exc))
    if isinstance(exc, SessionTakeoverError):
        return ApiError(409, "session_takeover", str(exc))
    if isinstance(exc, RecordTooLargeError):
        return ApiError(413, "record_too_large", str(exc), field="text")
    if isinstance(exc, TranscriptFormatError):
        return ApiError(422, "invalid", exc.detail, field="text")
    if isinstance(exc, LockTimeoutError):
        return ApiError(503, "lock_timeout", str(exc))
    if isinstance(exc, MessageNotWrittenError) and exc.status == "takeover":
        return ApiError(409, "session_takeover", str(exc))
    if isinstance(exc, LeaseBusyError | MessageNotWrittenError):
        return ApiError(503, "session_busy", str(exc))
    if isinstance(exc, ConfigError):  # InvalidJobError, InvalidScheduleError included
        field = _FIELD_FOR_KEY.get(exc.key or "", exc.key)
        detail = getattr(exc, "detail", None) or str(exc)
        return ApiError(422, "invalid", detail, field=field)
    if isinstance(exc, HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return ApiError(exc.status_code, code, str(exc.detail))
    return None


async def handle(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for the API: fencepost errors → statuses (one table)."""
    api = translate(exc)
    if api is None:
        raise exc
    return error_response(api)
