"""The original failure stays reproduced: bench/origin_repro.py at CI scale."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import procs

BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "origin_repro.py")


@pytest.mark.slow
def test_the_stat_fingerprint_fence_fails_every_slow_run_and_fencepost_none():
    """Invariant LEASE-I6, against the design of DESIGN.md §1 side by side."""
    got = subprocess.run(
        [sys.executable, BENCH, "--short", "--runs", "3"],
        env=procs.env(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    out = got.stdout.decode()
    assert got.returncode == 0, got.stderr.decode()
    assert "slow model: (a) fails 3/3, (b) fails 0/3: AS EXPECTED" in out, out
