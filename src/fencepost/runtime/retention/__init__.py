"""Retention: archive old isolated run sessions, prune the run ledger (docs/design/retention.md)."""

from ._plan import (
    ActionKind,
    ArchivedFact,
    RetentionAction,
    RetentionPlan,
    RetentionPolicy,
    RunFact,
    SessionFact,
    is_isolated_run_session,
    plan_retention,
)
from ._service import RetentionReport, archive_dir, find_archived, run_retention

__all__ = [
    "ActionKind",
    "ArchivedFact",
    "RetentionAction",
    "RetentionPlan",
    "RetentionPolicy",
    "RetentionReport",
    "RunFact",
    "SessionFact",
    "archive_dir",
    "find_archived",
    "is_isolated_run_session",
    "plan_retention",
    "run_retention",
]
