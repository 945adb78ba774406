"""``fencepost gateway``: the daemon — scheduler, heartbeats, plugins, HTTP API and dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import uvicorn

from ...errors import ConfigError, GatewayError
from ...runtime.config import GatewayConfig, StatePaths, default_home
from ...runtime.demo import gateway_config
from ...runtime.gateway import Gateway, GatewayBusyError, ReloadResult, running_gateway
from ._client import GatewayClient
from ._options import config_option, home_option

__all__ = ["demo", "gateway", "reload", "serve"]


def _listen_socket(host: str, port: int, *, token: str | None, setting: str) -> socket.socket:
    """Bind here, so a busy port is a clear error instead of uvicorn exiting the process, and
    only after the address is allowed (Invariant HTTP-I8: nothing listens beyond loopback
    without a token, whichever setting gave the address)."""
    from ..http import check_bind

    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(
            f"cannot resolve {setting} {host!r}: {exc}",
            key=setting if setting.startswith("server.") else None,
        ) from None
    check_bind(str(addr[0]), token=token, setting=setting)
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}; choose another port with --port "
            "or [server] port (0 picks a free one)",
            key="server.port",
        ) from None
    return sock


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the gateway handles SIGINT/SIGTERM itself, for a graceful stop


async def serve(
    paths: StatePaths,
    cfg: GatewayConfig,
    *,
    host: str | None = None,
    port: int | None = None,
    ready: asyncio.Event | None = None,
    announce: bool = True,
    source: Callable[[], GatewayConfig] | None = None,
) -> None:
    """Run the gateway and its HTTP server until SIGINT/SIGTERM, then stop gracefully.

    SIGHUP reloads the config: ``source`` reads it again as it was read for this start
    (docs/design/gateway.md, "Reloading the config")."""
    from ..http import close_streams, create_app, resolve_token

    token = resolve_token(cfg.server.token_env, os.environ)
    if host is not None:
        setting = "FENCEPOST_HOST" if os.environ.get("FENCEPOST_HOST") == host else "--host"
    else:
        setting = "server.host"
    sock = _listen_socket(
        host or cfg.server.host,
        cfg.server.port if port is None else port,
        token=token,
        setting=setting,
    )
    gw = Gateway(paths, cfg, config_source=source)
    try:
        await gw.start()
    except BaseException:
        sock.close()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(
        signal.SIGHUP, lambda: gw.spawn(_reload_on_hangup(gw), name="reload on SIGHUP")
    )
    server = None
    try:
        app = create_app(gw, token=token)
        config = uvicorn.Config(
            app,
            log_level="warning",
            log_config=None,  # dictConfig would close every handler, ours included
            lifespan="off",
        )
        server = _Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.02)
        bound = server.servers[0].sockets[0].getsockname()
        where = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        url = f"http://{where}:{bound[1]}/"
        (paths.root / "gateway.url").write_text(url + "\n")
        if announce:
            for line in gw.left_demo.describe() if gw.left_demo else ():
                click.echo(line, err=True)  # Invariant DEMO-I2: the user is told
            click.echo(f"fencepost gateway on {paths.root}", err=True)
            click.echo(f"dashboard: {url}", err=True)
        if ready is not None:
            ready.set()
        await stop.wait()
        click.echo("stopping: in-flight runs get 10 s to finish…", err=True)
    finally:
        if server is not None:
            close_streams(app)  # open dashboards must not hold the shutdown up
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(serving, 5)
        await gw.stop(grace_s=10)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)


async def _reload_on_hangup(gw: Gateway) -> None:
    """SIGHUP: apply the config again, or keep the old one; either way say so on stderr (the
    log has it too). A refused config never stops the gateway."""
    try:
        result = await gw.reload()
    except ConfigError as exc:
        click.echo(f"SIGHUP: config refused, the old one stays in force: {exc}", err=True)
        return
    for line in result.describe():
        click.echo(f"SIGHUP: {line}", err=True)


def _refuse_if_held(paths: StatePaths) -> None:
    """Invariant CLI-I6: a directory another gateway holds is said first, before the config is
    read, demo jobs are installed or a port is bound (a second gateway on the same config would
    otherwise blame the port). ``Gateway.start`` still takes the lock (GATEWAY-I1): this check
    only orders the messages."""
    owner = running_gateway(paths)
    if owner is not None:
        raise GatewayBusyError(str(paths.root), owner)


def _config(
    paths: StatePaths, config: str | None, *, force_demo: bool, slow_s: float
) -> GatewayConfig:
    _refuse_if_held(paths)
    cfg, added = gateway_config(
        paths, config, install=True, force_demo=force_demo, slow_first_token_s=slow_s
    )
    if added is not None:
        click.echo(
            f"demo mode: 2 scripted agents (analyst: ~{slow_s:g} s to first token, assistant: "
            f"fast), 3 jobs every minute ({added} added); `fencepost init` writes a config "
            "to leave it (the demo's jobs are then removed, yours never)",
            err=True,
        )
    return cfg


port_option = click.option(
    "--port", type=int, default=None, help="Port [default: from config, 8787; 0 = any]."
)


@click.command("gateway")
@home_option
@config_option
@click.option(
    "--host",
    default=None,
    envvar="FENCEPOST_HOST",
    show_envvar=True,
    help="Bind address [default: from config, 127.0.0.1]; beyond loopback needs a token.",
)
@port_option
def gateway(home: Path | None, config: str | None, host: str | None, port: int | None) -> None:
    """Run the gateway in the foreground (Ctrl-C stops it gracefully).

    With no config file and no jobs yet it runs in demo mode: scripted agents and demo jobs.
    """
    paths = StatePaths(home or default_home())
    cfg = _config(paths, config, force_demo=False, slow_s=20.0)
    asyncio.run(serve(paths, cfg, host=host, port=port, source=_source(paths, config, False, 20.0)))


def _source(
    paths: StatePaths, config: str | None, force_demo: bool, slow_s: float
) -> Callable[[], GatewayConfig]:
    """How a reload reads the config: as this start did (a config file written since leaves
    demo mode), without installing demo jobs."""
    return lambda: gateway_config(paths, config, force_demo=force_demo, slow_first_token_s=slow_s)[
        0
    ]


@click.command("demo")
@home_option
@port_option
@click.option(
    "--slow", "slow_s", type=float, default=20.0, help="The slow model's first-token delay, s."
)
def demo(home: Path | None, port: int | None, slow_s: float) -> None:
    """The gateway in demo mode, on a fresh temporary state directory unless --home is given."""
    import tempfile

    root = home or Path(tempfile.mkdtemp(prefix="fencepost-demo-"))
    paths = StatePaths(root)
    cfg = _config(paths, None, force_demo=True, slow_s=slow_s)
    asyncio.run(serve(paths, cfg, port=port, source=_source(paths, None, True, slow_s)))


@click.command("reload")
@home_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def reload(home: Path | None, as_json: bool) -> None:
    """Make the running gateway read its config again (as SIGHUP does).

    It is checked in full first: applied without dropping running turns, or refused (exit 2)
    with the file, key and line, and the old config stays in force. Keys that need a restart
    (server address and token, durability, limits.max_open_sessions, plugins) are listed.
    """
    paths = StatePaths(home or default_home())
    try:
        client = GatewayClient.find(paths)  # reads server.token_env from the file
    except ConfigError as exc:
        owner = running_gateway(paths)
        if owner is None:
            raise
        raise ConfigError(
            f"the gateway (pid {owner.get('pid', '?')}) was not asked and keeps its old config, "
            f"because the new one is invalid: {exc.detail}",
            key=exc.key,
            line=exc.line,
            file=exc.file,
        ) from None
    if client is None:
        raise GatewayError(
            f"no gateway runs on {paths.root}: nothing to reload (a gateway reads the config "
            "when it starts: `fencepost gateway`)"
        )
    body = client.reload()  # a refused config is a ConfigError: exit 2 (CLI-I4)
    if as_json:
        click.echo(json.dumps(body, indent=2, ensure_ascii=False))
        return
    result = ReloadResult(
        path=body.get("path"),
        **{
            name: tuple(body.get(name) or ())
            for name in (
                "applied",
                "restart_required",
                "agents_added",
                "agents_removed",
                "agents_changed",
                "demo_jobs_removed",
            )
        },
    )
    for line in result.describe():
        click.echo(line)
