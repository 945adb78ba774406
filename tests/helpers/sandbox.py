"""Debian's bubblewrap for the sandbox tests (exec's and stdio MCP servers'): installed with
apt-get on first use when it is missing (CI runs as root with apt); a test fails, never skips,
when it cannot work here."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from fencepost.runtime.agent import sandbox_status


def ensure_bwrap() -> str:
    """The ``bwrap`` executable, installed with apt-get when missing; fails the test when the
    sandbox cannot start here (saying why: user namespaces?)."""
    found = shutil.which("bwrap")
    if found is None:
        if shutil.which("apt-get") is None:
            pytest.fail("no bwrap on this machine and no apt-get to install it")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, env=env, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "bubblewrap"],
            check=True,
            env=env,
            capture_output=True,
        )
        found = shutil.which("bwrap")
    assert found, "apt-get installed bubblewrap, yet no bwrap executable was found"
    status = sandbox_status()
    assert status.available, status.detail
    return found
