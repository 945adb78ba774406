"""The OpenAPI document covers every route the app serves (HTTP-I5)."""

from __future__ import annotations

import json

from starlette.routing import Route

from fencepost.surface.http import create_app, openapi_document


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
