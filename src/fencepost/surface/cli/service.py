"""``fencepost service install|uninstall|status``: the gateway as a systemd user service.

The unit is rendered by a pure function (``render_unit``) and written to the user's systemd
directory; ``systemctl --user`` is asked to load and start it where a user manager runs, and the
commands are printed where none does (docs/design/cli.md CLI-I8).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import click

from ._options import config_option, home_option

__all__ = ["render_unit", "service", "unit_path"]

#: What the unit is called unless ``--name`` says otherwise.
DEFAULT_UNIT = "fencepost"


def render_unit(python: str, home: Path, config: str | None = None) -> str:
    """The unit file for a gateway on ``home`` run by ``python`` (pure)."""
    command = [python, "-m", "fencepost", "gateway", "--home", str(home)]
    if config:
        command += ["--config", config]
    return f"""\
# Written by `fencepost service install`; `fencepost service uninstall` removes it.
[Unit]
Description=fencepost gateway ({home})
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={shlex.join(command)}
# `systemctl --user reload` re-reads the config (SIGHUP: refused configs keep the old one).
ExecReload=/bin/kill -HUP $MAINPID
# Secrets as environment variables (server.token_env, providers' api_key_env), one per line.
EnvironmentFile=-{home / "service.env"}
Environment=PYTHONUNBUFFERED=1
Environment=PYTHONMALLOC=malloc
Restart=on-failure
RestartSec=5
# SIGTERM: running turns are given time to finish, then recorded interrupted.
TimeoutStopSec=60

[Install]
WantedBy=default.target
"""


def unit_path(name: str = DEFAULT_UNIT) -> Path:
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "systemd" / "user" / f"{name}.service"


def _systemctl(*args: str) -> tuple[bool, str]:
    """``systemctl --user ARGS``: (ok, what it said); never raises."""
    try:
        done = subprocess.run(
            ["systemctl", "--user", *args], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return done.returncode == 0, (done.stdout + done.stderr).strip()


@click.group()
def service() -> None:
    """Run the gateway as a systemd user service (install, uninstall, status)."""


name_option = click.option("--name", default=DEFAULT_UNIT, show_default=True, help="Unit name.")


@service.command()
@home_option
@config_option
@name_option
@click.option("--no-start", is_flag=True, help="Write the unit only; do not enable or start it.")
@click.option("--print", "print_only", is_flag=True, help="Print the unit; write nothing.")
def install(
    home: Path | None, config: str | None, name: str, no_start: bool, print_only: bool
) -> None:
    """Write a systemd user unit for the gateway, then enable and start it."""
    from ...runtime.config import default_home

    root = (home or default_home()).absolute()
    text = render_unit(sys.executable, root, str(Path(config).absolute()) if config else None)
    if print_only:
        click.echo(text, nl=False)
        return
    path = unit_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    click.echo(f"wrote {path}")
    steps = [("daemon-reload",), ("enable", "--now", f"{name}.service")]
    if no_start:
        click.echo(
            f"start it with: systemctl --user daemon-reload && systemctl --user enable "
            f"--now {name}.service"
        )
        return
    for step in steps:
        ok, said = _systemctl(*step)
        if not ok:
            click.echo(
                f"systemctl --user {' '.join(step)} did not work here ({said or 'no answer'}); "
                f"the unit is written: run `systemctl --user daemon-reload && systemctl --user "
                f"enable --now {name}.service` in your login session (and `loginctl "
                "enable-linger` to keep it running after you log out)",
                err=True,
            )
            return
    click.echo(f"enabled and started {name}.service; `fencepost status` shows what it does")


@service.command()
@name_option
def uninstall(name: str) -> None:
    """Stop and disable the unit, then remove its file (state and config stay)."""
    path = unit_path(name)
    if not path.exists():
        click.echo(f"no unit at {path}; nothing to do")
        return
    _systemctl("disable", "--now", f"{name}.service")
    path.unlink()
    _systemctl("daemon-reload")
    click.echo(f"removed {path} (the state directory and config are untouched)")


@service.command("status")
@name_option
def service_status(name: str) -> None:
    """Whether the unit is installed and what systemd says of it."""
    path = unit_path(name)
    if not path.exists():
        click.echo(f"not installed (no unit at {path}); `fencepost service install` writes one")
        return
    ok, said = _systemctl("is-active", f"{name}.service")
    click.echo(f"installed at {path}; systemd says: {said or ('active' if ok else 'unknown')}")
