"""The retention decision, pure: policy + facts + now -> a plan (docs/design/retention.md).

No file, database or clock is touched here; ``_service.py`` gathers the facts and executes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

__all__ = [
    "ActionKind",
    "ArchivedFact",
    "RetentionAction",
    "RetentionPlan",
    "RetentionPolicy",
    "RunFact",
    "SessionFact",
    "is_isolated_run_session",
    "plan_retention",
]

#: How the cron scheduler names the session of an isolated run: ``cron-<run uuid4>``.
_ISOLATED = re.compile(
    r"^cron-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)

ActionKind = Literal["archive", "delete", "prune_runs", "keep"]


def is_isolated_run_session(session_id: str) -> bool:
    """True for the id the scheduler gives an isolated run's session (``cron-<run_id>``)."""
    return bool(_ISOLATED.match(session_id))


@dataclass(frozen=True)
class RetentionPolicy:
    """The ``[retention]`` config section. ``None`` turns a rule off."""

    #: a month: long enough to look back at last month's runs, short enough to bound the folder
    archive_after_days: float | None = 30.0
    gzip: bool = True
    #: never by default: deleting is the one step that cannot be undone
    delete_archived_after_days: float | None = None
    #: a quarter of ledger history; counters survive pruning (RETENTION-I3)
    ledger_keep_days: float | None = 90.0
    #: ~3.5 days of a job every 5 minutes, well past what `cron runs` pages through
    ledger_keep_per_job: int | None = 1000
    #: how often the gateway applies the policy (0 = only by hand with `fencepost gc`)
    every_s: float = 3600.0
    #: the gateway log rotates past this size, keeping ``log_backups`` old files
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 5


@dataclass(frozen=True)
class SessionFact:
    """A live session as retention sees it; the flags are reasons it must be kept."""

    session_id: str
    modified_at: datetime
    job_target: bool = False  # a job (enabled or not) targets it: main or session:<id>
    lease_held: bool = False
    lock_held: bool = False
    running: bool = False  # a running ledger row names it


@dataclass(frozen=True)
class ArchivedFact:
    session_id: str
    modified_at: datetime
    path: str


@dataclass(frozen=True)
class RunFact:
    run_id: str
    job_id: str
    seq: int
    recorded_at: datetime
    status: str


@dataclass(frozen=True)
class RetentionAction:
    kind: ActionKind
    target: str  # a session id, or a job id for prune_runs
    reason: str
    run_ids: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.kind, "target": self.target, "reason": self.reason}
        if self.kind == "prune_runs":
            out["runs"] = len(self.run_ids)
        return out


@dataclass(frozen=True)
class RetentionPlan:
    actions: tuple[RetentionAction, ...] = field(default_factory=tuple)

    def of(self, kind: ActionKind) -> list[RetentionAction]:
        return [a for a in self.actions if a.kind == kind]

    def to_json(self) -> list[dict[str, Any]]:
        return [a.to_json() for a in self.actions]


def _days(d: float) -> timedelta:
    return timedelta(days=d)


def _protection(s: SessionFact) -> str | None:
    # Invariant RETENTION-I1: a session something points at is never archived or deleted.
    for flag, reason in (
        (s.job_target, "a job targets it"),
        (s.running, "a running run uses it"),
        (s.lease_held, "its lease is held"),
        (s.lock_held, "its write lock is held"),
    ):
        if flag:
            return reason
    return None


def plan_retention(
    policy: RetentionPolicy,
    *,
    sessions: Iterable[SessionFact],
    archived: Iterable[ArchivedFact],
    runs: Sequence[RunFact],
    now: datetime,
    delete_archived: bool = False,
) -> RetentionPlan:
    """What retention would do now. ``delete_archived`` is the user's explicit ask: it deletes
    archived sessions older than ``delete_archived_after_days`` (all of them when unset)."""
    actions: list[RetentionAction] = []
    if policy.archive_after_days is not None:
        cutoff = now - _days(policy.archive_after_days)
        for s in sorted(sessions, key=lambda s: s.session_id):
            if not is_isolated_run_session(s.session_id) or s.modified_at > cutoff:
                continue  # only old isolated run sessions are archived automatically
            why = _protection(s)
            if why is not None:
                actions.append(RetentionAction("keep", s.session_id, why))
            else:
                days = policy.archive_after_days
                actions.append(RetentionAction("archive", s.session_id, f"idle > {days:g} days"))
    # Invariant RETENTION-I2: nothing is deleted unless deletion is configured or asked for.
    after = policy.delete_archived_after_days
    if after is not None or delete_archived:
        cutoff = now - _days(after or 0.0)
        for a in sorted(archived, key=lambda a: a.session_id):
            if a.modified_at <= cutoff:
                reason = f"archived, idle > {after:g} days" if after is not None else "asked for"
                actions.append(RetentionAction("delete", a.session_id, reason))
    by_job: dict[str, list[RunFact]] = {}
    for r in runs:
        by_job.setdefault(r.job_id, []).append(r)
    for job_id in sorted(by_job):
        newest_first = sorted(by_job[job_id], key=lambda r: -r.seq)
        prune: list[str] = []
        kept = 0
        for r in newest_first:
            if r.status == "running":
                continue  # Invariant RETENTION-I3: a running run's row is never pruned
            too_old = policy.ledger_keep_days is not None and r.recorded_at < now - _days(
                policy.ledger_keep_days
            )
            too_many = policy.ledger_keep_per_job is not None and kept >= policy.ledger_keep_per_job
            if too_old or too_many:
                prune.append(r.run_id)
            else:
                kept += 1
        if prune:
            reason = (
                f"older than {policy.ledger_keep_days} days"
                f" or beyond {policy.ledger_keep_per_job} per job"
            )
            actions.append(RetentionAction("prune_runs", job_id, reason, tuple(prune)))
    return RetentionPlan(tuple(actions))
