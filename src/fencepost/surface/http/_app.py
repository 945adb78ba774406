"""``create_app``: the Starlette app (API + dashboard) over a running ``Gateway``.

Auth (docs/design/http.md): without a token the app answers loopback clients only; with a
token every request carries it as a bearer header, or as the dashboard cookie that ``?token=``
sets once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Match, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from ...errors import ConfigError, FencepostError
from ...runtime.gateway import Gateway
from ._api import api_routes
from ._errors import ApiError, error_body, error_response, translate
from ._views import dashboard_routes, make_templates

__all__ = ["COOKIE_NAME", "check_bind", "close_streams", "create_app", "resolve_token"]

log = logging.getLogger("fencepost.http")

HERE = Path(__file__).parent

#: The dashboard's session cookie (an HMAC of the token, never the token itself).
COOKIE_NAME = "fencepost_auth"

#: Methods that change something; they must come from a page that could set a custom header.
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def _is_api(path: str) -> bool:
    return path.startswith("/api/") or path == "/api" or path == "/openapi.json"


def _is_loopback_ip(host: str | None) -> bool:
    if host is None:
        return True  # a Unix socket: only this machine can connect
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _is_loopback_host_header(host: str) -> bool:
    """``Host`` names a loopback address (refuses DNS rebinding of a loopback gateway)."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":")[0]
    return name in _LOOPBACK_NAMES or _is_loopback_ip(name or "?")


def resolve_token(token_env: str | None, environ: Mapping[str, str]) -> str | None:
    """The API token named by ``server.token_env`` (None when no variable is named).

    A named variable that is unset or blank is an error, never "no token": the operator asked
    for a token, and serving without one would open the gateway (Invariant HTTP-I8).
    """
    if not token_env:
        return None
    token = environ.get(token_env)
    if token is None or not token.strip():
        state = "is not set" if token is None else "is empty"
        raise ConfigError(
            f"server.token_env names the environment variable {token_env}, which {state}; "
            f"export {token_env}=<a long random token>, or remove server.token_env to serve "
            "loopback only",
            key="server.token_env",
        )
    return token


def check_bind(address: str, *, token: str | None, setting: str) -> None:
    """Refuse to listen beyond loopback without a token (Invariant HTTP-I8; pure).

    ``address`` is the resolved IP the socket would bind; ``setting`` says where the address
    came from (``--host``, ``FENCEPOST_HOST``, ``server.host``), so the error names it.
    """
    if token is None and not _is_loopback_ip(address):
        raise ConfigError(
            f"{setting} binds {address}, beyond loopback, but no API token is configured: set "
            "server.token_env to the name of an environment variable holding a token, or bind "
            "127.0.0.1",
            key=setting if setting.startswith("server.") else None,
        )


def _cookie_value(token: str) -> str:
    return hmac.new(token.encode(), b"fencepost-dashboard", hashlib.sha256).hexdigest()


class Guard:
    """Pure ASGI middleware: who may talk to this gateway (Invariants HTTP-I1, HTTP-I6)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token
        self.cookie = _cookie_value(token) if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self._refusal(request)
        if isinstance(refusal, ApiError):
            response: Response = error_response(refusal)
            if refusal.status == 401:
                response.headers["www-authenticate"] = 'Bearer realm="fencepost"'
            await response(scope, receive, send)
            return
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, request: Request) -> ApiError | Response | None:
        method = request.method.upper()
        bearer = False
        if self.token is None:
            # Invariant HTTP-I1: no token → loopback clients, addressing a loopback name, only.
            client = request.client.host if request.client else None
            if not _is_loopback_ip(client) or not _is_loopback_host_header(
                request.headers.get("host", "localhost")
            ):
                return ApiError(
                    403,
                    "not_loopback",
                    "this gateway has no API token, so it answers loopback clients at a "
                    "loopback address only; set server.token_env to serve other addresses",
                )
        else:
            # Invariant HTTP-I1: with a token, every request proves it.
            auth = request.headers.get("authorization", "")
            scheme, _, given = auth.partition(" ")
            bearer = scheme.lower() == "bearer" and hmac.compare_digest(
                given.strip().encode("utf-8", "surrogatepass"), self.token.encode()
            )
            cookie = request.cookies.get(COOKIE_NAME, "")
            # Bytes, so a cookie with non-ASCII characters is a mismatch (401), never a 500.
            by_cookie = bool(cookie) and hmac.compare_digest(
                cookie.encode("utf-8", "surrogatepass"), (self.cookie or "").encode()
            )
            if not bearer and not by_cookie:
                query = request.query_params.get("token")
                if (
                    query is not None
                    and method == "GET"
                    and not _is_api(request.url.path)
                    and hmac.compare_digest(
                        query.encode("utf-8", "surrogatepass"), self.token.encode()
                    )
                ):
                    return self._set_cookie(request)
                return ApiError(
                    401,
                    "unauthorized",
                    "this gateway needs its token: send 'Authorization: Bearer <token>', or open "
                    "the dashboard once with ?token=<token>",
                )
        # Invariant HTTP-I6: a browser page on another site cannot make this request without a
        # CORS preflight, which this server never approves.
        if method in _UNSAFE and not bearer:
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type != "application/json" and "x-fencepost" not in request.headers:
                return ApiError(
                    403,
                    "cross_site",
                    "a request that changes something needs 'Content-Type: application/json' "
                    "or an 'X-Fencepost: 1' header",
                )
        return None

    def _set_cookie(self, request: Request) -> Response:
        """Trade ``?token=`` for a cookie and drop the token from the address bar."""
        rest = [(k, v) for k, v in parse_qsl(request.url.query) if k != "token"]
        target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE_NAME,
            self.cookie or "",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response


def _allowed_methods(request: Request) -> str | None:
    """Every method the documented routes serve at this path, for a 405's ``Allow`` header.

    Starlette names only the first route that matches the path, and a path here may have one
    route per method (Invariant HTTP-I10: ``Allow`` lists what the document lists).
    """
    methods: set[str] = set()
    for route in request.app.routes:
        if (
            isinstance(route, Route)
            and route.include_in_schema
            and route.methods
            and route.matches(request.scope)[0] is not Match.NONE
        ):
            methods |= route.methods
    return ", ".join(sorted(methods)) if methods else None


async def _handle(request: Request, exc: Exception) -> Response:
    """The one table from errors to statuses (``_errors.translate``), JSON or an HTML page."""
    api = translate(exc)
    if api is None:
        raise exc
    if api.status == 405 and (allowed := _allowed_methods(request)):
        api.headers["allow"] = allowed
    if _is_api(request.url.path):
        return error_response(api)
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request,
        "error.html",
        {"title": f"{api.status}", "nav": "", "error": api, "live": ""},
        status_code=api.status,
        headers=api.headers,
    )


async def _internal(request: Request, exc: Exception) -> Response:
    log.error("HTTP %s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        error_body("internal", f"internal error ({type(exc).__name__}); see the gateway log"),
        status_code=500,
    )


def create_app(gateway: Gateway, *, token: str | None = None) -> Starlette:
    """The HTTP API and dashboard for a started ``gateway``.

    ``token``: when set, every request must carry it (``Authorization: Bearer``, or the
    dashboard cookie); when None, only loopback clients are served. Serve the app in the
    gateway's event loop; call ``close_streams(app)`` before stopping the server.
    """
    if token is not None and not token.strip():
        raise ValueError("an empty token would let anyone in; pass None for loopback-only")
    app = Starlette(
        routes=[
            *api_routes(),
            *dashboard_routes(),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ],
        middleware=[Middleware(Guard, token=token)],
        exception_handlers={
            ApiError: _handle,
            FencepostError: _handle,
            HTTPException: _handle,
            Exception: _internal,
        },
    )
    state: Any = app.state
    state.gateway = gateway
    state.templates = make_templates()
    state.closing = asyncio.Event()
    return app


def close_streams(app: Starlette) -> None:
    """End every open event stream of ``app`` (before a server shutdown, which waits for them)."""
    app.state.closing.set()
