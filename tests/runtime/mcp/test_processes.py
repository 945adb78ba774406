"""A gateway process SIGKILLed with MCP servers running leaves none behind: its stdio servers
read end-of-file on stdin when the kernel closes the dead gateway's pipes, and exit (MCP-I9); one
that ignores it is ended by the next gateway start or ``doctor --fix`` (MCP-I13)."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from fencepost.runtime.children import read_records
from tests.helpers import procs
from tests.helpers.cli import running_gateway
from tests.helpers.mcp_servers import (
    MARK,
    alive,
    git_repo,
    marked_pids,
    script_server,
    server_bin,
    wait_until,
)


def send(url: str, text: str) -> None:
    """A message to ops-main over the gateway's HTTP API (202: a turn started)."""
    request = urllib.request.Request(
        url.rstrip("/") + "/api/sessions/ops-main/messages",
        data=json.dumps({"text": text, "agent": "ops"}).encode(),
        method="POST",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 202


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
        send(served.url, "what time is it, what changed?")
        wait_until(lambda: len(marked_pids(mark)) == 2, 30, "the turn to start both servers")
        transcript = home / "sessions" / "ops-main.jsonl"
        wait_until(lambda: b"checked" in transcript.read_bytes(), 30, "the turn to end")
        pids = marked_pids(mark)
        assert all(map(alive, pids))
        served.proc.send_signal(signal.SIGKILL)
        served.proc.wait(10)
    assert served.returncode == -signal.SIGKILL
    wait_until(lambda: not any(map(alive, pids)), 10, "the servers to exit")


def stubborn_home(tmp_path: Path, mark: str) -> tuple[Path, Path]:
    """A home whose agent calls a server that ignores end-of-file on stdin and SIGTERM, with a
    ``sleep`` in its process group; (home, the file the sleep's pid is written to)."""
    home = tmp_path / "home"
    home.mkdir()
    family = tmp_path / "sleeper.pid"
    cfg = script_server(mark, tmp_path / "srv", "--stubborn", "--family", str(family))
    args = ", ".join(f'"{a}"' for a in cfg.args)
    (home / "fencepost.toml").write_text(
        f"""durability = "buffered"

[plugins]
enabled = []

[mcp.own]
command = "{cfg.command}"
args = [{args}]
env = {{ {MARK} = "{mark}" }}

[[scripts.ops.steps]]
tool_calls = [{{ name = "own__ping", id = "p1" }}]

[[scripts.ops.steps]]
text = "pinged"

[agents.ops]
model = "scripted/ops"
tools = ["own.ping"]
"""
    )
    return home, family


def killed_with_a_stubborn_server(tmp_path: Path, mark: str) -> tuple[Path, list[int]]:
    """Run a turn that starts the stubborn server, SIGKILL the gateway; (home, the pids of the
    server and its sleep), all still running: end-of-file alone does not end them."""
    home, family = stubborn_home(tmp_path, mark)
    with running_gateway(home) as served:
        send(served.url, "ping")
        transcript = home / "sessions" / "ops-main.jsonl"
        wait_until(lambda: b"pinged" in transcript.read_bytes(), 30, "the turn to end")
        [(_, record, _)] = read_records(home / "run" / "children")
        assert record is not None and record.kind == "mcp"
        server, sleeper = record.pid, int(family.read_text())
        assert sorted(marked_pids(mark)) == sorted([server, sleeper])  # the sleep inherits it
        assert record.owner_pid == served.proc.pid
        served.proc.send_signal(signal.SIGKILL)
        served.proc.wait(10)
    pids = [server, sleeper]
    time.sleep(1.0)  # time enough for a server that heeded end-of-file to exit
    assert all(map(alive, pids)), "the stubborn server survives its gateway's SIGKILL"
    return home, pids


@pytest.mark.processes
def test_a_restarted_gateway_ends_a_server_that_ignored_end_of_file_mcp_i13(tmp_path, mark):
    """Invariant MCP-I13 (with CHILD-I3): the record a SIGKILLed gateway left names the server;
    the next gateway start ends its whole process group and drops the record."""
    home, pids = killed_with_a_stubborn_server(tmp_path, mark)
    with running_gateway(home):
        assert not any(map(alive, pids))
        assert read_records(home / "run" / "children") == []
    log = [json.loads(x) for x in (home / "logs" / "gateway.jsonl").read_text().splitlines()]
    reaped = [e["msg"] for e in log if e.get("action") == "reap"]
    assert len(reaped) == 1 and f"killed: mcp pid {pids[0]}" in reaped[0]


@pytest.mark.processes
def test_doctor_fix_ends_a_server_a_sigkilled_gateway_left_mcp_i13(tmp_path, mark):
    """Invariant MCP-I13 (with CHILD-I2): ``doctor`` names the orphaned server, ``--fix`` ends
    it."""
    home, pids = killed_with_a_stubborn_server(tmp_path, mark)

    def children(*args: str) -> list[dict]:
        got = procs.cli("doctor", "--home", str(home), "--json", *args)
        return [f for f in json.loads(got.stdout)["findings"] if f["check"] == "children"]

    [seen] = children()
    assert seen["status"] == "warn" and seen["subject"] == f"pid {pids[0]}"
    assert "mcp pid" in seen["detail"] and all(map(alive, pids))
    [fixed] = children("--fix")
    assert fixed["status"] == "fixed" and not any(map(alive, pids))
    assert read_records(home / "run" / "children") == []
