"""The gateway's child processes, on disk: one small record per live child, so that a gateway
restarted after a crash (or ``fencepost doctor --fix``) ends the process groups a dead gateway
left behind, and only those it can prove are its own (docs/design/exec.md, CHILD-I*).

A record names the child (pid, process group, its start time from ``/proc/<pid>/stat``), the
process that started it (the owner: pid and start time) and what it runs (argv, kind). A child
is *provably ours* when ``/proc/<pid>`` still shows the recorded start time: the kernel never
gives two processes the same (pid, start time) between reboots. Linux only.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "ChildRecord",
    "ChildRegistry",
    "ProcStat",
    "ReapAction",
    "ReapReport",
    "Reaped",
    "end_group_blocking",
    "find_child",
    "group_alive",
    "group_members",
    "proc_stat",
    "read_records",
    "reap_orphans",
    "signal_group",
]

#: After SIGTERM, how long an orphaned group gets to exit before SIGKILL (git removes its
#: index.lock on SIGTERM; a command that ignores it gets no longer than this).
REAP_GRACE_S = 2.0
#: How often a waiting caller looks at /proc while a group exits.
POLL_S = 0.02


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` this module uses."""

    pid: int
    state: str  # R, S, D, Z, T, ...
    pgrp: int
    session: int
    #: Field 22: the process's start time in clock ticks since boot.
    start_ticks: int
    ppid: int = 0

    @property
    def alive(self) -> bool:
        """A zombie is dead: it only waits for its parent (or init) to reap it."""
        return self.state not in ("Z", "X")


def proc_stat(pid: int) -> ProcStat | None:
    """``/proc/<pid>/stat``, or None if there is no such process (or no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # comm may hold spaces and parentheses: the fields resume after the last ')'.
    rest = raw[raw.rfind(b")") + 2 :].split()
    try:
        return ProcStat(
            pid, rest[0].decode(), int(rest[2]), int(rest[3]), int(rest[19]), int(rest[1])
        )
    except (IndexError, ValueError):
        return None


def group_members(pgid: int) -> list[int]:
    """The live (non-zombie) processes of process group ``pgid``, from /proc."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []  # the fast path: no process at all has this group
    except PermissionError:
        pass  # some member is not ours to signal: look closer
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st is not None and st.pgrp == pgid and st.alive:
                out.append(st.pid)
    return out


def find_child(variable: str, value: str) -> int | None:
    """The live child of this process whose environment (as it was at its ``exec``) holds
    ``variable=value``, or None: how a child started by code that does not hand back its pid (the
    MCP SDK's ``stdio_client``) is found, by a marker only its starter knows (docs/design/mcp.md
    "Child processes"). Reads ``/proc``; only this process's children are looked at."""
    me = os.getpid()
    needle = f"{variable}={value}".encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = proc_stat(int(name))
        if st is None or st.ppid != me or not st.alive:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    return st.pid
        except OSError:
            continue
    return None


def group_alive(pgid: int) -> bool:
    return bool(group_members(pgid))


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the group; False if it has no process left (or none we may signal)."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ChildRecord:
    """One live child of a gateway (or of any fencepost process: ``agent run`` too)."""

    pid: int
    pgid: int
    start_ticks: int
    owner_pid: int
    owner_start_ticks: int
    argv: tuple[str, ...]
    #: What the child is: ``exec`` (a command of the exec tool), ``mcp`` (a stdio MCP server).
    kind: str
    since: str = field(default_factory=_now_iso)
    #: Free-form context for people (agent, run id, session).
    about: Mapping[str, str] = field(default_factory=dict)

    @property
    def file_name(self) -> str:
        return f"{self.pid}-{self.start_ticks}.json"

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "pgid": self.pgid,
            "start_ticks": self.start_ticks,
            "owner_pid": self.owner_pid,
            "owner_start_ticks": self.owner_start_ticks,
            "argv": list(self.argv),
            "kind": self.kind,
            "since": self.since,
            "about": dict(self.about),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChildRecord:
        """ValueError when a field is missing or of the wrong type."""
        ints = ("pid", "pgid", "start_ticks", "owner_pid", "owner_start_ticks")
        if not all(isinstance(data.get(k), int) and not isinstance(data[k], bool) for k in ints):
            raise ValueError("a pid or start time is missing or not an integer")
        argv = data.get("argv")
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise ValueError("argv is not a list of strings")
        about = data.get("about") or {}
        return cls(
            pid=data["pid"],
            pgid=data["pgid"],
            start_ticks=data["start_ticks"],
            owner_pid=data["owner_pid"],
            owner_start_ticks=data["owner_start_ticks"],
            argv=tuple(argv),
            kind=str(data.get("kind", "?")),
            since=str(data.get("since", "?")),
            about={str(k): str(v) for k, v in about.items()} if isinstance(about, dict) else {},
        )

    def describe(self) -> str:
        what = " ".join(self.argv)
        if len(what) > 120:
            what = what[:117] + "..."
        return f"{self.kind} pid {self.pid} (group {self.pgid}, since {self.since}): {what}"


def _owner() -> tuple[int, int]:
    pid = os.getpid()
    st = proc_stat(pid)
    return pid, st.start_ticks if st is not None else -1


class ChildRegistry:
    """The records of live children under ``root`` (``StatePaths.children``).

    ``add`` right after the child starts, ``remove`` once its process group is gone. Records
    are written whole (temporary file, then rename) and never fsynced: they only matter while
    the machine stays up (no process survives a reboot, and a crashed process leaves the page
    cache intact).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._live: dict[str, ChildRecord] = {}

    def __repr__(self) -> str:
        return f"<ChildRegistry {self.root} live={len(self._live)}>"

    def live(self) -> list[ChildRecord]:
        """The children this registry object added and has not removed yet."""
        return list(self._live.values())

    def add(
        self,
        pid: int,
        argv: Sequence[str],
        kind: str,
        *,
        pgid: int | None = None,
        about: Mapping[str, str] | None = None,
    ) -> ChildRecord:
        """Record a child that just started. A child already gone (no /proc entry) is recorded
        with start time -1, which never matches: nothing will ever be killed for it."""
        st = proc_stat(pid)
        owner_pid, owner_start = _owner()
        rec = ChildRecord(
            pid=pid,
            pgid=pid if pgid is None else pgid,
            start_ticks=st.start_ticks if st is not None else -1,
            owner_pid=owner_pid,
            owner_start_ticks=owner_start,
            argv=tuple(argv),
            kind=kind,
            about=dict(about or {}),
        )
        # Invariant CHILD-I1: the record exists before the caller awaits anything.
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / rec.file_name
        tmp = self.root / f".{rec.file_name}.tmp"
        tmp.write_text(json.dumps(rec.to_json()) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        self._live[rec.file_name] = rec
        return rec

    def remove(self, rec: ChildRecord) -> None:
        self._live.pop(rec.file_name, None)
        (self.root / rec.file_name).unlink(missing_ok=True)


def read_records(root: Path) -> list[tuple[Path, ChildRecord | None, str]]:
    """Every record file under ``root``: (path, record or None, why it is unreadable)."""
    if not root.is_dir():
        return []
    out: list[tuple[Path, ChildRecord | None, str]] = []
    for path in sorted(root.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            out.append((path, ChildRecord.from_json(data), ""))
        except FileNotFoundError:
            continue  # removed meanwhile by its owner
        except (OSError, ValueError) as exc:
            out.append((path, None, f"{type(exc).__name__}: {exc}"))
    return out


#: What ``reap_orphans`` did with one record:
#: ``owner_alive`` - its owner runs: left alone (record kept);
#: ``orphan`` - provably ours and its owner is dead (dry run: nothing done, record kept);
#: ``killed`` - provably ours, owner dead: its group was ended, record dropped;
#: ``gone`` - the child is dead already: record dropped;
#: ``reused`` - the pid now belongs to another process: left alone, record dropped;
#: ``unreadable`` - a record that does not parse: dropped (kept in a dry run).
ReapAction = Literal["owner_alive", "orphan", "killed", "gone", "reused", "unreadable"]


@dataclass(frozen=True)
class Reaped:
    path: Path
    action: ReapAction
    detail: str
    record: ChildRecord | None = None
    #: Processes still alive in the group of a child that is gone or reused: never signalled
    #: (not provably ours), named here so an operator can look.
    left_alone: tuple[int, ...] = ()


@dataclass(frozen=True)
class ReapReport:
    actions: tuple[Reaped, ...] = ()

    def of(self, *actions: ReapAction) -> list[Reaped]:
        return [a for a in self.actions if a.action in actions]

    @property
    def killed(self) -> list[Reaped]:
        return self.of("killed")

    @property
    def orphans(self) -> list[Reaped]:
        """Orphans found (killed, or to kill in a dry run)."""
        return self.of("killed", "orphan")

    def describe(self) -> list[str]:
        return [f"{a.action}: {a.detail}" for a in self.actions]


def _owner_alive(rec: ChildRecord) -> bool:
    st = proc_stat(rec.owner_pid)
    return st is not None and st.alive and st.start_ticks == rec.owner_start_ticks


def end_group_blocking(pgid: int, grace_s: float = REAP_GRACE_S) -> None:
    """SIGTERM to the group, up to ``grace_s`` for it to exit, then SIGKILL (blocking)."""
    try:
        if not group_alive(pgid):
            return
        signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            time.sleep(POLL_S)
            if not group_alive(pgid):
                return
    finally:
        if group_alive(pgid):
            signal_group(pgid, signal.SIGKILL)


def reap_orphans(
    root: str | os.PathLike[str], *, dry_run: bool = False, grace_s: float = REAP_GRACE_S
) -> ReapReport:
    """End the process group of every recorded child whose owner is dead and whose /proc start
    time still matches its record; drop the records of children that are gone or whose pid was
    reused (never signalling those). ``dry_run`` only says what it would do. Blocking (it may
    wait ``grace_s`` per orphan group); the gateway calls it in a thread at start."""
    out: list[Reaped] = []
    for path, rec, problem in read_records(Path(root)):
        if rec is None:
            if not dry_run:
                path.unlink(missing_ok=True)
            out.append(Reaped(path, "unreadable", f"{path.name}: {problem}"))
            continue
        if _owner_alive(rec):
            out.append(Reaped(path, "owner_alive", rec.describe(), rec))
            continue
        st = proc_stat(rec.pid)
        # Invariant CHILD-I2: a group is signalled only when its leader is provably the child
        # recorded (same pid, same start time); a zombie leader still proves it (its group may
        # live on), a missing or different one never does.
        if st is not None and st.start_ticks == rec.start_ticks:
            if dry_run:
                members = group_members(rec.pgid)
                detail = f"{rec.describe()}; {len(members)} live process(es) in its group"
                out.append(Reaped(path, "orphan", detail, rec))
                continue
            end_group_blocking(rec.pgid, grace_s)
            path.unlink(missing_ok=True)
            out.append(Reaped(path, "killed", rec.describe(), rec))
            continue
        action: ReapAction = "gone" if st is None else "reused"
        stray = tuple(group_members(rec.pgid)) if st is None else ()
        detail = rec.describe()
        if stray:
            detail += (
                f"; its group still has {len(stray)} live process(es) "
                f"({', '.join(map(str, stray))}), not provably ours: left alone"
            )
        if not dry_run:
            path.unlink(missing_ok=True)
        out.append(Reaped(path, action, detail, rec, stray))
    return ReapReport(tuple(out))
