"""``fencepost trajectory export``: a session's recorded turn events (the trajectory plugin)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ...runtime.config import StatePaths, default_home
from ...runtime.gateway.plugins.trajectory import read_trajectory
from ._options import home_option

__all__ = ["trajectory"]


@click.group()
def trajectory() -> None:
    """Per-session turn events recorded beside the transcript (the trajectory plugin)."""


@trajectory.command("export")
@click.argument("session_id")
@click.option("--run", "run_id", default=None, help="Only this run's events.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "json"]),
    default="jsonl",
    help="jsonl: the recorded lines as they are; json: one array.",
)
@home_option
def export(session_id: str, run_id: str | None, fmt: str, home: Path | None) -> None:
    """Print SESSION_ID's trajectory. Malformed lines are reported on stderr and skipped."""
    paths = StatePaths(home or default_home())
    lines = read_trajectory(paths.trajectories, session_id, run_id=run_id)
    events = []
    for t in lines:
        if t.event is None:
            click.echo(f"line {t.line}: {t.problem}; skipped", err=True)
            continue
        events.append(t)
    if fmt == "json":
        click.echo(json.dumps([t.event for t in events], indent=2, ensure_ascii=False))
    else:
        for t in events:
            click.echo(t.raw.decode("utf-8"))
