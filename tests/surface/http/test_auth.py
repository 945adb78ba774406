"""Who may talk to the gateway: loopback without a token, the token otherwise (HTTP-I1)."""

from __future__ import annotations

import pytest

from fencepost.surface.http import COOKIE_NAME, create_app

from .conftest import WRITE, asgi_client

TOKEN = "s3cret-token"


async def test_with_a_token_every_api_and_dashboard_request_needs_it(gw):
    """Invariant HTTP-I1."""
    async with asgi_client(create_app(gw, token=TOKEN)) as c:
        for path in ("/api/health", "/api/jobs", "/api/sessions", "/openapi.json", "/", "/runs"):
            r = await c.get(path)
            assert r.status_code == 401, path
            assert r.json()["error"]["code"] == "unauthorized"
            assert r.headers["www-authenticate"].startswith("Bearer")
        wrong = await c.get("/api/health", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = await c.get("/api/health", headers={"authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json()["status"] == "ok"
        page = await c.get("/runs", headers={"authorization": f"Bearer {TOKEN}"})
        assert page.status_code == 200 and "<h1>Runs</h1>" in page.text


async def test_with_a_token_a_remote_client_that_carries_it_is_served(gw):
    """Invariant HTTP-I1."""
    app = create_app(gw, token=TOKEN)
    async with asgi_client(app, client=("192.0.2.7", 4000), base_url="http://gw.example") as c:
        assert (await c.get("/api/health")).status_code == 401
        r = await c.get("/api/health", headers={"authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200


async def test_the_dashboard_trades_token_in_the_url_for_a_cookie_once(gw):
    """Invariant HTTP-I1."""
    async with asgi_client(create_app(gw, token=TOKEN)) as c:
        r = await c.get(f"/runs?status=ok&token={TOKEN}")
        assert r.status_code == 303
        assert r.headers["location"] == "/runs?status=ok"  # the token leaves the address bar
        cookie = r.headers["set-cookie"]
        assert COOKIE_NAME in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert TOKEN not in cookie
        assert (await c.get("/runs?status=ok")).status_code == 200  # the client kept the cookie
        assert (await c.get("/api/jobs")).status_code == 200  # the page's own fetches


async def test_a_wrong_token_in_the_url_sets_no_cookie(gw):
    async with asgi_client(create_app(gw, token=TOKEN)) as c:
        r = await c.get("/?token=guess")
        assert r.status_code == 401 and "set-cookie" not in r.headers


async def test_the_token_in_the_url_is_not_accepted_by_the_api(gw):
    async with asgi_client(create_app(gw, token=TOKEN)) as c:
        assert (await c.get(f"/api/health?token={TOKEN}")).status_code == 401


async def test_a_cookie_holder_writes_only_with_json_or_the_header(gw):
    """Invariant HTTP-I6."""
    async with asgi_client(create_app(gw, token=TOKEN)) as c:
        await c.get(f"/?token={TOKEN}")
        r = await c.post("/api/sessions/s/messages", content=b'{"text": "x"}')
        assert r.status_code == 403 and r.json()["error"]["code"] == "cross_site"
        r = await c.post("/api/sessions/s/messages", content=b'{"text": "x"}', headers=WRITE)
        assert r.status_code == 202


async def test_without_a_token_only_loopback_clients_are_served(gw):
    """Invariant HTTP-I1."""
    app = create_app(gw)
    async with asgi_client(app, client=("192.0.2.7", 4000)) as c:
        r = await c.get("/api/health")
        assert r.status_code == 403 and r.json()["error"]["code"] == "not_loopback"
    for host in ("127.0.0.1", "::1"):
        async with asgi_client(app, client=(host, 4000)) as c:
            assert (await c.get("/api/health")).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8787", "10.0.0.1"])
async def test_without_a_token_a_loopback_client_naming_another_host_is_refused(gw, host):
    """Invariant HTTP-I1: a rebinding DNS name that points at 127.0.0.1 gets nothing."""
    async with asgi_client(create_app(gw)) as c:
        r = await c.get("/api/health", headers={"host": host})
        assert r.status_code == 403


@pytest.mark.parametrize("host", ["localhost:8787", "127.0.0.1", "[::1]:8787", "LOCALHOST"])
async def test_without_a_token_loopback_host_names_are_served(gw, host):
    async with asgi_client(create_app(gw)) as c:
        assert (await c.get("/api/health", headers={"host": host})).status_code == 200


async def test_an_empty_token_is_refused_at_construction(gw):
    with pytest.raises(ValueError, match="empty token"):
        create_app(gw, token=" ")
