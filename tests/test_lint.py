"""Lint and type checks run inside the test command (ruff; mypy strict for the core)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.slow


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_finds_nothing():
    res = _run("ruff", "check", "src", "tests", "bench")
    assert res.returncode == 0, res.stdout + res.stderr


def test_mypy_passes_strict_on_the_core():
    res = _run("mypy")
    assert res.returncode == 0, res.stdout + res.stderr
