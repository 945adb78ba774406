"""The trajectory plugin: what happened during each turn, per session, in its own sidecar file
``<home>/trajectories/<session_id>.jsonl`` — never in the transcript (docs/design/memory.md,
"Trajectory recorder").

One JSON line per event: ``turn_started``, ``turn_event`` (first token, tool call, failed
attempt) and ``turn_finished`` (status, usage, elapsed), each with the time, session, run id and
agent. ``read_trajectory`` reads it back for ``fencepost trajectory export``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ....core import validate_session_id
from ....errors import FencepostError
from .._hooks import hookimpl

if TYPE_CHECKING:
    from ...agent import TurnResult
    from .._gateway import Gateway

__all__ = [
    "TrajectoryLine",
    "TrajectoryNotFoundError",
    "TrajectoryPlugin",
    "TrajectoryStatistics",
    "encode_event",
    "finished_event",
    "parse_trajectory",
    "read_trajectory",
    "trajectory_path",
]


class TrajectoryNotFoundError(FencepostError, LookupError):
    """No trajectory was recorded for a session (or no such session)."""

    def __init__(self, session_id: str, path: str) -> None:
        super().__init__(
            f"no trajectory for session {session_id!r} (no file at {path}); trajectories are "
            "recorded by a gateway with the 'trajectory' plugin enabled"
        )
        self.session_id = session_id
        self.path = path


def trajectory_path(trajectories: str | os.PathLike[str], session_id: str) -> Path:
    """The sidecar file of a session; a path-like id is refused (InvalidSessionIdError)."""
    validate_session_id(session_id)  # raises InvalidSessionIdError for a path-like id
    # Invariant TRAJECTORY-I1: the recorder's file lives under trajectories/, never a transcript.
    return Path(trajectories) / f"{session_id}.jsonl"


def encode_event(event: Mapping[str, Any]) -> bytes:
    """One complete line (newline included); values JSON cannot carry become strings. Pure."""
    return (
        json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str).encode() + b"\n"
    )


def finished_event(result: TurnResult) -> dict[str, Any]:
    """The fields of ``turn_finished`` from a TurnResult. Pure."""
    return {
        "status": result.status,
        "model": result.model,
        "usage": dict(result.usage),
        "elapsed_s": round(result.elapsed_s, 3),
        "steps": result.steps,
        "records_written": result.records_written,
        "error_kind": result.error_kind,
        "error_message": result.error_message,
        "failed_models": list(result.failed_models),
        "fence": dict(result.fence) if result.fence else None,
        # a takeover's reply and tool output, kept here since the transcript could not take them
        "unwritten": [dict(m) for m in result.unwritten],
    }


@dataclass(frozen=True)
class TrajectoryLine:
    line: int
    event: dict[str, Any] | None  # None: the line is not a JSON object
    raw: bytes
    problem: str | None = None


def parse_trajectory(data: bytes) -> list[TrajectoryLine]:
    """Every line of a trajectory file; malformed lines are kept with their problem (and a
    torn last line, from a crash mid-write, is reported, not dropped silently). Pure."""
    out = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except ValueError as exc:  # includes UnicodeDecodeError
            out.append(TrajectoryLine(number, None, raw, f"not a JSON line ({exc})"))
            continue
        if not isinstance(obj, dict):
            out.append(TrajectoryLine(number, None, raw, "not a JSON object"))
            continue
        out.append(TrajectoryLine(number, obj, raw))
    return out


def read_trajectory(
    trajectories: str | os.PathLike[str], session_id: str, *, run_id: str | None = None
) -> list[TrajectoryLine]:
    """A session's recorded events in order (optionally one run's), read-only."""
    path = trajectory_path(trajectories, session_id)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TrajectoryNotFoundError(session_id, str(path)) from None
    lines = parse_trajectory(data)
    if run_id is not None:
        lines = [t for t in lines if t.event is None or t.event.get("run_id") == run_id]
    return lines


@dataclass(frozen=True)
class TrajectoryStatistics:
    events_written: int
    turns_running: int


class TrajectoryPlugin:
    """Built-in plugin ``trajectory``: appends each turn's events to the session's sidecar."""

    def __init__(self) -> None:
        self.written = 0
        self._agents: dict[str, str] = {}  # run id -> agent, for turn_event (which lacks it)

    def __repr__(self) -> str:
        return f"<TrajectoryPlugin written={self.written} running={len(self._agents)}>"

    def statistics(self) -> TrajectoryStatistics:
        return TrajectoryStatistics(events_written=self.written, turns_running=len(self._agents))

    def _record(self, gateway: Gateway, session_id: str, event: dict[str, Any]) -> None:
        line = {"time": gateway.clock.now().isoformat(timespec="milliseconds"), **event}
        line["session_id"] = session_id
        data = encode_event(line)
        path = trajectory_path(gateway.paths.trajectories, session_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Invariant TRAJECTORY-I2: one complete line per event, one write on an O_APPEND fd.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            written = os.write(fd, data)
            if written != len(data):  # a full disk: leave no partial line behind
                os.ftruncate(fd, os.fstat(fd).st_size - written)
                raise OSError(f"short write of a trajectory line to {path}")
        finally:
            os.close(fd)
        self.written += 1

    @hookimpl
    def fencepost_turn_started(
        self, gateway: Gateway, session_id: str, agent: str, run_id: str, model: str
    ) -> None:
        self._agents[run_id] = agent
        self._record(
            gateway,
            session_id,
            {"event": "turn_started", "run_id": run_id, "agent": agent, "model": model},
        )

    @hookimpl
    def fencepost_turn_event(
        self, gateway: Gateway, session_id: str, run_id: str, event: dict[str, Any]
    ) -> None:
        self._record(
            gateway,
            session_id,
            {
                "event": "turn_event",
                "run_id": run_id,
                "agent": self._agents.get(run_id),
                "type": event.get("type"),
                "data": event,
            },
        )

    @hookimpl
    def fencepost_turn_finished(
        self, gateway: Gateway, session_id: str, agent: str, run_id: str, result: TurnResult
    ) -> None:
        self._agents.pop(run_id, None)
        self._record(
            gateway,
            session_id,
            {"event": "turn_finished", "run_id": run_id, "agent": agent, **finished_event(result)},
        )
