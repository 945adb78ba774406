"""Leases and the reacquire fence (docs/design/leases-and-fencing.md), on real files."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fencepost import (
    LeaseBusyError,
    OutsideProtocolChangeError,
    SessionStore,
    SessionTakeoverError,
    compaction,
    custom,
    custom_message,
    decide_lease,
    label,
    message,
    model_change,
    read_transcript,
    session_info,
    thinking_level_change,
    verify_transcript,
)
from fencepost.core import LeaseHolder
from tests.helpers import procs


@pytest.fixture
def store(tmp_path):
    s = SessionStore(tmp_path / "sessions", durability="buffered", lock_timeout_s=5)
    yield s
    s.close()


def other_store(store: SessionStore) -> SessionStore:
    """A second store over the same directory: its own lock descriptions, like a process."""
    return SessionStore(store.root, durability="buffered", lock_timeout_s=5)


def entries_of(path: str) -> list[dict]:
    return [r.data for r in read_transcript(path).entries]


def file_bytes(root: str) -> dict[str, bytes]:
    out = {}
    for name in sorted(os.listdir(root)):
        if not name.endswith(".lock"):
            with open(os.path.join(root, name), "rb") as f:
                out[name] = f.read()
    return out


async def started(session, run_id="run-1", **kw):
    """An attempt with its prep records written (so the transcript exists)."""
    cm = session.attempt(run_id, **kw)
    attempt = await cm.__aenter__()
    await attempt.append(message("user", "what changed overnight?"))
    return cm, attempt


# ---- cooperative writes are never a takeover ----------------------------------------------

COOPERATIVE = [
    ("model-snapshot", custom("model-snapshot", {"provider": "scripted", "modelId": "slow"})),
    ("metadata", label("ffffffff", "nightly")),
    ("metadata", session_info("Ops review")),
    ("metadata", model_change("anthropic", "claude-opus-4-6")),
    ("metadata", thinking_level_change("high")),
    # A compaction entry by hand (the writer kind `compaction` is the lease holder's: STORE-I14).
    ("operator", compaction("Earlier: the user asked for a review.", "ffffffff", 12000)),
    ("delivery", message("assistant", [{"type": "text", "text": "mirrored reply"}])),
    ("plugin:subagents", custom_message("subagent-announce", "sub-agent finished", True)),
    ("steering", message("user", "also check the backups")),
]


@pytest.mark.parametrize(("writer", "entry"), COOPERATIVE, ids=[e["type"] for _, e in COOPERATIVE])
async def test_a_cooperative_write_in_the_window_is_picked_up_not_a_takeover(store, writer, entry):
    """Invariants LEASE-I2, LEASE-I6."""
    session = store.session("s")
    async with session.attempt("run-1") as attempt:
        await attempt.append(message("user", "go"))
        async with attempt.released():
            if entry["type"] in ("label", "compaction"):
                leaf = entries_of(session.path)[-1]["id"]
                entry = {
                    **entry,
                    **({"targetId": leaf} if entry["type"] == "label" else {}),
                    **({"firstKeptEntryId": leaf} if entry["type"] == "compaction" else {}),
                }
            await other_store(store).session("s").append(entry, writer=writer)
        assert [r.data["type"] for r in attempt.arrived] == [entry["type"]]
        assert attempt.arrived[0].stamp["writer"] == writer
        await attempt.append(message("assistant", [{"type": "text", "text": "done"}]))
    assert attempt.takeover is None
    assert verify_transcript(session.path).ok


async def test_a_burst_of_fifty_writes_from_five_writer_kinds_loses_nothing(store):
    session = store.session("s")
    kinds = ["model-snapshot", "metadata", "delivery", "heartbeat", "plugin:memory"]
    async with session.attempt("run-1") as attempt:
        await attempt.append(message("user", "go"))
        async with attempt.released():
            writers = [other_store(store).session("s") for _ in kinds]
            await asyncio.gather(
                *(
                    w.append(custom("burst", {"kind": k, "i": i}), writer=k)
                    for i in range(10)
                    for k, w in zip(kinds, writers, strict=True)
                )
            )
        got = [(r.data["data"]["kind"], r.data["data"]["i"]) for r in attempt.arrived]
        assert sorted(got) == sorted((k, i) for k in kinds for i in range(10))
        assert attempt.statistics().arrived_by_writer == dict.fromkeys(kinds, 10)
        await attempt.append(message("assistant", "ok"))
    assert verify_transcript(session.path).ok


@pytest.mark.processes
async def test_a_cooperative_writer_in_another_process_is_not_a_takeover(store):
    session = store.session("s")
    async with session.attempt("run-1") as attempt:
        await attempt.append(message("user", "go"))
        async with attempt.released():
            done = await asyncio.to_thread(
                procs.cli,
                "sessions",
                "append",
                "--root",
                store.root,
                "s",
                "--writer",
                "delivery",
                "--entry",
                '{"type":"custom","customType":"mirror","data":{"from":"cli"}}',
            )
            assert done.returncode == 0, done.stderr
        assert [r.data["data"] for r in attempt.arrived] == [{"from": "cli"}]
        await attempt.append(message("assistant", "ok"))
    assert verify_transcript(session.path).ok


async def test_a_multi_step_turn_reacquires_six_times_with_writes_in_between(store):
    session = store.session("s")
    async with session.attempt("run-1") as attempt:
        await attempt.append(message("user", "go"))
        for step in range(6):
            async with attempt.released():
                await (
                    other_store(store)
                    .session("s")
                    .append(custom("snapshot", {"step": step}), writer="model-snapshot")
                )
            assert [r.data["data"]["step"] for r in attempt.arrived] == [step]
            await attempt.append(message("assistant", f"step {step}"))
        assert attempt.statistics().windows == 6
    kinds = [(e["type"], e.get("customType")) for e in entries_of(session.path)]
    assert kinds == [("message", None)] + [("custom", "snapshot"), ("message", None)] * 6
    entries = entries_of(session.path)
    assert [e["parentId"] for e in entries[1:]] == [e["id"] for e in entries[:-1]]
    assert verify_transcript(session.path).ok


async def test_a_second_attempt_waits_for_the_first_then_runs_and_neither_fails(store):
    """Invariant LEASE-I1: one holder; queue semantics without preempt."""
    session = store.session("main")
    order: list[str] = []
    first_released = asyncio.Event()

    async def first():
        async with session.attempt("cron-run") as attempt:
            await attempt.append(message("user", "daily review"))
            async with attempt.released():
                first_released.set()
                await asyncio.sleep(0.3)  # the slow model
            await attempt.append(message("assistant", "review done"))
            order.append("first done")

    async def heartbeat():
        await first_released.wait()
        hb = other_store(store).session("main")
        assert hb.lease_holder() is not None and hb.lease_holder().run_id == "cron-run"
        async with hb.attempt("heartbeat-run", wait_timeout_s=10) as attempt:
            order.append("heartbeat started")
            await attempt.append(message("user", "HEARTBEAT"))

    await asyncio.gather(first(), heartbeat())
    assert order == ["first done", "heartbeat started"]
    assert session.epoch() == 2
    assert verify_transcript(session.path).ok


async def test_a_waiter_gives_up_with_lease_busy_naming_the_holder(store):
    session = store.session("s")
    async with session.attempt("holder") as attempt:
        await attempt.append(message("user", "go"))
        async with attempt.released():
            with pytest.raises(LeaseBusyError, match="run holder") as info:
                async with other_store(store).session("s").attempt("late", wait_timeout_s=0.1):
                    pass
            assert info.value.holder_run_id == "holder"


async def test_pure_readers_in_the_window_change_nothing(store):
    """Invariant STORE-I8, seen from the fence: readers are not writers."""
    session = store.session("s")
    async with session.attempt("run-1") as attempt:
        await attempt.append(message("user", "go"))
        async with attempt.released():
            before = file_bytes(store.root)
            reader = other_store(store).session("s")
            reader.read()
            verify_transcript(reader.path)
            reader.lease_holder()
            shown = await asyncio.to_thread(
                procs.cli, "sessions", "show", "--root", store.root, "s"
            )
            assert shown.returncode == 0, shown.stderr
            assert file_bytes(store.root) == before
        assert attempt.arrived == ()
        assert attempt.statistics().fast_path == 1


@pytest.mark.parametrize("change", ["chmod", "touch"])
async def test_a_metadata_only_change_is_not_a_takeover(store, change):
    session = store.session("s")
    async with session.attempt("run-1") as attempt:
        await attempt.append(message("user", "go"))
        async with attempt.released():
            if change == "chmod":
                os.chmod(session.path, 0o600)
            else:
                os.utime(session.path)
        await attempt.append(message("assistant", "fine"))
        assert attempt.takeover is None
    kinds = [e.kind for e in session.fence_events()]
    if change == "chmod":  # only ctime moves, and the fence never looks at ctime
        assert attempt.statistics().fast_path == 1 and kinds == []
    else:  # a new mtime, same bytes: the slow path proves it and adopts the metadata
        assert attempt.statistics().slow_path == 1 and kinds == ["metadata_adopted"]


# ---- real takeovers are always caught, with the right reason -------------------------------


def append_outside(path: str) -> None:
    with open(path, "ab") as f:
        f.write(b'{"type":"custom","customType":"intruder","data":{},"id":"deadbeef"}\n')


def truncate(path: str) -> None:
    os.truncate(path, os.path.getsize(path) - 10)


def edit_in_place(path: str) -> None:
    with open(path, "r+b") as f:
        data = f.read()
        at = data.index(b"what changed")
        f.seek(at)
        f.write(b"WHAT")


def delete(path: str) -> None:
    os.unlink(path)


def rename_away(path: str) -> None:
    os.rename(path, path + ".moved")


TAKEOVERS = [
    (append_outside, "foreign_append"),
    (truncate, "truncated"),
    (edit_in_place, "rewritten"),
    (delete, "deleted"),
    (rename_away, "deleted"),
]


@pytest.mark.parametrize(("change", "reason"), TAKEOVERS, ids=[r for _, r in TAKEOVERS])
async def test_a_change_outside_the_protocol_is_a_takeover_with_its_reason(store, change, reason):
    """Invariants LEASE-I2, LEASE-I4, LEASE-I5."""
    session = store.session("s")
    cm, attempt = await started(session)
    try:
        with pytest.raises(SessionTakeoverError) as info:
            async with attempt.released():
                change(session.path)
        assert info.value.reason == reason
        assert attempt.takeover is info.value
        with pytest.raises(SessionTakeoverError):  # sticky
            await attempt.append(message("assistant", "too late"))
    finally:
        await cm.__aexit__(None, None, None)
    assert session.lease_holder() is None  # released on the error path too
    events = session.fence_events()
    assert events[-1].reason == reason and events[-1].run_id == "run-1"


async def test_restoring_an_older_copy_is_a_replaced_takeover(store):
    session = store.session("s")
    cm, attempt = await started(session)
    shutil.copy(session.path, session.path + ".bak")
    await attempt.append(message("assistant", "more"))
    try:
        with pytest.raises(SessionTakeoverError) as info:
            async with attempt.released():
                os.replace(session.path + ".bak", session.path)
        assert info.value.reason == "replaced"
        assert "inode" in info.value.description
    finally:
        await cm.__aexit__(None, None, None)


async def test_an_outside_change_is_never_laundered_by_a_later_cooperative_write(store):
    """Invariant STORE-I9: the cooperative writer refuses, and the holder still sees it."""
    session = store.session("s")
    cm, attempt = await started(session)
    try:
        with pytest.raises(SessionTakeoverError) as info:
            async with attempt.released():
                append_outside(session.path)
                with pytest.raises(OutsideProtocolChangeError):
                    await (
                        other_store(store)
                        .session("s")
                        .append(custom("snap", {}), writer="model-snapshot")
                    )
        assert info.value.reason == "foreign_append"
    finally:
        await cm.__aexit__(None, None, None)
    assert b"snap" not in Path(session.path).read_bytes()


PREEMPTER = """
import asyncio, sys
from fencepost import SessionStore, message
async def main():
    s = SessionStore(sys.argv[1], durability="buffered").session("s")
    async with s.attempt("usurper", preempt=True) as a:
        await a.append(message("user", "mine now"))
    print(s.epoch())
asyncio.run(main())
"""


@pytest.mark.processes
async def test_another_process_preempting_the_lease_is_lease_superseded(store):
    session = store.session("s")
    cm, attempt = await started(session)
    try:
        with pytest.raises(SessionTakeoverError) as info:
            async with attempt.released():
                got = await asyncio.to_thread(procs.run, PREEMPTER, store.root)
                assert got.returncode == 0, got.stderr
        assert info.value.reason == "lease_superseded"
        assert (info.value.epoch_held, info.value.epoch_seen) == (1, 2)
    finally:
        await cm.__aexit__(None, None, None)
    texts = [e["message"]["content"] for e in entries_of(session.path)]
    assert texts == ["what changed overnight?", "mine now"]


async def test_the_write_lock_held_past_the_timeout_is_a_lock_timeout_takeover(tmp_path):
    store = SessionStore(tmp_path, durability="buffered", lock_timeout_s=0.2)
    session = store.session("s")
    cm, attempt = await started(session)
    blocker = SessionStore(tmp_path, durability="buffered").session("s").write_lock
    try:
        with pytest.raises(SessionTakeoverError) as info:
            async with attempt.released():
                await blocker.acquire(1, writer="metadata")
        assert info.value.reason == "lock_timeout"
    finally:
        blocker.release()
        await cm.__aexit__(None, None, None)
    store.close()


# ---- lease liveness --------------------------------------------------------------------------

HOLDER = """
import asyncio, sys
from fencepost import SessionStore, SessionTakeoverError, message
async def main():
    s = SessionStore(sys.argv[1], durability="buffered").session("s")
    async with s.attempt("sleeper", lease_ttl_s=float(sys.argv[2])) as a:
        await a.append(message("user", "prep"))
        try:
            async with a.released():
                print("released", flush=True)
                sys.stdin.readline()  # the model call; the test pauses or kills us here
            await a.append(message("assistant", "late reply"))
            print("wrote", flush=True)
        except SessionTakeoverError as exc:
            print("fenced", exc.reason, flush=True)
asyncio.run(main())
"""


def spawn_holder(root: str, ttl_s: float):
    child = procs.spawn(HOLDER, root, str(ttl_s), stdin=subprocess.PIPE)
    assert child.stdout.readline().strip() == b"released", child.stderr.read()
    return child


@pytest.mark.processes
async def test_a_holder_killed_with_sigkill_does_not_block_the_session(store):
    """Invariant LEASE-I1: a dead holder's lease is taken with a new epoch."""
    child = spawn_holder(store.root, ttl_s=3600)
    child.kill()
    child.communicate()
    session = store.session("s")
    t0 = time.monotonic()
    async with session.attempt("next", wait_timeout_s=5) as attempt:
        assert attempt.epoch == 2
        await attempt.append(message("user", "after the crash"))
    assert time.monotonic() - t0 < 2
    taken = [e for e in session.fence_events() if e.kind == "lease_taken"]
    assert taken and taken[-1].reason == "take_dead" and "sleeper" in taken[-1].description


@pytest.mark.processes
async def test_a_holder_paused_past_its_deadline_is_fenced_out_when_it_resumes(store):
    """Invariant LEASE-I3: a superseded holder never writes again."""
    child = spawn_holder(store.root, ttl_s=0.5)
    os.kill(child.pid, signal.SIGSTOP)
    try:
        session = store.session("s")
        async with session.attempt("next", wait_timeout_s=10) as attempt:
            assert attempt.epoch == 2
            await attempt.append(message("user", "taken over"))
    finally:
        os.kill(child.pid, signal.SIGCONT)
    out, err = child.communicate(b"\n", timeout=30)
    assert out.strip() == b"fenced lease_superseded", err
    texts = [e["message"]["content"] for e in entries_of(session.path)]
    assert texts == ["prep", "taken over"]
    assert verify_transcript(session.path).ok


async def test_cancellation_inside_the_window_releases_lease_and_lock(store):
    """Invariant LEASE-I5."""
    session = store.session("s")

    async def turn():
        async with session.attempt("run-1") as attempt:
            await attempt.append(message("user", "go"))
            async with attempt.released():
                await asyncio.sleep(30)

    task = asyncio.create_task(turn())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert session.lease_holder() is None
    assert not session.write_lock.statistics().held
    async with session.attempt("run-2", wait_timeout_s=0.5) as attempt:
        assert attempt.epoch == 2


async def test_an_error_in_the_prep_phase_releases_lease_and_lock(store):
    session = store.session("s")
    with pytest.raises(ZeroDivisionError):
        async with session.attempt("run-1") as attempt:
            await attempt.append(message("user", "go"))
            1 / 0  # noqa: B018
    assert session.lease_holder() is None and not session.write_lock.statistics().held


async def test_a_long_turn_renews_its_lease_so_nobody_takes_it(store):
    session = store.session("s")
    async with session.attempt("run-1", lease_ttl_s=0.3) as attempt:
        await attempt.append(message("user", "go"))
        async with attempt.released():
            await asyncio.sleep(0.8)  # longer than the TTL: renewals keep the lease
            with pytest.raises(LeaseBusyError):
                async with other_store(store).session("s").attempt("x", wait_timeout_s=0.05):
                    pass
        await attempt.append(message("assistant", "still mine"))
        assert attempt.statistics().renewals >= 2


async def test_append_inside_the_window_is_misuse(store):
    session = store.session("s")
    async with session.attempt("run-1") as attempt, attempt.released():
        with pytest.raises(RuntimeError, match="released"):
            await attempt.append(message("user", "no"))


# ---- the pure decision ------------------------------------------------------------------------

HOLDER_LEASE = LeaseHolder("r", 1, "9", "h", acquired_ns=0, deadline_ns=100)


@pytest.mark.parametrize(
    ("lease", "now_ns", "preempt", "alive", "expected"),
    [
        (None, 0, False, None, "take"),
        (None, 0, True, None, "take"),
        (HOLDER_LEASE, 50, True, True, "preempt"),
        (HOLDER_LEASE, 50, False, False, "take_dead"),
        (HOLDER_LEASE, 50, False, True, "wait"),
        (HOLDER_LEASE, 50, False, None, "wait"),
        (HOLDER_LEASE, 101, False, True, "take_expired"),
        (HOLDER_LEASE, 101, False, None, "take_expired"),
        (HOLDER_LEASE, 100, False, None, "wait"),
    ],
)
def test_decide_lease(lease, now_ns, preempt, alive, expected):
    """Invariant LEASE-I1."""
    assert decide_lease(lease, now_ns=now_ns, preempt=preempt, alive=alive) == expected


async def test_resume_after_an_error_in_the_window_runs_the_fence_and_allows_cleanup(store):
    session = store.session("s")
    async with session.attempt("run-1") as attempt:
        await attempt.append(message("assistant", [{"type": "toolCall", "id": "c1"}]))
        with pytest.raises(TimeoutError):
            async with attempt.released():
                await other_store(store).session("s").append(custom("x", {}), writer="metadata")
                raise TimeoutError
        assert not attempt.holds_lock
        await attempt.resume()
        assert [r.data["type"] for r in attempt.arrived] == ["custom"]
        await attempt.append(message("toolResult", "interrupted", toolCallId="c1", isError=True))
    assert verify_transcript(session.path).ok
