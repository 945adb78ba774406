"""The built-in tools: safe by default, errors reported to the model, never crashes."""

from __future__ import annotations

import datetime as dt
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fencepost import ConfigError
from fencepost.runtime.agent import ToolContext, ToolFailed, ToolRegistry, check_arguments

TOOLS = ToolRegistry().select(["current_time", "read_file", "write_file", "http_get"])


def ctx(tmp_path, **kw):
    (tmp_path / "ws").mkdir(exist_ok=True)
    return ToolContext(agent="ops", session_id="s", run_id="r", workspace=tmp_path / "ws", **kw)


async def test_files_are_read_and_written_inside_the_workspace_only(tmp_path):
    c = ctx(tmp_path)
    assert "wrote 5 bytes" in await TOOLS["write_file"].run(
        {"path": "notes/a.md", "content": "hello"}, c
    )
    assert await TOOLS["read_file"].run({"path": "notes/a.md"}, c) == "hello"
    assert await TOOLS["read_file"].run({"path": "notes"}, c) == "directory: a.md"
    (tmp_path / "secret.txt").write_text("no")
    os.symlink(tmp_path / "secret.txt", tmp_path / "ws" / "link.txt")
    for path in ("../secret.txt", "/etc/passwd", "link.txt"):
        with pytest.raises(ToolFailed, match="outside the agent workspace"):
            await TOOLS["read_file"].run({"path": path}, c)
    with pytest.raises(ToolFailed, match="outside the agent workspace"):
        await TOOLS["write_file"].run({"path": "../escape.txt", "content": "x"}, c)
    assert not (tmp_path / "escape.txt").exists()
    with pytest.raises(ToolFailed, match="no file"):
        await TOOLS["read_file"].run({"path": "missing.md"}, c)


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"status: green"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


async def test_write_file_never_writes_through_a_link_planted_at_its_old_temporary_name(tmp_path):
    """A command in the workspace (exec) could plant a link where write_file used to put its
    temporary file (``.<name>.tmp-<pid>``) and so write any file the gateway can: it writes a
    new file of a random name instead (O_EXCL) and renames it over the target."""
    c = ctx(tmp_path)
    (tmp_path / "fencepost.toml").write_text("policy = 'deny'\n")
    os.symlink(tmp_path / "fencepost.toml", tmp_path / "ws" / f".note.tmp-{os.getpid()}")
    await TOOLS["write_file"].run({"path": "note", "content": "allow = ['*']"}, c)
    assert (tmp_path / "fencepost.toml").read_text() == "policy = 'deny'\n"
    assert (tmp_path / "ws" / "note").read_text() == "allow = ['*']"
    assert sorted(p.name for p in (tmp_path / "ws").iterdir()) == [
        f".note.tmp-{os.getpid()}",
        "note",
    ]  # no temporary file left behind


async def test_http_get_is_off_by_default_and_fetches_only_allowed_hosts(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/status"
    try:
        with pytest.raises(ToolFailed, match="not allowed; allowed hosts: none"):
            await TOOLS["http_get"].run({"url": url}, ctx(tmp_path))
        got = await TOOLS["http_get"].run(
            {"url": url}, ctx(tmp_path, http_allow=frozenset({"127.0.0.1"}))
        )
        assert got == "HTTP 200\nstatus: green"
        with pytest.raises(ToolFailed, match="not an http"):
            await TOOLS["http_get"].run({"url": "file:///etc/passwd"}, ctx(tmp_path))
    finally:
        server.shutdown()
        server.server_close()


async def test_current_time_in_a_zone_and_an_unknown_zone(tmp_path):
    fixed = dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.UTC)
    c = ToolContext(agent="a", session_id="s", run_id="r", workspace=tmp_path, now=lambda: fixed)
    assert (
        await TOOLS["current_time"].run({"timezone": "Europe/Berlin"}, c)
        == "2026-07-01T14:00:00+02:00"
    )
    with pytest.raises(ToolFailed, match="unknown time zone"):
        await TOOLS["current_time"].run({"timezone": "Mars/Olympus"}, c)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ({"path": "a"}, None),
        ([], "must be a JSON object"),
        ({}, "missing required argument 'path'"),
        ({"path": 3}, "'path' must be string"),
        ({"path": "a", "mode": "x"}, "unknown argument 'mode'"),
    ],
)
def test_check_arguments(args, problem):
    got = check_arguments(TOOLS["read_file"].parameters, args)
    assert got == problem if problem is None else problem in got


def test_an_unknown_tool_in_an_allow_list_is_refused_naming_it():
    with pytest.raises(ConfigError, match="unknown tool 'shell'; known tools: current_time"):
        ToolRegistry().select(["shell"], where="agents.ops.tools")
