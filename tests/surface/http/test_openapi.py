"""The OpenAPI document covers every route the app serves (HTTP-I5) and every status each
operation answers (HTTP-I10; the generated requests are in test_schemathesis.py)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from starlette.routing import Route

from fencepost.surface.http import create_app, openapi_document
from fencepost.surface.http._errors import ERROR_CODES

HTTP_SOURCES = Path(create_app.__code__.co_filename).parent


def _resolve(doc, ref):
    node = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _refs(node):
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for v in node.values():
            yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


async def test_every_route_is_in_the_openapi_document_with_its_methods(gw, client):
    """Invariant HTTP-I5."""
    doc = (await client.get("/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    served: dict[str, set[str]] = {}
    for route in create_app(gw).routes:
        if isinstance(route, Route) and route.include_in_schema:
            served.setdefault(route.path, set()).update(
                m.lower() for m in (route.methods or ()) if m != "HEAD"
            )
    documented = {path: set(ops) for path, ops in doc["paths"].items()}
    assert documented == served


async def test_every_reference_in_the_openapi_document_resolves(gw):
    doc = openapi_document("test")
    for ref in _refs(doc):
        assert _resolve(doc, ref), ref
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["summary"] and op["responses"], (path, method)
            names = {p["name"] for p in op.get("parameters", ()) if p["in"] == "path"}
            assert names == {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}
    json.dumps(doc)  # plain JSON data


async def test_the_documented_job_run_and_session_fields_are_the_served_ones(gw, client):
    """The schemas list their fields by hand (JobState's next to CronStore's columns): a field
    served but not documented, or documented but never served, fails here."""
    schemas = openapi_document("test")["components"]["schemas"]
    body = {
        "name": "disk report",
        "agent": "ops",
        "schedule": {"kind": "every", "every": "1h"},
        "payload": {"kind": "agent_turn", "text": "how is the disk?"},
    }
    job = (await client.post("/api/jobs", json=body)).json()
    assert set(job) == set(schemas["Job"]["properties"])
    assert set(job["state"]) == set(schemas["JobState"]["properties"])
    ran = (
        await client.post(f"/api/jobs/{job['job_id']}/run?wait=true", headers={"x-fencepost": "1"})
    ).json()
    assert set(ran["run"]) == set(schemas["Run"]["properties"])
    sessions = (await client.get("/api/sessions")).json()["sessions"]
    assert sessions and set(sessions[0]) == set(schemas["SessionSummary"]["properties"])


def test_every_operation_id_is_the_name_of_its_handler(gw):
    """The document names each operation after the function that serves it, so a link
    (``operationId``) points at the handler it means."""
    doc = openapi_document("test")
    for route in create_app(gw).routes:
        if isinstance(route, Route) and route.include_in_schema:
            for method in route.methods or ():
                if method != "HEAD":
                    op = doc["paths"][route.path][method.lower()]
                    assert op["operationId"] == route.endpoint.__name__, (route.path, method)


def _api_errors_raised(source: str) -> list[tuple[int, str]]:
    """(status, code) of every ``ApiError(<int>, "<code>", ...)`` written in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "ApiError"
            and len(node.args) >= 2
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[1], ast.Constant)
        ):
            found.append((node.args[0].value, node.args[1].value))
    return found


def test_every_error_status_a_handler_raises_is_the_one_the_table_gives_its_code():
    """Invariant HTTP-I10: the document's error statuses come from ``ERROR_CODES``; a handler,
    the guard or ``translate`` answering a code with another status would be undocumented."""
    raised = [
        pair
        for module in sorted(HTTP_SOURCES.glob("*.py"))
        for pair in _api_errors_raised(module.read_text(encoding="utf-8"))
    ]
    assert len(raised) > 10
    for status, code in raised:
        assert code in ERROR_CODES, f"error code {code!r} is not in _errors.ERROR_CODES"
        assert ERROR_CODES[code].status == status, (code, status)


def test_every_error_response_names_the_codes_of_its_status():
    """Invariant HTTP-I10: each documented error response lists, as an enum, the ``error.code``
    values the operation can answer with that status, all from the one table."""
    doc = openapi_document("test")
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, response in op["responses"].items():
                if int(status) < 400 or "application/json" not in response.get("content", {}):
                    continue
                codes = response["content"]["application/json"]["schema"]["allOf"][1]["properties"][
                    "error"
                ]["properties"]["code"]["enum"]
                assert codes, (path, method, status)
                assert {ERROR_CODES[c].status for c in codes} == {int(status)}, (path, method)
            # The guard answers every request: its refusals are on every operation.
            assert {"401", "403"} <= set(op["responses"]), (path, method)


async def test_a_wrong_method_is_a_405_whose_allow_lists_every_documented_method(client):
    """Starlette names only the first route of a path in Allow; the app names them all."""
    doc = openapi_document("test")
    for path, method in [("/api/jobs", "put"), ("/api/jobs/abcd", "post"), ("/runs", "post")]:
        response = await client.request(method, path, headers={"x-fencepost": "1"})
        assert response.status_code == 405, path
        template = "/api/jobs/{job_id}" if path.startswith("/api/jobs/") else path
        allowed = {m.strip().lower() for m in response.headers["allow"].split(",")}
        assert allowed - {"head"} == set(doc["paths"][template]), path
