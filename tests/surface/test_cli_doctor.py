"""`fencepost doctor` and `fencepost init` on real state directories."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fencepost import SessionStore, message
from tests.core.test_recovery import _crash
from tests.helpers import procs


def seed(home: Path) -> SessionStore:
    store = SessionStore(home / "sessions", durability="buffered")
    asyncio.run(store.session("s").append(message("user", "before"), writer="delivery"))
    return store


def test_init_writes_a_starter_config_that_doctor_accepts_and_never_overwrites(tmp_path):
    got = procs.cli("init", "--home", str(tmp_path))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "fencepost.toml").read_text().startswith("# fencepost configuration")
    again = procs.cli("init", "--home", str(tmp_path))
    assert again.returncode == 2 and b"already exists" in again.stderr
    doc = procs.cli("doctor", "--home", str(tmp_path), "--json")
    assert doc.returncode == 0, doc.stdout
    assert json.loads(doc.stdout)["status"] == "ok"


def test_a_bad_config_fails_the_doctor_naming_key_and_line(tmp_path):
    (tmp_path / "fencepost.toml").write_text('[agents.a]\nmodel = "nowhere/x"\n')
    doc = procs.cli("doctor", "--home", str(tmp_path), "--json")
    assert doc.returncode == 1
    [config] = [f for f in json.loads(doc.stdout)["findings"] if f["check"] == "config"]
    assert config["status"] == "fail" and "line 2" in config["detail"]


def test_a_torn_tail_is_reported_then_fixed_into_the_quarantine_losing_nothing(tmp_path):
    """Invariant DOCTOR-I1."""
    seed(tmp_path).close()
    sessions = tmp_path / "sessions"
    committed = (sessions / "s.jsonl").read_bytes()
    _crash(sessions, "mid_write")
    torn_size = (sessions / "s.jsonl").stat().st_size
    report = json.loads(procs.cli("doctor", "--home", str(tmp_path), "--json").stdout)
    assert any(f["check"] == "torn-tail" and f["status"] == "warn" for f in report["findings"])
    assert (sessions / "s.jsonl").stat().st_size == torn_size  # without --fix: untouched
    fixed = procs.cli("doctor", "--home", str(tmp_path), "--fix", "--json")
    findings = json.loads(fixed.stdout)["findings"]
    assert any(f["check"] == "torn-tail" and f["status"] == "fixed" for f in findings)
    assert (sessions / "s.jsonl").read_bytes() == committed
    moved = (sessions / "s.jsonl.quarantine").read_bytes()
    assert moved  # the torn bytes are kept, base64, with their offset
    after = json.loads(procs.cli("doctor", "--home", str(tmp_path), "--json").stdout)
    assert any(f["check"] == "quarantine" and f["status"] == "warn" for f in after["findings"])


def test_an_outside_change_is_reported_never_repaired(tmp_path):
    """Invariant DOCTOR-I1."""
    seed(tmp_path).close()
    path = tmp_path / "sessions" / "s.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"type":"custom"')
    before = path.read_bytes()
    got = procs.cli("doctor", "--home", str(tmp_path), "--fix", "--json")
    findings = json.loads(got.stdout)["findings"]
    assert any(f["check"] == "torn-tail" and f["status"] == "fail" for f in findings)
    assert got.returncode == 1 and path.read_bytes() == before


def test_an_unknown_tool_fails_the_doctor_and_the_gateway_alike_naming_file_key_and_line_doctor_i2(
    tmp_path,
):
    """Invariant DOCTOR-I2: before, doctor said ok and the gateway refused without a line."""
    config = tmp_path / "fencepost.toml"
    config.write_text('[agents.ops]\nmodel = "scripted/fast"\ntools = ["current_time", "shell"]\n')
    doc = procs.cli("doctor", "--home", str(tmp_path), "--json")
    assert doc.returncode == 1, doc.stdout
    [finding] = [f for f in json.loads(doc.stdout)["findings"] if f["check"] == "config"]
    assert finding["status"] == "fail"
    for part in (str(config), "unknown tool 'shell'", "agents.ops.tools", "line 3"):
        assert part in finding["detail"], finding
    gw = procs.cli("gateway", "--home", str(tmp_path), "--port", "0")
    assert gw.returncode != 0
    stderr = gw.stderr.decode()
    for part in (str(config), "unknown tool 'shell'", "agents.ops.tools", "line 3"):
        assert part in stderr, stderr


def test_a_job_whose_agent_the_config_lacks_is_a_warning_with_the_fix_doctor_i3(tmp_path):
    """Invariant DOCTOR-I3: the job fails every run; doctor says which and how to fix it."""
    from datetime import UTC, datetime

    from fencepost.runtime.cron import CronStore, EverySchedule, Payload, new_job

    (tmp_path / "fencepost.toml").write_text('[agents.ops]\nmodel = "scripted/fast"\n')
    now = datetime.now(UTC)
    with CronStore(tmp_path / "cron.db") as store:
        for name, agent in (("report", "gone"), ("fine", "ops")):
            job = new_job(
                name=name,
                agent=agent,
                schedule=EverySchedule(3600, anchor=now),
                payload=Payload("agent_turn", "status?"),
                now=now,
            )
            store.add_job(job, next_run_at=now)
            if agent == "gone":
                short = job.job_id[:8]
    doc = procs.cli("doctor", "--home", str(tmp_path), "--json")
    assert doc.returncode == 0, doc.stdout  # a warning, not a failure
    report = json.loads(doc.stdout)
    assert report["status"] == "warn"
    [jobs] = [f for f in report["findings"] if f["check"] == "jobs"]
    assert jobs["status"] == "warn" and jobs["subject"] == f"report ({short})"
    assert "runs agent 'gone', which the config lacks (configured: ops)" in jobs["detail"]
    assert f"fencepost cron edit {short} --agent NAME" in jobs["detail"]
    assert f"fencepost cron disable {short}" in jobs["detail"]

    (tmp_path / "fencepost.toml").write_text(
        '[agents.ops]\nmodel = "scripted/fast"\n[agents.gone]\nmodel = "scripted/fast"\n'
    )
    again = json.loads(procs.cli("doctor", "--home", str(tmp_path), "--json").stdout)
    [jobs] = [f for f in again["findings"] if f["check"] == "jobs"]
    assert jobs["status"] == "ok"
