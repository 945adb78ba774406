"""The gateway: scheduler, lanes, heartbeats and plugins in one process (docs/design/gateway.md)."""

from ._approvals import (
    APPROVAL_DECISION,
    APPROVAL_REQUEST,
    APPROVAL_WRITER,
    ApprovalService,
    ApprovalStatistics,
    DecidedApproval,
    PendingApproval,
    check_decider,
)
from ._gateway import (
    QUEUED_MESSAGE,
    Gateway,
    GatewayBusyError,
    GatewayStatistics,
    SendResult,
    job_validator,
    main_session_id,
    running_gateway,
)
from ._hooks import ENTRY_POINT_GROUP, FencepostHooks, hookimpl, hookspec
from ._logging import JsonLinesHandler
from ._reload import RESTART_FIELDS, ReloadResult, config_changes, plan_reload

__all__ = [
    "APPROVAL_DECISION",
    "APPROVAL_REQUEST",
    "APPROVAL_WRITER",
    "ApprovalService",
    "ApprovalStatistics",
    "DecidedApproval",
    "PendingApproval",
    "check_decider",
    "ENTRY_POINT_GROUP",
    "FencepostHooks",
    "Gateway",
    "GatewayBusyError",
    "GatewayStatistics",
    "JsonLinesHandler",
    "QUEUED_MESSAGE",
    "RESTART_FIELDS",
    "ReloadResult",
    "SendResult",
    "config_changes",
    "hookimpl",
    "hookspec",
    "job_validator",
    "main_session_id",
    "plan_reload",
    "running_gateway",
]
