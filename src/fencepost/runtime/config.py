"""The gateway's configuration: one TOML file, validated strictly (docs/reference/config.md,
generated from ``CONFIG_KEYS``).

Every error names the key and, when the file is known, the line. Secrets only by environment
variable name (``api_key_env``, ``token_env``, an MCP server's ``env_from`` and ``headers_from``);
a literal key in the file is refused.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..core import DEFAULT_MAX_OPEN_SESSIONS, Durability
from ..errors import ConfigError
from .agent import (
    APPROVAL_WAIT_S,
    DEFAULT_CONTEXT_WINDOW,
    DEFAULT_EXEC_ENV,
    AgentSpec,
    CompactionSettings,
    ExecPolicy,
    Tool,
    ToolRegistry,
    ToolSource,
    exec_pattern_problem,
    exec_tool,
)
from .children import ChildRegistry
from .mcp import (
    DEFAULT_IDLE_STOP_S,
    DEFAULT_STARTUP_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    SERVER_NAME,
    McpManager,
    McpServerConfig,
    wire_name,
)
from .providers import BUILTIN_SCRIPTS, ModelRef, ProviderConfig, Script, parse_script
from .retention import RetentionPolicy

__all__ = [
    "CONFIG_KEYS",
    "CONFIG_SECTIONS",
    "ConfigKey",
    "config_keys",
    "DEFAULT_AGENT",
    "agents_of",
    "check_model",
    "AgentConfig",
    "ApprovalsConfig",
    "StatePaths",
    "agent_spec",
    "default_home",
    "exec_listed_problem",
    "MAX_EXEC_OUTPUT_BYTES",
    "CronDefaults",
    "GatewayConfig",
    "HeartbeatConfig",
    "ServerConfig",
    "located",
    "load_config",
    "mcp_selection",
    "state_config",
    "parse_config",
    "STARTER_CONFIG",
]


def default_home() -> Path:
    """``$FENCEPOST_HOME``, else ``~/.fencepost``."""
    return Path(os.environ.get("FENCEPOST_HOME") or Path.home() / ".fencepost")


@dataclass(frozen=True)
class StatePaths:
    """Where a gateway keeps its state; one gateway per root."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "fencepost.toml"

    @property
    def sessions(self) -> Path:
        return self.root / "sessions"

    @property
    def cron_db(self) -> Path:
        return self.root / "cron.db"

    @property
    def memory_db(self) -> Path:
        return self.root / "memory.db"

    @property
    def trajectories(self) -> Path:
        return self.root / "trajectories"

    @property
    def gateway_lock(self) -> Path:
        return self.root / "gateway.lock"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def children(self) -> Path:
        """One record per live child process (docs/design/exec.md CHILD-I1)."""
        return self.root / "run" / "children"

    def workspace(self, agent: str) -> Path:
        return self.root / "workspaces" / agent

    @property
    def mcp_work(self) -> Path:
        """Where each sandboxed stdio MCP server without a ``cwd`` gets its workspace
        (``<server>/`` under it)."""
        return self.root / "mcp"


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class HeartbeatConfig:
    every_s: float = 0.0  # 0: off
    prompt: str = "Heartbeat: anything that needs attention? Reply HEARTBEAT_OK if not."


@dataclass(frozen=True)
class AgentConfig:
    name: str
    model: str
    fallbacks: tuple[str, ...] = ()
    system_prompt: str = ""
    tools: tuple[str, ...] = ("current_time",)
    workspace: str | None = None
    max_steps: int = 8
    timeout_s: float = 600.0
    http_allow: tuple[str, ...] = ()
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    #: Steer a running turn with a message that arrives meanwhile (else: queue a follow-up).
    steering: bool = True
    #: ``[agents.<name>.compaction]``; the context window comes from ``[models."<ref>"]``.
    compaction: CompactionSettings = field(default_factory=CompactionSettings)
    #: ``[agents.<name>.exec]``: what the exec tool may run (docs/design/exec.md).
    exec: ExecPolicy = field(default_factory=ExecPolicy)


@dataclass(frozen=True)
class CronDefaults:
    max_concurrent_runs: int = 4
    catch_up_grace_s: float = 3600.0
    timeout_s: float = 600.0


#: The plugins ``[plugins] enabled`` may name (``gateway/plugins``); third-party plugins load from
#: entry points instead.
BUILTIN_PLUGINS = ("memory", "model-snapshot", "trajectory", "heartbeat")

#: The largest number a config key takes (seconds, tokens, megabytes): far past any sensible
#: value, far below what overflows a timer or a date.
MAX_CONFIG_NUMBER = 1e9
#: A century: retention ages in days past this overflow date arithmetic soon after.
MAX_RETENTION_DAYS = 36_600.0

#: docs/design/http.md HTTP-I9.
DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024

#: The most output an exec result may carry: a tool result is one transcript record
#: (MAX_RECORD_BYTES, 1 MiB), and JSON may escape a control byte into six.
MAX_EXEC_OUTPUT_BYTES = 128 * 1024


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8787
    token_env: str | None = None  # required for a non-loopback host
    #: The largest request body the HTTP API reads (413 past it): a message at the record limit
    #: (1 MiB) with room for JSON escapes.
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


@dataclass(frozen=True)
class LimitsConfig:
    """Resource bounds and the watermarks ``doctor`` and the health endpoint warn at."""

    #: Idle sessions whose files stay open (three descriptors each; docs/design/write-protocol.md
    #: STORE-I11).
    max_open_sessions: int = DEFAULT_MAX_OPEN_SESSIONS
    #: Warn when open descriptors pass this share of the process limit (``ulimit -n``).
    warn_descriptors_ratio: float = 0.8
    #: Warn when the gateway's resident memory passes this.
    warn_rss_mb: float = 1024.0
    #: Warn when the state directory (sessions, databases, logs) passes this.
    warn_state_dir_mb: float = 10240.0


#: The longest an approval may wait: what a tool that asks (exec) allows for in its own timeout,
#: so a wait the config allows is never cut by the tool's timeout. A turn's ``timeout_s`` bounds
#: it too (a turn that ends withdraws its requests).
MAX_APPROVAL_WAIT_S = APPROVAL_WAIT_S


@dataclass(frozen=True)
class ApprovalsConfig:
    """How long a tool call an ``ask`` policy holds waits for the operator (docs/design/
    approvals.md). Interactive turns wait ``timeout_s``; unattended ones (cron jobs, heartbeats)
    are denied at once, or wait ``unattended_timeout_s`` when ``unattended = "wait"`` (a job's
    ``on_ask`` overrides it)."""

    timeout_s: float = 300.0
    unattended: str = "deny"  # "deny" | "wait"
    unattended_timeout_s: float = 60.0
    #: Requests waiting at once, over all sessions; past it a request is denied at once.
    max_pending: int = 100

    def wait_s(self, *, unattended: bool, on_ask: str | None = None) -> float:
        """How long a request waits (0: denied at once, never waits; APPROVAL-I4)."""
        if not unattended:
            return self.timeout_s
        return self.unattended_timeout_s if (on_ask or self.unattended) == "wait" else 0.0


@dataclass(frozen=True)
class GatewayConfig:
    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    agents: Mapping[str, AgentConfig] = field(default_factory=dict)
    cron: CronDefaults = field(default_factory=CronDefaults)
    server: ServerConfig = field(default_factory=ServerConfig)
    plugins: tuple[str, ...] = ("memory", "model-snapshot", "trajectory", "heartbeat")
    durability: Durability = "fsync"
    path: str | None = None
    #: Scripts for the built-in ``scripted`` provider, by name (``scripted/<name>``).
    scripts: Mapping[str, Script] = field(default_factory=dict)
    #: ``[models."provider/model"] context_window = N``: per-model token budgets.
    context_windows: Mapping[str, int] = field(default_factory=dict)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    approvals: ApprovalsConfig = field(default_factory=ApprovalsConfig)
    #: ``[mcp.<name>]``: MCP servers whose tools agents may use (docs/design/mcp.md).
    mcp: Mapping[str, McpServerConfig] = field(default_factory=dict)
    #: Not a key of the file: True only for demo mode's config (``demo.demo_config``). A gateway
    #: on any other config removes the demo's jobs (Invariant DEMO-I2).
    demo: bool = False


# ---- every key, once: the parser's allowed sets and docs/reference/config.md --------------------


@dataclass(frozen=True)
class ConfigKey:
    """One key of ``fencepost.toml``. ``section`` is dotted, ``*`` standing for a name the user
    picks (``agents.*`` is ``[agents.<name>]``). ``default`` is the value the parser uses when
    the key is absent (None: unset); ``example`` is TOML. The parser takes its allowed keys from
    this table, and tests/test_docs.py checks that page, table and parser agree (STYLE rule 9).
    """

    section: str
    key: str
    type: str
    default: Any
    doc: str
    example: str
    #: Shown instead of the default (e.g. what "unset" means); the checked value stays ``default``.
    default_text: str | None = None
    required: bool = False
    #: Where the value lands in ``GatewayConfig`` (``*``: the named entry; digits: an index), for
    #: the test that checks defaults and examples; None for keys that do not land as written.
    read: str | None = None


_MiB = 1024 * 1024
_HB = HeartbeatConfig()
_CS = CompactionSettings()
_RP = RetentionPolicy()
_LC = LimitsConfig()
_SC = ServerConfig()
_CD = CronDefaults()
_AP = ApprovalsConfig()
_MC = McpServerConfig(name="_")
_EP = ExecPolicy()

CONFIG_KEYS: tuple[ConfigKey, ...] = (
    ConfigKey("", "durability", "string", "fsync",
              'How transcripts reach the disk: "fsync" per commit, or "buffered" (faster; a '
              "crash may lose the last records).", '"buffered"', read="durability"),
    # providers
    ConfigKey("providers.*", "api", "string", "openai",
              "The wire protocol: openai (any OpenAI-compatible server), anthropic, or scripted.",
              '"openai"', read="providers.*.api"),
    ConfigKey("providers.*", "base_url", "string", None,
              "The server's URL (OpenAI-compatible servers: vLLM, Ollama, llama.cpp, ...). A "
              "loopback URL needs no key.", '"http://127.0.0.1:11434/v1"',
              default_text="the API's own", read="providers.*.base_url"),
    ConfigKey("providers.*", "api_key_env", "string", None,
              "The name of the environment variable holding the API key.", '"OPENAI_API_KEY"',
              default_text="unset", read="providers.*.api_key_env"),
    ConfigKey("providers.*", "timeout_s", "number", 600.0,
              "Seconds a model request may take.", "120", read="providers.*.timeout_s"),
    ConfigKey("providers.*", "max_retries", "integer", 2,
              "Retries of transient failures (rate limits, 5xx, timeouts), with backoff.", "3",
              read="providers.*.max_retries"),
    ConfigKey("providers.*", "api_key", "-", None,
              "Refused: secrets never go in the config file; use api_key_env.", "",
              default_text="refused"),
    # agents
    ConfigKey("agents.*", "model", "string", None,
              "The agent's model, provider/model (scripted/fast is the built-in offline model).",
              '"scripted/fast"', default_text="required", required=True,
              read="agents.*.model"),
    ConfigKey("agents.*", "fallbacks", "array of strings", (),
              "Models tried in order when the model fails with a provider error.",
              '["scripted/slow"]', read="agents.*.fallbacks"),
    ConfigKey("agents.*", "system_prompt", "string", "",
              "The system prompt of every turn.", '"You are the operations agent."',
              read="agents.*.system_prompt"),
    ConfigKey("agents.*", "tools", "array of strings", AgentConfig.tools,
              "The tools the agent may call: built-ins (current_time, read_file, write_file, "
              "http_get), exec (commands, by [agents.<name>.exec]), tools plugins register, "
              "and MCP tools: `<server>.<tool>` or `<server>.*` for all of a server's.",
              '["current_time", "read_file"]', read="agents.*.tools"),
    ConfigKey("agents.*", "workspace", "string", None,
              "The folder read_file and write_file work in.", '"/srv/ops-notes"',
              default_text="`<home>/workspaces/<name>`", read="agents.*.workspace"),
    ConfigKey("agents.*", "max_steps", "integer", AgentConfig.max_steps,
              "Model calls one turn may make (each tool round is one).", "12",
              read="agents.*.max_steps"),
    ConfigKey("agents.*", "timeout_s", "number", AgentConfig.timeout_s,
              "Seconds one turn may take.", "300", read="agents.*.timeout_s"),
    ConfigKey("agents.*", "http_allow", "array of strings", (),
              "Hosts the http_get tool may fetch; empty: http_get refuses every host.",
              '["status.example.com"]', read="agents.*.http_allow"),
    ConfigKey("agents.*", "steering", "boolean", AgentConfig.steering,
              "A message that arrives during a turn joins it (true) or waits for the next "
              "turn (false).", "false", read="agents.*.steering"),
    ConfigKey("agents.*.heartbeat", "every_s", "number", _HB.every_s,
              "Seconds between heartbeat turns on the agent's main session; 0 turns them off.",
              "1800", read="agents.*.heartbeat.every_s"),
    ConfigKey("agents.*.heartbeat", "prompt", "string", _HB.prompt,
              "The user message of a heartbeat turn.", '"Anything that needs attention?"',
              read="agents.*.heartbeat.prompt"),
    ConfigKey("agents.*.compaction", "enabled", "boolean", _CS.enabled,
              "Compact the session (pi format) when a turn's context nears the model's window.",
              "false", read="agents.*.compaction.enabled"),
    ConfigKey("agents.*.compaction", "reserve_tokens", "integer", _CS.reserve_tokens,
              "Compact when the context passes the window minus this.", "8192",
              read="agents.*.compaction.reserve_tokens"),
    ConfigKey("agents.*.compaction", "keep_recent_tokens", "integer", _CS.keep_recent_tokens,
              "The recent context kept verbatim after a compaction.", "10000",
              read="agents.*.compaction.keep_recent_tokens"),
    ConfigKey("agents.*.compaction", "max_context_bytes", "integer", _CS.max_context_bytes,
              "Also compact when a turn would read more transcript bytes than this.", "524288",
              read="agents.*.compaction.max_context_bytes"),
    ConfigKey("agents.*.exec", "policy", "string", _EP.policy,
              'What the exec tool may run: "deny" (nothing), "allow" (what allow matches, '
              'nothing else) or "ask" (what allow matches; anything else waits for an '
              "operator's approval). An agent listing exec in tools needs allow or ask.",
              '"ask"', read="agents.*.exec.policy"),
    ConfigKey("agents.*.exec", "allow", "array of strings", _EP.allow,
              "Programs a command may run: a bare name (git, or a glob: git-*) matches a "
              "bare argv[0], found on PATH; an absolute path (/usr/bin/*, * within one "
              "component) matches the program's path; sh:<command> matches a whole shell "
              "command, where * stands for word characters, never shell syntax.",
              '["git", "ls", "sh:git log *"]', read="agents.*.exec.allow"),
    ConfigKey("agents.*.exec", "shell", "boolean", _EP.shell,
              "The model may pass a command line for /bin/sh -c instead of an argv; it runs "
              "only when a sh: pattern matches it whole or (policy ask) an operator approves.",
              "true", read="agents.*.exec.shell"),
    ConfigKey("agents.*.exec", "timeout_s", "number", _EP.timeout_s,
              "The longest a command runs (a call may ask for less); then its whole process "
              "group is ended (SIGTERM, then SIGKILL).", "120", read="agents.*.exec.timeout_s"),
    ConfigKey("agents.*.exec", "max_output_bytes", "integer", _EP.max_output_bytes,
              "stdout and stderr together in the result (at most 131072); the rest is counted "
              "and dropped, and the result says so.", "32768",
              read="agents.*.exec.max_output_bytes"),
    ConfigKey("agents.*.exec", "env", "array of strings", DEFAULT_EXEC_ENV,
              "The environment variables a command sees, by name, with the gateway's values; "
              "no other variable is passed.", '["PATH", "HOME", "LANG", "GIT_AUTHOR_NAME"]',
              read="agents.*.exec.env"),
    ConfigKey("agents.*.exec", "sandbox", "boolean", _EP.sandbox,
              "Run commands under bubblewrap (bwrap): the workspace writable, the rest of the "
              "file system read-only, a private /tmp, its own pid namespace. Without a working "
              "bwrap commands are refused, never run unsandboxed (fencepost doctor checks).",
              "true", read="agents.*.exec.sandbox"),
    ConfigKey("agents.*.exec", "network", "boolean", _EP.network,
              "With sandbox: commands may reach the network (without the sandbox they always "
              "can).", "true", read="agents.*.exec.network"),
    # models, scripts
    ConfigKey("models.*", "context_window", "integer", DEFAULT_CONTEXT_WINDOW,
              "The model's context window in tokens (compaction keeps each turn inside it).",
              "32768", read="context_windows.*"),
    ConfigKey("scripts.*", "steps", "array of tables or strings", None,
              "The replies of the built-in scripted model scripted/<name>, in order (a string "
              "is a text reply); keys of a step below.", '["first reply", "second reply"]',
              default_text="required", required=True),
    ConfigKey("scripts.*.steps", "text", "string", "", "The reply text.", '"all good"',
              read="scripts.*.0.text"),
    ConfigKey("scripts.*.steps", "thinking", "string", "", "Reasoning text streamed first.",
              '"checking"', read="scripts.*.0.thinking"),
    ConfigKey("scripts.*.steps", "tool_calls", "array of tables", (),
              "Tool calls to make ({name, arguments, id}) instead of replying.",
              '[{name = "current_time"}]', default_text="[]"),
    ConfigKey("scripts.*.steps", "latency_s", "number", 0.0,
              "Seconds spread over the streamed chunks.", "0.5", read="scripts.*.0.latency_s"),
    ConfigKey("scripts.*.steps", "first_token_delay_s", "number", 0.0,
              "Seconds before the first token (20 makes the slow model of DESIGN.md §1).", "20",
              read="scripts.*.0.first_token_delay_s"),
    ConfigKey("scripts.*.steps", "chunk_chars", "integer", 16,
              "Characters per streamed chunk.", "4", read="scripts.*.0.chunk_chars"),
    ConfigKey("scripts.*.steps", "error", "string", None,
              "Fail with this provider error kind (rate_limit, server_error, ...) instead.",
              '"rate_limit"', default_text="unset", read="scripts.*.0.error"),
    ConfigKey("scripts.*.steps", "retry_after_s", "number", None,
              "With error: the Retry-After the failure carries.", "2", default_text="unset",
              read="scripts.*.0.retry_after_s"),
    ConfigKey("scripts.*.steps", "stop_reason", "string", None,
              "The stop reason reported (stop, length, toolUse, error, aborted); a step with "
              "tool calls is toolUse unless this is error or aborted.", '"length"',
              default_text="by the reply", read="scripts.*.0.stop_reason"),
    # mcp
    ConfigKey("mcp.*", "command", "string", None,
              "A stdio server: the program to run (the gateway starts it on first use). Give "
              "command or url, not both.", '"mcp-server-git"', default_text="unset"),
    ConfigKey("mcp.*", "args", "array of strings", (), "The program's arguments.",
              '["--repository", "/srv/repo"]', read="mcp.*.args"),
    ConfigKey("mcp.*", "env", "table of strings", {},
              "Environment variables for the program, besides HOME, LOGNAME, PATH, SHELL, "
              "TERM and USER (nothing else of the gateway's is passed). Not for secrets: a "
              "name like *_TOKEN, *_SECRET, *_PASSWORD or *_API_KEY is refused here.",
              '{ GIT_PAGER = "cat" }', read="mcp.*.env"),
    ConfigKey("mcp.*", "env_from", "table of strings", {},
              "Secrets for the program: variable = the name of the gateway's environment "
              "variable holding the value, read at each start.",
              '{ GITHUB_TOKEN = "OPS_GITHUB_TOKEN" }', read="mcp.*.env_from"),
    ConfigKey("mcp.*", "cwd", "string", None, "The program's working directory.",
              '"/srv/repo"', default_text="the gateway's", read="mcp.*.cwd"),
    ConfigKey("mcp.*", "url", "string", None,
              'A streamable HTTP server instead of a program: its endpoint, e.g. '
              '`"http://127.0.0.1:8931/mcp"`.', "", default_text="unset",
              read="mcp.*.url"),
    ConfigKey("mcp.*", "headers_from", "table of strings", {},
              "With url: request headers whose values are secrets, header = the name of the "
              "gateway's environment variable holding the whole value, e.g. "
              '`{ Authorization = "OPS_MCP_AUTH" }`.', "", read="mcp.*.headers_from"),
    ConfigKey("mcp.*", "prefix", "string", None,
              "The start of the names the model sees for this server's tools, each `.` sent "
              "as `__` (`time.get_current_time` reaches the model as `time__get_current_time`). "
              "Agents select tools by server name whatever the prefix.", '"git."',
              default_text="`<name>.`", read="mcp.*.prefix"),
    ConfigKey("mcp.*", "timeout_s", "number", _MC.timeout_s,
              "Seconds one tool call may take (then an error result; the server is told to "
              "cancel).", "120", read="mcp.*.timeout_s"),
    ConfigKey("mcp.*", "startup_timeout_s", "number", _MC.startup_timeout_s,
              "Seconds from start to a listed tool set.", "60",
              read="mcp.*.startup_timeout_s"),
    ConfigKey("mcp.*", "idle_stop_s", "number", _MC.idle_stop_s,
              "Seconds without a call after which the server is stopped (started again on "
              "next use); 0: never.", "1800", read="mcp.*.idle_stop_s"),
    ConfigKey("mcp.*", "sandbox", "boolean", _MC.sandbox,
              "A command server runs under bubblewrap, as exec's sandbox does: its workspace "
              "(cwd if set, else <home>/mcp/<name>/) writable, every other path read-only, a "
              "private /tmp, its own namespaces. Without a working bwrap it does not start "
              "(an error result, a log line, a doctor failure), never unsandboxed.", "true",
              read="mcp.*.sandbox"),
    ConfigKey("mcp.*", "network", "boolean", _MC.network,
              "With sandbox: the server may reach the network (most servers that call an API "
              "need this; without the sandbox they always can).", "true",
              read="mcp.*.network"),
    ConfigKey("mcp.*", "enabled", "boolean", _MC.enabled,
              "false: agents that select its tools get none, and nothing starts it.", "false",
              read="mcp.*.enabled"),
    # cron
    ConfigKey("cron", "max_concurrent_runs", "integer", _CD.max_concurrent_runs,
              "Scheduled runs in flight at once, over all jobs.", "2",
              read="cron.max_concurrent_runs"),
    ConfigKey("cron", "catch_up_grace_s", "number", _CD.catch_up_grace_s,
              "After downtime, a slot older than this is recorded missed instead of run.",
              "600", read="cron.catch_up_grace_s"),
    ConfigKey("cron", "timeout_s", "number", _CD.timeout_s,
              "The default run timeout of a job that sets none.", "300", read="cron.timeout_s"),
    # server
    ConfigKey("server", "host", "string", _SC.host,
              "The address the HTTP API and dashboard listen on; any but loopback needs "
              "token_env.", '"127.0.0.1"', read="server.host"),
    ConfigKey("server", "port", "integer", _SC.port, "The port (0: any free port).", "8788",
              read="server.port"),
    ConfigKey("server", "token_env", "string", None,
              "The environment variable holding the bearer token clients must send.",
              '"FENCEPOST_TOKEN"', default_text="unset: loopback clients only",
              read="server.token_env"),
    ConfigKey("server", "max_body_bytes", "integer", _SC.max_body_bytes,
              "Larger request bodies are refused with 413 (1024 to 1073741824).", "4194304",
              read="server.max_body_bytes"),
    # plugins
    ConfigKey("plugins", "enabled", "array of strings", GatewayConfig.plugins,
              "The built-in plugins to run (memory, model-snapshot, trajectory, heartbeat); "
              "installed plugins load by entry point.", '["memory", "heartbeat"]',
              read="plugins"),
    # limits
    ConfigKey("limits", "max_open_sessions", "integer", _LC.max_open_sessions,
              "Idle sessions whose files stay open (three descriptors each).", "64",
              read="limits.max_open_sessions"),
    ConfigKey("limits", "warn_descriptors_ratio", "number", _LC.warn_descriptors_ratio,
              "doctor and /api/health warn past this share of the descriptor limit.", "0.9",
              read="limits.warn_descriptors_ratio"),
    ConfigKey("limits", "warn_rss_mb", "number", _LC.warn_rss_mb,
              "Warn when the gateway's resident memory passes this many MiB.", "2048",
              read="limits.warn_rss_mb"),
    ConfigKey("limits", "warn_state_dir_mb", "number", _LC.warn_state_dir_mb,
              "Warn when the state directory passes this many MiB.", "20480",
              read="limits.warn_state_dir_mb"),
    # retention
    ConfigKey("retention", "archive_after_days", "number", _RP.archive_after_days,
              "Isolated run sessions idle this long move to archive/.", "14",
              read="retention.archive_after_days"),
    ConfigKey("retention", "gzip", "boolean", _RP.gzip, "Archive transcripts as .jsonl.gz.",
              "false", read="retention.gzip"),
    ConfigKey("retention", "delete_archived_after_days", "number", None,
              "Archived sessions older than this are deleted (by the gateway, or gc "
              "--delete-archived).", "180", default_text="unset: never delete",
              read="retention.delete_archived_after_days"),
    ConfigKey("retention", "ledger_keep_days", "number", _RP.ledger_keep_days,
              "Run ledger rows older than this are pruned (counters stay right).", "30",
              read="retention.ledger_keep_days"),
    ConfigKey("retention", "ledger_keep_per_job", "integer", _RP.ledger_keep_per_job,
              "At most this many ledger rows are kept per job.", "200",
              read="retention.ledger_keep_per_job"),
    ConfigKey("retention", "every_s", "number", _RP.every_s,
              "How often the gateway applies retention; 0: only by hand (fencepost gc).", "86400",
              read="retention.every_s"),
    ConfigKey("retention", "log_max_bytes", "integer", _RP.log_max_bytes,
              "The gateway log rotates past this size (at least 1024).", "1048576",
              read="retention.log_max_bytes"),
    ConfigKey("retention", "log_backups", "integer", _RP.log_backups,
              "Rotated log files kept.", "3", read="retention.log_backups"),
    # approvals
    ConfigKey("approvals", "timeout_s", "number", _AP.timeout_s,
              "Seconds a tool call held for approval waits in an interactive turn; unanswered, "
              "it is denied (1 to 600).", "120", read="approvals.timeout_s"),
    ConfigKey("approvals", "unattended", "string", _AP.unattended,
              'Cron and heartbeat turns: "deny" a held call at once, or "wait" for '
              "unattended_timeout_s (a job's on_ask overrides it).", '"wait"',
              read="approvals.unattended"),
    ConfigKey("approvals", "unattended_timeout_s", "number", _AP.unattended_timeout_s,
              'Seconds an unattended turn waits when it is "wait" (1 to 600).', "600",
              read="approvals.unattended_timeout_s"),
    ConfigKey("approvals", "max_pending", "integer", _AP.max_pending,
              "Requests waiting at once; past it a new one is denied at once (1 to 100000).",
              "20", read="approvals.max_pending"),
)  # fmt: skip

#: The sections, in the order the reference lists them, with what each is for.
CONFIG_SECTIONS: Mapping[str, str] = {
    "": "Top-level keys.",
    "providers.*": "Model providers, by a name you choose; models are then `<name>/<model>`.",
    "agents.*": "Agents, by name. Without any, the gateway has one agent, `default`, on "
    "`scripted/fast`.",
    "agents.*.heartbeat": "Heartbeat turns on the agent's main session.",
    "agents.*.compaction": "Automatic compaction of long sessions (pi format).",
    "agents.*.exec": "The exec tool: commands in the agent's workspace (docs/design/exec.md). "
    'The agent must list `"exec"` in `tools`.',
    "models.*": 'Per-model settings, by `provider/model` (quote it: `[models."openai/gpt-4o"]`).',
    "scripts.*": "Scripts for the built-in offline model, used as `scripted/<name>`; `fast` and "
    "`slow` are built in.",
    "scripts.*.steps": "One scripted reply (`[[scripts.<name>.steps]]`).",
    "mcp.*": "MCP servers, by a name you choose (letters, digits, `_`, `-`); agents use their "
    "tools as `<name>.<tool>` or `<name>.*` (docs/design/mcp.md).",
    "cron": "The scheduler.",
    "server": "The HTTP API and dashboard.",
    "plugins": "Plugins.",
    "limits": "Resource bounds, and the watermarks `fencepost doctor` and `/api/health` warn at.",
    "retention": "Retention (docs/design/retention.md); `fencepost gc --dry-run` shows what it "
    "would do.",
    "approvals": "Approvals of tool calls an `ask` policy holds (docs/design/approvals.md): "
    "`fencepost approvals`, `/api/approvals` and the dashboard decide them.",
}


def config_keys(section: str) -> set[str]:
    """The keys a section allows (``section`` as in ``CONFIG_KEYS``, ``*`` for a name)."""
    own = {k.key for k in CONFIG_KEYS if k.section == section}
    depth = section.count(".") + 1 if section else 0
    subs = {
        s.split(".")[depth]
        for s in CONFIG_SECTIONS
        if s
        and (s.startswith(section + ".") if section else True)
        and s.count(".") >= depth
        and (s.split(".")[depth] != "*")
    }
    return own | subs


#: The agent a config without agents gets, so a fresh install can run a turn offline.
DEFAULT_AGENT = AgentConfig(name="default", model="scripted/fast")


def mcp_selection(
    names: Sequence[str],
    servers: Mapping[str, McpServerConfig],
    registry: ToolRegistry,
    *,
    where: str = "tools",
) -> tuple[list[str], dict[str, tuple[str, ...] | None]]:
    """Split an agent's ``tools`` into the registry's names and, per MCP server, the tools it
    selects (None: ``<server>.*``, all of them). Invariant MCP-I1: a name the registry lacks
    that has a dot is an MCP tool, ``<server>.<tool>`` split at the first dot; an unknown
    server is a ConfigError naming ``where``. Pure."""
    plain: list[str] = []
    chosen: dict[str, set[str] | None] = {}
    known = set(registry.names())
    for name in names:
        if name in known or "." not in name:
            plain.append(name)
            continue
        server, tool = name.split(".", 1)
        if server not in servers:
            configured = ", ".join(sorted(servers)) or "none (add an [mcp.<name>] table)"
            raise ConfigError(
                f"unknown MCP server {server!r} in tool {name!r}; configured MCP servers: "
                f"{configured}",
                key=where,
            )
        if not tool:
            raise ConfigError(
                f"tool {name!r} names no tool: use {server}.<tool> or {server}.*", key=where
            )
        if tool == "*" or chosen.get(server, set()) is None:
            chosen[server] = None
        else:
            picked = chosen.setdefault(server, set())
            assert picked is not None
            picked.add(tool)
    return plain, {s: None if t is None else tuple(sorted(t)) for s, t in chosen.items()}


def agent_spec(
    cfg: AgentConfig,
    tools: ToolRegistry,
    paths: StatePaths,
    *,
    model: str | None = None,
    context_windows: Mapping[str, int] | None = None,
    mcp: McpManager | None = None,
    mcp_servers: Mapping[str, McpServerConfig] | None = None,
) -> AgentSpec:
    """The runner's view of a configured agent (unknown tool names are a ConfigError).

    The exec tool is built here, from the agent's own policy, recording its commands under
    ``paths.children``. MCP tools (``<server>.<tool>``, ``<server>.*``) become ``tool_sources``
    bound to ``mcp``; the servers they may name are ``mcp_servers`` (the config being checked;
    default: the manager's). Without a manager, an MCP tool is a ConfigError: nothing could
    start it."""
    where = f"agents.{cfg.name}.tools"
    servers = mcp_servers if mcp_servers is not None else (mcp.servers if mcp else {})
    plain, from_mcp = mcp_selection(cfg.tools, servers, tools, where=where)
    sources: list[ToolSource] = []
    for server, select in from_mcp.items():
        if mcp is None:
            raise ConfigError(
                f"MCP tools ({server}.*) need the gateway's MCP manager here", key=where
            )
        sources.append(mcp.source(server, select))
    ref = model or cfg.model
    window = (context_windows or {}).get(str(ModelRef.parse(ref)), DEFAULT_CONTEXT_WINDOW)
    selected = tools.select([t for t in plain if t != "exec"], where=where)
    chosen: dict[str, Tool] = {}
    for name in plain:
        if name == "exec":
            problem = exec_listed_problem(cfg)
            if problem is not None:
                raise ConfigError(problem, key=where)
            chosen[name] = exec_tool(
                cfg.exec, children=ChildRegistry(paths.children), where=f"agents.{cfg.name}.exec"
            )
        else:
            chosen[name] = selected[name]
    return AgentSpec(
        name=cfg.name,
        model=model or cfg.model,
        fallbacks=cfg.fallbacks,
        system_prompt=cfg.system_prompt,
        tools=chosen,
        tool_sources=tuple(sources),
        workspace=Path(cfg.workspace) if cfg.workspace else paths.workspace(cfg.name),
        max_steps=cfg.max_steps,
        http_allow=frozenset(cfg.http_allow),
        compaction=CompactionSettings(
            enabled=cfg.compaction.enabled,
            context_window=window,
            reserve_tokens=cfg.compaction.reserve_tokens,
            keep_recent_tokens=cfg.compaction.keep_recent_tokens,
            max_context_bytes=cfg.compaction.max_context_bytes,
        ),
    )


def exec_listed_problem(cfg: AgentConfig) -> str | None:
    """Why an agent listing exec in ``tools`` cannot have it (its policy is deny), or None
    (Invariant EXEC-I8: refused by parse_config and agent_spec alike)."""
    if "exec" not in cfg.tools or cfg.exec.policy != "deny":
        return None
    k = f"agents.{cfg.name}.exec"
    return (
        f'lists "exec" but {k}.policy is "deny" (the default), so every command would be '
        f'refused: set [{k}] policy = "allow" (with allow = [...]) or "ask", or take exec '
        "out of tools"
    )


def check_model(cfg: GatewayConfig, ref: str) -> str:
    """``ref`` if this config can serve it (a configured provider, or a known script), else a
    ConfigError saying what is wrong. Pure: builds no client, reads no key."""
    parsed = ModelRef.parse(ref)
    if parsed.provider == "scripted":
        scripts = {*cfg.scripts, *BUILTIN_SCRIPTS}
        if parsed.model not in scripts:
            known = ", ".join(sorted(scripts))
            raise ConfigError(f"no script named {parsed.model!r}; known: {known}")
    elif parsed.provider not in cfg.providers:
        known = ", ".join(sorted({*cfg.providers, "scripted"}))
        raise ConfigError(f"unknown provider {parsed.provider!r} in {ref!r}; known: {known}")
    return str(parsed)


def agents_of(cfg: GatewayConfig) -> Mapping[str, AgentConfig]:
    """The configured agents, or the default agent when the config has none."""
    return cfg.agents or {DEFAULT_AGENT.name: DEFAULT_AGENT}


class _Where:
    """Finds the line of a dotted key in the TOML source, for error messages."""

    def __init__(self, text: str | None) -> None:
        self.lines = text.splitlines() if text else []

    def _header(self, parts: list[str]) -> int | None:
        pattern = re.compile(r"^\s*\[\s*" + r"\s*\.\s*".join(map(re.escape, parts)) + r"\s*\]")
        for i, text in enumerate(self.lines):
            if pattern.match(text):
                return i
        return None

    def line(self, key: str) -> int | None:
        parts = key.split(".")
        own = self._header(parts)
        if own is not None:  # the key is a table: its header line
            return own + 1
        table, leaf = parts[:-1], parts[-1]
        start = 0
        if table:
            found = self._header(table)
            if found is None:
                return self.line(".".join(table)) if len(table) > 1 else None
            start = found
        pattern = re.compile(r"^\s*" + re.escape(leaf) + r"\s*=|^\s*\[\s*" + re.escape(key))
        for i in range(start, len(self.lines)):
            if i > start and table and self.lines[i].lstrip().startswith("["):
                break
            if pattern.match(self.lines[i]):
                return i + 1
        return start + 1 if table else None


class _Reader:
    def __init__(self, where: _Where) -> None:
        self.where = where

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, key=key, line=self.where.line(key))

    def table(self, raw: Mapping[str, Any], key: str, allowed: set[str]) -> Mapping[str, Any]:
        unknown = sorted(set(raw) - allowed)
        if unknown:
            k = f"{key}.{unknown[0]}" if key else unknown[0]
            raise self.error(
                k, f"unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}"
            )
        return raw

    def get(
        self,
        raw: Mapping[str, Any],
        key: str,
        name: str,
        kind: type | tuple[type, ...],
        default: Any,
    ) -> Any:
        if name not in raw:
            return default
        value = raw[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            value = object()  # True is not a number here
        if not isinstance(value, kinds):
            want = " or ".join(k.__name__ for k in kinds)
            raise self.error(f"{key}.{name}", f"must be {want}, not {type(raw[name]).__name__}")
        return raw[name]

    def positive(
        self,
        raw: Mapping[str, Any],
        key: str,
        name: str,
        default: float,
        *,
        maximum: float = MAX_CONFIG_NUMBER,
    ) -> float:
        value = float(self.get(raw, key, name, (int, float), default))
        # Invariant HTTP-I9 (one set of rules): nan, inf and huge values are refused when the
        # config is read, not left to overflow a timer or a date when they are used.
        if not 0 <= value <= maximum:
            raise self.error(f"{key}.{name}", f"must be a number from 0 to {maximum:g}")
        return value

    def strings(
        self, raw: Mapping[str, Any], key: str, name: str, default: tuple[str, ...]
    ) -> tuple[str, ...]:
        value = self.get(raw, key, name, list, list(default))
        if not all(isinstance(v, str) for v in value):
            raise self.error(f"{key}.{name}", "must be a list of strings")
        return tuple(value)


def parse_config(
    raw: Mapping[str, Any], *, source: str | None = None, path: str | None = None
) -> GatewayConfig:
    """Validate a parsed TOML document (pure). ``source`` is the text, for line numbers."""
    r = _Reader(_Where(source))
    r.table(raw, "", config_keys(""))
    windows: dict[str, int] = {}
    for ref, m in r.get(raw, "", "models", dict, {}).items():
        key = f"models.{ref}"
        if not isinstance(m, dict):
            raise r.error(key, "must be a table")
        r.table(m, key, config_keys("models.*"))
        try:
            canonical = str(ModelRef.parse(ref))
        except ConfigError as exc:
            raise r.error(key, str(exc)) from None
        window = int(r.get(m, key, "context_window", int, DEFAULT_CONTEXT_WINDOW))
        if window < 1:
            raise r.error(f"{key}.context_window", "must be at least 1")
        windows[canonical] = window
    scripts: dict[str, Script] = {}
    for name, sc in r.get(raw, "", "scripts", dict, {}).items():
        if isinstance(sc, dict):
            r.table(sc, f"scripts.{name}", config_keys("scripts.*"))
        try:
            scripts[name] = parse_script(sc, source=f"scripts.{name}")
        except ConfigError as exc:
            raise r.error(f"scripts.{name}", str(exc).split(" (key")[0]) from None
    providers: dict[str, ProviderConfig] = {}
    for name, p in r.get(raw, "", "providers", dict, {}).items():
        key = f"providers.{name}"
        if not isinstance(p, dict):
            raise r.error(key, "must be a table")
        r.table(p, key, config_keys("providers.*"))
        if "api_key" in p:
            raise r.error(
                f"{key}.api_key",
                "secrets never go in the config file: put the key in "
                "an environment variable and name it with api_key_env",
            )
        try:
            providers[name] = ProviderConfig(
                name=name,
                api=r.get(p, key, "api", str, "openai"),
                base_url=r.get(p, key, "base_url", str, None),
                api_key_env=r.get(p, key, "api_key_env", str, None),
                timeout_s=r.positive(p, key, "timeout_s", 600.0) or 600.0,
                max_retries=int(r.get(p, key, "max_retries", int, 2)),
            )
        except ConfigError as exc:
            raise r.error(exc.key or key, str(exc).split(" (key")[0]) from None
    agents: dict[str, AgentConfig] = {}
    for name, a in r.get(raw, "", "agents", dict, {}).items():
        key = f"agents.{name}"
        if not isinstance(a, dict):
            raise r.error(key, "must be a table")
        if not _NAME.fullmatch(name):
            raise r.error(key, f"agent name {name!r} must be letters, digits, '_', '.', '-'")
        r.table(a, key, config_keys("agents.*"))
        if "model" not in a:
            raise r.error(key, 'an agent needs a model, e.g. model = "scripted/fast"')
        model = r.get(a, key, "model", str, None)
        fallbacks = r.strings(a, key, "fallbacks", ())
        for i, ref in enumerate((model, *fallbacks)):
            k = f"{key}.model" if i == 0 else f"{key}.fallbacks"
            try:
                parsed = ModelRef.parse(ref)
            except ConfigError as exc:
                raise r.error(k, str(exc)) from None
            if parsed.provider == "scripted" and parsed.model not in {*scripts, *BUILTIN_SCRIPTS}:
                known = ", ".join(sorted({*scripts, *BUILTIN_SCRIPTS}))
                raise r.error(k, f"no script named {parsed.model!r}; known: {known}")
            if parsed.provider != "scripted" and parsed.provider not in providers:
                known = ", ".join(sorted({*providers, "scripted"}))
                raise r.error(k, f"unknown provider {parsed.provider!r} in {ref!r}; known: {known}")
        hb_raw = r.get(a, key, "heartbeat", dict, {})
        r.table(hb_raw, f"{key}.heartbeat", config_keys("agents.*.heartbeat"))
        heartbeat = HeartbeatConfig(
            every_s=r.positive(hb_raw, f"{key}.heartbeat", "every_s", 0.0),
            prompt=r.get(hb_raw, f"{key}.heartbeat", "prompt", str, HeartbeatConfig.prompt),
        )
        ck = f"{key}.compaction"
        c_raw = r.table(
            r.get(a, key, "compaction", dict, {}),
            ck,
            config_keys("agents.*.compaction"),
        )
        defaults = CompactionSettings()
        compaction = CompactionSettings(
            enabled=bool(r.get(c_raw, ck, "enabled", bool, True)),
            reserve_tokens=int(r.positive(c_raw, ck, "reserve_tokens", defaults.reserve_tokens)),
            keep_recent_tokens=int(
                r.positive(c_raw, ck, "keep_recent_tokens", defaults.keep_recent_tokens)
            ),
            max_context_bytes=int(
                r.positive(c_raw, ck, "max_context_bytes", defaults.max_context_bytes)
            ),
        )
        exec_policy = _exec_policy(r, r.get(a, key, "exec", dict, {}), f"{key}.exec")
        max_steps = int(r.get(a, key, "max_steps", int, 8))
        if max_steps < 1:
            raise r.error(f"{key}.max_steps", "must be at least 1")
        agents[name] = AgentConfig(
            name=name,
            model=model,
            fallbacks=fallbacks,
            system_prompt=r.get(a, key, "system_prompt", str, ""),
            tools=r.strings(a, key, "tools", ("current_time",)),
            workspace=r.get(a, key, "workspace", str, None),
            max_steps=max_steps,
            timeout_s=r.positive(a, key, "timeout_s", 600.0) or 600.0,
            http_allow=r.strings(a, key, "http_allow", ()),
            heartbeat=heartbeat,
            steering=bool(r.get(a, key, "steering", bool, True)),
            compaction=compaction,
            exec=exec_policy,
        )
        problem = exec_listed_problem(agents[name])
        if problem is not None:
            raise r.error(f"{key}.tools", problem)
    c = r.get(raw, "", "cron", dict, {})
    r.table(c, "cron", config_keys("cron"))
    cron = CronDefaults(
        max_concurrent_runs=int(r.get(c, "cron", "max_concurrent_runs", int, 4)),
        catch_up_grace_s=r.positive(c, "cron", "catch_up_grace_s", 3600.0),
        timeout_s=r.positive(c, "cron", "timeout_s", 600.0) or 600.0,
    )
    if cron.max_concurrent_runs < 1:
        raise r.error("cron.max_concurrent_runs", "must be at least 1")
    s = r.get(raw, "", "server", dict, {})
    r.table(s, "server", config_keys("server"))
    server = ServerConfig(
        host=r.get(s, "server", "host", str, "127.0.0.1"),
        port=int(r.get(s, "server", "port", int, 8787)),
        token_env=r.get(s, "server", "token_env", str, None),
        max_body_bytes=int(r.get(s, "server", "max_body_bytes", int, DEFAULT_MAX_BODY_BYTES)),
    )
    if not 1024 <= server.max_body_bytes <= 1024**3:
        raise r.error("server.max_body_bytes", "must be between 1024 and 1073741824")
    if not 0 <= server.port <= 65535:
        raise r.error("server.port", "must be between 0 and 65535")
    if server.host not in ("127.0.0.1", "localhost", "::1") and not server.token_env:
        raise r.error(
            "server.host",
            f"binding {server.host} needs a bearer token: set "
            "server.token_env to the name of an environment variable holding it",
        )
    pl = r.get(raw, "", "plugins", dict, {})
    r.table(pl, "plugins", config_keys("plugins"))
    plugins = r.strings(pl, "plugins", "enabled", GatewayConfig.plugins)
    for name in plugins:
        if name not in BUILTIN_PLUGINS:
            raise r.error(
                "plugins.enabled",
                f"unknown built-in plugin {name!r}; built-ins: {', '.join(BUILTIN_PLUGINS)} "
                "(third-party plugins load from the 'fencepost.plugins' entry point group)",
            )
    durability = r.get(raw, "", "durability", str, "fsync")
    if durability not in ("fsync", "buffered"):
        raise r.error("durability", "must be 'fsync' or 'buffered'")
    mcp = _mcp_servers(r, raw)
    return GatewayConfig(
        providers,
        agents,
        cron,
        server,
        plugins,
        durability,
        path,
        scripts,
        windows,
        _limits(r, raw),
        _retention(r, r.get(raw, "", "retention", dict, {})),
        _approvals(r, r.get(raw, "", "approvals", dict, {})),
        mcp=mcp,
    )


def _approvals(r: _Reader, t: Mapping[str, Any]) -> ApprovalsConfig:
    """The ``[approvals]`` section (docs/design/approvals.md): every wait is bounded."""
    k = "approvals"
    d = ApprovalsConfig()
    r.table(t, k, config_keys(k))

    def wait(name: str, default: float) -> float:
        value = r.positive(t, k, name, default, maximum=MAX_APPROVAL_WAIT_S)
        if value < 1:
            raise r.error(f"{k}.{name}", f"must be from 1 to {MAX_APPROVAL_WAIT_S:g} seconds")
        return value

    unattended = r.get(t, k, "unattended", str, d.unattended)
    if unattended not in ("deny", "wait"):
        raise r.error(f"{k}.unattended", 'must be "deny" or "wait"')
    max_pending = int(r.get(t, k, "max_pending", int, d.max_pending))
    if not 1 <= max_pending <= 100_000:
        raise r.error(f"{k}.max_pending", "must be from 1 to 100000")
    return ApprovalsConfig(
        timeout_s=wait("timeout_s", d.timeout_s),
        unattended=unattended,
        unattended_timeout_s=wait("unattended_timeout_s", d.unattended_timeout_s),
        max_pending=max_pending,
    )


#: Environment variable names that hold secrets, refused in ``[mcp.*] env`` (use env_from).
_SECRET_NAME = re.compile(
    r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIALS?)(_|$)",
    re.IGNORECASE,
)


def _mcp_servers(r: _Reader, raw: Mapping[str, Any]) -> dict[str, McpServerConfig]:
    """The ``[mcp.<name>]`` tables (docs/design/mcp.md)."""
    out: dict[str, McpServerConfig] = {}
    prefixes: dict[str, str] = {}
    for name, t in r.get(raw, "", "mcp", dict, {}).items():
        key = f"mcp.{name}"
        if not isinstance(t, dict):
            raise r.error(key, "must be a table")
        if not SERVER_NAME.fullmatch(name):
            raise r.error(
                key,
                f"MCP server name {name!r} must be 1-32 letters, digits, '_' or '-' (no dots: "
                "agents name its tools <server>.<tool>)",
            )
        r.table(t, key, config_keys("mcp.*"))
        command = r.get(t, key, "command", str, None)
        url = r.get(t, key, "url", str, None)
        if (command is None) == (url is None):
            raise r.error(
                key,
                "give either command (a program the gateway runs, stdio) or url (a streamable "
                "HTTP server); this table has " + ("both" if command is not None else "neither"),
            )
        if command is not None and not command.strip():
            raise r.error(f"{key}.command", "must not be empty")
        tables = {k: _string_table(r, t, key, k) for k in ("env", "env_from", "headers_from")}
        # Invariant MCP-I10: no secret in the file; env_from / headers_from name variables.
        for var in tables["env"]:
            if _SECRET_NAME.search(var):
                raise r.error(
                    f"{key}.env.{var}",
                    f"{var} looks like a secret, and secrets never go in the config file: "
                    f'export it to the gateway and write env_from = {{ {var} = "<variable>" }}',
                )
        for k in ("env_from", "headers_from"):
            for field_name, variable in tables[k].items():
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", variable):
                    raise r.error(
                        f"{key}.{k}.{field_name}",
                        f"{variable!r} is not an environment variable name (it names the "
                        "gateway's variable that holds the value, not the value)",
                    )
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise r.error(f"{key}.url", f"{url!r} is not an http(s) URL")
            if parts.username or parts.password:
                raise r.error(
                    f"{key}.url",
                    "secrets never go in the config file: drop the user:password from the URL "
                    "and send it with headers_from",
                )
            for k in ("args", "env", "env_from", "cwd", "sandbox", "network"):
                if k in t:
                    raise r.error(f"{key}.{k}", f"{k} is for a command; this server has a url")
        elif "headers_from" in t:
            raise r.error(
                f"{key}.headers_from", "headers_from is for a url; this server runs a command"
            )
        prefix = r.get(t, key, "prefix", str, None)
        if prefix is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", prefix):
            raise r.error(f"{key}.prefix", "must be 1-32 letters, digits, '_', '-' or '.'")
        cfg = McpServerConfig(
            name=name,
            command=command,
            args=r.strings(t, key, "args", ()),
            env=tables["env"],
            env_from=tables["env_from"],
            cwd=r.get(t, key, "cwd", str, None),
            url=url,
            headers_from=tables["headers_from"],
            prefix=prefix,
            timeout_s=r.positive(t, key, "timeout_s", DEFAULT_TIMEOUT_S) or DEFAULT_TIMEOUT_S,
            startup_timeout_s=r.positive(t, key, "startup_timeout_s", DEFAULT_STARTUP_TIMEOUT_S)
            or DEFAULT_STARTUP_TIMEOUT_S,
            idle_stop_s=r.positive(t, key, "idle_stop_s", DEFAULT_IDLE_STOP_S),
            enabled=bool(r.get(t, key, "enabled", bool, True)),
            sandbox=bool(r.get(t, key, "sandbox", bool, False)),
            network=bool(r.get(t, key, "network", bool, False)),
        )
        # Invariant MCP-I2: two servers never give the model the same tool name.
        wire = wire_name(cfg.tool_prefix, "")
        if wire in prefixes:
            raise r.error(
                f"{key}.prefix",
                f"prefix {cfg.tool_prefix!r} names tools as server {prefixes[wire]!r} does; "
                "give each server its own prefix",
            )
        prefixes[wire] = name
        out[name] = cfg
    return out


def _string_table(r: _Reader, t: Mapping[str, Any], key: str, name: str) -> dict[str, str]:
    table = r.get(t, key, name, dict, {})
    for k, v in table.items():
        if not isinstance(v, str):
            raise r.error(f"{key}.{name}.{k}", f"must be a string, not {type(v).__name__}")
    return dict(table)


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _exec_policy(r: _Reader, t: Mapping[str, Any], k: str) -> ExecPolicy:
    """``[agents.<name>.exec]`` (docs/design/exec.md); every error names its key and line
    (Invariant EXEC-I8)."""
    r.table(t, k, config_keys("agents.*.exec"))
    d = ExecPolicy()
    policy = r.get(t, k, "policy", str, d.policy)
    if policy not in ("deny", "allow", "ask"):
        raise r.error(f"{k}.policy", f'must be "deny", "allow" or "ask", not {policy!r}')
    shell = bool(r.get(t, k, "shell", bool, d.shell))
    allow = r.strings(t, k, "allow", d.allow)
    for pattern in allow:
        problem = exec_pattern_problem(pattern, shell=shell)
        if problem is not None:
            raise r.error(f"{k}.allow", problem)
    timeout_s = r.positive(t, k, "timeout_s", d.timeout_s)
    if timeout_s <= 0:
        raise r.error(f"{k}.timeout_s", "must be more than 0 seconds")
    cap = int(r.get(t, k, "max_output_bytes", int, d.max_output_bytes))
    if not 1 <= cap <= MAX_EXEC_OUTPUT_BYTES:
        raise r.error(
            f"{k}.max_output_bytes",
            f"must be from 1 to {MAX_EXEC_OUTPUT_BYTES} (a result is one transcript record)",
        )
    env = r.strings(t, k, "env", d.env)
    for name in env:
        if not _ENV_NAME.fullmatch(name):
            raise r.error(f"{k}.env", f"{name!r} is not an environment variable name")
    return ExecPolicy(
        policy=policy,
        allow=allow,
        shell=shell,
        timeout_s=timeout_s,
        max_output_bytes=cap,
        env=env,
        sandbox=bool(r.get(t, k, "sandbox", bool, d.sandbox)),
        network=bool(r.get(t, k, "network", bool, d.network)),
    )


def _limits(r: _Reader, raw: Mapping[str, Any]) -> LimitsConfig:
    lim = r.get(raw, "", "limits", dict, {})
    r.table(lim, "limits", config_keys("limits"))
    d = LimitsConfig()
    max_open = int(r.get(lim, "limits", "max_open_sessions", int, d.max_open_sessions))
    if max_open < 1:
        raise r.error("limits.max_open_sessions", "must be at least 1")
    ratio = r.positive(lim, "limits", "warn_descriptors_ratio", d.warn_descriptors_ratio)
    if not 0 < ratio <= 1:
        raise r.error("limits.warn_descriptors_ratio", "must be a share between 0 and 1")
    return LimitsConfig(
        max_open_sessions=max_open,
        warn_descriptors_ratio=ratio,
        warn_rss_mb=r.positive(lim, "limits", "warn_rss_mb", d.warn_rss_mb) or d.warn_rss_mb,
        warn_state_dir_mb=r.positive(lim, "limits", "warn_state_dir_mb", d.warn_state_dir_mb)
        or d.warn_state_dir_mb,
    )


def _retention(r: _Reader, t: Mapping[str, Any]) -> RetentionPolicy:
    """The ``[retention]`` section (docs/design/retention.md); unset days turn a rule off."""
    k = "retention"
    d = RetentionPolicy()
    r.table(t, k, config_keys("retention"))

    def days(name: str, default: float | None) -> float | None:
        if name not in t:
            return default
        return r.positive(t, k, name, 0.0, maximum=MAX_RETENTION_DAYS)

    per_job = t.get("ledger_keep_per_job", d.ledger_keep_per_job)
    if "ledger_keep_per_job" in t:
        per_job = int(r.get(t, k, "ledger_keep_per_job", int, 0))
        if per_job < 1:
            raise r.error(f"{k}.ledger_keep_per_job", "must be at least 1")
    log_max = int(r.get(t, k, "log_max_bytes", int, d.log_max_bytes))
    if log_max < 1024:
        raise r.error(f"{k}.log_max_bytes", "must be at least 1024")
    backups = int(r.get(t, k, "log_backups", int, d.log_backups))
    if backups < 1:
        raise r.error(f"{k}.log_backups", "must be at least 1")
    return RetentionPolicy(
        archive_after_days=days("archive_after_days", d.archive_after_days),
        gzip=bool(r.get(t, k, "gzip", bool, d.gzip)),
        delete_archived_after_days=days("delete_archived_after_days", None),
        ledger_keep_days=days("ledger_keep_days", d.ledger_keep_days),
        ledger_keep_per_job=per_job,
        every_s=r.positive(t, k, "every_s", d.every_s),
        log_max_bytes=log_max,
        log_backups=backups,
    )


def state_config(paths: StatePaths, config: str | os.PathLike[str] | None = None) -> GatewayConfig:
    """``config`` if given, else ``<state dir>/fencepost.toml`` if present, else the embedded
    defaults (``GatewayConfig()``)."""
    if config is not None or paths.config.exists():
        return load_config(config if config is not None else paths.config)
    return GatewayConfig()


def located(cfg: GatewayConfig, exc: ConfigError) -> ConfigError:
    """``exc`` with the config file and the line of its key, for an error found after parsing
    (an unknown tool, a model no provider serves): every config error names file, key and
    line, whoever finds it (Invariant DOCTOR-I2)."""
    if cfg.path is None or exc.key is None or exc.line is not None:
        return exc
    try:
        line = _Where(Path(cfg.path).read_text(encoding="utf-8")).line(exc.key)
    except (OSError, UnicodeDecodeError):
        line = None
    return ConfigError(f"{cfg.path}: {exc.detail}", key=exc.key, line=line, file=cfg.path)


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Read and validate a TOML file; errors name the file, key and line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"no config file at {p} (run `fencepost init` to write one)", file=str(p)
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p} is not UTF-8 text (byte {exc.start})", file=str(p)) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+)", str(exc))  # Python < 3.14 has no exc.lineno
        line = int(found.group(1)) if found else None
        raise ConfigError(f"{p}: not valid TOML: {exc}", file=str(p), line=line) from None
    try:
        return parse_config(raw, source=text, path=str(p))
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc.detail}", key=exc.key, line=exc.line, file=str(p)) from None


STARTER_CONFIG = """\
# fencepost configuration. Every key is optional unless marked; errors name the key and line.

# How transcripts reach the disk: "fsync" per commit (default) or "buffered".
durability = "fsync"

# Model providers. Secrets only by environment variable name.
# [providers.openai]
# api = "openai"                       # openai | anthropic | scripted
# api_key_env = "OPENAI_API_KEY"
#
# [providers.anthropic]
# api = "anthropic"
# api_key_env = "ANTHROPIC_API_KEY"
#
# [providers.ollama]
# api = "openai"
# base_url = "http://127.0.0.1:11434/v1"   # loopback: no key needed

# Agents. "scripted/<script>" is the built-in offline model (scripts: fast, slow).
[agents.ops]
model = "scripted/fast"                # required: provider/model
fallbacks = []
system_prompt = "You are the operations agent."
tools = ["current_time", "read_file", "write_file"]
max_steps = 8
timeout_s = 600
# http_allow = ["status.example.com"]  # hosts http_get may fetch; empty = off
# [agents.ops.exec]                    # the exec tool (add "exec" to tools); off by default
# policy = "ask"                       # deny | allow (what allow matches) | ask (the rest: asks)
# allow = ["git", "ls"]                # programs; "/usr/bin/*" by path; "sh:git log *" shell
# shell = false                        # true: the model may pass a command line for /bin/sh -c
# timeout_s = 60
# max_output_bytes = 65536
# env = ["PATH", "HOME", "LANG", "LC_ALL", "TZ"]   # the only variables a command sees
# sandbox = false                      # bubblewrap: only the workspace writable (doctor checks)
# network = false                      # with sandbox: may commands reach the network?
# [agents.ops.compaction]              # pi's automatic compaction (on by default)
# enabled = true
# reserve_tokens = 16384               # compact when the context passes window - reserve
# keep_recent_tokens = 20000           # the recent context kept verbatim
# max_context_bytes = 1048576          # also compact when a turn would read more transcript
# [agents.ops.heartbeat]
# every_s = 1800                       # 0 = off
# prompt = "Anything that needs attention? Reply HEARTBEAT_OK if not."

# MCP servers (docs/design/mcp.md): started on first use, stopped when idle and at shutdown.
# Agents select their tools in `tools`: "git.git_log", or "git.*" for all of them.
# [mcp.git]
# command = "mcp-server-git"           # a program (stdio), or instead: url = "http://.../mcp"
# args = ["--repository", "/srv/repo"]
# env_from = { GITHUB_TOKEN = "OPS_GITHUB_TOKEN" }   # secrets: the gateway's variable names
# timeout_s = 60                       # per call
# idle_stop_s = 600                    # 0 = never
# sandbox = false                      # bubblewrap: only cwd (or <home>/mcp/git/) writable
# network = false                      # with sandbox: may the server reach the network?

# Per-model token budgets (default 128000); compaction keeps each agent's context inside it.
# [models."openai/gpt-4o"]
# context_window = 128000

[cron]
max_concurrent_runs = 4
catch_up_grace_s = 3600                # a missed slot older than this is recorded "missed"
timeout_s = 600

[server]
host = "127.0.0.1"                     # any other address needs token_env
port = 8787
# token_env = "FENCEPOST_TOKEN"
# max_body_bytes = 2097152             # larger request bodies are refused with 413

[plugins]
enabled = ["memory", "model-snapshot", "trajectory", "heartbeat"]

# Resource bounds, and the watermarks `fencepost doctor` and /api/health warn at.
[limits]
max_open_sessions = 128                # idle sessions whose files stay open (3 descriptors each)
warn_descriptors_ratio = 0.8           # share of `ulimit -n`
warn_rss_mb = 1024
warn_state_dir_mb = 10240

# Retention (docs/design/retention.md): `fencepost gc --dry-run` shows what it would do.
# Only isolated run sessions are archived; a session a job, a lease, a lock or a running run
# points at is never touched. Nothing is deleted unless delete_archived_after_days is set.
[retention]
archive_after_days = 30                # isolated run sessions idle this long move to archive/
gzip = true                            # archived transcripts as .jsonl.gz
# delete_archived_after_days = 180     # unset = never delete
ledger_keep_days = 90                  # run ledger rows older than this are pruned
ledger_keep_per_job = 1000             # and beyond this many per job (counters stay right)
every_s = 3600                         # how often the gateway applies it; 0 = only by hand
log_max_bytes = 10485760               # the gateway log rotates past this size
log_backups = 5

# Approvals of tool calls an "ask" policy holds: `fencepost approvals list|approve|deny`, the
# HTTP API (/api/approvals) or the dashboard decide; unanswered, a request is denied.
[approvals]
timeout_s = 300                        # interactive turns wait this long
unattended = "deny"                    # cron and heartbeat turns: "deny" at once, or "wait"
# unattended_timeout_s = 60            # how long they wait when unattended = "wait"
max_pending = 100                      # requests waiting at once; past it, denied at once
"""
