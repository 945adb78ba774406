"""End to end: the real gateway process on a free loopback port with a temp state directory.

Jobs are created over HTTP, run on the scripted model (one slow, with the gateway's own writers
in the window), the ledger and transcripts are read over HTTP, the process is stopped with
SIGTERM, and every session verifies.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fencepost import verify_transcript
from tests.helpers import procs

pytestmark = [pytest.mark.slow, pytest.mark.processes]

CONFIG = """
durability = "buffered"

[agents.ops]
model = "scripted/thinker"
tools = ["current_time"]

[agents.quick]
model = "scripted/fast"

[scripts.thinker]
steps = [{ text = "Overnight: all green.", first_token_delay_s = 0.6 }]

[plugins]
enabled = ["memory", "model-snapshot", "trajectory"]
"""


def call(base: str, method: str, path: str, body: object | None = None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        base + path, data=data, method=method, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def start_gateway(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fencepost", "gateway", "--home", str(home), "--port", "0"],
        env=procs.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    url_file = home / "gateway.url"
    while time.monotonic() < deadline:
        if url_file.exists() and url_file.read_text().strip():
            return proc, url_file.read_text().strip().rstrip("/")
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode())
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the gateway did not come up")


def test_the_gateway_process_runs_jobs_created_over_http_and_stops_cleanly(tmp_path):
    (tmp_path / "fencepost.toml").write_text(CONFIG)
    proc, base = start_gateway(tmp_path)
    try:
        status, health = call(base, "GET", "/api/health")
        assert status == 200 and health["status"] == "ok"

        status, err = call(
            base,
            "POST",
            "/api/jobs",
            {
                "name": "bad",
                "agent": "nobody",
                "schedule": {"kind": "every", "every": "1h"},
                "payload": {"kind": "agent_turn", "text": "x"},
            },
        )
        assert status == 422 and err["error"]["field"] == "agent"

        status, shared = call(
            base,
            "POST",
            "/api/jobs",
            {
                "name": "review",
                "agent": "ops",
                "schedule": {"kind": "every", "every": "1h"},
                "payload": {"kind": "agent_turn", "text": "review the night"},
                "target": "main",
            },
        )
        assert status == 201, shared
        status, isolated = call(
            base,
            "POST",
            "/api/jobs",
            {
                "name": "digest",
                "agent": "quick",
                "schedule": {"kind": "cron", "expr": "0 7 * * *", "tz": "Europe/Berlin"},
                "payload": {"kind": "agent_turn", "text": "digest"},
                "delivery": "session:ops-main",
            },
        )
        assert status == 201, isolated

        rows = {}
        for job in (shared, isolated):
            status, got = call(base, "POST", f"/api/jobs/{job['job_id']}/run?wait=true")
            assert status == 200, got
            row = got.get("run", got)
            rows[job["name"]] = row
        assert rows["review"]["status"] == "ok", rows["review"]
        assert rows["review"]["reply"] == "Overnight: all green."
        assert rows["digest"]["status"] == "ok", rows["digest"]

        status, ledger = call(base, "GET", "/api/runs?limit=10")
        assert status == 200
        items = ledger["runs"] if isinstance(ledger, dict) else ledger
        assert {r["run_id"] for r in items} >= {r["run_id"] for r in rows.values()}

        status, page = call(base, "GET", "/api/sessions/ops-main")
        assert status == 200, page
        writers = {r["writer"] for r in page["records"]}
        assert {"attempt", "model-snapshot", "delivery"} <= writers, writers
        status, report = call(base, "GET", "/api/sessions/ops-main/verify")
        assert status == 200 and report["ok"], report

        status, sent = call(base, "POST", "/api/sessions/ops-main/messages", {"text": "thanks"})
        assert status == 202 and sent["status"] in ("started", "queued", "steered")
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    for path in (tmp_path / "sessions").glob("*.jsonl"):
        assert verify_transcript(path).ok, path
    log = [
        json.loads(line) for line in (tmp_path / "logs" / "gateway.jsonl").read_text().splitlines()
    ]
    turns = [e for e in log if e.get("action") == "turn"]
    assert turns and all("run" in e and "session" in e for e in turns)
    cron_turns = [e for e in turns if e["run"] in {r["run_id"] for r in rows.values()}]
    assert len(cron_turns) == 2 and all(e.get("job") for e in cron_turns)


def test_a_busy_port_is_a_clear_error_not_a_traceback(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        got = procs.cli("gateway", "--home", str(tmp_path), "--port", str(port), timeout=30)
    assert got.returncode == 2
    assert b"cannot listen on 127.0.0.1:" in got.stderr and b"Traceback" not in got.stderr
    assert not (tmp_path / "gateway.url").exists()


def test_doctor_and_health_report_the_running_gateways_watermarks(tmp_path):
    """Invariant GATEWAY-I5: one judgement, from the gateway's own process and from outside."""
    (tmp_path / "fencepost.toml").write_text(
        '[agents.ops]\nmodel = "scripted/fast"\n\n'
        "[limits]\nmax_open_sessions = 16\nwarn_rss_mb = 1\nwarn_state_dir_mb = 10000\n"
    )
    proc, base = start_gateway(tmp_path)
    try:
        status, health = call(base, "GET", "/api/health")
        assert status == 200
        res = health["resources"]
        assert res["process"]["pid"] == proc.pid
        assert res["process"]["open_descriptors"] > 0
        assert [w["check"] for w in res["warnings"]] == ["memory"]  # RSS is past 1 MB
        assert health["store"]["max_open_sessions"] == 16
        doc = procs.cli("doctor", "--home", str(tmp_path), "--json")
        findings = {f["check"]: f for f in json.loads(doc.stdout)["findings"]}
        assert findings["memory"]["status"] == "warn"
        assert findings["memory"]["subject"] == f"gateway pid {proc.pid}"
        assert findings["descriptors"]["status"] == "ok"
        assert findings["disk"]["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
