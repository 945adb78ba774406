"""Real MCP servers for tests: the reference servers from the package registry over stdio
(console scripts next to this interpreter), and a streamable HTTP server built with the SDK's own
``MCPServer``, served by uvicorn on a loopback port in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from fencepost.runtime.mcp import McpServerConfig

BIN = Path(sys.executable).parent
#: The environment variable that marks the server processes one test started.
MARK = "FENCEPOST_TEST_MCP_MARK"


def server_bin(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{name} is not installed next to {sys.executable} (the test extra)"
    return str(path)


def marked_pids(mark: str) -> list[int]:
    """Processes whose environment carries ``MARK=mark`` (the servers a test started)."""
    needle = f"{MARK}={mark}".encode()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    out.append(int(entry))
        except OSError:
            continue
    return out


def alive(pid: int) -> bool:
    """Running, not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(predicate: Any, timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


async def await_until(predicate: Any, timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def reap(mark: str) -> None:
    """Kill any server process still carrying ``mark`` (after a test that failed)."""
    for pid in marked_pids(mark):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def time_server(mark: str, **kw: Any) -> McpServerConfig:
    return McpServerConfig(
        "time",
        command=server_bin("mcp-server-time"),
        args=("--local-timezone", "UTC"),
        env={MARK: mark},
        **kw,
    )


def git_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "ops",
        "GIT_AUTHOR_EMAIL": "ops@example.com",
        "GIT_COMMITTER_NAME": "ops",
        "GIT_COMMITTER_EMAIL": "ops@example.com",
    }
    subprocess.run(["git", "init", "-q", str(path)], check=True, env=env)
    (path / "README").write_text("ops notes\n")
    subprocess.run(["git", "-C", str(path), "add", "README"], check=True, env=env)
    subprocess.run(
        ["git", "-C", str(path), "commit", "-q", "-m", "add the ops notes"], check=True, env=env
    )
    return path


def git_server(mark: str, repo: Path, **kw: Any) -> McpServerConfig:
    return McpServerConfig(
        "git",
        command=server_bin("mcp-server-git"),
        args=("--repository", str(repo)),
        env={MARK: mark},
        **kw,
    )


# ---- a streamable HTTP server, built with the SDK's own server ------------------------------


def http_app(*, slow_s: float = 3.0) -> Any:
    """An ``MCPServer`` with a few tools, as a Starlette app (streamable HTTP at ``/mcp``)."""
    server = MCPServer("fencepost-test")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def fail(message: str) -> str:
        """Always fails with the message (an anticipated failure: isError with the text)."""
        raise ToolError(message)

    @server.tool()
    async def slow(label: str) -> str:
        """Answers after a few seconds."""
        await asyncio.sleep(slow_s)
        return f"slow {label} done"

    @server.tool()
    def whoami(ctx: Context) -> str:
        """The Authorization header the request carried."""
        return (ctx.headers or {}).get("authorization", "none")

    @server.tool()
    async def grow(name: str, ctx: Context) -> str:
        """Add a tool called ``name`` and tell the client the list changed."""

        def added() -> str:
            return f"{name} here"

        server.add_tool(added, name=name, description=f"added at run time as {name}")
        await ctx.session.send_tool_list_changed()
        return f"added {name}"

    return server.streamable_http_app()


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # pytest owns the signals


class LoopbackMcp:
    """``http_app`` served on 127.0.0.1; ``stop`` and ``start`` again on the same port."""

    def __init__(self, **app_kw: Any) -> None:
        self.app_kw = app_kw
        self.port = 0
        self._server: _Uvicorn | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    async def start(self) -> None:
        config = uvicorn.Config(
            http_app(**self.app_kw),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            log_config=None,
        )
        server = _Uvicorn(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        self.port = server.servers[0].sockets[0].getsockname()[1]
        self._server, self._task = server, task

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            self._server.force_exit = True
            await asyncio.wait_for(self._task, 10)
        self._server = self._task = None


# ---- a stdio server of the test's own: a family, end-of-file ignored ------------------------

#: A stdio MCP server built with the SDK's ``MCPServer``. ``--family FILE``: it starts a
#: ``sleep`` in its own process group first and writes that pid to FILE. ``--stubborn``: when its
#: stdin ends it neither exits nor heeds SIGTERM (a server that only SIGKILL ends). Tools:
#: ``ping`` and ``write(path, text)`` (says what writing the file did).
SCRIPT = '''
import signal, subprocess, sys, time
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

args = sys.argv[1:]
if "--family" in args:
    sleeper = subprocess.Popen(["sleep", "1000"])
    with open(args[args.index("--family") + 1], "w") as f:
        f.write(str(sleeper.pid))
server = MCPServer("stubborn")


@server.tool()
def ping() -> str:
    """Answers pong."""
    return "pong"


@server.tool()
def write(path: str, text: str) -> str:
    """Write text to the file at path."""
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as exc:
        raise ToolError(f"cannot write {path}: {exc}")
    return f"wrote {path}"


server.run("stdio")
if "--stubborn" in args:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(1)
'''


def script_server(
    mark: str, where: Path, *flags: str, name: str = "own", **kw: Any
) -> McpServerConfig:
    """``SCRIPT`` (written to ``where``/server.py) as the stdio server ``name``."""
    where.mkdir(parents=True, exist_ok=True)
    script = where / "server.py"
    script.write_text(SCRIPT)
    return McpServerConfig(
        name, command=sys.executable, args=(str(script), *flags), env={MARK: mark}, **kw
    )
