"""Cost of the fence vs. transcript size: one protocol append (its pre-write check included),
and an attempt's reacquire (fence + pick-up) with and without a cooperative append in the window.

Target (DESIGN.md §8): no growth beyond 1.5x from a 10 KB to a 100 MB transcript.
Run: python bench/fence_check.py [--sizes 10K,1M,10M,100M] [--samples N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time

from _report import median, table
from fencepost import SessionStore, custom

UNITS = {"K": 1024, "M": 1024 * 1024, "G": 1024**3}
FILLER = custom("filler", {"text": "y" * 900})


def parse_size(s: str) -> int:
    return int(float(s[:-1]) * UNITS[s[-1].upper()]) if s[-1].upper() in UNITS else int(s)


async def build(root: str, size: int) -> SessionStore:
    store = SessionStore(root, durability="buffered")
    session = store.session("t")
    await session.append(FILLER, writer="metadata")
    while os.path.getsize(session.path) < size:
        await session.append([FILLER] * 500, writer="metadata")
    return store


async def sample(store: SessionStore, samples: int) -> list[float]:
    session = store.session("t")
    out = []
    for i in range(samples):
        t0 = time.perf_counter()
        await session.append(custom("probe", {"i": i}), writer="delivery")
        out.append(time.perf_counter() - t0)
    return out


async def reacquire(store: SessionStore, samples: int, coop: bool) -> list[float]:
    """Seconds from leaving ``released()`` to holding the lock again, fence and pick-up done."""
    session = store.session("t")
    writer = SessionStore(store.root, durability="buffered").session("t")
    out = []
    async with session.attempt("bench") as attempt:
        for i in range(samples):
            async with attempt.released():
                if coop:
                    await writer.append(custom("snapshot", {"i": i}), writer="model-snapshot")
                t0 = time.perf_counter()
            out.append(time.perf_counter() - t0)
            assert len(attempt.arrived) == int(coop)
    writer.store.close()
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10K,1M,10M,100M")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    labels = args.sizes.split(",")
    base = tempfile.mkdtemp(prefix="fencepost-fence-", dir=args.dir)
    try:
        stores = [
            await build(os.path.join(base, lab), size)
            for lab, size in zip(labels, sizes, strict=True)
        ]
        times: dict[str, list[float]] = {lab: [] for lab in labels}
        for _ in range(args.rounds):  # interleave sizes so noise hits all of them
            for lab, store in zip(labels, stores, strict=True):
                times[lab] += await sample(store, args.samples // args.rounds)
        rows = []
        first = median(times[labels[0]])
        for lab, store in zip(labels, stores, strict=True):
            med = median(times[lab])
            p99 = sorted(times[lab])[int(len(times[lab]) * 0.99)]
            stats = store.session("t").statistics()
            rows.append(
                [
                    lab,
                    os.path.getsize(store.session("t").path),
                    med * 1e6,
                    p99 * 1e6,
                    med / first,
                    f"{stats.fast_path}/{stats.slow_path}",
                ]
            )
        print(
            table(
                "one buffered protocol append (check + write + commit), by transcript size",
                ["size", "bytes", "median us", "p99 us", "ratio to first", "fast/slow path"],
                rows,
            )
        )
        worst = max(r[4] for r in rows)
        fence: dict[tuple[str, bool], list[float]] = {}
        for _ in range(args.rounds):
            for lab, store in zip(labels, stores, strict=True):
                for coop in (False, True):
                    got = await reacquire(store, args.samples // args.rounds, coop)
                    fence.setdefault((lab, coop), []).extend(got)
        base_plain, base_coop = median(fence[labels[0], False]), median(fence[labels[0], True])
        rows2 = []
        for lab in labels:
            plain, coop = median(fence[lab, False]), median(fence[lab, True])
            rows2.append([lab, plain * 1e6, plain / base_plain, coop * 1e6, coop / base_coop])
        print()
        print(
            table(
                "attempt reacquire: lock + fence + pick-up of what arrived in the window",
                ["size", "quiet us", "ratio", "1 coop append us", "ratio"],
                rows2,
            )
        )
        worst = max(worst, *(r[2] for r in rows2), *(r[4] for r in rows2))
        print(f"\nworst ratio {worst:.2f} (target <= 1.5): {'PASS' if worst <= 1.5 else 'MISS'}")
        for s in stores:
            s.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
