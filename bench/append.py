"""Appends/s: fencepost durable and buffered, next to a raw os.write+fsync loop on the same disk.

Targets (DESIGN.md §8): durable >= 70% of raw write+fsync; buffered >= 20k records/s from one
process. Run: python bench/append.py [--records N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time

from _report import table
from fencepost import SessionStore, custom

RECORD = custom("bench", {"text": "x" * 200})


def raw_loop(path: str, n: int, sync: str) -> float:
    line = json.dumps({**RECORD, "id": "00000000", "parentId": None}).encode() + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    t0 = time.perf_counter()
    for _ in range(n):
        os.write(fd, line)
        if sync == "fsync":
            os.fsync(fd)
        elif sync == "fdatasync":
            os.fdatasync(fd)
    dt = time.perf_counter() - t0
    os.close(fd)
    return n / dt


async def store_loop(root: str, n: int, durability: str, batch: int = 1) -> float:
    store = SessionStore(root, durability=durability)  # type: ignore[arg-type]
    session = store.session("bench")
    await session.append(RECORD, writer="metadata")  # create outside the timing
    t0 = time.perf_counter()
    for _ in range(n // batch):
        await session.append([RECORD] * batch if batch > 1 else RECORD, writer="metadata")
    dt = time.perf_counter() - t0
    store.close()
    return n / dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=2000, help="durable records per variant")
    ap.add_argument("--buffered-records", type=int, default=20000)
    ap.add_argument("--dir", default=None, help="directory on the disk to measure")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="fencepost-bench-", dir=args.dir)
    try:
        rows: dict[str, list[float]] = {}
        for r in range(args.rounds):  # interleaved rounds: noise hits every variant alike
            d = os.path.join(base, str(r))
            os.makedirs(d)
            n, nb = args.records, args.buffered_records
            rows.setdefault("raw write+fsync", []).append(raw_loop(f"{d}/raw1", n, "fsync"))
            rows.setdefault("raw write+fdatasync", []).append(raw_loop(f"{d}/raw2", n, "fdatasync"))
            rows.setdefault("fencepost durable (fsync)", []).append(
                asyncio.run(store_loop(f"{d}/s1", n, "fsync"))
            )
            rows.setdefault("raw write (no sync)", []).append(raw_loop(f"{d}/raw3", nb, "none"))
            rows.setdefault("fencepost buffered", []).append(
                asyncio.run(store_loop(f"{d}/s2", nb, "buffered"))
            )
            rows.setdefault("fencepost buffered, batches of 100", []).append(
                asyncio.run(store_loop(f"{d}/s3", nb, "buffered", batch=100))
            )
        best = {k: max(v) for k, v in rows.items()}
        raw = best["raw write+fsync"]
        out = [
            [k, v, v / raw if "buffered" not in k and "no sync" not in k else ""]
            for k, v in best.items()
        ]
        print(
            table(
                f"appends/s, one process, best of {args.rounds} interleaved rounds ({base})",
                ["variant", "records/s", "ratio to raw write+fsync"],
                out,
            )
        )
        durable = best["fencepost durable (fsync)"] / raw
        buffered = best["fencepost buffered"]
        print(
            f"\ndurable / raw write+fsync = {durable:.2f} (target >= 0.70): "
            f"{'PASS' if durable >= 0.70 else 'MISS'}"
        )
        print(
            f"buffered = {buffered:,.0f} records/s (target >= 20,000): "
            f"{'PASS' if buffered >= 20000 else 'MISS'}"
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
