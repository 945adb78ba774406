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
