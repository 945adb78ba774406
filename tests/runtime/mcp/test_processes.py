"""A gateway process SIGKILLed with MCP servers running leaves none behind (MCP-I9): its stdio
servers read end-of-file on stdin when the kernel closes the dead gateway's pipes, and exit."""

from __future__ import annotations

import os
import signal

import pytest

from tests.helpers import procs
from tests.helpers.mcp_servers import MARK, alive, git_repo, marked_pids, server_bin, wait_until

CHILD = """
import asyncio, sys
from pathlib import Path
from fencepost.runtime.config import StatePaths, load_config
from fencepost.runtime.gateway import Gateway

async def main():
    paths = StatePaths(Path(sys.argv[1]))
    gw = Gateway(paths, load_config(paths.config), load_entry_points=False)
    await gw.start(background=False)
    for source in gw.specs["ops"].tool_sources:
        assert await source.tools()
    print("servers running", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.mark.processes
def test_a_sigkilled_gateway_leaves_no_server_process_mcp_i9(tmp_path, mark):
    """Invariant MCP-I9: both reference servers exit on their own once the gateway is gone."""
    repo = git_repo(tmp_path / "repo")
    home = tmp_path / "home"
    home.mkdir()
    (home / "fencepost.toml").write_text(
        f"""durability = "buffered"

[plugins]
enabled = []

[mcp.time]
command = "{server_bin("mcp-server-time")}"
env = {{ {MARK} = "{mark}" }}

[mcp.git]
command = "{server_bin("mcp-server-git")}"
args = ["--repository", "{repo}"]
env = {{ {MARK} = "{mark}" }}

[agents.ops]
model = "scripted/fast"
tools = ["time.*", "git.git_log"]
"""
    )
    child = procs.spawn(CHILD, str(home))
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line == b"servers running\n", child.stderr.read() if child.stderr else line
        pids = marked_pids(mark)
        assert len(pids) == 2 and all(map(alive, pids))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        wait_until(lambda: not any(map(alive, pids)), 10, "the servers to exit")
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(10)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
