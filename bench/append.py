"""Appends/s: fencepost durable and buffered, next to a raw os.write+fsync loop on the same disk.

Targets (DESIGN.md §8): durable >= 70% of raw write+fsync; buffered >= 20k records/s from one
process. Run: python bench/append.py [--records N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
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


def protocol_floor(path: str, n: int) -> float:
    """The system calls of one durable protocol append, with every byte encoded beforehand.

    The same sequence as ``Session.append`` (docs/design/write-protocol.md, steps 1-9): lock, owner
    record, read the state, stat, intent, write, fdatasync, sentinel mtime, commit, unlock. What
    it costs over the raw loop is the I/O design; what fencepost costs over it is Python work.
    """
    line = json.dumps({**RECORD, "id": "00000000", "parentId": None, "fencepost": {}}).encode()
    line = line.ljust(440) + b"\n"
    slot, owner = b"0" * 2047 + b"\n", b"o" * 511 + b"\n"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    state = os.open(path + ".state", os.O_RDWR | os.O_CREAT, 0o644)
    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(state, slot + slot, 0)
    t0 = time.perf_counter()
    for i in range(n):
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.pwrite(lock, owner, 0)
        os.pread(state, 4096, 0)
        os.stat(path)
        os.pwrite(state, slot, 2048 * (i % 2))
        os.write(fd, line)
        os.fdatasync(fd)
        os.utime(fd, ns=(0, (time.time_ns() // 10**9 - 2) * 10**9))
        os.pwrite(state, slot, 2048 * ((i + 1) % 2))
        fcntl.flock(lock, fcntl.LOCK_UN)
    dt = time.perf_counter() - t0
    for f in (fd, state, lock):
        os.close(f)
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
            rows.setdefault("protocol system calls alone (no Python work)", []).append(
                protocol_floor(f"{d}/floor", n)
            )
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
