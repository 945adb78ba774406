"""The memory plugin: an SQLite FTS5 index per agent over session transcripts and the markdown
notes in the agent's workspace, and the ``memory_search`` tool (docs/design/memory.md).

It is a pure reader of transcripts (Invariant MEMORY-I1): it follows ``transcript_updated``
events with a debounce per session, catches up on start, and learns which agent owns a session
from ``turn_started``. ``search_memory`` is the same search without a gateway (the CLI).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ....core import TranscriptUpdated
from ...agent import Tool, ToolContext, ToolFailed
from ...config import AgentConfig, StatePaths
from .._hooks import hookimpl
from ._memory_index import (
    MemoryHit,
    MemoryIndex,
    MemoryIndexError,
    MemoryIndexReason,
    MemoryStatistics,
)
from ._memory_text import fts_query, indexable, note_sections

if TYPE_CHECKING:
    from ...agent import TurnResult
    from .._gateway import Gateway

__all__ = [
    "DEFAULT_DEBOUNCE_S",
    "MemoryHit",
    "MemoryIndex",
    "MemoryIndexError",
    "MemoryIndexReason",
    "MemoryPlugin",
    "MemoryStatistics",
    "catch_up",
    "fts_query",
    "indexable",
    "note_sections",
    "note_workspaces",
    "render_hits",
    "search_memory",
]

log = logging.getLogger("fencepost.plugins.memory")

#: A busy session appends a record every few milliseconds during a turn; indexing each one
#: would re-read the file's tail each time. Half a second batches a turn's step into one pass
#: while keeping the index fresh enough for the next turn (Invariant MEMORY-I5).
DEFAULT_DEBOUNCE_S = 0.5
#: The tool's default and maximum number of results: enough to answer, small enough that the
#: model's context is not flooded with old conversation.
DEFAULT_TOOL_LIMIT = 5
MAX_TOOL_LIMIT = 20


def note_workspaces(
    paths: StatePaths, agents: Mapping[str, AgentConfig] | None = None
) -> dict[str, Path]:
    """The workspace of every agent whose notes are indexed: each configured agent's (its
    ``workspace`` or ``<home>/workspaces/<agent>``), plus every directory already under
    ``<home>/workspaces``."""
    out: dict[str, Path] = {}
    root = paths.root / "workspaces"
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if child.is_dir() and not child.name.startswith("."):
                out[child.name] = child
    for name, cfg in (agents or {}).items():
        out[name] = Path(cfg.workspace) if cfg.workspace else paths.workspace(name)
    return out


def catch_up(index: MemoryIndex, paths: StatePaths, workspaces: Mapping[str, Path]) -> int:
    """Index every transcript and note not yet indexed (blocking). Returns rows added."""
    added = index.sync_sessions(paths.sessions)
    for agent, workspace in workspaces.items():
        added += index.sync_notes(agent, workspace)
    return added


def search_memory(
    home: str | os.PathLike[str],
    query: str,
    *,
    agent: str | None = None,
    limit: int = 10,
    reindex: bool = False,
    workspaces: Mapping[str, Path] | None = None,
) -> list[MemoryHit]:
    """Search a state directory's memory index without a gateway (blocking).

    Opens the index read-only; with ``reindex`` it first catches up (opening it for writing,
    creating it if needed). ``agent`` restricts hits to that agent's sessions and notes plus
    the shared sessions; None searches everything. Raises MemoryIndexError when the index is
    missing, of another version, or FTS5 is unavailable.
    """
    paths = StatePaths(Path(home))
    if reindex:
        with MemoryIndex.open(paths.memory_db) as index:
            catch_up(index, paths, note_workspaces(paths) if workspaces is None else workspaces)
    with MemoryIndex.open(paths.memory_db, readonly=True) as index:
        return index.search(query, agent=agent, limit=limit)


def render_hits(hits: Sequence[MemoryHit]) -> str:
    """The tool's answer: one block per hit, best first. Pure."""
    if not hits:
        return "no matches in memory"
    lines = []
    for n, hit in enumerate(hits, start=1):
        if hit.kind == "note":
            where = f"note {hit.path}" + (f" § {hit.title}" if hit.title else "")
        else:
            where = f"session {hit.session_id} · {hit.role}" + (
                f" · {hit.timestamp}" if hit.timestamp else ""
            )
        lines.append(f"{n}. [{where}]\n   {' '.join(hit.snippet.split())}")
    return "\n".join(lines)


class MemoryPlugin:
    """Built-in plugin ``memory``. ``debounce_s`` may be changed before the gateway starts."""

    def __init__(self, *, debounce_s: float = DEFAULT_DEBOUNCE_S) -> None:
        self.debounce_s = debounce_s
        self.index: MemoryIndex | None = None
        self._gateway: Gateway | None = None
        self._workspaces: dict[str, Path] = {}
        self._dirty: set[str] = set()
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._catchup: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        state = "open" if self.index is not None else "closed"
        return f"<MemoryPlugin {state} debounce={self.debounce_s:g}s pending={len(self._pending)}>"

    def statistics(self) -> MemoryStatistics | None:
        return self.index.statistics() if self.index is not None else None

    async def wait_idle(self) -> None:
        """Return once the start-up catch-up and every pending debounced sync are done."""
        for _ in range(3):  # let hook tasks already spawned mark their sessions dirty
            await asyncio.sleep(0)
        while True:
            tasks = [t for t in (self._catchup, *self._pending.values()) if t and not t.done()]
            if not tasks:
                return
            await asyncio.wait(tasks)

    async def search(
        self, query: str, *, agent: str | None = None, limit: int = 10
    ) -> list[MemoryHit]:
        index = self._require()
        return await asyncio.to_thread(index.search, query, agent=agent, limit=limit)

    def _require(self) -> MemoryIndex:
        if self.index is None:
            raise MemoryIndexError(
                "the memory index is not open (the gateway is not running, or opening it "
                "failed: see the gateway log)",
                reason="missing",
                path="",
            )
        return self.index

    # ---- hooks -------------------------------------------------------------------------------

    @hookimpl
    def fencepost_tools(self, gateway: Gateway) -> Iterable[Tool]:
        return [
            Tool(
                "memory_search",
                "Search your memory: your past conversations (all your sessions) and the "
                "markdown notes in your workspace. Returns the best-matching snippets first.",
                self._tool,
                {
                    "type": "object",
                    "properties": {
                        "query": {"type": "string", "description": "words to look for"},
                        "limit": {
                            "type": "integer",
                            "description": f"at most this many results (1-{MAX_TOOL_LIMIT}, "
                            f"default {DEFAULT_TOOL_LIMIT})",
                        },
                    },
                    "required": ["query"],
                    "additionalProperties": False,
                },
            )
        ]

    @hookimpl
    async def fencepost_startup(self, gateway: Gateway) -> None:
        self._gateway = gateway
        try:
            self.index = await asyncio.to_thread(MemoryIndex.open, gateway.paths.memory_db)
        except MemoryIndexError as exc:
            log.error("memory index disabled: %s", exc, extra={"action": "memory"})
            return
        agents = {
            name: Path(cfg.workspace) if cfg.workspace else gateway.paths.workspace(name)
            for name, cfg in gateway.agents.items()
        }
        self._workspaces = {**note_workspaces(gateway.paths), **agents}
        self._catchup = gateway.spawn(self._catch_up(gateway.paths), name="memory catch-up")

    @hookimpl
    def fencepost_transcript_updated(self, gateway: Gateway, event: TranscriptUpdated) -> None:
        # Invariant MEMORY-I5: at most one pending sync per session; events meanwhile join it.
        self._dirty.add(event.session_id)
        if event.session_id not in self._pending and self.index is not None:
            self._pending[event.session_id] = gateway.spawn(
                self._debounced(gateway, event.session_id),
                name=f"memory sync {event.session_id}",
            )

    @hookimpl
    async def fencepost_turn_started(
        self, gateway: Gateway, session_id: str, agent: str, run_id: str, model: str
    ) -> None:
        if self.index is not None:
            await asyncio.to_thread(self.index.assign, session_id, agent)

    @hookimpl
    async def fencepost_turn_finished(
        self, gateway: Gateway, session_id: str, agent: str, run_id: str, result: TurnResult
    ) -> None:
        # The agent as the gateway runs it now: a reload may have added it or moved its
        # workspace since startup (docs/design/gateway.md, "Reloading the config").
        spec = gateway.specs.get(agent)
        workspace = spec.workspace if spec is not None else self._workspaces.get(agent)
        if workspace is not None:
            self._workspaces[agent] = workspace
        if self.index is not None and workspace is not None:
            await asyncio.to_thread(self.index.sync_notes, agent, workspace)

    @hookimpl
    async def fencepost_shutdown(self, gateway: Gateway) -> None:
        index, self.index = self.index, None
        if index is None:
            return
        try:
            for session_id in sorted(self._dirty):  # what the cancelled debounces owed
                path = gateway.paths.sessions / f"{session_id}.jsonl"
                await asyncio.to_thread(index.sync_session, session_id, path)
            self._dirty.clear()
        finally:
            await asyncio.to_thread(index.close)

    # ---- work --------------------------------------------------------------------------------

    async def _catch_up(self, paths: StatePaths) -> None:
        index = self.index
        if index is None:
            return
        added = await asyncio.to_thread(catch_up, index, paths, dict(self._workspaces))
        log.info("memory index caught up: %d rows added", added, extra={"action": "memory"})

    async def _debounced(self, gateway: Gateway, session_id: str) -> None:
        try:
            while session_id in self._dirty:
                await gateway.clock.sleep_until(
                    gateway.clock.now() + timedelta(seconds=self.debounce_s)
                )
                self._dirty.discard(session_id)
                index = self.index
                if index is None:
                    return
                path = gateway.paths.sessions / f"{session_id}.jsonl"
                await asyncio.to_thread(index.sync_session, session_id, path)
        finally:
            self._pending.pop(session_id, None)

    async def _tool(self, args: Mapping[str, Any], ctx: ToolContext) -> str:
        index = self.index
        if index is None:
            raise ToolFailed("memory is not available right now (the index is not open)")
        query = str(args.get("query", ""))
        if fts_query(query) is None:
            raise ToolFailed("the query has no words to search for")
        limit = max(1, min(int(args.get("limit") or DEFAULT_TOOL_LIMIT), MAX_TOOL_LIMIT))
        workspace = self._workspaces.get(ctx.agent, ctx.workspace)
        await asyncio.to_thread(index.sync_notes, ctx.agent, workspace)  # notes change in turns
        # Invariant MEMORY-I4: the calling agent's memory only (and the shared sessions).
        hits = await asyncio.to_thread(index.search, query, agent=ctx.agent, limit=limit)
        return render_hits(hits)
