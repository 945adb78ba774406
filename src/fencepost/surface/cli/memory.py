"""``fencepost memory search``: the memory plugin's index, searched without a gateway."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ...runtime.config import StatePaths, default_home, state_config
from ...runtime.gateway.plugins.memory import MemoryHit, note_workspaces, search_memory
from . import _render
from ._options import config_option, home_option

__all__ = ["memory"]


@click.group()
def memory() -> None:
    """Search what agents remember: transcripts and workspace notes (the memory plugin)."""


@memory.command("search")
@click.argument("query")
@click.option("--agent", "agent_name", default=None, help="Only this agent's memory (+ shared).")
@click.option("--limit", type=click.IntRange(min=1), default=10, help="At most this many hits.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@home_option
@config_option
@click.option(
    "--reindex",
    is_flag=True,
    help="Catch the index up with the transcripts and notes first (creates it if missing).",
)
def search(
    query: str,
    agent_name: str | None,
    limit: int,
    as_json: bool,
    home: Path | None,
    config: str | None,
    reindex: bool,
) -> None:
    """Search the memory index for QUERY (words; best matches first, ranked by bm25)."""
    paths = StatePaths(home or default_home())
    workspaces = None
    if reindex:
        cfg = state_config(paths, config)
        workspaces = note_workspaces(paths, cfg.agents)
    hits = search_memory(
        paths.root, query, agent=agent_name, limit=limit, reindex=reindex, workspaces=workspaces
    )
    if as_json:
        click.echo(json.dumps([h.to_json() for h in hits], indent=2, ensure_ascii=False))
        return
    if not hits:
        click.echo("no matches", err=True)
        return
    _render.table(
        [
            _render.Col("score", drop=2, justify="right"),
            _render.Col("agent", drop=3, wrap=True, min_width=6),
            _render.Col("where", wrap=True, min_width=14),
            _render.Col("role", drop=1),
            _render.Col("time", drop=4, wrap=True, min_width=10),
            _render.Col("snippet", wrap=True, min_width=20),
        ],
        [
            [
                f"{h.score:.3g}",
                h.agent or "(shared)",
                _where(h, paths.root),
                h.role,
                h.timestamp,
                " ".join(h.snippet.split()),  # plain text: "[word]" marks a match
            ]
            for h in hits
        ],
        title=f"memory: {query}",
    )


def _where(hit: MemoryHit, home: Path) -> str:
    if hit.kind == "session":
        return f"session {hit.session_id} line {hit.line}"
    path = os.path.relpath(hit.path, home) if hit.path else "?"
    return f"{path} line {hit.line}" + (f" § {hit.title}" if hit.title else "")
