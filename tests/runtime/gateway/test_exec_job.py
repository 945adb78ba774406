"""A cron job on the scripted model that calls ``exec`` (``git log -1`` in a workspace repo) and
an MCP tool (the reference ``mcp-server-time`` over stdio), its reply delivered into the agent's
main session: ok, transcripts verify, every tool result paired with its call (issue 16;
docs/design/exec.md, docs/design/mcp.md)."""

from __future__ import annotations

import subprocess
import tomllib
from datetime import UTC, datetime

from fencepost import read_transcript, verify_transcript
from fencepost.runtime.config import StatePaths, parse_config
from fencepost.runtime.cron import EverySchedule, Payload, new_job, parse_delivery
from fencepost.runtime.gateway import Gateway, main_session_id
from tests.helpers.mcp_servers import server_bin

CONFIG = """
durability = "buffered"

[agents.ops]
model = "scripted/gitlog"
tools = ["exec", "current_time", "time.get_current_time"]
workspace = "{ws}"

[agents.ops.exec]
policy = "allow"
allow = ["git"]
env = ["PATH", "HOME"]

[mcp.time]
command = "{time_server}"

[scripts.gitlog]
steps = [
  {{ tool_calls = [
      {{ name = "exec", arguments = {{ argv = ["git", "log", "-1", "--format=%s"] }} }},
      {{ name = "exec", arguments = {{ argv = ["rm", "-rf", "."] }} }},
      {{ name = "time__get_current_time", arguments = {{ timezone = "Asia/Tokyo" }} }},
  ] }},
  "The last commit: nightly notes.",
]

[plugins]
enabled = ["model-snapshot"]
"""


def git(ws, *args):
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "HOME": str(ws)}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x", "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", *args], cwd=ws, env=env, check=True, capture_output=True)


async def test_a_cron_job_calls_exec_and_an_mcp_tool_and_delivers_into_the_main_session(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("HOME", str(tmp_path))  # git reads no user config of the machine
    ws = tmp_path / "repo"
    ws.mkdir()
    git(ws, "init", "-q")
    (ws / "notes.md").write_text("night\n")
    git(ws, "add", "notes.md")
    git(ws, "commit", "-q", "-m", "nightly notes")
    text = CONFIG.format(ws=ws, time_server=server_bin("mcp-server-time"))
    cfg = parse_config(tomllib.loads(text), source=text)
    async with Gateway(StatePaths(tmp_path / "home"), cfg, load_entry_points=False) as g:
        now = datetime.now(UTC)
        job = new_job(
            name="git report",
            agent="ops",
            schedule=EverySchedule(3600, anchor=now),
            payload=Payload("agent_turn", "what changed?"),
            now=now,
            delivery=parse_delivery(f"session:{main_session_id('ops')}"),
        )
        g.cron.add_job(job, next_run_at=None)
        row = await (await g.scheduler.run_now(job.job_id)).wait()
        assert row.status == "ok", row.error_message
        run = g.store.session(row.session_id).path
        main = g.store.session(main_session_id("ops")).path
        for path in (run, main):
            assert verify_transcript(path).ok, path
    messages = [r.data["message"] for r in read_transcript(run).entries if "message" in r.data]
    blocks = [b for m in messages if isinstance(m["content"], list) for b in m["content"]]
    calls = [b for b in blocks if b.get("type") == "toolCall"]
    results = [m for m in messages if m["role"] == "toolResult"]
    assert [r["toolCallId"] for r in results] == [c["id"] for c in calls]
    log, rm, tokyo = results
    assert not log["isError"] and "--- stdout ---\nnightly notes" in log["content"][0]["text"]
    assert rm["isError"] and "rm is not among the programs" in rm["content"][0]["text"]
    assert not tokyo["isError"] and '"timezone": "Asia/Tokyo"' in tokyo["content"][0]["text"]
    assert (ws / "notes.md").exists()
    delivered = [r.data for r in read_transcript(main).entries if r.stamp["writer"] == "delivery"]
    assert delivered and "nightly notes" in str(delivered[-1])
