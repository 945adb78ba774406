"""The A/B state record (Invariant STORE-I6, STORE-I10)."""

from __future__ import annotations

import os

import pytest

from fencepost import FencepostInternalError
from fencepost.core._state import (
    EMPTY_STATE,
    SLOT_BYTES,
    FileState,
    LeaseHolder,
    Pending,
    read_state,
    write_state,
)


@pytest.fixture
def fd(tmp_path):
    fd = os.open(tmp_path / "s.state", os.O_RDWR | os.O_CREAT)
    yield fd
    os.close(fd)


def test_a_new_state_file_reads_as_empty(fd):
    assert read_state(fd) == EMPTY_STATE


def test_state_round_trips_with_lease_and_pending(fd):
    fs = FileState(1, 2, 3, 4, 5, "h", "leaf")
    state = EMPTY_STATE.next(
        epoch=7,
        lease=LeaseHolder("run", 10, "123", "host", 1, 2),
        committed=fs,
        pending=Pending(3, 10, "sha", fs, "delivery", "r", 99),
    )
    write_state(fd, state)
    assert read_state(fd) == state


def test_the_newest_valid_slot_wins_and_a_torn_one_falls_back():
    """Invariant STORE-I6."""
    import tempfile

    with tempfile.TemporaryFile() as f:
        fd = f.fileno()
        s1 = EMPTY_STATE.next(epoch=1)
        s2 = s1.next(epoch=2)
        write_state(fd, s1)
        write_state(fd, s2)
        assert read_state(fd) == s2
        os.pwrite(fd, b"\x00garbage", (s2.gen % 2) * SLOT_BYTES + 30)
        assert read_state(fd) == s1  # Invariant STORE-I10: never newer than written, never lost


def test_an_oversize_state_is_a_bug_not_a_silent_truncation(fd):
    huge = EMPTY_STATE.next(lease=LeaseHolder("r" * 3000, 1, None, "h", 0, 0))
    with pytest.raises(FencepostInternalError):
        write_state(fd, huge)
