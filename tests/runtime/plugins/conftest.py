"""A real gateway on a temporary state directory with the memory and trajectory plugins."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fencepost.runtime.config import AgentConfig, GatewayConfig, StatePaths
from fencepost.runtime.gateway import Gateway
from fencepost.runtime.gateway.plugins.memory import MemoryPlugin
from fencepost.runtime.providers import ScriptedToolCall, ScriptStep

#: Short enough that tests do not wait, long enough to batch a turn's appends.
TEST_DEBOUNCE_S = 0.02

SCRIPTS = {
    "recall": (
        ScriptStep(tool_calls=(ScriptedToolCall("memory_search", {"query": "kestrel"}),)),
        ScriptStep(text="found it"),
    ),
}


def config() -> GatewayConfig:
    tools = ("current_time", "memory_search")
    return GatewayConfig(
        agents={
            "ops": AgentConfig(name="ops", model="scripted/fast", tools=tools),
            "dev": AgentConfig(name="dev", model="scripted/fast", tools=tools),
        },
        plugins=("memory", "trajectory"),
        durability="buffered",
        scripts=SCRIPTS,
    )


def memory_of(gw: Gateway) -> MemoryPlugin:
    plugin = gw.plugins.get_plugin("memory")
    assert isinstance(plugin, MemoryPlugin)
    return plugin


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every transcript in a folder."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.jsonl"))
    }


@pytest.fixture
async def start_gateway(tmp_path):
    """``await start_gateway(**kw)``: a started Gateway on tmp_path, stopped at teardown."""
    running: list[Gateway] = []

    async def start(**kw) -> Gateway:
        gw = Gateway(StatePaths(tmp_path), config(), load_entry_points=False, **kw)
        memory_of(gw).debounce_s = TEST_DEBOUNCE_S
        await gw.start()
        running.append(gw)
        return gw

    yield start
    for gw in running:
        await gw.stop(grace_s=1)
