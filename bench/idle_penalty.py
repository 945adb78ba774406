"""What a durable append costs *around* its fdatasync, by what the CPU did during the sync.

`bench/append.py` compares fencepost's durable appends with a raw write+fsync loop. The raw loop
has almost nothing to do after a sync returns; fencepost has ~40 µs of Python work per append.
On some virtual machines an idle vCPU comes back cold (caches and predictors lost while it was
halted), and that work then costs about twice as much. This script measures it: fencepost's
durable append with the fdatasync replaced by a wait of the same length, idle (sleep) or busy
(spin), and reports the time spent outside that wait. Run: python bench/idle_penalty.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

from _report import table
from fencepost import SessionStore, custom

RECORD = custom("bench", {"text": "x" * 200})


def median_fdatasync(path: str, n: int) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    samples = []
    for _ in range(n):
        os.write(fd, b"x" * 440 + b"\n")
        t0 = time.perf_counter()
        os.fdatasync(fd)
        samples.append(time.perf_counter() - t0)
    os.close(fd)
    return statistics.median(samples)


async def work_outside_sync(root: str, n: int, sync: Callable[[int], None] | None) -> float:
    """Seconds per append spent outside ``sync`` (None: buffered, no sync at all)."""
    inside = 0.0

    def timed(fd: int) -> None:
        nonlocal inside
        t0 = time.perf_counter()
        assert sync is not None
        sync(fd)
        inside += time.perf_counter() - t0

    real = os.fdatasync
    os.fdatasync = timed
    try:
        store = SessionStore(root, durability="buffered" if sync is None else "fsync")
        session = store.session("bench")
        await session.append(RECORD, writer="metadata")
        inside = 0.0
        t0 = time.perf_counter()
        for _ in range(n):
            await session.append(RECORD, writer="metadata")
        total = time.perf_counter() - t0
        store.close()
    finally:
        os.fdatasync = real
    return (total - inside) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=None, help="directory on the disk to measure")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="fencepost-idle-", dir=args.dir)
    try:
        sync_s = median_fdatasync(f"{base}/probe", 500)

        def idle(fd: int) -> None:
            time.sleep(sync_s)

        def busy(fd: int) -> None:
            end = time.perf_counter() + sync_s
            while time.perf_counter() < end:
                pass

        variants: dict[str, Callable[[int], None] | None] = {
            "real fdatasync (as shipped)": os.fdatasync,
            f"idle wait of {sync_s * 1e6:.0f} µs (sleep)": idle,
            f"busy wait of {sync_s * 1e6:.0f} µs (spin)": busy,
            "no sync (buffered)": None,
        }
        got: dict[str, list[float]] = {k: [] for k in variants}
        for r in range(args.rounds):
            for i, (name, fn) in enumerate(variants.items()):
                d = f"{base}/{r}-{i}"
                got[name].append(asyncio.run(work_outside_sync(d, args.records, fn)))
        best = {k: min(v) for k, v in got.items()}
        hot = best["no sync (buffered)"]
        rows = [[k, v * 1e6, v / hot] for k, v in best.items()]
        print(
            table(
                f"µs of work per durable append outside the sync, best of {args.rounds} "
                f"(median fdatasync here: {sync_s * 1e6:.0f} µs)",
                ["during the sync the CPU ...", "µs outside the sync", "vs no sync"],
                rows,
            )
        )
        extra = [f"{k}: +{(v - hot) * 1e6:.1f}" for k, v in best.items() if v is not hot]
        print("\nextra µs per append over no sync: " + "; ".join(extra))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
