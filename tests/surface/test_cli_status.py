"""``fencepost status`` and ``fencepost logs`` (docs/design/cli.md CLI-I7), on real homes and a
real gateway process."""

from __future__ import annotations

import json
import select
import subprocess
import sys
from pathlib import Path

from tests.helpers import procs
from tests.helpers.cli import invoke, running_gateway

LINES = [
    {"time": "2026-12-07T10:00:00.000+00:00", "level": "info", "msg": "gateway started"},
    {
        "time": "2026-12-07T10:01:00.000+00:00",
        "level": "warning",
        "msg": "run error: job 'disk report', rate_limit: slow down",
        "action": "finish",
        "job": "4001697a-1111-4111-8111-111111111111",
        "run": "9e1f00aa-2222-4222-8222-222222222222",
    },
    {"time": "2026-12-07T10:02:00.000+00:00", "level": "info", "msg": "run finished"},
]


def write_log(home: Path, lines: list[dict], name: str = "gateway.jsonl") -> Path:
    (home / "logs").mkdir(parents=True, exist_ok=True)
    path = home / "logs" / name
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_status_without_a_gateway_says_it_is_not_running_and_how_to_start_it_cli_i7(tmp_path):
    got = invoke(["status"], tmp_path)
    got.check("status")
    assert got.code == 0
    assert "not running" in got.stdout and "fencepost gateway" in got.stdout
    assert "none enabled" in got.stdout
    data = json.loads(invoke(["status", "--json"], tmp_path).stdout)
    assert data["gateway"] is None and data["jobs"] == [] and data["failures"] == []


def test_status_names_the_running_gateway_the_next_jobs_and_the_failures_cli_i7(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "fencepost.toml").write_text('[agents.ops]\nmodel = "scripted/fast"\n')
    add = ["cron", "add", "--name", "disk report", "--agent", "ops", "--every", "1h"]
    assert invoke([*add, "--message", "how is the disk?"], home).code == 0
    with running_gateway(home) as gw:
        got = invoke(["status"], home)
        got.check("status")
        assert f"pid {gw.proc.pid}" in got.stdout and "disk report" in got.stdout
        data = json.loads(invoke(["status", "--json"], home).stdout)
    assert data["gateway"]["pid"] == gw.proc.pid
    assert data["gateway"]["running_turns"] == 0
    assert [j["name"] for j in data["jobs"]] == ["disk report"]


def test_status_lists_the_latest_runs_that_did_not_end_ok_with_their_reason_cli_i7(tmp_path):
    from fencepost.runtime.cron import CronStore
    from tests.surface.http.conftest import takeover_run

    (tmp_path / "fencepost.toml").write_text('[agents.ops]\nmodel = "scripted/fast"\n')
    add = ["cron", "add", "--name", "disk report", "--agent", "ops", "--every", "1h"]
    job = json.loads(invoke([*add, "--message", "disk?", "--json"], tmp_path).stdout)
    with CronStore(tmp_path / "cron.db") as store:
        store.insert_run(takeover_run(job["job_id"], 3.0))
    got = invoke(["status"], tmp_path)
    got.check("status")
    assert "latest failures" in got.stdout and "takeover" in got.stdout
    [failure] = json.loads(invoke(["status", "--json"], tmp_path).stdout)["failures"]
    assert failure["status"] == "takeover" and failure["reason"] == "session taken over"


def test_logs_shows_the_last_lines_filtered_by_level_oldest_file_first_cli_i7(tmp_path):
    write_log(tmp_path, LINES[:1], "gateway.jsonl.1")
    write_log(tmp_path, LINES[1:])
    got = invoke(["logs"], tmp_path)
    got.check("logs")
    out = got.stdout.splitlines()
    messages = [line[20:].split(None, 1)[1].split("  [")[0] for line in out]
    assert messages == [
        "gateway started",
        "run error: job 'disk report', rate_limit: slow down",
        "run finished",
    ]
    assert "job=4001697a run=9e1f00aa" in out[1] and "WARNING" in out[1]
    warned = invoke(["logs", "--level", "warning"], tmp_path).stdout.splitlines()
    assert len(warned) == 1 and "rate_limit" in warned[0]
    assert invoke(["logs", "-n", "1", "--json"], tmp_path).stdout == json.dumps(LINES[2]) + "\n"
    assert "no gateway log yet" in invoke(["logs"], tmp_path / "empty").stdout


def test_logs_follow_prints_lines_as_they_are_appended_across_a_rotation_cli_i7(tmp_path):
    path = write_log(tmp_path, LINES[:1])
    proc = subprocess.Popen(
        [sys.executable, "-m", "fencepost", "logs", "--home", str(tmp_path), "-f"],
        stdout=subprocess.PIPE,
        env={**procs.env(), "PYTHONUNBUFFERED": ""},  # as a user's shell: stdout is buffered
        text=True,
    )

    def next_line() -> str:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "logs -f printed nothing in 30 s"
        return proc.stdout.readline()

    try:
        assert "gateway started" in next_line()  # the tail first, flushed at once
        with path.open("a") as f:
            f.write(json.dumps(LINES[1]) + "\n")
        assert "rate_limit: slow down" in next_line()
        path.rename(path.with_name("gateway.jsonl.1"))  # the gateway rotates its log
        write_log(tmp_path, LINES[2:])
        assert "run finished" in next_line()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


def test_the_gateway_process_runs_on_the_c_allocator_gateway_i7(tmp_path):
    """Invariant GATEWAY-I7: the long-running process re-executes itself once with
    ``PYTHONMALLOC=malloc`` (same pid), so the periodic trim reaches Python's objects too."""
    with running_gateway(tmp_path, env={"PYTHONMALLOC": ""}) as gw:
        environ = Path(f"/proc/{gw.proc.pid}/environ").read_bytes().split(b"\0")
        assert b"PYTHONMALLOC=malloc" in environ
        assert invoke(["status"], tmp_path).code == 0


def test_status_lists_jobs_due_at_the_same_instant_in_name_order_cli_i7(tmp_path):
    """Two jobs with one next run (the demo's, or any added together) are ordered by name; the
    first `status` on a demo home once failed comparing them."""
    from datetime import UTC, datetime, timedelta

    from fencepost.runtime.cron import CronStore, EverySchedule
    from tests.runtime.cron.conftest import add_job

    now = datetime.now(UTC).replace(microsecond=0)
    with CronStore(tmp_path / "cron.db", create=True) as store:
        for name in ("zeta", "alpha"):
            add_job(store, now, EverySchedule(3600.0, now + timedelta(minutes=5)), name=name)
    got = invoke(["status", "--json"], tmp_path)
    got.check("status")
    assert [j["name"] for j in json.loads(got.stdout)["jobs"]] == ["alpha", "zeta"]
