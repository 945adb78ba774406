"""A SIGKILLed gateway leaves no running child behind once it starts again (docs/design/exec.md
CHILD-I3), and ``doctor`` reports and ends (``--fix``) what it can prove is a dead gateway's.

A real ``fencepost gateway`` process runs a turn on the scripted model whose tool call is an
``exec`` of a shell with a grandchild; the gateway is SIGKILLed while the command runs.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fencepost.runtime.children import proc_stat, read_records
from tests.helpers import procs
from tests.surface.test_e2e_gateway import call, start_gateway

pytestmark = [pytest.mark.slow, pytest.mark.processes]

FAMILY = "sleep 1000 & echo $! > grandchild.pid; echo $$ > child.pid; wait"

CONFIG = f"""
durability = "buffered"

[agents.ops]
model = "scripted/sleeper"
tools = ["exec"]

[agents.ops.exec]
policy = "allow"
allow = ["sh"]
timeout_s = 600

[scripts.sleeper]
steps = [
  {{ tool_calls = [{{ name = "exec", arguments = {{ argv = ["sh", "-c", "{FAMILY}"] }} }}] }},
  "done",
]

[plugins]
enabled = ["model-snapshot"]
"""


def alive(pid: int) -> bool:
    st = proc_stat(pid)
    return st is not None and st.alive


def wait_for_pid(path: Path, within_s: float = 30.0) -> int:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.02)
    raise AssertionError(f"{path} was not written")


def killed_mid_command(home: Path) -> tuple[int, int]:
    """Start a gateway on ``home``, let its turn start the command, SIGKILL the gateway;
    (child pid, grandchild pid), both still running."""
    (home / "fencepost.toml").write_text(CONFIG)
    proc, base = start_gateway(home)
    try:
        status, sent = call(base, "POST", "/api/sessions/ops-main/messages", {"text": "go"})
        assert status == 202, sent
        ws = home / "workspaces" / "ops"
        grandchild = wait_for_pid(ws / "grandchild.pid")
        child = wait_for_pid(ws / "child.pid")
        [(_, record, _)] = read_records(home / "run" / "children")
        assert record is not None and (record.pid, record.owner_pid) == (child, proc.pid)
        assert record.argv == ("/usr/bin/sh", "-c", FAMILY) or record.argv[1:] == ("-c", FAMILY)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert alive(child) and alive(grandchild), "a SIGKILLed gateway leaves its command running"
    return child, grandchild


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()


def doctor(home: Path, *args: str) -> list[dict]:
    got = procs.cli("doctor", "--home", str(home), "--json", *args)
    return [f for f in json.loads(got.stdout)["findings"] if f["check"] == "children"]


def test_a_restarted_gateway_ends_the_commands_a_sigkilled_one_left_running_child_i3(tmp_path):
    """Invariant CHILD-I3 (and CHILD-I2: the group, grandchild included)."""
    child, grandchild = killed_mid_command(tmp_path)
    [finding] = doctor(tmp_path)
    assert finding["status"] == "warn" and finding["subject"] == f"pid {child}"
    assert "run with --fix" in finding["detail"] and alive(grandchild)
    (tmp_path / "gateway.url").unlink()  # the dead gateway's: wait for the new one's
    proc, _ = start_gateway(tmp_path)
    try:
        assert not alive(child) and not alive(grandchild)
        assert read_records(tmp_path / "run" / "children") == []
    finally:
        stop(proc)
    log = [json.loads(x) for x in (tmp_path / "logs" / "gateway.jsonl").read_text().splitlines()]
    reaped = [e for e in log if e.get("action") == "reap"]
    assert len(reaped) == 1 and f"killed: exec pid {child}" in reaped[0]["msg"]
    [after] = doctor(tmp_path)
    assert after["status"] == "ok" and "no orphaned child processes" in after["detail"]


def test_doctor_fix_ends_what_a_sigkilled_gateway_left_running_child_i2(tmp_path):
    """Invariant CHILD-I2, through ``doctor --fix``."""
    child, grandchild = killed_mid_command(tmp_path)
    [finding] = doctor(tmp_path, "--fix")
    assert finding["status"] == "fixed" and finding["subject"] == f"pid {child}"
    assert not alive(child) and not alive(grandchild)
    assert read_records(tmp_path / "run" / "children") == []
