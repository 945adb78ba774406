"""``fencepost cron add|list|show|edit|enable|disable|rm|runs``: scheduled jobs and their ledger.

Parse, call ``fencepost.runtime.cron``, render. ``cron run`` arrives with the attempt runner.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ...errors import InvalidJobError, InvalidScheduleError
from ...runtime.cron import (
    AtSchedule,
    CronSchedule,
    CronStore,
    EverySchedule,
    Job,
    JobService,
    JobState,
    JobValidator,
    Payload,
    RunRecord,
    Schedule,
    default_db_path,
    format_duration,
    parse_delivery,
    parse_duration_s,
    parse_since,
    parse_target,
)
from . import _render
from ._render import Col

__all__ = ["cron", "default_state_dir"]

RUN_STATUSES = ("running", "ok", "error", "timeout", "takeover", "missed", "interrupted", "skipped")


def default_state_dir() -> str:
    return os.environ.get("FENCEPOST_HOME") or os.path.join(os.path.expanduser("~"), ".fencepost")


state_dir_option = click.option(
    "--state-dir",
    "--home",
    "state_dir",
    type=click.Path(file_okay=False),
    default=None,
    envvar="FENCEPOST_STATE_DIR",
    show_envvar=True,
    help="State directory holding cron.db [default: $FENCEPOST_HOME, ~/.fencepost].",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@contextmanager
def _open(state_dir: str | None, *, create: bool = False) -> Iterator[CronStore]:
    store = CronStore(default_db_path(state_dir or default_state_dir()), create=create)
    try:
        yield store
    finally:
        store.close()


def _service(store: CronStore, state_dir: str | None) -> JobService:
    """The job service over ``store``, validating against ``state_dir``'s config and gateway.

    No scheduler runs in this process: a running gateway sees the change at its next poll."""
    return JobService(store, validator=lambda: _validator(state_dir))


def _validator(state_dir: str | None) -> JobValidator:
    """Agents and models are checked against the config the gateway will run with, and, when
    a gateway runs, its agent against the agents that gateway has now: a config file edited
    and not reloaded would otherwise take a job that fails every run (docs/design/gateway.md,
    "Reloading the config")."""
    from ...runtime.config import StatePaths, state_config
    from ...runtime.gateway import job_validator

    paths = StatePaths(Path(state_dir or default_state_dir()))
    cfg = state_config(paths)
    check = job_validator(cfg)
    running = _running_agents(paths)
    if running is None:
        return check
    pid, agents = running

    def check_running(job: Job) -> None:
        check(job)
        if job.agent not in agents:
            raise InvalidJobError(
                f"agent {job.agent!r} is in {cfg.path or 'the config'} but not in the running "
                f"gateway (pid {pid}), which has {', '.join(sorted(agents)) or 'none'}: run "
                "`fencepost reload` first, or the job would fail every run",
                key="agent",
            )

    return check_running


def _running_agents(paths: Any) -> tuple[object, set[str]] | None:
    """The pid and agents of the gateway running on ``paths``; None when none runs or it
    does not answer (then the file alone decides, as without a gateway)."""
    from ...errors import GatewayError
    from ._client import GatewayClient

    try:
        client = GatewayClient.find(paths)
        if client is None:
            return None
        agents = client.request("GET", "api/health").get("agents")
    except GatewayError:
        return None
    if not isinstance(agents, list):
        return None
    return client.pid, {str(a) for a in agents}


def _now() -> datetime:
    return datetime.now(UTC)


def _when(dt: datetime | None) -> str:
    if dt is None:
        return "-"
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _job_json(job: Job, state: JobState, counts: dict[str, int] | None = None) -> dict[str, Any]:
    out = {**job.to_json(), "state": state.to_json()}
    if counts is not None:
        out["run_counts"] = counts  # CronStore.run_counts: right after pruning too (RETENTION-G5)
    return out


def _describe(schedule: Schedule) -> str:
    return schedule.describe()


def _short(schedule: Schedule) -> str:
    """The schedule as a table shows it: what people wrote, without the anchor (see ``show``)."""
    if isinstance(schedule, AtSchedule):
        return f"at {_when(schedule.at)}"
    if isinstance(schedule, EverySchedule):
        return f"every {format_duration(schedule.every_s)}"
    stagger = f" +{format_duration(schedule.stagger_s)}" if schedule.stagger_s else ""
    return f"{schedule.expr} {schedule.tz}{stagger}"


def _stagger(text: str | None) -> float | None:
    if text is None:
        return None
    return 0.0 if text.strip() in ("0", "0s") else parse_duration_s(text, key="stagger")


def _schedule(
    at: str | None,
    every: str | None,
    cron_expr: str | None,
    tz: str | None,
    now: datetime,
    *,
    required: bool,
    current: Schedule | None = None,
) -> Schedule | None:
    given = [x for x in (at, every, cron_expr) if x is not None]
    if len(given) > 1:
        raise InvalidScheduleError("give one of --at, --every and --cron", key="schedule")
    if at is not None:
        return JobService.parse_schedule("at", at, tz=tz, now=now)  # Invariant CRON-I15
    if every is not None:
        return JobService.parse_schedule("every", every, tz=tz, now=now)
    if cron_expr is not None:
        return JobService.parse_schedule("cron", cron_expr, tz=tz, now=now)
    if tz is not None and isinstance(current, CronSchedule):
        return JobService.rezone(current, tz, now)
    if tz is not None and not required:
        raise InvalidScheduleError(
            f"--tz applies to --cron and to an --at time without an offset; this job's schedule "
            f"is {current.describe() if current else 'unchanged'}: give --cron or --at with --tz",
            key="tz",
        )
    if required:
        raise InvalidScheduleError(
            "a job needs a schedule: --at 20m, --every 1h or --cron '0 7 * * *' --tz Europe/Berlin",
            key="schedule",
        )
    return None


def _payload(message: str | None, system_event: str | None, *, required: bool) -> Payload | None:
    if message is not None and system_event is not None:
        raise InvalidJobError("give --message or --system-event, not both", key="payload")
    if message is not None:
        return Payload("agent_turn", message)
    if system_event is not None:
        return Payload("system_event", system_event)
    if required:
        raise InvalidJobError("a job needs --message TEXT (or --system-event TEXT)", key="message")
    return None


def _schedule_options(f: Any) -> Any:
    for opt in reversed(
        [
            click.option("--at", default=None, help="Once: 20m, 2h, 1d or an ISO 8601 time."),
            click.option("--every", default=None, help="Repeat every interval: 30m, 1h, 1d."),
            click.option(
                "--cron",
                "cron_expr",
                default=None,
                help="5-field cron expression, or @hourly, @daily, @weekly, @monthly, @yearly.",
            ),
            click.option(
                "--tz",
                default=None,
                help="IANA zone for --cron, or for an --at time without an offset [UTC].",
            ),
            click.option(
                "--stagger",
                default=None,
                help="Offset for top-of-hour cron jobs (0 = exact) [a per-job 0-5m].",
            ),
            click.option("--message", default=None, help="The user message of an agent turn."),
            click.option(
                "--system-event", default=None, help="Text of a system event (main/session)."
            ),
            click.option("--target", default=None, help="isolated | main | session:ID."),
            click.option("--model", default=None, help="Model override, provider/model."),
            click.option("--fallback", "fallbacks", multiple=True, help="Fallback model, repeat."),
            click.option("--timeout", default=None, help="Run timeout: 300, 5m."),
            click.option("--deliver", default=None, help="none | session:ID | https://webhook."),
            click.option(
                "--on-ask",
                type=click.Choice(["deny", "wait", "default"]),
                default=None,
                help="A tool call that needs approval: deny at once, or wait "
                "[approvals] unattended_timeout_s; default: [approvals] unattended.",
            ),
        ]
    ):
        f = opt(f)
    return f


@click.group()
def cron() -> None:
    """Scheduled agent jobs and their run ledger."""


@cron.command()
@state_dir_option
@json_option
@click.option("--name", required=True, help="A name people recognise.")
@click.option("--agent", required=True, help="The agent that runs the job.")
@_schedule_options
@click.option("--delete-after-run", is_flag=True, help="Remove a one-shot after it succeeds.")
@click.option("--disabled", is_flag=True, help="Add the job disabled.")
def add(
    state_dir: str | None,
    as_json: bool,
    name: str,
    agent: str,
    at: str | None,
    every: str | None,
    cron_expr: str | None,
    tz: str | None,
    stagger: str | None,
    message: str | None,
    system_event: str | None,
    target: str | None,
    model: str | None,
    fallbacks: tuple[str, ...],
    timeout: str | None,
    deliver: str | None,
    on_ask: str | None,
    delete_after_run: bool,
    disabled: bool,
) -> None:
    """Add a job; everything is checked now, not when it fires."""
    now = _now()
    schedule = _schedule(at, every, cron_expr, tz, now, required=True)
    payload = _payload(message, system_event, required=True)
    assert schedule is not None and payload is not None
    fields: dict[str, Any] = {
        "target": parse_target(target or "isolated"),
        "model": model,
        "fallbacks": tuple(fallbacks),
        "delivery": parse_delivery(deliver),
        "delete_after_run": delete_after_run,
        "enabled": not disabled,
        "on_ask": None if on_ask in (None, "default") else on_ask,
    }
    if timeout is not None:
        fields["timeout_s"] = parse_duration_s(timeout, key="timeout")
    checker = JobService(None, validator=lambda: _validator(state_dir))
    job = checker.build(
        name=name,
        agent=agent,
        schedule=schedule,
        payload=payload,
        now=now,
        stagger_s=_stagger(stagger),
        **fields,
    )  # refused here, the ledger's file is not even created
    with _open(state_dir, create=True) as store:
        job, state = JobService(store).add(job, now=now)
    if as_json:
        click.echo(json.dumps(_job_json(job, state), indent=2, ensure_ascii=False))
    else:
        click.echo(
            f"added job {job.job_id} ({job.name}): {_describe(job.schedule)}; "
            f"next run {_when(state.next_run_at)}"
        )


@cron.command("list")
@state_dir_option
@json_option
def list_(state_dir: str | None, as_json: bool) -> None:
    """List jobs with their next run, last status and run counts."""
    with _open(state_dir, create=True) as store:
        rows = store.list_jobs()
        counts = store.run_counts_by_job([j.job_id for j, _ in rows])
    if as_json:
        out = [_job_json(j, s, counts[j.job_id]) for j, s in rows]
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    _render.table(
        [
            Col("id"),
            Col("name", wrap=True, min_width=10),
            Col("agent", drop=3),
            Col("schedule", wrap=True, min_width=12),
            Col("target", drop=6, wrap=True, min_width=8),
            Col("next run", wrap=True, min_width=10),
            Col("last", drop=1),
            Col("errors", drop=5, justify="right"),
            Col("runs", drop=4, wrap=True, min_width=6),
        ],
        [
            [
                j.job_id[:8],
                j.name,
                j.agent,
                _short(j.schedule),
                j.target,
                _when(s.next_run_at) if j.enabled else "disabled",
                s.last_status or "-",
                s.consecutive_errors,
                f"{counts[j.job_id]['runs']} ({counts[j.job_id].get('ok', 0)} ok)",
            ]
            for j, s in rows
        ],
        title="cron jobs",
    )


@cron.command()
@state_dir_option
@json_option
@click.option("--runs", "run_count", default=5, help="How many recent runs to show.")
@click.argument("job_id")
def show(state_dir: str | None, as_json: bool, run_count: int, job_id: str) -> None:
    """Show one job, its state and its recent runs (JOB_ID: id or unique prefix)."""
    with _open(state_dir) as store:
        jid = store.resolve_job_id(job_id)
        job, state = store.get_job(jid), store.get_state(jid)
        runs = store.runs(job_id=jid, limit=run_count)
        counts = store.run_counts(jid)  # right after ledger pruning too (RETENTION-G5)
    if as_json:
        out = _job_json(job, state, counts)
        out["runs"] = [r.to_json() for r in runs]
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    rows = [
        ("id", job.job_id),
        ("name", job.name),
        ("agent", job.agent),
        ("enabled", "yes" if job.enabled else f"no ({state.disabled_reason or 'disabled'})"),
        ("schedule", _describe(job.schedule)),
        ("target", job.target),
        ("payload", f"{job.payload.kind}: {job.payload.text}"),
        ("model", job.model or "(agent default)"),
        ("fallbacks", ", ".join(job.fallbacks) or "-"),
        ("timeout", format_duration(job.timeout_s)),
        ("delivery", job.delivery.describe()),
        ("delete after run", "yes" if job.delete_after_run else "no"),
        ("on ask", job.on_ask or "([approvals] unattended)"),
        ("next run", _when(state.next_run_at)),
        ("last run", f"{_when(state.last_run_at)} {state.last_status or ''}".strip()),
        ("consecutive errors", str(state.consecutive_errors)),
        ("runs", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "0"),
        ("backoff until", _when(state.backoff_until)),
        ("retry", f"{_when(state.retry.at)} ({state.retry.reason})" if state.retry else "-"),
        ("running", state.running_run_id or "-"),
    ]
    _render.table(
        [Col("field"), Col("value", wrap=True, min_width=20)], rows, title=f"job {job.name}"
    )
    _runs_table(runs)


@cron.command()
@state_dir_option
@json_option
@click.option("--name", default=None, help="A new name.")
@click.option("--agent", default=None, help="A new agent.")
@_schedule_options
@click.option("--clear-model", is_flag=True, help="Use the agent's default model again.")
@click.option(
    "--delete-after-run/--keep-after-run", default=None, help="One-shots: remove on success."
)
@click.argument("job_id")
def edit(
    state_dir: str | None,
    as_json: bool,
    name: str | None,
    agent: str | None,
    at: str | None,
    every: str | None,
    cron_expr: str | None,
    tz: str | None,
    stagger: str | None,
    message: str | None,
    system_event: str | None,
    target: str | None,
    model: str | None,
    fallbacks: tuple[str, ...],
    timeout: str | None,
    deliver: str | None,
    on_ask: str | None,
    clear_model: bool,
    delete_after_run: bool | None,
    job_id: str,
) -> None:
    """Change a job; a new schedule recomputes the next run from now."""
    now = _now()
    with _open(state_dir) as store:
        jid = store.resolve_job_id(job_id)
        job = store.get_job(jid)
        changes: dict[str, Any] = {}
        schedule = _schedule(at, every, cron_expr, tz, now, required=False, current=job.schedule)
        if schedule is not None:
            changes["schedule"] = schedule
        payload = _payload(message, system_event, required=False)
        if payload is not None:
            changes["payload"] = payload
        for key, value in (("name", name), ("agent", agent)):
            if value is not None:
                changes[key] = value
        if target is not None:
            changes["target"] = parse_target(target)
        if model is not None or clear_model:
            changes["model"] = None if clear_model else model
        if fallbacks:
            changes["fallbacks"] = tuple(fallbacks)
        if timeout is not None:
            changes["timeout_s"] = parse_duration_s(timeout, key="timeout")
        if deliver is not None:
            changes["delivery"] = parse_delivery(deliver)
        if delete_after_run is not None:
            changes["delete_after_run"] = delete_after_run
        if on_ask is not None:
            changes["on_ask"] = None if on_ask == "default" else on_ask
        stagger_s = _stagger(stagger)
        if not changes and stagger_s is None:
            raise click.UsageError("nothing to change; give at least one option")
        edited, state = _service(store, state_dir).edit(
            jid, now=now, stagger_s=stagger_s, **changes
        )
    if as_json:
        click.echo(json.dumps(_job_json(edited, state), indent=2, ensure_ascii=False))
    else:
        click.echo(f"edited job {jid} ({edited.name}); next run {_when(state.next_run_at)}")


@cron.command()
@state_dir_option
@json_option
@click.argument("job_id")
def enable(state_dir: str | None, as_json: bool, job_id: str) -> None:
    """Enable a job: errors and backoff reset, the next run is computed from now."""
    now = _now()
    with _open(state_dir) as store:
        jid = store.resolve_job_id(job_id)
        job, state = _service(store, state_dir).enable(jid, now=now)
        nxt = state.next_run_at
    if as_json:
        click.echo(json.dumps(_job_json(job, state), indent=2, ensure_ascii=False))
    elif nxt is None:
        click.echo(f"enabled job {jid} ({job.name}), but its time has passed: it will not run")
    else:
        click.echo(f"enabled job {jid} ({job.name}); next run {_when(nxt)}")


@cron.command()
@state_dir_option
@json_option
@click.option("--reason", default="disabled by user", help="Recorded with the job.")
@click.argument("job_id")
def disable(state_dir: str | None, as_json: bool, reason: str, job_id: str) -> None:
    """Disable a job (its in-flight run, if any, finishes)."""
    now = _now()
    with _open(state_dir) as store:
        jid = store.resolve_job_id(job_id)
        job, state = _service(store, state_dir).disable(jid, now=now, reason=reason)
    if as_json:
        click.echo(json.dumps(_job_json(job, state), indent=2, ensure_ascii=False))
    else:
        click.echo(f"disabled job {jid} ({job.name}): {reason}")


@cron.command()
@state_dir_option
@json_option
@click.argument("job_id")
def rm(state_dir: str | None, as_json: bool, job_id: str) -> None:
    """Remove a job. Its run ledger rows are kept."""
    with _open(state_dir) as store:
        jid = store.resolve_job_id(job_id)
        job = store.get_job(jid)
        with store.transaction():
            store.delete_job(jid)
    if as_json:
        click.echo(json.dumps({"removed": jid, "name": job.name}))
    else:
        click.echo(f"removed job {jid} ({job.name}); its runs stay in the ledger")


@cron.command()
@state_dir_option
@json_option
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(RUN_STATUSES),
    help="Only runs with this status (repeat for several).",
)
@click.option("--since", default=None, help="Scheduled at or after: 2h, 1d or an ISO time.")
@click.option("--limit", default=20, type=click.IntRange(1, 10000), help="Rows per page.")
@click.option("--before", "before_seq", type=int, default=None, help="Page on: rows before SEQ.")
@click.argument("job_id", required=False)
def runs(
    state_dir: str | None,
    as_json: bool,
    statuses: tuple[str, ...],
    since: str | None,
    limit: int,
    before_seq: int | None,
    job_id: str | None,
) -> None:
    """Page the run ledger, newest first (all jobs, or JOB_ID's)."""
    with _open(state_dir, create=True) as store:
        jid = store.resolve_job_id(job_id) if job_id else None
        rows = store.runs(
            job_id=jid,
            status=list(statuses) or None,
            since=None if since is None else parse_since(since, _now()),
            before_seq=before_seq,
            limit=limit,
        )
    if as_json:
        click.echo(json.dumps([r.to_json() for r in rows], indent=2, ensure_ascii=False))
        return
    _runs_table(rows)
    if len(rows) == limit and rows[-1].seq is not None:
        click.echo(f"more: --before {rows[-1].seq}")


def _runs_table(rows: list[RunRecord]) -> None:
    _render.table(
        [
            Col("seq", drop=2, justify="right"),
            Col("run"),
            Col("job", wrap=True, min_width=10),
            Col("scheduled", wrap=True, min_width=10),
            Col("started", drop=3, wrap=True, min_width=10),
            Col("status"),
            Col("try", drop=4, justify="right"),
            Col("detail", wrap=True, min_width=24),
            Col("delivery", drop=3),
        ],
        [
            [
                r.seq,
                r.run_id[:8],
                r.job_name,
                _when(r.scheduled_at),
                _when(r.started_at),
                r.status,
                r.attempt,
                " ".join((r.error_message or r.reply or "").split())[:80],
                r.delivery_status or "",
            ]
            for r in rows
        ],
        title="runs",
    )
