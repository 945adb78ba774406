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
