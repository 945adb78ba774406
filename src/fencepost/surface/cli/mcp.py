"""``fencepost mcp list`` and ``fencepost mcp tools SERVER`` (docs/design/mcp.md).

``list`` reads the config and, when a gateway runs on the home, asks it for each server's state
(``GET /api/mcp``, which starts nothing). ``tools`` starts the server itself, lists its tools
and stops it: it needs no gateway, and the ``mcp`` SDK is imported only then.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from ...errors import ConfigError
from . import _render
from ._options import config_option, home_option
from ._render import Col

__all__ = ["mcp"]

STATE_STYLE = {
    "running": "green",
    "starting": "cyan",
    "backoff": "red",
    "stopped": "",
    "disabled": "dim",
}


@click.group()
def mcp() -> None:
    """MCP servers: what is configured, what runs, what each offers."""


def _config(home: Path | None, config: str | None) -> tuple[Any, Any]:
    from ...runtime.config import StatePaths, default_home, state_config

    paths = StatePaths(home or default_home())
    return paths, state_config(paths, config)


@mcp.command("list")
@home_option
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_servers(home: Path | None, config: str | None, as_json: bool) -> None:
    """The configured MCP servers and, when a gateway runs here, their state."""
    from ._client import GatewayClient

    paths, cfg = _config(home, config)
    client = GatewayClient.find(paths, config)
    live: dict[str, dict[str, Any]] = {}
    if client is not None:
        got = client.request("GET", "api/mcp")
        live = {s["name"]: s for s in got.get("servers", []) if isinstance(s, dict)}
    rows = []
    for name, server in sorted(cfg.mcp.items()):
        row: dict[str, Any] = {
            "name": name,
            "transport": server.transport,
            "target": server.target,
            "enabled": server.enabled,
            "prefix": server.tool_prefix,
            "gateway": live.get(name),
        }
        rows.append(row)
    if as_json:
        click.echo(
            json.dumps(
                {"gateway_running": client is not None, "servers": rows},
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    if not rows:
        click.echo(
            f"no MCP servers configured in {cfg.path or 'the config'} (add an [mcp.<name>] "
            "table: docs/reference/config.md)"
        )
        return
    table = []
    for row in rows:
        state = row["gateway"] or {}
        word = state.get("state") or ("disabled" if not row["enabled"] else "-")
        error = state.get("last_error") or ""
        table.append(
            [
                row["name"],
                row["transport"],
                row["target"],
                "yes" if row["enabled"] else "no",
                Text(word, style=STATE_STYLE.get(word, "")),
                "" if state.get("tools") is None else str(state["tools"]),
                error,
            ]
        )
    where = (
        f"gateway pid {client.pid}" if client is not None else "no gateway running: state unknown"
    )
    _render.table(
        [
            Col("server"),
            Col("transport"),
            Col("command / url", wrap=True, min_width=16),
            Col("enabled"),
            Col("state"),
            Col("tools", drop=1),
            Col("last error", drop=2, wrap=True, min_width=16),
        ],
        table,
        title=f"{len(rows)} MCP server(s) ({where})",
    )


@mcp.command("tools")
@click.argument("server")
@home_option
@config_option
@click.option("--json", "as_json", is_flag=True, help="Tools with their input schemas.")
def tools(server: str, home: Path | None, config: str | None, as_json: bool) -> None:
    """Start SERVER, list the tools it offers with their descriptions, and stop it."""
    from dataclasses import replace

    from ...runtime.children import ChildRegistry
    from ...runtime.mcp import McpManager

    paths, cfg = _config(home, config)
    if server not in cfg.mcp:
        known = ", ".join(sorted(cfg.mcp)) or "none"
        raise ConfigError(f"no MCP server named {server!r}; configured: {known}", key="mcp")
    chosen = cfg.mcp[server]
    note = ""
    if not chosen.enabled:
        chosen = replace(chosen, enabled=True)
        note = f" (disabled in the config: agents get none of them; mcp.{server}.enabled)"

    async def listing() -> Any:
        # The failure is this command's error message: no log line besides it.
        with McpManager.quiet():
            async with McpManager(
                {server: chosen}, children=ChildRegistry(paths.children), work_dir=paths.mcp_work
            ) as manager:
                return await manager.tools(server, fresh=True)

    found = asyncio.run(listing())
    if as_json:
        click.echo(json.dumps([t.to_json() for t in found], indent=2, ensure_ascii=False))
        return
    _render.table(
        [
            Col("tool (in agents' tools)", wrap=True, min_width=12),
            Col("the model sees", drop=2, wrap=True, min_width=12),
            Col("description", drop=1, wrap=True, min_width=20),
        ],
        [[t.display_name, t.wire_name, t.description.splitlines()[0] if t.description else ""]
         for t in found],
        title=f"{server}: {len(found)} tool(s) from {chosen.target}{note}",
    )  # fmt: skip
