"""Server-sent events: the live tail of a session and the gateway's event feed.

SSE semantics are in docs/design/http.md: an event's ``id`` is the record's index in the
transcript, so a client that reconnects with ``Last-Event-ID`` resumes after the last record it
saw, with nothing missed and nothing repeated (Invariant HTTP-I4).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ...core import Session
from ...runtime.gateway import Gateway
from ._records import Snapshot, TailReader, record_json

__all__ = ["EventStream", "gateway_events", "session_tail"]

#: Writers in other processes (the CLI, another tool) do not notify this one; a stream looks at
#: the file this often anyway. In-process writers wake it at once.
POLL_INTERVAL_S = 1.0

#: Proxies and browsers drop a silent connection; a comment line keeps it open.
KEEPALIVE_S = 15.0

#: The gateway feed keeps at most this many undelivered events per client before it tells the
#: client it fell behind (``event: overflow``) instead of buffering without bound.
FEED_QUEUE_MAX = 1000


def sse(data: Any, *, event: str | None = None, event_id: int | None = None) -> bytes:
    out = ""
    if event is not None:
        out += f"event: {event}\n"
    if event_id is not None:
        out += f"id: {event_id}\n"
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return (out + f"data: {payload}\n\n").encode("utf-8")


class EventStream(Response):
    """A ``text/event-stream`` response that ends when the client goes away or the app closes.

    Starlette's StreamingResponse notices a disconnect only on its next write; a quiet tail would
    keep its subscription forever. This one watches ``receive`` while it streams.
    """

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[bytes], closing: asyncio.Event) -> None:
        # No body and so no content-length: like StreamingResponse, the length is open.
        self.status_code = 200
        self.background = None
        self.init_headers({"cache-control": "no-cache", "x-accel-buffering": "no"})
        self.events = events
        self.closing = closing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})

        async def pump() -> None:
            async for chunk in self.events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        tasks = [
            asyncio.create_task(pump()),
            asyncio.create_task(disconnected()),
            asyncio.create_task(self.closing.wait()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            aclose = getattr(self.events, "aclose", None)
            if aclose is not None:
                await aclose()
        if tasks[1] not in done:
            with contextlib.suppress(OSError):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        for t in done:
            exc = None if t.cancelled() else t.exception()
            if exc is not None:
                raise exc


async def session_tail(
    gw: Gateway, session: Session, snap: Snapshot, start: int
) -> AsyncIterator[bytes]:
    """Records from index ``start`` on, then each new record as it lands, in file order."""
    wake = asyncio.Event()
    sid = session.session_id

    def on_event(event: dict[str, Any]) -> None:
        if event.get("type") == "transcript" and event.get("session_id") == sid:
            wake.set()

    # Subscribe before the first read: a record that lands after the read wakes us, so none is
    # missed between the backlog and the live part.
    unsubscribe = gw.subscribe(on_event)
    try:
        yield b"retry: 1000\n\n"
        reader = TailReader(session.path, snap)
        entries = snap.transcript.entries
        for i in range(max(0, start), len(entries)):
            yield sse(record_json(i, entries[i]), event="record", event_id=i)
        yield sse({"next_index": reader.next_index}, event="ready")
        last_sent = time.monotonic()
        while gw.started_at is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), POLL_INTERVAL_S)
            wake.clear()
            new = reader.read_new()
            if new is None:
                # Truncated, replaced or deleted: indexes no longer line up. Tell the client to
                # start over rather than guess (docs/design/http.md, SSE semantics).
                yield sse({"reason": "transcript changed under the tail"}, event="reset")
                return
            # Invariant HTTP-I4: ids are record indexes, sent in file order, each once.
            for row in new:
                yield sse(row, event="record", event_id=row["index"])
                last_sent = time.monotonic()
            if time.monotonic() - last_sent > KEEPALIVE_S:
                yield b": keepalive\n\n"
                last_sent = time.monotonic()
    finally:
        unsubscribe()


async def gateway_events(gw: Gateway) -> AsyncIterator[bytes]:
    """The gateway's live events (turn started/finished, transcript updated), as they happen."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(FEED_QUEUE_MAX)
    overflowed = False

    def on_event(event: dict[str, Any]) -> None:
        nonlocal overflowed
        try:
            queue.put_nowait(event)
        except asyncio.QueueFull:
            overflowed = True

    unsubscribe = gw.subscribe(on_event)
    try:
        yield b"retry: 1000\n\n"
        yield sse(
            {"started_at": gw.started_at.isoformat() if gw.started_at else None}, event="ready"
        )
        while gw.started_at is not None:
            try:
                event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield b": keepalive\n\n"
                continue
            if overflowed:
                overflowed = False
                yield sse({"dropped": True}, event="overflow")
            yield sse(event, event=str(event.get("type", "event")))
    finally:
        unsubscribe()
