"""Debian's bubblewrap for the sandbox tests (exec's and stdio MCP servers'): installed with
apt-get on first use when it is missing (CI runs as root with apt); a test fails, never skips,
when it cannot work here."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from fencepost.runtime.agent import sandbox_status


def apt_install(package: str, find) -> str:
    """What ``find()`` returns, after ``apt-get install package`` when it returns None first
    (CI runs as root with apt); fails the test when there is no apt-get."""
    found = find()
    if found is None:
        if shutil.which("apt-get") is None:
            pytest.fail(f"{package} is missing on this machine and there is no apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, env=env, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", package],
            check=True,
            env=env,
            capture_output=True,
        )
        found = find()
    assert found, f"apt-get installed {package}, yet it is still not found"
    return found


def ensure_bwrap() -> str:
    """The ``bwrap`` executable, installed with apt-get when missing; fails the test when the
    sandbox cannot start here (saying why: user namespaces?)."""
    found = apt_install("bubblewrap", lambda: shutil.which("bwrap"))
    status = sandbox_status()
    assert status.available, status.detail
    return found
