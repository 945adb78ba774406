"""The ``fencepost`` command: parse, call, render. The one place errors become exit codes."""

from __future__ import annotations

import contextlib
import os
import sys

import click

from ... import __version__
from ...errors import (
    ApprovalNotFoundError,
    ConfigError,
    FencepostError,
    InvalidSessionIdError,
    JobNotFoundError,
    LockTimeoutError,
    OutsideProtocolChangeError,
    RecordTooLargeError,
    SessionNotFoundError,
    SessionTakeoverError,
    TranscriptFormatError,
)
from .agent import agent
from .approvals import approvals
from .cron import cron
from .cron_run import run as _cron_run  # noqa: F401  (registers `cron run`)
from .doctor import doctor, init
from .gateway import demo, gateway, reload
from .gc import gc
from .mcp import mcp
from .memory import memory
from .service import service
from .sessions import sessions
from .status import logs, status
from .trajectory import trajectory

__all__ = ["main", "cli", "EXIT_CODES"]

#: Exit codes by error class, most specific first (docs/reference/cli.md).
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (InvalidSessionIdError, 2),
    (ConfigError, 2),
    (TranscriptFormatError, 2),
    (RecordTooLargeError, 2),
    (SessionNotFoundError, 3),
    (JobNotFoundError, 3),
    (ApprovalNotFoundError, 3),
    (OutsideProtocolChangeError, 4),
    (SessionTakeoverError, 4),
    (LockTimeoutError, 5),
    (FencepostError, 1),
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="fencepost")
def cli() -> None:
    """fencepost: an agent gateway whose session transcripts many writers share safely."""


cli.add_command(sessions)
cli.add_command(agent)
cli.add_command(approvals)
cli.add_command(cron)
cli.add_command(demo)
cli.add_command(gateway)
cli.add_command(reload)
cli.add_command(memory)
cli.add_command(mcp)
cli.add_command(trajectory)
cli.add_command(doctor)
cli.add_command(init)
cli.add_command(gc)
cli.add_command(status)
cli.add_command(logs)
cli.add_command(service)


#: Commands whose process runs for months (docs/design/gateway.md GATEWAY-I7).
_DAEMONS = frozenset({"gateway", "demo"})


def _daemon_allocator() -> None:
    """Run a daemon command with CPython's small objects on the C allocator.

    Invariant GATEWAY-I7: with the default arenas (pymalloc), an arena comes back only when every
    object in it is freed, so each turn's transient peak leaves a few survivors pinning arenas
    and resident memory creeps up for hours (+16% over a 10,000-run soak); with
    ``PYTHONMALLOC=malloc`` the gateway's periodic ``malloc_trim`` returns those pages too (the
    soak: no growth). It must be set before the interpreter starts, hence one ``exec`` of the
    same command, once (an explicit ``PYTHONMALLOC`` is left alone).
    """
    if os.environ.get("PYTHONMALLOC") or sys.argv[1:2] == [] or sys.argv[1] not in _DAEMONS:
        return
    env = {**os.environ, "PYTHONMALLOC": "malloc"}
    with contextlib.suppress(OSError):  # no exec here: run on as we are
        os.execve(sys.executable, [sys.executable, "-m", "fencepost", *sys.argv[1:]], env)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: the one place errors become messages and exit codes (Invariant CLI-I1)."""
    if argv is None:  # a real process, not a caller's in-process invocation
        _daemon_allocator()
    try:
        code = cli.main(args=argv, prog_name="fencepost", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except FencepostError as exc:
        click.echo(f"error: {exc}", err=True)
        for cls, code in EXIT_CODES:
            if isinstance(exc, cls):
                sys.exit(code)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(code if isinstance(code, int) else 0)
