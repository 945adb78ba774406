"""The web dashboard: server-rendered pages over the same reads as the API (no build step)."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from ...runtime.gateway import Gateway
from ._api import (
    RUN_STATUSES,
    gateway_of,
    int_query,
    jobs_json,
    run_json,
    runs_query,
    sessions_list,
    verify_json,
)
from ._errors import ApiError, translate
from ._records import session_summary, snapshot, thread_page

__all__ = ["dashboard_routes", "make_templates", "printable"]

#: A transcript page: enough to read a few turns, small enough that a browser lays it out at
#: once; the newest page is the default, older ones are a link away (Invariant HTTP-I11).
PAGE_RECORDS = 200

HERE = Path(__file__).parent

#: What a table cell shows for "no value" (an en dash).
NONE = "\N{EN DASH}"


def _when(value: Any) -> Markup | str:
    """A time as UTC text in a ``<time>`` element; the page's script adds the reader's local
    time beside it (Invariant HTTP-I13), and without the script the UTC text stands alone."""
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
    value = value.astimezone(UTC)
    iso = value.strftime("%Y-%m-%dT%H:%M:%SZ")
    text = value.strftime("%Y-%m-%d %H:%M:%SZ")
    return Markup('<time datetime="{}">{}</time>').format(escape(iso), escape(text))


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


#: Characters a browser would not show as they are: controls, zero-width and bidirectional
#: marks. The approvals panel shows them as ``\uXXXX`` (dashboard.js does the same), so a
#: request reads as it is (docs/design/approvals.md).
_HIDDEN_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def printable(text: Any) -> str:
    return _HIDDEN_CHARS.sub(lambda m: f"\\u{ord(m.group()):04x}", str(text))


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters.update(when=_when, size=_size, duration=_duration, printable=printable)
    return templates


def _render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    """A page, with the approvals panel every page shows (docs/design/approvals.md)."""
    gw = gateway_of(request)
    now = gw.clock.now()
    context.setdefault("approvals", [p.to_json(now) for p in gw.approvals.pending()])
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, name, context, status_code=status_code)


async def jobs_page(request: Request) -> Response:
    """Jobs with their state, and a form that creates and edits them. Invariant HTTP-I14: the
    page's script changes jobs only through the JSON API (``_api.create_job``, ``patch_job``,
    ``delete_job``, ``run_job``), so the dashboard refuses exactly what the API refuses."""
    gw = gateway_of(request)
    jobs = jobs_json(gw.cron)
    return _render(
        request,
        "jobs.html",
        title="Jobs",
        nav="jobs",
        jobs=jobs,
        agents=sorted(gw.agents),
        live="feed",
    )


#: The run filters the dashboard keeps in its address (Invariant HTTP-I12).
RUN_FILTERS = ("job", "status", "since")

#: The status choices the runs page offers besides single statuses.
STATUS_GROUPS = {"error,timeout,takeover,interrupted": "any failure"}


async def runs_page(request: Request) -> Response:
    """The ledger filtered by ``?job=&status=&since=`` (the API's own query parser). The
    filters live only in the address, so a reload or a bookmark shows the same runs; a filter
    the parser refuses is shown next to its field, with the parser's status."""
    q = request.query_params
    filters = {name: q.get(name, "") for name in RUN_FILTERS}
    status_code, problem = 200, None
    try:
        rows, more = runs_query(request)
    except Exception as exc:  # translate() decides; anything not ours is raised again
        api = translate(exc)
        if api is None or api.status >= 500:
            raise
        rows, more, status_code = [], None, api.status
        field = "job" if api.field in (None, "job_id") else api.field
        problem = {"field": field, "message": api.message}
    gw = gateway_of(request)
    jobs = [{"job_id": j.job_id, "name": j.name} for j, _ in gw.cron.list_jobs()]
    statuses = [*RUN_STATUSES, *STATUS_GROUPS]
    return _render(
        request,
        "runs.html",
        status_code=status_code,
        title="Runs",
        nav="runs",
        runs=[run_json(r) for r in rows],
        next_before=more,
        filters=filters,
        filtered=any(filters.values()),
        jobs=jobs,
        statuses=statuses,
        status_labels=STATUS_GROUPS,
        problem=problem,
        live="feed" if not q.get("before") and problem is None else "",
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


def _session_view(
    gw: Gateway, session_id: str, offset: int | None, open_branch: str | None
) -> dict[str, Any]:
    """Everything the session page shows. O(transcript size): run in a worker thread
    (Invariant HTTP-I7)."""
    session = gw.store.session(session_id)
    snap = snapshot(session)
    total = len(snap.transcript.entries)
    last = max(0, total - PAGE_RECORDS)  # the newest page: always a full one
    offset = last if offset is None else min(offset, last)
    thread = thread_page(snap.transcript, offset, PAGE_RECORDS, open_branch)
    shown = min(PAGE_RECORDS, total - offset)
    at_end = offset >= last
    return dict(
        title=f"Session {session_id}",
        nav="sessions",
        session_id=session_id,
        summary=session_summary(gw.store, session_id),
        header=snap.transcript.header.data if snap.transcript.header else None,
        thread=thread["items"],
        leaf=thread["leaf"] or "",
        total=total,
        offset=offset,
        shown=shown,
        page_size=PAGE_RECORDS,
        pages=dict(
            first=0 if offset > 0 else None,
            prev=max(0, offset - PAGE_RECORDS) if offset > 0 else None,
            next=min(offset + PAGE_RECORDS, last) if not at_end else None,
            end=last if not at_end else None,
        ),
        next_index=total,
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
    open_branch = request.query_params.get("open") or None
    view = await run_in_threadpool(_session_view, gw, session_id, offset, open_branch)
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
