"""CLI tables at 80 columns: every table a person reads fits, and what matters is not cut.

Each table is rendered by the real command (click's CliRunner, ``COLUMNS=80``) on a state
directory with realistic data: long names, zone names, UUID session ids, deep paths, error
messages. ``plan_widths``, the pure decision behind them, is tested on its own first.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.cells import cell_len

from fencepost import OutsideProtocolChangeError, SyncSessionStore, message
from fencepost.runtime.config import StatePaths
from fencepost.runtime.cron import CronStore, RunRecord
from fencepost.surface.cli import cli
from fencepost.surface.cli._render import GAP_CHARS, Col, plan_widths

CONFIG = """\
[agents.ops]
model = "scripted/fast"
[agents.platform-oncall]
model = "scripted/fast"
"""

SESSION = "cron-3f2b9c1e-8d4a-4b6f-9e2d-7a1c5b0e4f93"


# ---- the pure plan ------------------------------------------------------------------------------


def test_a_table_that_fits_keeps_every_column_at_its_natural_width():
    cols = [Col("id"), Col("name", wrap=True), Col("status", drop=1)]
    rows = [["abcd1234", "daily review", "ok"]]
    assert plan_widths(cols, rows, 80) == [8, 12, 6]


def test_columns_are_dropped_highest_drop_first_and_never_the_ones_that_must_stay():
    cols = [Col("a" * 30), Col("b" * 30, drop=1), Col("c" * 30, drop=2), Col("d" * 10)]
    rows: list[list[str]] = []
    assert plan_widths(cols, rows, 200) == [30, 30, 30, 10]
    assert plan_widths(cols, rows, 80) == [30, 30, None, 10]
    assert plan_widths(cols, rows, 60) == [30, None, None, 10]
    assert plan_widths(cols, rows, 20) == [30, None, None, 10]  # only what must stay: too wide


def test_wrapping_columns_share_the_room_left_and_the_table_fills_the_width_exactly():
    cols = [Col("id"), Col("name", wrap=True, min_width=10), Col("text", wrap=True, min_width=10)]
    rows = [["abcd1234", "n" * 14, "t" * 200]]
    widths = plan_widths(cols, rows, 80)
    assert widths[0] == 8 and widths[1] == 14  # the name fits whole; the text takes the rest
    assert sum(w for w in widths if w) + GAP_CHARS * 2 == 80


def test_wide_characters_are_measured_in_terminal_cells():
    assert plan_widths([Col("name")], [["日本語"]], 80) == [6]


# ---- the real commands at 80 columns ------------------------------------------------------------


@pytest.fixture
def home(tmp_path) -> Path:
    """A state directory after a week: jobs of every kind, a ledger, sessions, a fence event."""
    home = tmp_path / "home with a fairly long path" / "operator" / ".fencepost"
    home.mkdir(parents=True)
    (home / "fencepost.toml").write_text(CONFIG)
    jobs = [
        ["--name", "daily ops review for the platform team", "--agent", "platform-oncall",
         "--cron", "30 7 * * 1-5", "--tz", "America/Argentina/Buenos_Aires",
         "--target", f"session:{SESSION}"],
        ["--name", "disk report", "--agent", "ops", "--every", "6h"],
        ["--name", "nightly", "--agent", "ops", "--cron", "@daily", "--tz", "Europe/Berlin"],
        ["--name", "remind me", "--agent", "ops", "--at", "2099-12-31T09:00",
         "--tz", "Asia/Kolkata", "--disabled"],
    ]  # fmt: skip
    for args in jobs:
        res = run(home, "cron", "add", *args, "--message", "look around and report")
        assert res.exit_code == 0, res.output
    now = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    with CronStore(home / "cron.db") as store:
        job = store.list_jobs()[0][0]
        for i, (status, err, reply) in enumerate(
            [
                ("ok", None, "All 14 services healthy; the disk on db-2 is at 81%, up 3% a day."),
                ("error", "provider openai: rate_limit (429): retry after 20 s", None),
                ("takeover", "session taken over: foreign_append at byte 48213 (312 bytes)", None),
                ("missed", "slot 2026-03-01T07:30Z is 3h old, beyond the 1h grace window", None),
            ]
        ):
            at = now - timedelta(days=i)
            store.insert_run(
                RunRecord(
                    run_id=f"run-{i}-6c1f0d5e-2b7a-4e0a-a9b8-d3e4f5a6b7c8",
                    job_id=job.job_id,
                    job_name=job.name,
                    scheduled_at=at,
                    trigger="schedule",
                    attempt=1,
                    status=status,  # type: ignore[arg-type]
                    recorded_at=at,
                    started_at=None if status == "missed" else at + timedelta(seconds=42),
                    ended_at=None if status == "missed" else at + timedelta(seconds=95),
                    error_message=err,
                    reply=reply,
                    delivery_status="delivered" if status == "ok" else None,
                )
            )
    paths = StatePaths(home)
    with SyncSessionStore(paths.sessions, durability="buffered") as sessions:
        s = sessions.session(SESSION)
        s.append(message("user", "daily ops review for the platform team"), writer="delivery")
        reply = message("assistant", "All 14 services healthy; db-2 disk at 81%.")
        s.append(reply, writer="delivery")
        sessions.session("main").append(message("user", "hello"), writer="heartbeat")
    with open(paths.sessions / f"{SESSION}.jsonl", "ab") as f:
        f.write(b'{"type":"message","id":"0badf00d","note":"written by an editor"}\n')
    with (
        SyncSessionStore(paths.sessions, durability="buffered") as sessions,
        pytest.raises(OutsideProtocolChangeError),
    ):
        sessions.session(SESSION).append(message("user", "x"), writer="delivery")
    old = (datetime.now(UTC) - timedelta(days=60)).timestamp()
    os.utime(paths.sessions / f"{SESSION}.jsonl", (old, old))
    return home


def run(home: Path, *args: str):
    env = {"COLUMNS": "80", "FENCEPOST_HOME": str(home), "FENCEPOST_STATE_DIR": str(home)}
    return CliRunner().invoke(cli, list(args), env=env)


def fits(output: str) -> str:
    """Every line at most 80 cells, and no value cut short with an ellipsis."""
    wide = [line for line in output.splitlines() if cell_len(line) > 80]
    assert not wide, "\n".join(wide)
    assert "…" not in output, output
    return output


RULE = re.compile(r"^[─ ]*─[─ ]*$")


def cells(output: str) -> dict[str, str]:
    """Each table column's text, read down the column (by the spans of the rule under its
    header), with all whitespace removed, so a value wrapped over lines reads whole again."""
    lines = output.splitlines()
    found: dict[str, str] = {}
    for n, rule in enumerate(lines):
        if not RULE.match(rule):
            continue
        spans = [m.span() for m in re.finditer(r"─+", rule)]
        body = []
        for line in lines[n + 1 :]:
            if not line.strip() or line.startswith("(not shown"):
                break
            body.append(line)
        for a, b in spans:
            header = lines[n - 1][a:b].strip()
            text = "".join("".join(line[a:b].split()) for line in body)
            found[header] = found.get(header, "") + text
    return found


def shows(output: str, column: str, value: str) -> bool:
    return "".join(value.split()) in cells(output)[column]


def test_cron_list_fits_80_columns_with_id_name_schedule_next_run_and_last_status(home):
    res = run(home, "cron", "list")
    assert res.exit_code == 0, res.output
    out = fits(res.output)
    with CronStore(home / "cron.db") as store:
        ids = [j.job_id[:8] for j, _ in store.list_jobs()]
    for column, value in [
        *(("id", i) for i in ids),
        ("name", "daily ops review for the platform team"),
        ("schedule", "30 7 * * 1-5 America/Argentina/Buenos_Aires"),
        ("schedule", "every 6h"),
        ("schedule", "@daily Europe/Berlin"),
        ("schedule", "at 2099-12-31 03:30:00Z"),  # 09:00 in Kolkata
        ("next run", "disabled"),
        ("next run", "2026-"),
    ]:
        assert shows(out, column, value), (column, value, out)
    assert "(not shown at this width: target" in out


def test_cron_runs_fits_80_columns_with_run_job_time_status_and_the_error(home):
    res = run(home, "cron", "runs")
    assert res.exit_code == 0, res.output
    out = fits(res.output)
    for column, value in [
        ("run", "run-0-6c"),
        ("run", "run-3-6c"),
        ("job", "daily ops review for the platform team"),
        ("scheduled", "2026-03-02 06:00:00Z"),
        ("scheduled", "2026-02-27 06:00:00Z"),
        ("status", "missed"),
        ("status", "takeover"),
        ("detail", "provider openai: rate_limit (429): retry after 20 s"),
        ("detail", "session taken over: foreign_append at byte 48213 (312 bytes)"),
        ("detail", "beyond the 1h grace window"),
        ("detail", "All 14 services healthy"),
    ]:
        assert shows(out, column, value), (column, value, out)


def test_cron_show_fits_80_columns_and_wraps_a_long_zone_and_target(home):
    job_id = json.loads(run(home, "cron", "list", "--json").output)[0]["job_id"]
    res = run(home, "cron", "show", job_id)
    assert res.exit_code == 0, res.output
    out = fits(res.output)
    for value in [job_id, f"session:{SESSION}", "America/Argentina/Buenos_Aires"]:
        assert shows(out, "value", value), value
    assert shows(out, "status", "takeover")


def test_sessions_list_fits_80_columns_with_whole_session_ids(home):
    res = run(home, "sessions", "list", "--root", str(home / "sessions"))
    assert res.exit_code == 0, res.output
    out = fits(res.output)
    assert SESSION in out  # an id is shown whole, on one line when it fits
    assert shows(out, "session", "main")
    assert shows(out, "path", str(home / "sessions" / f"{SESSION}.jsonl"))


def test_sessions_show_fits_80_columns_with_writer_type_summary_and_fence_events(home):
    res = run(home, "sessions", "show", "--root", str(home / "sessions"), SESSION)
    assert res.exit_code == 0, res.output
    out = fits(res.output)
    for column, value in [
        ("writer", "delivery"),
        ("type", "message"),
        ("summary", "user: daily ops review for the platform team"),
        ("summary", "assistant: All 14 services healthy; db-2 disk at 81%."),
        ("reason", "foreign_append"),
        ("description", "65 bytes were appended at byte"),
    ]:
        assert shows(out, column, value), (column, value, out)


def test_gc_dry_run_fits_80_columns_with_the_target_and_reason(home):
    res = run(home, "gc", "--dry-run", "--state-dir", str(home))
    assert res.exit_code == 0, res.output
    out = fits(res.output)
    assert shows(out, "target", str(home / "sessions" / f"{SESSION}.jsonl")) or shows(
        out, "target", SESSION
    ), out


def test_doctor_fits_80_columns_with_check_status_and_detail(home):
    res = run(home, "doctor", "--home", str(home))
    out = fits(res.output)
    found = cells(out)
    assert "config" in found["check"] and "ok" in found["status"], out
    assert found["detail"], out


def test_a_wide_terminal_shows_every_column_of_cron_list(home):
    env = {"COLUMNS": "200", "FENCEPOST_STATE_DIR": str(home)}
    out = CliRunner().invoke(cli, ["cron", "list"], env=env).output
    for header in ["agent", "target", "errors", "runs", "platform-oncall"]:
        assert header in out
    assert "not shown at this width" not in out
