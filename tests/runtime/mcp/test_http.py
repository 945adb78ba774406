"""The MCP manager against a streamable HTTP server built with the SDK's own ``MCPServer``,
served by uvicorn on a loopback port inside the test (tests/helpers/mcp_servers.py)."""

from __future__ import annotations

import pytest

from fencepost import McpServerError
from fencepost.runtime.agent import ToolContext, ToolFailed
from fencepost.runtime.mcp import McpManager, McpServerConfig
from tests.helpers.mcp_servers import await_until


def ctx(tmp_path) -> ToolContext:
    return ToolContext(agent="ops", session_id="s", run_id="r", workspace=tmp_path)


def state(manager: McpManager, name: str):
    return next(s for s in manager.status() if s.name == name)


async def test_streamable_http_server_lists_calls_and_reports_errors_mcp_i10(
    http_server, tmp_path, monkeypatch
):
    """Invariant MCP-I10: the header's value comes from the gateway's environment variable the
    config names, at start."""
    monkeypatch.setenv("OPS_TEST_MCP_AUTH", "Bearer s3cret")
    cfg = McpServerConfig(
        "web", url=http_server.url, headers_from={"Authorization": "OPS_TEST_MCP_AUTH"}
    )
    async with McpManager({"web": cfg}) as manager:
        tools = {t.name: t for t in await manager.source("web", None).tools()}
        assert {"web__add", "web__fail", "web__slow", "web__whoami", "web__grow"} <= set(tools)
        assert tools["web__add"].parameters["required"] == ["a", "b"]
        assert await tools["web__add"].run({"a": 2, "b": 3}, ctx(tmp_path)) == "5"
        with pytest.raises(ToolFailed, match="the disk is full"):
            await tools["web__fail"].run({"message": "the disk is full"}, ctx(tmp_path))
        with pytest.raises(ToolFailed):
            await tools["web__add"].run({"a": "two", "b": 3}, ctx(tmp_path))
        assert await tools["web__whoami"].run({}, ctx(tmp_path)) == "Bearer s3cret"
        got = state(manager, "web")
        assert (got.transport, got.state, got.starts, got.crashes) == ("http", "running", 1, 0)


async def test_a_missing_secret_variable_fails_the_start_naming_the_key_mcp_i10(
    http_server, monkeypatch
):
    monkeypatch.delenv("OPS_TEST_MCP_AUTH", raising=False)
    cfg = McpServerConfig(
        "web", url=http_server.url, headers_from={"Authorization": "OPS_TEST_MCP_AUTH"}
    )
    async with McpManager({"web": cfg}) as manager:
        with pytest.raises(McpServerError, match=r"OPS_TEST_MCP_AUTH \(mcp.web.headers_from"):
            await manager.tools("web")


async def test_list_changed_refreshes_the_tool_list_mcp_i8(http_server, tmp_path):
    """Invariant MCP-I8."""
    cfg = McpServerConfig("web", url=http_server.url)
    async with McpManager({"web": cfg}) as manager:
        source = manager.source("web", None)
        before = {t.name for t in await source.tools()}
        assert "web__lookup" not in before
        assert await manager.call("web", "grow", {"name": "lookup"})
        await await_until(
            lambda: "lookup" in {t.name for t in manager._servers["web"].tools or ()},
            what="the tool list to be listed again",
        )
        after = {t.name: t for t in await source.tools()}
        assert set(after) == before | {"web__lookup"}
        assert await after["web__lookup"].run({}, ctx(tmp_path)) == "lookup here"


async def test_an_http_server_that_goes_away_is_reconnected_on_next_use(http_server, tmp_path):
    cfg = McpServerConfig("web", url=http_server.url)
    async with McpManager({"web": cfg}) as manager:
        assert (await manager.call("web", "add", {"a": 1, "b": 1})).text == "2"
        await http_server.stop()
        with pytest.raises(McpServerError):
            await manager.call("web", "add", {"a": 1, "b": 2})
        await await_until(lambda: state(manager, "web").state != "running", what="the failure")
        await http_server.start()  # the same port
        for _ in range(2):  # the backoff after one failure is none; after two, 1 s
            try:
                got = await manager.call("web", "add", {"a": 2, "b": 2})
                break
            except McpServerError as exc:
                assert exc.reason in ("backoff", "crashed", "start_failed", "refused")
                await await_until(lambda: state(manager, "web").retry_in_s is None, 5)
        assert got.text == "4"
        assert state(manager, "web").starts >= 2


async def test_a_call_past_its_timeout_is_an_error_and_the_server_keeps_serving(http_server):
    cfg = McpServerConfig("web", url=http_server.url, timeout_s=0.5)
    async with McpManager({"web": cfg}) as manager:
        with pytest.raises(McpServerError, match=r"slow took longer than 0\.5 s") as late:
            await manager.call("web", "slow", {"label": "x"})
        assert late.value.reason == "timeout"
        assert (await manager.call("web", "add", {"a": 1, "b": 2})).text == "3"
        assert state(manager, "web").starts == 1
