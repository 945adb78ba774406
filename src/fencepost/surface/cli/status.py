"""``fencepost status`` and ``fencepost logs``: what the gateway is doing, without reading code.

Status asks the running gateway (``/api/health``, through the CLI's one client) and reads the
ledger read-only; logs reads the gateway's JSON-lines log (``<home>/logs/gateway.jsonl`` and its
rotated predecessors) and can follow it (docs/design/cli.md CLI-I7).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import click

from . import _render
from ._options import config_option, home_option

__all__ = ["logs", "status"]

#: Levels in increasing order, as the log writes them.
LEVELS = ("debug", "info", "warning", "error", "critical")
#: How often ``logs -f`` looks for new lines (a person reading, not a program).
FOLLOW_POLL_S = 0.25


def _paths(home: Path | None) -> Any:
    from ...runtime.config import StatePaths, default_home

    return StatePaths(home or default_home())


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _ago(when: datetime, now: datetime) -> str:
    text = _duration(abs((when - now).total_seconds()))
    return f"in {text}" if when > now else f"{text} ago"


def gather_status(paths: Any, config: str | None, *, failures: int) -> dict[str, Any]:
    """The gateway (if one runs), jobs next due and the latest runs that did not end ok."""
    from ...runtime.cron import CronStore
    from ._client import GatewayClient

    out: dict[str, Any] = {"home": str(paths.root), "gateway": None, "jobs": [], "failures": []}
    client = GatewayClient.find(paths, config)
    if client is not None:
        health = client.request("GET", "api/health")
        gw = health.get("gateway") or {}
        out["gateway"] = {
            "url": client.url,
            "pid": client.pid,
            "version": health.get("version"),
            "uptime_s": health.get("uptime_s"),
            "running_turns": gw.get("running_turns"),
            "queued_turns": gw.get("queued_turns"),
            "turns_ok": gw.get("turns_ok"),
            "turns_failed": gw.get("turns_failed"),
            "warnings": (health.get("resources") or {}).get("warnings", []),
        }
    if paths.cron_db.exists():
        with CronStore(paths.cron_db) as store:
            rows = store.list_jobs()
            due = sorted(
                ((s.next_run_at, j) for j, s in rows if j.enabled and s.next_run_at is not None),
                key=lambda pair: (pair[0], pair[1].name, pair[1].job_id),
            )
            out["jobs"] = [
                {"job_id": j.job_id, "name": j.name, "next_run_at": at.isoformat()} for at, j in due
            ]
            out["disabled_jobs"] = sum(not j.enabled for j, _ in rows)
            bad = ["error", "timeout", "takeover", "interrupted", "missed", "skipped"]
            out["failures"] = [
                {
                    "run_id": r.run_id,
                    "job": r.job_name,
                    "status": r.status,
                    "at": (r.ended_at or r.recorded_at).isoformat(),
                    "reason": r.error_message or r.error_kind,
                }
                for r in store.runs(status=bad, limit=failures)
            ]
    return out


@click.command()
@home_option
@config_option
@click.option("--failures", default=5, show_default=True, help="How many failed runs to show.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(home: Path | None, config: str | None, failures: int, as_json: bool) -> None:
    """Whether the gateway runs, what it is running, which jobs are due next and what failed."""
    paths = _paths(home)
    got = gather_status(paths, config, failures=failures)
    if as_json:
        click.echo(json.dumps(got, indent=2, ensure_ascii=False))
        return
    now = datetime.now(UTC)
    gw = got["gateway"]
    if gw is None:
        click.echo(f"gateway: not running on {paths.root} (start it with `fencepost gateway`)")
    else:
        up = f", up {_duration(gw['uptime_s'])}" if gw["uptime_s"] is not None else ""
        click.echo(f"gateway: running, pid {gw['pid']}, {gw['url']}{up}")
        click.echo(
            f"turns: {gw['running_turns']} running, {gw['queued_turns']} queued; "
            f"{gw['turns_ok']} ok and {gw['turns_failed']} failed since start"
        )
        for w in gw["warnings"]:
            click.echo(f"warning: {w.get('detail') or w}")
    jobs = got["jobs"]
    if jobs:
        rows = [
            [j["name"], _ago(datetime.fromisoformat(j["next_run_at"]), now), j["job_id"][:8]]
            for j in jobs[:5]
        ]
        _render.table(["next due", "when", "id"], rows, title=f"{len(jobs)} enabled job(s)")
    else:
        click.echo("jobs: none enabled (add one with `fencepost cron add`)")
    if got["failures"]:
        rows = [
            [f["at"][:19].replace("T", " "), f["job"], f["status"], (f["reason"] or "")[:60]]
            for f in got["failures"]
        ]
        _render.table(["when (UTC)", "job", "status", "reason"], rows, title="latest failures")
    else:
        click.echo("failures: none recorded")


# ---- logs -----------------------------------------------------------------------------------


def log_files(paths: Any) -> list[Path]:
    """The log and its rotated predecessors, oldest first."""
    current = paths.logs / "gateway.jsonl"
    rotated = sorted(
        (p for p in paths.logs.glob("gateway.jsonl.*") if p.suffix.lstrip(".").isdigit()),
        key=lambda p: -int(p.suffix.lstrip(".")),
    )
    return [*rotated, *([current] if current.exists() else [])]


def format_line(raw: str) -> str | None:
    """One log line for a person: time, level, message, then the context keys."""
    try:
        rec = json.loads(raw)
    except ValueError:
        return raw.rstrip("\n") or None
    if not isinstance(rec, dict):
        return raw.rstrip("\n") or None
    when = str(rec.get("time", ""))[:19].replace("T", " ")
    context = " ".join(
        f"{k}={str(rec[k])[:8] if k in ('job', 'run') else rec[k]}"
        for k in ("action", "job", "run", "session", "status", "st")
        if rec.get(k) is not None
    )
    error = f" ({rec['error']})" if rec.get("error") else ""
    level = str(rec.get("level", "")).upper()
    return f"{when} {level:<7} {rec.get('msg', '')}{error}" + (f"  [{context}]" if context else "")


def _wanted(raw: str, floor: int) -> bool:
    if floor == 0:
        return True
    try:
        level = json.loads(raw).get("level", "info")
    except (ValueError, AttributeError):
        return True
    return LEVELS.index(level) >= floor if level in LEVELS else True


@click.command()
@home_option
@click.option("-n", "--lines", default=50, show_default=True, help="How many lines to show.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines as they come.")
@click.option(
    "--level",
    type=click.Choice(LEVELS[1:]),
    default="info",
    show_default=True,
    help="Only lines at this level or above (warning: failed and missed runs).",
)
@click.option("--json", "as_json", is_flag=True, help="The JSON lines as written.")
def logs(home: Path | None, lines: int, follow: bool, level: str, as_json: bool) -> None:
    """Show the gateway's log (and follow it with -f); read-only."""
    paths = _paths(home)
    floor = LEVELS.index(level)
    files = log_files(paths)
    if not files and not follow:
        click.echo(f"no gateway log yet in {paths.logs} (the gateway writes it when it runs)")
        return
    last: deque[str] = deque(maxlen=max(0, lines))
    resume: tuple[int, int] | None = None  # (inode, offset) of the current log after the tail
    for path in files:
        with path.open("rb") as f:
            data = f.read()
            complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits
            if path.name == "gateway.jsonl":
                resume = (os.fstat(f.fileno()).st_ino, len(complete))
        text = complete.decode("utf-8", errors="replace")
        last.extend(line for line in text.splitlines(keepends=True) if _wanted(line, floor))
    for raw in last:
        _echo(raw, as_json)
    if follow:
        sys.stdout.flush()  # a pipe (`| grep`) sees the tail now, not at exit
        _follow(paths.logs / "gateway.jsonl", resume, floor, as_json)


def _echo(raw: str, as_json: bool) -> None:
    text = raw.rstrip("\n") if as_json else format_line(raw)
    if text:
        click.echo(text)


def _follow(path: Path, resume: tuple[int, int] | None, floor: int, as_json: bool) -> None:
    """Print lines appended to ``path`` from ``resume`` (where the tail stopped, so no line is
    lost or repeated in between); reopen when the log rotates (a new inode)."""
    f = None
    inode, offset = resume if resume is not None else (None, 0)
    pending = b""

    def drain(f: BinaryIO) -> None:
        nonlocal pending
        *done, pending = (pending + f.read()).split(b"\n")
        for raw in done:
            line = raw.decode("utf-8", errors="replace") + "\n"
            if _wanted(line, floor):
                _echo(line, as_json)
        sys.stdout.flush()

    try:
        while True:
            if f is None and path.exists():
                f = path.open("rb")
                same = os.fstat(f.fileno()).st_ino == inode
                f.seek(offset if same else 0)  # a new file (rotated since): from its start
                inode = os.fstat(f.fileno()).st_ino
            if f is not None:
                drain(f)
                try:
                    rotated = path.stat().st_ino != inode
                except FileNotFoundError:
                    rotated = True
                if rotated:
                    drain(f)  # what the old file got before it was renamed
                    f.close()
                    f, pending = None, b""
            time.sleep(FOLLOW_POLL_S)
    except KeyboardInterrupt:
        pass
    finally:
        if f is not None:
            f.close()
