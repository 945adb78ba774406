"""The OpenAPI 3.1 document, written as data (served at ``/openapi.json``).

Kept complete by tests: every route the app serves is in ``paths`` with its methods (Invariant
HTTP-I5), and every status an operation answers is in its ``responses`` (Invariant HTTP-I10). Error
statuses are not written here: each operation names the error codes it can raise, and the status,
description and ``error.code`` values come from ``_errors.ERROR_CODES``, the table the handlers,
the guard and ``translate`` use.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._errors import ERROR_CODES

__all__ = ["BODY_ERRORS", "GUARD_ERRORS", "UNSAFE_ERRORS", "openapi_document"]

#: The guard answers before any handler (Invariant HTTP-I1): every operation can answer these.
GUARD_ERRORS = ("unauthorized", "not_loopback")
#: A change without a bearer token also needs JSON or X-Fencepost (Invariant HTTP-I6).
UNSAFE_ERRORS = ("cross_site",)
#: Every operation that reads a JSON body: not JSON (or nested too deep), or too large.
BODY_ERRORS = ("bad_json", "body_too_large")

_UNSAFE_METHODS = frozenset({"post", "put", "patch", "delete"})


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_HTML = {"description": "An HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}
_SSE = {
    "description": "A text/event-stream (server-sent events)",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}
_REDIRECT = {
    "description": "With a token: ?token= traded for the dashboard cookie; Location is this page "
    "without it",
    "headers": {"Location": {"schema": {"type": "string"}}},
}


def _error_responses(codes: Iterable[str], *, html: bool = False) -> dict[str, Any]:
    """One response per status among ``codes``, from ``ERROR_CODES``; the JSON body's
    ``error.code`` is one of the codes with that status (an HTML page for dashboard errors)."""
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(ERROR_CODES[code].status, []).append(code)
    out: dict[str, Any] = {}
    for status, names in sorted(by_status.items()):
        description = "; ".join(f"{name}: {ERROR_CODES[name].description}" for name in names)
        if html:
            out[str(status)] = {**_HTML, "description": f"An HTML page. {description}"}
            continue
        schema = {
            "allOf": [
                _ref("Error"),
                {"properties": {"error": {"properties": {"code": {"enum": names}}}}},
            ]
        }
        out[str(status)] = _json(schema, description)
    return out


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
_APPROVAL_ID = _param("approval_id", "path", {"type": "string"}, "An approval request's id")
#: Who decides, as the approving client names itself (docs/design/approvals.md, APPROVAL-I7).
_DECIDER = _param(
    "X-Fencepost-Decider",
    "header",
    {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,31}(:[A-Za-z0-9._@-]{1,64})?$"},
    "Who decides: the dashboard sends 'dashboard', the CLI 'cli:<user>'; absent: 'http'. "
    "timeout, cancelled and policy:* are the gateway's own and refused",
)
_SESSION_ID = _param(
    "session_id",
    "path",
    {"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$"},
    "A session id (path-like ids are refused with 400)",
)


def _int_param(
    name: str, description: str, *, lo: int = 0, hi: int | None = None
) -> dict[str, Any]:
    """An integer query parameter read by ``_api.int_query``: out of [lo, hi] is a 422, and an
    empty value means the default (HTML forms send empty fields)."""
    schema: dict[str, Any] = {"type": "integer", "minimum": lo}
    if hi is not None:
        schema["maximum"] = hi
    return {**_param(name, "query", schema, description), "allowEmptyValue": True}


def _op(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    errors: Iterable[str] = (),
    params: list[dict[str, Any]] | None = None,
    body: str | None = None,
    tag: str = "api",
) -> dict[str, Any]:
    """One operation. ``operation_id`` is its handler's name; ``errors`` are the error codes its
    handler raises (the guard's are added by ``openapi_document``)."""
    codes = list(errors)
    if body is not None:
        codes = [*BODY_ERRORS, *codes]
    op: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "responses": {**responses, **_error_responses(codes, html=tag == "dashboard")},
    }
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return op


def _link(operation_id: str, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link: the response's ``$response.body#/<pointer>`` feeds ``operation_id``."""
    return {
        "operationId": operation_id,
        "parameters": {name: f"$response.body#/{pointer}" for name, pointer in parameters.items()},
    }


def _with_guard(paths: dict[str, Any]) -> dict[str, Any]:
    """Every operation answers the guard's refusals, JSON on every path (HTTP-I1, HTTP-I6)."""
    for ops in paths.values():
        for method, op in ops.items():
            codes = GUARD_ERRORS + (UNSAFE_ERRORS if method in _UNSAFE_METHODS else ())
            op["responses"] = {**op["responses"], **_error_responses(codes)}
            if "dashboard" in op["tags"]:
                op["responses"]["303"] = _REDIRECT
            op["responses"] = dict(sorted(op["responses"].items()))
    return paths


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
                    "field": {
                        "type": "string",
                        "description": "The request field (or config key) at fault",
                    },
                    "file": {"type": "string", "description": "config_invalid: the file"},
                    "line": {"type": "integer", "description": "config_invalid: the line"},
                    "by": {"type": "string", "description": "approval_decided: who decided"},
                    "approved": {
                        "type": "boolean",
                        "description": "approval_decided: how it was decided",
                    },
                },
            }
        },
    },
    "ReloadResult": {
        "type": "object",
        "required": [
            "changed",
            "applied",
            "restart_required",
            "agents_added",
            "agents_removed",
            "agents_changed",
        ],
        "properties": {
            "path": {"type": ["string", "null"], "description": "The config file read"},
            "changed": {"type": "boolean"},
            "applied": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Changed keys now in force",
            },
            "restart_required": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Changed keys not applied: they need a restart",
            },
            "agents_added": {"type": "array", "items": {"type": "string"}},
            "agents_removed": {"type": "array", "items": {"type": "string"}},
            "agents_changed": {"type": "array", "items": {"type": "string"}},
            "demo_jobs_removed": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Demo jobs removed: the new config is not demo mode's",
            },
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
            "expr": {
                "type": "string",
                "description": "5-field cron expression or @hourly, @daily, @weekly, @monthly, "
                "@yearly (kind cron)",
            },
            "tz": {
                "type": "string",
                "description": "IANA time zone for cron and an at time without an offset; "
                "refused with every, a relative at or an at with an offset",
            },
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
            "on_ask": {
                "enum": ["deny", "wait", None],
                "description": "A tool call that needs approval: deny at once, or wait "
                "[approvals] unattended_timeout_s; null: [approvals] unattended",
            },
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
            "on_ask": {"enum": ["deny", "wait", None]},
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
            "on_ask": {"enum": ["deny", "wait", None]},
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
            "problems": {
                "type": "array",
                "items": {"type": "object"},
                "description": "Failures: problems at or after the last operator adoption",
            },
            "adopted_problems": {
                "type": "array",
                "items": {"type": "object"},
                "description": "Problems before the last `sessions adopt`; not failures",
            },
            "adoptions": {
                "type": "array",
                "items": {"type": "object"},
                "description": "Operator adoptions: line, note, by, records that left the path",
            },
            "fence_events": {"type": "array", "items": {"type": "object"}},
        },
    },
    "MessageInput": {
        "type": "object",
        "additionalProperties": False,
        "required": ["text"],
        "properties": {
            "text": {"type": "string"},
            "agent": {"type": ["string", "null"], "description": "null: the default agent"},
        },
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
    "PendingApproval": {
        "type": "object",
        "description": "A tool call waiting for an operator (docs/design/approvals.md)",
        "required": [
            "approval_id",
            "session_id",
            "run_id",
            "agent",
            "tool",
            "summary",
            "details",
            "requested_at",
            "expires_at",
            "age_s",
            "expires_in_s",
        ],
        "properties": {
            "approval_id": {"type": "string"},
            "session_id": {"type": "string"},
            "run_id": {"type": "string"},
            "agent": {"type": "string"},
            "tool": {"type": "string"},
            "summary": {"type": "string", "description": "What would happen (exec: the command)"},
            "details": {"type": "object", "description": "exec: argv, cwd, shell"},
            "requested_at": {"type": "string"},
            "expires_at": {"type": "string", "description": "Unanswered by then: denied"},
            "age_s": {"type": "number"},
            "expires_in_s": {"type": "number"},
        },
    },
    "ApprovalList": {
        "type": "object",
        "required": ["approvals", "max_pending"],
        "properties": {
            "approvals": {"type": "array", "items": _ref("PendingApproval")},
            "max_pending": {"type": "integer", "description": "[approvals] max_pending"},
        },
    },
    "ApprovalDecisionInput": {
        "type": "object",
        "additionalProperties": False,
        "required": ["decision"],
        "properties": {
            "decision": {"enum": ["approve", "deny"]},
            "reason": {"type": "string", "maxLength": 2000},
        },
    },
    "ApprovalDecided": {
        "type": "object",
        "required": [
            "approval_id",
            "session_id",
            "run_id",
            "agent",
            "tool",
            "decision",
            "approved",
            "by",
            "reason",
            "decided_at",
            "recorded",
        ],
        "properties": {
            "approval_id": {"type": "string"},
            "session_id": {"type": "string"},
            "run_id": {"type": "string"},
            "agent": {"type": "string"},
            "tool": {"type": "string"},
            "decision": {"enum": ["approve", "deny"]},
            "approved": {"type": "boolean"},
            "by": {"type": "string", "description": "http, dashboard or cli:<user>"},
            "reason": {"type": "string"},
            "decided_at": {"type": "string"},
            "recorded": {"const": True, "description": "The decision is in the transcript"},
        },
    },
    "McpServer": {
        "type": "object",
        "required": ["name", "transport", "target", "enabled", "state"],
        "properties": {
            "name": {"type": "string"},
            "transport": {"enum": ["stdio", "http"]},
            "target": {"type": "string", "description": "The command line or the URL"},
            "enabled": {"type": "boolean"},
            "state": {"enum": ["stopped", "starting", "running", "backoff", "disabled"]},
            "tools": {
                "type": ["integer", "null"],
                "description": "Tools in the last listing (kept while stopped)",
            },
            "started_at": {"type": ["string", "null"]},
            "starts": {"type": "integer"},
            "crashes": {"type": "integer"},
            "failures": {"type": "integer", "description": "Consecutive failed starts/crashes"},
            "last_error": {"type": ["string", "null"]},
            "last_error_at": {"type": ["string", "null"]},
            "retry_in_s": {
                "type": ["number", "null"],
                "description": "Backoff: seconds until the next start is allowed",
            },
            "in_flight": {"type": "integer"},
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
            "approvals": {"type": "object", "description": "pending, decided, timed out"},
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


#: The bounds ``_api`` and ``_views`` give ``int_query`` for positions and sequence numbers.
_MAX_INDEX = 2**31
_MAX_SEQ = 2**62

_RUNS_QUERY = [
    _param("job", "query", {"type": "string"}, "Only this job (id or prefix)"),
    _param("status", "query", {"type": "string"}, "Comma-separated statuses"),
    _param("since", "query", {"type": "string"}, "Scheduled at or after: 2h, 1d or ISO"),
    _int_param("limit", "Rows per page [50]", lo=1, hi=1000),
    _int_param("before", "Continue: rows with seq below this (next_before)", hi=_MAX_SEQ),
]
#: What an operation on one job can answer, besides its own.
_ONE_JOB = ("invalid_job_id", "job_not_found")
#: What an operation on one session can answer, besides its own.
_ONE_SESSION = ("invalid_session_id", "session_not_found")
#: A created job feeds every operation on one job (stateful tests follow these links).
_JOB_LINKS = {
    "GetJob": _link("get_job", job_id="job_id"),
    "PatchJob": _link("patch_job", job_id="job_id"),
    "RunJob": _link("run_job", job_id="job_id"),
    "DeleteJob": _link("delete_job", job_id="job_id"),
}


def openapi_document(version: str) -> dict[str, Any]:
    """The API as OpenAPI 3.1 (dashboard pages are listed too, tagged ``dashboard``)."""
    run_started = {"GetRun": _link("get_run", run_id="run_id")}
    paths: dict[str, Any] = {
        "/api/health": {
            "get": _op(
                "health", "Gateway health and statistics", {"200": _json(_ref("Health"), "Health")}
            )
        },
        "/api/reload": {
            "post": _op(
                "reload_config",
                "Read the config again: apply it without dropping a turn, or refuse it",
                {"200": _json(_ref("ReloadResult"), "Applied (or nothing changed)")},
                errors=["config_invalid"],
            )
        },
        "/api/mcp": {
            "get": _op(
                "mcp_servers",
                "MCP servers: configuration and state (starts nothing)",
                {"200": _json(_array("McpServer", "servers"), "Servers")},
            )
        },
        "/api/jobs": {
            "get": _op(
                "list_jobs",
                "List jobs with next run and last status",
                {"200": _json(_array("Job", "jobs"), "Jobs")},
            ),
            "post": _op(
                "create_job",
                "Add a job (validated now, not when it fires)",
                {"201": {**_json(_ref("Job"), "The new job"), "links": _JOB_LINKS}},
                errors=["invalid"],
                body="JobInput",
            ),
        },
        "/api/jobs/{job_id}": {
            "get": _op(
                "get_job",
                "One job",
                {"200": _json(_ref("Job"), "The job")},
                errors=_ONE_JOB,
                params=[_JOB_ID],
            ),
            "patch": _op(
                "patch_job",
                "Change a job; enabled=true resets errors and backoff",
                {"200": _json(_ref("Job"), "The changed job")},
                errors=[*_ONE_JOB, "invalid"],
                params=[_JOB_ID],
                body="JobPatch",
            ),
            "delete": _op(
                "delete_job",
                "Remove a job (its ledger rows stay)",
                {"200": _json({"type": "object"}, "Removed")},
                errors=_ONE_JOB,
                params=[_JOB_ID],
            ),
        },
        "/api/jobs/{job_id}/run": {
            "post": _op(
                "run_job",
                "Run a job now (trigger manual)",
                {
                    "200": {
                        **_json(
                            _ref("RunStarted"), "wait=true: the run finished; run is its ledger row"
                        ),
                        "links": run_started,
                    },
                    "202": {
                        **_json(_ref("RunStarted"), "The run started"),
                        "links": run_started,
                    },
                },
                errors=[*_ONE_JOB, "job_running"],
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
                "list_runs",
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
                },
                errors=[*_ONE_JOB, "invalid"],
                params=_RUNS_QUERY,
            )
        },
        "/api/runs/{run_id}": {
            "get": _op(
                "get_run",
                "One ledger row",
                {
                    "200": {
                        **_json(_ref("Run"), "The run"),
                        "links": {"GetJob": _link("get_job", job_id="job_id")},
                    }
                },
                errors=["run_not_found"],
                params=[_RUN_ID],
            )
        },
        "/api/sessions": {
            "get": _op(
                "list_sessions",
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
                errors=["invalid"],
                params=[
                    _int_param("offset", "Skip this many [0]", hi=_MAX_INDEX),
                    _int_param("limit", "At most [200]", lo=1, hi=1000),
                ],
            )
        },
        "/api/sessions/{session_id}": {
            "get": _op(
                "get_session",
                "A page of a transcript's records, with who wrote each",
                {"200": _json(_ref("SessionPage"), "Records")},
                errors=[*_ONE_SESSION, "invalid"],
                params=[
                    _SESSION_ID,
                    _int_param("offset", "First record index [0]", hi=_MAX_INDEX),
                    _int_param("limit", "Records [500]", lo=1, hi=5000),
                ],
            )
        },
        "/api/sessions/{session_id}/verify": {
            "get": _op(
                "verify_session",
                "Verify format, stamps and hash chain; list fence events",
                {"200": _json(_ref("VerifyReport"), "The report")},
                errors=_ONE_SESSION,
                params=[_SESSION_ID],
            )
        },
        "/api/sessions/{session_id}/events": {
            "get": _op(
                "session_events",
                "Live tail (SSE): event record (id = record index), ready, reset",
                {"200": _SSE},
                errors=[*_ONE_SESSION, "invalid"],
                params=[
                    _SESSION_ID,
                    _int_param("offset", "First record index to send", hi=_MAX_INDEX),
                    _int_param("after_seq", "Send records after this stamp seq", hi=_MAX_SEQ),
                    _int_param("tail", "Send the last N records first [50]", hi=100000),
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
                "send_message",
                "Send a user message: steers the running turn or starts/queues one",
                {
                    "202": {
                        **_json(_ref("MessageAccepted"), "Accepted"),
                        "links": {
                            "GetSession": _link("get_session", session_id="session_id"),
                            "VerifySession": _link("verify_session", session_id="session_id"),
                        },
                    }
                },
                errors=[
                    "invalid_session_id",
                    "invalid",
                    "record_too_large",
                    "outside_protocol_change",
                    "session_takeover",
                    "lock_timeout",
                    "session_busy",
                ],
                params=[_SESSION_ID],
                body="MessageInput",
            )
        },
        "/api/approvals": {
            "get": _op(
                "list_approvals",
                "Tool calls waiting for an operator's approval, oldest first",
                {"200": _json(_ref("ApprovalList"), "Pending requests")},
            )
        },
        "/api/approvals/{approval_id}": {
            "post": _op(
                "decide_approval",
                "Approve or deny a waiting tool call; the decision is recorded in the transcript",
                {"200": _json(_ref("ApprovalDecided"), "Decided and recorded")},
                errors=[
                    "approval_not_found",
                    "approval_decided",
                    "invalid",
                    "outside_protocol_change",
                    "lock_timeout",
                ],
                params=[_APPROVAL_ID, _DECIDER],
                body="ApprovalDecisionInput",
            )
        },
        "/api/events": {
            "get": _op(
                "events",
                "Gateway events (SSE): turn_started, turn_finished, transcript, "
                "approval_requested, approval_decided",
                {"200": _SSE},
            )
        },
        "/openapi.json": {
            "get": _op(
                "openapi", "This document", {"200": _json({"type": "object"}, "OpenAPI 3.1")}
            )
        },
        "/": {"get": _op("jobs_page", "Dashboard: jobs", {"200": _HTML}, tag="dashboard")},
        "/runs": {
            "get": _op(
                "runs_page",
                "Dashboard: runs",
                {"200": _HTML},
                errors=[*_ONE_JOB, "invalid"],
                params=_RUNS_QUERY,
                tag="dashboard",
            )
        },
        "/sessions": {
            "get": _op(
                "sessions_page",
                "Dashboard: sessions",
                {"200": _HTML},
                errors=["invalid"],
                params=[_int_param("offset", "Skip this many [0]", hi=_MAX_INDEX)],
                tag="dashboard",
            )
        },
        "/sessions/{session_id}": {
            "get": _op(
                "session_page",
                "Dashboard: the transcript as a thread (200 records a page), writers, fence events",
                {"200": _HTML},
                errors=[*_ONE_SESSION, "invalid"],
                params=[
                    _SESSION_ID,
                    _int_param("offset", "First record shown [the newest page]", hi=_MAX_INDEX),
                    _param("open", "query", {"type": "string"}, "A side branch shown unfolded"),
                ],
                tag="dashboard",
            )
        },
    }
    _with_guard(paths)
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
