"""``fencepost cron ...`` through click's CliRunner, on a real state directory."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from fencepost import InvalidJobError, InvalidScheduleError, JobNotFoundError
from fencepost.runtime.cron import CronStore, RunRecord, default_db_path
from fencepost.surface.cli import cli

OPS_CONFIG = (
    '[providers.openai]\napi = "openai"\n[providers.anthropic]\napi = "anthropic"\n'
    '[agents.ops]\nmodel = "scripted/fast"\n'
)


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("FENCEPOST_HOME", str(tmp_path / "home"))
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "fencepost.toml").write_text(OPS_CONFIG)  # agents are checked
    return str(tmp_path / "state")


def fp(state: str, *args: str, ok: bool = True):
    result = CliRunner().invoke(cli, ["cron", args[0], "--state-dir", state, *args[1:]])
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


def add(state: str, *args: str) -> dict:
    res = fp(state, "add", "--json", "--agent", "ops", *args)
    return json.loads(res.output)


def test_add_list_show_a_berlin_daily_job_as_json(state):
    job = add(
        state,
        "--name",
        "daily review",
        "--cron",
        "0 7 * * *",
        "--tz",
        "Europe/Berlin",
        "--message",
        "daily ops review",
        "--stagger",
        "0",
        "--model",
        "openai/gpt-4o",
    )
    assert job["schedule"] == {
        "kind": "cron",
        "expr": "0 7 * * *",
        "tz": "Europe/Berlin",
        "stagger_s": 0.0,
    }
    assert job["target"] == "isolated" and job["payload"]["kind"] == "agent_turn"
    nxt = datetime.fromisoformat(job["state"]["next_run_at"])
    assert nxt.astimezone(UTC).minute == 0 and nxt.astimezone(UTC).hour in (5, 6)
    listed = json.loads(fp(state, "list", "--json").output)
    assert [j["job_id"] for j in listed] == [job["job_id"]]
    shown = json.loads(fp(state, "show", "--json", job["job_id"][:8]).output)
    assert shown["name"] == "daily review" and shown["runs"] == []
    human = fp(state, "show", job["job_id"]).output
    assert "daily review" in human and "Europe/Berlin" in human


def test_top_of_hour_jobs_get_a_default_stagger_that_zero_turns_off(state):
    a = add(state, "--name", "a", "--cron", "0 * * * *", "--message", "m")
    assert 0 <= a["schedule"]["stagger_s"] < 300
    b = add(state, "--name", "b", "--cron", "0 * * * *", "--message", "m", "--stagger", "0")
    assert b["schedule"]["stagger_s"] == 0


def test_relative_at_and_every_jobs_get_their_next_run(state):
    before = datetime.now(UTC)
    once = add(
        state,
        "--name",
        "once",
        "--at",
        "20m",
        "--message",
        "m",
        "--delete-after-run",
        "--deliver",
        "session:ops-main",
        "--target",
        "main",
    )
    at = datetime.fromisoformat(once["state"]["next_run_at"])
    assert before + timedelta(minutes=20) <= at <= datetime.now(UTC) + timedelta(minutes=20)
    assert once["delivery"] == {"kind": "session", "to": "ops-main"}
    every = add(
        state,
        "--name",
        "hourly",
        "--every",
        "1h",
        "--system-event",
        "tick",
        "--target",
        "session:ops-1",
        "--timeout",
        "5m",
        "--deliver",
        "https://hooks.example/x",
    )
    assert every["schedule"]["every_s"] == 3600 and every["timeout_s"] == 300
    assert every["payload"] == {"kind": "system_event", "text": "tick"}


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (["--cron", "0 7 * *"], InvalidScheduleError, "has 4 fields"),
        (["--cron", "0 7 * * *", "--tz", "Europe/Berln"], InvalidScheduleError, "Europe/Berln"),
        (["--at", "2001-01-01T00:00"], InvalidScheduleError, "not in the future"),
        (["--every", "3s"], InvalidScheduleError, "minimum"),
        (["--every", "1h", "--tz", "Mars/Base"], InvalidScheduleError, "--tz 'Mars/Base' does not"),
        (["--at", "20m", "--tz", "Europe/Berlin"], InvalidScheduleError, "relative time '20m'"),
        (
            ["--at", "2099-03-29T07:00+02:00", "--tz", "Europe/Berlin"],
            InvalidScheduleError,
            "carries its own UTC offset",
        ),
        (["--cron", "@reboot"], InvalidScheduleError, "start-up"),
        (["--at", "20m", "--every", "1h"], InvalidScheduleError, "one of --at"),
        ([], InvalidScheduleError, "needs a schedule"),
        (["--every", "1h", "--target", "session:../x"], InvalidJobError, "invalid session id"),
        (["--every", "1h", "--target", "session:abc\n"], InvalidJobError, "invalid session id"),
        (["--every", "1h", "--deliver", "session:abc\n"], InvalidJobError, "invalid session id"),
        (["--every", "1h", "--model", "gpt4"], InvalidJobError, "provider/model"),
        (["--every", "1h", "--deliver", "ftp://x"], InvalidJobError, "unknown delivery"),
        (["--every", "1h", "--delete-after-run"], InvalidJobError, "one-shot"),
    ],
)
def test_bad_input_is_refused_when_given_with_a_clear_message(state, args, error, message):
    res = fp(state, "add", "--name", "x", "--agent", "ops", "--message", "m", *args, ok=False)
    assert isinstance(res.exception, error), res.output
    assert message in str(res.exception)
    assert not json.loads(fp(state, "list", "--json").output)


# Invariant CRON-I14
def test_a_daily_nickname_is_accepted_and_listed_as_written_cron_i14(state):
    job = add(
        state,
        "--name",
        "nightly",
        "--cron",
        "@daily",
        "--tz",
        "Europe/Berlin",
        "--message",
        "m",
        "--stagger",
        "0",
    )
    assert job["schedule"]["expr"] == "@daily"
    nxt = datetime.fromisoformat(job["state"]["next_run_at"]).astimezone(UTC)
    assert (nxt.hour, nxt.minute) in ((22, 0), (23, 0))  # local midnight
    assert json.loads(fp(state, "list", "--json").output)[0]["schedule"]["expr"] == "@daily"


# Invariant CRON-I15
def test_edit_refuses_a_time_zone_for_an_every_schedule_and_changes_nothing_cron_i15(state):
    job = add(state, "--name", "j", "--every", "1h", "--message", "m")
    for args in (["--tz", "Mars/Base"], ["--every", "2h", "--tz", "Europe/Berlin"]):
        res = fp(state, "edit", job["job_id"], *args, ok=False)
        assert isinstance(res.exception, InvalidScheduleError) and "--tz" in str(res.exception)
    shown = json.loads(fp(state, "show", "--json", job["job_id"]).output)
    assert shown["schedule"]["every_s"] == 3600


@pytest.mark.parametrize("name", ["daily\n", "a\x00b", "bad\udcffname", "x" * 201])
def test_a_job_name_with_control_characters_or_lone_surrogates_is_refused(state, name):
    res = fp(
        state, "add", "--name", name, "--agent", "ops", "--message", "m", "--every", "1h", ok=False
    )
    assert isinstance(res.exception, InvalidJobError), res.output
    assert "job name" in str(res.exception)
    assert not json.loads(fp(state, "list", "--json").output)


def test_a_system_event_cannot_target_an_isolated_session(state):
    res = fp(
        state,
        "add",
        "--name",
        "x",
        "--agent",
        "ops",
        "--every",
        "1h",
        "--system-event",
        "ping",
        ok=False,
    )
    assert isinstance(res.exception, InvalidJobError) and "main or session" in str(res.exception)


def test_main_maps_a_bad_schedule_to_exit_code_2_with_the_message(state, capsys):
    from fencepost.surface.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "cron",
                "add",
                "--state-dir",
                state,
                "--name",
                "x",
                "--agent",
                "ops",
                "--message",
                "m",
                "--cron",
                "99 * * * *",
            ]
        )
    assert exit_.value.code == 2
    assert "invalid cron expression '99 * * * *'" in capsys.readouterr().err


def test_edit_changes_fields_and_a_new_schedule_recomputes_the_next_run(state):
    job = add(state, "--name", "j", "--every", "1h", "--message", "m")
    edited = json.loads(
        fp(
            state,
            "edit",
            "--json",
            job["job_id"],
            "--name",
            "renamed",
            "--cron",
            "30 6 * * 1-5",
            "--tz",
            "America/New_York",
            "--model",
            "anthropic/claude-x",
            "--fallback",
            "openai/gpt-4o",
        ).output
    )
    assert edited["name"] == "renamed" and edited["schedule"]["tz"] == "America/New_York"
    assert edited["fallbacks"] == ["openai/gpt-4o"]
    nxt = datetime.fromisoformat(edited["state"]["next_run_at"])
    assert nxt.astimezone(UTC).minute == 30
    tz_only = json.loads(fp(state, "edit", "--json", job["job_id"], "--tz", "Asia/Tokyo").output)
    assert tz_only["schedule"]["expr"] == "30 6 * * 1-5"
    assert tz_only["schedule"]["tz"] == "Asia/Tokyo"
    bad = fp(state, "edit", job["job_id"], "--cron", "bad", ok=False)
    assert isinstance(bad.exception, InvalidScheduleError)
    nothing = fp(state, "edit", job["job_id"], ok=False)
    assert nothing.exit_code == 2 and "nothing to change" in nothing.output


def test_disable_enable_and_rm(state):
    job = add(state, "--name", "j", "--every", "1h", "--message", "m")
    jid = job["job_id"]
    off = json.loads(fp(state, "disable", "--json", jid, "--reason", "holiday").output)
    assert off["enabled"] is False and off["state"]["disabled_reason"] == "holiday"
    assert "no (holiday)" in fp(state, "show", jid).output
    on = json.loads(fp(state, "enable", "--json", jid).output)
    assert on["enabled"] is True and on["state"]["disabled_reason"] is None
    assert on["state"]["consecutive_errors"] == 0 and on["state"]["next_run_at"]
    assert "removed job" in fp(state, "rm", jid).output
    gone = fp(state, "show", jid, ok=False)
    assert isinstance(gone.exception, JobNotFoundError)
    bad = fp(state, "show", "../../etc/passwd", ok=False)
    assert isinstance(bad.exception, InvalidJobError)


def test_runs_pages_the_ledger_with_filters(state):
    job = add(state, "--name", "j", "--every", "1h", "--message", "m")
    now = datetime.now(UTC)
    with CronStore(default_db_path(state)) as store:
        for n, status in enumerate(["ok", "error", "missed", "ok", "ok"]):
            store.insert_run(
                RunRecord(
                    run_id=f"run-{n}",
                    job_id=job["job_id"],
                    job_name="j",
                    scheduled_at=now - timedelta(hours=5 - n),
                    trigger="schedule",
                    attempt=1,
                    status=status,
                    recorded_at=now,
                    reply=f"reply {n}",
                )
            )
    rows = json.loads(fp(state, "runs", "--json", job["job_id"]).output)
    assert [r["run_id"] for r in rows] == ["run-4", "run-3", "run-2", "run-1", "run-0"]
    ok = json.loads(fp(state, "runs", "--json", "--status", "ok").output)
    assert [r["run_id"] for r in ok] == ["run-4", "run-3", "run-0"]
    page = json.loads(fp(state, "runs", "--json", "--limit", "2").output)
    more = json.loads(
        fp(state, "runs", "--json", "--limit", "2", "--before", str(page[-1]["seq"])).output
    )
    assert [r["run_id"] for r in page + more] == ["run-4", "run-3", "run-2", "run-1"]
    recent = json.loads(fp(state, "runs", "--json", "--since", "2h30m").output)
    assert [r["run_id"] for r in recent] == ["run-4", "run-3"]
    human = fp(state, "runs", "--limit", "2").output
    assert "more: --before" in human and "reply 4" in human


def test_the_default_state_dir_follows_fencepost_home(tmp_path, monkeypatch):
    monkeypatch.setenv("FENCEPOST_HOME", str(tmp_path / "h"))
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "fencepost.toml").write_text(OPS_CONFIG)
    res = CliRunner().invoke(
        cli, ["cron", "add", "--name", "x", "--agent", "ops", "--every", "1h", "--message", "m"]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "h" / "cron.db").exists()


def test_an_unknown_agent_or_model_is_refused_when_the_job_is_added(state):
    bad_agent = fp(
        state,
        "add",
        "--name",
        "x",
        "--agent",
        "nobody",
        "--every",
        "1h",
        "--message",
        "m",
        ok=False,
    )
    assert isinstance(bad_agent.exception, InvalidJobError)
    assert "unknown agent 'nobody'; configured: ops" in str(bad_agent.exception)
    bad_model = fp(
        state,
        "add",
        "--name",
        "x",
        "--agent",
        "ops",
        "--every",
        "1h",
        "--message",
        "m",
        "--model",
        "nowhere/x",
        ok=False,
    )
    assert "unknown provider 'nowhere'" in str(bad_model.exception)


def test_cron_run_runs_the_job_now_in_process_and_records_it(state):
    job = add(state, "--name", "now", "--every", "1h", "--message", "hello")
    res = fp(state, "run", "--json", job["job_id"][:8], ok=False)
    assert res.exit_code == 0, (res.output, res.exception)
    row = json.loads(res.output[res.output.index("{") :])
    assert row["status"] == "ok" and row["trigger"] == "manual" and row["reply"] == "ok"
    ledger = json.loads(fp(state, "runs", "--json").output)
    assert [r["run_id"] for r in ledger] == [row["run_id"]]


def test_a_job_says_what_its_runs_do_with_a_call_that_needs_approval(state):
    """Invariant APPROVAL-I4: the job's on_ask (deny | wait | unset) is kept through add, edit,
    show and storage; a job stored before the field existed reads as unset."""
    job = add(state, "--name", "j", "--every", "1h", "--message", "m", "--on-ask", "wait")
    assert job["on_ask"] == "wait"
    edited = json.loads(fp(state, "edit", "--json", job["job_id"], "--on-ask", "default").output)
    assert edited["on_ask"] is None
    edited = json.loads(fp(state, "edit", "--json", job["job_id"], "--on-ask", "deny").output)
    assert edited["on_ask"] == "deny"
    assert "deny" in fp(state, "show", job["job_id"]).output
    bad = fp(state, "add", "--agent", "ops", "--name", "k", "--every", "1h", "--message", "m",
             "--on-ask", "maybe", ok=False)  # fmt: skip
    assert bad.exit_code == 2 and "maybe" in bad.output
    store = CronStore(default_db_path(state))
    try:
        store._conn.execute(
            "UPDATE jobs SET spec = json_remove(spec, '$.on_ask') WHERE job_id = ?",
            (job["job_id"],),
        )
        assert store.get_job(job["job_id"]).on_ask is None
    finally:
        store.close()


def test_a_refused_add_on_a_fresh_state_dir_writes_nothing_not_even_the_ledger_cron_i17(state):
    """Invariant CRON-I17: the job is built and validated before the ledger is opened."""
    res = fp(
        state,
        "add",
        "--name",
        "x",
        "--agent",
        "nobody",
        "--message",
        "m",
        "--every",
        "1h",
        ok=False,
    )
    assert res.exit_code != 0 and "nobody" in str(res.exception)
    assert sorted(p.name for p in Path(state).iterdir()) == ["fencepost.toml"]
