"""The original report end to end through cron (issue 5): an isolated job whose model takes
~20 s to answer, run 7 times in a row by the real scheduler and gateway, while the
model-snapshot plugin, a metadata writer and a delivery mirror write into the run's session
during every model call. Prints one row per run. Expected: 7 ok, 0 takeover.

Run: python bench/cron_origin.py [--runs 7] [--slow-s 20]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _report import table
from fencepost import SessionStore, custom, message, read_transcript, verify_transcript
from fencepost.runtime.config import AgentConfig, GatewayConfig, StatePaths
from fencepost.runtime.cron import EverySchedule, Payload, new_job
from fencepost.runtime.gateway import Gateway
from fencepost.runtime.providers import ScriptStep


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--slow-s", type=float, default=20.0)
    args = ap.parse_args()
    cfg = GatewayConfig(
        agents={"ops": AgentConfig(name="ops", model="scripted/big")},
        scripts={"big": (ScriptStep(text="all green", first_token_delay_s=args.slow_s),)},
        plugins=("model-snapshot",),
    )
    with tempfile.TemporaryDirectory() as root:
        async with Gateway(StatePaths(Path(root)), cfg, load_entry_points=False) as gw:
            now = datetime.now(UTC)
            job = new_job(
                name="ops review",
                agent="ops",
                schedule=EverySchedule(86400, anchor=now),
                payload=Payload("agent_turn", "daily ops review " + "context " * 4000),
                now=now,
                target="isolated",
            )
            gw.cron.add_job(job, next_run_at=None)
            others = SessionStore(gw.paths.sessions)
            pending = []

            async def writers(session_id: str) -> None:
                await asyncio.sleep(min(5.0, args.slow_s / 3))  # well inside the model call
                s = others.session(session_id)
                await s.append(custom("session-meta", {"label": "cron"}), writer="metadata")
                await s.append(
                    message("assistant", "mirror of the last delivery"), writer="delivery"
                )

            gw.subscribe(
                lambda e: (
                    pending.append(asyncio.ensure_future(writers(e["session_id"])))
                    if e["type"] == "turn_started"
                    else None
                )
            )
            rows = []
            for i in range(args.runs):
                t0 = time.monotonic()
                row = await (await gw.scheduler.run_now(job.job_id)).wait()
                path = gw.store.session(row.session_id).path
                await asyncio.gather(*pending)
                writers_seen = sorted({r.stamp["writer"] for r in read_transcript(path).entries})
                rows.append(
                    [
                        i + 1,
                        row.status,
                        time.monotonic() - t0,
                        verify_transcript(path).ok,
                        ", ".join(writers_seen),
                    ]
                )
            others.close()
    print(
        table(
            f"isolated cron job, {args.slow_s:g} s model, gateway writers in every window",
            ["run", "status", "seconds", "verifies", "writers in the session"],
            rows,
        )
    )
    ok = sum(r[1] == "ok" for r in rows)
    print(f"\n{ok}/{args.runs} ok, {sum(r[1] == 'takeover' for r in rows)} takeover")


if __name__ == "__main__":
    asyncio.run(main())
