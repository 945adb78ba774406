"""Watermarks (docs/design/gateway.md GATEWAY-I5): measured from /proc, judged by one function."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fencepost.runtime.config import LimitsConfig, StatePaths
from fencepost.runtime.resources import (
    ProcessUsage,
    StateUsage,
    judge,
    process_usage,
    state_usage,
)

LIMITS = LimitsConfig(warn_descriptors_ratio=0.5, warn_rss_mb=100, warn_state_dir_mb=10)


def proc(fds=10, limit=1024, rss=50.0):
    return ProcessUsage(
        pid=1, open_descriptors=fds, descriptor_limit=limit, rss_mb=rss, threads=3, children=0
    )


def state(mb=1.0):
    return StateUsage(state_dir_mb=mb, sessions=2, sessions_mb=mb, cron_db_mb=0, memory_db_mb=0)


def statuses(marks):
    return {m.check: m.status for m in marks}


@pytest.mark.parametrize(
    ("fds", "rss", "mb", "want"),
    [
        (10, 50.0, 1.0, {"descriptors": "ok", "memory": "ok", "disk": "ok"}),
        (511, 99.9, 9.99, {"descriptors": "ok", "memory": "ok", "disk": "ok"}),
        (512, 50.0, 1.0, {"descriptors": "warn", "memory": "ok", "disk": "ok"}),
        (10, 100.0, 1.0, {"descriptors": "ok", "memory": "warn", "disk": "ok"}),
        (10, 50.0, 10.0, {"descriptors": "ok", "memory": "ok", "disk": "warn"}),
    ],
)
def test_each_watermark_warns_exactly_at_its_threshold(fds, rss, mb, want):
    """Invariant GATEWAY-I5."""
    assert statuses(judge(proc(fds, 1024, rss), state(mb), LIMITS)) == want


def test_a_descriptor_warning_says_what_to_change():
    """Invariant GATEWAY-I5."""
    [fd] = [m for m in judge(proc(900), None, LIMITS) if m.check == "descriptors"]
    assert "900 of 1024" in fd.detail and "limits.max_open_sessions" in fd.detail


def test_no_process_judges_the_disk_only_and_no_limit_never_warns():
    """Invariant GATEWAY-I5."""
    assert statuses(judge(None, state(), LIMITS)) == {"disk": "ok"}
    unlimited = judge(proc(10**6, None), None, LIMITS)
    assert statuses(unlimited)["descriptors"] == "ok"


def test_this_process_is_measured_from_proc():
    me = process_usage()
    assert me is not None and me.pid == os.getpid()
    assert abs(me.open_descriptors - len(os.listdir("/proc/self/fd"))) <= 2
    assert me.rss_mb > 1 and me.threads >= 1
    assert me.descriptor_limit is None or me.descriptor_limit > 0


def test_child_processes_are_counted_and_a_gone_pid_is_none():
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        me = process_usage()
        assert me is not None and me.children >= 1
    finally:
        child.communicate(b"")
    assert process_usage(child.pid) is None  # reaped: nothing to read


def test_state_sizes_count_sessions_and_databases(tmp_path):
    paths = StatePaths(tmp_path)
    paths.sessions.mkdir()
    (paths.sessions / "a.jsonl").write_bytes(b"x" * 1024 * 1024)
    (paths.sessions / "a.jsonl.state").write_bytes(b"s" * 4096)
    paths.cron_db.write_bytes(b"c" * 2 * 1024 * 1024)
    got = state_usage(paths)
    assert got.sessions == 1
    assert got.sessions_mb == pytest.approx(1.0, abs=0.01)
    assert got.cron_db_mb == 2.0
    assert got.state_dir_mb == pytest.approx(3.0, abs=0.01)


_FRAGMENTED = """
import threading
from fencepost.runtime.resources import release_free_memory

def anon_mb():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024

keep = []
def work():
    blocks = [bytes(4000) for _ in range(20000)]  # ~80 MB from malloc, in a thread's arena
    keep.extend(blocks[::64])  # a survivor every 64 blocks: the arena cannot shrink from its top
t = threading.Thread(target=work)
t.start()
t.join()
before = anon_mb()
print(release_free_memory(), before, anon_mb())
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_freed_memory_goes_back_to_the_os_when_the_gateway_trims_gateway_i7():
    """Invariant GATEWAY-I7: after a worker thread frees most of 80 MB, ``release_free_memory``
    returns the free pages, so resident memory follows what is held, not the high-water mark."""
    out = subprocess.run(
        [sys.executable, "-c", _FRAGMENTED], capture_output=True, text=True, check=True
    ).stdout.split()
    trimmed, before, after = out[0] == "True", float(out[1]), float(out[2])
    assert trimmed
    assert before - after > 40, (before, after)
