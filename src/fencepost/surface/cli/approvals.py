"""``fencepost approvals list|approve|deny``: tool calls waiting for an operator, on the running
gateway (docs/design/approvals.md). The requests live in the gateway process; these commands
ask it over its API (``GatewayClient``) and decide as ``cli:<os user>``."""

from __future__ import annotations

import getpass
import json
import re
from pathlib import Path
from typing import Any

import click

from ...errors import GatewayError
from ...runtime.config import StatePaths, default_home
from . import _render
from ._client import GatewayClient
from ._options import home_option
from ._render import Col

__all__ = ["approvals", "decider", "printable"]


def decider() -> str:
    """``cli:<os user>``: who decides from this shell (APPROVAL-I7); characters a decider name
    cannot hold become ``_``."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = ""
    return "cli:" + (re.sub(r"[^A-Za-z0-9._@-]", "_", user)[:64] or "unknown")


def printable(text: str) -> str:
    """``text`` with control and format characters (terminal escapes, bidi overrides, newlines)
    shown escaped: a request is seen as it is, never as the terminal would draw it."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def _client(home: Path | None) -> GatewayClient:
    paths = StatePaths(home or default_home())
    client = GatewayClient.find(paths)
    if client is None:
        raise GatewayError(
            f"no gateway runs on {paths.root}: approval requests live in a running gateway "
            "(start one with `fencepost gateway`; a turn run without one denies what needs "
            "approval)"
        )
    return client


def _age(seconds: Any) -> str:
    s = int(seconds or 0)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


@click.group()
def approvals() -> None:
    """Tool calls waiting for an operator's approval, on the running gateway."""


@approvals.command("list")
@home_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_(home: Path | None, as_json: bool) -> None:
    """List the requests waiting for a decision, oldest first."""
    body = _client(home).approvals()
    rows = body.get("approvals") or []
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("no approval requests are waiting", err=True)
        return
    _render.table(
        [
            Col("id"),
            Col("tool"),
            Col("summary", wrap=True, min_width=20),
            Col("age", justify="right"),
            Col("expires in", justify="right", drop=2),
            Col("session", wrap=True, drop=3),
            Col("run", drop=4),
            Col("agent", drop=5),
        ],
        [
            [
                r.get("approval_id"),
                printable(str(r.get("tool"))),
                printable(str(r.get("summary"))),
                _age(r.get("age_s")),
                _age(r.get("expires_in_s")),
                r.get("session_id"),
                r.get("run_id"),
                r.get("agent"),
            ]
            for r in rows
        ],
        title="waiting for approval (fencepost approvals approve|deny ID)",
    )


def _decide(home: Path | None, approval_id: str, approve: bool, reason: str, as_json: bool) -> None:
    out = _client(home).decide_approval(approval_id, approve=approve, reason=reason, by=decider())
    if as_json:
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    verdict = "approved" if out.get("approved") else "denied"
    click.echo(
        f"{verdict} {out.get('approval_id')} ({printable(str(out.get('tool')))}, run "
        f"{out.get('run_id')}) as {out.get('by')}; recorded in session {out.get('session_id')}"
    )


_reason = click.option("--reason", default="", help="Why; recorded with the decision.")
_json = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@approvals.command()
@home_option
@_reason
@_json
@click.argument("approval_id")
def approve(home: Path | None, reason: str, as_json: bool, approval_id: str) -> None:
    """Approve a waiting request (APPROVAL_ID from `approvals list`); recorded as cli:<user>."""
    _decide(home, approval_id, True, reason, as_json)


@approvals.command()
@home_option
@_reason
@_json
@click.argument("approval_id")
def deny(home: Path | None, reason: str, as_json: bool, approval_id: str) -> None:
    """Deny a waiting request (APPROVAL_ID from `approvals list`); recorded as cli:<user>."""
    _decide(home, approval_id, False, reason, as_json)
