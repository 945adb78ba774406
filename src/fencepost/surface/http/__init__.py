"""The HTTP API and the web dashboard of a gateway (docs/design/http.md).

``create_app(gateway, token=...)`` returns a Starlette app; the gateway CLI serves it with
uvicorn in the gateway's own event loop.
"""

from __future__ import annotations

from ._app import COOKIE_NAME, check_bind, close_streams, create_app, resolve_token
from ._schemas import openapi_document

__all__ = [
    "COOKIE_NAME",
    "check_bind",
    "close_streams",
    "create_app",
    "openapi_document",
    "resolve_token",
]
