"""Plugin hooks (pluggy). A plugin is an object or module with ``@hookimpl`` functions; built-in
plugins and third-party ones (entry point group ``fencepost.plugins``) use the same hooks.

Hooks are called synchronously by pluggy; a hook may return an awaitable, which the gateway
awaits (so async plugins need no special support). A failing plugin is logged and never breaks
a turn or a writer. Reference: docs/reference/plugins.md.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pluggy

from ...core import TranscriptUpdated

if TYPE_CHECKING:
    from ..agent import Tool, TurnResult
    from ._gateway import Gateway

__all__ = [
    "ENTRY_POINT_GROUP",
    "hookimpl",
    "hookspec",
    "FencepostHooks",
    "make_plugin_manager",
    "call_hook",
]

ENTRY_POINT_GROUP = "fencepost.plugins"
hookspec = pluggy.HookspecMarker("fencepost")
hookimpl = pluggy.HookimplMarker("fencepost")
log = logging.getLogger("fencepost.plugins")


class FencepostHooks:
    """The hook specifications. Every hook receives the gateway first."""

    @hookspec
    def fencepost_startup(self, gateway: Gateway) -> Any:
        """The gateway started (stores open, before the scheduler). May return an awaitable."""

    @hookspec
    def fencepost_shutdown(self, gateway: Gateway) -> Any:
        """The gateway is stopping (runs finished or interrupted). May return an awaitable."""

    @hookspec
    def fencepost_tools(self, gateway: Gateway) -> Iterable[Tool] | None:
        """Tools this plugin offers to agents (they still need the agent's allow-list)."""

    @hookspec
    def fencepost_transcript_updated(self, gateway: Gateway, event: TranscriptUpdated) -> Any:
        """A protocol write landed through this gateway's store. Keep it quick."""

    @hookspec
    def fencepost_turn_started(
        self, gateway: Gateway, session_id: str, agent: str, run_id: str, model: str
    ) -> Any:
        """An agent turn is about to take the session's lease."""

    @hookspec
    def fencepost_model_answering(
        self, gateway: Gateway, session_id: str, agent: str, run_id: str, model: str
    ) -> Any:
        """The first token of a model call arrived (the write lock is released)."""

    @hookspec
    def fencepost_turn_event(
        self, gateway: Gateway, session_id: str, run_id: str, event: dict[str, Any]
    ) -> Any:
        """A runner event (first token, tool call, failed attempt) as a JSON-able dict."""

    @hookspec
    def fencepost_turn_finished(
        self, gateway: Gateway, session_id: str, agent: str, run_id: str, result: TurnResult
    ) -> Any:
        """A turn ended (any status)."""


def make_plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("fencepost")
    pm.add_hookspecs(FencepostHooks)
    if load_entry_points:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return pm


async def call_hook(pm: pluggy.PluginManager, name: str, **kwargs: Any) -> list[Any]:
    """Call a hook on every plugin, await what they return, log and swallow their failures
    (Invariant GATEWAY-I3)."""
    results: list[Any] = []
    for impl in getattr(pm.hook, name).get_hookimpls():
        try:
            got = impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
            if inspect.isawaitable(got):
                got = await got
        except Exception:
            log.exception(
                "plugin %s failed in %s",
                impl.plugin_name,
                name,
                extra={"action": name, "plugin": impl.plugin_name},
            )
            continue
        if got is not None:
            results.append(got)
    return results
