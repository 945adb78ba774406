"""Retention I/O: gather the facts, ask the pure plan, execute it (docs/design/retention.md).

One service for ``fencepost gc`` and the gateway's periodic pass.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...core import SessionStore
from ..cron import CronStore
from ._plan import (
    ArchivedFact,
    RetentionPlan,
    RetentionPolicy,
    RunFact,
    SessionFact,
    is_isolated_run_session,
    plan_retention,
)

if TYPE_CHECKING:
    from ..config import StatePaths

__all__ = ["RetentionReport", "archive_dir", "find_archived", "run_retention"]

log = logging.getLogger("fencepost.retention")

#: The protocol's sidecars (core/_store.py docstring); moved with the transcript.
SIDECARS = (".state", ".events", ".quarantine", ".lock")
#: Derived sidecars (the context offset index, core/_index.py): dropped, never archived, so no
#: index outlives the file it describes; the first read after a move back rebuilds it (INDEX-I1).
DERIVED = (".index",)


def archive_dir(paths: StatePaths) -> Path:
    return paths.root / "archive" / "sessions"


def find_archived(archive: Path, session_id: str) -> Path | None:
    """The archived transcript of a session (``.jsonl.gz`` or ``.jsonl``), if any."""
    for name in (f"{session_id}.jsonl.gz", f"{session_id}.jsonl"):
        if (archive / name).exists():
            return archive / name
    return None


@dataclass(frozen=True)
class RetentionReport:
    dry_run: bool
    plan: RetentionPlan
    done: tuple[dict[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "plan": self.plan.to_json(), "done": list(self.done)}


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def _lock_free(lock_path: Path) -> bool:
    """True when nobody holds the session's write lock (a non-blocking try, released at once)."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing releases the flock
    return True


@contextlib.contextmanager
def _holding(lock_path: Path) -> Iterator[bool]:
    """Hold the write lock non-blocking for the move; yields False when someone holds it."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _facts(
    paths: StatePaths, cron: CronStore | None
) -> tuple[list[SessionFact], list[ArchivedFact], list[RunFact]]:
    from ..gateway import main_session_id

    targets: set[str] = set()
    running: set[str] = set()
    runs: list[RunFact] = []
    if cron is not None:
        for job, _state in cron.list_jobs():
            # Invariant RETENTION-I1: every job's target, enabled or not (it may be re-enabled).
            targets.add(job.target_session_id or main_session_id(job.agent))
        for run_id, job_id, seq, recorded_at, status, session_id in cron.run_facts():
            runs.append(RunFact(run_id, job_id, seq, recorded_at, status))
            if status == "running" and session_id:
                running.add(session_id)
    sessions: list[SessionFact] = []
    if paths.sessions.is_dir():
        store = SessionStore(paths.sessions, create=False)
        for sid in store.session_ids():
            if not is_isolated_run_session(sid):
                continue
            sess = store.session(sid)
            sessions.append(
                SessionFact(
                    sid,
                    _mtime(Path(sess.path)),
                    job_target=sid in targets,
                    lease_held=sess.lease_holder() is not None,
                    lock_held=not _lock_free(Path(sess.path + ".lock")),
                    running=sid in running,
                )
            )
        store.close()
    archived: list[ArchivedFact] = []
    adir = archive_dir(paths)
    if adir.is_dir():
        for p in sorted(adir.iterdir()):
            for suffix in (".jsonl.gz", ".jsonl"):
                if p.name.endswith(suffix):
                    archived.append(ArchivedFact(p.name[: -len(suffix)], _mtime(p), str(p)))
    return sessions, archived, runs


def _archive(paths: StatePaths, sid: str, gz: bool) -> dict[str, Any]:
    src = paths.sessions / f"{sid}.jsonl"
    adir = archive_dir(paths)
    adir.mkdir(parents=True, exist_ok=True)
    store = SessionStore(paths.sessions, create=False)
    try:
        # Invariant RETENTION-I4: the move happens holding the write lock, taken non-blocking;
        # a held lock, a lease or a change since the plan means the session is left alone.
        with _holding(Path(f"{src}.lock")) as free:
            if not free or store.session(sid).lease_holder() is not None:
                return {"action": "archive", "target": sid, "result": "skipped: in use"}
            # Invariant RETENTION-I7: the derived index goes first, under the lock (a crash
            # after this only costs a rescan); the archive never holds one.
            for suffix in DERIVED:
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{src}{suffix}").unlink()
            st = src.stat()
            if gz:
                dest = adir / f"{sid}.jsonl.gz"
                with open(src, "rb") as fin, gzip.open(dest, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
                os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
                src.unlink()
            else:
                dest = adir / f"{sid}.jsonl"
                os.replace(src, dest)
            for suffix in SIDECARS:
                side = Path(f"{src}{suffix}")
                if side.exists():
                    os.replace(side, adir / f"{sid}.jsonl{suffix}")
    finally:
        store.close()
    traj = paths.trajectories / f"{sid}.jsonl"
    if traj.exists():
        tdir = paths.root / "archive" / "trajectories"
        tdir.mkdir(parents=True, exist_ok=True)
        os.replace(traj, tdir / traj.name)
    _forget_memory(paths, sid)
    return {"action": "archive", "target": sid, "result": str(dest)}


def _delete(paths: StatePaths, sid: str) -> dict[str, Any]:
    adir = archive_dir(paths)
    removed = 0
    sides = (*SIDECARS, *DERIVED)  # Invariant RETENTION-I7: an index put there by hand goes too
    for name in (f"{sid}.jsonl.gz", f"{sid}.jsonl", *(f"{sid}.jsonl{s}" for s in sides)):
        with contextlib.suppress(FileNotFoundError):
            (adir / name).unlink()
            removed += 1
    with contextlib.suppress(FileNotFoundError):
        (paths.root / "archive" / "trajectories" / f"{sid}.jsonl").unlink()
    _forget_memory(paths, sid)
    return {"action": "delete", "target": sid, "result": f"{removed} files removed"}


def _forget_memory(paths: StatePaths, sid: str) -> None:
    if not paths.memory_db.exists():
        return
    from ..gateway.plugins.memory import MemoryIndex

    with MemoryIndex.open(paths.memory_db) as index:
        index.forget_session(sid)


def run_retention(
    paths: StatePaths,
    policy: RetentionPolicy,
    *,
    now: datetime,
    dry_run: bool,
    delete_archived: bool = False,
) -> RetentionReport:
    """Plan, and unless ``dry_run`` execute. Invariant RETENTION-I5: a dry run writes nothing
    (no row changes, nothing is moved, unlinked or created; only a pending schema migration
    applies)."""
    cron: CronStore | None = None
    if paths.cron_db.exists():
        cron = CronStore(paths.cron_db, create=False)
    try:
        sessions, archived, runs = _facts(paths, cron)
        plan = plan_retention(
            policy,
            sessions=sessions,
            archived=archived,
            runs=runs,
            now=now,
            delete_archived=delete_archived,
        )
        done: list[dict[str, Any]] = []
        if not dry_run:
            for action in plan.actions:
                if action.kind == "archive":
                    done.append(_archive(paths, action.target, policy.gzip))
                elif action.kind == "delete":
                    done.append(_delete(paths, action.target))
                elif action.kind == "prune_runs" and cron is not None:
                    n = cron.prune_runs(action.run_ids)
                    done.append({"action": "prune_runs", "target": action.target, "result": n})
            for d in done:
                log.info("retention %s %s: %s", d["action"], d["target"], d["result"])
        return RetentionReport(dry_run, plan, tuple(done))
    finally:
        if cron is not None:
            cron.close()
