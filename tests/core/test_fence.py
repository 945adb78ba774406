"""The pure verdicts of _fence.py, exhaustively over small cases."""

from __future__ import annotations

import hashlib
import itertools
import json

from fencepost.core._fence import (
    Observed,
    classify_growth,
    classify_stat,
    prefix_intact,
    sentinel_mtime_ns,
    settle_pending,
)
from fencepost.core._stamp import Stamp, line_hash
from fencepost.core._state import FileState, Pending

BASE = FileState(dev=1, ino=2, size=100, mtime_ns=5_000_000_000, seq=3, last_hash="h", leaf_id="a")


def obs(dev=1, ino=2, size=100, mtime_ns=5_000_000_000) -> Observed:
    return Observed(dev, ino, size, mtime_ns, 0)


def test_classify_stat_covers_every_combination():
    """Invariant STORE-I4: only an exact (dev, ino, size, mtime) match is the fast path."""
    assert classify_stat(BASE, None) == "deleted"
    for dev, ino, size, mtime in itertools.product([1, 9], [2, 9], [50, 100, 150], [5e9, 6e9]):
        got = classify_stat(BASE, obs(dev, ino, size, int(mtime)))
        if (dev, ino) != (1, 2):
            assert got == "replaced"
        elif size == 100 and mtime == 5e9:
            assert got == "unchanged"
        elif size < 100:
            assert got == "truncated"
        elif size == 100:
            assert got == "same_size"
        else:
            assert got == "grown"


def test_a_completed_pending_write_is_the_committed_state():
    after = FileState(1, 2, 180, 7_000_000_000, 4, "h2", "b")
    pending = Pending(100, 80, "x", after, "delivery", None, 1)
    assert settle_pending(BASE, pending, obs(size=180, mtime_ns=7_000_000_000)) == after
    assert settle_pending(BASE, pending, obs()) == BASE  # never started
    assert settle_pending(BASE, pending, obs(size=140)) == BASE  # torn: not settled here
    assert settle_pending(BASE, None, obs(size=180)) == BASE


def test_the_sentinel_mtime_is_whole_seconds_at_least_two_seconds_in_the_past():
    now = 1_700_000_000_123_456_789
    s = sentinel_mtime_ns(now)
    assert s % 1_000_000_000 == 0
    assert 2_000_000_000 <= now - s < 3_000_000_000


def _line(seq: int, prev: str | None, writer="delivery", **extra) -> bytes:
    rec = {
        "type": "custom",
        "id": f"{seq:08x}",
        "fencepost": Stamp(writer, None, 0, seq, prev).to_json(),
    }
    rec.update(extra)
    return json.dumps(rec, separators=(",", ":")).encode()


def _chain(n: int) -> tuple[bytes, FileState]:
    lines, prev = [], None
    for seq in range(n):
        raw = _line(seq, prev)
        lines.append(raw)
        prev = line_hash(raw)
    data = b"\n".join(lines) + b"\n"
    return data, FileState(1, 2, len(data), 5_000_000_000, n - 1, prev, f"{n - 1:08x}")


def test_prefix_intact_accepts_identical_bytes_and_names_the_first_difference():
    data, state = _chain(5)
    assert prefix_intact(data, state) == (True, "identical bytes")
    edited = data.replace(b'"00000002"', b'"0000000f"')
    ok, why = prefix_intact(edited, state)
    assert not ok and "line 4" in why  # line 3 changed, so line 4's link breaks


def test_growth_of_complete_chained_records_is_recovered_not_foreign():
    """Invariant RECOVERY-I3."""
    data, state = _chain(3)
    more, _ = _chain(5)
    tail = more[len(data) :]
    g = classify_growth(state, None, tail, obs(size=len(more)))
    assert g.recovered_records == 2 and g.foreign_offset is None and g.torn == b""
    assert g.committed.size == len(more) and g.committed.seq == 4


def test_growth_that_breaks_the_chain_is_foreign_from_the_first_bad_byte():
    data, state = _chain(3)
    good = _line(3, state.last_hash)
    bad = b'{"type":"custom","id":"deadbeef"}'
    tail = good + b"\n" + bad + b"\n"
    g = classify_growth(state, None, tail, obs(size=len(data) + len(tail)))
    assert g.recovered_records == 1
    assert g.foreign_offset == len(data) + len(good) + 1 and g.foreign_len == len(bad) + 1


def test_a_torn_write_claimed_by_an_intent_is_torn_and_unclaimed_bytes_are_foreign():
    """Invariant RECOVERY-I1: only an intent makes bytes a protocol write's."""
    data, state = _chain(3)
    payload = _line(3, state.last_hash) + b"\n"
    pending = Pending(
        len(data),
        len(payload),
        hashlib.sha256(payload).hexdigest(),
        FileState(1, 2, len(data) + len(payload), 9, 3, "x", "y"),
        "delivery",
        None,
        7,
    )
    half = payload[:10]
    g = classify_growth(state, pending, half, obs(size=len(data) + 10))
    assert g.torn == half and g.foreign_offset is None
    g = classify_growth(state, None, half, obs(size=len(data) + 10))
    assert g.torn == b"" and g.foreign_offset == len(data)
    g = classify_growth(state, pending, payload, obs(size=len(data) + len(payload)))
    assert g.recovered_records == 1 and g.foreign_offset is None
