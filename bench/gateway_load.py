"""Hundreds of concurrent slow-model turns in one gateway process (DESIGN.md §8).

N turns on N sessions at once, each model call taking --slow-s to its first token, with a
cooperative writer appending to every session during its call. Prints wall time, turns/s,
process CPU, peak RSS before and after, and the status counts (expected: all ok).

Run: python bench/gateway_load.py [--turns 300] [--slow-s 5]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from collections import Counter
from pathlib import Path

from _report import table
from fencepost import SessionStore, custom
from fencepost.runtime.config import AgentConfig, GatewayConfig, StatePaths
from fencepost.runtime.gateway import Gateway
from fencepost.runtime.providers import ScriptStep


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=300)
    ap.add_argument("--slow-s", type=float, default=5.0)
    ap.add_argument("--durability", default="fsync", choices=["fsync", "buffered"])
    args = ap.parse_args()
    cfg = GatewayConfig(
        agents={"ops": AgentConfig(name="ops", model="scripted/big")},
        scripts={
            "big": (ScriptStep(text="done " * 50, first_token_delay_s=args.slow_s, latency_s=0.5),)
        },
        plugins=("model-snapshot",),
        durability=args.durability,
    )
    with tempfile.TemporaryDirectory() as root:
        async with Gateway(StatePaths(Path(root)), cfg, load_entry_points=False) as gw:
            others = SessionStore(gw.paths.sessions, durability=args.durability)

            async def one(i: int):
                sid = f"load-{i}"
                turn = asyncio.create_task(gw.turn(sid, "ops", prompt="report " * 200))
                await asyncio.sleep(args.slow_s / 2)
                await others.session(sid).append(custom("meta", {"i": i}), writer="metadata")
                return await turn

            rss0, cpu0, t0 = rss_mib(), time.process_time(), time.monotonic()
            results = await asyncio.gather(*(one(i) for i in range(args.turns)))
            wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
            others.close()
    statuses = Counter(r.status for r in results)
    print(
        table(
            f"{args.turns} concurrent turns, {args.slow_s:g} s to first token, one cooperative "
            f"write per session mid-call, durability={args.durability}",
            [
                "turns",
                "wall s",
                "ideal s",
                "CPU s",
                "CPU %",
                "peak RSS MiB before",
                "after",
                "statuses",
            ],
            [
                [
                    args.turns,
                    wall,
                    args.slow_s + 0.5,
                    cpu,
                    100 * cpu / wall,
                    rss0,
                    rss_mib(),
                    dict(statuses),
                ]
            ],
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
