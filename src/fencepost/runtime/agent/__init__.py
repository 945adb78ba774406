"""The agent attempt runner and its tools (docs/design/agent-runner.md)."""

from ._compaction import (
    DEFAULT_CONTEXT_WINDOW,
    DEFAULT_KEEP_RECENT_TOKENS,
    DEFAULT_RESERVE_TOKENS,
    CompactionDone,
    CompactionPlan,
    CompactionSettings,
    Summariser,
    compact,
    compact_session,
    context_tokens,
    estimate_tokens,
    model_summariser,
    plan_compaction,
)
from ._runner import AgentSpec, TurnResult, TurnStatus, run_turn, steering_messages
from ._tools import Tool, ToolContext, ToolFailed, ToolRegistry, builtin_tools, check_arguments

__all__ = [
    "DEFAULT_CONTEXT_WINDOW",
    "DEFAULT_KEEP_RECENT_TOKENS",
    "DEFAULT_RESERVE_TOKENS",
    "CompactionDone",
    "CompactionPlan",
    "CompactionSettings",
    "Summariser",
    "compact",
    "compact_session",
    "context_tokens",
    "model_summariser",
    "estimate_tokens",
    "plan_compaction",
    "AgentSpec",
    "Tool",
    "ToolContext",
    "ToolFailed",
    "ToolRegistry",
    "TurnResult",
    "TurnStatus",
    "builtin_tools",
    "check_arguments",
    "run_turn",
    "steering_messages",
]
