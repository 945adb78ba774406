"""Real processes appending to one session; real SIGKILLs at random points."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import signal
import time
from pathlib import Path

import pytest

from fencepost import SessionStore, custom, walk_chain
from tests.helpers import procs

pytestmark = [pytest.mark.processes, pytest.mark.slow]

WRITER = """
import asyncio, sys
from fencepost import SessionStore, custom
root, name, count, durability = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

async def main():
    store = SessionStore(root, durability=durability)
    session = store.session("shared")
    print("ready", flush=True)
    for i in range(count):
        await session.append(custom("w", {"writer": name, "i": i, "pad": "x" * (i % 300)}),
                             writer="plugin:" + name)
        print(i, flush=True)

asyncio.run(main())
"""


def test_eight_processes_appending_a_thousand_records_each_lose_and_tear_nothing(tmp_path):
    writers = [procs.spawn(WRITER, str(tmp_path), f"w{n}", "1000", "buffered") for n in range(8)]
    for p in writers:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    data = (tmp_path / "shared.jsonl").read_bytes()
    assert data.endswith(b"\n")
    report = walk_chain(data)
    assert report.ok, report.problems[:3]
    recs = [json.loads(line) for line in data.splitlines()[1:]]
    seen = sorted((r["data"]["writer"], r["data"]["i"]) for r in recs)
    assert seen == sorted((f"w{n}", i) for n in range(8) for i in range(1000))
    assert report.last_seq == 8000
    assert not (tmp_path / "shared.jsonl.events").exists()


def test_writers_killed_at_random_points_never_lose_a_committed_record(tmp_path):
    """RECOVERY-G1, Invariant RECOVERY-I1, RECOVERY-I4: many SIGKILL trials.

    After recovery the transcript verifies, every acknowledged record is present once, torn
    bytes are in the quarantine."""
    rng = random.Random(20261124)
    store = SessionStore(tmp_path, durability="buffered")
    session = store.session("shared")
    acknowledged: set[tuple[str, int]] = set()
    trials = 30
    for trial in range(trials):
        name = f"t{trial}"
        # Large records make a kill mid-write (a torn line) likely, not just possible.
        p = procs.spawn(
            WRITER.replace('"x" * (i % 300)', '"x" * 32_000'),
            str(tmp_path),
            name,
            "100000",
            "buffered",
        )
        assert p.stdout is not None
        assert p.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.0, 0.02))
        p.send_signal(signal.SIGKILL)
        out, _ = p.communicate()
        assert p.returncode == -signal.SIGKILL
        acknowledged |= {(name, int(x)) for x in out.split()}
        # Recovery happens under the lock, by the next protocol writer.
        asyncio.run(session.append(custom("probe", {"trial": trial}), writer="metadata"))
        session.close()
    data = Path(session.path).read_bytes()
    report = walk_chain(data)
    assert report.ok, report.problems[:3]
    recs = [json.loads(line) for line in data.splitlines()[1:]]
    present = [(r["data"]["writer"], r["data"]["i"]) for r in recs if r["customType"] == "w"]
    assert len(present) == len(set(present))  # never twice
    assert acknowledged <= set(present)  # never lost
    # Every cut is in the quarantine, with its bytes, and the transcript holds none of them.
    quarantined = []
    if os.path.exists(session.quarantine_path):
        quarantined = [
            json.loads(x) for x in Path(session.quarantine_path).read_bytes().splitlines()
        ]
    for q in quarantined:
        torn = base64.b64decode(q["base64"])
        assert len(torn) == q["length"] and not torn.endswith(b"\n")
    kinds = [e.kind for e in session.fence_events()]
    assert set(kinds) <= {"quarantined", "recovered"}
    assert kinds.count("quarantined") == len(quarantined)
    print(
        f"{trials} trials: {len(acknowledged)} acknowledged, {len(quarantined)} torn tails "
        f"quarantined, {kinds.count('recovered')} recoveries"
    )
    store.close()
