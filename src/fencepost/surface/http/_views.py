"""The web dashboard: server-rendered pages over the same reads as the API (no build step)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from ...runtime.gateway import Gateway
from ._api import (
    gateway_of,
    int_query,
    jobs_json,
    run_json,
    runs_query,
    sessions_list,
    verify_json,
)
from ._errors import ApiError
from ._records import session_summary, snapshot, tree_rows

__all__ = ["dashboard_routes", "make_templates"]

#: A session page shows this many records (the newest); older ones are a link away.
PAGE_RECORDS = 1000

HERE = Path(__file__).parent

#: What a table cell shows for "no value" (an en dash).
NONE = "\N{EN DASH}"


def _when(value: Any) -> str:
    if value is None or value == "":
        return NONE
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if not isinstance(value, datetime):
        return str(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return str(value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ"))


def _size(n: int | None) -> str:
    if n is None:
        return NONE
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters.update(when=_when, size=_size, duration=_duration)
    return templates


def _render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, name, context, status_code=status_code)


async def jobs_page(request: Request) -> Response:
    gw = gateway_of(request)
    jobs = jobs_json(gw.cron)
    return _render(request, "jobs.html", title="Jobs", nav="jobs", jobs=jobs, live="feed")


async def runs_page(request: Request) -> Response:
    rows, more = runs_query(request)
    q = request.query_params
    return _render(
        request,
        "runs.html",
        title="Runs",
        nav="runs",
        runs=[run_json(r) for r in rows],
        next_before=more,
        job=q.get("job", ""),
        status=q.get("status", ""),
        live="feed" if not q.get("before") else "",
    )


async def sessions_page(request: Request) -> Response:
    offset = int_query(request, "offset", 0, 0, 2**31) or 0
    rows, total = await run_in_threadpool(sessions_list, gateway_of(request), offset, 200)
    return _render(
        request,
        "sessions.html",
        title="Sessions",
        nav="sessions",
        sessions=rows,
        total=total,
        offset=offset,
        live="feed",
    )


def _session_view(gw: Gateway, session_id: str, offset: int | None) -> dict[str, Any]:
    """Everything the session page shows. O(transcript size): run in a worker thread
    (Invariant HTTP-I7)."""
    session = gw.store.session(session_id)
    snap = snapshot(session)
    rows = tree_rows(snap.transcript)
    default = max(0, len(rows) - PAGE_RECORDS)
    offset = default if offset is None else offset
    shown = rows[offset : offset + PAGE_RECORDS]
    at_end = offset + len(shown) >= len(rows)
    return dict(
        title=f"Session {session_id}",
        nav="sessions",
        session_id=session_id,
        summary=session_summary(gw.store, session_id),
        header=snap.transcript.header.data if snap.transcript.header else None,
        records=shown,
        total=len(rows),
        offset=offset,
        next_index=len(rows),
        follow=at_end,
        verify=verify_json(gw, session_id),
        fence_events=[dataclasses.asdict(e) for e in session.fence_events()],
        agents=sorted(gw.agents),
        live="session" if at_end else "",
    )


async def session_page(request: Request) -> Response:
    gw = gateway_of(request)
    session_id = request.path_params["session_id"]
    gw.store.session(session_id)  # a path-like id is refused before any thread is used
    offset = int_query(request, "offset", None, 0, 2**31)
    view = await run_in_threadpool(_session_view, gw, session_id, offset)
    return _render(request, "session.html", **view)


async def path_like_session(request: Request) -> Response:
    gateway_of(request).store.session(request.path_params["rest"])  # 400 when path-like
    raise ApiError(404, "not_found", f"no page {request.url.path}")


def dashboard_routes() -> list[Route]:
    return [
        Route("/", jobs_page, methods=["GET"]),
        Route("/runs", runs_page, methods=["GET"]),
        Route("/sessions", sessions_page, methods=["GET"]),
        Route("/sessions/{session_id}", session_page, methods=["GET"]),
        Route("/sessions/{rest:path}", path_like_session, include_in_schema=False),
    ]
