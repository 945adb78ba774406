"""The A/B state record (Invariant STORE-I6, STORE-I10)."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fencepost import FencepostInternalError
from fencepost.core._state import (
    EMPTY_STATE,
    SLOT_BYTES,
    FileState,
    LeaseHolder,
    Pending,
    SessionState,
    _parse_slot,
    _to_json,
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


_text = st.text(max_size=40)  # quotes, backslashes, control characters, astral code points
_int = st.integers(min_value=0, max_value=2**63)
_files = st.builds(FileState, _int, _int, _int, _int, _int, st.none() | _text, st.none() | _text)
_states = st.builds(
    lambda gen, epoch, lease, committed, pending: SessionState(
        gen, epoch, lease, committed, pending
    ),
    _int,
    _int,
    st.none() | st.builds(LeaseHolder, _text, _int, st.none() | _text, _text, _int, _int),
    st.none() | _files,
    st.none() | st.builds(Pending, _int, _int, _text, _files, _text, st.none() | _text, _int),
)


@settings(max_examples=300)
@given(_states)
def test_the_hand_written_slot_encoding_is_the_json_of_the_state(state):
    """The spelled-out encoder (_state._to_json) says exactly what dataclasses.asdict says."""
    line = _to_json(state)
    assert json.loads(line[9:]) == dataclasses.asdict(state)
    assert _parse_slot(line) == state
