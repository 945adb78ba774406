"""Delivery of a run's reply: into a session as a mirror record, or to a webhook.

The scheduler records ``pending`` before calling a deliverer and the outcome after
(Invariant CRON-I11); a deliverer only sends, and raises ``DeliveryError`` when it could not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from fencepost import SessionStore, message
from fencepost.errors import DeliveryError, FencepostError

from ._job import Job
from ._store import RunRecord

if TYPE_CHECKING:
    import httpx2

__all__ = ["Deliverer", "SessionMirrorDeliverer", "WebhookDeliverer", "webhook_body"]


class Deliverer(Protocol):
    async def deliver(self, job: Job, run: RunRecord) -> None:
        """Send ``run.reply`` to ``job.delivery``; raise DeliveryError when it did not arrive."""
        ...


class SessionMirrorDeliverer:
    """Appends the reply to a session as an assistant message, as the ``delivery`` writer.

    A cooperative write through the session protocol: it never takes the lease, and refuses
    (DeliveryError) rather than write on top of a change made outside the protocol.
    """

    def __init__(self, sessions: SessionStore) -> None:
        self.sessions = sessions

    def __repr__(self) -> str:
        return f"<SessionMirrorDeliverer {self.sessions.root}>"

    async def deliver(self, job: Job, run: RunRecord) -> None:
        session_id = job.delivery.to or ""
        entry = message(
            "assistant",
            [{"type": "text", "text": run.reply or ""}],
            mirror={"job_id": job.job_id, "run_id": run.run_id, "job_name": job.name},
            **({"model": run.model} if run.model else {}),
        )
        try:
            await self.sessions.session(session_id).append(
                entry, writer="delivery", run_id=run.run_id
            )
        except FencepostError as exc:
            raise DeliveryError(f"session:{session_id}", str(exc)) from exc


def webhook_body(job: Job, run: RunRecord) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "job_name": job.name,
        "agent": job.agent,
        "run_id": run.run_id,
        "status": run.status,
        "scheduled_at": run.scheduled_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "ended_at": run.ended_at.isoformat() if run.ended_at else None,
        "session_id": run.session_id,
        "model": run.model,
        "usage": run.usage,
        "reply": run.reply,
    }


class WebhookDeliverer:
    """POSTs the run as JSON; retries connection errors, 429 and 5xx a bounded number of times."""

    #: three tries cover a restarting receiver without holding a run's slot for long
    DEFAULT_MAX_ATTEMPTS = 3

    def __init__(
        self,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff_s: tuple[float, ...] = (1.0, 5.0),
        timeout_s: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.transport = transport
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"<WebhookDeliverer max_attempts={self.max_attempts}>"

    async def deliver(self, job: Job, run: RunRecord) -> None:
        import httpx2  # when a webhook is sent: 40 ms of import that every CLI call would pay

        url = job.delivery.to or ""
        body = webhook_body(job, run)
        last = "no attempt made"
        async with httpx2.AsyncClient(transport=self.transport, timeout=self.timeout_s) as client:
            for attempt in range(1, self.max_attempts + 1):
                try:
                    response = await client.post(
                        url, json=body, headers={"x-fencepost-run-id": run.run_id}
                    )
                except httpx2.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                else:
                    if response.status_code < 300:
                        return
                    last = f"HTTP {response.status_code}"
                    if response.status_code != 429 and response.status_code < 500:
                        raise DeliveryError(url, last + " (not retried)", attempts=attempt)
                if attempt < self.max_attempts:
                    await self._sleep(self.backoff_s[min(attempt - 1, len(self.backoff_s) - 1)])
        raise DeliveryError(url, last, attempts=self.max_attempts)
