"""``POST /api/reload``: the config read again, applied (200, what changed) or refused (422 with
file, key and line) with the old one in force (docs/design/gateway.md, GATEWAY-I8, GATEWAY-I9)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest

from fencepost.runtime.config import StatePaths, load_config
from fencepost.runtime.gateway import Gateway
from fencepost.surface.http import create_app

from .conftest import WRITE, asgi_client

BASE = 'durability = "buffered"\n[plugins]\nenabled = []\n[agents.ops]\nmodel = "scripted/fast"\n'


@pytest.fixture
async def home(tmp_path) -> AsyncIterator[tuple[httpx2.AsyncClient, Gateway]]:
    (tmp_path / "fencepost.toml").write_text(BASE, encoding="utf-8")
    gw = Gateway(
        StatePaths(tmp_path), load_config(tmp_path / "fencepost.toml"), load_entry_points=False
    )
    await gw.start()
    try:
        async with asgi_client(create_app(gw)) as client:
            yield client, gw
    finally:
        await gw.stop(grace_s=2)


async def test_reload_over_http_applies_a_new_agent_and_says_what_changed(home, tmp_path):
    """Invariant GATEWAY-I9: the restart key is reported, not applied."""
    client, gw = home
    assert gw.statistics().reloads == 0
    (tmp_path / "fencepost.toml").write_text(
        BASE + '[agents.new]\nmodel = "scripted/fast"\n[server]\nport = 9123\n', encoding="utf-8"
    )
    r = await client.post("/api/reload", headers=WRITE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["changed"] is True and body["agents_added"] == ["new"]
    assert body["restart_required"] == ["server.port"]
    assert body["path"] == str(tmp_path / "fencepost.toml")
    health = (await client.get("/api/health")).json()
    assert health["agents"] == ["new", "ops"]
    sent = await client.post(
        "/api/sessions/s/messages", json={"text": "hi", "agent": "new"}, headers=WRITE
    )
    assert sent.status_code == 202, sent.text

    again = (await client.post("/api/reload", headers=WRITE)).json()
    assert again["applied"] == [] and again["agents_added"] == []
    assert again["restart_required"] == ["server.port"]  # still waiting for the restart
    assert gw.statistics().reloads == 2


async def test_a_refused_reload_is_a_422_with_file_key_and_line_and_nothing_changes(home, tmp_path):
    """Invariant GATEWAY-I8."""
    client, gw = home
    assert gw.statistics().reloads == 0
    path = tmp_path / "fencepost.toml"
    path.write_text(BASE + 'tools = ["nope"]\n[agents.new]\nmodel = "scripted/fast"\n')
    r = await client.post("/api/reload", headers=WRITE)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "config_invalid"
    assert (err["file"], err["field"], err["line"]) == (str(path), "agents.ops.tools", 6)
    assert "unknown tool 'nope'" in err["message"]
    assert (await client.get("/api/health")).json()["agents"] == ["ops"]
    assert gw.statistics().reloads_refused == 1
    job = {
        "name": "j",
        "agent": "new",
        "schedule": {"kind": "every", "every": "1h"},
        "payload": {"text": "hi"},
    }
    refused = await client.post("/api/jobs", json=job, headers=WRITE)
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "agent"

    path.write_text("durability = \n")
    r = await client.post("/api/reload", headers=WRITE)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["line"] == 1 and err["file"] == str(path) and "not valid TOML" in err["message"]
