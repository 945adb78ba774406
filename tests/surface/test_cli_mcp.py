"""``fencepost mcp list|tools`` and ``GET /api/mcp`` (docs/design/mcp.md)."""

from __future__ import annotations

import json
import urllib.request

from tests.helpers.cli import invoke, running_gateway
from tests.helpers.mcp_servers import MARK, marked_pids, reap, server_bin


def write_home(tmp_path, mark):
    home = tmp_path / "home"
    home.mkdir()
    (home / "fencepost.toml").write_text(
        f"""[plugins]
enabled = []

[mcp.time]
command = "{server_bin("mcp-server-time")}"
env = {{ {MARK} = "{mark}" }}

[mcp.ghost]
command = "{tmp_path / "no-such-server"}"

[mcp.web]
url = "http://127.0.0.1:9/mcp"
enabled = false

[agents.ops]
model = "scripted/fast"
tools = ["time.*"]
"""
    )
    return home


def test_mcp_tools_starts_the_server_lists_its_tools_and_stops_it(tmp_path):
    mark = "cli-" + tmp_path.name
    home = write_home(tmp_path, mark)
    try:
        out = invoke(["mcp", "tools", "time"], home)
        out.check("mcp tools time")
        assert out.code == 0
        assert "time.get_current_time" in out.stdout and "time__get_current_time" in out.stdout
        assert "2 tool(s)" in out.stdout
        as_json = invoke(["mcp", "tools", "time", "--json"], home)
        tools = {t["name"]: t for t in json.loads(as_json.stdout)}
        assert tools["convert_time"]["wire_name"] == "time__convert_time"
        assert tools["get_current_time"]["parameters"]["required"] == ["timezone"]
        assert not marked_pids(mark)  # stopped again
    finally:
        reap(mark)


def test_mcp_tools_says_why_a_server_cannot_start_or_is_unknown(tmp_path):
    home = write_home(tmp_path, "cli-ghost")
    ghost = invoke(["mcp", "tools", "ghost"], home)
    ghost.check("mcp tools ghost")
    assert ghost.code == 1 and "MCP server 'ghost': did not start: cannot run" in ghost.stderr
    unknown = invoke(["mcp", "tools", "nope"], home)
    unknown.check("mcp tools nope")
    assert unknown.code == 2 and "configured: ghost, time, web" in unknown.stderr


def test_mcp_list_shows_the_config_and_a_running_gateways_state(tmp_path):
    mark = "cli-list-" + tmp_path.name
    home = write_home(tmp_path, mark)
    offline = invoke(["mcp", "list"], home)
    offline.check("mcp list")
    assert "3 MCP server(s) (no gateway running: state unknown)" in offline.stdout
    assert "disabled" in offline.stdout
    try:
        with running_gateway(home) as served:
            listed = invoke(["mcp", "list", "--json"], home)
            listed.check("mcp list --json")
            got = json.loads(listed.stdout)
            assert got["gateway_running"] is True
            rows = {r["name"]: r for r in got["servers"]}
            assert rows["time"]["transport"] == "stdio" and rows["web"]["transport"] == "http"
            assert rows["time"]["gateway"]["state"] == "stopped"  # MCP-I3: nothing started
            assert rows["web"]["gateway"]["state"] == "disabled"
            with urllib.request.urlopen(served.url.rstrip("/") + "/api/mcp") as resp:
                api = json.loads(resp.read())
            assert [s["name"] for s in api["servers"]] == ["ghost", "time", "web"]
            assert not marked_pids(mark)
    finally:
        reap(mark)


def test_mcp_list_on_a_home_without_servers_says_how_to_add_one(tmp_path):
    out = invoke(["mcp", "list"], tmp_path)
    out.check("mcp list")
    assert out.code == 0 and "no MCP servers configured" in out.stdout
