"""``[mcp.<name>]`` tables, agents' MCP tool names, and the names the model sees."""

from __future__ import annotations

import re
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fencepost import ConfigError
from fencepost.runtime.agent import ToolRegistry
from fencepost.runtime.config import StatePaths, agent_spec, mcp_selection, parse_config
from fencepost.runtime.mcp import McpManager, McpServerConfig, wire_name, wire_names

WIRE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

TWO_SERVERS = """
[mcp.time]
command = "mcp-server-time"

[mcp.git]
command = "mcp-server-git"
args = ["--repository", "/srv/repo"]
env = { GIT_PAGER = "cat" }
env_from = { GITHUB_TOKEN = "OPS_GITHUB_TOKEN" }
timeout_s = 5
idle_stop_s = 0

[mcp.web]
url = "https://mcp.example.com/mcp"
headers_from = { Authorization = "OPS_WEB_AUTH" }
prefix = "w-"
enabled = false

[agents.ops]
model = "scripted/fast"
tools = ["current_time", "time.get_current_time", "git.*", "git.git_log", "web.search"]
"""


def parse(text: str):
    return parse_config(tomllib.loads(text), source=text)


def refused(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as exc:
        parse(text)
    return exc.value


def test_mcp_tables_parse_into_server_configs():
    cfg = parse(TWO_SERVERS)
    assert set(cfg.mcp) == {"time", "git", "web"}
    git = cfg.mcp["git"]
    assert (git.transport, git.args, git.timeout_s, git.idle_stop_s) == (
        "stdio",
        ("--repository", "/srv/repo"),
        5.0,
        0.0,
    )
    assert git.env == {"GIT_PAGER": "cat"} and git.env_from == {"GITHUB_TOKEN": "OPS_GITHUB_TOKEN"}
    assert git.target == "mcp-server-git --repository /srv/repo"
    web = cfg.mcp["web"]
    assert (web.transport, web.enabled, web.tool_prefix) == ("http", False, "w-")
    assert web.wire_name("search") == "w-search"
    assert cfg.mcp["time"].tool_prefix == "time."


def test_agent_tools_route_to_the_mcp_server_named_before_the_dot_mcp_i1(tmp_path):
    """Invariant MCP-I1."""
    cfg = parse(TWO_SERVERS)
    plain, chosen = mcp_selection(cfg.agents["ops"].tools, cfg.mcp, ToolRegistry())
    assert plain == ["current_time"]
    assert chosen == {"time": ("get_current_time",), "git": None, "web": ("search",)}
    manager = McpManager(cfg.mcp)
    spec = agent_spec(cfg.agents["ops"], ToolRegistry(), StatePaths(tmp_path), mcp=manager)
    assert list(spec.tools) == ["current_time"]
    assert [(s.server, s.select) for s in spec.tool_sources] == [  # type: ignore[attr-defined]
        ("time", frozenset({"get_current_time"})),
        ("git", None),
        ("web", frozenset({"search"})),
    ]
    # A registered tool whose name has a dot stays the registry's.
    from fencepost.runtime.agent import Tool

    async def run(args, ctx):
        return "x"

    registry = ToolRegistry([Tool("notes.search", "plugin tool", run)])
    plain, chosen = mcp_selection(["notes.search"], {}, registry)
    assert (plain, chosen) == (["notes.search"], {})


def test_an_unknown_mcp_server_in_an_agents_tools_is_refused_naming_the_key_mcp_i1(tmp_path):
    """Invariant MCP-I1."""
    cfg = parse(TWO_SERVERS.replace('"git.git_log"', '"gti.git_log"'))
    with pytest.raises(ConfigError) as exc:
        agent_spec(cfg.agents["ops"], ToolRegistry(), StatePaths(tmp_path), mcp=McpManager(cfg.mcp))
    assert exc.value.key == "agents.ops.tools"
    assert "unknown MCP server 'gti'" in str(exc.value) and "git, time, web" in str(exc.value)
    with pytest.raises(ConfigError, match=r"names no tool: use time.<tool> or time.\*"):
        mcp_selection(["time."], cfg.mcp, ToolRegistry(), where="agents.ops.tools")
    good = parse(TWO_SERVERS)
    with pytest.raises(ConfigError, match="need the gateway's MCP manager"):
        agent_spec(good.agents["ops"], ToolRegistry(), StatePaths(tmp_path), mcp_servers=good.mcp)


@pytest.mark.parametrize(
    ("table", "key", "words"),
    [
        ('command = "a"\nurl = "http://h/mcp"', "mcp.x", "this table has both"),
        ('args = ["a"]', "mcp.x", "this table has neither"),
        ('command = ""', "mcp.x.command", "must not be empty"),
        ('url = "ftp://h/mcp"', "mcp.x.url", "not an http(s) URL"),
        ('url = "http://h/mcp"\nargs = ["a"]', "mcp.x.args", "is for a command"),
        ('url = "http://h/mcp"\nsandbox = true', "mcp.x.sandbox", "is for a command"),
        ('command = "a"\nsandbox = "yes"', "mcp.x.sandbox", "must be bool"),
        ('command = "a"\nheaders_from = { A = "B" }', "mcp.x.headers_from", "is for a url"),
        ('command = "a"\nprefix = "a b"', "mcp.x.prefix", "1-32 letters"),
        ('command = "a"\ntimeout_s = -1', "mcp.x.timeout_s", "from 0"),
        ('command = "a"\nenv = { N = 1 }', "mcp.x.env.N", "must be a string"),
        ('command = "a"\ncolour = "red"', "mcp.x.colour", "unknown key"),
    ],
)
def test_a_bad_mcp_table_is_refused_naming_the_key_and_line(table, key, words):
    exc = refused(f"[mcp.x]\n{table}\n")
    assert exc.key == key and words in str(exc)
    assert exc.line is not None


def test_sandbox_and_network_are_off_unless_the_table_says_so_mcp_i14():
    """Invariant MCP-I14: the keys as parsed (the manager's use of them is test_children.py)."""
    cfg = parse('[mcp.a]\ncommand = "a"\n[mcp.b]\ncommand = "b"\nsandbox = true\nnetwork = true\n')
    assert (cfg.mcp["a"].sandbox, cfg.mcp["a"].network) == (False, False)
    assert (cfg.mcp["b"].sandbox, cfg.mcp["b"].network) == (True, True)


def test_a_server_name_with_a_dot_is_refused():
    exc = refused('[mcp."a.b"]\ncommand = "x"\n')
    assert "no dots" in str(exc)


def test_secrets_are_refused_in_the_file_and_read_from_the_environment_mcp_i10():
    """Invariant MCP-I10 (the reading at start: test_http.py)."""
    for name in ("GITHUB_TOKEN", "db_password", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY"):
        exc = refused(f'[mcp.x]\ncommand = "a"\nenv = {{ {name} = "v" }}\n')
        assert exc.key == f"mcp.x.env.{name}" and "env_from" in str(exc)
    assert parse('[mcp.x]\ncommand = "a"\nenv = { MAX_TOKENS = "5" }\n').mcp["x"].env
    exc = refused('[mcp.x]\nurl = "https://bob:hunter2@h/mcp"\n')
    assert exc.key == "mcp.x.url" and "headers_from" in str(exc)
    exc = refused('[mcp.x]\ncommand = "a"\nenv_from = { T = "ghp_abc123 secret" }\n')
    assert exc.key == "mcp.x.env_from.T" and "not the value" in str(exc)


def test_two_servers_with_one_prefix_are_refused_mcp_i2():
    """Invariant MCP-I2: prefixes that map to one wire text would mix two servers' tools."""
    exc = refused('[mcp.a]\ncommand = "a"\nprefix = "b."\n[mcp.b]\ncommand = "b"\n')
    assert exc.key == "mcp.b.prefix" and "server 'a'" in str(exc)
    exc = refused('[mcp.a]\ncommand = "a"\nprefix = "x__"\n[mcp.b]\ncommand = "b"\nprefix = "x."\n')
    assert exc.key == "mcp.b.prefix"


@given(
    prefix=st.from_regex(r"[A-Za-z0-9_.-]{1,32}", fullmatch=True),
    tools=st.lists(st.text(min_size=1, max_size=150), min_size=1, max_size=8, unique=True),
)
def test_wire_names_are_valid_for_every_provider_and_distinct_mcp_i2(prefix, tools):
    """Invariant MCP-I2: OpenAI's and Anthropic's ``^[a-zA-Z0-9_-]{1,64}$``, one name per tool."""
    names = wire_names(prefix, tools)
    assert set(names) == set(tools)
    assert all(WIRE.fullmatch(n) for n in names.values()), names
    assert len(set(names.values())) == len(tools)


def test_wire_names_read_like_the_config_names():
    assert wire_name("time.", "get_current_time") == "time__get_current_time"
    assert wire_name("git.", "git_log") == "git__git_log"
    assert wire_name("w-", "files.read") == "w-files__read"
    long = wire_name("server.", "x" * 80)
    assert len(long) == 64 and long.startswith("server__xxx")
    assert wire_name("a.", "b/c") != wire_name("a.", "b_c")  # lossy mappings get a hash
    server = McpServerConfig("time", command="t")
    assert server.display_name("get_current_time") == "time.get_current_time"
