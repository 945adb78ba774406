"""The HTTP API and the web dashboard (being built: see docs/design/http.md)."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(gateway: Any, *, token: str | None = None) -> Any:
    """A minimal app until the API lands: health only."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def health(request: Any) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/api/health", health)])
