"""Watermarks: what a gateway holds (descriptors, memory, threads, disk) against its limits.

``fencepost doctor`` measures the running gateway's process from ``/proc``; ``/api/health``
measures its own. The judgement is one pure function (``judge``) over the measured values and
the ``[limits]`` config, so both say the same thing (docs/design/gateway.md GATEWAY-I5).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

from .config import LimitsConfig, StatePaths

__all__ = [
    "TRIM_EVERY_S",
    "ProcessUsage",
    "StateUsage",
    "Watermark",
    "judge",
    "process_usage",
    "release_free_memory",
    "state_usage",
]

_MB = 1024 * 1024

#: How often a gateway hands the allocator's free pages back (GATEWAY-I7): often enough that
#: fragmentation across worker-thread arenas never piles up, rarely enough to cost nothing
#: (one ``malloc_trim`` takes well under a millisecond at the gateway's size).
TRIM_EVERY_S = 60.0


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        import ctypes

        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def release_free_memory() -> bool:
    """Give the C allocator's free pages back to the OS (glibc's ``malloc_trim(0)``, over every
    arena); False where there is no such call (musl, macOS). Invariant GATEWAY-I7.

    Python's objects, SQLite's caches and the threads' arenas all live on the C heap; a
    long-running process with worker threads otherwise keeps the high-water mark of every arena
    resident, and its RSS creeps up with uptime although nothing it holds grows.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


@dataclass(frozen=True)
class ProcessUsage:
    pid: int
    open_descriptors: int
    descriptor_limit: int | None  # the soft RLIMIT_NOFILE; None: unlimited or unknown
    rss_mb: float
    threads: int
    children: int  # live child processes

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class StateUsage:
    state_dir_mb: float
    sessions: int  # transcripts in sessions/
    sessions_mb: float
    cron_db_mb: float  # cron.db with its -wal and -shm
    memory_db_mb: float

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Watermark:
    check: str
    status: Literal["ok", "warn"]
    detail: str


def process_usage(pid: int | None = None) -> ProcessUsage | None:
    """Read ``/proc/<pid>`` (this process by default); None when it is gone or unreadable."""
    pid = os.getpid() if pid is None else pid
    base = f"/proc/{pid}"
    try:
        fds = len(os.listdir(f"{base}/fd"))
        with open(f"{base}/status") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
        with open(f"{base}/limits") as f:
            limit_line = next((ln for ln in f if ln.startswith("Max open files")), "")
    except OSError:
        return None
    children = 0
    try:
        for tid in os.listdir(f"{base}/task"):
            with open(f"{base}/task/{tid}/children") as f:
                children += len(f.read().split())
    except OSError:
        pass  # a thread ended while we read, or a kernel without /proc/.../children
    soft = limit_line[len("Max open files") :].split()[:1]
    return ProcessUsage(
        pid=pid,
        open_descriptors=fds,
        descriptor_limit=int(soft[0]) if soft and soft[0].isdigit() else None,
        rss_mb=round(int(status.get("VmRSS", "0 kB").split()[0]) / 1024, 1),
        threads=int(status.get("Threads", "0").strip()),
        children=children,
    )


def _tree_bytes(path: str) -> tuple[int, int]:
    """(bytes, files) under ``path``, not following symlinks."""
    total = files = 0
    try:
        entries = list(os.scandir(path))
    except OSError:
        return 0, 0
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                b, n = _tree_bytes(entry.path)
                total, files = total + b, files + n
            else:
                total += entry.stat(follow_symlinks=False).st_size
                files += 1
        except OSError:
            continue  # removed while we walked
    return total, files


def _size(*paths: os.PathLike[str]) -> int:
    total = 0
    for p in paths:
        try:
            total += os.stat(p).st_size
        except OSError:
            continue
    return total


def state_usage(paths: StatePaths) -> StateUsage:
    """Sizes in the state directory (reads metadata only). O(files): call off the event loop."""
    root_bytes, _ = _tree_bytes(str(paths.root))
    sessions_bytes = 0
    transcripts = 0
    try:
        for entry in os.scandir(paths.sessions):
            if entry.is_file(follow_symlinks=False):
                sessions_bytes += entry.stat(follow_symlinks=False).st_size
                transcripts += entry.name.endswith(".jsonl")
    except OSError:
        pass
    db = paths.cron_db
    cron = _size(db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"))
    mem = paths.memory_db
    memory = _size(mem, mem.with_name(mem.name + "-wal"), mem.with_name(mem.name + "-shm"))
    return StateUsage(
        state_dir_mb=round(root_bytes / _MB, 2),
        sessions=transcripts,
        sessions_mb=round(sessions_bytes / _MB, 2),
        cron_db_mb=round(cron / _MB, 2),
        memory_db_mb=round(memory / _MB, 2),
    )


def judge(
    process: ProcessUsage | None, state: StateUsage | None, limits: LimitsConfig
) -> list[Watermark]:
    """Each measured value against its limit (pure; Invariant GATEWAY-I5)."""
    out: list[Watermark] = []
    if process is not None:
        fd_limit = process.descriptor_limit
        if fd_limit:
            share = process.open_descriptors / fd_limit
            warn = share >= limits.warn_descriptors_ratio
            out.append(
                Watermark(
                    "descriptors",
                    "warn" if warn else "ok",
                    f"{process.open_descriptors} of {fd_limit} open ({share:.0%}; warn at "
                    f"{limits.warn_descriptors_ratio:.0%})"
                    + ("; lower limits.max_open_sessions or raise `ulimit -n`" if warn else ""),
                )
            )
        else:
            out.append(Watermark("descriptors", "ok", f"{process.open_descriptors} open, no limit"))
        warn = process.rss_mb >= limits.warn_rss_mb
        out.append(
            Watermark(
                "memory",
                "warn" if warn else "ok",
                f"RSS {process.rss_mb:g} MB (warn at {limits.warn_rss_mb:g} MB), "
                f"{process.threads} threads, {process.children} child processes",
            )
        )
    if state is not None:
        warn = state.state_dir_mb >= limits.warn_state_dir_mb
        out.append(
            Watermark(
                "disk",
                "warn" if warn else "ok",
                f"state directory {state.state_dir_mb:g} MB (warn at "
                f"{limits.warn_state_dir_mb:g} MB): {state.sessions} sessions in "
                f"{state.sessions_mb:g} MB, cron.db {state.cron_db_mb:g} MB, memory.db "
                f"{state.memory_db_mb:g} MB"
                + ("; retention ([retention] in the config) retires old runs" if warn else ""),
            )
        )
    return out
