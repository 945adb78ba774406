"""MCP tools in the gateway: wiring (start, reload, stop, doctor) and end to end, a turn on the
scripted model that calls MCP tools (docs/design/mcp.md)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from fencepost import ConfigError, custom, read_transcript
from fencepost.runtime.config import StatePaths, load_config
from fencepost.runtime.doctor import run_doctor
from fencepost.runtime.gateway import Gateway
from tests.helpers.mcp_servers import MARK, alive, git_repo, marked_pids, server_bin


def home_with(tmp_path: Path, mark: str, body: str) -> StatePaths:
    paths = StatePaths(tmp_path / "home")
    paths.root.mkdir(parents=True)
    head = f"""durability = "buffered"

[plugins]
enabled = ["model-snapshot"]

[mcp.time]
command = "{server_bin("mcp-server-time")}"
env = {{ {MARK} = "{mark}" }}
"""
    paths.config.write_text(head + body)
    return paths


def gateway(paths: StatePaths) -> Gateway:
    return Gateway(paths, load_config(paths.config), load_entry_points=False)


# ---- wiring ----------------------------------------------------------------------------------


async def test_the_gateway_binds_agents_to_mcp_sources_and_stops_servers_at_shutdown_mcp_i9(
    tmp_path, mark
):
    """Invariant MCP-I9: the gateway's stop stops the servers its turns started."""
    paths = home_with(tmp_path, mark, '[agents.ops]\nmodel = "scripted/fast"\ntools = ["time.*"]\n')
    gw = gateway(paths)
    await gw.start(background=False)
    try:
        (source,) = gw.specs["ops"].tool_sources
        assert not marked_pids(mark)  # MCP-I3: nothing started with the gateway
        assert [t.name for t in await source.tools()] == [
            "time__convert_time",
            "time__get_current_time",
        ]
        (pid,) = marked_pids(mark)
        status = {s.name: s for s in gw.mcp.status()}
        assert status["time"].state == "running"
    finally:
        await gw.stop(grace_s=1)
    assert not alive(pid)
    assert (paths.logs / "mcp" / "time.log").exists()  # the server's stderr lands here


async def test_an_unknown_mcp_server_fails_the_start_and_the_doctor_naming_file_key_and_line(
    tmp_path, mark
):
    """MCP-I1 through the gateway's one check (DOCTOR-I2)."""
    paths = home_with(tmp_path, mark, '[agents.ops]\nmodel = "scripted/fast"\ntools = ["tiem.*"]\n')
    with pytest.raises(ConfigError) as refused:
        await gateway(paths).start(background=False)
    line = paths.config.read_text().splitlines().index('tools = ["tiem.*"]') + 1
    assert refused.value.key == "agents.ops.tools" and refused.value.line == line
    assert str(paths.config) in str(refused.value)
    findings = await run_doctor(paths)
    (config,) = [f for f in findings if f.check == "config"]
    assert config.status == "fail" and "unknown MCP server 'tiem'" in config.detail


async def test_doctor_reports_each_server_and_with_mcp_starts_it(tmp_path, mark):
    paths = home_with(
        tmp_path,
        mark,
        f"""
[mcp.ghost]
command = "{tmp_path / "no-such-server"}"

[agents.ops]
model = "scripted/fast"
tools = ["time.get_current_time", "time.get_the_weather"]
""",
    )
    quick = [f for f in await run_doctor(paths) if f.check == "mcp"]
    assert {(f.subject, f.status) for f in quick} == {("ghost", "fail"), ("time", "ok")}
    assert not marked_pids(mark)  # without --mcp nothing starts
    deep = [f for f in await run_doctor(paths, mcp=True) if f.check == "mcp"]
    by = {(f.subject, f.status): f.detail for f in deep}
    assert "cannot run" in by[("ghost", "fail")]
    assert "offers 2 tool(s)" in by[("time", "ok")]
    assert "get_the_weather, which the server does not offer" in by[("time", "warn")]
    assert not any(map(alive, marked_pids(mark)))


async def test_a_reload_that_changes_a_server_stops_the_old_one_and_starts_the_new_one(
    tmp_path, mark
):
    paths = home_with(tmp_path, mark, '[agents.ops]\nmodel = "scripted/fast"\ntools = ["time.*"]\n')
    gw = gateway(paths)
    await gw.start(background=False)
    try:
        (source,) = gw.specs["ops"].tool_sources
        await source.tools()
        (old,) = marked_pids(mark)
        paths.config.write_text(
            paths.config.read_text().replace("[agents.ops]", "timeout_s = 9\n[agents.ops]")
        )
        result = await gw.reload()
        assert "mcp.time.timeout_s" in result.applied
        assert gw.mcp.servers["time"].timeout_s == 9
        for _ in range(200):
            if not alive(old):
                break
            await asyncio.sleep(0.05)
        assert not alive(old)
        (source,) = gw.specs["ops"].tool_sources
        (tool,) = [t for t in await source.tools() if t.name == "time__get_current_time"]
        assert tool.timeout_s == 9
    finally:
        await gw.stop(grace_s=1)


async def test_a_reload_that_adds_a_server_an_agent_uses_applies_it(tmp_path, mark):
    """A reload binds the agents to the new config before the manager has the new server: it
    used to fail there with a KeyError (an HTTP 500 from POST /api/reload)."""
    paths = home_with(tmp_path, mark, '[agents.ops]\nmodel = "scripted/fast"\ntools = ["time.*"]\n')
    gw = gateway(paths)
    await gw.start(background=False)
    try:
        text = paths.config.read_text().replace('tools = ["time.*"]', 'tools = ["time.*", "t2.*"]')
        time_bin = server_bin("mcp-server-time")
        paths.config.write_text(text + f'\n[mcp.t2]\ncommand = "{time_bin}"\nprefix = "t2."\n')
        await gw.reload()
        names = [t.name for s in gw.specs["ops"].tool_sources for t in await s.tools()]
        assert "t2__get_current_time" in names and "time__get_current_time" in names
    finally:
        await gw.stop(grace_s=1)


# ---- end to end ------------------------------------------------------------------------------


E2E_AGENT = """
[mcp.git]
command = "{git}"
args = ["--repository", "{repo}"]
env = {{ {mark_key} = "{mark}" }}

[[scripts.ops.steps]]
tool_calls = [
  {{ name = "time__get_current_time", arguments = {{ timezone = "Europe/Berlin" }}, id = "t1" }},
  {{ name = "git__git_log", arguments = {{ repo_path = "{repo}", max_count = 1 }}, id = "g1" }},
]

[[scripts.ops.steps]]
tool_calls = [
  {{ name = "time__get_current_time", arguments = {{ timezone = "Mars/Base" }}, id = "t2" }},
]

[[scripts.ops.steps]]
text = "Berlin time and the last commit are in; Mars has no time zone."

[agents.ops]
model = "scripted/ops"
tools = ["current_time", "time.get_current_time", "git.*"]
max_steps = 4
"""


async def test_a_turn_on_the_scripted_model_calls_mcp_tools_end_to_end(tmp_path, mark):
    """A gateway turn whose scripted model calls two stdio servers' tools (one call an error):
    the reply is ok, the transcript verifies, every toolResult pairs with its toolCall."""
    repo = git_repo(tmp_path / "repo")
    body = E2E_AGENT.format(git=server_bin("mcp-server-git"), repo=repo, mark_key=MARK, mark=mark)
    paths = home_with(tmp_path, mark, body)
    gw = gateway(paths)
    await gw.start(background=False)
    try:
        result = await gw.turn("ops-main", "ops", prompt="What time is it, and what changed?")
        assert result.ok, result
        assert result.reply == "Berlin time and the last commit are in; Mars has no time zone."
        session = gw.store.session("ops-main")
        assert not session.verify_chain().problems
        entries = [r.data for r in read_transcript(session.path).entries]
        calls = {
            b["id"]: b["name"]
            for e in entries
            if e["type"] == "message" and e["message"]["role"] == "assistant"
            for b in e["message"].get("content") or []
            if isinstance(b, dict) and b.get("type") == "toolCall"
        }
        results = {
            e["message"]["toolCallId"]: e["message"]
            for e in entries
            if e["type"] == "message" and e["message"]["role"] == "toolResult"
        }
        assert calls == {
            "t1": "time__get_current_time",
            "g1": "git__git_log",
            "t2": "time__get_current_time",
        }
        assert set(results) == set(calls)
        assert all(results[i]["toolName"] == calls[i] for i in calls)
        text = {i: "".join(c.get("text", "") for c in r["content"]) for i, r in results.items()}
        assert (
            json.loads(text["t1"])["timezone"] == "Europe/Berlin" and not results["t1"]["isError"]
        )
        assert "add the ops notes" in text["g1"] and not results["g1"]["isError"]
        assert results["t2"]["isError"] and "Invalid timezone" in text["t2"]
    finally:
        await gw.stop(grace_s=1)
    assert not any(map(alive, marked_pids(mark)))


async def test_a_slow_mcp_tool_lets_cooperative_writers_append_meanwhile_without_a_takeover(
    tmp_path, mark, http_server
):
    """A 3 s MCP tool; a cooperative writer appends every 100 ms meanwhile: each append lands
    at once (the lock is free during the tool), the turn is ok, no fence event."""
    body = f"""
[mcp.web]
url = "{http_server.url}"

[scripts.ops]
steps = [
  {{ tool_calls = [{{ name = "web__slow", arguments = {{ label = "report" }}, id = "s1" }}] }},
  "The slow report is done.",
]

[agents.ops]
model = "scripted/ops"
tools = ["web.slow"]
"""
    paths = home_with(tmp_path, mark, body)
    gw = gateway(paths)
    await gw.start(background=False)
    try:
        session = gw.store.session("ops-main")
        stop = asyncio.Event()
        waits: list[float] = []

        async def cooperative() -> None:
            n = 0
            while not stop.is_set():
                began = time.monotonic()
                await session.append(custom("ops.note", {"n": n}), writer="delivery")
                waits.append(time.monotonic() - began)
                n += 1
                await asyncio.sleep(0.1)

        writer = asyncio.create_task(cooperative())
        try:
            result = await gw.turn("ops-main", "ops", prompt="Make the slow report.")
        finally:
            stop.set()
            await writer
        assert result.ok, result
        assert result.reply == "The slow report is done."
        assert len(waits) >= 25  # 3 s of tool at one append per ~100 ms
        assert max(waits) < 1.0, max(waits)  # nobody waited for the tool to finish
        notes = [
            r.data["data"]["n"]
            for r in read_transcript(session.path).entries
            if r.data.get("customType") == "ops.note"
        ]
        assert notes == list(range(len(waits)))  # all landed, in order
        assert session.fence_events() == []
        assert not session.verify_chain().problems
    finally:
        await gw.stop(grace_s=1)
