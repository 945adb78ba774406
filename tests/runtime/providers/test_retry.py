"""Backoff (pure) and call_with_retries (with an injected sleep: nothing waits)."""

from __future__ import annotations

import asyncio
import typing

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fencepost import ProviderError, SessionTakeoverError
from fencepost.errors import ProviderErrorKind
from fencepost.runtime.providers import RetryPolicy, call_with_retries, retry_delay_s

KINDS = sorted(typing.get_args(ProviderErrorKind))


def error(kind: ProviderErrorKind = "server_error", retry_after_s: float | None = None):
    return ProviderError(kind, "x", provider="p", model="m", retry_after_s=retry_after_s)


@given(
    kind=st.sampled_from(KINDS),
    attempt=st.integers(min_value=1, max_value=50),
    rand=st.floats(min_value=0.0, max_value=1.0),
    retry_after=st.none() | st.floats(min_value=0.0, max_value=500.0),
    max_attempts=st.integers(min_value=1, max_value=10),
    base=st.floats(min_value=0.0, max_value=5.0),
)
def test_backoff_is_bounded_and_only_retries_transient_kinds(
    kind, attempt, rand, retry_after, max_attempts, base
):
    """PROVIDER-I2."""
    policy = RetryPolicy(max_attempts=max_attempts, base_delay_s=base, max_delay_s=30.0)
    err = error(kind, retry_after)
    delay = retry_delay_s(policy, attempt=attempt, error=err, rand=rand)
    if not err.transient or attempt >= max_attempts:
        assert delay is None
        return
    if retry_after is not None and retry_after > policy.max_retry_after_s:
        assert delay is None
        return
    assert delay is not None
    assert 0.0 <= delay <= max(policy.max_delay_s, policy.max_retry_after_s)
    if retry_after is not None:
        assert delay >= retry_after


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [(1, 0.0, 0.5), (1, 1.0, 1.0), (2, 0.0, 1.0), (3, 0.5, 3.0), (4, 1.0, 8.0), (9, 1.0, 30.0)],
)
def test_backoff_doubles_per_attempt_with_equal_jitter_up_to_the_cap(attempt, rand, expected):
    policy = RetryPolicy(max_attempts=20, base_delay_s=1.0, max_delay_s=30.0)
    assert retry_delay_s(policy, attempt=attempt, error=error(), rand=rand) == expected


def test_a_retry_after_longer_than_the_limit_is_left_to_the_fallback():
    policy = RetryPolicy(max_retry_after_s=60.0)
    assert retry_delay_s(policy, attempt=1, error=error("rate_limit", 61.0), rand=0.5) is None
    assert retry_delay_s(policy, attempt=1, error=error("rate_limit", 59.0), rand=0.5) == 59.0


def test_a_policy_refuses_nonsense():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_delay_s=10.0, max_delay_s=1.0)


async def test_call_with_retries_sleeps_between_attempts_and_returns_the_success(sleep):
    outcomes: list[object] = [error("rate_limit"), error("overloaded"), "ok"]
    seen: list[tuple[str, int, float | None]] = []

    async def call() -> str:
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        return str(item)

    async def on_failure(err, attempt, delay):
        seen.append((err.kind, attempt, delay))

    result = await call_with_retries(
        call, RetryPolicy(max_attempts=3), sleep=sleep, rand=lambda: 0.0, on_failure=on_failure
    )
    assert result == "ok"
    assert sleep.calls == [0.5, 1.0]
    assert seen == [("rate_limit", 1, 0.5), ("overloaded", 2, 1.0)]


async def test_call_with_retries_gives_up_after_max_attempts_with_the_last_error(sleep):
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        raise error("server_error")

    with pytest.raises(ProviderError):
        await call_with_retries(call, RetryPolicy(max_attempts=3), sleep=sleep, rand=lambda: 0.5)
    assert calls == 3
    assert len(sleep.calls) == 2


@pytest.mark.parametrize(
    "exc",
    [
        SessionTakeoverError("s1", "lease_superseded", "epoch 4 > 3"),
        asyncio.CancelledError(),
        KeyError("bug"),
    ],
)
async def test_call_with_retries_never_retries_what_is_not_a_provider_error(sleep, exc):
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        raise exc

    with pytest.raises(type(exc)):
        await call_with_retries(call, RetryPolicy(max_attempts=5), sleep=sleep, rand=lambda: 0.5)
    assert calls == 1
    assert sleep.calls == []
