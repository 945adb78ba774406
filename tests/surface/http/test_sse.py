"""Live tails over server-sent events, served by uvicorn on a loopback port (HTTP-I4)."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx2

from fencepost import custom, message
from fencepost.surface.http import close_streams, create_app

from .conftest import WRITE, serve


async def sse_events(response):
    """Parsed events of an SSE response: dicts with event, id and data (JSON-decoded)."""
    event: dict = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in event:
                yield event
            event = {}
        elif line.startswith(":"):
            continue
        else:
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "data":
                event["data"] = json.loads(value)
            elif key in ("event", "id"):
                event[key] = value


@contextlib.asynccontextmanager
async def sse_stream(client, url, **kw):
    """(response, event iterator) of a GET that streams server-sent events."""
    async with client.stream("GET", url, **kw) as r:
        events = sse_events(r)
        try:
            yield r, events
        finally:
            await events.aclose()


async def collect_until(events, predicate, *, timeout_s=10.0):
    got = []
    async with asyncio.timeout(timeout_s):
        async for ev in events:
            got.append(ev)
            if predicate(ev):
                return got
    raise AssertionError(f"stream ended before the expected event: {got}")


async def test_the_live_tail_sends_the_backlog_then_a_record_a_cooperative_writer_appends(
    gw, served
):
    session = gw.store.session("notes")
    await session.append(message("user", "first"), writer="operator")
    await session.append(message("user", "second"), writer="operator")
    async with (
        httpx2.AsyncClient(base_url=served) as c,
        sse_stream(c, "/api/sessions/notes/events?offset=0") as (r, events),
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        backlog = await collect_until(events, lambda ev: ev.get("event") == "ready")
        assert [(e["id"], e["data"]["summary"]) for e in backlog[:-1]] == [
            ("0", "user: first"),
            ("1", "user: second"),
        ]
        await session.append(
            custom("delivery-mirror", {"text": "sent"}), writer="delivery", run_id="run-7"
        )
        [live] = await collect_until(events, lambda ev: ev.get("event") == "record")
    assert live["id"] == "2"
    rec = live["data"]
    assert (rec["writer"], rec["run_id"], rec["type"]) == ("delivery", "run-7", "custom")
    assert isinstance(rec["epoch"], int) and isinstance(rec["seq"], int)


async def test_a_reconnect_with_last_event_id_gets_every_later_record_exactly_once(gw, served):
    """Invariant HTTP-I4."""
    session = gw.store.session("notes")
    for i in range(3):
        await session.append(message("user", f"m{i}"), writer="operator")
    async with httpx2.AsyncClient(base_url=served) as c:
        async with sse_stream(c, "/api/sessions/notes/events?offset=0") as (_, events):
            first = await collect_until(events, lambda ev: ev.get("id") == "1")
        # disconnected after record 1; two more land while nobody listens
        for i in range(3, 5):
            await session.append(message("user", f"m{i}"), writer="operator")
        headers = {"last-event-id": first[-1]["id"]}
        async with sse_stream(c, "/api/sessions/notes/events", headers=headers) as (_, events):
            resumed = await collect_until(events, lambda ev: ev.get("event") == "ready")
            await session.append(message("user", "m5"), writer="operator")
            resumed += await collect_until(events, lambda ev: ev.get("event") == "record")
    records = [e for e in first + resumed if e.get("event") == "record"]
    assert [e["data"]["summary"] for e in records] == [f"user: m{i}" for i in range(6)]
    assert [int(e["id"]) for e in records] == list(range(6))


async def test_a_tail_from_a_stamp_seq_or_the_last_n_records(gw, served):
    session = gw.store.session("notes")
    results = [await session.append(message("user", f"m{i}"), writer="operator") for i in range(4)]
    async with httpx2.AsyncClient(base_url=served) as c:
        after = results[1].last_seq
        async with sse_stream(c, f"/api/sessions/notes/events?after_seq={after}") as (_, events):
            got = await collect_until(events, lambda ev: ev.get("event") == "ready")
        assert [e["data"]["summary"] for e in got[:-1]] == ["user: m2", "user: m3"]
        async with sse_stream(c, "/api/sessions/notes/events?tail=1") as (_, events):
            got = await collect_until(events, lambda ev: ev.get("event") == "ready")
        assert [e["data"]["summary"] for e in got[:-1]] == ["user: m3"]
        assert got[-1]["data"] == {"next_index": 4}


async def test_a_tail_whose_transcript_is_truncated_is_told_to_start_over(gw, served):
    session = gw.store.session("notes")
    await session.append(message("user", "a"), writer="operator")
    async with (
        httpx2.AsyncClient(base_url=served) as c,
        sse_stream(c, "/api/sessions/notes/events") as (_, events),
    ):
        await collect_until(events, lambda ev: ev.get("event") == "ready")
        with open(session.path, "r+b") as f:
            f.truncate(10)
        got = await collect_until(events, lambda ev: ev.get("event") == "reset")
        assert got[-1]["data"]["reason"]


async def test_the_gateway_feed_reports_a_turn_starting_and_finishing(gw, served):
    async with (
        httpx2.AsyncClient(base_url=served) as c,
        sse_stream(c, "/api/events") as (_, events),
    ):
        await collect_until(events, lambda ev: ev.get("event") == "ready")
        sent = await c.post("/api/sessions/chat/messages", json={"text": "hi"}, headers=WRITE)
        assert sent.status_code == 202
        got = await collect_until(events, lambda ev: ev.get("event") == "turn_finished")
    kinds = [e["event"] for e in got]
    assert kinds[0] == "turn_started" and "transcript" in kinds
    assert got[-1]["data"]["status"] == "ok"
    assert got[-1]["data"]["run_id"] == sent.json()["run_id"]


async def test_closing_the_app_ends_open_streams_so_the_server_can_stop(gw):
    app = create_app(gw)
    async with (
        serve(app) as url,
        httpx2.AsyncClient(base_url=url) as c,
        sse_stream(c, "/api/events") as (_, events),
    ):
        await collect_until(events, lambda ev: ev.get("event") == "ready")
        close_streams(app)
        async with asyncio.timeout(5):
            rest = [ev async for ev in events]
    assert rest == []
