"""The CLI and a running gateway: one client (Invariants CLI-I3, CLI-I4, CLI-I5), and a second
gateway told who holds the directory (CLI-I6).

Each test runs a real ``fencepost gateway`` process on a free loopback port and the CLI
in-process against it, with and without an API token.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

import pytest

from fencepost.runtime.config import StatePaths
from fencepost.surface.cli._client import GatewayClient
from tests.helpers import procs
from tests.helpers.cli import invoke, running_gateway

pytestmark = [pytest.mark.processes]

TOKEN = "cli-client-token-0123456789abcdef"
TOKEN_ENV = "FP_CLI_TEST_TOKEN"


def configured(home: Path, server: str = "") -> str:
    """A home with one fast agent and one job; returns the job id."""
    home.mkdir(exist_ok=True)
    (home / "fencepost.toml").write_text(f'[agents.ops]\nmodel = "scripted/fast"\n{server}')
    add = ["add", "--json", "--name", "hourly", "--agent", "ops", "--every", "1h"]
    made = invoke(["cron", *add, "--message", "status?"], home)
    assert made.code == 0, made
    return str(json.loads(made.stdout)["job_id"])


def ledger(home: Path) -> list[dict]:
    out = invoke(["cron", "runs", "--json"], home)
    assert out.code == 0, out
    rows: list[dict] = json.loads(out.stdout)
    return rows


def test_the_client_sends_json_the_fencepost_header_and_the_token_when_there_is_one():
    """Invariant CLI-I3 (what the API's guard asks for: HTTP-I1, HTTP-I6)."""
    bare = GatewayClient("http://127.0.0.1:1", token=None, token_env=None).headers()
    assert bare["Content-Type"] == "application/json" and bare["X-Fencepost"] == "1"
    assert "Authorization" not in bare
    signed = GatewayClient("http://127.0.0.1:1", token=TOKEN, token_env=TOKEN_ENV).headers()
    assert signed["Authorization"] == f"Bearer {TOKEN}"


def test_cron_run_goes_through_a_running_gateway_without_a_token(tmp_path):
    """Invariants CLI-I3, CLI-I4: was `403 cross_site` for every run while a gateway ran."""
    job = configured(tmp_path)
    with running_gateway(tmp_path) as served:
        assert GatewayClient.find(StatePaths(tmp_path)) is not None
        waited = invoke(["cron", "run", job], tmp_path)
        waited.check("cron run via the gateway")
        assert waited.code == 0, waited
        assert f"on the gateway at {served.url}" in waited.stderr
        assert "ok: run " in waited.stderr

        as_json = invoke(["cron", "run", job, "--json"], tmp_path)
        assert as_json.code == 0, as_json
        row = json.loads(as_json.stdout)
        assert row["status"] == "ok" and row["job_id"] == job

        started = invoke(["cron", "run", job[:8], "--no-wait"], tmp_path)
        assert started.code == 0, started
        assert "started run " in started.stdout and "(pid " in started.stdout

        missing = invoke(["cron", "run", "feedc0de"], tmp_path)
        missing.check("cron run of a job the gateway does not have")
        assert missing.code == 3 and "has no such job" in missing.stderr

        malformed = invoke(["cron", "run", "x"], tmp_path)
        malformed.check("cron run of a malformed id")
        assert malformed.code == 2 and "invalid job id" in malformed.stderr
    assert served.returncode == 0 and "Traceback" not in served.stderr
    assert len(ledger(tmp_path)) >= 2


def test_cron_run_sends_the_token_server_token_env_names_and_says_when_it_is_missing(tmp_path):
    """Invariants CLI-I3, CLI-I4: with a token the run goes through; without it, the error
    names the variable to export."""
    job = configured(tmp_path, f'\n[server]\ntoken_env = "{TOKEN_ENV}"\n')
    with running_gateway(tmp_path, env={TOKEN_ENV: TOKEN}) as served:
        ok = invoke(["cron", "run", job, "--json"], tmp_path, env={TOKEN_ENV: TOKEN})
        assert ok.code == 0, ok
        assert json.loads(ok.stdout)["status"] == "ok"

        unset = invoke(["cron", "run", job], tmp_path, env={TOKEN_ENV: None})
        unset.check("cron run without the token")
        assert unset.code == 1
        assert "401 unauthorized" in unset.stderr
        assert f"this shell has no ${TOKEN_ENV}" in unset.stderr

        wrong = invoke(["cron", "run", job], tmp_path, env={TOKEN_ENV: "not-the-token"})
        wrong.check("cron run with a wrong token")
        assert wrong.code == 1 and f"${TOKEN_ENV} in this shell is not" in wrong.stderr
    assert served.returncode == 0 and "Traceback" not in served.stderr
    assert [r["status"] for r in ledger(tmp_path)] == ["ok"], "refused requests start no run"


def test_a_gateway_that_holds_the_home_but_does_not_answer_is_named_with_its_url(tmp_path):
    """Invariant CLI-I4: no answer is an error naming the URL, not a traceback."""
    job = configured(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    fd = os.open(tmp_path / "gateway.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, json.dumps({"pid": 4242, "since": "then"}).encode())
        (tmp_path / "gateway.url").write_text(f"http://127.0.0.1:{port}/\n")
        out = invoke(["cron", "run", job], tmp_path)
    finally:
        os.close(fd)
    out.check("cron run with a silent gateway")
    assert out.code == 1
    assert f"the gateway (pid 4242) at http://127.0.0.1:{port}/ did not answer" in out.stderr


def test_cron_run_no_wait_without_a_gateway_says_it_needs_one(tmp_path):
    """Invariant CLI-I5: --no-wait is never silently ignored."""
    job = configured(tmp_path)
    out = invoke(["cron", "run", job, "--no-wait"], tmp_path)
    out.check("cron run --no-wait")
    assert out.code == 2
    assert "--no-wait needs a running gateway" in out.stderr
    assert "fencepost gateway" in out.stderr
    assert ledger(tmp_path) == [], "a refused --no-wait starts no run"


@pytest.mark.parametrize("command", ["gateway", "demo"])
def test_a_second_gateway_on_the_same_directory_names_the_holder_before_the_port(tmp_path, command):
    """Invariant CLI-I6: it used to say "cannot listen on 127.0.0.1:PORT" first."""
    job = configured(tmp_path)
    with running_gateway(tmp_path) as served:
        port = served.url.rstrip("/").rsplit(":", 1)[1]
        second = procs.cli(command, "--home", str(tmp_path), "--port", port, timeout=30)
        err = second.stderr.decode()
        assert second.returncode == 1, err
        assert f"another gateway (pid {served.proc.pid} since " in err
        assert f"at {served.url}" in err and "stop it first" in err
        assert "cannot listen" not in err and "Traceback" not in err
        listed = invoke(["cron", "list", "--json"], tmp_path)
        assert [j["job_id"] for j in json.loads(listed.stdout)] == [job], "no demo jobs added"
    assert served.returncode == 0
