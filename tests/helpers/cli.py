"""Run the CLI in-process through ``main`` (its one error boundary), and real gateways for it
to talk to."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from fencepost.surface.cli import main
from tests.helpers import procs


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    escaped: str | None  # the traceback of an exception that got past the error boundary

    def check(self, what: str) -> None:
        """Invariant CLI-I1: an exit code and words, never a traceback."""
        assert self.escaped is None, f"{what}: an exception escaped the CLI\n{self.escaped}"
        both = self.stdout + self.stderr
        assert "Traceback" not in both, f"{what}: a traceback was printed\n{both}"
        if self.code != 0:
            assert self.stderr.strip() or self.stdout.strip(), f"{what}: failed without a word"


def invoke(argv: list[str], home: Path, env: Mapping[str, str | None] | None = None) -> Outcome:
    """Run ``fencepost ARGV`` in-process with ``FENCEPOST_HOME=home``, through ``main``."""
    full: dict[str, str | None] = {
        "FENCEPOST_HOME": str(home),
        "FENCEPOST_STATE_DIR": None,
        "FENCEPOST_ROOT": None,
        "FENCEPOST_HOST": None,
        "COLUMNS": "200",
        **(env or {}),
    }
    code, escaped = 0, None
    with CliRunner().isolation(env=full) as (out, err, _):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            escaped, code = traceback.format_exc(), -1
        stdout = out.getvalue().decode(errors="replace")
        stderr = err.getvalue().decode(errors="replace")
    return Outcome(code, stdout, stderr, escaped)


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    url: str
    stderr: str = ""  # set when the gateway has stopped
    returncode: int | None = None


@contextmanager
def running_gateway(
    home: Path, *args: str, env: Mapping[str, str] | None = None, command: str = "gateway"
) -> Iterator[Served]:
    """A real ``fencepost gateway`` process on ``home`` and a free loopback port; SIGTERM after."""
    url_file = home / "gateway.url"
    url_file.unlink(missing_ok=True)
    e = procs.env()
    e.pop("FENCEPOST_HOST", None)
    e.update(env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "fencepost", command, "--home", str(home), "--port", "0", *args],
        env=e,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    served = None
    try:
        deadline = time.monotonic() + 30
        while not (url_file.exists() and url_file.read_text().strip()):
            if proc.poll() is not None:
                raise AssertionError(proc.communicate()[1].decode())
            assert time.monotonic() < deadline, "the gateway did not come up"
            time.sleep(0.05)
        served = Served(proc, url_file.read_text().strip())
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        if served is not None:
            served.stderr = (out + err).decode(errors="replace")
            served.returncode = proc.returncode
