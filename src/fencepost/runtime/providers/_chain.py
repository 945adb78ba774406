"""Fallback chains: try each model in order, with retries; report who answered and who failed."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from ...core import ModelContext
from ...errors import ProviderError
from ._registry import ProviderRegistry
from ._retry import RetryPolicy, call_with_retries
from ._types import AttemptFailed, ChainEvent, EventCallback, Message, ModelRef, ModelRequest

__all__ = ["Completion", "FailedAttempt", "complete", "context_messages", "stream_complete"]


@dataclass(frozen=True)
class FailedAttempt:
    model: ModelRef
    attempt: int  # 1-based, per model
    error: ProviderError


@dataclass(frozen=True)
class Completion:
    """The reply, the model that gave it, and every failed call before it."""

    message: Message
    model: ModelRef
    failed: tuple[FailedAttempt, ...] = ()

    @property
    def fell_back(self) -> bool:
        return any(f.model != self.model for f in self.failed)


async def complete(
    chain: Sequence[ModelRef | str],
    request: ModelRequest,
    *,
    providers: ProviderRegistry,
    on_event: EventCallback | None = None,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rand: Callable[[], float] | None = None,
) -> Completion:
    """Ask ``chain[0]``; on a ProviderError (after its retries, for transient kinds) ask the
    next. Anything that is not a ProviderError — a session takeover, a cancellation, a bug —
    propagates at once, untouched. When every model failed, the last ProviderError is raised
    with the earlier failures as notes. A ConfigError (unknown provider, no API key)
    propagates too: it needs an operator, not another model."""
    refs = [ModelRef.parse(r) for r in chain]
    if not refs:
        raise ValueError("a model chain needs at least one model")
    draw = rand or random.Random().random
    failed: list[FailedAttempt] = []

    async def record(
        ref: ModelRef, error: ProviderError, attempt: int, delay: float | None
    ) -> None:
        failed.append(FailedAttempt(ref, attempt, error))
        if on_event is not None:
            await on_event(AttemptFailed(ref, attempt, error, delay))

    last: ProviderError | None = None
    for ref in refs:
        provider = providers.get(ref.provider)
        try:
            message = await call_with_retries(
                functools.partial(provider.complete, ref.model, request, on_event),
                retry or providers.retry_policy(ref.provider),
                sleep=sleep,
                rand=draw,
                on_failure=functools.partial(record, ref),
            )
        # Invariant PROVIDER-I6: the chain moves on only on a ProviderError.
        except ProviderError as exc:
            last = exc
            continue
        return Completion(message, ref, tuple(failed))
    assert last is not None
    for f in failed[:-1]:
        last.add_note(f"earlier failure: {f.model} attempt {f.attempt}: {f.error}")
    raise last


async def stream_complete(
    chain: Sequence[ModelRef | str],
    request: ModelRequest,
    *,
    providers: ProviderRegistry,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rand: Callable[[], float] | None = None,
) -> AsyncIterator[ChainEvent | Completion]:
    """:func:`complete` as an async iterator: the events, then the Completion last. Errors are
    raised from the iterator. Use ``contextlib.aclosing`` so leaving early cancels the call."""
    queue: asyncio.Queue[ChainEvent | None] = asyncio.Queue()

    async def push(event: ChainEvent) -> None:
        queue.put_nowait(event)

    task = asyncio.ensure_future(
        complete(
            chain, request, providers=providers, on_event=push, retry=retry, sleep=sleep, rand=rand
        )
    )
    task.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        while (event := await queue.get()) is not None:
            yield event
        yield task.result()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        elif not task.cancelled():
            task.exception()  # retrieved: the consumer left early or already got it


def context_messages(context: ModelContext) -> list[Message]:
    """The model context of a transcript (``fencepost.core.build_context``) as pi messages:
    transcript messages as written, summaries and custom messages as user messages."""
    out: list[Message] = []
    for m in context.messages:
        out.append(dict(m.message) if m.message else {"role": m.role, "content": m.content})
    return out
