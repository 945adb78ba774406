"""``fencepost doctor`` and ``fencepost init``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click
from rich.text import Text

from ...errors import ConfigError
from ...runtime.config import STARTER_CONFIG, StatePaths, default_home
from ...runtime.demo import demo_job_names
from ...runtime.doctor import run_doctor, summarize
from ...runtime.gateway import running_gateway
from . import _render
from ._options import config_option, home_option
from ._render import Col

__all__ = ["doctor", "init"]

STYLE = {"ok": "green", "warn": "yellow", "fail": "red", "fixed": "cyan"}


@click.command()
@home_option
@config_option
@click.option("--fix", is_flag=True, help="Apply safe repairs (never deletes a transcript).")
@click.option("--providers", is_flag=True, help="Also send a 1-token request to each model.")
@click.option("--mcp", is_flag=True, help="Also start each MCP server, list its tools, stop it.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor(
    home: Path | None, config: str | None, fix: bool, providers: bool, mcp: bool, as_json: bool
) -> None:
    """Check config, state database, locks, sessions, plugins and MCP servers. Exit 1 on a
    failure."""
    paths = StatePaths(home or default_home())
    findings = asyncio.run(run_doctor(paths, config=config, fix=fix, providers=providers, mcp=mcp))
    overall = summarize(findings)
    if as_json:
        click.echo(
            json.dumps({"status": overall, "findings": [f.to_json() for f in findings]}, indent=2)
        )
    else:
        _render.table(
            [
                Col("check", wrap=True, min_width=8),
                Col("status"),
                Col("subject", drop=1, wrap=True, min_width=12),
                Col("detail", wrap=True, min_width=24),
            ],
            [
                [f.check, Text(f.status, style=STYLE[f.status]), f.subject or "", f.detail]
                for f in findings
            ],
            title=f"fencepost doctor: {paths.root}",
        )
    if overall == "fail":
        raise SystemExit(1)


@click.command()
@home_option
@click.option("--force", is_flag=True, help="Overwrite an existing config file.")
def init(home: Path | None, force: bool) -> None:
    """Write a commented starter config to <home>/fencepost.toml."""
    paths = StatePaths(home or default_home())
    if paths.config.exists() and not force:
        raise ConfigError(f"{paths.config} already exists (use --force to overwrite it)")
    demo_jobs = demo_job_names(paths)
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.config.write_text(STARTER_CONFIG, encoding="utf-8")
    owner = running_gateway(paths)
    if owner is None:
        click.echo(f"wrote {paths.config}; edit it, then run: fencepost gateway")
    else:
        click.echo(
            f"wrote {paths.config}; edit it, then run: fencepost reload (the gateway running "
            f"here, pid {owner.get('pid', '?')}, reads it then)"
        )
    if demo_jobs:
        # Invariant DEMO-I3: the user is told what will happen to the demo's state.
        click.echo(
            f"this home has the demo's {len(demo_jobs)} job(s) ({', '.join(demo_jobs)}): the "
            "gateway removes them when it starts or reloads with this config; their runs stay "
            "in the ledger and their transcripts in sessions/. Your own jobs are never touched."
        )
