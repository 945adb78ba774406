"""Config reload: what changed, what waits for a restart (pure, every key), and a running gateway
that applies a checked config without dropping a turn or refuses it and keeps the old one
(docs/design/gateway.md, "Reloading the config")."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest

from fencepost import read_transcript
from fencepost.errors import ConfigError, InvalidJobError
from fencepost.runtime.config import (
    AgentConfig,
    GatewayConfig,
    HeartbeatConfig,
    StatePaths,
    load_config,
)
from fencepost.runtime.cron import EverySchedule, Payload, new_job
from fencepost.runtime.gateway import (
    RESTART_FIELDS,
    Gateway,
    config_changes,
    plan_reload,
)
from fencepost.runtime.mcp import McpServerConfig
from fencepost.runtime.providers import ProviderConfig, ScriptStep

# ---- the pure diff ----------------------------------------------------------------------------


def full_config() -> GatewayConfig:
    """A config with one of everything a key can sit in."""
    return GatewayConfig(
        providers={"local": ProviderConfig(name="local", api="openai", base_url="http://x/v1")},
        agents={"ops": AgentConfig(name="ops", model="scripted/fast")},
        scripts={"quick": (ScriptStep(text="hi"),)},
        context_windows={"local/m": 1000},
        mcp={"git": McpServerConfig(name="git", command="mcp-server-git", env={"A": "b"})},
    )


def _changed(value: Any, name: str) -> Any:
    """A different value of the same kind (dataclasses do not validate their fields here,
    except ProviderConfig's api, hence a real one)."""
    if name == "api":
        return "anthropic"
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "-changed"
    if isinstance(value, tuple):
        return (*value, "extra")
    if value is None:
        return 7.0 if name.endswith("_days") else "set"
    raise AssertionError(f"no change for {name}={value!r}")


def _leaves(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """Every leaf of the config: (path of field names and mapping keys, value)."""
    if dataclasses.is_dataclass(obj):
        out = []
        for f in dataclasses.fields(obj):
            if path == () and f.name in ("path", "demo", "scripts", "context_windows"):
                continue  # not a key / compared whole (scripts, model windows: tested below)
            if f.name == "name" and path:
                continue  # an agent's or provider's name is its table's key
            out += _leaves(getattr(obj, f.name), (*path, f.name))
        return out
    if isinstance(obj, dict):
        return [leaf for k, v in obj.items() for leaf in _leaves(v, (*path, k))]
    return [(path, obj)]


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(obj, dict):
        return {**obj, head: _set(obj[head], rest, value)}
    return dataclasses.replace(obj, **{head: _set(getattr(obj, head), rest, value)})


def _key(path: tuple[Any, ...]) -> str:
    return ".".join(["plugins.enabled" if path[0] == "plugins" else path[0], *map(str, path[1:])])


LEAVES = _leaves(full_config())


def test_the_diff_walks_every_section_of_the_config():
    sections = {path[0] for path, _ in LEAVES}
    names = {f.name for f in dataclasses.fields(GatewayConfig)}
    assert sections == names - {"path", "demo", "scripts", "context_windows"}
    assert len(LEAVES) > 40


@pytest.mark.parametrize("path", [p for p, _ in LEAVES], ids=lambda p: _key(p))
def test_each_changed_key_is_named_and_applied_live_unless_it_needs_a_restart(path):
    """Invariant GATEWAY-I9, for every key: named alone; a restart key keeps its old value in
    the config the gateway runs with, any other takes the new one."""
    old = full_config()
    value = dict(LEAVES)[path]
    new = _set(old, path, _changed(value, str(path[-1])))
    result, effective = plan_reload(old, new)
    key = _key(path)
    assert config_changes(old, new) == (key,)
    restart = tuple(p for p in path if isinstance(p, str)) in RESTART_FIELDS
    if restart:
        assert (result.applied, result.restart_required) == ((), (key,))
        assert effective == old
    else:
        assert (result.applied, result.restart_required) == ((key,), ())
        assert effective == new
    assert result.agents_changed == (("ops",) if path[0] == "agents" else ())


def test_the_restart_keys_are_the_listening_socket_the_store_and_the_plugins():
    keys = sorted(_key(p) for p in RESTART_FIELDS)
    assert keys == [
        "durability",
        "limits.max_open_sessions",
        "plugins.enabled",
        "server.host",
        "server.port",
        "server.token_env",
    ]


def test_tables_that_appear_or_go_are_named_by_their_key():
    old = full_config()
    new = dataclasses.replace(
        old,
        agents={"ops": old.agents["ops"], "new": AgentConfig(name="new", model="scripted/fast")},
        providers={},
        scripts={"quick": (ScriptStep(text="other"),), "more": ()},
        context_windows={"local/m": 2000},
    )
    result, effective = plan_reload(old, new)
    assert result.applied == (
        "providers.local",
        "agents.new",
        "scripts.more",
        "scripts.quick",
        "models.local/m",
    )
    assert (result.agents_added, result.agents_removed, result.agents_changed) == (
        ("new",),
        (),
        (),
    )
    assert effective == new


def test_agents_are_compared_as_the_gateway_runs_them_with_the_default_agent():
    bare = GatewayConfig()
    one = GatewayConfig(agents={"ops": AgentConfig(name="ops", model="scripted/fast")})
    result, _ = plan_reload(bare, one)
    assert (result.agents_added, result.agents_removed) == (("ops",), ("default",))
    assert set(result.applied) == {"agents.ops", "agents.default"}


def test_an_unchanged_config_says_nothing_changed():
    result, effective = plan_reload(full_config(), dataclasses.replace(full_config(), path="x"))
    assert not result.changed and effective.path == "x"
    assert result.describe() == ["reloaded x: nothing changed"]
    assert result.to_json()["changed"] is False


def test_the_description_names_agents_applied_keys_and_what_needs_a_restart():
    old = full_config()
    new = dataclasses.replace(
        old,
        agents={"ops2": AgentConfig(name="ops2", model="scripted/fast")},
        server=dataclasses.replace(old.server, port=9999),
    )
    lines = plan_reload(old, new)[0].describe()
    assert "agents added: ops2" in lines and "agents removed: ops" in lines
    assert any(line.startswith("needs a restart (not applied): server.port") for line in lines)


# ---- a running gateway ------------------------------------------------------------------------

SLOW = 'slow = [{ text = "done thinking", first_token_delay_s = 0.8 }]\n'


def write(home: Path, agents: str, extra: str = "") -> Path:
    path = home / "fencepost.toml"
    path.write_text(
        'durability = "buffered"\n'
        '[plugins]\nenabled = ["model-snapshot", "heartbeat"]\n'
        f"[scripts]\n{SLOW}\n{agents}\n{extra}",
        encoding="utf-8",
    )
    return path


OPS = '[agents.ops]\nmodel = "scripted/slow"\n'
NEW = '[agents.new]\nmodel = "scripted/fast"\n'


@pytest.fixture
async def gw(tmp_path):
    path = write(tmp_path, OPS)
    g = Gateway(StatePaths(tmp_path), load_config(path), load_entry_points=False)
    await g.start()
    yield g
    await g.stop(grace_s=5)


async def test_a_reload_adds_an_agent_while_a_slow_turn_runs_and_the_turn_finishes_ok(gw, tmp_path):
    """Invariants GATEWAY-I8, GATEWAY-I10: the new agent serves at once; the running turn ends
    ok with the registry it started with, which is closed once it ends."""
    written = asyncio.Event()
    slow = asyncio.create_task(gw.turn("s", "ops", prompt="think", prompt_written=written))
    await written.wait()
    old_registry = gw.providers
    write(tmp_path, OPS + NEW, extra='[scripts.extra]\nsteps = [{ text = "x" }]\n')
    result = await gw.reload()
    assert result.agents_added == ("new",) and "scripts.extra" in result.applied
    assert not slow.done()
    assert gw.providers is not old_registry  # scripts changed: a new registry for new turns
    assert gw.statistics().retired_provider_registries == 1  # still used by the slow turn
    fast = await gw.turn("n", "new", prompt="hello")
    assert fast.ok
    done = await slow
    assert done.ok and done.reply == "done thinking"
    assert gw.statistics().retired_provider_registries == 0
    assert old_registry.statistics().built == ()  # closed
    assert gw.statistics().reloads == 1


async def test_a_bad_config_is_refused_with_file_key_and_line_and_the_old_one_stays(gw, tmp_path):
    """Invariant GATEWAY-I8: checked in full (a tool only the gateway knows) before anything
    changes."""
    path = write(tmp_path, OPS + NEW + 'tools = ["current_time", "no_such_tool"]\n')
    with pytest.raises(ConfigError) as caught:
        await gw.reload()
    err = caught.value
    line = path.read_text().splitlines().index('tools = ["current_time", "no_such_tool"]') + 1
    assert err.key == "agents.new.tools" and err.line == line, err
    assert str(path) in str(err)
    assert sorted(gw.agents) == ["ops"] and sorted(gw.specs) == ["ops"]
    assert gw.statistics().reloads_refused == 1
    with pytest.raises(InvalidJobError, match="unknown agent 'new'"):
        gw.job_validator()(_job("new"))
    assert (await gw.turn("s", "ops", prompt="still here")).ok

    path.write_text("[agents.ops\n", encoding="utf-8")  # not TOML at all
    with pytest.raises(ConfigError, match="not valid TOML"):
        await gw.reload()
    assert sorted(gw.agents) == ["ops"]


async def test_a_model_no_provider_serves_is_refused_by_the_same_check_as_start(gw, tmp_path):
    """Invariant GATEWAY-I8: providers.check, as at start (a key from an unset variable)."""
    write(
        tmp_path,
        '[agents.ops]\nmodel = "remote/big"\n',
        extra='[providers.remote]\napi = "openai"\napi_key_env = "FP_NO_SUCH_KEY_VAR"\n',
    )
    with pytest.raises(ConfigError, match="FP_NO_SUCH_KEY_VAR"):
        await gw.reload()
    assert gw.agents["ops"].model == "scripted/slow"
    assert gw.statistics().retired_provider_registries == 0


async def test_restart_keys_are_reported_and_logged_and_keep_their_old_values(gw, tmp_path, caplog):
    """Invariant GATEWAY-I9."""
    write(
        tmp_path,
        OPS,
        extra="[server]\nport = 9911\n[limits]\nmax_open_sessions = 3\nwarn_rss_mb = 99\n",
    )
    with caplog.at_level(logging.WARNING, logger="fencepost.gateway"):
        result = await gw.reload()
    assert result.restart_required == ("server.port", "limits.max_open_sessions")
    assert result.applied == ("limits.warn_rss_mb",)
    assert gw.config.server.port == 8787 and gw.config.limits.max_open_sessions != 3
    assert gw.config.limits.warn_rss_mb == 99
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("server.port, limits.max_open_sessions" in r.getMessage() for r in warned)


async def test_a_reload_starts_and_stops_heartbeat_loops_and_sets_cron_limits(gw, tmp_path):
    def loops() -> dict[str, asyncio.Task]:
        return {
            t.get_name(): t for t in asyncio.all_tasks() if t.get_name().startswith("heartbeats")
        }

    assert loops() == {}
    write(
        tmp_path,
        OPS + "[agents.ops.heartbeat]\nevery_s = 3600\n",
        "[cron]\nmax_concurrent_runs = 9\n",
    )
    result = await gw.reload()
    assert result.applied == ("agents.ops.heartbeat.every_s", "cron.max_concurrent_runs")
    running = loops()
    assert set(running) == {"heartbeats ops"}
    assert gw.scheduler.max_concurrent_runs == 9
    write(tmp_path, OPS)
    await gw.reload()
    await asyncio.wait(running.values())  # cancelled by the reload
    assert running["heartbeats ops"].cancelled() and loops() == {}


async def test_many_reloads_leave_no_provider_registry_behind(gw, tmp_path):
    """Invariant GATEWAY-I10."""
    registries = []
    for i in range(20):
        write(tmp_path, OPS, extra=f'[scripts.v]\nsteps = [{{ text = "{i}" }}]\n')
        await gw.reload()
        registries.append(gw.providers)
    assert len({id(r) for r in registries}) == 20
    assert gw.statistics().retired_provider_registries == 0
    unchanged = gw.providers
    await gw.reload()
    assert gw.providers is unchanged  # nothing changed: the registry stays


async def test_a_turn_queued_before_its_agent_is_removed_still_runs_with_its_config(gw, tmp_path):
    """Invariant GATEWAY-I10: asked for is never dropped."""
    write(tmp_path, OPS + NEW)
    await gw.reload()
    written = asyncio.Event()
    first = asyncio.create_task(gw.turn("shared", "ops", prompt="one", prompt_written=written))
    await written.wait()
    queued = asyncio.create_task(gw.turn("shared", "new", prompt="two"))
    while gw.statistics().queued_turns < 1:
        await asyncio.sleep(0)
    write(tmp_path, OPS)
    result = await gw.reload()
    assert result.agents_removed == ("new",)
    assert (await first).ok and (await queued).ok
    users = [
        r.data["message"]["content"]
        for r in read_transcript(gw.store.session("shared").path).entries
        if r.data.get("message", {}).get("role") == "user"
    ]
    assert len(users) == 2
    with pytest.raises(ConfigError, match="no agent 'new'"):
        await gw.turn("other", "new", prompt="three")


async def test_a_gateway_on_a_config_in_memory_refuses_to_reload_without_one(tmp_path):
    cfg = GatewayConfig(
        agents={"ops": AgentConfig(name="ops", model="scripted/fast")},
        plugins=(),
        durability="buffered",
    )
    async with Gateway(StatePaths(tmp_path), cfg, load_entry_points=False) as g:
        with pytest.raises(ConfigError, match="no file to read again"):
            await g.reload()
        hb = dataclasses.replace(
            cfg.agents["ops"], heartbeat=HeartbeatConfig(every_s=0), system_prompt="new"
        )
        result = await g.reload(dataclasses.replace(cfg, agents={"ops": hb}))
        assert result.agents_changed == ("ops",) and g.specs["ops"].system_prompt == "new"


def _job(agent: str) -> Any:
    from datetime import UTC, datetime

    return new_job(
        name="j",
        agent=agent,
        schedule=EverySchedule(3600, anchor=datetime.now(UTC)),
        payload=Payload("agent_turn", "hi"),
        now=datetime.now(UTC),
    )
