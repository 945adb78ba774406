"""A gateway process SIGKILLed with MCP servers running leaves none behind (MCP-I9): its stdio
servers read end-of-file on stdin when the kernel closes the dead gateway's pipes, and exit."""

from __future__ import annotations

import json
import signal
import urllib.request

import pytest

from tests.helpers.cli import running_gateway
from tests.helpers.mcp_servers import MARK, alive, git_repo, marked_pids, server_bin, wait_until


@pytest.mark.processes
def test_a_sigkilled_gateway_leaves_no_server_process_mcp_i9(tmp_path, mark):
    """Invariant MCP-I9: a real ``fencepost gateway`` runs a turn that calls both reference
    servers' tools, is SIGKILLed, and both servers exit on their own."""
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

[[scripts.ops.steps]]
tool_calls = [
  {{ name = "time__get_current_time", arguments = {{ timezone = "UTC" }}, id = "t1" }},
  {{ name = "git__git_log", arguments = {{ repo_path = "{repo}", max_count = 1 }}, id = "g1" }},
]

[[scripts.ops.steps]]
text = "checked"

[agents.ops]
model = "scripted/ops"
tools = ["time.*", "git.git_log"]
"""
    )
    with running_gateway(home) as served:
        body = json.dumps({"text": "what time is it, what changed?", "agent": "ops"}).encode()
        request = urllib.request.Request(
            served.url.rstrip("/") + "/api/sessions/ops-main/messages",
            data=body,
            method="POST",
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            assert resp.status == 202
        wait_until(lambda: len(marked_pids(mark)) == 2, 30, "the turn to start both servers")
        transcript = home / "sessions" / "ops-main.jsonl"
        wait_until(lambda: b"checked" in transcript.read_bytes(), 30, "the turn to end")
        pids = marked_pids(mark)
        assert all(map(alive, pids))
        served.proc.send_signal(signal.SIGKILL)
        served.proc.wait(10)
    assert served.returncode == -signal.SIGKILL
    wait_until(lambda: not any(map(alive, pids)), 10, "the servers to exit")
