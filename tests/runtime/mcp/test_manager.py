"""The MCP manager against the reference servers from the package registry, over stdio:
mcp-server-time and mcp-server-git, real processes (docs/design/mcp.md)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

import mcp.types as mt
import pytest

from fencepost import McpServerError
from fencepost.runtime.agent import ToolContext, ToolFailed
from fencepost.runtime.mcp import MAX_RESULT_BYTES, McpManager, McpServerConfig, render_result
from tests.helpers.mcp_servers import (
    MARK,
    alive,
    await_until,
    git_repo,
    git_server,
    marked_pids,
    time_server,
)


def ctx(tmp_path: Path) -> ToolContext:
    return ToolContext(agent="ops", session_id="s", run_id="r", workspace=tmp_path)


def state(manager: McpManager, name: str):
    return next(s for s in manager.status() if s.name == name)


async def test_time_server_lists_its_tools_and_answers_a_call_with_arguments_mcp_i5(mark, tmp_path):
    """Invariant MCP-I5 (and MCP-I2 on real tool names)."""
    async with McpManager({"time": time_server(mark)}) as manager:
        tools = await manager.tools("time")
        by_name = {t.name: t for t in tools}
        assert set(by_name) == {"get_current_time", "convert_time"}
        now = by_name["get_current_time"]
        assert now.wire_name == "time__get_current_time"
        assert now.display_name == "time.get_current_time"
        assert now.parameters["required"] == ["timezone"]
        assert "time" in now.description.lower()
        source = manager.source("time", ["get_current_time"])
        (tool,) = await source.tools()
        assert tool.name == "time__get_current_time" and tool.timeout_s == 60
        answer = json.loads(await tool.run({"timezone": "Europe/Berlin"}, ctx(tmp_path)))
        assert answer["timezone"] == "Europe/Berlin" and answer["datetime"]
        converted = await manager.call(
            "time",
            "convert_time",
            {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"},
        )
        assert not converted.is_error
        assert json.loads(converted.text)["target"]["datetime"].endswith("21:00:00+09:00")
        assert state(manager, "time").starts == 1


async def test_git_server_answers_git_log_on_a_workspace_repo(mark, tmp_path):
    repo = git_repo(tmp_path / "repo")
    async with McpManager({"git": git_server(mark, repo)}) as manager:
        source = manager.source("git", None)
        tools = {t.name: t for t in await source.tools()}
        assert {"git__git_log", "git__git_status", "git__git_show"} <= set(tools)
        out = await tools["git__git_log"].run(
            {"repo_path": str(repo), "max_count": 1}, ctx(tmp_path)
        )
        assert "add the ops notes" in out
        with pytest.raises(ToolFailed, match="outside the allowed repository"):
            await tools["git__git_log"].run({"repo_path": "/"}, ctx(tmp_path))


async def test_a_tool_error_and_bad_arguments_are_error_results_and_the_server_keeps_serving_mcp_i4(
    mark, tmp_path
):
    """Invariant MCP-I4: the server's isError, arguments it refuses and a tool it does not have
    are errors of the call; the server runs on."""
    async with McpManager({"time": time_server(mark)}) as manager:
        (tool,) = await manager.source("time", ["get_current_time"]).tools()
        with pytest.raises(ToolFailed, match="Invalid timezone"):
            await tool.run({"timezone": "Nowhere/Special"}, ctx(tmp_path))
        with pytest.raises(ToolFailed, match="timezone"):
            await tool.run({}, ctx(tmp_path))  # the runner checks first; the server also does
        with pytest.raises(McpServerError, match="no_such_tool") as refused:
            await manager.call("time", "no_such_tool", {})
        assert refused.value.reason == "refused"
        ok = await manager.call("time", "get_current_time", {"timezone": "UTC"})
        assert not ok.is_error
        got = state(manager, "time")
        assert (got.state, got.starts, got.crashes, got.failures) == ("running", 1, 0, 0)


async def test_a_server_that_cannot_start_gives_error_results_and_one_log_line_mcp_i4(
    tmp_path, caplog
):
    """Invariant MCP-I4: a missing command, for a selection and for ``<server>.*``."""
    caplog.set_level(logging.INFO, logger="fencepost.mcp")
    cfg = McpServerConfig("ghost", command=str(tmp_path / "no-such-server"))
    async with McpManager({"ghost": cfg}) as manager:
        picked = await manager.source("ghost", ["lookup"]).tools()
        assert [t.name for t in picked] == ["ghost__lookup"]
        assert "unavailable" in picked[0].description
        with pytest.raises(ToolFailed, match=r"cannot run .*no-such-server"):
            await picked[0].run({"q": 1}, ctx(tmp_path))
        (stand_in,) = await manager.source("ghost", None).tools()
        assert stand_in.name == "ghost__unavailable"
        with pytest.raises(ToolFailed, match="MCP server 'ghost'"):
            await stand_in.run({}, ctx(tmp_path))
        got = state(manager, "ghost")
        assert got.state in ("stopped", "backoff") and got.failures >= 2
        assert "no-such-server" in (got.last_error or "")
    failed = [r for r in caplog.records if getattr(r, "status", None) == "start_failed"]
    assert len(failed) == got.failures  # one WARNING line per failure
    assert all(r.levelno == logging.WARNING and "ghost" in r.getMessage() for r in failed)


async def test_a_failed_start_quotes_the_end_of_the_servers_stderr(tmp_path):
    script = "import sys; print('config file /etc/x missing', file=sys.stderr); sys.exit(3)"
    cfg = McpServerConfig("broken", command=sys.executable, args=("-c", script))
    async with McpManager({"broken": cfg}, log_dir=tmp_path / "logs") as manager:
        with pytest.raises(McpServerError, match="config file /etc/x missing") as failed:
            await manager.tools("broken")
    assert failed.value.reason == "start_failed"
    assert "config file /etc/x missing" in (tmp_path / "logs" / "broken.log").read_text()


async def test_a_server_that_does_not_start_in_time_fails_the_start_mcp_i11(mark):
    """Invariant MCP-I11: no listing within startup_timeout_s is a failed start, and the
    process is gone."""
    cfg = McpServerConfig(
        "sleepy",
        command=sys.executable,
        args=("-c", "import time; time.sleep(60)"),
        env={MARK: mark},
        startup_timeout_s=1.0,
    )
    async with McpManager({"sleepy": cfg}) as manager:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(McpServerError, match="did not start within 1 s"):
            await manager.tools("sleepy")
        assert loop.time() - started < 10
        await await_until(lambda: not any(map(alive, marked_pids(mark))), what="the kill")


async def test_a_killed_server_is_noticed_logged_and_started_again_on_next_use_mcp_i6(
    mark, tmp_path, caplog
):
    """Invariant MCP-I6: the crash is noticed when the connection ends, logged once, and the
    next use starts the server again (the first restart waits for nothing)."""
    caplog.set_level(logging.INFO, logger="fencepost.mcp")
    async with McpManager({"time": time_server(mark)}) as manager:
        (tool,) = await manager.source("time", ["get_current_time"]).tools()
        assert json.loads(await tool.run({"timezone": "UTC"}, ctx(tmp_path)))["timezone"]
        (pid,) = marked_pids(mark)
        os.kill(pid, signal.SIGKILL)
        await await_until(lambda: state(manager, "time").state != "running", what="the crash")
        got = state(manager, "time")
        assert (got.crashes, got.failures, got.retry_in_s) == (1, 1, None)
        assert "ended" in (got.last_error or "")
        crashed = [r for r in caplog.records if getattr(r, "status", None) == "crashed"]
        assert len(crashed) == 1 and "restarts on next use" in crashed[0].getMessage()
        # The same Tool object the turn listed before the crash still works: its next call
        # starts the server again.
        assert json.loads(await tool.run({"timezone": "Asia/Tokyo"}, ctx(tmp_path)))["datetime"]
        got = state(manager, "time")
        assert (got.state, got.starts, got.crashes) == ("running", 2, 1)
        (new_pid,) = marked_pids(mark)
        assert new_pid != pid


async def test_consecutive_failures_space_the_next_starts_out_mcp_i6():
    """Invariant MCP-I6: 0 s after the first failure, then 1, 2, 4 ... s, at most 60."""
    now = [1000.0]
    cfg = McpServerConfig("flaky", command=sys.executable, args=("-c", "raise SystemExit(1)"))
    async with McpManager({"flaky": cfg}, clock=lambda: now[0]) as manager:
        for _ in range(2):  # the first failure leaves no wait
            with pytest.raises(McpServerError) as first:
                await manager.call("flaky", "x", {})
            assert first.value.reason == "start_failed"
        got = state(manager, "flaky")
        assert (got.failures, got.state, got.retry_in_s) == (2, "backoff", 1.0)
        with pytest.raises(McpServerError, match="next start is allowed in 1 s") as waiting:
            await manager.call("flaky", "x", {})
        assert waiting.value.reason == "backoff" and state(manager, "flaky").starts == 2
        now[0] += 1.0
        with pytest.raises(McpServerError, match="did not start"):
            await manager.call("flaky", "x", {})
        assert state(manager, "flaky").retry_in_s == 2.0
        for _ in range(10):
            now[0] += 100.0
            with pytest.raises(McpServerError):
                await manager.call("flaky", "x", {})
        assert state(manager, "flaky").retry_in_s == 60.0


async def test_an_idle_server_is_stopped_and_started_again_on_next_use_mcp_i7(mark, caplog):
    """Invariant MCP-I7."""
    caplog.set_level(logging.INFO, logger="fencepost.mcp")
    async with McpManager({"time": time_server(mark, idle_stop_s=0.5)}) as manager:
        await manager.call("time", "get_current_time", {"timezone": "UTC"})
        (pid,) = marked_pids(mark)
        await await_until(lambda: state(manager, "time").state == "stopped", what="idle stop")
        await await_until(lambda: not alive(pid), what="the process to exit")
        got = state(manager, "time")
        assert (got.tools, got.crashes, got.failures) == (2, 0, 0)
        stopped = [r for r in caplog.records if getattr(r, "status", None) == "stopped"]
        assert stopped and "idle" in stopped[-1].getMessage()
        ok = await manager.call("time", "get_current_time", {"timezone": "UTC"})
        assert not ok.is_error and state(manager, "time").starts == 2


async def test_a_server_with_idle_stop_0_is_never_stopped_for_idleness(mark):
    async with McpManager({"time": time_server(mark, idle_stop_s=0)}) as manager:
        await manager.call("time", "get_current_time", {"timezone": "UTC"})
        await asyncio.sleep(1.0)
        assert state(manager, "time").state == "running"


async def test_reading_state_or_a_known_tool_list_starts_no_server_mcp_i3(mark):
    """Invariant MCP-I3."""
    async with McpManager({"time": time_server(mark, idle_stop_s=0.3)}) as manager:
        assert state(manager, "time").state == "stopped" and state(manager, "time").tools is None
        source = manager.source("time", None)
        assert not marked_pids(mark)
        first = await source.tools()  # no listing known yet: this one starts it
        assert len(first) == 2 and state(manager, "time").starts == 1
        await await_until(lambda: state(manager, "time").state == "stopped", what="idle stop")
        await await_until(lambda: not marked_pids(mark), what="the process to exit")
        again = await source.tools()  # the last listing answers
        assert [t.name for t in again] == [t.name for t in first]
        manager.status()
        assert state(manager, "time").starts == 1 and not marked_pids(mark)


async def test_a_call_the_server_never_saw_goes_to_the_next_start_mcp_i12(mark):
    """Invariant MCP-I12: the server stops with a call queued and not yet taken; the call is
    sent once, to the next start."""
    async with McpManager({"time": time_server(mark)}) as manager:
        await manager.tools("time")
        manager._servers["time"].stop("a test stops it")
        answer = await manager.call("time", "get_current_time", {"timezone": "UTC"})
        assert not answer.is_error
        got = state(manager, "time")
        assert (got.starts, got.crashes, got.failures) == (2, 0, 0)


async def test_shutdown_stops_every_server_mcp_i9(mark, tmp_path):
    """Invariant MCP-I9."""
    repo = git_repo(tmp_path / "repo")
    manager = McpManager({"time": time_server(mark), "git": git_server(mark, repo)})
    await asyncio.gather(manager.tools("time"), manager.tools("git"))
    pids = marked_pids(mark)
    assert len(pids) == 2 and all(map(alive, pids))
    await manager.aclose()
    assert not any(map(alive, pids))
    assert {s.state for s in manager.status()} == {"stopped"}
    with pytest.raises(McpServerError, match="shutting down"):
        await manager.call("time", "get_current_time", {"timezone": "UTC"})
    await manager.aclose()  # idempotent


async def test_a_disabled_or_unknown_server_offers_nothing_and_refuses_calls(mark):
    cfg = replace(time_server(mark), enabled=False)
    async with McpManager({"time": cfg}) as manager:
        assert await manager.source("time", None).tools() == []
        with pytest.raises(McpServerError) as disabled:
            await manager.call("time", "get_current_time", {})
        assert disabled.value.reason == "disabled"
        assert state(manager, "time").state == "disabled"
        with pytest.raises(McpServerError) as unknown:
            await manager.call("nope", "x", {})
        assert unknown.value.reason == "not_configured"
    assert not marked_pids(mark)


def test_results_join_text_describe_other_content_and_are_capped_mcp_i5():
    """Invariant MCP-I5."""
    result = mt.CallToolResult(
        content=[
            mt.TextContent(type="text", text="first"),
            mt.ImageContent(type="image", data="aGVsbG8h", mime_type="image/png"),
            mt.EmbeddedResource(
                type="resource",
                resource=mt.TextResourceContents(uri="file:///notes.txt", text="the notes"),
            ),
            mt.ResourceLink(type="resource_link", name="report", uri="file:///r.pdf"),
            mt.TextContent(type="text", text="last"),
        ]
    )
    rendered = render_result(result)
    assert not rendered.is_error
    assert rendered.text.splitlines() == [
        "first",
        "[image: image/png, 6 bytes]",
        "[resource file:///notes.txt]",
        "the notes",
        "[resource link: report file:///r.pdf]",
        "last",
    ]
    structured = render_result(mt.CallToolResult(content=[], structured_content={"n": 3}))
    assert structured.text == '{"n": 3}'
    failed = render_result(
        mt.CallToolResult(content=[mt.TextContent(type="text", text="no")], is_error=True)
    )
    assert failed.is_error and failed.text == "no"
    big = render_result(
        mt.CallToolResult(content=[mt.TextContent(type="text", text="é" * MAX_RESULT_BYTES)])
    )
    assert len(big.text.encode()) < MAX_RESULT_BYTES + 100
    assert big.text.endswith(f"[truncated: {MAX_RESULT_BYTES} more bytes]")
