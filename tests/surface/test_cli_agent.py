"""`fencepost agent run`: one turn from the command line, the reply streamed."""

from __future__ import annotations

from fencepost import read_transcript, verify_transcript
from tests.helpers import procs
from tests.helpers.fake_provider import FakeProviderServer, Reply, Status, ToolCall


def test_a_turn_on_the_scripted_model_prints_the_reply_and_writes_the_session(tmp_path):
    got = procs.cli(
        "agent", "run", "--home", str(tmp_path), "--session", "s1", "--message", "status?"
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout.decode().strip() == "ok"
    assert b"ok \xc2\xb7 scripted/fast" in got.stderr  # the summary line
    path = tmp_path / "sessions" / "s1.jsonl"
    assert verify_transcript(path).ok
    roles = [r.data.get("message", {}).get("role") for r in read_transcript(str(path)).entries]
    assert roles == [None, "user", "assistant"]  # model snapshot, prompt, reply


def test_a_turn_against_an_openai_compatible_server_with_a_tool_and_a_fallback(tmp_path):
    """Real HTTP on loopback through the official SDK, from the CLI: the first model fails with
    a 500 (after its retries), the fallback answers with a tool call, then the final text."""
    with FakeProviderServer() as server:
        (tmp_path / "fencepost.toml").write_text(
            f'[providers.local]\napi = "openai"\nbase_url = "{server.openai_base_url}"\n'
            "max_retries = 0\n"
            '[agents.ops]\nmodel = "local/big"\nfallbacks = ["local/small"]\n'
            'tools = ["current_time"]\n'
        )
        server.queue(
            Status(500),
            Reply(tool_calls=(ToolCall("current_time", {"timezone": "Europe/Berlin"}, "c1"),)),
            Reply(text="It is morning in Berlin."),
        )
        got = procs.cli(
            "agent",
            "run",
            "--home",
            str(tmp_path),
            "--session",
            "s",
            "--message",
            "what time is it?",
        )
        assert got.returncode == 0, got.stderr
        assert "It is morning in Berlin." in got.stdout.decode()
        assert b"current_time" in got.stderr
        models = [r.body["model"] for r in server.requests]
        assert models == ["big", "small", "small"]
    entries = read_transcript(str(tmp_path / "sessions" / "s.jsonl")).entries
    results = [
        e.data["message"] for e in entries if e.data.get("message", {}).get("role") == "toolResult"
    ]
    assert len(results) == 1 and not results[0]["isError"]


def test_steps_running_out_with_a_tool_call_pending_exits_1_runner_i6(tmp_path):
    """Invariant RUNNER-I6 from the CLI, against an OpenAI-compatible server: the reply still
    calls a tool when ``max_steps`` runs out, so the run is an error (it exited 0 before)."""
    with FakeProviderServer() as server:
        (tmp_path / "fencepost.toml").write_text(
            f'[providers.local]\napi = "openai"\nbase_url = "{server.openai_base_url}"\n'
            'max_retries = 0\n[agents.ops]\nmodel = "local/m"\nmax_steps = 2\n'
            'tools = ["current_time"]\n'
        )
        server.queue(
            Reply(tool_calls=(ToolCall("current_time", {}, "c1"),)),
            Reply(tool_calls=(ToolCall("current_time", {}, "c2"),)),
        )
        got = procs.cli(
            "agent", "run", "--home", str(tmp_path), "--session", "s", "--message", "loop"
        )
    assert got.returncode == 1, got.stderr
    assert b"step_limit" in got.stderr or b"max_steps" in got.stderr
    entries = read_transcript(str(tmp_path / "sessions" / "s.jsonl")).entries
    roles = [e.data.get("message", {}).get("role") for e in entries]
    assert roles.count("toolResult") == 2
