"""The README's first command, for real: the gateway in demo mode as a process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from fencepost import read_transcript, verify_transcript
from fencepost.runtime.cron import CronStore
from tests.helpers import procs

pytestmark = [pytest.mark.slow, pytest.mark.processes]


def test_the_demo_gateway_runs_slow_model_jobs_while_its_own_writers_write(tmp_path):
    """Invariant LEASE-I6 end to end: no takeover, ever, from the gateway's own writers."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fencepost",
            "demo",
            "--home",
            str(tmp_path),
            "--port",
            "0",
            "--slow",
            "0.5",
        ],
        env=procs.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        statuses: list[str] = []
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if not (tmp_path / "cron.db").exists():
                continue
            store = CronStore(tmp_path / "cron.db", create=False)
            try:
                statuses = [r.status for r in store.runs(limit=100) if r.status != "running"]
            finally:
                store.close()
            if len(statuses) >= 3:
                break
        assert statuses and set(statuses) == {"ok"}, statuses
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert b"dashboard: http://127.0.0.1:" in err
    sessions = sorted((tmp_path / "sessions").glob("*.jsonl"))
    assert sessions
    writers = set()
    for path in sessions:
        assert verify_transcript(path).ok, path
        writers |= {r.stamp["writer"] for r in read_transcript(str(path)).entries}
    assert {"attempt", "model-snapshot", "delivery"} <= writers
