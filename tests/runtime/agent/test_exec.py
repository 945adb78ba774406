"""The exec tool (docs/design/exec.md): real processes, checked through /proc.

The sandbox tests need Debian's bubblewrap; they install it with apt-get on first use when it
is missing (CI runs as root with apt), and fail, never skip, when it cannot work here.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import tempfile
import threading
import tomllib
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from fencepost.runtime.agent import (
    APPROVAL_WAIT_S,
    ApprovalDecision,
    ApprovalRequest,
    ExecPolicy,
    ToolContext,
    ToolDenied,
    ToolFailed,
    exec_decision,
    exec_pattern_problem,
    exec_tool,
    fit_output,
    run_command,
    sandbox_status,
)
from fencepost.runtime.children import ChildRegistry, proc_stat
from tests.helpers.sandbox import ensure_bwrap

ROOT = Path(__file__).resolve().parents[3]

#: One grandchild that ignores SIGTERM (so only the SIGKILL ends it), pids written down.
FAMILY = "trap '' TERM; sleep 1000 & echo $! > grandchild.pid; echo $$ > child.pid; wait"


def alive(pid: int) -> bool:
    st_ = proc_stat(pid)
    return st_ is not None and st_.alive


def ctx(ws: Path, approve=None) -> ToolContext:
    ws.mkdir(exist_ok=True)
    return ToolContext(agent="ops", session_id="s", run_id="r", workspace=ws, approve=approve)


def allow(*patterns: str, **kw) -> ExecPolicy:
    return ExecPolicy(policy="allow", allow=patterns, **kw)


async def wait_for_file(path: Path, within_s: float = 10.0) -> int:
    async with asyncio.timeout(within_s):
        while not (path.exists() and path.read_text().strip()):
            await asyncio.sleep(0.01)
    return int(path.read_text())


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    (tmp_path / "ws").mkdir()
    return tmp_path / "ws"


# ---- the process group: timeout, cancellation, completion ------------------------------------


async def test_a_timeout_ends_the_whole_process_group_child_and_grandchild_exec_i3(ws, tmp_path):
    """Invariant EXEC-I3, CHILD-I1: SIGTERM, then SIGKILL for the grandchild that ignores it;
    the record of the child exists while it runs and goes with it."""
    children = ChildRegistry(tmp_path / "children")
    tool = exec_tool(allow("sh", timeout_s=30), children=children)
    with pytest.raises(ToolFailed, match=r"timed out after 1\.5 s") as err:
        await tool.run({"argv": ["sh", "-c", FAMILY], "timeout_s": 1.5}, ctx(ws))
    assert "process group was ended" in str(err.value) and "exit code" in str(err.value)
    child, grandchild = (
        int((ws / "child.pid").read_text()),
        int((ws / "grandchild.pid").read_text()),
    )
    assert not alive(child) and not alive(grandchild)
    assert children.live() == [] and list((tmp_path / "children").iterdir()) == []


async def test_cancelling_the_call_ends_the_whole_process_group_exec_i3(ws, tmp_path):
    """Invariant EXEC-I3, CHILD-I1: cancellation (the turn's timeout, a gateway stop) ends it."""
    children = ChildRegistry(tmp_path / "children")
    tool = exec_tool(allow("sh"), children=children)
    call = asyncio.create_task(tool.run({"argv": ["sh", "-c", FAMILY]}, ctx(ws)))
    grandchild = await wait_for_file(ws / "grandchild.pid")
    child = await wait_for_file(ws / "child.pid")
    [record] = children.live()
    assert (record.pid, record.pgid, record.owner_pid) == (child, child, os.getpid())
    assert record.start_ticks == proc_stat(child).start_ticks
    assert (tmp_path / "children" / record.file_name).exists()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert not alive(child) and not alive(grandchild)
    assert not (tmp_path / "children" / record.file_name).exists()


async def test_a_command_that_exits_leaves_no_background_process_behind_exec_i3(ws):
    tool = exec_tool(allow("sh"))
    out = await tool.run(
        {"argv": ["sh", "-c", "sleep 1000 & echo $! > bg.pid; echo started"]}, ctx(ws)
    )
    assert "exit code: 0" in out and "started" in out
    assert not alive(int((ws / "bg.pid").read_text()))


# ---- output ---------------------------------------------------------------------------------


async def test_output_is_capped_in_memory_and_the_cut_is_said_exec_i4(ws):
    """Invariant EXEC-I4: 20 MB on stdout keep at most the cap in memory; stderr still shows."""
    script = "head -c 20000000 /dev/zero | tr '\\0' a; echo the-error >&2"
    outcome = await run_command(
        ["sh", "-c", script],
        cwd=str(ws),
        env={"PATH": "/usr/bin:/bin"},
        timeout_s=60,
        max_output_bytes=1000,
    )
    assert outcome.stdout_bytes == 20_000_000 and len(outcome.stdout) == 1000
    assert outcome.exit_code == 0 and not outcome.timed_out
    tool = exec_tool(allow("sh", max_output_bytes=1000))
    text = await tool.run({"argv": ["sh", "-c", script]}, ctx(ws))
    assert (
        "[stdout truncated: " in text
        and "of 20000000 bytes shown; max_output_bytes = 1000]" in text
    )
    assert "--- stderr ---\nthe-error" in text
    assert len(text) < 1400


@given(st.binary(max_size=300), st.binary(max_size=300), st.integers(min_value=0, max_value=400))
def test_fitting_output_keeps_prefixes_within_the_cap_and_never_starves_stderr(out, err, cap):
    """Invariant EXEC-I4 (the cut, pure)."""
    o, e = fit_output(out, err, cap)
    assert out.startswith(o) and err.startswith(e)
    if len(out) + len(err) <= cap:
        assert (o, e) == (out, err)
    else:
        assert len(o) + len(e) == cap
        assert len(e) >= min(len(err), cap // 2) and len(o) >= min(len(out), cap - cap // 2)


async def test_a_nonzero_exit_is_an_ordinary_result_with_its_code_and_stderr(ws):
    tool = exec_tool(allow("sh"))
    text = await tool.run({"argv": ["sh", "-c", "echo out; echo bad >&2; exit 3"]}, ctx(ws))
    assert text.splitlines()[:2] == ["$ sh -c 'echo out; echo bad >&2; exit 3'", "exit code: 3"]
    assert "--- stdout ---\nout\n--- stderr ---\nbad" in text


async def test_the_command_runs_in_the_workspace_with_stdin_from_dev_null(ws):
    tool = exec_tool(allow("pwd", "cat", "sh"))
    assert f"--- stdout ---\n{ws.resolve()}\n" in await tool.run({"argv": ["pwd"]}, ctx(ws))
    text = await tool.run({"argv": ["cat"]}, ctx(ws))  # would wait forever on a terminal
    assert "exit code: 0" in text and "--- stdout ---\n(empty)" in text
    ids = "import os; print(os.getpid(), os.getpgid(0), os.getsid(0))"
    py = exec_tool(allow(sys.executable))
    own = await py.run({"argv": [sys.executable, "-c", ids]}, ctx(ws))
    pid, pgid, sid = own.split("--- stdout ---\n")[1].split()[:3]
    assert pid == pgid == sid  # its own session and process group (EXEC-I3)


async def test_the_environment_holds_only_allow_listed_names_exec_i5(ws, monkeypatch):
    """Invariant EXEC-I5."""
    monkeypatch.setenv("SECRET_TOKEN", "s3cret")
    monkeypatch.setenv("KEEP_ME", "yes")
    tool = exec_tool(allow("env", env=("PATH", "KEEP_ME", "NOT_SET_ANYWHERE")))
    text = await tool.run({"argv": ["env"]}, ctx(ws))
    shown = text.split("--- stdout ---\n")[1].split("\n--- stderr ---")[0].splitlines()
    assert sorted(shown) == ["KEEP_ME=yes", "PATH=/usr/bin:/bin"]
    default = exec_tool(allow("env"))
    assert "SECRET_TOKEN" not in await default.run({"argv": ["env"]}, ctx(ws))


# ---- policy ---------------------------------------------------------------------------------


async def test_deny_refuses_every_command_and_tells_the_model_not_to_retry_exec_i1_exec_i7(ws):
    """Invariants EXEC-I1, EXEC-I7."""
    tool = exec_tool(ExecPolicy(), where="agents.ops.exec")
    with pytest.raises(ToolDenied, match=r'agents\.ops\.exec\.policy = "deny"') as err:
        await tool.run({"argv": ["touch", "made"]}, ctx(ws))
    assert "Do not retry" in str(err.value)
    assert not (ws / "made").exists()


async def test_allow_runs_listed_programs_and_refuses_everything_else_exec_i1_exec_i2(ws):
    """Invariants EXEC-I1, EXEC-I2: a model-written program named like an allowed one, a path
    to it, or an allowed name behind a path never run."""
    tool = exec_tool(allow("echo", "git-*"), where="agents.ops.exec")
    assert "--- stdout ---\nhi" in await tool.run({"argv": ["echo", "hi"]}, ctx(ws))
    (ws / "echo").write_text("#!/bin/sh\ntouch pwned\n")
    (ws / "echo").chmod(0o755)
    for argv in (["touch", "pwned"], ["./echo"], [str(ws / "echo")], ["/usr/bin/echo", "x"]):
        with pytest.raises(ToolDenied, match=r"agents\.ops\.exec\.allow.*Do not retry"):
            await tool.run({"argv": argv}, ctx(ws))
    assert not (ws / "pwned").exists()
    by_path = exec_tool(allow("/usr/bin/ec*"))
    assert "hi" in await by_path.run({"argv": ["echo", "hi"]}, ctx(ws))  # found on PATH
    assert "hi" in await by_path.run({"argv": ["/usr/bin/echo", "hi"]}, ctx(ws))
    with pytest.raises(ToolDenied):
        await by_path.run({"argv": ["/usr/bin/../bin/echo", "hi"]}, ctx(ws))


async def test_a_relative_path_entry_never_finds_a_program_in_the_workspace_exec_i2(
    ws, monkeypatch
):
    (ws / "tool").write_text("#!/bin/sh\ntouch pwned\n")
    (ws / "tool").chmod(0o755)
    monkeypatch.setenv("PATH", ".:/usr/bin:/bin")
    with pytest.raises(ToolFailed, match="no program 'tool' on PATH"):
        await exec_tool(allow("tool")).run({"argv": ["tool"]}, ctx(ws))
    assert not (ws / "pwned").exists()


async def test_shell_metacharacters_never_pass_an_allow_list_exec_i2(ws):
    """Invariant EXEC-I2: program patterns never allow a shell command, and ``*`` in a shell
    pattern never matches shell syntax."""
    tool = exec_tool(allow("echo", "sh:echo *", shell=True))
    assert "--- stdout ---\nhello world" in await tool.run({"command": "echo hello world"}, ctx(ws))
    for command in (
        "echo hi; touch pwned",
        "echo hi && touch pwned",
        "echo $(touch pwned)",
        "echo `touch pwned`",
        "echo hi | tee pwned",
        "echo hi > pwned",
        "echo hi\ntouch pwned",
        "touch pwned",
    ):
        with pytest.raises(ToolDenied, match="none of the shell commands"):
            await tool.run({"command": command}, ctx(ws))
    # The argv form is no shell: metacharacters are plain arguments.
    text = await tool.run({"argv": ["echo", "hi; touch pwned", "$(touch pwned)"]}, ctx(ws))
    assert "--- stdout ---\nhi; touch pwned $(touch pwned)" in text
    assert not (ws / "pwned").exists()


async def test_argv_is_no_shell_and_a_command_needs_shell_true(ws):
    argv_only = exec_tool(ExecPolicy(policy="ask"))
    assert "command" not in argv_only.parameters["properties"]
    with pytest.raises(ToolFailed, match="may not use a shell") as err:
        await argv_only.run({"command": "echo $((1 + 2))"}, ctx(ws))
    assert not isinstance(err.value, ToolDenied)  # a usage error: retrying with argv is right
    shell = exec_tool(allow("sh:echo $((1 + 2))", "echo", shell=True))
    assert "--- stdout ---\n3" in await shell.run({"command": "echo $((1 + 2))"}, ctx(ws))
    assert "--- stdout ---\n$HOME *" in await shell.run({"argv": ["echo", "$HOME", "*"]}, ctx(ws))
    for bad in ({}, {"argv": ["echo"], "command": "echo"}, {"argv": []}, {"argv": ["echo", 1]}):
        with pytest.raises(ToolFailed, match="argv"):
            await shell.run(bad, ctx(ws))
    with pytest.raises(ToolFailed, match="timeout_s must be a positive"):
        await shell.run({"argv": ["echo"], "timeout_s": 0}, ctx(ws))


async def test_a_call_may_ask_for_less_time_but_never_more_than_the_config(ws):
    tool = exec_tool(allow("sleep", timeout_s=0.5))
    with pytest.raises(ToolFailed, match=r"timed out after 0\.5 s"):
        await tool.run({"argv": ["sleep", "30"], "timeout_s": 1000}, ctx(ws))


async def test_an_unknown_program_is_an_error_not_a_denial(ws):
    with pytest.raises(ToolFailed, match="no program 'no-such-program'") as err:
        await exec_tool(allow("*")).run({"argv": ["no-such-program"]}, ctx(ws))
    assert not isinstance(err.value, ToolDenied)


# ---- ask ------------------------------------------------------------------------------------


class Operator:
    def __init__(self, approved: bool, reason: str = "") -> None:
        self.approved, self.reason = approved, reason
        self.asked: list[ApprovalRequest] = []

    async def __call__(self, request: ApprovalRequest) -> ApprovalDecision:
        self.asked.append(request)
        return ApprovalDecision(self.approved, by="cli:alice", reason=self.reason)


async def test_ask_runs_an_approved_command_and_shows_the_operator_what_would_run_exec_i1(ws):
    """Invariant EXEC-I1 (ask)."""
    operator = Operator(approved=True)
    tool = exec_tool(ExecPolicy(policy="ask", allow=("echo",)))
    assert "made" not in os.listdir(ws)
    text = await tool.run({"argv": ["touch", "made file"]}, ctx(ws, operator))
    assert "exit code: 0" in text and (ws / "made file").exists()
    [request] = operator.asked
    assert request.tool == "exec" and request.summary == "touch 'made file'"
    assert request.details["argv"] == ["touch", "made file"]
    assert request.details["cwd"] == str(ws.resolve()) and request.details["shell"] is False
    # What allow matches runs without asking.
    assert "hi" in await tool.run({"argv": ["echo", "hi"]}, ctx(ws, operator))
    assert len(operator.asked) == 1


async def test_ask_refuses_a_denied_command_and_one_nobody_can_approve_exec_i7(ws):
    """Invariant EXEC-I7."""
    tool = exec_tool(ExecPolicy(policy="ask", shell=True))
    operator = Operator(approved=False, reason="not on a Friday")
    with pytest.raises(ToolDenied, match=r"denied by cli:alice: not on a Friday.*Do not retry"):
        await tool.run({"command": "touch pwned\nrm -rf x"}, ctx(ws, operator))
    [request] = operator.asked
    assert request.summary == "touch pwned\\nrm -rf x"  # one line
    assert request.details["command"] == "touch pwned\nrm -rf x" and request.details["shell"]
    with pytest.raises(ToolDenied, match=r"no approver.*Do not retry"):
        await tool.run({"argv": ["touch", "pwned"]}, ctx(ws, None))
    assert not (ws / "pwned").exists()


def test_the_tool_timeout_fits_an_approval_wait_and_the_command():
    for policy in ("allow", "ask"):
        tool = exec_tool(ExecPolicy(policy=policy, timeout_s=120))  # type: ignore[arg-type]
        wait = APPROVAL_WAIT_S if policy == "ask" else 0
        assert tool.timeout_s is not None and tool.timeout_s > 120 + wait


# ---- the decision, exhaustively -------------------------------------------------------------

METACHARS = ";&|<>()$`\\\"'\n*?[]{}~#!"
words = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\0"), max_size=12)
argvs = st.lists(words, min_size=1, max_size=4)
patterns = st.lists(
    st.one_of(words.filter(bool), st.sampled_from(["git", "g*", "/usr/bin/*", "sh:git log *"])),
    max_size=4,
)


@given(argvs, patterns, st.booleans())
def test_deny_denies_everything_exec_i1(argv, allowed, shell):
    policy = ExecPolicy(policy="deny", allow=tuple(allowed), shell=shell)
    assert exec_decision(policy, argv) == "deny"
    assert exec_decision(policy, " ".join(argv)) == "deny"


@given(argvs, patterns, st.booleans(), st.one_of(st.none(), st.just("/usr/bin/x")))
def test_ask_allows_exactly_what_allow_allows_and_allow_never_asks_exec_i1(
    argv, allowed, shell, program
):
    a = ExecPolicy(policy="allow", allow=tuple(allowed), shell=shell)
    q = ExecPolicy(policy="ask", allow=tuple(allowed), shell=shell)
    for command in (argv, " ".join(argv)):
        got_a = exec_decision(a, command, program=program)
        got_q = exec_decision(q, command, program=program)
        assert got_a in ("allow", "deny")
        assert (got_a == "allow") == (got_q == "allow")
        if not shell and isinstance(command, str):
            assert got_a == got_q == "deny"


@given(st.text(max_size=30), st.sampled_from(METACHARS))
def test_a_shell_pattern_never_lets_shell_syntax_through_its_wildcard_exec_i2(tail, meta):
    policy = ExecPolicy(policy="allow", allow=("sh:git log *",), shell=True)
    assert exec_decision(policy, f"git log {tail}{meta}{tail}") == "deny"
    assert exec_decision(policy, "git log -1 --oneline") == "allow"


@given(argvs, words)
def test_program_patterns_never_allow_a_shell_command_and_only_argv0_counts_exec_i2(argv, extra):
    assume(not argv[0].startswith("sh:"))
    policy = ExecPolicy(policy="allow", allow=(argv[0] or "x", "/usr/bin/*"), shell=True)
    assert exec_decision(policy, " ".join(argv)) == "deny"
    first = exec_decision(policy, argv, program="/usr/bin/x")
    assert exec_decision(policy, [argv[0], extra, *argv[1:]], program="/usr/bin/x") == first


paths = st.lists(
    st.sampled_from(["", ".", "..", "usr", "bin", "echo", "x*"]), min_size=2, max_size=5
)


@given(paths.map("/".join), st.sampled_from(["*", "echo", "/usr/bin/*", "/*/*/*", "/usr/*/echo"]))
def test_a_path_argv0_is_allowed_only_as_a_clean_absolute_path_exec_i2(argv0, pattern):
    got = exec_decision(ExecPolicy(policy="allow", allow=(pattern,)), [argv0])
    parts = argv0.split("/")
    clean = argv0.startswith("/") and all(p not in ("", ".", "..") for p in parts[1:])
    if got == "allow":
        assert clean and "/" in pattern


def test_pattern_problems_are_named():
    assert exec_pattern_problem("git", shell=False) is None
    assert exec_pattern_problem("/usr/bin/*", shell=False) is None
    assert "shell = false" in (exec_pattern_problem("sh:git log", shell=False) or "")
    assert "absolute" in (exec_pattern_problem("bin/git", shell=False) or "")
    assert exec_pattern_problem("", shell=True) is not None
    assert exec_pattern_problem("sh:  ", shell=True) is not None


# ---- the sandbox ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bwrap() -> str:
    """Debian's bubblewrap, installed with apt-get on first use when it is missing."""
    return ensure_bwrap()


class _Listener:
    """A TCP listener on the host's loopback, counting connections."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


async def test_the_sandbox_keeps_the_workspace_writable_and_the_rest_read_only_exec_i6(
    bwrap, ws, tmp_path
):
    """Invariant EXEC-I6: the workspace is writable; the host's files elsewhere are read-only
    (this repository, /etc), even to root trying to remount; /tmp is a private scratch."""
    tool = exec_tool(allow("sh", sandbox=True))
    (tmp_path / "outside.txt").write_text("keep")
    escape = ROOT / ".fencepost-sandbox-escape"
    script = (
        "echo made > inside.txt && echo ok-inside; "
        f"touch {escape} || echo refused-repo; "
        "touch /etc/fencepost-escape || echo refused-etc; "
        "mount -o remount,rw / 2>/dev/null || echo refused-remount; "
        f"echo changed > {tmp_path}/outside.txt; "
        "echo pid $$"
    )
    text = await tool.run({"argv": ["sh", "-c", script]}, ctx(ws))
    out = text.split("--- stdout ---\n")[1].split("\n--- stderr ---")[0].splitlines()
    assert out[:4] == ["ok-inside", "refused-repo", "refused-etc", "refused-remount"], text
    assert int(out[4].split()[1]) < 10  # its own pid namespace
    assert (ws / "inside.txt").read_text() == "made\n"
    assert (tmp_path / "outside.txt").read_text() == "keep"  # it wrote to its private /tmp
    assert not escape.exists() and not Path("/etc/fencepost-escape").exists()


async def test_the_sandbox_has_no_network_unless_allowed_exec_i6(bwrap, ws):
    """Invariant EXEC-I6: a listener on the host's loopback is out of reach, unless
    network = true."""
    listener = _Listener()
    probe = (
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {listener.port}), timeout=5).close()\n"
        "    print('connected')\n"
        "except OSError as e:\n"
        "    print('refused', e.errno)\n"
    )
    argv = [sys.executable, "-c", probe]
    try:
        closed = exec_tool(allow(sys.executable, sandbox=True))
        assert "--- stdout ---\nrefused" in await closed.run({"argv": argv}, ctx(ws))
        assert listener.accepted == 0
        opened = exec_tool(allow(sys.executable, sandbox=True, network=True))
        assert "--- stdout ---\nconnected" in await opened.run({"argv": argv}, ctx(ws))
        assert listener.accepted == 1
    finally:
        listener.close()


async def test_a_program_that_lives_under_tmp_still_runs_in_the_sandbox_exec_i6(bwrap, ws):
    """Invariant EXEC-I6: the sandbox's private /tmp hid a virtualenv in a temporary checkout
    (CI clones into /tmp: every sandboxed test failed there with "execvp: No such file"). The
    program's top directory under /tmp is bound back, read-only."""
    top = Path(tempfile.mkdtemp(dir="/tmp", prefix="fp-prog-"))
    try:
        prog = top / "venv" / "bin" / "hello"
        prog.parent.mkdir(parents=True)
        prog.write_text('#!/bin/sh\necho hello from $0\ntouch "$0.written" || echo read-only\n')
        prog.chmod(0o755)
        out = await exec_tool(allow(str(prog), sandbox=True)).run({"argv": [str(prog)]}, ctx(ws))
        assert f"hello from {prog}" in out and "read-only" in out, out
        assert not Path(f"{prog}.written").exists()
    finally:
        shutil.rmtree(top)


async def test_a_sandbox_that_cannot_start_refuses_the_command_never_runs_it_bare_exec_i6(
    ws, monkeypatch
):
    """Invariant EXEC-I6: no bwrap on the gateway's PATH, or a bwrap that fails: an error, and
    the command did not run."""
    bin_dir = ws.parent / "bin"
    bin_dir.mkdir()
    os.symlink(shutil.which("touch", path="/usr/bin:/bin"), bin_dir / "touch")
    monkeypatch.setenv("PATH", str(bin_dir))
    tool = exec_tool(allow("touch", sandbox=True), where="agents.ops.exec")
    with pytest.raises(ToolFailed, match=r"bubblewrap.*is not installed.*not run") as err:
        await tool.run({"argv": ["touch", "ran"]}, ctx(ws))
    assert "agents.ops.exec.sandbox = true" in str(err.value)
    assert not sandbox_status().available
    (bin_dir / "bwrap").write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n"
    )
    (bin_dir / "bwrap").chmod(0o755)
    with pytest.raises(ToolFailed, match=r"sandbox cannot start here.*No permissions"):
        await tool.run({"argv": ["touch", "ran"]}, ctx(ws))
    assert "No permissions" in sandbox_status().detail
    assert not (ws / "ran").exists()


async def test_the_sandbox_ends_even_a_process_that_left_the_group_exec_i3_exec_i6(bwrap, ws):
    """Invariants EXEC-I3, EXEC-I6: ``setsid`` leaves the process group, not the sandbox's pid
    namespace, which dies with the group's end."""
    marker = "1234.5678"
    tool = exec_tool(allow("sh", sandbox=True))
    script = (
        f"setsid sh -c 'echo $$ > inner.pid; exec sleep {marker}' & "
        "while [ ! -s inner.pid ]; do :; done; echo started"
    )
    text = await tool.run({"argv": ["sh", "-c", script]}, ctx(ws))
    assert "--- stdout ---\nstarted" in text and (ws / "inner.pid").read_text().strip()
    wanted = f"sleep\0{marker}\0".encode()
    left = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline == wanted and alive(int(name)):
                left.append(int(name))
    assert left == []


# ---- the config -------------------------------------------------------------------------------


def _config(exec_table: str, tools: str = '["exec"]') -> str:
    return (
        f'[agents.ops]\nmodel = "scripted/fast"\ntools = {tools}\n\n[agents.ops.exec]\n{exec_table}'
    )


@pytest.mark.parametrize(
    ("table", "tools", "key", "says"),
    [
        ("", '["exec"]', "agents.ops.tools", 'policy is "deny" (the default)'),
        ('policy = "deny"', '["current_time", "exec"]', "agents.ops.tools", "take exec out"),
        ('policy = "maybe"', '["exec"]', "agents.ops.exec.policy", '"deny", "allow" or "ask"'),
        ('policy = "allow"\nallow = ["bin/git"]', '["exec"]', "agents.ops.exec.allow", "absolute"),
        ('policy = "allow"\nallow = ["sh:git log"]', '["exec"]', "agents.ops.exec.allow", "shell"),
        (
            'policy = "ask"\nmax_output_bytes = 10000000',
            '["exec"]',
            "agents.ops.exec.max_output_bytes",
            "131072",
        ),
        ('policy = "ask"\ntimeout_s = 0', '["exec"]', "agents.ops.exec.timeout_s", "more than 0"),
        ('policy = "ask"\nenv = ["PATH", "1BAD"]', '["exec"]', "agents.ops.exec.env", "'1BAD'"),
        ('policy = "ask"\nsandbox = "yes"', '["exec"]', "agents.ops.exec.sandbox", "must be bool"),
        ('policy = "ask"\nshel = true', '["exec"]', "agents.ops.exec.shel", "unknown key"),
    ],
)
def test_a_bad_exec_table_is_refused_naming_the_key_and_line_exec_i8(table, tools, key, says):
    """Invariant EXEC-I8."""
    from fencepost import ConfigError
    from fencepost.runtime.config import parse_config

    text = _config(table, tools)
    with pytest.raises(ConfigError) as info:
        parse_config(tomllib.loads(text), source=text)
    assert info.value.key == key and info.value.line is not None and says in str(info.value)


def test_an_agent_gets_its_own_exec_tool_with_its_policy_exec_i8(tmp_path):
    """Invariant EXEC-I8: built per agent by agent_spec (never registrable), refused there too
    for an agent built in code with exec listed and policy deny."""
    from fencepost import ConfigError
    from fencepost.runtime.agent import Tool, ToolRegistry
    from fencepost.runtime.config import AgentConfig, StatePaths, agent_spec, parse_config

    text = _config('policy = "ask"\nallow = ["git"]\ntimeout_s = 30', '["current_time", "exec"]')
    cfg = parse_config(tomllib.loads(text), source=text).agents["ops"]
    spec = agent_spec(cfg, ToolRegistry(), StatePaths(tmp_path))
    assert list(spec.tools) == ["current_time", "exec"]
    tool = spec.tools["exec"]
    assert "programs allowed: git" in tool.description and "approval" in tool.description
    assert tool.timeout_s is not None and tool.timeout_s >= 30 + APPROVAL_WAIT_S
    with pytest.raises(ConfigError, match='policy is "deny"') as info:
        agent_spec(
            AgentConfig("x", "scripted/fast", tools=("exec",)), ToolRegistry(), StatePaths(tmp_path)
        )
    assert info.value.key == "agents.x.tools"
    with pytest.raises(ValueError, match="built per agent"):
        ToolRegistry([Tool("exec", "mine", tool.run)])
    with pytest.raises(ConfigError, match=r"known tools: .*exec"):
        ToolRegistry().select(["nope"])


async def test_doctor_says_whether_the_sandbox_works_and_fails_only_an_agent_needing_it_exec_i6(
    bwrap, tmp_path, monkeypatch
):
    """Invariant EXEC-I6, as ``fencepost doctor`` reports it."""
    from fencepost.runtime.config import StatePaths
    from fencepost.runtime.doctor import run_doctor

    paths = StatePaths(tmp_path / "home")
    paths.root.mkdir()
    paths.config.write_text(_config('policy = "allow"\nallow = ["git"]\nsandbox = true'))
    [ok] = [f for f in await run_doctor(paths) if f.check == "sandbox"]
    assert ok.status == "ok" and "available" in ok.detail
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on the PATH
    [bad] = [f for f in await run_doctor(paths) if f.check == "sandbox"]
    assert bad.status == "fail" and "agents.ops.exec.sandbox = true" in bad.detail
    assert "apt-get install bubblewrap" in bad.detail
    paths.config.write_text(_config('policy = "allow"\nallow = ["git"]'))
    [fine] = [f for f in await run_doctor(paths) if f.check == "sandbox"]
    assert fine.status == "ok" and "no agent asks for it" in fine.detail


def test_an_ask_exec_tool_outlasts_the_longest_approval_wait_the_config_allows():
    """The runner cuts a tool at its ``timeout_s``: an ``ask`` exec allows for the longest
    approval wait ``[approvals]`` accepts plus its own command timeout, so a wait the operator
    configured is never cut short as a tool timeout."""
    from fencepost.runtime.config import MAX_APPROVAL_WAIT_S

    policy = ExecPolicy(policy="ask", timeout_s=120)
    assert exec_tool(policy).timeout_s >= MAX_APPROVAL_WAIT_S + policy.timeout_s
