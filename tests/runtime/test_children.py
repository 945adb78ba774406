"""The registry of child processes and the reaping of orphans (docs/design/exec.md, CHILD-I*).

Real processes throughout: an "owner" is a Python process that starts a command group, records
it and dies without cleaning up, as a SIGKILLed gateway would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fencepost.runtime.children import ChildRegistry, proc_stat, read_records, reap_orphans
from tests.helpers import procs

#: A child that stays (sh waits) with a grandchild, pids written down.
FAMILY = "sleep 1000 & echo $! > grandchild.pid; echo $$ > child.pid; wait"
#: A child that exits at once and leaves a grandchild in its group.
LEAVER = "sleep 1000 & echo $! > grandchild.pid; echo $$ > child.pid"

OWNER = """
import os, subprocess, sys
from fencepost.runtime.children import ChildRegistry
registry, cwd, script, reap_leader = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
quiet = subprocess.DEVNULL  # the test reads this process's output to its end
p = subprocess.Popen(
    ["sh", "-c", script], cwd=cwd, start_new_session=True, stdout=quiet, stderr=quiet
)
registry = ChildRegistry(registry)
registry.add(p.pid, ["sh", "-c", script], "exec", about={"agent": "ops"})
pid_file = os.path.join(cwd, "child.pid")
while not os.path.exists(pid_file) or not open(pid_file).read().strip():
    pass
if reap_leader:
    p.wait()
print(p.pid, flush=True)
os._exit(0)  # no cleanup: the records stay, the group runs on
"""


def alive(pid: int) -> bool:
    st = proc_stat(pid)
    return st is not None and st.alive


@pytest.fixture
def groups():
    """Process groups a test started: SIGKILLed at teardown whatever happened."""
    started: list[int] = []
    yield started
    for pgid in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def orphan(tmp_path: Path, groups: list[int], script: str = FAMILY, reap_leader: bool = False):
    """(registry dir, child pid, grandchild pid) of a group whose owner has died."""
    work = tmp_path / "ws"
    work.mkdir(exist_ok=True)
    reg = tmp_path / "children"
    done = procs.run(
        textwrap.dedent(OWNER), str(reg), str(work), script, "1" if reap_leader else "0"
    )
    assert done.returncode == 0, done.stderr.decode()
    child = int(done.stdout)
    groups.append(child)
    grandchild = int((work / "grandchild.pid").read_text())
    return reg, child, grandchild


def test_proc_stat_reads_a_process_whose_name_has_spaces_and_parentheses():
    code = "open('/proc/self/comm', 'w').write('a) (b c'); import sys; sys.stdin.read()"
    p = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, start_new_session=True
    )
    try:
        while Path(f"/proc/{p.pid}/comm").read_text().strip() != "a) (b c":
            pass
        st = proc_stat(p.pid)
        assert st is not None and st.alive and st.pgrp == st.session == p.pid
        raw = Path(f"/proc/{p.pid}/stat").read_text()
        assert st.start_ticks == int(raw.rsplit(")", 1)[1].split()[19])
    finally:
        p.stdin.close()
        p.wait()
    assert proc_stat(p.pid) is None


def test_a_record_names_the_child_and_its_owner_and_goes_when_removed_child_i1(tmp_path):
    """Invariant CHILD-I1."""
    p = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    try:
        registry = ChildRegistry(tmp_path / "children")
        rec = registry.add(p.pid, ["sleep", "1000"], "exec", about={"run": "r1"})
        [(path, read, problem)] = read_records(tmp_path / "children")
        assert read == rec and problem == ""
        data = json.loads(path.read_text())
        assert data["pid"] == data["pgid"] == p.pid and data["owner_pid"] == os.getpid()
        assert data["start_ticks"] == proc_stat(p.pid).start_ticks
        assert data["owner_start_ticks"] == proc_stat(os.getpid()).start_ticks
        assert data["argv"] == ["sleep", "1000"] and data["kind"] == "exec"
        assert repr(registry).endswith("live=1>")
        registry.remove(rec)
        assert read_records(tmp_path / "children") == [] and registry.live() == []
    finally:
        p.kill()
        p.wait()


def test_the_group_of_a_dead_owners_child_is_ended_and_its_record_dropped_child_i2(
    tmp_path, groups
):
    """Invariant CHILD-I2: provably ours (same pid, same start time), owner dead: the whole
    group ends, grandchild included."""
    reg, child, grandchild = orphan(tmp_path, groups)
    assert alive(child) and alive(grandchild)
    dry = reap_orphans(reg, dry_run=True)
    assert [a.action for a in dry.actions] == ["orphan"] and alive(grandchild)
    assert "2 live process(es) in its group" in dry.actions[0].detail
    report = reap_orphans(reg)
    assert [a.action for a in report.actions] == ["killed"]
    assert report.killed[0].record.pid == child and report.killed[0].record.about == {
        "agent": "ops"
    }
    assert not alive(child) and not alive(grandchild)
    assert read_records(reg) == []


def test_a_child_whose_owner_lives_is_left_alone_child_i2(tmp_path):
    """Invariant CHILD-I2: the owner (this process) is alive."""
    p = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    try:
        ChildRegistry(tmp_path / "children").add(p.pid, ["sleep", "1000"], "exec")
        report = reap_orphans(tmp_path / "children")
        assert [a.action for a in report.actions] == ["owner_alive"]
        assert alive(p.pid) and len(read_records(tmp_path / "children")) == 1
    finally:
        p.kill()
        p.wait()


def test_a_reused_pid_is_never_signalled_and_its_record_is_dropped_child_i2(tmp_path):
    """Invariant CHILD-I2: the pid now names another process (its start time differs)."""
    stranger = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    gone = subprocess.Popen(["true"])
    gone.wait()
    try:
        st = proc_stat(stranger.pid)
        fake = {
            "pid": stranger.pid,
            "pgid": stranger.pid,
            "start_ticks": st.start_ticks - 1,
            "owner_pid": gone.pid,
            "owner_start_ticks": 1,
            "argv": ["sleep", "1000"],
            "kind": "exec",
        }
        reg = tmp_path / "children"
        reg.mkdir()
        (reg / f"{stranger.pid}-1.json").write_text(json.dumps(fake))
        (reg / "broken.json").write_text("{not json")
        dry = reap_orphans(reg, dry_run=True)
        assert sorted(a.action for a in dry.actions) == ["reused", "unreadable"]
        assert len(list(reg.iterdir())) == 2  # a dry run drops nothing
        report = reap_orphans(reg)
        assert sorted(a.action for a in report.actions) == ["reused", "unreadable"]
        assert alive(stranger.pid)
        assert list(reg.iterdir()) == []
    finally:
        stranger.kill()
        stranger.wait()


def test_a_gone_leaders_group_is_reported_but_not_signalled_child_i2(tmp_path, groups):
    """Invariant CHILD-I2: the leader exited, so nothing proves its group's survivors are
    ours: they are named, not signalled."""
    reg, child, grandchild = orphan(tmp_path, groups, LEAVER, reap_leader=True)
    assert not alive(child) and alive(grandchild)
    report = reap_orphans(reg)
    [done] = report.actions
    assert done.action == "gone" and done.left_alone == (grandchild,)
    assert "not provably ours" in done.detail
    assert alive(grandchild) and read_records(reg) == []
