"""A test-only tool that asks before it acts, offered by a plugin the way plugins offer tools
(the ``fencepost_tools`` hook): what the ``exec`` tool's ``ask`` policy does, without a
command."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fencepost.runtime.agent import ApprovalRequest, Tool, ToolContext, ToolDenied
from fencepost.runtime.gateway import hookimpl
from fencepost.runtime.providers import ScriptedToolCall, ScriptStep

#: Far past any wait a test gives a request: the approval wait counts in a tool's own timeout.
TOOL_TIMEOUT_S = 600.0


async def _guarded(args: Mapping[str, Any], ctx: ToolContext) -> str:
    name = str(args["name"])
    if ctx.approve is None:
        raise ToolDenied("nobody can approve this call here")
    decision = await ctx.approve(
        ApprovalRequest("guarded", f"touch {name}", {"argv": ["touch", name]})
    )
    if not decision.approved:
        raise ToolDenied(f"denied by {decision.by}: {decision.reason}")
    path = ctx.workspace / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("touched\n")
    return f"touched {name} (approved by {decision.by})"


GUARDED = Tool(
    "guarded",
    "Create a file in the workspace, once an operator approves.",
    _guarded,
    {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"],
        "additionalProperties": False,
    },
    timeout_s=TOOL_TIMEOUT_S,
)


class AskingPlugin:
    @hookimpl
    def fencepost_tools(self, gateway: Any) -> list[Tool]:
        return [GUARDED]


#: The model asks for the guarded call once, then answers whatever the result was.
SCRIPT = (
    ScriptStep(tool_calls=(ScriptedToolCall("guarded", {"name": "marker.txt"}, id="call-1"),)),
    ScriptStep(text="done"),
)
