"""The original failure, side by side (../shared/origin/bug-report.txt, DESIGN.md §1).

A cron-like attempt writes its prompt, releases the write lock for the model call, and takes it
back. While the model "thinks", the gateway's own writers do what they always do: a model-snapshot
record, a metadata record and a delivery mirror land a few seconds into the run.

(a) a minimal stat-fingerprint fence, written from the failing design: fingerprint
    (dev, ino, size, mtime_ns, ctime_ns) at release, compare on reacquire, abort on any difference;
(b) fencepost: session.attempt / attempt.released(), the writers through session.append.

Expected: with a fast model both pass (the writers come after the model answered); with a slow
model (a) fails every run and (b) never does.

Run: python bench/origin_repro.py [--runs 7] [--slow-s 20] [--fast-s 1]   (--short: CI scale)
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
from fencepost import SessionStore, SessionTakeoverError, custom, message


class FingerprintTakeover(Exception):
    pass


class StatFingerprintSession:
    """The failing design: a flock for writes, a stat() fingerprint across the model call."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)

    async def lock(self) -> None:
        await asyncio.to_thread(fcntl.flock, self.lock_fd, fcntl.LOCK_EX)

    def unlock(self) -> None:
        fcntl.flock(self.lock_fd, fcntl.LOCK_UN)

    def fingerprint(self) -> tuple[int, ...]:
        st = os.stat(self.path)
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def append(self, entry: dict) -> None:
        with open(self.path, "ab") as f:
            f.write(json.dumps(entry).encode() + b"\n")

    async def cooperative_append(self, entry: dict) -> None:
        fd = os.open(self.path + ".lock", os.O_RDWR)  # another writer: its own description
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            self.append(entry)
        finally:
            os.close(fd)

    def close(self) -> None:
        os.close(self.lock_fd)


WRITERS = [("model-snapshot", 0.10), ("metadata", 0.25), ("delivery", 0.40)]


def writer_entries(name: str) -> dict:
    if name == "delivery":
        return message("assistant", [{"type": "text", "text": "previous run's mirrored reply"}])
    return custom(name, {"at": time.time()})


async def writers_during(window_s: float, append) -> None:
    """The gateway's writers fire at fixed times into the run (scaled to the slow model)."""
    start = time.monotonic()
    for name, frac in WRITERS:
        await asyncio.sleep(max(0.0, start + frac * window_s - time.monotonic()))
        await append(name, writer_entries(name))


async def run_fingerprint(root: str, i: int, latency_s: float, writers_at_s: float) -> bool:
    s = StatFingerprintSession(os.path.join(root, f"fp-{i}.jsonl"))
    try:
        await s.lock()
        s.append(message("user", "daily ops review: " + "context " * 2000))
        before = s.fingerprint()
        s.unlock()  # the lock-free window: the model call
        bg = asyncio.create_task(writers_during(writers_at_s, lambda n, e: s.cooperative_append(e)))
        await asyncio.sleep(latency_s)
        await s.lock()
        try:
            if s.fingerprint() != before:
                raise FingerprintTakeover("session takeover detected")
            s.append(message("assistant", "all systems nominal"))
        finally:
            s.unlock()
        await bg
        return True
    except FingerprintTakeover:
        await bg
        return False
    finally:
        s.close()


async def run_fencepost(root: str, i: int, latency_s: float, writers_at_s: float) -> bool:
    store = SessionStore(root)
    others = SessionStore(root)
    session = store.session(f"fp-{i}")
    try:
        async with session.attempt(f"cron-{i}") as attempt:
            await attempt.append(message("user", "daily ops review: " + "context " * 2000))
            async with attempt.released():
                bg = asyncio.create_task(
                    writers_during(
                        writers_at_s,
                        lambda n, e: others.session(f"fp-{i}").append(e, writer=n),
                    )
                )
                await asyncio.sleep(latency_s)
            await attempt.append(message("assistant", "all systems nominal"))
        await bg
        return True
    except SessionTakeoverError:
        return False
    finally:
        store.close()
        others.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--slow-s", type=float, default=20.0, help="the large model's latency")
    ap.add_argument("--fast-s", type=float, default=1.0, help="a fast model's latency")
    ap.add_argument("--short", action="store_true", help="CI scale: 0.4 s and 0.02 s models")
    args = ap.parse_args()
    if args.short:
        args.slow_s, args.fast_s = 0.4, 0.02
    writers_at_s = args.slow_s * 0.5  # the writers' schedule, as in the report: seconds in
    root = tempfile.mkdtemp(prefix="fencepost-origin-")
    rows = []
    try:
        for label, latency in (("fast", args.fast_s), ("slow", args.slow_s)):
            for name, fn in (
                ("(a) stat-fingerprint fence", run_fingerprint),
                ("(b) fencepost", run_fencepost),
            ):
                sub = os.path.join(root, f"{label}-{name[1]}")
                os.makedirs(sub)
                failures = 0
                for i in range(args.runs):
                    ok = await fn(sub, i, latency, writers_at_s)
                    failures += not ok
                rows.append([f"{label} model ({latency:g} s)", name, f"{failures}/{args.runs}"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        table(
            "cron-like attempts with model-snapshot, metadata and delivery writers in the window",
            ["model", "fence", "failures"],
            rows,
        )
    )
    slow_a, slow_b = rows[2][2], rows[3][2]
    ok = slow_a == f"{args.runs}/{args.runs}" and slow_b == f"0/{args.runs}"
    verdict = "AS EXPECTED" if ok else "UNEXPECTED"
    print(f"\nslow model: (a) fails {slow_a}, (b) fails {slow_b}: {verdict}")


if __name__ == "__main__":
    asyncio.run(main())
