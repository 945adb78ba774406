"""``fencepost cron run JOB``: run a job now and stream its progress.

With a gateway running on the state directory the run goes through it (HTTP through the CLI's
one gateway client, so it lands in that gateway's lanes); otherwise this process opens the state
directory itself (taking the gateway lock for the duration, so no gateway can start meanwhile)
and runs the job in-process, which is why ``--no-wait`` needs a gateway (CLI-I5).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from ...errors import ConfigError
from ...runtime.config import StatePaths
from ...runtime.cron import RunRecord
from ...runtime.demo import gateway_config
from ...runtime.gateway import Gateway
from ._client import GatewayClient
from .cron import cron, default_state_dir, json_option, state_dir_option

__all__ = ["run"]

EXIT = {"ok": 0, "takeover": 4}


@cron.command("run")
@state_dir_option
@json_option
@click.option(
    "--wait/--no-wait",
    default=True,
    help="Wait for the run and show its progress; --no-wait hands it to the running gateway "
    "and returns (it needs one).",
)
@click.option("--config", default=None, help="Config file [default: <state-dir>/fencepost.toml].")
@click.argument("job_id")
def run(state_dir: str | None, as_json: bool, wait: bool, config: str | None, job_id: str) -> None:
    """Run JOB_ID now (outside its schedule) and stream progress; exit 0 when it succeeds."""
    paths = StatePaths(Path(state_dir or default_state_dir()))
    client = GatewayClient.find(paths, config)
    if client is not None:
        row = _via_gateway(client, job_id, wait, as_json=as_json)
    elif not wait:
        # Invariant CLI-I5: an option that cannot be honoured is refused, never ignored.
        raise ConfigError(
            f"--no-wait needs a running gateway to hand the run to, and none runs on "
            f"{paths.root}: start one with `fencepost gateway`, or drop --no-wait to run the "
            "job in this process and wait for it",
            key="--no-wait",
        )
    else:
        row = asyncio.run(_in_process(paths, config, job_id, quiet=as_json))
    if row is None:
        return
    if as_json:
        click.echo(json.dumps(row, indent=2, ensure_ascii=False))
    else:
        what = row.get("error_message") or row.get("reply") or ""
        click.echo(
            f"\n{row['status']}: run {row['run_id']} · session {row.get('session_id')}"
            + (f" · {what[:200]}" if row["status"] != "ok" else ""),
            err=True,
        )
    raise SystemExit(EXIT.get(str(row["status"]), 1))


def _via_gateway(
    client: GatewayClient, job_id: str, wait: bool, *, as_json: bool
) -> dict[str, Any] | None:
    if not as_json and wait:
        click.echo(f"running {job_id} on the gateway at {client.url} (pid {client.pid})…", err=True)
    body = client.run_job(job_id, wait=wait)
    if not wait:
        if as_json:
            click.echo(json.dumps(body, indent=2, ensure_ascii=False))
        else:
            click.echo(
                f"started run {body.get('run_id')} on the gateway (pid {client.pid}); follow it "
                f"with `fencepost cron runs {body.get('job_id') or job_id}`"
            )
        return None
    run: dict[str, Any] = body.get("run") or body
    return run


async def _in_process(
    paths: StatePaths, config: str | None, job_id: str, *, quiet: bool
) -> dict[str, Any]:
    cfg, _ = gateway_config(paths, config)  # the config a gateway here would run with
    gw = Gateway(paths, cfg)
    await gw.start(background=False)
    console = Console(stderr=True, highlight=False)
    unsubscribe = gw.subscribe(lambda e: None if quiet else _show(console, e))
    try:
        jid = gw.cron.resolve_job_id(job_id)
        handle = await gw.scheduler.run_now(jid)
        row: RunRecord = await handle.wait()
        return row.to_json()
    finally:
        unsubscribe()
        await gw.stop()


def _show(console: Console, event: dict[str, Any]) -> None:
    kind = event.get("type")
    if kind == "turn_started":
        console.print(f"[dim]run {event['run_id']} on session {event['session_id']}…[/dim]")
    elif kind == "transcript" and event.get("writer") != "attempt":
        console.print(
            f"[dim]· {event['writer']} wrote to {event['session_id']} "
            f"(seq {event['first_seq']}-{event['last_seq']}), no takeover[/dim]"
        )
    elif kind == "turn_event":
        inner = event["event"]
        if inner["type"] == "text_delta":
            console.print(inner["text"], end="", soft_wrap=True)
        elif inner["type"] == "first_token":
            console.print(f"[dim]first token after {inner['elapsed_s']:.1f} s[/dim]")
        elif inner["type"] == "tool_call":
            console.print(f"[dim]→ {inner['tool']}({inner['arguments']})[/dim]")
        elif inner["type"] == "attempt_failed":
            console.print(f"[yellow]{inner['model']}: {inner['error']}[/yellow]")
