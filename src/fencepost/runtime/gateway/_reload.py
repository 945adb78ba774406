"""What a config reload changes, and what it cannot change without a restart (pure).

``plan_reload(old, new)`` compares two validated configs key by key and gives the result a
reload reports and the config the gateway then runs with: the new one, except the keys in
``RESTART_FIELDS``, which keep their old values until the next start (docs/design/gateway.md,
"Reloading the config", GATEWAY-I8 and GATEWAY-I9). ``Gateway.reload`` is the thin I/O around it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import GatewayConfig, agents_of

__all__ = ["RESTART_FIELDS", "ReloadResult", "config_changes", "needs_restart", "plan_reload"]

#: The config fields a running gateway cannot change, as paths of dataclass fields: the socket
#: is bound and the token read at start (server.host, server.port, server.token_env), the
#: session store is opened with them (durability, limits.max_open_sessions), and plugins are
#: registered when the gateway is built (plugins.enabled). Everything else applies live.
RESTART_FIELDS: tuple[tuple[str, ...], ...] = (
    ("server", "host"),
    ("server", "port"),
    ("server", "token_env"),
    ("durability",),
    ("limits", "max_open_sessions"),
    ("plugins",),
)

#: Config fields whose TOML key is spelled differently.
_KEY_FOR_FIELD = {"plugins": "plugins.enabled", "context_windows": "models"}
#: Not configuration: where it came from (a file, or demo mode).
_NOT_COMPARED = frozenset({"path", "demo"})


def _key(path: tuple[str, ...]) -> str:
    return ".".join((_KEY_FOR_FIELD.get(path[0], path[0]), *path[1:]))


_RESTART_KEYS = frozenset(_key(p) for p in RESTART_FIELDS)


def needs_restart(key: str) -> bool:
    """Whether a changed key (as ``config_changes`` names it) waits for a restart."""
    return key in _RESTART_KEYS


def _diff(prefix: str, a: Any, b: Any, out: list[str]) -> None:
    if dataclasses.is_dataclass(a) and type(a) is type(b):
        for f in dataclasses.fields(a):
            _diff(f"{prefix}.{f.name}", getattr(a, f.name), getattr(b, f.name), out)
    elif isinstance(a, Mapping) and isinstance(b, Mapping):
        for name in sorted({*a, *b}, key=str):
            if name not in a or name not in b:
                out.append(f"{prefix}.{name}")
            else:
                _diff(f"{prefix}.{name}", a[name], b[name], out)
    elif a != b:
        out.append(prefix)


def config_changes(old: GatewayConfig, new: GatewayConfig) -> tuple[str, ...]:
    """Every key whose value differs, in TOML spelling (``agents.ops.heartbeat.every_s``,
    ``server.port``, ``plugins.enabled``); an agent, provider, script or model window that
    appears or goes is its table's key (``agents.ops``). Agents are compared as the gateway
    runs them (``agents_of``: the default agent when none is configured)."""
    out: list[str] = []
    for f in dataclasses.fields(GatewayConfig):
        if f.name in _NOT_COMPARED:
            continue
        a, b = getattr(old, f.name), getattr(new, f.name)
        if f.name == "agents":
            a, b = agents_of(old), agents_of(new)
        _diff(_key((f.name,)), a, b, out)
    return tuple(out)


@dataclass(frozen=True)
class ReloadResult:
    """What a reload did: the keys it applied, the keys that wait for a restart, and the agents
    that came, went or changed. Nothing changed when both key lists are empty."""

    path: str | None
    applied: tuple[str, ...]
    restart_required: tuple[str, ...]
    agents_added: tuple[str, ...]
    agents_removed: tuple[str, ...]
    agents_changed: tuple[str, ...]
    #: The demo jobs removed because the new config is not the demo's (DEMO-I2).
    demo_jobs_removed: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.applied or self.restart_required or self.demo_jobs_removed)

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "changed": self.changed}

    def describe(self) -> list[str]:
        """One line per fact, for the CLI and the log."""
        where = self.path or "the config"
        if not self.changed:
            return [f"reloaded {where}: nothing changed"]
        lines = [f"reloaded {where}"]
        for label, names in (
            ("agents added", self.agents_added),
            ("agents removed", self.agents_removed),
            ("agents changed", self.agents_changed),
        ):
            if names:
                lines.append(f"{label}: {', '.join(names)}")
        if self.applied:
            lines.append(f"applied: {', '.join(self.applied)}")
        if self.demo_jobs_removed:
            lines.append(
                f"left demo mode: removed the demo's jobs ({', '.join(self.demo_jobs_removed)}); "
                "their runs stay in the ledger, their transcripts in sessions/"
            )
        if self.restart_required:
            lines.append(
                f"needs a restart (not applied): {', '.join(self.restart_required)}; "
                "the gateway keeps the old values until it starts again"
            )
        return lines


def _with(cfg: Any, path: tuple[str, ...], value: Any) -> Any:
    """``cfg`` with the field at ``path`` set to ``value`` (nested frozen dataclasses)."""
    head, rest = path[0], path[1:]
    inner = value if not rest else _with(getattr(cfg, head), rest, value)
    return dataclasses.replace(cfg, **{head: inner})


def _at(cfg: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        cfg = getattr(cfg, name)
    return cfg


def plan_reload(old: GatewayConfig, new: GatewayConfig) -> tuple[ReloadResult, GatewayConfig]:
    """The result of reloading from ``old`` to ``new``, and the config to run with: ``new``
    with every restart-only key at its ``old`` value (Invariant GATEWAY-I9)."""
    keys = config_changes(old, new)
    effective = new
    for path in RESTART_FIELDS:
        effective = _with(effective, path, _at(old, path))
    before, after = agents_of(old), agents_of(new)
    return (
        ReloadResult(
            path=new.path,
            applied=tuple(k for k in keys if not needs_restart(k)),
            restart_required=tuple(k for k in keys if needs_restart(k)),
            agents_added=tuple(sorted(set(after) - set(before))),
            agents_removed=tuple(sorted(set(before) - set(after))),
            agents_changed=tuple(
                sorted(n for n in set(before) & set(after) if before[n] != after[n])
            ),
        ),
        effective,
    )
