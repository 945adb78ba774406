"""The MCP manager: every configured server, started on first use, each run by one task.

The ``mcp`` SDK is anyio-based: a client context (``stdio_client``, ``streamable_http_client``,
``ClientSession``) must be entered and exited by the same task. So each running server has one
long-lived task (an *incarnation*) that owns its transport and session from connect to close and
serves calls sent to it through a memory stream, each call a future the caller awaits. The
incarnation also watches for the end of the connection (a crashed stdio server's stdout closes),
re-lists tools on ``notifications/tools/list_changed`` and stops itself after ``idle_stop_s``
without a call. See docs/design/mcp.md.

The SDK is imported only when a server starts: it costs about a second, and most CLI commands
never start one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from ...errors import McpFailureReason, McpServerError
from ..agent import Tool, ToolContext, ToolFailed, find_bwrap, sandbox_argv, sandbox_problem
from ..children import ChildRecord, ChildRegistry, end_group_blocking, find_child, group_alive
from ._config import McpServerConfig, wire_names

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
    from mcp import ClientSession

__all__ = [
    "MAX_RESULT_BYTES",
    "McpCallResult",
    "McpManager",
    "McpServerStatus",
    "McpState",
    "McpToolInfo",
    "McpToolSource",
    "render_result",
]

log = logging.getLogger("fencepost.mcp")

#: A tool's answer past this many bytes (UTF-8) is cut, and the cut said: one call cannot flood
#: the context (the same bound as read_file and http_get).
MAX_RESULT_BYTES = 256 * 1024
#: Descriptions longer than this are cut: they go into every model request.
MAX_DESCRIPTION_CHARS = 2000
#: Backoff after consecutive failures (failed starts, crashes): the first restart is at once,
#: then 1, 2, 4 ... seconds, at most this.
MAX_BACKOFF_S = 60.0
#: A server that ran at least this long before it crashed starts its backoff afresh.
BACKOFF_RESET_S = 60.0
#: How long ``aclose`` waits for the servers' own shutdown (the SDK closes stdin, waits 2 s,
#: then SIGTERMs the process group and SIGKILLs it 2 s later) before cancelling outright.
STOP_GRACE_S = 8.0
#: ``tools/list`` pages read at most: a paginator that never ends cannot hang a start.
MAX_LIST_PAGES = 100
#: A server's stderr log is rotated (one backup) when it passes this at a start.
MAX_STDERR_LOG_BYTES = 1024 * 1024
#: The end of a server's stderr quoted in a failure message.
STDERR_TAIL_CHARS = 400
#: The environment variable whose value (random, one per start) lets the manager find the
#: process the SDK spawned for a stdio server (docs/design/mcp.md "Child processes").
CHILD_MARK = "FENCEPOST_MCP_CHILD"

McpState = Literal["stopped", "starting", "running", "backoff", "disabled"]


@dataclass(frozen=True)
class McpToolInfo:
    """One tool a server offers: its own name, the name the model sees (``wire_name``) and the
    one the config and the operator use (``display_name``, ``<server>.<tool>``)."""

    server: str
    name: str
    wire_name: str
    display_name: str
    description: str
    parameters: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "parameters": dict(self.parameters)}


@dataclass(frozen=True)
class McpCallResult:
    text: str
    is_error: bool


@dataclass(frozen=True)
class McpServerStatus:
    """A server as ``fencepost mcp list`` and ``GET /api/mcp`` show it."""

    name: str
    transport: str
    target: str
    enabled: bool
    state: McpState
    #: Tools known from the last listing (kept while the server is stopped), or None.
    tools: int | None
    started_at: str | None
    starts: int
    crashes: int
    #: Consecutive failed starts and crashes (the backoff grows with it).
    failures: int
    last_error: str | None
    last_error_at: str | None
    retry_in_s: float | None
    in_flight: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def backoff_s(failures: int) -> float:
    """The wait before the next start after ``failures`` consecutive failures (0, 1, 2, 4...)."""
    if failures <= 1:
        return 0.0
    return min(MAX_BACKOFF_S, 2.0 ** (failures - 2))


def _describe(exc: BaseException) -> str:
    """One line for an exception, looking inside the groups anyio wraps failures in."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, McpServerError):
        return exc.detail
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def _cap(text: str, limit: int = MAX_RESULT_BYTES) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    kept = data[:limit].decode("utf-8", "ignore")
    return f"{kept}\n[truncated: {len(data) - limit} more bytes]"


def _b64_size(data: str | None) -> int:
    return len(data or "") * 3 // 4


def render_result(result: Any) -> McpCallResult:
    """A ``CallToolResult`` as the text the model reads (Invariant MCP-I5): text blocks joined
    by newlines, other blocks described in one line each, the structured content as JSON when
    there is no text, capped at ``MAX_RESULT_BYTES``. Pure."""
    parts: list[str] = []
    for block in getattr(result, "content", None) or ():
        kind = getattr(block, "type", None)
        if kind == "text":
            parts.append(block.text)
        elif kind in ("image", "audio"):
            parts.append(f"[{kind}: {block.mime_type}, {_b64_size(block.data)} bytes]")
        elif kind == "resource_link":
            parts.append(f"[resource link: {block.name} {block.uri}]")
        elif kind == "resource":
            res = block.resource
            if getattr(res, "text", None) is not None:
                parts.append(f"[resource {res.uri}]\n{res.text}")
            else:
                mime = getattr(res, "mime_type", None) or "binary"
                parts.append(f"[resource {res.uri}: {mime}, {_b64_size(res.blob)} bytes]")
        else:
            parts.append(f"[{kind or 'unknown'} content]")
    structured = getattr(result, "structured_content", None)
    if not parts and structured is not None:
        parts.append(json.dumps(structured, ensure_ascii=False, default=str))
    return McpCallResult(_cap("\n".join(parts)), bool(getattr(result, "is_error", False)))


class _EofWatch:
    """A transport's read stream that says when it ended: for stdio, the server's stdout closed
    (it exited or was killed). The SDK's dispatcher reads through it."""

    def __init__(self, inner: Any, ended: Any) -> None:
        self._inner = inner
        self._ended = ended

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        import anyio

        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._ended.set()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> _EofWatch:
        return self

    async def __anext__(self) -> Any:
        import anyio

        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _EofWatch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _StderrLog:
    """Where a stdio server's stderr goes: ``<log_dir>/<server>.log`` (appended; rotated once
    past ``MAX_STDERR_LOG_BYTES``) or a temporary file; its tail explains a failed start."""

    def __init__(self, log_dir: Path | None, server: str) -> None:
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            path = log_dir / f"{server}.log"
            with suppress(OSError):
                if path.stat().st_size > MAX_STDERR_LOG_BYTES:
                    os.replace(path, path.with_suffix(".log.1"))
            self.file: TextIO = open(path, "a+", encoding="utf-8", errors="replace")  # noqa: SIM115
        else:
            self.file = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        self.file.seek(0, os.SEEK_END)
        self.start = self.file.tell()

    def tail(self) -> str:
        try:
            with open(self.file.fileno(), "rb", closefd=False) as raw:
                raw.seek(self.start)
                text = raw.read().decode("utf-8", "replace")
        except OSError:
            return ""
        lines = [line for line in text.strip().splitlines() if line.strip()]
        return " | ".join(lines)[-STDERR_TAIL_CHARS:]

    def close(self) -> None:
        self.file.close()


class _Call:
    __slots__ = ("arguments", "future", "tool")

    def __init__(self, tool: str, arguments: dict[str, Any], future: asyncio.Future[Any]) -> None:
        self.tool = tool
        self.arguments = arguments
        self.future = future


#: Items of a server's request stream besides calls.
_WAKE = "wake"  # a call ended: look at idleness and retirement again
_REFRESH = "refresh"  # the server said its tool list changed
#: The result of a call the incarnation never handed to the server (it ended first): safe to
#: send again to the next incarnation.
_NOT_SENT = object()


class _Server:
    """One configured server: what is known about it, and its incarnation while it runs."""

    def __init__(self, config: McpServerConfig) -> None:
        self.config = config
        self.task: asyncio.Task[None] | None = None
        #: Set while a start is under way; callers wait on it.
        self.ready: asyncio.Future[None] | None = None
        self.send: MemoryObjectSendStream[Any] | None = None
        self.stop_scope: Any = None
        self.stop_reason: str | None = None
        #: The last listing; kept across stops, so a turn's tool list does not start a server.
        self.tools: tuple[McpToolInfo, ...] | None = None
        self.running = False
        self.retired = False
        self.in_flight = 0
        self.last_used = 0.0
        self.started_at: str | None = None
        self.started_mono = 0.0
        self.starts = 0
        self.crashes = 0
        self.failures = 0
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self.retry_at = 0.0

    def stop(self, reason: str) -> None:
        self.stop_reason = reason
        if self.stop_scope is not None:
            self.stop_scope.cancel()

    def wake(self) -> None:
        if self.send is not None:
            with suppress(Exception):
                self.send.send_nowait(_WAKE)


class McpManager:
    """The gateway's MCP servers (docs/design/mcp.md). Construct it with the ``[mcp.*]``
    tables (no process starts); ``source`` binds an agent's selection; ``aclose`` stops every
    server. ``log_dir`` receives each stdio server's stderr (None: temporary files);
    ``children`` records each stdio server's process while it runs (``StatePaths.children``;
    None: not recorded); ``work_dir`` holds the workspaces of sandboxed servers without a
    ``cwd`` (``StatePaths.mcp_work``; None: under the system's temporary directory)."""

    def __init__(
        self,
        servers: Mapping[str, McpServerConfig],
        *,
        log_dir: Path | None = None,
        children: ChildRegistry | None = None,
        work_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._servers = {name: _Server(cfg) for name, cfg in servers.items()}
        self._retired: list[_Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._log_dir = log_dir
        self._children = children
        self._work_dir = work_dir
        #: (bwrap, workspace, network) settings whose sandbox was seen to start.
        self._sandbox_ok: set[tuple[str, str, bool]] = set()
        self._clock = clock

    def __repr__(self) -> str:
        running = sorted(n for n, s in self._servers.items() if s.running)
        return f"<McpManager servers={sorted(self._servers)} running={running}>"

    @property
    def servers(self) -> Mapping[str, McpServerConfig]:
        return {name: srv.config for name, srv in self._servers.items()}

    def configure(self, servers: Mapping[str, McpServerConfig]) -> None:
        """Apply a reloaded ``[mcp.*]``: a server whose table changed or went is retired (its
        calls in flight finish, then it stops); new calls start the new one. Synchronous."""
        for name, srv in list(self._servers.items()):
            if servers.get(name) == srv.config:
                continue
            del self._servers[name]
            if srv.task is not None and not srv.task.done():
                srv.retired = True
                self._retired.append(srv)
                if srv.in_flight == 0:
                    srv.stop("reconfigured")
                else:
                    srv.wake()
        for name, cfg in servers.items():
            self._servers.setdefault(name, _Server(cfg))

    def source(self, server: str, select: Sequence[str] | None = None) -> McpToolSource:
        """The ``ToolSource`` of ``server``'s tools for one agent: those named in ``select``
        (tool names as the server spells them), or all of them when None. A server this
        manager does not have yet (a reload binds agents before it configures the manager) is
        looked up at each call: until it is configured, it offers nothing."""
        return McpToolSource(self, server, None if select is None else frozenset(select))

    def _get(self, server: str) -> _Server:
        srv = self._servers.get(server)
        if srv is None:
            raise McpServerError(server, "not_configured", "no such server in [mcp]")
        if not srv.config.enabled:
            raise McpServerError(server, "disabled", f"disabled (mcp.{server}.enabled = false)")
        return srv

    def status(self) -> list[McpServerStatus]:
        now = self._clock()
        out = []
        for name, srv in sorted(self._servers.items()):
            cfg = srv.config
            state: McpState
            if not cfg.enabled:
                state = "disabled"
            elif srv.running:
                state = "running"
            elif srv.ready is not None:
                state = "starting"
            elif now < srv.retry_at:
                state = "backoff"
            else:
                state = "stopped"
            out.append(
                McpServerStatus(
                    name=name,
                    transport=cfg.transport,
                    target=cfg.target,
                    enabled=cfg.enabled,
                    state=state,
                    tools=None if srv.tools is None else len(srv.tools),
                    started_at=srv.started_at if srv.running else None,
                    starts=srv.starts,
                    crashes=srv.crashes,
                    failures=srv.failures,
                    last_error=srv.last_error,
                    last_error_at=srv.last_error_at,
                    retry_in_s=round(srv.retry_at - now, 3) if now < srv.retry_at else None,
                    in_flight=srv.in_flight,
                )
            )
        return out

    # ---- use ---------------------------------------------------------------------------------

    async def tools(self, server: str, *, fresh: bool = False) -> tuple[McpToolInfo, ...]:
        """``server``'s tools: the last listing if there is one (a stopped server is not
        started for it), else started and listed. ``fresh`` starts it if it is not running."""
        srv = self._get(server)
        if srv.tools is not None and not fresh:
            return srv.tools  # Invariant MCP-I3: a known listing starts nothing
        await self._started(srv)
        assert srv.tools is not None
        return srv.tools

    async def call(self, server: str, tool: str, arguments: Mapping[str, Any]) -> McpCallResult:
        """Call ``tool`` on ``server``, starting it if needed. The tool's own ``isError`` is
        the result's ``is_error``; anything else that goes wrong is an McpServerError."""
        # Invariant MCP-I12: a call the server never saw is sent again, once, to a new start;
        # one the SDK took is never sent again.
        for _ in range(2):
            srv = self._get(server)
            await self._started(srv)
            send = srv.send
            if send is None:
                continue
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            srv.last_used = self._clock()
            try:
                send.send_nowait(_Call(tool, dict(arguments), future))
            except Exception:
                continue  # the incarnation just ended: start another
            got = await future
            if got is _NOT_SENT:
                continue
            return render_result(got)
        raise McpServerError(server, "crashed", "the server ended twice before taking the call")

    async def _started(self, srv: _Server) -> None:
        """Start ``srv`` unless it runs (once for any number of callers), honouring backoff."""
        name = srv.config.name
        if self._closed:
            raise McpServerError(name, "stopped", "the gateway is shutting down")
        if srv.running:
            return
        if srv.ready is None:
            wait = srv.retry_at - self._clock()
            if wait > 0:
                raise McpServerError(
                    name,
                    "backoff",
                    f"failed {srv.failures} time(s) in a row, last: {srv.last_error}; the next "
                    f"start is allowed in {wait:.0f} s",
                )
            loop = asyncio.get_running_loop()
            ready: asyncio.Future[None] = loop.create_future()
            ready.add_done_callback(lambda f: f.cancelled() or f.exception())
            srv.ready, srv.stop_reason, srv.retired = ready, None, False
            task = loop.create_task(self._incarnation(srv, ready), name=f"mcp:{name}")
            srv.task = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.shield(srv.ready)

    # ---- the incarnation: one task owns one connection ----------------------------------------

    async def _incarnation(self, srv: _Server, ready: asyncio.Future[None]) -> None:
        import anyio

        cfg = srv.config
        send, recv = anyio.create_memory_object_stream[Any](math.inf)
        srv.send = send
        srv.starts += 1
        started = False
        outcome: dict[str, str] = {}
        failure: str | None = None
        stderr = _StderrLog(self._log_dir, cfg.name) if cfg.command is not None else None
        try:
            with anyio.CancelScope() as stop_scope:
                srv.stop_scope = stop_scope
                if srv.stop_reason is not None:  # stopped before it ran
                    stop_scope.cancel()
                deadline = anyio.current_time() + cfg.startup_timeout_s
                with anyio.CancelScope(deadline=deadline) as life:
                    async with AsyncExitStack() as stack:
                        ended = anyio.Event()
                        session = await self._connect(stack, cfg, stderr, ended, send)
                        await session.initialize()
                        srv.tools = await self._list(session, cfg)
                        # Invariant MCP-I11: listed in time; from here on the server lives until
                        # its connection or its stop scope ends; the start deadline is lifted.
                        life.deadline = math.inf
                        started = True
                        srv.running, srv.started_at = True, _now_iso()
                        srv.started_mono = srv.last_used = self._clock()
                        ready.set_result(None)
                        log.info(
                            "MCP server %r started (%s %s): %d tools",
                            cfg.name,
                            cfg.transport,
                            cfg.target,
                            len(srv.tools),
                            extra={"action": "mcp", "status": "started"},
                        )
                        await self._serve(srv, session, recv, ended, outcome)
                if life.cancelled_caught and not started:
                    failure = f"did not start within {cfg.startup_timeout_s:g} s"
        except Exception as exc:
            failure = _describe(exc)
        finally:
            srv.running = False
            srv.send = srv.stop_scope = srv.ready = None
            send.close()
            while True:  # calls it never handed to the server go to the next start
                try:
                    item = recv.receive_nowait()
                except Exception:
                    break
                if isinstance(item, _Call) and not item.future.done():
                    item.future.set_result(_NOT_SENT)
            recv.close()
            tail = stderr.tail() if stderr is not None else ""
            if stderr is not None:
                stderr.close()
            if srv in self._retired:
                self._retired.remove(srv)
            self._settle(srv, ready, started, failure, outcome.get("reason"), tail)

    def _settle(
        self,
        srv: _Server,
        ready: asyncio.Future[None],
        started: bool,
        failure: str | None,
        reason: str | None,
        tail: str,
    ) -> None:
        """Record how an incarnation ended: one log line per failure, the backoff, and the
        error every caller still waiting gets."""
        name = srv.config.name
        now = self._clock()
        stopping = srv.stop_reason is not None
        if not started:
            if stopping and failure is None:
                failure = f"stopped while starting ({srv.stop_reason})"
            detail = failure or "the server ended before it listed its tools"
            if tail:
                detail += f"; stderr: {tail}"
            if not stopping:
                self._failed(srv, detail, now)
                log.warning(
                    "MCP server %r failed to start (%s %s): %s; %s",
                    name,
                    srv.config.transport,
                    srv.config.target,
                    detail,
                    self._next_start(srv, now),
                    extra={"action": "mcp", "status": "start_failed"},
                )
            if not ready.done():
                reason_code: McpFailureReason = "stopped" if stopping else "start_failed"
                ready.set_exception(McpServerError(name, reason_code, f"did not start: {detail}"))
            return
        if stopping or reason in ("idle", "reconfigured"):
            srv.failures = 0
            log.info(
                "MCP server %r stopped (%s)",
                name,
                srv.stop_reason or reason,
                extra={"action": "mcp", "status": "stopped"},
            )
            return
        detail = failure or "the connection ended (the server exited)"
        if tail:
            detail += f"; stderr: {tail}"
        srv.crashes += 1
        if now - srv.started_mono >= BACKOFF_RESET_S:
            srv.failures = 0
        self._failed(srv, detail, now)
        log.warning(
            "MCP server %r crashed: %s; %s",
            name,
            detail,
            self._next_start(srv, now),
            extra={"action": "mcp", "status": "crashed"},
        )

    def _failed(self, srv: _Server, detail: str, now: float) -> None:
        srv.failures += 1
        srv.last_error, srv.last_error_at = detail, _now_iso()
        # Invariant MCP-I6: consecutive failures space the next starts out.
        srv.retry_at = now + backoff_s(srv.failures)

    @staticmethod
    def _next_start(srv: _Server, now: float) -> str:
        wait = srv.retry_at - now
        return "restarts on next use" if wait <= 0 else f"next start allowed in {wait:.0f} s"

    async def _connect(
        self,
        stack: AsyncExitStack,
        cfg: McpServerConfig,
        stderr: _StderrLog | None,
        ended: Any,
        send: MemoryObjectSendStream[Any],
    ) -> ClientSession:
        import mcp
        from mcp import ClientSession, StdioServerParameters, stdio_client

        from ... import __version__

        if cfg.command is not None:
            assert stderr is not None
            env = dict(cfg.env)
            for var, source in cfg.env_from.items():
                env[var] = self._secret(cfg, source, f"env_from.{var}")
            argv, cwd = [cfg.command, *cfg.args], cfg.cwd
            if cfg.sandbox:
                cwd = self._workspace(cfg)
                argv = await self._sandboxed(cfg, argv, cwd)
            mark = uuid.uuid4().hex
            env[CHILD_MARK] = mark
            params = StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd=cwd)
            held: list[ChildRecord] = []
            # Left after stdio_client (an exit stack unwinds last in, first out): the SDK's own
            # stop first, then whatever of the group outlived it, then the record.
            stack.push_async_callback(self._forget, held)
            try:
                read, write = await stack.enter_async_context(
                    stdio_client(params, errlog=stderr.file)
                )
            except OSError as exc:
                why = exc.strerror or str(exc)
                raise McpServerError(
                    cfg.name, "start_failed", f"cannot run {argv[0]!r}: {why}"
                ) from exc
            self._record(cfg, argv, mark, held)
        else:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            headers = {
                header: self._secret(cfg, source, f"headers_from.{header}")
                for header, source in cfg.headers_from.items()
            }
            read_s = max(300.0, cfg.timeout_s + 30.0)
            client = await stack.enter_async_context(
                httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=read_s))
            )
            assert cfg.url is not None
            read, write = await stack.enter_async_context(
                streamable_http_client(cfg.url, http_client=client)
            )

        async def on_message(message: Any) -> None:
            if isinstance(message, mcp.types.ToolListChangedNotification):
                with suppress(Exception):
                    send.send_nowait(_REFRESH)

        return await stack.enter_async_context(
            ClientSession(
                _EofWatch(read, ended),
                write,
                message_handler=on_message,
                client_info=mcp.types.Implementation(name="fencepost", version=__version__),
            )
        )

    def _record(
        self, cfg: McpServerConfig, argv: Sequence[str], mark: str, held: list[ChildRecord]
    ) -> None:
        """Invariant MCP-I13: the process the SDK just spawned (in a session of its own, so
        the leader of its own process group) is found by its mark and recorded in the child
        registry, with nothing awaited between finding and recording."""
        if self._children is None:
            return
        pid = find_child(CHILD_MARK, mark)
        if pid is None:
            return  # exited already: nothing left to reap
        about = {"server": cfg.name, "sandbox": "yes" if cfg.sandbox else "no"}
        held.append(self._children.add(pid, argv, "mcp", pgid=pid, about=about))

    async def _forget(self, held: list[ChildRecord]) -> None:
        """After the SDK's stop: end what is left of the server's process group (a leader that
        exited on end-of-file may leave children behind), then drop its record. Shielded: it
        runs while the incarnation is being cancelled."""
        import anyio
        from anyio import to_thread

        if not held or self._children is None:
            return
        record = held[0]
        try:
            if group_alive(record.pgid):
                with anyio.CancelScope(shield=True):
                    await to_thread.run_sync(end_group_blocking, record.pgid)
        finally:
            if group_alive(record.pgid):  # a native cancel cut the wait short
                end_group_blocking(record.pgid, 0.0)
            if not group_alive(record.pgid):
                self._children.remove(record)

    def _workspace(self, cfg: McpServerConfig) -> str:
        """A sandboxed server's writable directory: its ``cwd``, else one of its own."""
        if cfg.cwd is not None:
            return cfg.cwd
        root = self._work_dir or Path(tempfile.gettempdir()) / f"fencepost-mcp-{os.getuid()}"
        path = root / cfg.name
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    async def _sandboxed(self, cfg: McpServerConfig, argv: list[str], workspace: str) -> list[str]:
        """Invariant MCP-I14: ``sandbox = true`` runs the server under exec's bubblewrap
        sandbox or not at all: a missing or failing ``bwrap`` fails the start."""
        key = f"mcp.{cfg.name}.sandbox = true"
        bwrap = find_bwrap()
        if bwrap is None:
            raise McpServerError(
                cfg.name,
                "start_failed",
                f"{key} but bubblewrap (bwrap) is not installed, so the server was not started "
                "(the operator can install it: apt-get install bubblewrap)",
            )
        probe = (bwrap, workspace, cfg.network)
        if probe not in self._sandbox_ok:
            problem = await sandbox_problem(bwrap, workspace, cfg.network)
            if problem is not None:
                raise McpServerError(
                    cfg.name,
                    "start_failed",
                    f"{key} but the sandbox cannot start here, so the server was not started: "
                    f"{problem}",
                )
            self._sandbox_ok.add(probe)
        return sandbox_argv(bwrap, workspace, argv, network=cfg.network)

    @staticmethod
    def _secret(cfg: McpServerConfig, variable: str, key: str) -> str:
        """Invariant MCP-I10: a secret comes from the gateway's environment, at each start."""
        value = os.environ.get(variable)
        if value is None:
            raise McpServerError(
                cfg.name,
                "start_failed",
                f"the environment variable {variable} (mcp.{cfg.name}.{key}) is not set in the "
                "gateway's environment",
            )
        return value

    async def _list(self, session: ClientSession, cfg: McpServerConfig) -> tuple[McpToolInfo, ...]:
        from mcp.types import PaginatedRequestParams

        found: list[Any] = []
        cursor: str | None = None
        for _ in range(MAX_LIST_PAGES):
            params = None if cursor is None else PaginatedRequestParams(cursor=cursor)
            page = await session.list_tools(params=params)
            found += page.tools
            cursor = page.next_cursor
            if not cursor:
                break
        names = wire_names(cfg.tool_prefix, [t.name for t in found])
        out = []
        for t in sorted(found, key=lambda t: t.name):
            schema = dict(t.input_schema or {})
            schema.setdefault("type", "object")
            description = (t.description or t.title or "").strip()[:MAX_DESCRIPTION_CHARS]
            out.append(
                McpToolInfo(
                    server=cfg.name,
                    name=t.name,
                    wire_name=names[t.name],
                    display_name=cfg.display_name(t.name),
                    description=description,
                    parameters=schema,
                )
            )
        return tuple(out)

    async def _serve(
        self,
        srv: _Server,
        session: ClientSession,
        recv: MemoryObjectReceiveStream[Any],
        ended: Any,
        outcome: dict[str, str],
    ) -> None:
        import anyio

        idle_s = srv.config.idle_stop_s
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                await ended.wait()
                outcome.setdefault("reason", "crashed")
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            while True:
                wait = math.inf
                if idle_s > 0 and srv.in_flight == 0:
                    wait = max(0.0, srv.last_used + idle_s - self._clock())
                item: Any = None
                with anyio.move_on_after(wait):
                    item = await recv.receive()
                if item is None or item == _WAKE:
                    if srv.in_flight == 0 and (
                        srv.retired or (idle_s > 0 and self._clock() - srv.last_used >= idle_s)
                    ):
                        # Invariant MCP-I7: idle past idle_stop_s (or retired by a reload), no
                        # call in flight: stop; the next call starts it again.
                        outcome["reason"] = "reconfigured" if srv.retired else "idle"
                        tg.cancel_scope.cancel()
                        return
                elif isinstance(item, _Call):
                    if item.future.done():  # its caller gave up while it waited
                        continue
                    srv.in_flight += 1
                    srv.last_used = self._clock()
                    tg.start_soon(self._serve_call, srv, session, item)
                elif item == _REFRESH:
                    tg.start_soon(self._refresh, srv, session)

    async def _serve_call(self, srv: _Server, session: ClientSession, call: _Call) -> None:
        import anyio
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        name = srv.config.name
        future = call.future
        try:
            with anyio.CancelScope() as scope:
                # The caller gave up (its turn was cancelled or timed out): stop waiting, and
                # the SDK tells the server to cancel the request.
                future.add_done_callback(lambda f: scope.cancel() if f.cancelled() else None)
                result = await session.call_tool(
                    call.tool, call.arguments, read_timeout_seconds=srv.config.timeout_s
                )
                if not future.done():
                    future.set_result(result)
        except MCPError as exc:
            if not future.done():
                if exc.code == REQUEST_TIMEOUT:
                    why: McpFailureReason = "timeout"
                    text = f"{call.tool} took longer than {srv.config.timeout_s:g} s"
                elif exc.code == CONNECTION_CLOSED:
                    why, text = (
                        "crashed",
                        (
                            f"the connection ended during {call.tool} (the server may have "
                            "crashed; it restarts on next use)"
                        ),
                    )
                else:
                    why, text = "refused", f"{call.tool} was refused: {exc.message}"
                future.set_exception(McpServerError(name, why, text))
        except Exception as exc:
            if not future.done():
                future.set_exception(
                    McpServerError(name, "refused", f"{call.tool} failed: {_describe(exc)}")
                )
        finally:
            srv.in_flight -= 1
            srv.last_used = self._clock()
            if not future.done():
                why_stopped = srv.stop_reason or "the connection ended"
                future.set_exception(
                    McpServerError(
                        name, "stopped", f"the server stopped during {call.tool} ({why_stopped})"
                    )
                )
            srv.wake()

    async def _refresh(self, srv: _Server, session: ClientSession) -> None:
        """Invariant MCP-I8: the tool list follows ``notifications/tools/list_changed``."""
        try:
            tools = await self._list(session, srv.config)
        except Exception as exc:
            log.warning(
                "MCP server %r said its tools changed, but listing them failed: %s",
                srv.config.name,
                _describe(exc),
                extra={"action": "mcp", "status": "list_failed"},
            )
            return
        srv.tools = tools
        log.info(
            "MCP server %r changed its tools: %d now",
            srv.config.name,
            len(tools),
            extra={"action": "mcp", "status": "tools_changed"},
        )

    # ---- shutdown ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop every server (Invariant MCP-I9) and refuse new starts. Idempotent."""
        self._closed = True
        for srv in [*self._servers.values(), *self._retired]:
            srv.stop("shutdown")
        tasks = list(self._tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=STOP_GRACE_S)

    async def __aenter__(self) -> McpManager:
        return self

    @staticmethod
    def quiet() -> contextlib.AbstractContextManager[None]:
        """Log lines off while it lasts (a CLI command that reports the failure itself)."""
        return _Quiet()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _Quiet(contextlib.AbstractContextManager[None]):
    def __enter__(self) -> None:
        self.was = log.disabled
        log.disabled = True

    def __exit__(self, *exc: object) -> None:
        log.disabled = self.was


class McpToolSource:
    """One agent's tools from one server: a ``ToolSource`` (runtime/agent/_tools.py).

    Invariant MCP-I4: ``tools()`` never raises, and a tool's failure is a ToolFailed (an
    ``isError`` result): a server that cannot list its tools gives stand-in tools whose calls
    try again and report why they cannot run."""

    def __init__(self, manager: McpManager, server: str, select: frozenset[str] | None) -> None:
        self.manager = manager
        self.server = server
        self.select = select
        self.name = f"mcp:{server}"
        self._warned: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        what = "*" if self.select is None else ",".join(sorted(self.select))
        return f"<McpToolSource {self.server}.{{{what}}}>"

    async def tools(self) -> Sequence[Tool]:
        try:
            infos = await self.manager.tools(self.server)
        except McpServerError as exc:
            if exc.reason in ("disabled", "not_configured"):
                return []
            return self._unavailable(exc)
        except Exception as exc:  # a ToolSource never raises
            log.exception("listing the tools of MCP server %r failed", self.server)
            return self._unavailable(McpServerError(self.server, "refused", _describe(exc)))
        chosen = [i for i in infos if self.select is None or i.name in self.select]
        if self.select is not None:
            missing = self.select - {i.name for i in infos}
            if missing and missing != self._warned:
                self._warned = frozenset(missing)
                log.warning(
                    "MCP server %r does not offer %s (it offers: %s)",
                    self.server,
                    ", ".join(sorted(missing)),
                    ", ".join(i.name for i in infos) or "nothing",
                    extra={"action": "mcp", "status": "unknown_tool"},
                )
        return [self._tool(i) for i in chosen]

    def _tool(self, info: McpToolInfo) -> Tool:
        manager, server, display = self.manager, self.server, info.display_name

        async def run(args: Mapping[str, Any], ctx: ToolContext) -> str:
            try:
                result = await manager.call(server, info.name, args)
            except McpServerError as exc:
                raise ToolFailed(str(exc)) from None
            if result.is_error:
                raise ToolFailed(result.text or f"{display} reported an error")
            return result.text

        cfg = manager.servers.get(server)
        return Tool(
            info.wire_name,
            info.description or display,
            run,
            info.parameters,
            timeout_s=cfg.timeout_s if cfg is not None else None,
        )

    def _unavailable(self, exc: McpServerError) -> list[Tool]:
        """Tools that stand in for a server that cannot list its tools: the selected ones by
        name, or one ``<prefix>unavailable`` for ``<server>.*``. A call tries again."""
        cfg = self.manager.servers.get(self.server)
        if cfg is None:
            return []
        why = str(exc)
        names = sorted(self.select) if self.select is not None else ["unavailable"]
        wires = wire_names(cfg.tool_prefix, names)
        out = []
        for tool in names:

            async def run(args: Mapping[str, Any], ctx: ToolContext, tool: str = tool) -> str:
                if self.select is None:  # nothing to call: say why, after one more try
                    try:
                        await self.manager.tools(self.server, fresh=True)
                    except McpServerError as again:
                        raise ToolFailed(str(again)) from None
                    raise ToolFailed(
                        f"MCP server {self.server!r} is back; its tools are offered from the "
                        "next turn"
                    )
                try:
                    result = await self.manager.call(self.server, tool, args)
                except McpServerError as again:
                    raise ToolFailed(str(again)) from None
                if result.is_error:
                    raise ToolFailed(result.text)
                return result.text

            out.append(
                Tool(
                    wires[tool],
                    f"{cfg.display_name(tool)} (unavailable: {why})",
                    run,
                    {"type": "object"},
                    timeout_s=cfg.timeout_s,
                )
            )
        return out
