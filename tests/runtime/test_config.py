"""The config file: strict validation, errors naming key and line."""

from __future__ import annotations

import pytest

from fencepost import ConfigError
from fencepost.runtime.config import STARTER_CONFIG, load_config


def write(tmp_path, text):
    p = tmp_path / "fencepost.toml"
    p.write_text(text)
    return p


def test_the_starter_config_loads(tmp_path):
    cfg = load_config(write(tmp_path, STARTER_CONFIG))
    assert cfg.agents["ops"].model == "scripted/fast"
    assert cfg.server.host == "127.0.0.1"
    assert cfg.limits.max_open_sessions == 128


@pytest.mark.parametrize(
    ("text", "key", "line", "says"),
    [
        (
            '[agents.a]\nmodel = "scripted/fast"\nmax_stepz = 3\n',
            "agents.a.max_stepz",
            3,
            "unknown key",
        ),
        ('[agents.a]\nmodel = "nowhere/x"\n', "agents.a.model", 2, "unknown provider 'nowhere'"),
        ('[agents.a]\nmodel = "no-slash"\n', "agents.a.model", 2, "not 'provider/model'"),
        ('[agents.a]\nmodel = "scripted/nope"\n', "agents.a.model", 2, "no script named 'nope'"),
        ("[scripts.s]\nsteps = []\n", "scripts.s", 1, "non-empty list of steps"),
        ("[agents.a]\ntools = []\n", "agents.a", 1, "needs a model"),
        (
            '[providers.o]\napi = "openai"\napi_key = "sk-123"\n',
            "providers.o.api_key",
            3,
            "secrets",
        ),
        ('[providers.o]\napi = "grpc"\n', "providers.o.api", 2, "unknown api"),
        ('[server]\nhost = "0.0.0.0"\n', "server.host", 2, "bearer token"),
        ('[server]\nport = "80"\n', "server.port", 2, "must be int"),
        ("[cron]\n\nmax_concurrent_runs = 0\n", "cron.max_concurrent_runs", 3, "at least 1"),
        ('durability = "sometimes"\n', "durability", 1, "fsync"),
        ("[limits]\nmax_open_sessions = 0\n", "limits.max_open_sessions", 2, "at least 1"),
        ("[limits]\nwarn_descriptors_ratio = 1.5\n", "limits.warn_descriptors_ratio", 2, "share"),
        ("[limits]\nmax_open_files = 9\n", "limits.max_open_files", 2, "unknown key"),
        # Invariant HTTP-I9: numbers that would overflow a timer or a date are refused when read
        ("[cron]\ntimeout_s = inf\n", "cron.timeout_s", 2, "from 0 to"),
        ("[cron]\ncatch_up_grace_s = nan\n", "cron.catch_up_grace_s", 2, "from 0 to"),
        (
            '[agents.a]\nmodel = "scripted/fast"\n[agents.a.heartbeat]\nevery_s = 1e308\n',
            "agents.a.heartbeat.every_s",
            4,
            "from 0 to",
        ),
        ("[retention]\narchive_after_days = 1e12\n", "retention.archive_after_days", 2, "36600"),
        ("[server]\nmax_body_bytes = 10\n", "server.max_body_bytes", 2, "between 1024"),
        ('[approvals]\nunattended = "ask"\n', "approvals.unattended", 2, '"deny" or "wait"'),
        ("[approvals]\ntimeout_s = 0\n", "approvals.timeout_s", 2, "from 1 to 600"),
        ("[approvals]\nunattended_timeout_s = 1e9\n", "approvals.unattended_timeout_s", 2, "600"),
        ("[approvals]\nmax_pending = 0\n", "approvals.max_pending", 2, "from 1 to 100000"),
        # Invariant DOCTOR-I2: an unknown plugin is refused when the file is read
        ('[plugins]\nenabled = ["memory", "memroy"]\n', "plugins.enabled", 2, "'memroy'"),
    ],
)
def test_a_bad_config_names_the_key_and_line(tmp_path, text, key, line, says):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    msg = str(info.value)
    assert f"key {key!r}, line {line}" in msg and says in msg, msg


def test_invalid_toml_and_missing_files_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[agents\n"))
    with pytest.raises(ConfigError, match="fencepost init"):
        load_config(tmp_path / "missing.toml")


def test_the_context_window_comes_with_the_model_and_compaction_with_the_agent(tmp_path):
    from fencepost.runtime.agent import DEFAULT_CONTEXT_WINDOW, ToolRegistry
    from fencepost.runtime.config import StatePaths, agent_spec

    cfg = load_config(
        write(
            tmp_path,
            '[models."scripted/fast"]\ncontext_window = 32000\n'
            '[agents.a]\nmodel = "scripted/fast"\n'
            "[agents.a.compaction]\nreserve_tokens = 4000\nkeep_recent_tokens = 8000\n"
            '[agents.b]\nmodel = "scripted/slow"\n',
        )
    )
    paths = StatePaths(tmp_path)
    a = agent_spec(cfg.agents["a"], ToolRegistry(), paths, context_windows=cfg.context_windows)
    b = agent_spec(cfg.agents["b"], ToolRegistry(), paths, context_windows=cfg.context_windows)
    assert (a.compaction.context_window, a.compaction.threshold_tokens) == (32000, 28000)
    assert a.compaction.keep_recent_tokens == 8000
    assert b.compaction.context_window == DEFAULT_CONTEXT_WINDOW and b.compaction.enabled


def test_a_bad_model_budget_names_its_key(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, '[models."scripted/fast"]\ncontext_windw = 3\n'))
    assert "context_windw" in str(err.value)


def test_approval_waits_come_from_the_policy_and_unattended_turns_deny_by_default(tmp_path):
    """Invariant APPROVAL-I4: how long a request waits is the config's (and a job's) choice:
    interactive turns wait timeout_s; unattended ones deny at once unless told to wait."""
    cfg = load_config(write(tmp_path, STARTER_CONFIG)).approvals
    assert (cfg.timeout_s, cfg.unattended, cfg.max_pending) == (300.0, "deny", 100)
    assert cfg.wait_s(unattended=False) == 300.0
    assert cfg.wait_s(unattended=True) == 0.0
    assert cfg.wait_s(unattended=True, on_ask="wait") == cfg.unattended_timeout_s == 60.0
    waits = load_config(
        write(tmp_path, '[approvals]\nunattended = "wait"\nunattended_timeout_s = 90\n')
    ).approvals
    assert waits.wait_s(unattended=True) == 90.0
    assert waits.wait_s(unattended=True, on_ask="deny") == 0.0
