"""Tools an agent may call: a small framework and built-ins that are safe by default.

A tool declares a JSON schema for its arguments and an async function. Anything that goes wrong
inside a tool (bad arguments, a path outside the workspace, a refused URL, an exception) becomes
a ``toolResult`` with ``isError`` — never a crash of the turn (docs/design/agent-runner.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ...errors import ConfigError
from ..providers import ToolSpec

__all__ = [
    "ApprovalDecision",
    "ApprovalRequest",
    "Approver",
    "Tool",
    "ToolContext",
    "ToolDenied",
    "ToolFailed",
    "ToolRegistry",
    "ToolSource",
    "builtin_tools",
    "check_arguments",
]

#: Tools built per agent from its own config (``config.agent_spec``), never registered.
PER_AGENT_TOOLS = ("exec",)

#: Reads and writes are bounded so one tool call cannot flood the context or the disk.
MAX_FILE_BYTES = 256 * 1024
MAX_HTTP_BYTES = 256 * 1024


class ToolFailed(Exception):
    """Raised by a tool to report an error to the model (becomes ``isError`` output)."""


class ToolDenied(ToolFailed):
    """Raised by a tool whose call a policy or an operator refused. The runner tells the model
    once; a turn that keeps asking for refused calls ends (docs/design/agent-runner.md)."""


@dataclass(frozen=True)
class ApprovalRequest:
    """What a tool asks an operator to allow, as the operator sees it."""

    tool: str
    #: One line: what would happen (for exec, the command).
    summary: str
    #: JSON-able details (for exec: argv, cwd, shell).
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ApprovalDecision:
    approved: bool
    #: Who decided: ``cli:<user>``, ``http``, ``dashboard``, ``timeout``, ``policy:<why>``.
    by: str
    reason: str = ""


#: Asks for an approval and waits for the decision (bounded by the approver).
Approver = Callable[[ApprovalRequest], Awaitable[ApprovalDecision]]


@dataclass(frozen=True)
class ToolContext:
    agent: str
    session_id: str
    run_id: str
    workspace: Path
    #: Hosts http_get may fetch from; empty (the default) refuses every URL.
    http_allow: frozenset[str] = frozenset()
    http_timeout_s: float = 20.0
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    #: Who approves calls an ``ask`` policy holds; None: nobody can, so they are denied.
    approve: Approver | None = None


ToolFn = Callable[[Mapping[str, Any], ToolContext], Awaitable[str]]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    run: ToolFn
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    #: How long one call may take; None: the agent's ``tool_timeout_s``.
    timeout_s: float | None = None

    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.parameters)


class ToolSource(Protocol):
    """Tools known only at run time (an MCP server's): asked once per turn, before the lease.

    ``tools`` never raises: a source that cannot list its tools logs why and returns what it
    can (tools whose calls report the failure as ``isError``)."""

    name: str

    async def tools(self) -> Sequence[Tool]: ...


def _is_json_type(value: object, want: str) -> bool:
    if want == "boolean":
        return isinstance(value, bool)
    if want in ("integer", "number"):
        numeric: tuple[type, ...] = (int,) if want == "integer" else (int, float)
        return isinstance(value, numeric) and not isinstance(value, bool)
    kinds: dict[str, type] = {"string": str, "object": dict, "array": list, "null": type(None)}
    kind = kinds.get(want)
    return kind is None or isinstance(value, kind)


def check_arguments(schema: Mapping[str, Any], args: object) -> str | None:
    """A problem with ``args`` against an object schema (required keys, property types,
    no unknown keys when additionalProperties is false), or None. Pure."""
    if not isinstance(args, dict):
        return f"arguments must be a JSON object, not {type(args).__name__}"
    props: Mapping[str, Any] = schema.get("properties", {})
    for key in schema.get("required", ()):
        if key not in args:
            return f"missing required argument {key!r}"
    for key, value in args.items():
        if key not in props:
            if schema.get("additionalProperties", True) is False:
                return f"unknown argument {key!r}"
            continue
        want = props[key].get("type")
        if isinstance(want, str) and not _is_json_type(value, want):
            return f"argument {key!r} must be {want}, not {type(value).__name__}"
    return None


# ---- built-ins ------------------------------------------------------------------------------


async def _current_time(args: Mapping[str, Any], ctx: ToolContext) -> str:
    zone = args.get("timezone") or "UTC"
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolFailed(
            f"unknown time zone {zone!r} (use an IANA name like Europe/Berlin)"
        ) from None
    return ctx.now().astimezone(tz).isoformat(timespec="seconds")


def _inside(ctx: ToolContext, rel: str) -> Path:
    """``rel`` resolved inside the workspace, symlinks included, or ToolFailed."""
    root = ctx.workspace.resolve()
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise ToolFailed(f"{rel!r} is outside the agent workspace")
    return target


def _read_prefix(path: Path, limit: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(limit)


async def _read_file(args: Mapping[str, Any], ctx: ToolContext) -> str:
    path = _inside(ctx, str(args["path"]))
    if path.is_dir():
        return "directory: " + ", ".join(sorted(os.listdir(path)))
    try:
        data = await asyncio.to_thread(_read_prefix, path, MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ToolFailed(f"no file {args['path']!r} in the workspace") from None
    text = data[:MAX_FILE_BYTES].decode("utf-8", "replace")
    return text + ("\n[truncated]" if len(data) > MAX_FILE_BYTES else "")


async def _write_file(args: Mapping[str, Any], ctx: ToolContext) -> str:
    content = str(args["content"])
    data = content.encode()
    if len(data) > MAX_FILE_BYTES:
        raise ToolFailed(f"content of {len(data)} bytes exceeds {MAX_FILE_BYTES}")
    path = _inside(ctx, str(args["path"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    # A new file of a random name (O_EXCL: never through a link a command planted), renamed
    # over the target (a rename replaces a link, never follows it): a reader never sees half a
    # file, and nothing outside the workspace is written.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return f"wrote {len(data)} bytes to {args['path']}"


async def _http_get(args: Mapping[str, Any], ctx: ToolContext) -> str:
    import httpx2  # only when the tool runs: 40 ms of import nobody else on this path needs

    url = str(args["url"])
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolFailed(f"{url!r} is not an http(s) URL")
    if parts.hostname not in ctx.http_allow:
        allowed = ", ".join(sorted(ctx.http_allow)) or "none (http_get is off by default)"
        raise ToolFailed(f"host {parts.hostname!r} is not allowed; allowed hosts: {allowed}")
    body = b""
    try:
        async with (
            httpx2.AsyncClient(timeout=ctx.http_timeout_s) as client,
            client.stream("GET", url, follow_redirects=False) as resp,
        ):
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > MAX_HTTP_BYTES:
                    break
    except httpx2.HTTPError as exc:
        raise ToolFailed(f"GET {url} failed: {exc.__class__.__name__}: {exc}") from exc
    text = body[:MAX_HTTP_BYTES].decode("utf-8", "replace")
    return f"HTTP {resp.status_code}\n{text}"


def builtin_tools() -> list[Tool]:
    path_arg = {"type": "string", "description": "path relative to the agent workspace"}
    return [
        Tool(
            "current_time",
            "The current date and time, in UTC or an IANA time zone.",
            _current_time,
            {
                "type": "object",
                "properties": {"timezone": {"type": "string"}},
                "additionalProperties": False,
            },
        ),
        Tool(
            "read_file",
            "Read a text file (or list a directory) inside the agent workspace.",
            _read_file,
            {
                "type": "object",
                "properties": {"path": path_arg},
                "required": ["path"],
                "additionalProperties": False,
            },
        ),
        Tool(
            "write_file",
            "Write a text file inside the agent workspace (replaces it whole).",
            _write_file,
            {
                "type": "object",
                "properties": {"path": path_arg, "content": {"type": "string"}},
                "required": ["path", "content"],
                "additionalProperties": False,
            },
        ),
        Tool(
            "http_get",
            "Fetch a URL with GET. Only hosts on the agent's allow-list (empty by default).",
            _http_get,
            {
                "type": "object",
                "properties": {"url": {"type": "string"}},
                "required": ["url"],
                "additionalProperties": False,
            },
        ),
    ]


class ToolRegistry:
    """The tools known to a gateway: the built-ins plus what plugins register."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in [*builtin_tools(), *tools]:
            self.register(tool)

    def __repr__(self) -> str:
        return f"<ToolRegistry {sorted(self._tools)}>"

    def register(self, tool: Tool) -> None:
        if tool.name in PER_AGENT_TOOLS:
            raise ValueError(f"{tool.name!r} is built per agent from its config; not registrable")
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool

    def names(self) -> list[str]:
        return sorted(self._tools)

    def select(self, allow: Sequence[str], *, where: str = "tools") -> dict[str, Tool]:
        """The allowed tools by name; an unknown name is a ConfigError naming it."""
        out = {}
        for name in allow:
            if name not in self._tools:
                known = ", ".join(sorted([*self.names(), *PER_AGENT_TOOLS]))
                raise ConfigError(f"unknown tool {name!r}; known tools: {known}", key=where)
            out[name] = self._tools[name]
        return out
