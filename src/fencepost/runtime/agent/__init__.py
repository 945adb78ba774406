"""The agent attempt runner and its tools (docs/design/agent-runner.md)."""

from ._runner import AgentSpec, TurnResult, TurnStatus, run_turn, steering_messages
from ._tools import Tool, ToolContext, ToolFailed, ToolRegistry, builtin_tools, check_arguments

__all__ = [
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
