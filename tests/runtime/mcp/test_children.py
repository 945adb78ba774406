"""Stdio MCP servers as the gateway's child processes (docs/design/mcp.md "Child processes"):
recorded while they run (MCP-I13), and run under bubblewrap when their table says so
(MCP-I14). Real processes: the reference time server and a server script of the test's own."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from fencepost import McpServerError
from fencepost.runtime.children import ChildRegistry, proc_stat, read_records
from fencepost.runtime.config import StatePaths
from fencepost.runtime.doctor import run_doctor
from fencepost.runtime.mcp import McpManager
from tests.helpers.mcp_servers import alive, marked_pids, script_server, time_server
from tests.helpers.sandbox import ensure_bwrap

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def bwrap() -> str:
    return ensure_bwrap()


def records(root: Path) -> list:
    return [rec for _, rec, _ in read_records(root)]


async def test_a_running_server_is_recorded_and_its_record_goes_when_it_stops_mcp_i13(
    mark, tmp_path
):
    """Invariant MCP-I13: the record names the server's own process (the leader of its process
    group), this process as its owner, and goes when the server stops (idle or shutdown)."""
    registry = ChildRegistry(tmp_path / "children")
    async with McpManager({"time": time_server(mark)}, children=registry) as manager:
        got = await manager.call("time", "get_current_time", {"timezone": "UTC"})
        assert not got.is_error
        [pid] = marked_pids(mark)
        [rec] = records(registry.root)
        st = proc_stat(pid)
        assert st is not None and (rec.pid, rec.pgid, st.pgrp) == (pid, pid, pid)
        assert (rec.kind, rec.owner_pid, rec.start_ticks) == ("mcp", os.getpid(), st.start_ticks)
        assert rec.argv[0].endswith("mcp-server-time") and rec.about["server"] == "time"
    assert records(registry.root) == [] and registry.live() == []
    assert not alive(pid)


async def test_what_a_server_leaves_in_its_group_is_ended_when_it_stops_mcp_i13(mark, tmp_path):
    """Invariant MCP-I13: a server that exits on end-of-file, leaving a child of its own in its
    process group, has that child ended too before its record goes."""
    registry = ChildRegistry(tmp_path / "children")
    family = tmp_path / "sleeper.pid"
    cfg = script_server(mark, tmp_path / "srv", "--family", str(family))
    async with McpManager({"own": cfg}, children=registry) as manager:
        assert (await manager.call("own", "ping", {})).text == "pong"
        sleeper = int(family.read_text())
        assert alive(sleeper) and len(records(registry.root)) == 1
    assert not alive(sleeper)
    assert records(registry.root) == []


async def test_a_sandboxed_time_server_answers_a_call_mcp_i14(bwrap, mark, tmp_path):
    """Invariant MCP-I14: the reference server runs under bwrap and answers; its record names
    the bwrap process, whose group holds the server."""
    registry = ChildRegistry(tmp_path / "children")
    cfg = time_server(mark, sandbox=True)
    async with McpManager({"time": cfg}, children=registry, work_dir=tmp_path / "mcp") as manager:
        got = await manager.call("time", "get_current_time", {"timezone": "UTC"})
        assert not got.is_error and '"timezone": "UTC"' in got.text
        [rec] = records(registry.root)
        assert rec.argv[0] == bwrap and "--unshare-all" in rec.argv
        assert "--share-net" not in rec.argv  # network off unless allowed
        server = [p for p in marked_pids(mark) if p != rec.pid]
        assert server and all((proc_stat(p) or rec).pgrp == rec.pgid for p in server)
    assert (tmp_path / "mcp" / "time").is_dir()
    assert records(registry.root) == [] and not any(map(alive, [rec.pid, *server]))


async def test_a_sandboxed_server_cannot_write_outside_its_workspace_mcp_i14(bwrap, mark, tmp_path):
    """Invariant MCP-I14: its workspace (``<work_dir>/<name>`` without a ``cwd``, else the
    ``cwd``) is writable; the host's files elsewhere (this repository, /etc) are read-only. The
    script lives in the workspace: the host's /tmp, where pytest's directories are, is hidden
    behind the sandbox's private /tmp."""
    escapes = [ROOT / ".fencepost-mcp-escape", Path("/etc/fencepost-mcp-escape")]
    ws = tmp_path / "mcp" / "own"
    cfg = script_server(mark, ws, sandbox=True)
    async with McpManager({"own": cfg}, work_dir=tmp_path / "mcp") as manager:
        got = await manager.call("own", "write", {"path": str(ws / "note.txt"), "text": "hi"})
        assert not got.is_error and (ws / "note.txt").read_text() == "hi"
        for escape in escapes:
            got = await manager.call("own", "write", {"path": str(escape), "text": "out"})
            assert got.is_error and "Read-only file system" in got.text, got.text
    cwd = tmp_path / "ws"
    cfg = script_server(mark, cwd, sandbox=True, cwd=str(cwd))
    async with McpManager({"own": cfg}, work_dir=tmp_path / "mcp") as manager:
        got = await manager.call("own", "write", {"path": "here.txt", "text": "ok"})
        assert not got.is_error and (cwd / "here.txt").read_text() == "ok"
        got = await manager.call("own", "write", {"path": str(escapes[0]), "text": "out"})
        assert got.is_error and "Read-only file system" in got.text
    assert not any(e.exists() for e in escapes)


async def test_a_sandbox_that_cannot_start_fails_the_start_never_runs_bare_mcp_i14(
    mark, tmp_path, monkeypatch, caplog
):
    """Invariant MCP-I14: without bwrap the server is not started at all: the call is an error
    naming the key, one WARNING line, and ``doctor`` fails naming ``mcp.<name>.sandbox``."""
    caplog.set_level(logging.INFO, logger="fencepost.mcp")
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on the gateway's PATH
    registry = ChildRegistry(tmp_path / "children")
    async with McpManager(
        {"time": time_server(mark, sandbox=True)}, children=registry, work_dir=tmp_path / "mcp"
    ) as manager:
        with pytest.raises(McpServerError, match=r"mcp.time.sandbox = true but bubblewrap") as e:
            await manager.call("time", "get_current_time", {"timezone": "UTC"})
        assert e.value.reason == "start_failed"
        (tool,) = await manager.source("time", ["get_current_time"]).tools()
        assert "apt-get install bubblewrap" in tool.description
    assert marked_pids(mark) == [] and records(registry.root) == []
    failed = [r for r in caplog.records if getattr(r, "status", None) == "start_failed"]
    assert failed and all("sandbox = true" in r.getMessage() for r in failed)
    paths = StatePaths(tmp_path / "home")
    paths.root.mkdir()
    paths.config.write_text('[mcp.time]\ncommand = "mcp-server-time"\nsandbox = true\n')
    [bad] = [f for f in await run_doctor(paths) if f.check == "sandbox"]
    assert bad.status == "fail" and "mcp.time.sandbox = true" in bad.detail
