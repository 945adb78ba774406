"""``fencepost gc``: apply the retention policy by hand (docs/design/retention.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from . import _render
from ._render import Col
from .cron import default_state_dir, state_dir_option

__all__ = ["gc"]


@click.command()
@state_dir_option
@click.option("--config", default=None, help="Config file [default: <state>/fencepost.toml].")
@click.option("--dry-run", is_flag=True, help="Say what would be done; change nothing.")
@click.option(
    "--delete-archived",
    is_flag=True,
    help="Also delete archived sessions (older than delete_archived_after_days, or all if unset).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def gc(
    state_dir: str | None, config: str | None, dry_run: bool, delete_archived: bool, as_json: bool
) -> None:
    """Archive old isolated run sessions and prune the run ledger, as [retention] says."""
    from ...runtime.config import StatePaths, state_config
    from ...runtime.retention import run_retention

    paths = StatePaths(Path(state_dir or default_state_dir()))
    policy = state_config(paths, config).retention
    report = run_retention(
        paths,
        policy,
        now=datetime.now(UTC),
        dry_run=dry_run,
        delete_archived=delete_archived,
    )
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    plan = report.plan.to_json()
    rows = [[a["action"], a["target"], a.get("runs", ""), a["reason"]] for a in plan]
    _render.table(
        [
            Col("would do" if dry_run else "plan", wrap=True, min_width=8),
            Col("target", wrap=True, min_width=44),  # a whole cron-<uuid> session id
            Col("runs", drop=1, justify="right"),
            Col("reason", wrap=True, min_width=16),
        ],
        rows,
    )
    if not dry_run:
        done = [[d["action"], d["target"], d["result"]] for d in report.done]
        _render.table(
            [
                Col("done", wrap=True, min_width=8),
                Col("target", wrap=True, min_width=44),
                Col("result", wrap=True, min_width=12),
            ],
            done,
        )
    if not rows:
        click.echo("nothing to do")
