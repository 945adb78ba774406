"""The trajectory plugin: each turn's events in a sidecar file, never in the transcript."""

from __future__ import annotations

import asyncio
import json

import pytest

from fencepost import InvalidSessionIdError, read_transcript
from fencepost.runtime.config import StatePaths
from fencepost.runtime.gateway.plugins.trajectory import (
    TrajectoryNotFoundError,
    parse_trajectory,
    read_trajectory,
    trajectory_path,
)

from .conftest import digests


def events(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_a_turn_records_its_events_in_the_sidecar_and_not_in_the_transcript(
    start_gateway, tmp_path
):
    """Invariant TRAJECTORY-I1."""
    gw = await start_gateway()
    result = await gw.turn("s", "ops", prompt="recall", model="scripted/recall", run_id="run-1")
    assert result.ok
    recorded = events(tmp_path / "trajectories" / "s.jsonl")
    kinds = [(e["event"], e.get("type")) for e in recorded]
    assert kinds[0] == ("turn_started", None) and kinds[-1] == ("turn_finished", None)
    assert ("turn_event", "first_token") in kinds and ("turn_event", "tool_call") in kinds
    assert all(e["run_id"] == "run-1" and e["agent"] == "ops" for e in recorded)
    assert all(e["session_id"] == "s" and e["time"] for e in recorded)
    call = next(e for e in recorded if e.get("type") == "tool_call")
    assert call["data"]["tool"] == "memory_search"
    done = recorded[-1]
    assert done["status"] == "ok" and done["steps"] == 2 and done["elapsed_s"] >= 0
    assert set(done["usage"]) >= {"input", "output"}
    transcript = read_transcript(gw.store.session("s").path)
    writers = {r.stamp["writer"] for r in transcript.entries if r.stamp}
    assert writers == {"attempt"}
    assert b"turn_started" not in (tmp_path / "sessions" / "s.jsonl").read_bytes()
    sidecars = sorted(p.name for p in (tmp_path / "sessions").iterdir())
    assert not any("traj" in name for name in sidecars)


async def test_every_line_is_one_json_object_and_each_session_has_its_own_file(
    start_gateway, tmp_path
):
    """Invariant TRAJECTORY-I2."""
    gw = await start_gateway()
    runs = [gw.turn(f"s{i}", "ops", prompt=f"hello {i}", run_id=f"r{i}") for i in range(4)]
    results = await asyncio.gather(*runs, gw.turn("s0", "ops", prompt="again", run_id="r9"))
    assert all(r.ok for r in results)
    folder = tmp_path / "trajectories"
    assert sorted(p.name for p in folder.iterdir()) == [f"s{i}.jsonl" for i in range(4)]
    for path in folder.iterdir():
        data = path.read_bytes()
        assert data.endswith(b"\n")
        parsed = parse_trajectory(data)
        assert parsed and all(t.event is not None for t in parsed)
        assert {t.event["session_id"] for t in parsed} == {path.stem}
    s0 = read_trajectory(folder, "s0")
    assert [t.event["run_id"] for t in s0 if t.event["event"] == "turn_finished"] == ["r0", "r9"]
    only = read_trajectory(folder, "s0", run_id="r9")
    assert only and {t.event["run_id"] for t in only} == {"r9"}


async def test_recording_trajectories_leaves_the_transcripts_as_the_turns_wrote_them(
    start_gateway, tmp_path
):
    """Invariant TRAJECTORY-I1: same bytes with and without the recorder's lines."""
    gw = await start_gateway()
    assert (await gw.turn("s", "ops", prompt="one")).ok
    before = digests(tmp_path / "sessions")
    plugin = gw.plugins.get_plugin("trajectory")
    written = plugin.written
    gw.plugins.hook.fencepost_turn_event(
        gateway=gw, session_id="s", run_id="x", event={"type": "first_token"}
    )
    assert plugin.written == written + 1
    assert plugin.statistics().events_written == written + 1
    assert digests(tmp_path / "sessions") == before


def test_a_path_like_session_id_and_a_missing_trajectory_are_refused(tmp_path):
    with pytest.raises(InvalidSessionIdError):
        trajectory_path(tmp_path, "../sessions/s")
    with pytest.raises(TrajectoryNotFoundError, match="no trajectory for session 'nope'"):
        read_trajectory(StatePaths(tmp_path).trajectories, "nope")


def test_malformed_and_torn_lines_are_reported_with_their_line_number():
    lines = parse_trajectory(b'{"event":"turn_started"}\n[1]\n\xff\n{"event":"tu')
    assert [(t.line, t.problem is None) for t in lines] == [
        (1, True),
        (2, False),
        (3, False),
        (4, False),
    ]
