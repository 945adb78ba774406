"""What ``[mcp.<server>]`` says, and how a server's tools are named (pure: no SDK import).

The config parser (``runtime/config.py``) builds :class:`McpServerConfig`; the manager runs it.
Tool names follow docs/design/mcp.md "Names": the config and the operator say
``<server>.<tool>``; the model sees a name every provider accepts (``[A-Za-z0-9_-]{1,64}``,
the intersection of OpenAI's and Anthropic's rules), the prefix's dots written ``__``.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "DEFAULT_IDLE_STOP_S",
    "DEFAULT_STARTUP_TIMEOUT_S",
    "DEFAULT_TIMEOUT_S",
    "MAX_WIRE_NAME",
    "McpServerConfig",
    "McpTransport",
    "SERVER_NAME",
    "wire_name",
    "wire_names",
]

#: Seconds one tool call may take before it is an isError result (and the server is told to
#: cancel it).
DEFAULT_TIMEOUT_S = 60.0
#: Seconds from spawning (or connecting) to a listed tool set; Python servers take 1-2 s.
DEFAULT_STARTUP_TIMEOUT_S = 30.0
#: Seconds without a call after which a server is stopped (0: never); restarted on next use.
DEFAULT_IDLE_STOP_S = 600.0
#: OpenAI's function names and Anthropic's tool names are ``^[a-zA-Z0-9_-]{1,64}$``.
MAX_WIRE_NAME = 64
#: Server names: what may stand before the first dot of an agent's tool name.
SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")

McpTransport = Literal["stdio", "http"]

_WIRE_CHAR = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class McpServerConfig:
    """One ``[mcp.<name>]`` table. Exactly one of ``command`` (stdio) and ``url`` (streamable
    HTTP) is set. ``env_from`` and ``headers_from`` name environment variables of the gateway
    that hold secrets; they are read when the server starts, never stored."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    env_from: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers_from: Mapping[str, str] = field(default_factory=dict)
    #: None: ``"<name>."``.
    prefix: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S
    idle_stop_s: float = DEFAULT_IDLE_STOP_S
    enabled: bool = True
    #: A stdio server run under bubblewrap (``exec``'s sandbox): its workspace (``cwd``, else
    #: ``<home>/mcp/<name>/``) writable, every other path read-only; never run without it.
    sandbox: bool = False
    #: With ``sandbox``: the server may reach the network (off by default, as for ``exec``).
    network: bool = False

    @property
    def transport(self) -> McpTransport:
        return "stdio" if self.command is not None else "http"

    @property
    def tool_prefix(self) -> str:
        return self.prefix if self.prefix is not None else f"{self.name}."

    @property
    def target(self) -> str:
        """The command line or the URL, as an operator reads it."""
        if self.command is not None:
            return shlex.join([self.command, *self.args])
        return self.url or ""

    def display_name(self, tool: str) -> str:
        """The name the operator reads and an agent's ``tools`` list uses for one tool."""
        return f"{self.name}.{tool}"

    def wire_name(self, tool: str) -> str:
        return wire_name(self.tool_prefix, tool)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def wire_name(prefix: str, tool: str) -> str:
    """The name a model sees for ``tool`` under ``prefix`` (Invariant MCP-I2): each ``.``
    becomes ``__`` and any other character outside ``[A-Za-z0-9_-]`` becomes ``_``; a name
    past 64 characters, or one that had to change in other ways, keeps 55 characters and a
    hash of the original, so two different tools never share a name. Pure."""
    raw = prefix + tool
    mapped = _WIRE_CHAR.sub(lambda m: "__" if m.group() == "." else "_", raw)
    lossy = _WIRE_CHAR.sub("", raw.replace(".", "")) != raw.replace(".", "")
    if len(mapped) <= MAX_WIRE_NAME and not lossy and mapped:
        return mapped
    return f"{mapped[:55]}_{_digest(raw)}"


def wire_names(prefix: str, tools: Iterable[str]) -> dict[str, str]:
    """``wire_name`` for each of a server's tools, by tool name, with no two alike: a tool
    whose mapped name another (earlier in sorted order) already has gets the hashed form."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for tool in sorted(set(tools)):
        name = wire_name(prefix, tool)
        if name in taken:
            name = f"{name[:55]}_{_digest(prefix + tool)}"
        taken.add(name)
        out[tool] = name
    return out
