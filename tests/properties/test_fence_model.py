"""The fence against a model (hypothesis): random windows of cooperative writers, readers,
metadata changes, one real outside change and preemption by another attempt.

The model: an attempt is taken over iff a newer epoch appeared (``lease_superseded``, checked
first) or the transcript changed outside the protocol (the change's reason); otherwise it picks
up exactly the cooperative records, in order. Invariants LEASE-I2, LEASE-I6, STORE-I9.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile

from hypothesis import event, given, settings
from hypothesis import strategies as st

from fencepost import (
    OutsideProtocolChangeError,
    SessionStore,
    SessionTakeoverError,
    custom,
    message,
    verify_transcript,
)

WRITERS = ("model-snapshot", "metadata", "delivery", "heartbeat", "plugin:memory")
REAL_CHANGES = {
    "append": "foreign_append",
    "truncate": "truncated",
    "edit": "rewritten",
    "restore": "replaced",
    "delete": "deleted",
}

benign = st.one_of(
    st.tuples(st.just("coop"), st.sampled_from(WRITERS)),
    st.tuples(st.just("read"), st.just("")),
    st.tuples(st.just("meta"), st.sampled_from(["touch", "chmod"])),
)
window = st.tuples(
    st.lists(benign, max_size=6),
    st.none() | st.sampled_from(sorted(REAL_CHANGES)),  # at most one real change
    st.integers(0, 6),  # where it goes
    st.sampled_from([False, False, False, True]),  # another attempt preempts in this window
    st.integers(0, 6),  # where that goes
)


@settings(max_examples=200, deadline=None)
@given(windows=st.lists(window, min_size=1, max_size=3))
def test_the_fence_verdict_equals_the_model(windows):
    with tempfile.TemporaryDirectory() as root:
        asyncio.run(_run(root, windows))


def _outside(kind: str, path: str, backup: str) -> None:
    if kind == "append":
        with open(path, "ab") as f:
            f.write(b'{"type":"custom","customType":"x","data":{},"id":"0badf00d"}\n')
    elif kind == "truncate":
        os.truncate(path, os.path.getsize(path) - 5)
    elif kind == "edit":
        with open(path, "r+b") as f:
            at = f.read().index(b"turn start")
            f.seek(at)
            f.write(b"TURN")
    elif kind == "restore":
        os.replace(backup, path)
    elif kind == "delete":
        os.unlink(path)
    elif kind == "touch":
        os.utime(path)
    elif kind == "chmod":
        os.chmod(path, 0o600 if os.stat(path).st_mode & 0o044 else 0o644)


async def _run(root: str, windows) -> None:
    store = SessionStore(root, durability="buffered", lock_timeout_s=5)
    others = SessionStore(root, durability="buffered", lock_timeout_s=5)
    session = store.session("m")
    path, backup = session.path, session.path + ".bak"
    counter = 0
    try:
        async with session.attempt("holder") as attempt:
            await attempt.append(message("user", "turn start"))
            for benign_ops, real, real_at, preempt, preempt_at in windows:
                shutil.copy(path, backup)
                ops = list(benign_ops)
                if real is not None:
                    ops.insert(min(real_at, len(ops)), ("real", real))
                if preempt:
                    ops.insert(min(preempt_at, len(ops)), ("preempt", ""))
                changed_outside = False
                expected_reason = None
                expected_records = []
                try:
                    async with attempt.released():
                        for op, arg in ops:
                            if op == "coop":
                                counter += 1
                                entry = custom("coop", {"n": counter})
                                try:
                                    await others.session("m").append(entry, writer=arg)
                                    assert not changed_outside, "a change was laundered"
                                    expected_records.append(counter)
                                except OutsideProtocolChangeError:
                                    assert changed_outside  # STORE-I9: refused, not laundered
                            elif op == "read":
                                if os.path.exists(path):
                                    verify_transcript(path)
                            elif op == "meta":
                                if os.path.exists(path):
                                    _outside(arg, path, backup)
                            elif op == "real":
                                _outside(arg, path, backup)
                                changed_outside = True
                                expected_reason = expected_reason or REAL_CHANGES[arg]
                            elif op == "preempt":
                                expected_reason = "lease_superseded"
                                async with others.session("m").attempt(
                                    f"usurper-{counter}", preempt=True
                                ) as usurper:
                                    try:
                                        counter += 1
                                        await usurper.append(custom("coop", {"n": counter}))
                                        assert not changed_outside
                                    except SessionTakeoverError:
                                        assert changed_outside
                except SessionTakeoverError as exc:
                    assert exc.reason == expected_reason, (ops, exc)
                    event(f"takeover: {exc.reason}")
                    return
                assert expected_reason is None, f"missed {expected_reason} in {ops}"
                got = [r.data["data"]["n"] for r in attempt.arrived]
                assert got == expected_records
                event(f"window kept, {(len(got) > 0 and 'with') or 'without'} cooperative records")
                await attempt.append(message("assistant", "step"))
        assert verify_transcript(path).ok
    finally:
        store.close()
        others.close()
