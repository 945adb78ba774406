"""Provider error classification and retry-after parsing: pure functions, tested exhaustively."""

from __future__ import annotations

import json
import typing

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fencepost import ProviderError
from fencepost.errors import ProviderErrorKind
from fencepost.runtime.providers import (
    classify_error,
    classify_exception_type,
    parse_retry_after_s,
)
from fencepost.runtime.providers._classify import translate_error

KINDS = set(typing.get_args(ProviderErrorKind))
TRANSIENT = {
    "rate_limit",
    "overloaded",
    "server_error",
    "timeout",
    "connection",
    "malformed_response",
}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (429, "rate_limit"),
        (529, "overloaded"),
        (503, "overloaded"),
        (500, "server_error"),
        (502, "server_error"),
        (599, "server_error"),
        (504, "timeout"),
        (408, "timeout"),
        (401, "auth"),
        (403, "auth"),
        (413, "context_overflow"),
        (400, "bad_request"),
        (404, "bad_request"),
        (422, "bad_request"),
    ],
)
def test_an_http_status_alone_decides_the_kind(status, expected):
    assert classify_error(status=status) == expected


@pytest.mark.parametrize(
    ("error_type", "error_code", "expected"),
    [
        ("rate_limit_error", None, "rate_limit"),
        ("overloaded_error", None, "overloaded"),
        ("api_error", None, "server_error"),
        ("authentication_error", None, "auth"),
        ("permission_error", None, "auth"),
        ("invalid_request_error", "context_length_exceeded", "context_overflow"),
        ("invalid_request_error", "invalid_api_key", "auth"),
        ("invalid_request_error", None, "bad_request"),
        ("not_found_error", None, "bad_request"),
    ],
)
def test_the_error_body_decides_before_the_status(error_type, error_code, expected):
    # a 200 status: an error event inside a stream
    assert classify_error(status=200, error_type=error_type, error_code=error_code) == expected


@pytest.mark.parametrize(
    "message",
    [
        "prompt is too long: 210000 tokens > 200000 maximum",
        "This model's maximum context length is 8192 tokens",
        "input exceeds the context window",
        "Too many input tokens",
    ],
)
def test_a_context_overflow_is_recognised_by_its_message_on_a_400(message):
    assert classify_error(status=400, error_type="invalid_request_error", message=message) == (
        "context_overflow"
    )


def test_a_context_overflow_message_does_not_turn_a_429_into_an_overflow():
    assert classify_error(status=429, message="too many tokens per minute") == "rate_limit"


class ReadTimeout(Exception):
    pass


class RemoteProtocolError(Exception):
    pass


class APIConnectionError(Exception):
    pass


@pytest.mark.parametrize(
    ("exc_type", "expected"),
    [
        (TimeoutError, "timeout"),
        (ReadTimeout, None),  # a name alone is not in the table: only known families
        (type("TimeoutException", (Exception,), {}), "timeout"),
        (type("ReadTimeout", (type("TimeoutException", (Exception,), {}),), {}), "timeout"),
        (RemoteProtocolError, "malformed_response"),
        (json.JSONDecodeError, "malformed_response"),
        (APIConnectionError, "connection"),
        (ConnectionResetError, "connection"),
        (KeyError, None),
        (ValueError, None),
    ],
)
def test_an_exception_class_is_classified_by_its_family(exc_type, expected):
    assert classify_exception_type(exc_type) == expected


def test_nothing_at_all_is_not_a_provider_failure():
    assert classify_error() is None
    assert classify_error(exc_type=KeyError) is None


@given(
    status=st.none() | st.integers(min_value=100, max_value=999),
    error_type=st.none() | st.sampled_from(["rate_limit_error", "api_error", "x", ""]) | st.text(),
    error_code=st.none() | st.text(),
    message=st.text(),
    exc_type=st.none() | st.sampled_from([TimeoutError, KeyError, RemoteProtocolError, OSError]),
)
def test_classification_is_total_and_stays_in_the_closed_set(
    status, error_type, error_code, message, exc_type
):
    """PROVIDER-I1."""
    kind = classify_error(
        status=status,
        error_type=error_type,
        error_code=error_code,
        message=message,
        exc_type=exc_type,
    )
    assert kind is None or kind in KINDS
    if status is not None and status >= 400:
        assert kind is not None  # every HTTP error is a provider failure
    if kind is not None:
        err = ProviderError(kind, "x", provider="p", model="m")
        assert err.transient == (kind in TRANSIENT)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "3"}, 3.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "Thu, 01 Jan 1970 00:01:40 GMT"}, 40.0),  # now is 60 s
        ({"retry-after": "Thu, 01 Jan 1970 00:00:10 GMT"}, 0.0),  # already past
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-4"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after-ms": "nan"}, None),
    ],
)
def test_retry_after_is_read_from_seconds_milliseconds_or_a_date(headers, expected):
    assert parse_retry_after_s(headers, now_s=60.0) == expected


class FakeStatusError(Exception):
    """Shaped like both SDKs' APIStatusError."""

    def __init__(self, status_code, body, headers):
        super().__init__(f"Error code: {status_code}")
        self.status_code = status_code
        self.body = body
        self.response = type("R", (), {"headers": headers})()


def test_translation_reads_the_status_body_and_retry_after_of_an_sdk_error():
    exc = FakeStatusError(
        429,
        {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
        {"retry-after": "2"},
    )
    err = translate_error(exc, provider="an", model="claude", now_s=0.0)
    assert err is not None
    assert (err.kind, err.status, err.retry_after_s, err.detail) == (
        "rate_limit",
        429,
        2.0,
        "slow down",
    )
    assert str(err).startswith("an/claude: rate_limit (HTTP 429): slow down; ")


def test_translation_leaves_exceptions_that_are_not_provider_failures_alone():
    """PROVIDER-I4."""
    assert translate_error(KeyError("x"), provider="p", model="m", now_s=0.0) is None


def test_a_wrapped_transport_error_is_classified_by_its_root_cause():
    try:
        try:
            raise RemoteProtocolError("incomplete chunked read")
        except RemoteProtocolError as inner:
            raise APIConnectionError("Connection error.") from inner
    except APIConnectionError as outer:
        err = translate_error(outer, provider="p", model="m", now_s=0.0)
    assert err is not None and err.kind == "malformed_response"
