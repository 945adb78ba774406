"""The JSON API under ``/api``: parse the request, call the runtime, render JSON.

Routes and their contracts are in docs/design/http.md and in ``/openapi.json``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime
from typing import Any, get_args

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import fencepost

from ...core import verify_transcript
from ...errors import ConfigError, InvalidJobError, SessionNotFoundError
from ...runtime.cron import (
    CronStore,
    Job,
    JobService,
    JobState,
    RunRecord,
    RunStatus,
    parse_since,
)
from ...runtime.gateway import Gateway, check_decider
from ...runtime.resources import judge, process_usage, state_usage
from ._errors import ApiError, config_refused
from ._jobs import changes_from_body, create_from_body
from ._records import record_json, session_summary, snapshot
from ._schemas import openapi_document
from ._sse import EventStream, gateway_events, session_tail

__all__ = [
    "RUN_STATUSES",
    "DECIDER_HEADER",
    "api_routes",
    "decider_of",
    "gateway_of",
    "int_query",
    "job_json",
    "json_depth",
    "jobs_json",
    "run_json",
    "runs_query",
    "session_page",
    "sessions_list",
    "verify_json",
]

RUN_STATUSES: tuple[str, ...] = get_args(RunStatus)
_FULL_JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

#: A default page a browser renders quickly; larger pages by asking.
DEFAULT_RECORDS_PAGE = 500
#: What a live tail sends first when the client names no position.
DEFAULT_TAIL = 50


def gateway_of(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def _now(gw: Gateway) -> datetime:
    return gw.clock.now()


#: How deep a request body may nest: far beyond any job or message body, far below where the
#: JSON decoder would recurse out of stack (Invariant HTTP-I9).
MAX_BODY_DEPTH = 32


async def _body(request: Request) -> Any:
    """The JSON body, read up to ``server.max_body_bytes`` (Invariant HTTP-I9): larger is a 413
    and deeper than ``MAX_BODY_DEPTH`` a 400, before anything is parsed into the runtime."""
    limit = gateway_of(request).config.server.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        body = json.loads(raw or b"null")
    except RecursionError:
        body = None
        too_deep = True
    except ValueError as exc:
        raise ApiError(400, "bad_json", f"the request body is not JSON: {exc}") from None
    else:
        too_deep = json_depth(body) > MAX_BODY_DEPTH
    if too_deep:
        raise ApiError(
            400, "bad_json", f"the request body nests deeper than {MAX_BODY_DEPTH} levels"
        )
    return body


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "body_too_large",
        f"the request body is larger than {limit} bytes (server.max_body_bytes)",
    )


def json_depth(value: Any) -> int:
    """How deep a decoded JSON value nests (a scalar is 0); iterative, so any depth is safe."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in node)
    return deepest


def int_query(request: Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(422, "invalid", f"{name} must be an integer", field=name) from None
    if not lo <= value <= hi:
        raise ApiError(422, "invalid", f"{name} must be between {lo} and {hi}", field=name)
    return value


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")


# ---- rendering ----------------------------------------------------------------------------


def job_json(job: Job, state: JobState, counts: dict[str, int]) -> dict[str, Any]:
    """``counts`` from ``CronStore.run_counts``: right after ledger pruning too (RETENTION-G5)."""
    return {
        **job.to_json(),
        "schedule_text": job.schedule.describe(),
        "state": state.to_json(),
        "run_counts": counts,
    }


def jobs_json(store: CronStore) -> list[dict[str, Any]]:
    """Every job, its counts by one grouped query (not one per job)."""
    rows = store.list_jobs()
    counts = store.run_counts_by_job([j.job_id for j, _ in rows])
    return [job_json(j, s, counts[j.job_id]) for j, s in rows]


def run_json(run: RunRecord) -> dict[str, Any]:
    out = run.to_json()
    out["duration_s"] = (
        round((run.ended_at - run.started_at).total_seconds(), 3)
        if run.started_at and run.ended_at
        else None
    )
    return out


# ---- health ---------------------------------------------------------------------------------


async def health(request: Request) -> Response:
    gw = gateway_of(request)
    started = gw.started_at
    process = process_usage()
    state = await run_in_threadpool(state_usage, gw.paths)  # O(files): off the loop (HTTP-I7)
    marks = judge(process, state, gw.config.limits)
    return JSONResponse(
        {
            "status": "ok",
            "version": fencepost.__version__,
            "started_at": started.isoformat() if started else None,
            "uptime_s": round((datetime.now(UTC) - started).total_seconds(), 3)
            if started
            else None,
            "scheduler": dataclasses.asdict(gw.scheduler.statistics()),
            "gateway": dataclasses.asdict(gw.statistics()),
            "cron": dataclasses.asdict(gw.cron.statistics()),
            "agents": sorted(gw.agents),
            "store": dataclasses.asdict(gw.store.statistics()),
            "approvals": dataclasses.asdict(gw.approvals.statistics()),
            "resources": {
                "process": process.to_json() if process else None,
                "state": state.to_json(),
                "warnings": [dataclasses.asdict(w) for w in marks if w.status == "warn"],
            },
        }
    )


async def mcp_servers(request: Request) -> Response:
    """The MCP servers and their state (docs/design/mcp.md); read-only: starts nothing."""
    gw = gateway_of(request)
    return JSONResponse({"servers": [s.to_json() for s in gw.mcp.status()]})


async def reload_config(request: Request) -> Response:
    """Read the config again and apply it, or refuse it and keep the old one (GATEWAY-I8)."""
    try:
        result = await gateway_of(request).reload()
    except ConfigError as exc:
        raise config_refused(exc) from None
    return JSONResponse(result.to_json())


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document(fencepost.__version__))


# ---- jobs -----------------------------------------------------------------------------------


def resolve_job(store: CronStore, text: str) -> str:
    """A full job id from an id or unique prefix; malformed → 400, unknown → 404."""
    try:
        return store.resolve_job_id(text)
    except InvalidJobError as exc:
        raise ApiError(400, "invalid_job_id", exc.detail, field="job_id") from None


def _jobs(gw: Gateway) -> JobService:
    """The job service of this gateway: its validator, its scheduler woken on every change."""
    return JobService(gw.cron, validator=gw.job_validator, wake=gw.scheduler.wake)


async def list_jobs(request: Request) -> Response:
    return JSONResponse({"jobs": jobs_json(gateway_of(request).cron)})


async def create_job(request: Request) -> Response:
    gw = gateway_of(request)
    body = await _body(request)
    now = _now(gw)
    job, state = _jobs(gw).create(**create_from_body(body, now=now))
    out = job_json(job, state, gw.cron.run_counts(job.job_id))
    return JSONResponse(out, status_code=201, headers={"location": f"/api/jobs/{job.job_id}"})


async def get_job(request: Request) -> Response:
    store = gateway_of(request).cron
    jid = resolve_job(store, request.path_params["job_id"])
    return JSONResponse(job_json(store.get_job(jid), store.get_state(jid), store.run_counts(jid)))


async def patch_job(request: Request) -> Response:
    gw = gateway_of(request)
    store = gw.cron
    jid = resolve_job(store, request.path_params["job_id"])
    body = await _body(request)
    now = _now(gw)
    edited, state = _jobs(gw).edit(
        jid, disabled_reason="disabled over HTTP", **changes_from_body(body, now=now)
    )
    return JSONResponse(job_json(edited, state, store.run_counts(jid)))


async def delete_job(request: Request) -> Response:
    gw = gateway_of(request)
    jid = resolve_job(gw.cron, request.path_params["job_id"])
    job = gw.cron.get_job(jid)
    with gw.cron.transaction():
        gw.cron.delete_job(jid)
    gw.scheduler.wake()
    return JSONResponse({"deleted": jid, "name": job.name})


async def run_job(request: Request) -> Response:
    gw = gateway_of(request)
    jid = resolve_job(gw.cron, request.path_params["job_id"])
    handle = await gw.scheduler.run_now(jid)
    if not _flag(request, "wait"):
        return JSONResponse(
            {"run_id": handle.run_id, "job_id": jid, "status": "running", "run": None},
            status_code=202,
            headers={"location": f"/api/runs/{handle.run_id}"},
        )
    record = await handle.wait()  # shielded: a client that goes away does not cancel the run
    return JSONResponse(
        {"run_id": handle.run_id, "job_id": jid, "status": record.status, "run": run_json(record)}
    )


# ---- runs -----------------------------------------------------------------------------------


def runs_query(request: Request) -> tuple[list[RunRecord], int | None]:
    """A ledger page from ``?job=&status=&since=&limit=&before=``, and the next ``before``."""
    gw = gateway_of(request)
    q = request.query_params
    job = q.get("job") or None
    if job is not None and not _FULL_JOB_ID.match(job):  # a deleted job's id still filters
        job = resolve_job(gw.cron, job)
    statuses = [s for s in (q.get("status") or "").split(",") if s]
    for s in statuses:
        if s not in RUN_STATUSES:
            raise ApiError(
                422,
                "invalid",
                f"unknown status {s!r}; use {', '.join(RUN_STATUSES)}",
                field="status",
            )
    limit = int_query(request, "limit", 50, 1, 1000) or 50
    rows = gw.cron.runs(
        job_id=job,
        status=statuses or None,
        since=parse_since(q["since"], _now(gw)) if q.get("since") else None,
        before_seq=int_query(request, "before", None, 0, 2**62),
        limit=limit,
    )
    more = rows[-1].seq if len(rows) == limit else None
    return rows, more


async def list_runs(request: Request) -> Response:
    rows, more = runs_query(request)
    return JSONResponse({"runs": [run_json(r) for r in rows], "next_before": more})


async def get_run(request: Request) -> Response:
    run_id = request.path_params["run_id"]
    try:
        run = gateway_of(request).cron.get_run(run_id)
    except LookupError:
        raise ApiError(404, "run_not_found", f"no run {run_id!r} in the ledger") from None
    return JSONResponse(run_json(run))


# ---- sessions -------------------------------------------------------------------------------


def sessions_list(gw: Gateway, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Sessions, most recently changed first."""
    rows = [s for sid in gw.store.session_ids() if (s := session_summary(gw.store, sid))]
    rows.sort(key=lambda r: (-r["modified_at"], r["session_id"]))
    return rows[offset : offset + limit], len(rows)


async def list_sessions(request: Request) -> Response:
    offset = int_query(request, "offset", 0, 0, 2**31) or 0
    limit = int_query(request, "limit", 200, 1, 1000) or 200
    rows, total = await run_in_threadpool(sessions_list, gateway_of(request), offset, limit)
    return JSONResponse({"sessions": rows, "total": total})


def session_page(gw: Gateway, session_id: str, offset: int, limit: int) -> dict[str, Any]:
    session = gw.store.session(session_id)  # InvalidSessionIdError → 400
    snap = snapshot(session)  # SessionNotFoundError → 404
    t = snap.transcript
    page = t.entries[offset : offset + limit]
    return {
        "session": session_summary(gw.store, session_id),
        "header": t.header.data if t.header else None,
        "total": len(t.entries),
        "offset": offset,
        "limit": limit,
        "next_offset": offset + limit if offset + limit < len(t.entries) else None,
        "records": [record_json(offset + i, r) for i, r in enumerate(page)],
        "problems": [str(p) for p in t.problems],
        "torn_tail_bytes": len(t.torn_tail),
    }


async def get_session(request: Request) -> Response:
    offset = int_query(request, "offset", 0, 0, 2**31) or 0
    limit = int_query(request, "limit", DEFAULT_RECORDS_PAGE, 1, 5000) or DEFAULT_RECORDS_PAGE
    # Reading and parsing a transcript is O(its size): in a worker thread, never on the loop
    # that runs the gateway's turns (Invariant HTTP-I7).
    page = await run_in_threadpool(
        session_page, gateway_of(request), request.path_params["session_id"], offset, limit
    )
    return JSONResponse(page)


def verify_json(gw: Gateway, session_id: str) -> dict[str, Any]:
    session = gw.store.session(session_id)
    if not session.exists():
        raise SessionNotFoundError(session_id, session.path)
    events = tuple(dataclasses.asdict(e) for e in session.fence_events())
    return verify_transcript(session.path, events).to_json()


async def verify_session(request: Request) -> Response:
    report = await run_in_threadpool(
        verify_json, gateway_of(request), request.path_params["session_id"]
    )
    return JSONResponse(report)


async def session_events(request: Request) -> Response:
    gw = gateway_of(request)
    session = gw.store.session(request.path_params["session_id"])
    snap = await run_in_threadpool(snapshot, session)
    total = len(snap.transcript.entries)
    last_id = request.headers.get("last-event-id")
    if last_id is not None and last_id.strip().lstrip("-").isdigit():
        start = int(last_id) + 1  # Invariant HTTP-I4: resume right after the last record seen
    elif request.query_params.get("offset"):
        start = int_query(request, "offset", 0, 0, 2**31) or 0
    elif request.query_params.get("after_seq"):
        after = int_query(request, "after_seq", 0, 0, 2**62) or 0
        seqs = [(r.stamp or {}).get("seq") for r in snap.transcript.entries]
        start = next((i for i, s in enumerate(seqs) if isinstance(s, int) and s > after), total)
    else:
        start = max(0, total - (int_query(request, "tail", DEFAULT_TAIL, 0, 100000) or 0))
    return EventStream(session_tail(gw, session, snap, start), request.app.state.closing)


async def send_message(request: Request) -> Response:
    gw = gateway_of(request)
    session_id = request.path_params["session_id"]
    gw.store.session(session_id)  # refuse a path-like id before anything else
    body = await _body(request)
    if not isinstance(body, dict):
        raise ApiError(
            422, "invalid", "the body must be a JSON object {text, agent?}", field="body"
        )
    unknown = sorted(set(body) - {"text", "agent"})
    if unknown:
        raise ApiError(422, "invalid", f"unknown field {unknown[0]!r}", field=unknown[0])
    text: Any = body.get("text")  # checked by send, with the store's rules
    agent = body.get("agent")
    if agent is not None and (not isinstance(agent, str) or agent not in gw.agents):
        known = ", ".join(sorted(gw.agents))
        raise ApiError(
            422, "invalid", f"unknown agent {agent!r}; configured: {known}", field="agent"
        )
    # Invariant GATEWAY-I6: send checks the text by the store's rules (422 or 413 before anything
    # is written) and returns once the message is durable in the transcript.
    sent = await gw.send(session_id, text, agent)
    return JSONResponse(
        {"status": sent.status, "session_id": sent.session_id, "run_id": sent.run_id},
        status_code=202,
    )


_SESSION_SUFFIXES = ("/verify", "/events", "/messages")


async def path_like_session(request: Request) -> Response:
    """``/api/sessions/<anything with a slash>``: a path-like id is a 400, not a 404; a sound
    id reaches here only by a method its route does not take (a 405 naming the allowed ones)."""
    rest: str = request.path_params["rest"]
    for suffix in _SESSION_SUFFIXES:
        rest = rest.removesuffix(suffix)
    gateway_of(request).store.session(rest)  # raises InvalidSessionIdError for a path-like id
    raise ApiError(405, "method_not_allowed", f"{request.url.path} does not take {request.method}")


# ---- approvals ------------------------------------------------------------------------------

#: The request header a client names itself with when it decides (docs/design/approvals.md).
DECIDER_HEADER = "x-fencepost-decider"


async def list_approvals(request: Request) -> Response:
    gw = gateway_of(request)
    now = _now(gw)
    return JSONResponse(
        {
            "approvals": [p.to_json(now) for p in gw.approvals.pending()],
            "max_pending": gw.approvals.max_pending,
        }
    )


def decider_of(request: Request) -> str:
    """Who decides: the name the client gives in ``X-Fencepost-Decider`` (the dashboard's
    script sends ``dashboard``, the CLI ``cli:<user>``), else ``http``. Never from the body a
    model could have written, and never a name of the gateway's own (Invariant APPROVAL-I7)."""
    given = request.headers.get(DECIDER_HEADER)
    if given is None:
        return "http"
    try:
        return check_decider(given)
    except ConfigError as exc:
        raise ApiError(422, "invalid", exc.detail, field="X-Fencepost-Decider") from None


async def decide_approval(request: Request) -> Response:
    gw = gateway_of(request)
    approval_id = request.path_params["approval_id"]
    by = decider_of(request)
    body = await _body(request)
    if not isinstance(body, dict):
        raise ApiError(
            422, "invalid", 'the body must be a JSON object {"decision", "reason"?}', field="body"
        )
    unknown = sorted(set(body) - {"decision", "reason"})
    if unknown:
        raise ApiError(422, "invalid", f"unknown field {unknown[0]!r}", field=unknown[0])
    decision = body.get("decision")
    if decision not in ("approve", "deny"):
        raise ApiError(422, "invalid", 'decision must be "approve" or "deny"', field="decision")
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 2000:
        raise ApiError(
            422, "invalid", "reason must be text of at most 2000 characters", field="reason"
        )
    decided = await gw.approvals.decide(
        approval_id, approved=decision == "approve", by=by, reason=reason
    )
    return JSONResponse(decided.to_json())


async def events(request: Request) -> Response:
    return EventStream(gateway_events(gateway_of(request)), request.app.state.closing)


def api_routes() -> list[Route]:
    return [
        Route("/api/health", health, methods=["GET"]),
        Route("/api/reload", reload_config, methods=["POST"]),
        Route("/api/mcp", mcp_servers, methods=["GET"]),
        Route("/api/jobs", list_jobs, methods=["GET"]),
        Route("/api/jobs", create_job, methods=["POST"]),
        Route("/api/jobs/{job_id}", get_job, methods=["GET"]),
        Route("/api/jobs/{job_id}", patch_job, methods=["PATCH"]),
        Route("/api/jobs/{job_id}", delete_job, methods=["DELETE"]),
        Route("/api/jobs/{job_id}/run", run_job, methods=["POST"]),
        Route("/api/runs", list_runs, methods=["GET"]),
        Route("/api/runs/{run_id}", get_run, methods=["GET"]),
        Route("/api/sessions", list_sessions, methods=["GET"]),
        Route("/api/sessions/{session_id}", get_session, methods=["GET"]),
        Route("/api/sessions/{session_id}/verify", verify_session, methods=["GET"]),
        Route("/api/sessions/{session_id}/events", session_events, methods=["GET"]),
        Route("/api/sessions/{session_id}/messages", send_message, methods=["POST"]),
        Route(
            "/api/sessions/{rest:path}",
            path_like_session,
            methods=["GET", "POST"],
            include_in_schema=False,
        ),
        Route("/api/approvals", list_approvals, methods=["GET"]),
        Route("/api/approvals/{approval_id}", decide_approval, methods=["POST"]),
        Route("/api/events", events, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
