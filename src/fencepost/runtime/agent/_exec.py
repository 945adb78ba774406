"""The ``exec`` tool: a command in the agent's workspace, under the agent's policy
(docs/design/exec.md).

The policy decision is one pure function (``exec_decision``); the rest runs the command: its
own session and process group, stdin from /dev/null, an environment from an allow-list, output
read as it comes and capped, and the whole group ended (SIGTERM, then SIGKILL) whenever the
call ends: done, timed out or cancelled. Optionally under bubblewrap (``bwrap``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..children import POLL_S, ChildRecord, ChildRegistry, group_alive, signal_group
from ._tools import ApprovalRequest, Tool, ToolContext, ToolDenied, ToolFailed

__all__ = [
    "APPROVAL_WAIT_S",
    "DEFAULT_EXEC_ENV",
    "CommandOutcome",
    "ExecDecision",
    "ExecPolicy",
    "ExecPolicyName",
    "KILL_GRACE_S",
    "SHELL_PATTERN_PREFIX",
    "SandboxStatus",
    "exec_decision",
    "exec_pattern_problem",
    "exec_tool",
    "find_bwrap",
    "fit_output",
    "render_outcome",
    "resolve_program",
    "run_command",
    "sandbox_argv",
    "sandbox_problem",
    "sandbox_status",
]

ExecPolicyName = Literal["deny", "allow", "ask"]
ExecDecision = Literal["allow", "deny", "ask"]

#: The variables a command sees when the config names none: enough for programs to find each
#: other, their locale, their time zone and the user's config; no tokens, no keys.
DEFAULT_EXEC_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")
#: How long an ``ask`` may wait for the operator. The approver bounds its own wait; this only
#: sizes the tool's timeout so that a wait of that length plus the command fit.
APPROVAL_WAIT_S = 600.0
#: After SIGTERM, how long the command's group gets to exit before SIGKILL.
KILL_GRACE_S = 2.0
#: After SIGKILL, how long the killed get to finish dying (the kernel's part of an exit).
KILL_WAIT_S = 1.0
#: After the group is gone, how long the pipes get to reach end of file (a process that left
#: the group may hold them; the result then says its output may be incomplete).
PIPE_GRACE_S = 1.0
#: Time past the command's own timeout that the tool's timeout allows (the sandbox probe, the
#: kill grace, the pipes), so the command's timeout, which keeps its output, fires first.
TOOL_SLACK_S = KILL_GRACE_S + KILL_WAIT_S + PIPE_GRACE_S + 6.0
#: An allow-list entry with this prefix is a pattern on a whole shell command.
SHELL_PATTERN_PREFIX = "sh:"
#: What ``*`` matches in a shell pattern: characters the shell reads as parts of words, never
#: as syntax (no quotes, ``$``, backquotes, separators, redirections, globs, ``~``, ``#``).
_SHELL_WORD_CHARS = r"[A-Za-z0-9_./=:,+@%\- ]*"
#: How long the sandbox probe may take.
PROBE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ExecPolicy:
    """``[agents.<name>.exec]``: what an agent's ``exec`` tool may run, and how."""

    policy: ExecPolicyName = "deny"
    #: Programs (``git``, ``/usr/bin/*``) and, with ``sh:``, whole shell commands.
    allow: tuple[str, ...] = ()
    #: May the model pass ``command`` (a string for /bin/sh -c)?
    shell: bool = False
    #: The longest a command may run (a call may ask for less).
    timeout_s: float = 60.0
    #: stdout and stderr together, in the result; the rest is counted and dropped.
    max_output_bytes: int = 64 * 1024
    #: The names of the environment variables a command sees (values from the gateway's).
    env: tuple[str, ...] = DEFAULT_EXEC_ENV
    #: Run under bubblewrap: the workspace writable, the rest read-only, no network.
    sandbox: bool = False
    #: With the sandbox: the command may reach the network.
    network: bool = False


# ---- the decision (pure) --------------------------------------------------------------------


def _clean_absolute(path: str) -> bool:
    """``/a/b/c`` with no empty, ``.`` or ``..`` component: the kernel opens what it says."""
    if not path.startswith("/") or "\0" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/")[1:])


def _path_match(pattern: str, path: str) -> bool:
    """Component by component, so ``*`` never crosses a ``/``."""
    want, got = pattern.split("/"), path.split("/")
    return len(want) == len(got) and all(
        fnmatch.fnmatchcase(g, w) for w, g in zip(want, got, strict=True)
    )


def _shell_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(
        "".join(_SHELL_WORD_CHARS if c == "*" else re.escape(c) for c in pattern), re.DOTALL
    )


def _program_allowed(patterns: Sequence[str], argv0: str, program: str | None) -> bool:
    bare = "/" not in argv0
    path = (program if program and _clean_absolute(program) else None) if bare else None
    if not bare and _clean_absolute(argv0):
        path = argv0
    for pattern in patterns:
        if pattern.startswith(SHELL_PATTERN_PREFIX):
            continue
        if "/" in pattern:
            if path is not None and _path_match(pattern, path):
                return True
        elif bare and argv0 not in ("", ".", "..") and fnmatch.fnmatchcase(argv0, pattern):
            return True
    return False


def exec_decision(
    policy: ExecPolicy, command: Sequence[str] | str, *, program: str | None = None
) -> ExecDecision:
    """Whether ``command`` runs (``allow``), is refused (``deny``) or needs an operator
    (``ask``) under ``policy``. Pure; Invariants EXEC-I1, EXEC-I2.

    ``command`` is an argv (a list) or a shell command (a string). ``program`` is the absolute
    path a bare ``argv[0]`` resolved to on PATH (``resolve_program``), for patterns with a
    ``/``. An allow-list entry matches:

    - ``name`` (no ``/``, glob allowed): a bare ``argv[0]`` (no ``/``), by name;
    - ``/dir/name`` (glob per path component): the program's absolute path: ``argv[0]`` when
      it is a clean absolute path, else the path a bare ``argv[0]`` resolved to;
    - ``sh:<command>``: a whole shell command, character for character, where ``*`` stands for
      a run of word characters (letters, digits, space, ``_./=:,+@%-``) and never for shell
      syntax.

    Program patterns never allow a shell command and shell patterns never allow an argv; a
    relative path (``./x``, ``bin/x``) matches nothing.
    """
    if policy.policy == "deny":
        return "deny"
    if isinstance(command, str):
        if not policy.shell or "\0" in command:
            return "deny"
        allowed = any(
            _shell_regex(p[len(SHELL_PATTERN_PREFIX) :]).fullmatch(command)
            for p in policy.allow
            if p.startswith(SHELL_PATTERN_PREFIX)
        )
    else:
        if not command or any("\0" in a for a in command):
            return "deny"
        allowed = _program_allowed(policy.allow, command[0], program)
    if allowed:
        return "allow"
    return "ask" if policy.policy == "ask" else "deny"


def exec_pattern_problem(pattern: str, *, shell: bool) -> str | None:
    """What is wrong with an allow-list entry, or None (for the config's errors). Pure."""
    if not pattern or "\0" in pattern:
        return "an empty pattern (or one with a NUL) matches nothing"
    if pattern.startswith(SHELL_PATTERN_PREFIX):
        if not pattern[len(SHELL_PATTERN_PREFIX) :].strip():
            return f"{pattern!r} names no command"
        if not shell:
            return f"{pattern!r} is a shell command pattern, but shell = false"
        return None
    if "/" in pattern and not pattern.startswith("/"):
        return f"{pattern!r}: a pattern with a '/' must be an absolute path"
    if "/" in pattern and not all(p for p in pattern.split("/")[1:]):
        return f"{pattern!r}: an empty path component"
    return None


def resolve_program(name: str, path_var: str | None) -> str | None:
    """The absolute path ``name`` (no ``/``) runs from, searching the absolute entries of
    ``path_var`` (default ``os.defpath``) in order; relative entries are skipped, so a program
    is never found in the workspace through PATH (Invariant EXEC-I2)."""
    for entry in (path_var if path_var is not None else os.defpath).split(os.pathsep):
        if not entry.startswith("/"):
            continue
        candidate = os.path.join(entry, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


# ---- the sandbox ---------------------------------------------------------------------------


def find_bwrap() -> str | None:
    """``bwrap`` on the gateway's own PATH (not the commands' allow-listed one)."""
    return shutil.which("bwrap")


def sandbox_argv(bwrap: str, workspace: str, inner: Sequence[str], *, network: bool) -> list[str]:
    """``inner`` under bubblewrap: the root file system read-only, ``workspace`` writable, a
    private /tmp, /dev and /proc of its own, new namespaces (pid, ipc, uts, net unless
    ``network``), no capabilities, killed when the gateway dies (Invariant EXEC-I6).

    A program that lives under /tmp (a virtualenv in a temporary checkout) would vanish behind
    the private /tmp: the top directory under /tmp that holds it is bound back, read-only."""
    return [
        bwrap,
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", "/tmp",
        *(a for top in _under_tmp(inner[:1]) for a in ("--ro-bind", top, top)),
        "--bind", workspace, workspace,
        "--unshare-all",
        *(["--share-net"] if network else []),
        "--die-with-parent",
        "--cap-drop", "ALL",
        "--chdir", workspace,
        "--",
        *inner,
    ]  # fmt: skip


def _under_tmp(paths: Sequence[str]) -> list[str]:
    """``/tmp/<top>`` for each absolute path (as given and resolved) below /tmp. Pure but for
    the resolving."""
    tops: list[str] = []
    for path in paths:
        for p in {path, os.path.realpath(path)} if os.path.isabs(path) else ():
            parts = Path(p).parts  # ("/", "tmp", top, ...)
            if len(parts) > 3 and parts[1] == "tmp":
                top = os.path.join("/tmp", parts[2])
                if top not in tops:
                    tops.append(top)
    return tops


@dataclass(frozen=True)
class SandboxStatus:
    available: bool
    bwrap: str | None
    detail: str


def sandbox_status() -> SandboxStatus:
    """Whether bubblewrap is installed and can build the exec sandbox here (it needs user
    namespaces, or root). Runs ``bwrap`` once on a temporary workspace (blocking)."""
    bwrap = find_bwrap()
    if bwrap is None:
        return SandboxStatus(
            False,
            None,
            "bubblewrap (bwrap) is not installed: apt-get install bubblewrap "
            "(agents with exec.sandbox = true refuse to run commands without it)",
        )
    with tempfile.TemporaryDirectory(prefix="fencepost-probe-") as ws:
        argv = sandbox_argv(bwrap, ws, ["/bin/sh", "-c", ":"], network=False)
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=PROBE_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return SandboxStatus(False, bwrap, f"{bwrap} cannot run: {exc}")
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip() or f"exit code {done.returncode}"
        return SandboxStatus(False, bwrap, f"{bwrap} cannot build the sandbox here: {why}")
    return SandboxStatus(True, bwrap, f"{bwrap} works (user namespaces available)")


async def sandbox_problem(bwrap: str, workspace: str, network: bool) -> str | None:
    """Why the sandbox cannot start for this workspace, or None (runs ``bwrap`` once)."""
    argv = sandbox_argv(bwrap, workspace, ["/bin/sh", "-c", ":"], network=network)
    try:
        done = await run_command(
            argv, cwd=workspace, env={}, timeout_s=PROBE_TIMEOUT_S, max_output_bytes=4096
        )
    except OSError as exc:
        return f"{bwrap} cannot run: {exc.strerror or exc}"
    if done.timed_out:
        return f"{bwrap} did not start within {PROBE_TIMEOUT_S:g} s"
    if done.exit_code != 0:
        return done.stderr.decode(errors="replace").strip() or f"exit code {done.exit_code}"
    return None


# ---- running a command -------------------------------------------------------------------------


class _Sink(asyncio.Protocol):
    """One pipe as it arrives: kept up to ``cap`` bytes, the rest counted and dropped."""

    def __init__(self, cap: int, done: asyncio.Future[None]) -> None:
        self.cap = cap
        self.kept = bytearray()
        self.total = 0
        self.done = done

    def data_received(self, data: bytes) -> None:
        # Invariant EXEC-I4: memory is bounded by the cap, however much the command writes.
        self.total += len(data)
        room = self.cap - len(self.kept)
        if room > 0:
            self.kept += data[:room]

    def eof_received(self) -> bool:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def fit_output(out: bytes, err: bytes, cap: int) -> tuple[bytes, bytes]:
    """stdout and stderr cut to ``cap`` bytes together: each gets half, and what one leaves
    unused goes to the other (so a flood on stdout never hides stderr). Pure."""
    if len(out) + len(err) <= cap:
        return out, err
    half = cap // 2
    if len(err) <= half:
        return out[: cap - len(err)], err
    if len(out) <= cap - half:
        return out, err[: cap - len(out)]
    return out[: cap - half], err[:half]


@dataclass(frozen=True)
class CommandOutcome:
    exit_code: int | None
    stdout: bytes
    stderr: bytes
    stdout_bytes: int
    stderr_bytes: int
    timed_out: bool
    #: A process outside the group held the pipes past the group's end.
    pipes_held: bool
    notes: tuple[str, ...] = field(default_factory=tuple)


async def _gone_within(pgid: int, within_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while group_alive(pgid):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def _end_group(pgid: int) -> None:
    """Invariant EXEC-I3: SIGTERM to the whole group, up to KILL_GRACE_S for it to exit, then
    SIGKILL, and up to KILL_WAIT_S for the killed to die. The SIGKILL is sent in a ``finally``,
    so a second cancellation cannot skip it."""
    try:
        if not group_alive(pgid):
            return
        signal_group(pgid, signal.SIGTERM)
        if await _gone_within(pgid, KILL_GRACE_S):
            return
    finally:
        if group_alive(pgid):
            signal_group(pgid, signal.SIGKILL)
    # A SIGKILLed process still runs its exit in the kernel for a moment; wait for that, so
    # that when the call returns none of its processes is alive.
    await _gone_within(pgid, KILL_WAIT_S)


def _spawn(
    argv: Sequence[str],
    cwd: str,
    env: Mapping[str, str],
    children: ChildRegistry | None,
    about: Mapping[str, str] | None,
    kind: str,
) -> tuple[subprocess.Popen[bytes], ChildRecord | None]:
    """Start ``argv`` and record it, with nothing awaited in between (Invariant CHILD-I1): a
    cancellation can never find a started command that its caller does not know about."""
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=dict(env),
        # Invariant EXEC-I3: its own session, so its own process group (pgid == pid).
        start_new_session=True,
    )
    try:
        record = children.add(proc.pid, argv, kind, about=about) if children else None
    except BaseException:
        signal_group(proc.pid, signal.SIGKILL)
        _reap(proc)
        raise
    return proc, record


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Collect the exit status of a leader already signalled (no zombie left behind)."""
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    if proc.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=KILL_WAIT_S)


def _watch_exit(
    loop: asyncio.AbstractEventLoop, proc: subprocess.Popen[bytes], exited: asyncio.Future[None]
) -> Callable[[], None]:
    """Set ``exited`` when ``proc`` exits (a pidfd where the kernel has them, else a poll);
    returns the function that stops watching."""

    def check() -> None:
        if not exited.done() and proc.poll() is not None:
            exited.set_result(None)

    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # Linux < 5.3: look every POLL_S
        handle: list[asyncio.TimerHandle] = []

        def tick() -> None:
            check()
            if not exited.done():
                handle[:] = [loop.call_later(POLL_S, tick)]

        def stop_polling() -> None:
            for h in handle:
                h.cancel()

        tick()
        return stop_polling

    loop.add_reader(pidfd, check)

    def stop() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)

    return stop


async def _connect(
    loop: asyncio.AbstractEventLoop, sink: _Sink, pipe: Any
) -> asyncio.BaseTransport:
    transport, _ = await loop.connect_read_pipe(lambda: sink, pipe)
    return transport


async def run_command(
    argv: Sequence[str],
    *,
    cwd: str,
    env: Mapping[str, str],
    timeout_s: float,
    max_output_bytes: int,
    children: ChildRegistry | None = None,
    about: Mapping[str, str] | None = None,
    kind: str = "exec",
) -> CommandOutcome:
    """Run ``argv`` and end its whole process group however the call ends (done, timed out,
    cancelled). OSError if it cannot start."""
    loop = asyncio.get_running_loop()
    proc, record = _spawn(argv, cwd, env, children, about, kind)
    pgid = proc.pid
    exited: asyncio.Future[None] = loop.create_future()
    sinks = [_Sink(max_output_bytes, loop.create_future()) for _ in range(2)]
    transports: list[asyncio.BaseTransport] = []
    timed_out = pipes_held = False
    stop_watching: Callable[[], None] = lambda: None  # noqa: E731
    try:
        try:
            stop_watching = _watch_exit(loop, proc, exited)
            async with asyncio.timeout(timeout_s):
                for sink, pipe in zip(sinks, (proc.stdout, proc.stderr), strict=True):
                    transports.append(await _connect(loop, sink, pipe))
                await exited
        except TimeoutError:
            timed_out = True
    finally:
        try:
            await _end_group(pgid)  # on every path: done, timeout, cancellation
            await asyncio.wait([exited, *(s.done for s in sinks)], timeout=PIPE_GRACE_S)
            pipes_held = not all(s.done.done() for s in sinks)
        finally:
            stop_watching()
            for transport in transports:
                transport.close()
            _reap(proc)
            if record is not None and children is not None:
                # Invariant CHILD-I1: the record goes once the group was ended.
                children.remove(record)
    return CommandOutcome(
        exit_code=proc.returncode,
        stdout=bytes(sinks[0].kept),
        stderr=bytes(sinks[1].kept),
        stdout_bytes=sinks[0].total,
        stderr_bytes=sinks[1].total,
        timed_out=timed_out,
        pipes_held=pipes_held,
    )


def _one_line(text: str) -> str:
    """``text`` on one line: control characters shown as escapes."""
    return "".join(
        c if c.isprintable() or c == " " else c.encode("unicode_escape").decode() for c in text
    )


def _exit_text(code: int | None) -> str:
    if code is None:
        return "exit code: unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"exit code: {code} (killed by {name})"
    return f"exit code: {code}"


def render_outcome(shown: str, outcome: CommandOutcome, cap: int) -> str:
    """The text the model reads: the command, the exit code, stdout and stderr labelled, and
    what was cut. Pure."""
    out, err = fit_output(outcome.stdout, outcome.stderr, cap)
    lines = [f"$ {shown}", _exit_text(outcome.exit_code)]
    for label, kept, total in (
        ("stdout", out, outcome.stdout_bytes),
        ("stderr", err, outcome.stderr_bytes),
    ):
        text = kept.decode("utf-8", errors="replace")
        lines.append(f"--- {label} ---")
        lines.append(text.rstrip("\n") if text else "(empty)")
        if total > len(kept):
            # Invariant EXEC-I4: a cut is always said, with the sizes.
            lines.append(
                f"[{label} truncated: {len(kept)} of {total} bytes shown; max_output_bytes = {cap}]"
            )
    if outcome.pipes_held:
        lines.append(
            "[output may be incomplete: a process that left the command's process group "
            "still held its pipes]"
        )
    return "\n".join(lines)


# ---- the tool ---------------------------------------------------------------------------------


def _child_env(names: Sequence[str]) -> dict[str, str]:
    # Invariant EXEC-I5: only the allow-listed names, with the gateway's values.
    return {name: os.environ[name] for name in names if name in os.environ}


def _describe_policy(policy: ExecPolicy) -> str:
    programs = [p for p in policy.allow if not p.startswith(SHELL_PATTERN_PREFIX)]
    commands = [p[len(SHELL_PATTERN_PREFIX) :] for p in policy.allow if p not in programs]
    parts = []
    if programs:
        parts.append("programs allowed: " + ", ".join(programs))
    if commands:
        parts.append("shell commands allowed: " + "; ".join(commands))
    if policy.policy == "ask":
        parts.append("anything else waits for an operator's approval")
    elif policy.policy == "allow":
        parts.append("anything else is refused")
    if policy.sandbox:
        net = "with" if policy.network else "without"
        parts.append(f"sandboxed: only the workspace is writable, {net} network")
    return "; ".join(parts)


class _ExecTool:
    def __init__(self, policy: ExecPolicy, children: ChildRegistry | None, where: str) -> None:
        self.policy = policy
        self.children = children
        self.where = where
        self._sandbox_ok: set[tuple[str, bool]] = set()

    def _denied(self, shown: str, why: str) -> ToolDenied:
        # Invariant EXEC-I7: a refusal tells the model not to retry.
        return ToolDenied(
            f"exec refused `{shown}`: {why}. Do not retry this command or a variant of it; "
            "tell the user what you wanted to run and why."
        )

    def _arguments(self, args: Mapping[str, Any]) -> tuple[list[str] | None, str | None, float]:
        argv, command = args.get("argv"), args.get("command")
        if (argv is None) == (command is None):
            raise ToolFailed("pass exactly one of argv (a list of strings) or command (a string)")
        if argv is not None:
            if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
                raise ToolFailed("argv must be a non-empty list of strings")
            if not argv[0] or any("\0" in a for a in argv):
                raise ToolFailed("argv[0] must name a program, and no argument may hold a NUL")
        if command is not None:
            if not isinstance(command, str) or not command.strip() or "\0" in command:
                raise ToolFailed("command must be a non-empty string without NUL")
            if not self.policy.shell:
                raise ToolFailed(
                    "this agent may not use a shell (command); pass argv instead: the "
                    'program and its arguments as a list, e.g. {"argv": ["git", "log", "-1"]}'
                )
        timeout_s = self.policy.timeout_s
        if "timeout_s" in args:
            asked = args["timeout_s"]
            if isinstance(asked, bool) or not isinstance(asked, int | float) or not asked > 0:
                raise ToolFailed("timeout_s must be a positive number of seconds")
            timeout_s = min(float(asked), self.policy.timeout_s)  # capped by the config
        return argv, command, timeout_s

    async def __call__(self, args: Mapping[str, Any], ctx: ToolContext) -> str:
        policy = self.policy
        argv, command, timeout_s = self._arguments(args)
        shown = _one_line(command if command is not None else shlex.join(argv or []))
        if policy.policy == "deny":
            raise self._denied(shown, f'exec is off for this agent ({self.where}.policy = "deny")')
        env = _child_env(policy.env)
        workspace = ctx.workspace.resolve()
        workspace.mkdir(parents=True, exist_ok=True)
        program: str | None = None
        if argv is not None and "/" not in argv[0]:
            program = resolve_program(argv[0], env.get("PATH"))
            if program is None:
                where = env.get("PATH", os.defpath)
                raise ToolFailed(f"no program {argv[0]!r} on PATH ({where})")
        decision = exec_decision(
            policy, argv if argv is not None else str(command), program=program
        )
        if decision == "deny":
            if argv is not None:
                why = f"{argv[0]} is not among the programs this agent may run"
            else:
                why = "the command matches none of the shell commands this agent may run"
            raise self._denied(shown, f"{why} ({self.where}.allow)")
        if decision == "ask":
            await self._ask(ctx, shown, argv, command, workspace, timeout_s)
        if command is not None:
            inner = ["/bin/sh", "-c", command]
        else:
            assert argv is not None
            inner = [program or argv[0], *argv[1:]]  # exactly the program the policy judged
        full = await self._sandboxed(inner, str(workspace)) if policy.sandbox else inner
        about = {"agent": ctx.agent, "session": ctx.session_id, "run": ctx.run_id}
        try:
            outcome = await run_command(
                full,
                cwd=str(workspace),
                env=env,
                timeout_s=timeout_s,
                max_output_bytes=policy.max_output_bytes,
                children=self.children,
                about=about,
            )
        except OSError as exc:
            raise ToolFailed(f"could not start `{shown}`: {exc.strerror or exc}") from exc
        text = render_outcome(shown, outcome, policy.max_output_bytes)
        if outcome.timed_out:
            raise ToolFailed(
                f"timed out after {timeout_s:g} s: the command's process group was ended "
                f"(SIGTERM, then SIGKILL); output so far:\n{text}"
            )
        return text

    async def _ask(
        self,
        ctx: ToolContext,
        shown: str,
        argv: list[str] | None,
        command: str | None,
        workspace: Path,
        timeout_s: float,
    ) -> None:
        if ctx.approve is None:
            raise self._denied(
                shown, "it needs an operator's approval and this run has no approver"
            )
        details: dict[str, Any] = {"argv": argv} if argv is not None else {"command": command}
        details.update(
            cwd=str(workspace),
            shell=command is not None,
            sandbox=self.policy.sandbox,
            network=self.policy.network and self.policy.sandbox,
            timeout_s=timeout_s,
        )
        decision = await ctx.approve(ApprovalRequest(tool="exec", summary=shown, details=details))
        if not decision.approved:
            reason = f": {decision.reason}" if decision.reason else ""
            raise self._denied(shown, f"denied by {decision.by}{reason}")

    async def _sandboxed(self, inner: list[str], workspace: str) -> list[str]:
        bwrap = find_bwrap()
        # Invariant EXEC-I6: sandbox requested and not available is an error, never a run
        # without it.
        if bwrap is None:
            raise ToolFailed(
                f"{self.where}.sandbox = true but bubblewrap (bwrap) is not installed; the "
                "command was not run (the operator can install it: apt-get install bubblewrap)"
            )
        key = (workspace, self.policy.network)
        if key not in self._sandbox_ok:
            problem = await sandbox_problem(bwrap, workspace, self.policy.network)
            if problem is not None:
                raise ToolFailed(
                    f"{self.where}.sandbox = true but the sandbox cannot start here, so the "
                    f"command was not run: {problem}"
                )
            self._sandbox_ok.add(key)
        return sandbox_argv(bwrap, workspace, inner, network=self.policy.network)


def exec_tool(
    policy: ExecPolicy, *, children: ChildRegistry | None = None, where: str = "exec"
) -> Tool:
    """The ``exec`` tool for one agent's ``policy``. ``children`` records every command's
    process while it runs (``StatePaths.children``); ``where`` is the config key of the policy
    (``agents.<name>.exec``), named in refusals."""
    properties: dict[str, Any] = {
        "argv": {
            "type": "array",
            "items": {"type": "string"},
            "description": 'the program and its arguments, e.g. ["git", "log", "-1"] '
            "(no shell: no pipes, globs or variables)",
        },
        "timeout_s": {
            "type": "number",
            "description": f"seconds before the command is killed (at most {policy.timeout_s:g})",
        },
    }
    if policy.shell:
        properties["command"] = {
            "type": "string",
            "description": "a shell command line for /bin/sh -c (instead of argv)",
        }
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if not policy.shell:
        parameters["required"] = ["argv"]
    about = _describe_policy(policy)
    description = (
        "Run a command in the agent's workspace; the result has its exit code, stdout and "
        f"stderr (at most {policy.max_output_bytes} bytes together, {policy.timeout_s:g} s)."
        + (f" Policy: {about}." if about else "")
    )
    wait_s = APPROVAL_WAIT_S if policy.policy == "ask" else 0.0
    return Tool(
        "exec",
        description,
        _ExecTool(policy, children, where),
        parameters,
        # An approval wait plus the command plus its cleanup fit (EXEC-I3 keeps the output).
        timeout_s=policy.timeout_s + TOOL_SLACK_S + wait_s,
    )
