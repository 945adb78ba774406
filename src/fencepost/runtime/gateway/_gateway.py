"""The gateway: one asyncio process per state directory running the scheduler, heartbeats,
plugins and (from the surface) the HTTP server. See docs/design/gateway.md.
"""

from __future__ import annotations

import asyncio
import contextvars
import fcntl
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import pluggy

from ...core import SessionStore, TranscriptUpdated, custom
from ...errors import (
    ConfigError,
    GatewayError,
    InvalidJobError,
    MessageNotWrittenError,
)
from ..agent import (
    STEERING_MESSAGE,
    AgentSpec,
    ToolRegistry,
    TurnResult,
    check_message_text,
    run_turn,
)
from ..children import ChildRegistry, reap_orphans
from ..config import (
    AgentConfig,
    GatewayConfig,
    HeartbeatConfig,
    StatePaths,
    agent_spec,
    agents_of,
    check_model,
    load_config,
    located,
)
from ..cron import (
    Clock,
    CronStore,
    Job,
    JobValidator,
    RunContext,
    RunOutcome,
    Scheduler,
    SessionMirrorDeliverer,
    SystemClock,
    WebhookDeliverer,
)
from ..demo import DemoRetired, retire_demo_jobs
from ..mcp import McpManager
from ..providers import (
    AttemptFailed,
    ChainEvent,
    FirstTokenReceived,
    ModelRef,
    ProviderRegistry,
    TextStreamed,
    ToolCallReceived,
)
from ..resources import TRIM_EVERY_S, release_free_memory
from ._approvals import ApprovalService
from ._hooks import call_hook, make_plugin_manager
from ._logging import JsonLinesHandler
from ._reload import ReloadResult, plan_reload

__all__ = [
    "Gateway",
    "GatewayBusyError",
    "GatewayStatistics",
    "QUEUED_MESSAGE",
    "SendResult",
    "job_validator",
    "main_session_id",
    "running_gateway",
]

log = logging.getLogger("fencepost.gateway")

#: customType of the record that makes a message sent to a busy session durable before its turn
#: starts (not in the model's context; the turn writes the message itself; GATEWAY-I6).
QUEUED_MESSAGE = "fencepost.queued-message"

#: The cron job a turn runs for, for its log lines (set in the scheduler's run task).
_CURRENT_JOB: contextvars.ContextVar[str | None] = contextvars.ContextVar("job", default=None)


class GatewayBusyError(GatewayError):
    """Another gateway process holds this state directory."""

    def __init__(self, root: str, owner: dict[str, Any]) -> None:
        who = f"pid {owner.get('pid', '?')} since {owner.get('since', '?')}"
        if owner.get("url"):
            who += f", at {owner['url']}"
        super().__init__(
            f"another gateway ({who}) is running on {root}; stop it first, or use another "
            "state directory (--home / FENCEPOST_HOME)"
        )
        self.root = root
        self.owner = owner


def running_gateway(paths: StatePaths) -> dict[str, Any] | None:
    """The owner record of the gateway running on ``paths`` (pid, since, url), or None."""
    if not paths.gateway_lock.exists():
        return None
    fd = os.open(paths.gateway_lock, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None  # nobody holds it
    except BlockingIOError:
        pass
    finally:
        os.close(fd)
    try:
        owner: dict[str, Any] = json.loads(paths.gateway_lock.read_text() or "{}")
    except ValueError:
        owner = {}
    url_file = paths.root / "gateway.url"
    if url_file.exists():
        owner["url"] = url_file.read_text().strip()
    return owner


def _mcp_manager(config: GatewayConfig, paths: StatePaths) -> McpManager:
    """The gateway's MCP servers, their processes recorded among its children (MCP-I13)."""
    return McpManager(
        config.mcp,
        log_dir=paths.logs / "mcp",
        children=ChildRegistry(paths.children),
        work_dir=paths.mcp_work,
    )


def main_session_id(agent: str) -> str:
    return f"{agent}-main"


@dataclass(frozen=True)
class SendResult:
    """What happened to a message sent to a session."""

    status: Literal["started", "queued", "steered"]
    session_id: str
    run_id: str | None


@dataclass(frozen=True)
class GatewayStatistics:
    started_at: str | None
    running_turns: int
    queued_turns: int
    turns_ok: int
    turns_failed: int
    heartbeats_run: int
    heartbeats_skipped: int
    heartbeats_suppressed: int
    lanes: int  # sessions with a turn running or queued in this process (GATEWAY-I4)
    reloads: int  # config reloads applied
    reloads_refused: int
    #: Provider registries replaced by a reload and still used by turns that began before it.
    retired_provider_registries: int


class _Lane:
    """Turns on one session from this process run one at a time, in arrival order."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()  # FIFO: waiters are served in the order they came
        self.waiting = 0
        self.current_run: str | None = None
        #: Steering sent to the current run, by id: its text, and whether the steering record
        #: was written (a future ``send`` settles). What the run did not answer runs next
        #: (RUNNER-I5).
        self.steering: dict[str, tuple[str, asyncio.Future[bool]]] = {}

    @property
    def busy(self) -> bool:
        return self.lock.locked()


class _Providers:
    """A provider registry and the turns using it: a reload retires it, and it is closed when
    the last turn that took it ends (Invariant GATEWAY-I10)."""

    def __init__(self, registry: ProviderRegistry) -> None:
        self.registry = registry
        self.users = 0
        self.retired = False


@dataclass(frozen=True)
class _Prepared:
    """A config checked in full, and what the gateway runs it with."""

    config: GatewayConfig
    agents: dict[str, AgentConfig]
    providers: ProviderRegistry
    tools: ToolRegistry
    specs: dict[str, AgentSpec]


class Gateway:
    """Construct, ``await start()``, use, ``await stop()`` (or ``async with``).

    ``config_source`` reads the config again for ``reload()`` (the CLI passes the one it
    started with); without it, ``reload()`` re-reads ``config.path``."""

    def __init__(
        self,
        paths: StatePaths,
        config: GatewayConfig,
        *,
        clock: Clock | None = None,
        plugins: Iterable[object] = (),
        load_entry_points: bool = True,
        builtin_plugins: bool = True,
        provider_sleep: Callable[[float], Any] | None = None,
        config_source: Callable[[], GatewayConfig] | None = None,
    ) -> None:
        self.paths = paths
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.plugins: pluggy.PluginManager = make_plugin_manager(load_entry_points)
        if builtin_plugins:
            from .plugins import builtin_plugins as _builtins

            for name, plugin in _builtins(config.plugins):
                self.plugins.register(plugin, name=name)
        for plugin in plugins:
            self.plugins.register(plugin)
        self._provider_sleep = provider_sleep
        self.agents: dict[str, AgentConfig] = dict(agents_of(config))
        self.started_at: datetime | None = None
        self._lanes: dict[str, _Lane] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._lock_fd: int | None = None
        self._plugins_started = False
        self._log_handler: JsonLinesHandler | None = None
        self._subscribers: list[Callable[[dict[str, Any]], object]] = []
        self._counts = dict.fromkeys(
            ["ok", "failed", "hb_run", "hb_skipped", "hb_suppressed", "reloads", "refused"], 0
        )
        self._config_source = config_source
        self._reload_lock = asyncio.Lock()
        self._heartbeats: dict[str, tuple[HeartbeatConfig, asyncio.Task[Any]]] = {}
        self._retention_task: asyncio.Task[Any] | None = None
        self._retired: list[_Providers] = []
        self._loops = False  # heartbeat and retention loops run (start with background)
        self._stopping = False  # stop() has begun: no follow-up turn starts any more
        # Set by start():
        self.store: SessionStore
        self.cron: CronStore
        #: Tool calls an ``ask`` policy holds, waiting for an operator (docs/design/approvals.md).
        self.approvals: ApprovalService
        self.scheduler: Scheduler
        self._providers: _Providers | None = None
        self.tools: ToolRegistry
        self.specs: dict[str, AgentSpec] = {}
        #: MCP servers (docs/design/mcp.md): none runs until a turn uses one; stopped by stop().
        self.mcp = _mcp_manager(config, paths)
        #: Set by start() on a config that is not the demo's: the demo jobs it removed.
        self.left_demo: DemoRetired | None = None

    @property
    def providers(self) -> ProviderRegistry:
        """The provider registry new turns use (a reload may replace it; GATEWAY-I10)."""
        if self._providers is None:
            raise RuntimeError("the gateway has not started")
        return self._providers.registry

    async def agent_specs(
        self, config: GatewayConfig | None = None
    ) -> tuple[ToolRegistry, dict[str, AgentSpec]]:
        """The tools (plugins' included) and every agent of ``config`` (default: the one in
        force) as the runner sees it; a ConfigError names the config file, key and line
        (Invariant DOCTOR-I2). Reads and writes nothing: ``doctor`` asks a gateway it does not
        start, so it refuses what ``gateway`` and ``reload`` refuse."""
        config = config or self.config
        plugin_tools = [
            t for got in await call_hook(self.plugins, "fencepost_tools", gateway=self) for t in got
        ]
        tools = ToolRegistry(plugin_tools)
        try:
            specs = {
                name: agent_spec(
                    cfg,
                    tools,
                    self.paths,
                    context_windows=config.context_windows,
                    mcp=self.mcp,
                    mcp_servers=config.mcp,
                )
                for name, cfg in agents_of(config).items()
            }
        except ConfigError as exc:
            raise located(config, exc) from None
        return tools, specs

    async def _prepare(
        self, config: GatewayConfig, providers: ProviderRegistry | None = None
    ) -> _Prepared:
        """Check ``config`` in full, changing nothing: every agent's tools and spec, and every
        model reference against the providers that would serve it (Invariant GATEWAY-I8: the
        one check ``start`` and ``reload`` make). ``providers`` is the registry to check
        against; None builds a new one, closed again if the check fails."""
        own = providers is None
        if providers is None:
            kw: dict[str, Any] = {}
            if self._provider_sleep is not None:
                kw["sleep"] = self._provider_sleep
            try:
                providers = ProviderRegistry(config.providers, scripts=config.scripts, **kw)
            except ConfigError as exc:
                raise located(config, exc) from None
        try:
            tools, specs = await self.agent_specs(config)
            agents = dict(agents_of(config))
            try:
                for cfg in agents.values():
                    for ref in (cfg.model, *cfg.fallbacks):
                        providers.check(ref)
            except ConfigError as exc:
                raise located(config, exc) from None
        except BaseException:
            if own:
                await providers.aclose()
            raise
        return _Prepared(config, agents, providers, tools, specs)

    def __repr__(self) -> str:
        state = "running" if self.started_at else "stopped"
        return f"<Gateway {self.paths.root} {state} lanes={len(self._lanes)}>"

    def statistics(self) -> GatewayStatistics:
        return GatewayStatistics(
            started_at=self.started_at.isoformat() if self.started_at else None,
            running_turns=sum(lane.busy for lane in self._lanes.values()),
            queued_turns=sum(lane.waiting for lane in self._lanes.values()),
            turns_ok=self._counts["ok"],
            turns_failed=self._counts["failed"],
            heartbeats_run=self._counts["hb_run"],
            heartbeats_skipped=self._counts["hb_skipped"],
            heartbeats_suppressed=self._counts["hb_suppressed"],
            lanes=len(self._lanes),
            reloads=self._counts["reloads"],
            reloads_refused=self._counts["refused"],
            retired_provider_registries=len(self._retired),
        )

    # ---- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, *, background: bool = True) -> None:
        """Take the state directory and open everything. ``background=False`` starts neither
        the scheduler loop nor heartbeats (``fencepost cron run`` without a running gateway)."""
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self._take_gateway_lock()
        try:
            await self._open(background)
        except BaseException:
            if self._plugins_started:  # a plugin that started gets to clean up
                await call_hook(self.plugins, "fencepost_shutdown", gateway=self)
            await self._close()
            raise

    async def _open(self, background: bool) -> None:
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        ret = self.config.retention
        self._log_handler = JsonLinesHandler(
            self.paths.logs / "gateway.jsonl", max_bytes=ret.log_max_bytes, backups=ret.log_backups
        )
        logging.getLogger("fencepost").addHandler(self._log_handler)
        logging.getLogger("fencepost").setLevel(logging.INFO)
        # Invariant CHILD-I3: what a dead gateway left running here ends before anything starts.
        reaped = await asyncio.to_thread(reap_orphans, self.paths.children)
        for done in reaped.of("killed", "gone", "reused", "unreadable"):
            log.warning(
                "child process %s", f"{done.action}: {done.detail}", extra={"action": "reap"}
            )
        self.store = SessionStore(
            self.paths.sessions,
            durability=self.config.durability,
            max_open_sessions=self.config.limits.max_open_sessions,
        )
        self.store.subscribe(self._on_transcript_updated)
        self.approvals = ApprovalService(
            self.store,
            now=self.clock.now,
            max_pending=self.config.approvals.max_pending,
            publish=self._publish,
        )
        self.cron = CronStore(self.paths.cron_db, create=True)
        self.mcp = _mcp_manager(self.config, self.paths)
        ready = await self._prepare(self.config)
        self._providers = _Providers(ready.providers)
        self.agents, self.tools, self.specs = ready.agents, ready.tools, ready.specs
        if not self.config.demo:  # before the scheduler: no demo job runs on a real config
            self.left_demo = self._leave_demo()
        self.scheduler = Scheduler(
            self.cron,
            self._execute,
            clock=self.clock,
            max_concurrent_runs=self.config.cron.max_concurrent_runs,
            catchup_grace_s=self.config.cron.catch_up_grace_s,
            deliverers={
                "session": SessionMirrorDeliverer(self.store),
                "webhook": WebhookDeliverer(),
            },
            poll_interval_s=5.0,
        )
        self._plugins_started = True
        await call_hook(self.plugins, "fencepost_startup", gateway=self)
        self.started_at = datetime.now(UTC)
        self._stopping = False
        if not background:
            return
        self._loops = True
        report = await self.scheduler.start()
        log.info(
            "gateway started: %d interrupted, %d catch-up runs, %d missed slots",
            len(report.interrupted),
            report.catchup_runs,
            report.missed,
            extra={"action": "start"},
        )
        self.spawn(self.scheduler.run(), name="scheduler")
        self.spawn(self._trim_loop(), name="trim")
        self._background_loops()

    async def stop(self, *, grace_s: float = 10.0) -> None:
        """Graceful: no new runs; in-flight runs get ``grace_s`` to finish, then are cancelled
        (the ledger records them ``interrupted``); leases and locks are released."""
        if self.started_at is None:
            return  # never started, or already stopped (a failed start closed everything)
        self._stopping = True
        try:  # stop() refuses new dispatches at once, then waits for the runs in flight
            await asyncio.wait_for(self.scheduler.stop(cancel_running=False), grace_s)
        except TimeoutError:
            await self.scheduler.stop(cancel_running=True)
        while self._background:  # a task ending may spawn another (none once stopping)
            for task in list(self._background):
                task.cancel()
            await asyncio.wait(list(self._background))
        # Invariant APPROVAL-I5: what still waits is withdrawn and recorded before the store
        # closes.
        await self.approvals.aclose()
        await call_hook(self.plugins, "fencepost_shutdown", gateway=self)
        log.info("gateway stopped", extra={"action": "stop"})
        await self._close()

    async def _close(self) -> None:
        await self.mcp.aclose()  # Invariant MCP-I9: no server outlives a stopped gateway
        for closer in ("store", "cron"):
            obj = getattr(self, closer, None)
            if obj is not None:
                obj.close()
        if self._providers is not None:
            await self._providers.registry.aclose()
            self._providers = None
        for retired in self._retired:  # turns that held them ended when the gateway stopped
            await retired.registry.aclose()
        self._retired.clear()
        self._heartbeats.clear()
        self._retention_task = None
        self._loops = False
        if self._log_handler is not None:
            logging.getLogger("fencepost").removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
        self.started_at = None

    # ---- reload ------------------------------------------------------------------------------

    def _read_config(self) -> GatewayConfig:
        if self._config_source is not None:
            return self._config_source()
        if self.config.path is None:
            raise ConfigError(
                "this gateway runs on a config given in memory, with no file to read again; "
                "restart it to change its config"
            )
        return load_config(self.config.path)

    async def reload(self, config: GatewayConfig | None = None) -> ReloadResult:
        """Apply ``config`` (default: read again from where it came from) to the running
        gateway, or refuse it and change nothing.

        The new config is checked in full first, by the code ``start`` runs (GATEWAY-I8); a
        ConfigError (file, key, line) leaves the old one in force. Then agents, their specs,
        tools, providers, model windows, cron limits, retention, heartbeats and the job
        validator change at once, between two steps of the event loop; keys that need a restart
        are kept at their old values and reported (GATEWAY-I9). Turns already asked for finish
        with what they started with; none is cancelled (GATEWAY-I10)."""
        if self.started_at is None:
            raise GatewayError("the gateway is not running; start it to apply a config")
        async with self._reload_lock:
            try:
                if config is None:
                    config = await asyncio.to_thread(self._read_config)
                result, effective = plan_reload(self.config, config)
                keep = not any(k.startswith(("providers", "scripts")) for k in result.applied)
                current = self._providers
                assert current is not None
                ready = await self._prepare(effective, current.registry if keep else None)
            except ConfigError as exc:
                self._counts["refused"] += 1
                log.warning(
                    "config reload refused, the old config stays in force: %s",
                    exc,
                    extra={"action": "reload", "status": "refused"},
                )
                raise
            self._apply(ready)  # Invariant GATEWAY-I8: nothing changed before this line
            self._counts["reloads"] += 1
            await self._release(current)
            if not self.config.demo:
                result = replace(result, demo_jobs_removed=self._leave_demo().jobs)
                self.scheduler.wake()
        log.info(
            "; ".join(result.describe()),
            extra={"action": "reload", "status": "applied" if result.changed else "unchanged"},
        )
        if result.restart_required:
            # Invariant GATEWAY-I9: a key that waits for a restart is said, not silently kept.
            log.warning(
                "config keys that need a restart were not applied: %s",
                ", ".join(result.restart_required),
                extra={"action": "reload", "status": "restart_required"},
            )
        return result

    def _leave_demo(self) -> DemoRetired:
        """Invariant DEMO-I2: on a config that is not the demo's, the jobs demo mode installed
        are removed (only those), and the log says so."""
        retired = retire_demo_jobs(self.cron)
        for line in retired.describe():
            log.warning(line, extra={"action": "demo", "status": "retired"})
        return retired

    def _apply(self, ready: _Prepared) -> None:
        """Swap a checked config in; synchronous, so no turn sees half of it."""
        old = self._providers
        assert old is not None
        self.config = ready.config
        self.agents, self.tools, self.specs = ready.agents, ready.tools, ready.specs
        self.mcp.configure(ready.config.mcp)
        if ready.providers is not old.registry:
            self._providers = _Providers(ready.providers)
            old.retired = True
            self._retired.append(old)
        self.approvals.max_pending = ready.config.approvals.max_pending
        self.scheduler.max_concurrent_runs = ready.config.cron.max_concurrent_runs
        self.scheduler.catchup_grace_s = ready.config.cron.catch_up_grace_s
        self.scheduler.wake()  # more room for runs, maybe
        if self._log_handler is not None:
            self._log_handler.max_bytes = ready.config.retention.log_max_bytes
            self._log_handler.backups = ready.config.retention.log_backups
        if self._loops:
            self._background_loops()

    async def _release(self, providers: _Providers) -> None:
        """Invariant GATEWAY-I10: a retired registry is closed once no turn uses it, so many
        reloads leave at most one registry per generation of still-running turns."""
        if providers.retired and providers.users == 0 and providers in self._retired:
            self._retired.remove(providers)
            await providers.registry.aclose()

    def _take_gateway_lock(self) -> None:
        # Invariant GATEWAY-I1: one gateway per state directory.
        path = self.paths.gateway_lock
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            try:
                owner = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                owner = {}
            raise GatewayBusyError(str(self.paths.root), owner) from None
        rec = {"pid": os.getpid(), "since": datetime.now(UTC).isoformat(timespec="seconds")}
        data = json.dumps(rec).encode() + b"\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        self._lock_fd = fd

    def spawn(self, coro: Any, *, name: str) -> asyncio.Task[Any]:
        """A background task owned by the gateway (cancelled on stop; failures logged)."""
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error(
                    "background task %s failed",
                    name,
                    exc_info=t.exception(),
                    extra={"action": "task"},
                )

        task.add_done_callback(done)
        return task

    # ---- events for live views -----------------------------------------------------------------

    def subscribe(self, callback: Callable[[dict[str, Any]], object]) -> Callable[[], None]:
        """Live events (transcript updates, turn start/finish) as JSON-able dicts."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def _publish(self, event: dict[str, Any]) -> None:
        for cb in list(self._subscribers):
            try:
                cb(event)
            except Exception:
                log.exception("event subscriber failed", extra={"action": "publish"})

    def _on_transcript_updated(self, event: TranscriptUpdated) -> None:
        self._publish(
            {
                "type": "transcript",
                "session_id": event.session_id,
                "writer": event.writer,
                "run_id": event.run_id,
                "first_seq": event.first_seq,
                "last_seq": event.last_seq,
            }
        )
        self.spawn(
            call_hook(self.plugins, "fencepost_transcript_updated", gateway=self, event=event),
            name="transcript hook",
        )

    # ---- turns -----------------------------------------------------------------------------

    def agent(self, name: str | None) -> str:
        if name is None:
            return next(iter(self.agents))
        if name not in self.agents:
            raise ConfigError(f"no agent {name!r}; configured: {', '.join(self.agents)}")
        return name

    def lane_busy(self, session_id: str) -> bool:
        lane = self._lanes.get(session_id)
        return lane is not None and lane.busy

    async def turn(
        self,
        session_id: str,
        agent: str | None = None,
        *,
        prompt: str | None = None,
        system_event: str | None = None,
        run_id: str | None = None,
        model: str | None = None,
        fallbacks: tuple[str, ...] | None = None,
        timeout_s: float | None = None,
        prompt_written: asyncio.Event | None = None,
        approval_wait_s: float | None = None,
    ) -> TurnResult:
        """Run a turn in the session's lane (after the turns queued before it).

        ``prompt_written`` is set once the prompt is in the transcript. The turn runs with the
        agent and providers in force when it was asked for, whatever a reload changes while it
        waits or runs (Invariant GATEWAY-I10). ``approval_wait_s`` bounds how long a tool call
        held for approval waits (None: ``[approvals] timeout_s``, an interactive turn; 0: denied
        at once, an unattended one)."""
        name = self.agent(agent)
        spec, cfg, providers = self.specs[name], self.agents[name], self._providers
        assert providers is not None, "the gateway has not started"
        providers.users += 1
        run_id = run_id or f"run-{uuid.uuid4().hex[:12]}"
        try:
            lane = self._lanes.setdefault(session_id, _Lane())
            lane.waiting += 1
            try:
                await lane.lock.acquire()
            finally:
                lane.waiting -= 1
            answered: tuple[str, ...] = ()
            try:
                lane.current_run = run_id
                result = await self._turn(
                    session_id,
                    name,
                    run_id,
                    prompt,
                    system_event,
                    model,
                    fallbacks,
                    timeout_s,
                    prompt_written,
                    spec=spec,
                    cfg=cfg,
                    providers=providers.registry,
                    approval_wait_s=approval_wait_s,
                )
                answered = result.steering
                return result
            finally:
                lane.current_run = None
                self._follow_up(session_id, name, lane, answered)
                lane.lock.release()
                if not lane.waiting and not lane.busy:
                    # Invariant GATEWAY-I4: a lane lives only while a turn runs or waits in it.
                    del self._lanes[session_id]
        finally:
            providers.users -= 1
            await self._release(providers)

    def _follow_up(
        self, session_id: str, agent: str, lane: _Lane, answered: tuple[str, ...]
    ) -> None:
        """Queue a turn for each steering message the run did not answer (no step left, a
        failure, a message that came after its last step): sent is answered (RUNNER-I5)."""
        left = [(sid, *sent) for sid, sent in lane.steering.items() if sid not in answered]
        lane.steering = {}
        for sid, text, written in left:
            if self._stopping:  # the steering record stays in the transcript: kept, unanswered
                log.warning(
                    "steering %s not answered: the gateway is stopping",
                    sid,
                    extra={"action": "steering", "session": session_id},
                )
                continue
            run_id = f"msg-{uuid.uuid4().hex[:12]}"
            self.spawn(self._answer(session_id, agent, text, run_id, written), name=run_id)

    async def _answer(
        self,
        session_id: str,
        agent: str,
        text: str,
        run_id: str,
        written: asyncio.Future[bool],
    ) -> None:
        """A follow-up turn for steering its run left unanswered, once ``send`` wrote it (a
        message ``send`` refused is not answered: nothing was accepted)."""
        if await written:
            await self.turn(session_id, agent, prompt=text, run_id=run_id)

    async def _turn(
        self,
        session_id: str,
        agent: str,
        run_id: str,
        prompt: str | None,
        system_event: str | None,
        model: str | None,
        fallbacks: tuple[str, ...] | None,
        timeout_s: float | None,
        prompt_written: asyncio.Event | None = None,
        *,
        spec: AgentSpec,
        cfg: AgentConfig,
        providers: ProviderRegistry,
        approval_wait_s: float | None = None,
    ) -> TurnResult:
        chain = [str(ModelRef.parse(r)) for r in spec.chain(model, fallbacks)]
        await call_hook(
            self.plugins,
            "fencepost_turn_started",
            gateway=self,
            session_id=session_id,
            agent=agent,
            run_id=run_id,
            model=chain[0],
        )
        self._publish(
            {"type": "turn_started", "session_id": session_id, "run_id": run_id, "agent": agent}
        )
        answering = {"index": 0, "first": True}

        async def on_event(event: ChainEvent) -> None:
            if isinstance(event, AttemptFailed) and event.retry_in_s is None:
                answering["index"] = min(answering["index"] + 1, len(chain) - 1)
            if isinstance(event, FirstTokenReceived) and answering["first"]:
                answering["first"] = False
                await call_hook(
                    self.plugins,
                    "fencepost_model_answering",
                    gateway=self,
                    session_id=session_id,
                    agent=agent,
                    run_id=run_id,
                    model=chain[answering["index"]],
                )
            payload = _event_json(event)
            if payload is None:
                return
            self._publish(
                {"type": "turn_event", "session_id": session_id, "run_id": run_id, "event": payload}
            )
            if payload["type"] != "text_delta":  # deltas are for live views, not recorders
                await call_hook(
                    self.plugins,
                    "fencepost_turn_event",
                    gateway=self,
                    session_id=session_id,
                    run_id=run_id,
                    event=payload,
                )

        wait_s = self.config.approvals.timeout_s if approval_wait_s is None else approval_wait_s
        try:
            result = await run_turn(
                self.store.session(session_id),
                spec,
                providers=providers,
                run_id=run_id,
                prompt=prompt,
                system_event=system_event,
                model=model,
                fallbacks=fallbacks,
                timeout_s=timeout_s or cfg.timeout_s,
                on_event=on_event,
                prompt_written=prompt_written,
                # Invariant APPROVAL-I4: the policy, not the model, says how long a request waits.
                approve=self.approvals.approver(session_id, run_id, agent, wait_s=wait_s),
            )
        finally:
            # Invariant APPROVAL-I5: nothing of a run that ended still waits for a decision.
            await self.approvals.withdraw_run(run_id)
        self._counts["ok" if result.ok else "failed"] += 1
        log.info(
            "turn %s: %s",
            result.status,
            result.error_message or result.model,
            extra={
                "action": "turn",
                "session": session_id,
                "run": run_id,
                "job": _CURRENT_JOB.get(),
                "status": result.status,
                "elapsed_s": round(result.elapsed_s, 3),
            },
        )
        await call_hook(
            self.plugins,
            "fencepost_turn_finished",
            gateway=self,
            session_id=session_id,
            agent=agent,
            run_id=run_id,
            result=result,
        )
        self._publish(
            {
                "type": "turn_finished",
                "session_id": session_id,
                "run_id": run_id,
                "status": result.status,
            }
        )
        return result

    async def send(self, session_id: str, text: str, agent: str | None = None) -> SendResult:
        """A user message for a session: steers the running turn when the agent allows it,
        else queues a follow-up turn; never dropped, never refused because the session is busy
        (Invariant GATEWAY-I2).

        Returns once the message is durable in the transcript (Invariant GATEWAY-I6): a text the
        store would refuse is refused here, before anything is written; a started turn is
        awaited until it has written the message; a queued one leaves a ``QUEUED_MESSAGE``
        record now and writes the message itself when its turn starts.
        """
        name = self.agent(agent)
        check_message_text(text)
        session = self.store.session(session_id)
        lane = self._lanes.get(session_id)
        if lane is not None and lane.busy and lane.current_run and self.agents[name].steering:
            # Invariant RUNNER-I5: the running turn writes it where the model answers it; what
            # it leaves unanswered becomes a follow-up turn when it ends (``_follow_up``).
            sid, run = uuid.uuid4().hex[:12], lane.current_run
            landed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            lane.steering[sid] = (text, landed)  # before the write: the run may end meanwhile
            try:
                await session.append(
                    custom(STEERING_MESSAGE, {"id": sid, "run_id": run, "text": text}),
                    writer="steering",
                )
            except BaseException:
                landed.set_result(False)
                lane.steering.pop(sid, None)
                raise
            landed.set_result(True)
            return SendResult("steered", session_id, run)
        run_id = f"msg-{uuid.uuid4().hex[:12]}"
        if lane is not None and lane.busy:
            await session.append(
                custom(QUEUED_MESSAGE, {"run_id": run_id, "text": text}), writer="steering"
            )
            self.spawn(self.turn(session_id, name, prompt=text, run_id=run_id), name=run_id)
            return SendResult("queued", session_id, run_id)
        written = asyncio.Event()
        task = self.spawn(
            self.turn(session_id, name, prompt=text, run_id=run_id, prompt_written=written),
            name=run_id,
        )
        waiter = asyncio.ensure_future(written.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not written.is_set():
            # The turn ended before the message was in the transcript: nothing was accepted.
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
            result = task.result()
            raise MessageNotWrittenError(session_id, run_id, result.status, result.error_message)
        return SendResult("started", session_id, run_id)

    # ---- cron ------------------------------------------------------------------------------

    def job_validator(self) -> JobValidator:
        return job_validator(self.config)

    async def _execute(self, job: Job, ctx: RunContext) -> RunOutcome:
        _CURRENT_JOB.set(job.job_id)  # this task's log lines name the job
        session_id = ctx.session_id or main_session_id(job.agent)
        payload = job.payload
        is_turn = payload.kind == "agent_turn"
        result = await self.turn(
            session_id,
            job.agent,
            prompt=payload.text if is_turn else None,
            system_event=None if is_turn else payload.text,
            run_id=ctx.run_id,
            model=job.model,
            fallbacks=tuple(job.fallbacks) if job.fallbacks else None,
            timeout_s=ctx.timeout_s,
            # Invariant APPROVAL-I4: nobody watches a cron run; the job's policy, else the
            # config's, says deny at once or wait a bounded time.
            approval_wait_s=self.config.approvals.wait_s(unattended=True, on_ask=job.on_ask),
        )
        return RunOutcome(
            result.status,
            error_kind=result.error_kind,
            error_message=result.error_message,
            session_id=session_id,
            model=result.model,
            usage=dict(result.usage),
            reply=result.reply,
            fence=dict(result.fence) if result.fence else None,
        )

    # ---- heartbeat -------------------------------------------------------------------------

    async def _trim_loop(self) -> None:
        # Invariant GATEWAY-I7: RSS follows what the gateway holds, not its allocator's history.
        while True:
            await asyncio.sleep(TRIM_EVERY_S)
            release_free_memory()

    async def _retention_loop(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            await self.retention()

    async def retention(self, *, dry_run: bool = False) -> Any:
        """One retention pass (docs/design/retention.md), off the event loop; logs what it did.
        Deletes only if ``delete_archived_after_days`` is configured (RETENTION-I2)."""
        from ..retention import run_retention

        report = await asyncio.to_thread(
            run_retention, self.paths, self.config.retention, now=self.clock.now(), dry_run=dry_run
        )
        log.info(
            "retention: %d actions planned, %d done",
            len(report.plan.actions),
            len(report.done),
            extra={"action": "retention"},
        )
        return report

    async def _heartbeat_loop(self, agent: str, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            # Shielded: a reload that stops this loop never cancels the turn (GATEWAY-I10).
            await asyncio.shield(self.spawn(self.heartbeat(agent), name=f"heartbeat {agent}"))

    def _background_loops(self) -> None:
        """Start, stop or restart the heartbeat loops and the retention loop so they match the
        config in force: only the loops whose settings changed are touched."""
        wanted = {
            name: cfg.heartbeat
            for name, cfg in self.agents.items()
            if cfg.heartbeat.every_s > 0 and "heartbeat" in self.config.plugins
        }
        for name, (hb, task) in list(self._heartbeats.items()):
            if wanted.get(name) != hb:
                task.cancel()
                del self._heartbeats[name]
        for name, hb in wanted.items():
            if name not in self._heartbeats:
                task = self.spawn(self._heartbeat_loop(name, hb.every_s), name=f"heartbeats {name}")
                self._heartbeats[name] = (hb, task)
        every_s = self.config.retention.every_s
        running = self._retention_task
        if running is not None and running.get_name() != f"retention every {every_s:g} s":
            running.cancel()
            running = self._retention_task = None
        if running is None and every_s > 0:
            self._retention_task = self.spawn(
                self._retention_loop(every_s), name=f"retention every {every_s:g} s"
            )

    async def heartbeat(self, agent: str) -> TurnResult | None:
        """One heartbeat turn on the agent's main session; None when it is busy (skipped)."""
        cfg = self.agents[agent]
        session_id = main_session_id(agent)
        session = self.store.session(session_id)
        if self.lane_busy(session_id) or session.lease_holder() is not None:
            self._counts["hb_skipped"] += 1
            log.info(
                "heartbeat skipped: session busy",
                extra={"action": "heartbeat", "session": session_id},
            )
            return None
        self._counts["hb_run"] += 1
        result = await self.turn(
            session_id,
            agent,
            system_event=cfg.heartbeat.prompt,
            run_id=f"hb-{uuid.uuid4().hex[:12]}",
            approval_wait_s=self.config.approvals.wait_s(unattended=True),  # nobody watches
        )
        if result.ok and result.reply.strip() == "HEARTBEAT_OK":
            self._counts["hb_suppressed"] += 1  # nothing to report: no delivery, no noise
        return result


def job_validator(config: GatewayConfig) -> JobValidator:
    """Refuse a job whose agent is not configured or whose model this config cannot serve."""
    agents = agents_of(config)

    def check(job: Job) -> None:
        if job.agent not in agents:
            known = ", ".join(sorted(agents))
            raise InvalidJobError(f"unknown agent {job.agent!r}; configured: {known}", key="agent")
        for ref in (job.model, *job.fallbacks):
            if ref is None:
                continue
            try:
                check_model(config, ref)
            except ConfigError as exc:
                raise InvalidJobError(f"model {ref!r}: {exc}", key="model") from None

    return check


def _event_json(event: ChainEvent) -> dict[str, Any] | None:
    if isinstance(event, TextStreamed):
        return {"type": "text_delta", "text": event.text}
    if isinstance(event, FirstTokenReceived):
        return {"type": "first_token", "elapsed_s": round(event.elapsed_s, 3), "t": time.time()}
    if isinstance(event, ToolCallReceived):
        return {
            "type": "tool_call",
            "tool": event.tool_name,
            "arguments": event.arguments,
            "t": time.time(),
        }
    if isinstance(event, AttemptFailed):
        return {
            "type": "attempt_failed",
            "model": str(event.model),
            "error": str(event.error),
            "retry_in_s": event.retry_in_s,
            "t": time.time(),
        }
    return None
