"""Config reload against a real ``fencepost gateway`` process: SIGHUP, ``fencepost reload`` (with
and without a token), and ``cron add`` for an agent the running gateway does not have yet
(docs/design/gateway.md, "Reloading the config"; GATEWAY-I8, GATEWAY-I9)."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fencepost.surface.cli._client import GatewayClient
from tests.helpers.cli import invoke, running_gateway

pytestmark = [pytest.mark.processes]

OPS = '[plugins]\nenabled = []\n[agents.ops]\nmodel = "scripted/fast"\n'
NEW = '[agents.new]\nmodel = "scripted/fast"\n'
TOKEN = "reload-test-token-0123456789abcdef"
TOKEN_ENV = "FP_RELOAD_TEST_TOKEN"


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def agents(home: Path) -> list[str]:
    """The running gateway's agents (found by its URL: the config file may be invalid)."""
    url = (home / "gateway.url").read_text().strip()
    client = GatewayClient(url, token=None, token_env=None)
    found: list[str] = client.request("GET", "api/health")["agents"]
    return found


def logged(home: Path, text: str) -> bool:
    log = home / "logs" / "gateway.jsonl"
    return log.exists() and text in log.read_text()


def add_job(home: Path, agent: str, env: dict[str, str] | None = None):
    argv = ["cron", "add", "--name", f"for {agent}", "--agent", agent, "--every", "1h"]
    return invoke([*argv, "--message", "status?"], home, env)


def test_sighup_applies_a_new_agent_and_a_bad_config_keeps_the_old_one(tmp_path):
    """Invariant GATEWAY-I8, through the signal an operator sends."""
    config = tmp_path / "fencepost.toml"
    config.write_text(OPS)
    with running_gateway(tmp_path) as served:
        assert agents(tmp_path) == ["ops"]
        config.write_text(OPS + NEW)
        served.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: agents(tmp_path) == ["new", "ops"], "the new agent")

        config.write_text(OPS + NEW + 'tools = ["no_such_tool"]\n')
        served.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: logged(tmp_path, "config reload refused"), "the refusal")
        assert served.proc.poll() is None  # still serving
        assert agents(tmp_path) == ["new", "ops"]
    assert served.returncode == 0
    assert "SIGHUP: reloaded" in served.stderr and "agents added: new" in served.stderr
    refused = next(ln for ln in served.stderr.splitlines() if "config refused" in ln)
    assert str(config) in refused and "(key 'agents.new.tools', line 7)" in refused


def test_fencepost_reload_says_what_changed_what_needs_a_restart_and_why_it_refused(tmp_path):
    """Invariants GATEWAY-I8, GATEWAY-I9: `fencepost reload` against a real gateway."""
    nobody = invoke(["reload"], tmp_path / "empty")
    nobody.check("reload with no gateway")
    assert nobody.code == 1 and "no gateway runs on" in nobody.stderr

    config = tmp_path / "fencepost.toml"
    config.write_text(OPS)
    with running_gateway(tmp_path):
        same = invoke(["reload"], tmp_path)
        assert same.code == 0, same
        assert "nothing changed" in same.stdout

        # The file has the agent, the running gateway not yet: refused, not a job that fails.
        config.write_text(OPS + NEW)
        early = add_job(tmp_path, "new")
        early.check("cron add before the reload")
        assert early.code == 2 and "run `fencepost reload` first" in early.stderr

        config.write_text(OPS + NEW + "[server]\nport = 1\n")
        done = invoke(["reload"], tmp_path)
        done.check("reload")
        assert done.code == 0, done
        assert "agents added: new" in done.stdout
        assert "needs a restart (not applied): server.port" in done.stdout
        assert add_job(tmp_path, "new").code == 0

        config.write_text(OPS + NEW + 'tools = ["no_such_tool"]\n')
        bad = invoke(["reload", "--json"], tmp_path)
        bad.check("reload of a config the gateway refuses")
        assert bad.code == 2
        assert "refused the config and keeps the old one" in bad.stderr
        assert str(config) in bad.stderr and "'agents.new.tools', line 7" in bad.stderr

        config.write_text(OPS + '[cron]\nmax_concurrent_runs = "many"\n')
        unread = invoke(["reload"], tmp_path)
        unread.check("reload of a config the CLI cannot read")
        assert unread.code == 2 and "keeps its old config" in unread.stderr
        assert (
            str(config) in unread.stderr and "'cron.max_concurrent_runs', line 6" in unread.stderr
        )
        assert agents(tmp_path) == ["new", "ops"]

        config.write_text(OPS)
        as_json = invoke(["reload", "--json"], tmp_path)
        assert as_json.code == 0, as_json
        assert json.loads(as_json.stdout)["agents_removed"] == ["new"]


def test_fencepost_reload_sends_the_token_the_gateway_asks_for(tmp_path):
    """Invariant CLI-I3 for reload: with server.token_env, the CLI sends the token."""
    config = tmp_path / "fencepost.toml"
    server = f'[server]\ntoken_env = "{TOKEN_ENV}"\n'
    config.write_text(OPS + server)
    env = {TOKEN_ENV: TOKEN}
    with running_gateway(tmp_path, env=env):
        config.write_text(OPS + NEW + server)
        without = invoke(["reload"], tmp_path, {TOKEN_ENV: None})
        without.check("reload without the token")
        assert without.code == 1 and "401" in without.stderr
        done = invoke(["reload"], tmp_path, env)
        assert done.code == 0 and "agents added: new" in done.stdout, done
        assert add_job(tmp_path, "new", env).code == 0
