"""Built-in plugins, registered by name when ``[plugins] enabled`` lists them.

``heartbeat`` is not a plugin object: the gateway runs heartbeat turns itself for agents with
``heartbeat.every_s`` set, when ``heartbeat`` is enabled.
"""

from __future__ import annotations

from collections.abc import Iterable

from ....errors import ConfigError
from ...config import BUILTIN_PLUGINS
from .model_snapshot import ModelSnapshotPlugin

__all__ = ["BUILTIN_PLUGINS", "ModelSnapshotPlugin", "builtin_plugins"]


def builtin_plugins(enabled: Iterable[str]) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for name in enabled:
        if name == "model-snapshot":
            out.append((name, ModelSnapshotPlugin()))
        elif name == "memory":
            from .memory import MemoryPlugin

            out.append((name, MemoryPlugin()))
        elif name == "trajectory":
            from .trajectory import TrajectoryPlugin

            out.append((name, TrajectoryPlugin()))
        elif name != "heartbeat":
            known = ", ".join(BUILTIN_PLUGINS)
            raise ConfigError(
                f"unknown built-in plugin {name!r}; built-ins: {known} (third-party plugins "
                "load from the 'fencepost.plugins' entry point group)",
                key="plugins.enabled",
            )
    return out
