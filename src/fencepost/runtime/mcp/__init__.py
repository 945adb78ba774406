"""MCP servers' tools for agents, through the official ``mcp`` SDK (docs/design/mcp.md).

``[mcp.<server>]`` tables become :class:`McpServerConfig`; the gateway's :class:`McpManager`
starts each server on first use, restarts it with backoff after a crash, follows its tool list,
stops it when idle and at shutdown; :class:`McpToolSource` is one agent's selection as a
``ToolSource``. Importing this package does not import the SDK.
"""

from ._config import (
    DEFAULT_IDLE_STOP_S,
    DEFAULT_STARTUP_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    MAX_WIRE_NAME,
    SERVER_NAME,
    McpServerConfig,
    McpTransport,
    wire_name,
    wire_names,
)
from ._manager import (
    MAX_RESULT_BYTES,
    McpCallResult,
    McpManager,
    McpServerStatus,
    McpState,
    McpToolInfo,
    McpToolSource,
    render_result,
)

__all__ = [
    "DEFAULT_IDLE_STOP_S",
    "DEFAULT_STARTUP_TIMEOUT_S",
    "DEFAULT_TIMEOUT_S",
    "MAX_RESULT_BYTES",
    "MAX_WIRE_NAME",
    "SERVER_NAME",
    "McpCallResult",
    "McpManager",
    "McpServerConfig",
    "McpServerStatus",
    "McpState",
    "McpToolInfo",
    "McpToolSource",
    "McpTransport",
    "render_result",
    "wire_name",
    "wire_names",
]
