"""Retries of transient provider failures: a pure backoff decision and a thin async loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ...errors import ProviderError

__all__ = ["RetryPolicy", "call_with_retries", "retry_delay_s"]

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]
OnFailure = Callable[[ProviderError, int, "float | None"], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """How one model is retried. ``max_attempts`` counts the first call."""

    max_attempts: int = 3
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    #: A provider asking for a longer pause is better left for the fallback model.
    max_retry_after_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= self.base_delay_s <= self.max_delay_s:
            raise ValueError("need 0 <= base_delay_s <= max_delay_s")
        if self.max_retry_after_s < 0:
            raise ValueError("max_retry_after_s must be 0 or more")


def retry_delay_s(
    policy: RetryPolicy, *, attempt: int, error: ProviderError, rand: float
) -> float | None:
    """Pure: seconds to wait before attempt ``attempt + 1``, or None to stop retrying.

    Exponential with "equal jitter" (half fixed, half ``rand`` in [0, 1)), capped at
    ``max_delay_s``; a provider's retry-after raises the delay to at least that, or ends the
    retries when it is longer than ``max_retry_after_s``.
    """
    # Invariant PROVIDER-I2: only transient kinds retry, and never past max_attempts.
    if not error.transient or attempt >= policy.max_attempts:
        return None
    exp_s = min(policy.max_delay_s, policy.base_delay_s * 2.0 ** (attempt - 1))
    delay_s = exp_s / 2.0 + exp_s / 2.0 * min(max(rand, 0.0), 1.0)
    if error.retry_after_s is not None:
        if error.retry_after_s > policy.max_retry_after_s:
            return None
        delay_s = max(delay_s, error.retry_after_s)
    return delay_s


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Sleep = asyncio.sleep,
    rand: Callable[[], float],
    on_failure: OnFailure | None = None,
) -> T:
    """Call until it succeeds or :func:`retry_delay_s` says stop; then the last ProviderError
    is raised. Any other exception (cancellation, a session takeover) propagates at once."""
    attempt = 1
    while True:
        try:
            return await call()
        except ProviderError as exc:
            delay_s = retry_delay_s(policy, attempt=attempt, error=exc, rand=rand())
            if on_failure is not None:
                await on_failure(exc, attempt, delay_s)
            if delay_s is None:
                raise
        await sleep(delay_s)
        attempt += 1
