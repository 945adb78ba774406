"""A real gateway (scripted models, offline) and its app, over ASGI or on a loopback port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
import uvicorn

from fencepost import message
from fencepost.runtime.config import AgentConfig, GatewayConfig, StatePaths
from fencepost.runtime.cron import RunRecord
from fencepost.runtime.gateway import Gateway
from fencepost.runtime.providers import ScriptStep
from fencepost.surface.http import close_streams, create_app

SCRIPTS = {
    "slowish": (ScriptStep(text="done thinking", first_token_delay_s=0.6),),
    "replies": (ScriptStep(text="the disk is fine"),),
}

#: Unsafe requests from a script carry this (or JSON); docs/design/http.md, HTTP-I6.
WRITE = {"x-fencepost": "1"}


def takeover_run(job_id: str, duration_s: float, **changes: Any) -> RunRecord:
    """A ledger row of a run fenced out after ``duration_s`` (DESIGN.md §3), as the scheduler
    records one."""
    now = datetime.now(UTC)
    row: dict[str, Any] = {
        "run_id": "r-takeover",
        "job_id": job_id,
        "job_name": "disk report",
        "scheduled_at": now,
        "trigger": "schedule",
        "attempt": 1,
        "status": "takeover",
        "recorded_at": now,
        "started_at": now,
        "ended_at": now + timedelta(seconds=duration_s),
        "error_kind": "foreign_append",
        "error_message": "session taken over",
    }
    return RunRecord(**{**row, **changes})


#: A writer name long enough to overflow a column that does not clip it.
LONG_WRITER = "plugin:a-rather-long-plugin-name-for-layout"


async def long_transcript(
    gw: Gateway, session_id: str, n: int = 500, branch_at: int = 400, branch_len: int = 6
) -> list[str]:
    """``n`` records in one session: a chain, with ``branch_len`` records from ``branch_at`` on
    forming a side branch off record ``branch_at - 1`` (the chain goes on from there), long
    unbreakable words, long writer names and run ids. Returns the record ids in file order."""
    ids = [f"{i:08x}" for i in range(n)]
    parents: list[str | None] = [None]
    for i in range(1, n):
        if i == branch_at or i == branch_at + branch_len:
            parents.append(ids[branch_at - 1])  # the fork, and the main line going on
        else:
            parents.append(ids[i - 1])
    entries = []
    for i in range(n):
        role = "user" if i % 2 == 0 else "assistant"
        text = f"record {i}: " + ("x" * 300 if i % 7 == 0 else "a readable line of text " * 12)
        if branch_at <= i < branch_at + branch_len:
            text = f"record {i}: an abandoned try on the side branch"
        entries.append({**message(role, text), "id": ids[i], "parentId": parents[i]})
    writers = ("operator", "delivery", LONG_WRITER, "heartbeat")
    for start in range(0, n, 50):
        w = writers[(start // 50) % len(writers)]
        run_id = f"run-{start:04d}-with-a-long-identifier-that-goes-on"
        await gw.store.session(session_id).append(
            entries[start : start + 50], writer=w, run_id=run_id
        )
    return ids


def gateway_config() -> GatewayConfig:
    return GatewayConfig(
        agents={
            "ops": AgentConfig(name="ops", model="scripted/replies"),
            "thinker": AgentConfig(name="thinker", model="scripted/slowish", steering=False),
        },
        plugins=("model-snapshot",),
        durability="buffered",
        scripts=SCRIPTS,
    )


@pytest.fixture
async def gw(tmp_path) -> AsyncIterator[Gateway]:
    g = Gateway(StatePaths(tmp_path / "state"), gateway_config(), load_entry_points=False)
    await g.start()
    try:
        yield g
    finally:
        await g.stop(grace_s=2)


def asgi_client(app: Any, **kw: Any) -> httpx2.AsyncClient:
    kw.setdefault("base_url", "http://127.0.0.1")
    transport = httpx2.ASGITransport(app=app, client=kw.pop("client", ("127.0.0.1", 5000)))
    return httpx2.AsyncClient(transport=transport, **kw)


@pytest.fixture
async def client(gw) -> AsyncIterator[httpx2.AsyncClient]:
    async with asgi_client(create_app(gw)) as c:
        yield c


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # pytest owns the signals


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1, port 0, in this event loop; yield its URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", log_config=None, lifespan="off"
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        close_streams(app)
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def served(gw) -> AsyncIterator[str]:
    async with serve(create_app(gw)) as url:
        yield url
