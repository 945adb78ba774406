"""Dispatch lateness and idle CPU of the cron scheduler with 10k jobs (DESIGN.md §8).

Loads 10k jobs into a temporary store; 1,000 of them fall due during the dispatch window (spread
out, plus a burst of 100 at one instant), the rest later. Runs the real scheduler with the real
clock and a no-op execute, then measures an idle window with nothing due. Lateness is the ledger's
``started_at - scheduled_at``.

    python bench/cron_dispatch.py [--jobs 10000] [--window 8] [--idle 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta

from _report import table
from fencepost.runtime.cron import (
    CronStore,
    EverySchedule,
    Job,
    Payload,
    RunContext,
    RunOutcome,
    Scheduler,
    SystemClock,
    new_job,
)


async def noop(job: Job, ctx: RunContext) -> RunOutcome:
    return RunOutcome("ok", reply="")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--due", type=int, default=1_000, help="jobs due during the window")
    ap.add_argument("--burst", type=int, default=100, help="of those, due at one instant")
    ap.add_argument("--window", type=float, default=8.0, help="dispatch window, seconds")
    ap.add_argument("--idle", type=float, default=5.0, help="idle window, seconds")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store = CronStore(os.path.join(tmp, "cron.db"))
        now = datetime.now(UTC)
        start = now + timedelta(seconds=2)
        t0 = time.perf_counter()
        with store.transaction():
            for i in range(args.jobs):
                if i < args.burst:
                    first = start + timedelta(seconds=args.window / 2)
                elif i < args.due:
                    first = start + timedelta(seconds=args.window * (i / args.due))
                else:  # loaded, not due during the bench
                    first = start + timedelta(hours=1, seconds=i)
                job = new_job(
                    name=f"job-{i}",
                    agent="bench",
                    schedule=EverySchedule(86400.0, first),
                    payload=Payload("agent_turn", "noop"),
                    now=now,
                )
                store.add_job(job, next_run_at=first)
        load_s = time.perf_counter() - t0

        sched = Scheduler(store, noop, clock=SystemClock(), max_concurrent_runs=64)
        loop = asyncio.create_task(sched.run())
        await asyncio.sleep((start - datetime.now(UTC)).total_seconds() + args.window + 1)
        await sched.wait_idle()

        # idle: nothing due for the next hour
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(args.idle)
        idle_cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        await sched.stop()
        await loop

        rows = store.runs(status="ok", limit=1_000_000)
        late = [
            (r.started_at - r.scheduled_at).total_seconds() * 1000
            for r in rows
            if r.started_at is not None
        ]
        burst_names = {f"job-{i}" for i in range(args.burst)}
        burst = [
            (r.started_at - r.scheduled_at).total_seconds() * 1000
            for r in rows
            if r.started_at is not None and r.job_name in burst_names
        ]
        missed = len(store.runs(status=["missed", "skipped"], limit=1_000_000))
        store.close()

    print(
        table(
            f"cron dispatch: {args.jobs:,} jobs loaded in {load_s:.2f} s; {args.due:,} due in "
            f"{args.window:g} s (a burst of {args.burst} at one instant); no-op execute",
            ["measure", "dispatched", "p50 ms", "p99 ms", "max ms", "mean ms"],
            [
                [
                    "lateness, all due",
                    len(late),
                    pct(late, 50),
                    pct(late, 99),
                    max(late),
                    statistics.fmean(late),
                ],
                [
                    "lateness, burst",
                    len(burst),
                    pct(burst, 50),
                    pct(burst, 99),
                    max(burst),
                    statistics.fmean(burst),
                ],
            ],
        )
    )
    print(
        table(
            "idle",
            ["measure", "value"],
            [
                ["idle CPU (process CPU / wall), %", idle_cpu * 100],
                ["idle window, s", args.idle],
                ["missed or skipped slots", missed],
            ],
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
