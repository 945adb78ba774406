"""The OpenAPI 3.1 document, written as data (served at ``/openapi.json``).

Kept complete by a test: every route the app serves is in ``paths`` with its methods
(Invariant HTTP-I5).
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_HTML = {"description": "An HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}
_SSE = {
    "description": "A text/event-stream (server-sent events)",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}
_AUTH_ERRORS = {
    "401": _error("A token is configured and the request did not carry it"),
    "403": _error("Not a loopback client and no token configured, or a cookie without X-Fencepost"),
}


def _param(name: str, where: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": description,
    }


_JOB_ID = _param("job_id", "path", {"type": "string"}, "A job id, or a unique prefix of it")
_RUN_ID = _param("run_id", "path", {"type": "string"}, "A run id from the ledger")
_SESSION_ID = _param(
    "session_id",
    "path",
    {"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$"},
    "A session id (path-like ids are refused with 400)",
)
_INT = {"type": "integer", "minimum": 0}


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    params: list[dict[str, Any]] | None = None,
    body: str | None = None,
    tag: str = "api",
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": {**responses}}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    if tag == "api":
        op["responses"].update(_AUTH_ERRORS)
    return op


_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "examples": ["invalid", "job_not_found"]},
                    "message": {"type": "string"},
                    "field": {"type": "string", "description": "The request field at fault"},
                },
            }
        },
    },
    "Schedule": {
        "type": "object",
        "required": ["kind"],
        "properties": {
            "kind": {"enum": ["at", "every", "cron"]},
            "at": {"type": "string", "description": "20m, +2h or an ISO 8601 time (kind at)"},
            "every": {
                "type": ["string", "number"],
                "description": "30m, 1h or seconds (kind every)",
            },
            "expr": {"type": "string", "description": "5-field cron expression (kind cron)"},
            "tz": {"type": "string", "description": "IANA time zone for cron and a naive at"},
            "stagger": {
                "type": ["string", "number"],
                "description": "Offset for top-of-hour cron jobs; 0 = exact",
            },
        },
    },
    "Payload": {
        "type": "object",
        "required": ["text"],
        "properties": {
            "kind": {"enum": ["agent_turn", "system_event"], "default": "agent_turn"},
            "text": {"type": "string"},
        },
    },
    "JobInput": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "agent", "schedule", "payload"],
        "properties": {
            "name": {"type": "string"},
            "agent": {"type": "string"},
            "schedule": _ref("Schedule"),
            "payload": _ref("Payload"),
            "target": {"type": "string", "description": "isolated | main | session:<id>"},
            "model": {"type": ["string", "null"], "description": "provider/model override"},
            "fallbacks": {"type": "array", "items": {"type": "string"}},
            "timeout_s": {"type": ["number", "string"]},
            "delivery": {
                "description": "none | session:<id> | a webhook URL | {kind, to}",
                "oneOf": [{"type": "string"}, {"type": "object"}, {"type": "null"}],
            },
            "delete_after_run": {"type": "boolean"},
            "enabled": {"type": "boolean"},
        },
    },
    "JobPatch": {
        "description": "Any JobInput fields; a new schedule recomputes the next run",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string"},
            "agent": {"type": "string"},
            "schedule": _ref("Schedule"),
            "payload": _ref("Payload"),
            "target": {"type": "string"},
            "model": {"type": ["string", "null"]},
            "fallbacks": {"type": "array", "items": {"type": "string"}},
            "timeout_s": {"type": ["number", "string"]},
            "delivery": {"oneOf": [{"type": "string"}, {"type": "object"}, {"type": "null"}]},
            "delete_after_run": {"type": "boolean"},
            "enabled": {"type": "boolean"},
        },
    },
    "JobState": {
        "type": "object",
        "properties": {
            k: {"type": ["string", "integer", "null"]}
            for k in (
                "next_run_at",
                "due_at",
                "retry_at",
                "retry_reason",
                "backoff_until",
                "consecutive_errors",
                "last_run_id",
                "last_status",
                "last_run_at",
                "running_run_id",
                "disabled_reason",
            )
        },
    },
    "Job": {
        "type": "object",
        "required": ["job_id", "name", "agent", "schedule", "payload", "state", "run_counts"],
        "properties": {
            "job_id": {"type": "string"},
            "name": {"type": "string"},
            "agent": {"type": "string"},
            "enabled": {"type": "boolean"},
            "schedule": {"type": "object"},
            "schedule_text": {"type": "string"},
            "target": {"type": "string"},
            "payload": _ref("Payload"),
            "model": {"type": ["string", "null"]},
            "fallbacks": {"type": "array", "items": {"type": "string"}},
            "timeout_s": {"type": "number"},
            "delivery": {"type": "object"},
            "delete_after_run": {"type": "boolean"},
            "created_at": {"type": ["string", "null"]},
            "updated_at": {"type": ["string", "null"]},
            "state": _ref("JobState"),
            "run_counts": {
                "type": "object",
                "description": "Runs by status and `runs` the total, unchanged by ledger pruning",
                "properties": {"runs": {"type": "integer"}},
                "required": ["runs"],
                "additionalProperties": {"type": "integer"},
            },
        },
    },
    "Run": {
        "type": "object",
        "required": ["run_id", "job_id", "status", "seq"],
        "properties": {
            "run_id": {"type": "string"},
            "job_id": {"type": "string"},
            "job_name": {"type": "string"},
            "scheduled_at": {"type": "string"},
            "trigger": {"enum": ["schedule", "catchup", "retry", "manual"]},
            "attempt": {"type": "integer"},
            "status": {"type": "string"},
            "recorded_at": {"type": "string"},
            "started_at": {"type": ["string", "null"]},
            "ended_at": {"type": ["string", "null"]},
            "duration_s": {"type": ["number", "null"]},
            "error_kind": {"type": ["string", "null"]},
            "error_message": {"type": ["string", "null"]},
            "session_id": {"type": ["string", "null"]},
            "model": {"type": ["string", "null"]},
            "usage": {"type": ["object", "null"]},
            "reply": {"type": ["string", "null"]},
            "delivery_status": {"type": ["string", "null"]},
            "delivery_error": {"type": ["string", "null"]},
            "fence": {
                "type": ["object", "null"],
                "description": "Takeover: reason, description, epoch_held, epoch_seen",
            },
            "seq": {"type": "integer"},
        },
    },
    "RunStarted": {
        "type": "object",
        "required": ["run_id", "job_id", "status"],
        "properties": {
            "run_id": {"type": "string"},
            "job_id": {"type": "string"},
            "status": {"type": "string"},
            "run": {"oneOf": [_ref("Run"), {"type": "null"}]},
        },
    },
    "Record": {
        "type": "object",
        "description": "A transcript record and who wrote it (from its fencepost stamp)",
        "properties": {
            "index": {"type": "integer", "description": "Position among the records; SSE id"},
            "line": {"type": "integer"},
            "offset": {"type": "integer"},
            "id": {"type": ["string", "null"]},
            "parentId": {"type": ["string", "null"]},
            "type": {"type": "string"},
            "timestamp": {"type": ["string", "null"]},
            "writer": {"type": ["string", "null"], "description": "Writer kind; null: no stamp"},
            "run_id": {"type": ["string", "null"]},
            "epoch": {"type": ["integer", "null"]},
            "seq": {"type": ["integer", "null"]},
            "summary": {"type": "string"},
            "data": {"type": "object", "description": "The record as written"},
        },
    },
    "SessionSummary": {
        "type": "object",
        "properties": {
            "session_id": {"type": "string"},
            "size_bytes": {"type": "integer"},
            "modified_at": {"type": "number"},
            "last_type": {"type": ["string", "null"]},
            "last_writer": {"type": ["string", "null"]},
            "last_run_id": {"type": ["string", "null"]},
            "last_seq": {"type": ["integer", "null"]},
            "epoch": {"type": "integer"},
            "lease_holder": {"type": ["object", "null"]},
        },
    },
    "SessionPage": {
        "type": "object",
        "properties": {
            "session": _ref("SessionSummary"),
            "header": {"type": ["object", "null"]},
            "total": {"type": "integer"},
            "offset": {"type": "integer"},
            "limit": {"type": "integer"},
            "next_offset": {"type": ["integer", "null"]},
            "records": {"type": "array", "items": _ref("Record")},
            "problems": {"type": "array", "items": {"type": "string"}},
            "torn_tail_bytes": {"type": "integer"},
        },
    },
    "VerifyReport": {
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "path": {"type": "string"},
            "size_bytes": {"type": "integer"},
            "lines": {"type": "integer"},
            "entries": {"type": "integer"},
            "protocol_records": {"type": "integer"},
            "adopted_only": {"type": "boolean"},
            "writers": {"type": "object", "additionalProperties": {"type": "integer"}},
            "problems": {"type": "array", "items": {"type": "object"}},
            "fence_events": {"type": "array", "items": {"type": "object"}},
        },
    },
    "MessageInput": {
        "type": "object",
        "additionalProperties": False,
        "required": ["text"],
        "properties": {"text": {"type": "string"}, "agent": {"type": "string"}},
    },
    "MessageAccepted": {
        "type": "object",
        "required": ["status", "session_id"],
        "properties": {
            "status": {"enum": ["started", "queued", "steered"]},
            "session_id": {"type": "string"},
            "run_id": {"type": ["string", "null"]},
        },
    },
    "Health": {
        "type": "object",
        "properties": {
            "status": {"const": "ok"},
            "version": {"type": "string"},
            "started_at": {"type": ["string", "null"]},
            "uptime_s": {"type": ["number", "null"]},
            "scheduler": {"type": "object"},
            "gateway": {"type": "object"},
            "cron": {"type": "object"},
            "agents": {"type": "array", "items": {"type": "string"}},
            "store": {"type": "object", "description": "open sessions against the bound"},
            "resources": {
                "type": "object",
                "description": "watermarks: descriptors, memory, threads, disk (GATEWAY-I5)",
                "properties": {
                    "process": {"type": ["object", "null"]},
                    "state": {"type": "object"},
                    "warnings": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "check": {"type": "string"},
                                "status": {"const": "warn"},
                                "detail": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}


def _array(name: str, key: str) -> dict[str, Any]:
    return {"type": "object", "properties": {key: {"type": "array", "items": _ref(name)}}}


def openapi_document(version: str) -> dict[str, Any]:
    """The API as OpenAPI 3.1 (dashboard pages are listed too, tagged ``dashboard``)."""
    not_found = _error("Unknown job, run or session")
    bad_id = _error("A malformed or path-like id")
    invalid = _error("A field is invalid; error.field names it")
    paths: dict[str, Any] = {
        "/api/health": {
            "get": _op("Gateway health and statistics", {"200": _json(_ref("Health"), "Health")})
        },
        "/api/jobs": {
            "get": _op(
                "List jobs with next run and last status",
                {"200": _json(_array("Job", "jobs"), "Jobs")},
            ),
            "post": _op(
                "Add a job (validated now, not when it fires)",
                {
                    "201": _json(_ref("Job"), "The new job"),
                    "400": _error("Not JSON"),
                    "422": invalid,
                },
                body="JobInput",
            ),
        },
        "/api/jobs/{job_id}": {
            "get": _op(
                "One job",
                {"200": _json(_ref("Job"), "The job"), "400": bad_id, "404": not_found},
                params=[_JOB_ID],
            ),
            "patch": _op(
                "Change a job; enabled=true resets errors and backoff",
                {
                    "200": _json(_ref("Job"), "The changed job"),
                    "400": bad_id,
                    "404": not_found,
                    "422": invalid,
                },
                params=[_JOB_ID],
                body="JobPatch",
            ),
            "delete": _op(
                "Remove a job (its ledger rows stay)",
                {"200": _json({"type": "object"}, "Removed"), "400": bad_id, "404": not_found},
                params=[_JOB_ID],
            ),
        },
        "/api/jobs/{job_id}/run": {
            "post": _op(
                "Run a job now (trigger manual)",
                {
                    "200": _json(
                        _ref("RunStarted"), "wait=true: the run finished; run is its ledger row"
                    ),
                    "202": _json(_ref("RunStarted"), "The run started"),
                    "404": not_found,
                    "409": _error("The job has a run in flight"),
                },
                params=[
                    _JOB_ID,
                    _param(
                        "wait",
                        "query",
                        {"type": "boolean"},
                        "Wait for the run and return its ledger row",
                    ),
                ],
            )
        },
        "/api/runs": {
            "get": _op(
                "Page the run ledger, newest first",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "runs": {"type": "array", "items": _ref("Run")},
                                "next_before": {"type": ["integer", "null"]},
                            },
                        },
                        "A page",
                    ),
                    "422": invalid,
                },
                params=[
                    _param("job", "query", {"type": "string"}, "Only this job (id or prefix)"),
                    _param("status", "query", {"type": "string"}, "Comma-separated statuses"),
                    _param(
                        "since", "query", {"type": "string"}, "Scheduled at or after: 2h, 1d or ISO"
                    ),
                    _param(
                        "limit",
                        "query",
                        {"type": "integer", "minimum": 1, "maximum": 1000},
                        "Rows per page [50]",
                    ),
                    _param(
                        "before", "query", _INT, "Continue: rows with seq below this (next_before)"
                    ),
                ],
            )
        },
        "/api/runs/{run_id}": {
            "get": _op(
                "One ledger row",
                {"200": _json(_ref("Run"), "The run"), "404": not_found},
                params=[_RUN_ID],
            )
        },
        "/api/sessions": {
            "get": _op(
                "List sessions, most recently changed first",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "sessions": {"type": "array", "items": _ref("SessionSummary")},
                                "total": {"type": "integer"},
                            },
                        },
                        "Sessions",
                    )
                },
                params=[
                    _param("offset", "query", _INT, "Skip this many [0]"),
                    _param(
                        "limit",
                        "query",
                        {"type": "integer", "minimum": 1, "maximum": 1000},
                        "At most [200]",
                    ),
                ],
            )
        },
        "/api/sessions/{session_id}": {
            "get": _op(
                "A page of a transcript's records, with who wrote each",
                {"200": _json(_ref("SessionPage"), "Records"), "400": bad_id, "404": not_found},
                params=[
                    _SESSION_ID,
                    _param("offset", "query", _INT, "First record index [0]"),
                    _param(
                        "limit",
                        "query",
                        {"type": "integer", "minimum": 1, "maximum": 5000},
                        "Records [500]",
                    ),
                ],
            )
        },
        "/api/sessions/{session_id}/verify": {
            "get": _op(
                "Verify format, stamps and hash chain; list fence events",
                {"200": _json(_ref("VerifyReport"), "The report"), "400": bad_id, "404": not_found},
                params=[_SESSION_ID],
            )
        },
        "/api/sessions/{session_id}/events": {
            "get": _op(
                "Live tail (SSE): event record (id = record index), ready, reset",
                {"200": _SSE, "400": bad_id, "404": not_found},
                params=[
                    _SESSION_ID,
                    _param("offset", "query", _INT, "First record index to send"),
                    _param("after_seq", "query", _INT, "Send records after this stamp seq"),
                    _param("tail", "query", _INT, "Send the last N records first [50]"),
                    _param(
                        "Last-Event-ID",
                        "header",
                        {"type": "string"},
                        "Resume after this record index",
                    ),
                ],
            )
        },
        "/api/sessions/{session_id}/messages": {
            "post": _op(
                "Send a user message: steers the running turn or starts/queues one",
                {"202": _json(_ref("MessageAccepted"), "Accepted"), "400": bad_id, "422": invalid},
                params=[_SESSION_ID],
                body="MessageInput",
            )
        },
        "/api/events": {
            "get": _op(
                "Gateway events (SSE): turn_started, turn_finished, transcript", {"200": _SSE}
            )
        },
        "/openapi.json": {
            "get": _op("This document", {"200": _json({"type": "object"}, "OpenAPI 3.1")})
        },
        "/": {"get": _op("Dashboard: jobs", {"200": _HTML}, tag="dashboard")},
        "/runs": {"get": _op("Dashboard: runs", {"200": _HTML}, tag="dashboard")},
        "/sessions": {"get": _op("Dashboard: sessions", {"200": _HTML}, tag="dashboard")},
        "/sessions/{session_id}": {
            "get": _op(
                "Dashboard: a transcript tree with writers and fence events",
                {"200": _HTML, "404": _HTML},
                params=[_SESSION_ID],
                tag="dashboard",
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fencepost gateway",
            "version": version,
            "description": "Jobs, runs and sessions of a fencepost gateway (docs/design/http.md).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {}],
        "paths": paths,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Required when the gateway has a token (any non-loopback bind)",
                }
            },
        },
    }
