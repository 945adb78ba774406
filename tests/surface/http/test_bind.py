"""Nothing listens beyond loopback without a token, whichever way the address is given (HTTP-I8).

Each way of binding is tried against a real ``fencepost gateway`` process: the ``--host`` flag, the
``FENCEPOST_HOST`` environment variable and the config file, with no token, with a token variable
that is unset or empty, and with a real token.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from fencepost import ConfigError
from fencepost.surface.http import check_bind, resolve_token
from tests.helpers import procs

pytestmark = [pytest.mark.processes]

TOKEN = "bind-test-token-0123456789"


def gateway(home, *args, env=None, timeout=30):
    """Run ``fencepost gateway`` and return (exit code, stderr) if it exits, else the process."""
    e = procs.env()
    e.pop("FENCEPOST_HOST", None)
    e.pop("FP_TOKEN", None)
    e.update(env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "fencepost", "gateway", "--home", str(home), "--port", "0", *args],
        env=e,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url_file = home / "gateway.url"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _out, err = proc.communicate()
            return proc.returncode, err.decode()
        if url_file.exists() and url_file.read_text().strip():
            return proc, url_file.read_text().strip().rstrip("/")
        time.sleep(0.05)
    proc.kill()
    proc.communicate()
    raise AssertionError("the gateway neither started nor exited")


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def config(home, server):
    (home / "fencepost.toml").write_text(
        f'[agents.ops]\nmodel = "scripted/fast"\n\n[server]\n{server}\n'
    )


@pytest.mark.parametrize(
    ("how", "setting"),
    [
        ("flag", "--host"),
        ("environment", "FENCEPOST_HOST"),
    ],
)
def test_a_wildcard_address_without_a_token_is_refused_at_start_naming_the_setting(
    tmp_path, how, setting
):
    """Invariant HTTP-I8."""
    config(tmp_path, 'host = "127.0.0.1"')
    if how == "flag":
        code, err = gateway(tmp_path, "--host", "0.0.0.0")
    else:
        code, err = gateway(tmp_path, env={"FENCEPOST_HOST": "0.0.0.0"})
    assert code == 2, err
    assert f"{setting} binds 0.0.0.0, beyond loopback, but no API token" in err
    assert "Traceback" not in err
    assert not (tmp_path / "gateway.url").exists()  # it never listened


@pytest.mark.parametrize(("value", "state"), [(None, "is not set"), ("  ", "is empty")])
def test_a_token_variable_that_is_unset_or_empty_is_refused_at_start(tmp_path, value, state):
    """Invariant HTTP-I8: the config asked for a token; serving without one is never the answer."""
    config(tmp_path, 'host = "0.0.0.0"\ntoken_env = "FP_TOKEN"')
    code, err = gateway(tmp_path, env={} if value is None else {"FP_TOKEN": value})
    assert code == 2, err
    assert f"FP_TOKEN, which {state}" in err and "'server.token_env'" in err
    assert not (tmp_path / "gateway.url").exists()


@pytest.mark.parametrize("how", ["config", "flag"])
def test_with_a_token_the_wildcard_address_serves_only_requests_that_carry_it(tmp_path, how):
    """Invariant HTTP-I8 (and HTTP-I1 over a real socket): API, dashboard, static files and the
    event stream all need the token; a malformed credential is a 401, never a 500."""
    if how == "config":
        config(tmp_path, 'host = "0.0.0.0"\ntoken_env = "FP_TOKEN"')
        started = gateway(tmp_path, env={"FP_TOKEN": TOKEN})
    else:
        config(tmp_path, 'token_env = "FP_TOKEN"')
        started = gateway(tmp_path, "--host", "0.0.0.0", env={"FP_TOKEN": TOKEN})
    proc, url = started
    assert isinstance(proc, subprocess.Popen), url
    base = url.replace("0.0.0.0", "127.0.0.1")
    try:
        for path in ("/api/health", "/", "/runs", "/static/dashboard.css", "/api/events"):
            status, _ = get(base + path)
            assert status == 401, path
        bad = [
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Bearer t\u00f6ken".encode().decode("latin-1")},
            {"Cookie": "fencepost_session=\u00e9\u00e9".encode().decode("latin-1")},
            {"Authorization": "Basic " + "x" * 5000},
        ]
        for headers in bad:
            status, body = get(base + "/api/health", headers)
            assert status == 401, (headers, body)
            assert json.loads(body)["error"]["code"] == "unauthorized"
        status, body = get(base + "/api/health", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and json.loads(body)["status"] == "ok"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1"])
def test_loopback_addresses_need_no_token(address):
    """Invariant HTTP-I8."""
    check_bind(address, token=None, setting="--host")


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "192.0.2.7", "fe80::1"])
def test_any_other_address_needs_a_token(address):
    """Invariant HTTP-I8."""
    with pytest.raises(ConfigError, match="beyond loopback"):
        check_bind(address, token=None, setting="server.host")
    check_bind(address, token=TOKEN, setting="server.host")


def test_the_token_is_read_from_the_named_variable_only():
    assert resolve_token(None, {"FP_TOKEN": TOKEN}) is None
    assert resolve_token("FP_TOKEN", {"FP_TOKEN": TOKEN}) == TOKEN
    with pytest.raises(ConfigError, match="is not set"):
        resolve_token("FP_TOKEN", {})
