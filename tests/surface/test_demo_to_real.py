"""The README's path from the demo to real work, as real processes: "Run it" (`fencepost
gateway` with no config), `fencepost init`, then `fencepost gateway` again or `fencepost reload`
(docs/design/gateway.md, "Leaving demo mode"; DEMO-I2, DEMO-I3)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fencepost.runtime.cron import CronStore, RunRecord
from tests.helpers import procs
from tests.helpers.cli import running_gateway

pytestmark = [pytest.mark.slow, pytest.mark.processes]


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def runs(home: Path) -> list[RunRecord]:
    if not (home / "cron.db").exists():
        return []
    with CronStore(home / "cron.db", create=False) as store:
        return store.runs(limit=1000)


def jobs(home: Path) -> dict[str, str]:
    """The jobs in the home, name by id."""
    with CronStore(home / "cron.db", create=False) as store:
        return {job.job_id: job.name for job, _ in store.list_jobs()}


def cli(home: Path, *argv: str) -> subprocess.CompletedProcess[bytes]:
    got = procs.cli(*argv, "--home", str(home))
    out = (got.stdout + got.stderr).decode()
    assert "Traceback" not in out, out
    return got


def add_first_job(home: Path) -> str:
    """The user's first job, as the README writes one (for the starter config's agent)."""
    got = cli(
        home,
        "cron",
        "add",
        "--name",
        "first",
        "--agent",
        "ops",
        "--at",
        "1s",
        "--message",
        "status?",
        "--json",
    )
    assert got.returncode == 0, got.stderr.decode()
    job_id: str = json.loads(got.stdout)["job_id"]
    return job_id


def ran_ok(home: Path, job_id: str) -> bool:
    return any(r.job_id == job_id and r.status == "ok" for r in runs(home))


# Invariant DEMO-I2, Invariant DEMO-I3
def test_run_it_then_init_then_gateway_removes_the_demos_jobs_says_so_and_runs_the_users_first_job(
    tmp_path,
):
    home = tmp_path / "home"  # a fresh machine: no ~/.fencepost yet
    with running_gateway(home) as demo:  # the README's "Run it": no config, demo mode
        wait_for(lambda: any(r.status == "ok" for r in runs(home)), "a demo run to succeed")
        demo_ids = set(jobs(home))
    assert demo.returncode == 0
    assert "demo mode: 2 scripted agents" in demo.stderr
    assert "`fencepost init` writes a config to leave it" in demo.stderr
    assert len(demo_ids) == 3

    init = cli(home, "init")
    assert init.returncode == 0, init.stderr.decode()
    said = init.stdout.decode()
    assert f"wrote {home / 'fencepost.toml'}; edit it, then run: fencepost gateway" in said
    assert "this home has the demo's 3 job(s) (demo: " in said and "slow isolated report" in said
    assert "the gateway removes them when it starts or reloads with this config" in said

    # Before the gateway runs on the new config, doctor is not green about the demo's jobs.
    before = json.loads(cli(home, "doctor", "--json").stdout)
    warned = [f for f in before["findings"] if f["check"] == "jobs"]
    assert len(warned) == 3 and all(f["status"] == "warn" for f in warned)
    lacks = "runs agent 'analyst', which the config lacks (configured: ops)"
    assert any(lacks in f["detail"] for f in warned), warned  # in no particular order

    started = datetime.now(UTC)
    with running_gateway(home) as real:
        assert set(jobs(home)).isdisjoint(demo_ids)  # removed before the scheduler started
        first = add_first_job(home)
        wait_for(lambda: ran_ok(home, first), "the user's first job to run ok")
        listed = json.loads(cli(home, "cron", "list", "--json").stdout)
        assert [j["name"] for j in listed] in (["first"], [])  # a one-shot may be gone already
    assert real.returncode == 0
    assert "left demo mode: removed the demo's 3 job(s) (demo: " in real.stderr
    assert "their transcripts in sessions/" in real.stderr
    assert real.stderr.index("left demo mode") < real.stderr.index("dashboard: http")
    late = [
        r for r in runs(home) if r.job_id in demo_ids and r.started_at and r.started_at > started
    ]
    assert late == []  # no demo job ran on the real config
    assert any(r.job_id in demo_ids for r in runs(home))  # the demo's runs stay in the ledger
    assert (home / "sessions" / "assistant-main.jsonl").exists()  # and its transcripts

    after = cli(home, "doctor", "--json")
    report = json.loads(after.stdout)
    assert after.returncode == 0, report
    assert [f["status"] for f in report["findings"] if f["check"] == "jobs"] == ["ok"]


# Invariant DEMO-I2, Invariant DEMO-I3
def test_init_and_reload_on_a_running_demo_gateway_remove_the_demos_jobs_and_say_so(tmp_path):
    home = tmp_path / "home"
    with running_gateway(home) as served:
        demo_ids = set(jobs(home))
        assert len(demo_ids) == 3
        init = cli(home, "init")
        said = init.stdout.decode()
        assert "edit it, then run: fencepost reload (the gateway running here, pid" in said
        assert "this home has the demo's 3 job(s)" in said
        assert set(jobs(home)) == demo_ids  # init itself removes nothing

        reload = cli(home, "reload")
        assert reload.returncode == 0, reload.stderr.decode()
        out = reload.stdout.decode()
        assert "agents added: ops" in out and "agents removed: analyst, assistant" in out
        assert "left demo mode: removed the demo's jobs (demo: " in out
        assert set(jobs(home)).isdisjoint(demo_ids)

        first = add_first_job(home)
        wait_for(lambda: ran_ok(home, first), "the user's first job to run ok")
        again = json.loads(cli(home, "reload", "--json").stdout)
        assert again["demo_jobs_removed"] == [] and again["changed"] is False
    assert served.returncode == 0
