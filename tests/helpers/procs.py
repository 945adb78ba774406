"""Real child processes for tests: run Python snippets against the real store."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.path.abspath(SRC) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def spawn(code: str, *args: str, stdout=subprocess.PIPE, stdin=None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env(),
        stdin=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
    )


def run(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env(),
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def cli(
    *args: str, timeout: float = 60, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "fencepost", *args],
        env=env(),
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
