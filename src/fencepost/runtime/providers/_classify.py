"""Provider error classification: pure functions, and the one translation at the SDK boundary.

``classify_error`` maps what a failure looks like on the wire (HTTP status, the error body's
type and code, its message, the exception class) to the closed ``ProviderErrorKind`` set.
Exception classes are matched by name along their MRO, so the same table serves openai,
anthropic, their transport (httpx2) and the standard library without importing any of them.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from typing import Any

from ...errors import ProviderError, ProviderErrorKind

__all__ = [
    "classify_error",
    "classify_exception_type",
    "parse_retry_after_s",
    "translate_error",
]

#: Error ``type`` / ``code`` strings of both APIs (and common OpenAI-compatible servers).
_BY_ERROR_TYPE: dict[str, ProviderErrorKind] = {
    "rate_limit_error": "rate_limit",
    "rate_limit_exceeded": "rate_limit",
    "requests": "rate_limit",
    "tokens": "rate_limit",
    "overloaded_error": "overloaded",
    "overloaded": "overloaded",
    "api_error": "server_error",
    "server_error": "server_error",
    "internal_error": "server_error",
    "timeout_error": "timeout",
    "authentication_error": "auth",
    "permission_error": "auth",
    "invalid_api_key": "auth",
    "context_length_exceeded": "context_overflow",
    "string_above_max_length": "context_overflow",
    "invalid_request_error": "bad_request",
    "not_found_error": "bad_request",
    "model_not_found": "bad_request",
    "request_too_large": "bad_request",
}

#: Messages that mean "the prompt does not fit", whatever the status or type says.
_CONTEXT_OVERFLOW = re.compile(
    r"context (length|window)|maximum context|prompt is too long|too many (input )?tokens"
    r"|exceeds? (the )?(model'?s? )?(context|max(imum)? (input|prompt))|input is too long",
    re.IGNORECASE,
)

_TIMEOUT_TYPES = frozenset({"TimeoutException", "APITimeoutError", "TimeoutError"})
_MALFORMED_TYPES = frozenset(
    {
        "RemoteProtocolError",
        "LocalProtocolError",
        "DecodingError",
        "JSONDecodeError",
        "APIResponseValidationError",
        "ValidationError",
    }
)
_CONNECTION_TYPES = frozenset(
    {"APIConnectionError", "TransportError", "NetworkError", "ConnectionError"}
)
#: An SDK's error for a failure it reported without a status (an error event mid-stream).
_API_ERROR_TYPES = frozenset({"APIError", "APIStatusError"})


def classify_exception_type(exc_type: type[BaseException]) -> ProviderErrorKind | None:
    """What an exception class alone says; None for a class that is not a provider failure."""
    names = {t.__name__ for t in exc_type.__mro__}
    if names & _TIMEOUT_TYPES:
        return "timeout"
    if names & _MALFORMED_TYPES:
        return "malformed_response"
    if names & _CONNECTION_TYPES:
        return "connection"
    if names & _API_ERROR_TYPES:
        return "server_error"
    return None


def classify_error(
    *,
    status: int | None = None,
    error_type: str | None = None,
    error_code: str | None = None,
    message: str = "",
    exc_type: type[BaseException] | None = None,
) -> ProviderErrorKind | None:
    """Pure: the kind of a failure, or None when it is not a provider failure at all.

    Order: a context-overflow message; the body's code, then type; the HTTP status; the
    exception class. Status 2xx with an error body is an error event inside a stream.
    """
    # Invariant PROVIDER-I1: total over its inputs, and every answer is in the closed set.
    maybe_overflow = status in (None, 200, 400, 413, 422) or error_type in (
        "invalid_request_error",
        "request_too_large",
    )
    if maybe_overflow and _CONTEXT_OVERFLOW.search(message or ""):
        return "context_overflow"
    for key in (error_code, error_type):
        if key and key in _BY_ERROR_TYPE:
            return _BY_ERROR_TYPE[key]
    if status is not None and status >= 400:
        return _by_status(status)
    if exc_type is not None:
        kind = classify_exception_type(exc_type)
        if kind is not None:
            return kind
    if status is not None or error_type or error_code:
        return "server_error"  # an error body we do not know, on a 2xx/3xx response
    return None


def _by_status(status: int) -> ProviderErrorKind:
    if status == 429:
        return "rate_limit"
    if status in (503, 529):
        return "overloaded"
    if status in (408, 504):
        return "timeout"
    if status in (401, 403):
        return "auth"
    if status == 413:
        return "context_overflow"
    if status >= 500:
        return "server_error"
    return "bad_request"


def parse_retry_after_s(headers: Mapping[str, str], now_s: float) -> float | None:
    """Pure: seconds to wait from ``retry-after-ms`` / ``retry-after`` (seconds or HTTP date)."""
    lower = {k.lower(): v for k, v in headers.items()}
    raw_ms = lower.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
        except ValueError:
            ms = -1.0
        if 0 <= ms < float("inf"):
            return ms / 1000.0
    raw = lower.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - now_s)
    return seconds if 0 <= seconds < float("inf") else None


def _error_fields(body: object) -> tuple[str | None, str | None, str]:
    """(type, code, message) from an error body of either API (the body may be the inner
    ``error`` object, the whole envelope, or plain text)."""
    if isinstance(body, str):
        return None, None, body
    if not isinstance(body, Mapping):
        return None, None, ""
    inner: Any = body.get("error", body)
    if not isinstance(inner, Mapping):
        return None, None, str(inner)
    etype, code, msg = inner.get("type"), inner.get("code"), inner.get("message")
    return (
        etype if isinstance(etype, str) else None,
        str(code) if isinstance(code, str | int) and not isinstance(code, bool) else None,
        msg if isinstance(msg, str) else "",
    )


def _root_cause(exc: BaseException) -> BaseException:
    seen: set[int] = set()
    while exc.__cause__ is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__
    return exc


def translate_error(
    exc: BaseException, *, provider: str, model: str, now_s: float
) -> ProviderError | None:
    """The boundary: an SDK / transport exception as a ProviderError (raise it ``from exc``),
    or None when ``exc`` is not a provider failure (then re-raise it untouched)."""
    if isinstance(exc, ProviderError):
        return exc
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) and not isinstance(status, bool) else None
    etype, code, message = _error_fields(getattr(exc, "body", None))
    kind = classify_error(
        status=status,
        error_type=etype,
        error_code=code,
        message=message or str(exc),
        # A wrapper (APIConnectionError) names less than what it wraps (RemoteProtocolError).
        exc_type=type(_root_cause(exc)) if status is None else type(exc),
    )
    if kind is None and status is None:
        kind = classify_exception_type(type(exc))
    if kind is None:
        return None
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    retry_after = parse_retry_after_s(headers, now_s) if isinstance(headers, Mapping) else None
    detail = message or str(exc) or type(exc).__name__
    return ProviderError(
        kind,
        detail,
        provider=provider,
        model=model,
        status=status,
        retry_after_s=retry_after,
    )
