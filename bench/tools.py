"""Tools: what a slow tool costs the session's other writers, and what one exec call costs.

1. A cooperative writer appends every 50 ms while a turn runs a tool of ``--tool-s`` seconds.
   Side by side: the runner (tools with the write lock released, RUNNER-I4) and the shape it
   replaced (the attempt holding the lock while the tool runs). Printed: append latency
   p50 / p99 / max and how many appends landed during the tool.
2. One ``exec`` call of ``true`` against the floor of a bare asyncio subprocess, with and
   without the bubblewrap sandbox (when ``bwrap`` works here).

Run: python bench/tools.py [--tool-s 2] [--calls 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from _report import median, table
from fencepost import SessionStore, custom
from fencepost.runtime.agent import (
    AgentSpec,
    ExecPolicy,
    Tool,
    ToolContext,
    exec_tool,
    run_turn,
    sandbox_status,
)
from fencepost.runtime.providers import ProviderRegistry, ScriptedToolCall, ScriptStep


async def _writer(session, stop: asyncio.Event, out: list[float]) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        await session.append(custom("probe", {"n": len(out)}), writer="metadata")
        out.append(time.perf_counter() - t0)
        await asyncio.sleep(0.05)


async def _with_writer(root: str, body) -> list[float]:
    others = SessionStore(root, durability="buffered")
    stop, lat = asyncio.Event(), []
    task = asyncio.create_task(_writer(others.session("s"), stop, lat))
    try:
        await body()
    finally:
        stop.set()
        await task
        others.close()
    return lat


async def released(root: str, tool_s: float) -> list[float]:
    store = SessionStore(root, durability="buffered")

    async def slow(args, ctx):
        await asyncio.sleep(tool_s)
        return "done"

    spec = AgentSpec(name="b", model="scripted/t", tools={"slow": Tool("slow", "x", slow)})
    script = (ScriptStep(tool_calls=(ScriptedToolCall("slow", {}, id="c"),)), ScriptStep("ok"))
    await store.session("s").append(custom("start", {}), writer="metadata")

    async def body():
        async with ProviderRegistry(scripts={"t": script}) as providers:
            result = await run_turn(
                store.session("s"), spec, providers=providers, run_id="r", prompt="go"
            )
        assert result.ok, result

    try:
        return await _with_writer(root, body)
    finally:
        store.close()


async def held(root: str, tool_s: float) -> list[float]:
    store = SessionStore(root, durability="buffered", lock_timeout_s=tool_s * 10)
    await store.session("s").append(custom("start", {}), writer="metadata")

    async def body():
        async with store.session("s").attempt("r"):  # holds the write lock: the old tool step
            await asyncio.sleep(tool_s)

    try:
        return await _with_writer(root, body)
    finally:
        store.close()


def _pct(xs: list[float], q: int) -> float:
    """Nearest-rank percentile."""
    ranked = sorted(xs)
    return ranked[max(0, -(-q * len(ranked) // 100) - 1)]


async def exec_calls(calls: int) -> list[list[object]]:
    ws = tempfile.mkdtemp(prefix="fp-bench-ws-")
    ctx = ToolContext(agent="b", session_id="s", run_id="r", workspace=Path(ws))

    async def floor() -> None:
        proc = await asyncio.create_subprocess_exec(
            "true", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        await proc.communicate()

    variants = [("bare asyncio subprocess (floor)", floor)]
    for sandbox in (False, True):
        if sandbox and not sandbox_status().available:
            continue
        tool = exec_tool(ExecPolicy(policy="allow", allow=("true",), sandbox=sandbox))

        async def call(tool=tool) -> None:
            await tool.run({"argv": ["true"]}, ctx)

        variants.append((f"exec tool{' sandboxed' if sandbox else ''}", call))
    rows, base = [], None
    for name, fn in variants:
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            await fn()
            times.append(time.perf_counter() - t0)
        ms = median(times) * 1000
        base = base or ms
        rows.append([name, ms, ms / base])
    return rows


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool-s", type=float, default=2.0)
    ap.add_argument("--calls", type=int, default=50)
    args = ap.parse_args()
    rows = []
    for name, fn in (("tools, lock released (runner)", released), ("tool, lock held", held)):
        with tempfile.TemporaryDirectory(prefix="fp-bench-") as root:
            lat = await fn(os.path.join(root, "s"), args.tool_s)
        ms = [x * 1000 for x in lat]
        rows.append([name, len(ms), _pct(ms, 50), _pct(ms, 99), max(ms)])
    print(
        table(
            f"cooperative appends every 50 ms during a {args.tool_s:g} s tool (ms)",
            ["shape", "appends", "p50", "p99", "max"],
            rows,
        )
    )
    print()
    print(
        table(
            f"one exec call of `true`, median of {args.calls} (ms)",
            ["variant", "ms", "x floor"],
            await exec_calls(args.calls),
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
