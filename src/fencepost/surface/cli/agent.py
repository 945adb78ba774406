"""``fencepost agent run``: one agent turn from the command line, the reply streamed."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import click
from rich.console import Console

from ...core import SessionStore
from ...runtime.agent import AgentSpec, ToolRegistry, TurnResult, run_turn
from ...runtime.children import ChildRegistry
from ...runtime.config import (
    DEFAULT_AGENT,
    GatewayConfig,
    StatePaths,
    agent_spec,
    default_home,
    state_config,
)
from ...runtime.mcp import McpManager
from ...runtime.providers import (
    AttemptFailed,
    ChainEvent,
    FirstTokenReceived,
    ProviderRegistry,
    TextStreamed,
    ToolCallReceived,
)
from ._options import config_option, home_option

__all__ = ["agent"]


@click.group()
def agent() -> None:
    """Run agent turns."""


@agent.command("run")
@click.option("--session", "session_id", required=True, help="Session to run the turn on.")
@click.option("--message", "text", required=True, help="The user message.")
@click.option("--agent", "agent_name", default=None, help="Agent from the config.")
@click.option("--model", default=None, help="Override the agent's model (provider/model).")
@home_option
@config_option
@click.option("--timeout", "timeout_s", type=float, default=None, help="Turn timeout, seconds.")
@click.option("--wait", "wait_s", type=float, default=None, help="Wait this long for the lease.")
def run(
    session_id: str,
    text: str,
    agent_name: str | None,
    model: str | None,
    home: Path | None,
    config: str | None,
    timeout_s: float | None,
    wait_s: float | None,
) -> None:
    """Run one turn and print the reply as it streams."""
    paths = StatePaths(home or default_home())
    cfg = state_config(paths, config)
    agents = dict(cfg.agents) or {DEFAULT_AGENT.name: DEFAULT_AGENT}
    name = agent_name or next(iter(agents))
    if name not in agents:
        raise click.BadParameter(f"no agent {name!r}; configured: {', '.join(agents)}")
    # Starts nothing until the turn calls one of its tools; its servers are recorded (MCP-I13).
    mcp = McpManager(cfg.mcp, children=ChildRegistry(paths.children), work_dir=paths.mcp_work)
    spec = agent_spec(
        agents[name],
        ToolRegistry(),
        paths,
        model=model,
        context_windows=cfg.context_windows,
        mcp=mcp,
    )
    result = asyncio.run(
        _run(paths, cfg, spec, session_id, text, timeout_s or agents[name].timeout_s, wait_s, mcp)
    )
    if not result.ok:
        what = result.fence["description"] if result.fence else result.error_message
        click.echo(f"\n{result.status} ({result.error_kind}): {what}", err=True)
        raise SystemExit(4 if result.status == "takeover" else 1)


async def _run(
    paths: StatePaths,
    cfg: GatewayConfig,
    spec: AgentSpec,
    session_id: str,
    text: str,
    timeout_s: float,
    wait_s: float | None,
    mcp: McpManager,
) -> TurnResult:
    console = Console(stderr=True)
    out = Console(highlight=False)
    status = console.status(f"waiting for {spec.model}'s first token…")
    status.start()

    async def on_event(event: ChainEvent) -> None:
        if isinstance(event, FirstTokenReceived):
            status.stop()
        elif isinstance(event, TextStreamed):
            out.print(event.text, end="", soft_wrap=True)
        elif isinstance(event, ToolCallReceived):
            status.stop()
            console.print(f"[dim]→ tool {event.tool_name}({event.arguments})[/dim]")
        elif isinstance(event, AttemptFailed):
            console.print(f"[yellow]{event.model}: {event.error}[/yellow]")

    store = SessionStore(
        paths.sessions, durability=cfg.durability, max_open_sessions=cfg.limits.max_open_sessions
    )
    try:
        async with ProviderRegistry(cfg.providers, scripts=cfg.scripts) as providers:
            result = await run_turn(
                store.session(session_id),
                spec,
                providers=providers,
                run_id=f"cli-{uuid.uuid4().hex[:12]}",
                prompt=text,
                timeout_s=timeout_s,
                wait_timeout_s=wait_s,
                on_event=on_event,
            )
    finally:
        status.stop()
        store.close()
        await mcp.aclose()  # Invariant MCP-I9: no server outlives the command
    out.print()
    console.print(
        f"[dim]{result.status} · {result.model} · {result.steps} step(s) · "
        f"{result.usage.get('input', 0)} in / {result.usage.get('output', 0)} out · "
        f"{result.elapsed_s:.1f} s · session {result.session_id}[/dim]"
    )
    return result
