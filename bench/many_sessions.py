"""Cooperative appends across many sessions in a random order: a bounded store against all open.

Target (issue 13): with 5,000 sessions and a 256-handle bound, appends/s within 20% of the store
that keeps every session open, and open descriptors bounded by the bound (STORE-I11). Rounds of
the two stores alternate in one run, so the ratio is measured side by side.

Run: python bench/many_sessions.py [--sessions N] [--appends N] [--bound N] [--rounds N]
     [--durability buffered|fsync] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import tempfile
import time

from _report import median, table
from fencepost import SessionStore, custom

RECORD = custom("bench", {"text": "x" * 200})


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def one_round(
    root: str, ids: list[str], order: list[int], bound: int, durability: str
) -> tuple[float, int, float]:
    """appends/s, peak descriptors, RSS after the round."""
    store = SessionStore(root, durability=durability, max_open_sessions=bound)  # type: ignore[arg-type]
    peak = open_fds()
    try:
        t0 = time.perf_counter()
        for n, i in enumerate(order):
            await store.session(ids[i]).append(RECORD, writer="delivery")
            if n % 500 == 0:
                peak = max(peak, open_fds())
        dt = time.perf_counter() - t0
        peak = max(peak, open_fds())
        return len(order) / dt, peak, rss_mb()
    finally:
        store.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=5000)
    ap.add_argument("--appends", type=int, default=20000)
    ap.add_argument("--bound", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--durability", default="buffered", choices=["buffered", "fsync"])
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 3 * args.sessions + 100
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise SystemExit(f"all open needs {need} descriptors; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    base = tempfile.mkdtemp(prefix="fp-many-", dir=args.dir)
    root = os.path.join(base, "sessions")
    ids = [f"s{i:05d}" for i in range(args.sessions)]
    try:
        # Every session exists before the clock starts (first writes create files: not measured).
        setup = SessionStore(root, durability="buffered", max_open_sessions=64)
        for sid in ids:
            await setup.session(sid).append(RECORD, writer="delivery")
        setup.close()
        rng = random.Random(13)
        cases = {f"bound {args.bound}": args.bound, "all open": args.sessions + 1}
        got: dict[str, list[tuple[float, int, float]]] = {k: [] for k in cases}
        for _ in range(args.rounds):
            order = [rng.randrange(args.sessions) for _ in range(args.appends)]
            for name, bound in cases.items():  # same order for both, alternating rounds
                got[name].append(await one_round(root, ids, order, bound, args.durability))
        baseline = median([r[0] for r in got["all open"]])
        rows = []
        for name, runs in got.items():
            rate = median([r[0] for r in runs])
            rows.append(
                [
                    name,
                    rate,
                    rate / baseline,
                    max(r[1] for r in runs),
                    max(r[2] for r in runs),
                ]
            )
        print(
            table(
                f"{args.appends:,} cooperative appends ({args.durability}) over "
                f"{args.sessions:,} sessions in a random order, median of {args.rounds} rounds",
                ["store", "appends/s", "vs all open", "peak descriptors", "RSS MB"],
                rows,
            )
        )
        print("target: bounded >= 0.80 of all open; bounded descriptors <= 3 x bound + a few")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
