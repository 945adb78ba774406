"""``fencepost doctor``: check a state directory; repair only what is safe.

Each check returns findings; ``fix=True`` applies only repairs that cannot lose anything:
settling a crashed protocol write (``Session.recover``: torn bytes go to the quarantine, never
away), and ending the child processes a dead gateway left running (only those provably its
own, docs/design/exec.md CHILD-I2). A change made outside the protocol is reported, never
repaired; a dead holder's lease is reported (the next attempt takes it over). It never deletes
or rewrites a transcript (Invariant DOCTOR-I1).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from ..core import Session, SessionStore, holder_alive, verify_transcript
from ..errors import ConfigError, FencepostError, McpServerError, OutsideProtocolChangeError
from .agent import sandbox_status
from .children import reap_orphans
from .config import LimitsConfig, StatePaths, load_config
from .gateway import running_gateway
from .mcp import McpServerConfig
from .resources import judge, process_usage, state_usage

__all__ = ["Finding", "Status", "run_doctor"]

Status = Literal["ok", "warn", "fail", "fixed"]


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    detail: str
    subject: str | None = None

    def to_json(self) -> dict[str, object]:
        return asdict(self)


async def run_doctor(
    paths: StatePaths,
    *,
    config: str | None = None,
    fix: bool = False,
    providers: bool = False,
    mcp: bool = False,
) -> list[Finding]:
    out: list[Finding] = []
    out += await _check_config(paths, config)
    if not paths.root.is_dir():
        out.append(Finding("state", "fail", f"{paths.root} does not exist (nothing to check)"))
        return out
    out.append(
        Finding(
            "state",
            "ok" if os.access(paths.root, os.W_OK) else "fail",
            f"{paths.root} {'is' if os.access(paths.root, os.W_OK) else 'is not'} writable",
        )
    )
    out += _check_gateway_lock(paths)
    out += _check_cron_db(paths)
    out += _check_job_agents(paths, config)
    out += await _check_sessions(paths, fix=fix)
    out += _check_plugins(paths)
    out += _check_sandbox(paths, config)
    out += _check_children(paths, fix=fix)
    out += _check_resources(paths, config)
    if providers:
        out += await _check_providers(paths, config)
    out += await _check_mcp(paths, config, start=mcp)
    return out


async def _check_config(paths: StatePaths, config: str | None) -> list[Finding]:
    path = Path(config) if config else paths.config
    if not path.exists():
        if config:
            return [Finding("config", "fail", f"no config file at {path}")]
        return [Finding("config", "ok", "no config file: embedded defaults (demo mode)")]
    try:
        cfg = load_config(path)
        # Invariant DOCTOR-I2: the gateway's own check (tools, plugins' tools), not a lighter one.
        from .gateway import Gateway

        await Gateway(paths, cfg).agent_specs()
    except ConfigError as exc:
        return [Finding("config", "fail", str(exc))]
    return [
        Finding(
            "config", "ok", f"{path}: {len(cfg.agents)} agent(s), {len(cfg.providers)} provider(s)"
        )
    ]


def _check_gateway_lock(paths: StatePaths) -> list[Finding]:
    if not paths.gateway_lock.exists():
        return [Finding("gateway", "ok", "no gateway has run here yet")]
    owner = running_gateway(paths)
    if owner is None:
        return [Finding("gateway", "ok", "not running")]
    return [
        Finding(
            "gateway",
            "ok",
            f"running (pid {owner.get('pid', '?')} since {owner.get('since', '?')})",
        )
    ]


def _check_cron_db(paths: StatePaths) -> list[Finding]:
    db = paths.cron_db
    if not db.exists():
        return [Finding("cron", "ok", "no cron database yet")]
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            running = conn.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[
                0
            ]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return [Finding("cron", "fail", f"{db}: {exc}")]
    out = [
        Finding(
            "cron",
            "ok" if integrity == "ok" else "fail",
            f"{db}: schema v{version}, integrity {integrity}",
        )
    ]
    if running:
        out.append(
            Finding(
                "cron",
                "warn",
                f"{running} run(s) marked running: recorded "
                "interrupted at the next gateway start if no gateway runs them",
            )
        )
    return out


def _check_job_agents(paths: StatePaths, config: str | None) -> list[Finding]:
    """Invariant DOCTOR-I3: an enabled job whose agent the config a gateway here would run with
    lacks fails every run; say so, with the fix. Read-only."""
    from .config import agents_of
    from .cron import CronStore
    from .demo import gateway_config

    if not paths.cron_db.exists():
        return []
    try:
        cfg, _ = gateway_config(paths, config)  # the config `fencepost gateway` would use here
    except (ConfigError, FencepostError):
        return []  # the config check already failed, naming file, key and line
    agents = agents_of(cfg)
    known = ", ".join(sorted(agents))
    out: list[Finding] = []
    with CronStore(paths.cron_db, create=False) as store:
        origins = store.job_origins()
        for job, _ in store.list_jobs():
            if not job.enabled or job.agent in agents:
                continue
            short = job.job_id[:8]
            if origins.get(job.job_id) == "demo":
                fix = (
                    "a demo job: the next `fencepost gateway` start (or `fencepost reload`) "
                    f"removes it, or now: fencepost cron rm {short}"
                )
            else:
                fix = (
                    f"give it a configured agent: fencepost cron edit {short} --agent NAME, "
                    f"add [agents.{job.agent}] to the config, or fencepost cron disable {short}"
                )
            out.append(
                Finding(
                    "jobs",
                    "warn",
                    f"runs agent {job.agent!r}, which the config lacks (configured: {known}): "
                    f"every run fails; {fix}",
                    f"{job.name} ({short})",
                )
            )
    if not out:
        out.append(Finding("jobs", "ok", "every enabled job names a configured agent"))
    return out


async def _check_sessions(paths: StatePaths, *, fix: bool) -> list[Finding]:
    if not paths.sessions.is_dir():
        return [Finding("sessions", "ok", "no sessions yet")]
    store = SessionStore(paths.sessions, create=False)
    out: list[Finding] = []
    try:
        ids = store.session_ids()
        bad = 0
        for sid in ids:
            session = store.session(sid)
            out += await _check_session(session, fix=fix)
            report = verify_transcript(session.path)
            base = report.baseline
            if report.ok and base is not None and report.adopted_problems:
                # Invariant STORE-I15: an adopted problem is reported, not failed.
                out.append(
                    Finding(
                        "verify",
                        "ok",
                        f"{len(report.adopted_problems)} problem(s) before line {base.line} "
                        f"adopted by {base.by or 'an operator'}: {base.note}",
                        sid,
                    )
                )
            if not report.ok:
                bad += 1
                first = report.problems[0]
                out.append(
                    Finding(
                        "verify",
                        "fail",
                        f"line {first.line}: {first.message} ({len(report.problems)} problem(s))",
                        sid,
                    )
                )
        out.append(
            Finding(
                "sessions",
                "ok" if not bad else "fail",
                f"{len(ids)} session(s) verified, {bad} with problems",
            )
        )
    finally:
        store.close()
    return out


async def _check_session(session: Session, *, fix: bool) -> list[Finding]:
    out: list[Finding] = []
    sid = session.session_id
    quarantined, torn = _tail_facts(session)
    if quarantined:
        out.append(
            Finding(
                "quarantine",
                "warn",
                f"{quarantined} torn write(s) kept in {session.quarantine_path}",
                sid,
            )
        )
    if torn:
        if fix:  # Invariant DOCTOR-I1: the only repair, and it moves bytes, never drops them
            try:
                if await session.recover():
                    out.append(Finding("torn-tail", "fixed", "quarantined a torn tail", sid))
            except OutsideProtocolChangeError as exc:
                out.append(Finding("torn-tail", "fail", f"not repaired: {exc}", sid))
        else:
            out.append(
                Finding(
                    "torn-tail",
                    "warn",
                    "the last line is incomplete (run with --fix to move it to the quarantine)",
                    sid,
                )
            )
    holder = session.lease_holder()
    if holder is not None:
        alive = holder_alive(holder)
        if alive is False:
            out.append(
                Finding(
                    "lease",
                    "warn",
                    f"held by a dead process (run {holder.run_id}, "
                    f"pid {holder.pid}); the next attempt takes it over",
                    sid,
                )
            )
        else:
            out.append(
                Finding("lease", "ok", f"held by run {holder.run_id} (pid {holder.pid})", sid)
            )
    return out


def _tail_facts(session: Session) -> tuple[int, bool]:
    """(torn writes in the quarantine, whether the transcript ends mid-line). Read-only."""
    q = Path(session.quarantine_path)
    quarantined = len(q.read_bytes().splitlines()) if q.exists() else 0
    with open(session.path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        torn = bool(size) and os.pread(f.fileno(), 1, size - 1) != b"\n"
    return quarantined, torn


def _check_resources(paths: StatePaths, config: str | None) -> list[Finding]:
    """Watermarks of the running gateway's process and of the state directory (GATEWAY-I5)."""
    path = Path(config) if config else paths.config
    try:
        limits = load_config(path).limits if path.exists() else LimitsConfig()
    except ConfigError:
        limits = LimitsConfig()  # the config check already failed, naming the key
    owner = running_gateway(paths)
    pid = owner.get("pid") if owner else None
    process = process_usage(pid) if isinstance(pid, int) else None
    subject = f"gateway pid {pid}" if process is not None else None
    return [
        Finding(w.check, w.status, w.detail, subject if w.check != "disk" else None)
        for w in judge(process, state_usage(paths), limits)
    ]


def _check_plugins(paths: StatePaths) -> list[Finding]:
    out = []
    try:
        conn = sqlite3.connect(":memory:")
        conn.execute("CREATE VIRTUAL TABLE t USING fts5(x)")
        conn.close()
        out.append(Finding("plugins", "ok", "SQLite FTS5 available (memory plugin)"))
    except sqlite3.Error as exc:
        out.append(Finding("plugins", "fail", f"SQLite FTS5 unavailable: {exc}"))
    return out


def _check_sandbox(paths: StatePaths, config: str | None) -> list[Finding]:
    """Whether the exec sandbox (bubblewrap) works here; a failure only for a config whose
    agents or stdio MCP servers ask for it (docs/design/exec.md EXEC-I6, mcp.md MCP-I14)."""
    path = Path(config) if config else paths.config
    try:
        cfg = load_config(path) if path.exists() else None
    except ConfigError:
        cfg = None  # the config check already failed, naming the key
    agents = cfg.agents.values() if cfg is not None else ()
    servers = cfg.mcp.values() if cfg is not None else ()
    keys = [f"agents.{a.name}.exec.sandbox" for a in agents if "exec" in a.tools and a.exec.sandbox]
    keys += [f"mcp.{s.name}.sandbox" for s in servers if s.enabled and s.command and s.sandbox]
    status = sandbox_status()
    if status.available:
        return [Finding("sandbox", "ok", f"exec sandbox available: {status.detail}")]
    if keys:
        return [
            Finding(
                "sandbox",
                "fail",
                f"{', '.join(sorted(keys))} = true, but {status.detail}; their commands and "
                "servers are refused until it works",
            )
        ]
    return [
        Finding(
            "sandbox", "ok", f"exec sandbox not available (no agent asks for it): {status.detail}"
        )
    ]


def _check_children(paths: StatePaths, *, fix: bool) -> list[Finding]:
    """Child processes a dead gateway left running (CHILD-I2): reported; ended with --fix, and
    only those provably its own."""
    report = reap_orphans(paths.children, dry_run=not fix)
    out: list[Finding] = []
    for done in report.actions:
        subject = f"pid {done.record.pid}" if done.record is not None else done.path.name
        if done.action == "orphan":
            detail = (
                f"left running by a dead fencepost process: {done.detail} (run with --fix to end "
                "its process group)"
            )
            out.append(Finding("children", "warn", detail, subject))
        elif done.action == "killed":
            detail = f"ended the process group left by a dead fencepost process: {done.detail}"
            out.append(Finding("children", "fixed", detail, subject))
        elif done.action in ("gone", "reused", "unreadable"):
            verb = "record dropped" if fix else "stale record (dropped by --fix or a gateway start)"
            status: Status = "fixed" if fix else "ok"
            out.append(
                Finding("children", status, f"{verb}: {done.action}: {done.detail}", subject)
            )
    running = len(report.of("owner_alive"))
    if not out:
        what = f"{running} running under a live fencepost process" if running else "none recorded"
        out.append(Finding("children", "ok", f"no orphaned child processes ({what})"))
    return out


async def _check_providers(paths: StatePaths, config: str | None) -> list[Finding]:
    from .providers import ModelRequest, ProviderRegistry

    path = Path(config) if config else paths.config
    if not path.exists():
        return [Finding("providers", "ok", "only the built-in scripted model is configured")]
    cfg = load_config(path)
    out = []
    async with ProviderRegistry(cfg.providers, scripts=cfg.scripts) as registry:
        for agent in cfg.agents.values():
            for ref in (agent.model, *agent.fallbacks):
                try:
                    parsed = registry.check(ref)
                    provider = registry.get(parsed.provider)
                    request = ModelRequest(
                        [{"role": "user", "content": "ping"}], max_tokens=1, timeout_s=15
                    )
                    await provider.complete(parsed.model, request)
                    out.append(Finding("providers", "ok", f"{ref} answered", agent.name))
                except FencepostError as exc:
                    out.append(Finding("providers", "fail", f"{ref}: {exc}", agent.name))
    return out


def _mcp_static(server: McpServerConfig) -> list[tuple[Status, str]]:
    """What can be told about a server without starting it: its program and folder exist,
    the environment variables it takes secrets from are set (here: maybe not the gateway's)."""
    out: list[tuple[Status, str]] = []
    if server.command is not None:
        cmd = server.command
        found = (
            os.access(Path(server.cwd or ".") / cmd, os.X_OK) if "/" in cmd else shutil.which(cmd)
        )
        if not found:
            out.append(("fail", f"cannot run {cmd!r}: not found or not executable"))
        if server.cwd is not None and not Path(server.cwd).is_dir():
            out.append(("fail", f"its cwd {server.cwd} is not a folder"))
    for key, table in (("env_from", server.env_from), ("headers_from", server.headers_from)):
        for name, variable in table.items():
            if variable not in os.environ:
                out.append(
                    (
                        "warn",
                        f"{variable} (mcp.{server.name}.{key}.{name}) is not set here; the "
                        "gateway needs it in its environment",
                    )
                )
    return out


async def _check_mcp(paths: StatePaths, config: str | None, *, start: bool) -> list[Finding]:
    """One finding per configured MCP server: whether it can start (with ``start``: started,
    listed and stopped again; the agents' selections checked against what it offers)."""
    from .config import agents_of
    from .mcp import McpManager

    path = Path(config) if config else paths.config
    try:
        cfg = load_config(path) if path.exists() else None
    except ConfigError:
        return []  # the config check already failed, naming file, key and line
    if cfg is None or not cfg.mcp:
        return []
    out: list[Finding] = []
    for name, server in sorted(cfg.mcp.items()):
        if not server.enabled:
            out.append(Finding("mcp", "ok", "disabled: nothing starts it", name))
            continue
        problems = _mcp_static(server)
        out += [Finding("mcp", status, detail, name) for status, detail in problems]
        if any(status == "fail" for status, _ in problems):
            continue
        if not start:
            if not problems:
                out.append(
                    Finding(
                        "mcp",
                        "ok",
                        f"{server.transport}: {server.target} (not started; --mcp starts it)",
                        name,
                    )
                )
            continue
        try:
            with McpManager.quiet():  # the finding says it
                async with McpManager({name: server}, work_dir=paths.mcp_work) as manager:
                    tools = await manager.tools(name, fresh=True)
        except McpServerError as exc:
            out.append(Finding("mcp", "fail", exc.detail, name))
            continue
        offered = {t.name for t in tools}
        out.append(Finding("mcp", "ok", f"started; offers {len(tools)} tool(s)", name))
        for agent in agents_of(cfg).values():
            for tool in agent.tools:
                picked = tool.split(".", 1)[1] if tool.startswith(f"{name}.") else "*"
                if picked != "*" and picked not in offered:
                    out.append(
                        Finding(
                            "mcp",
                            "warn",
                            f"agents.{agent.name}.tools selects {tool}, which the server "
                            f"does not offer (it offers: {', '.join(sorted(offered))})",
                            name,
                        )
                    )
    return out


def summarize(findings: Sequence[Finding]) -> Status:
    if any(f.status == "fail" for f in findings):
        return "fail"
    if any(f.status == "warn" for f in findings):
        return "warn"
    return "ok"
