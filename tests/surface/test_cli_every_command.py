"""Every command of the CLI reference, run against an empty, a demo and a configured home: it
works or says what to do, and never shows a traceback (Invariant CLI-I1).

The commands run in-process through ``main`` (the CLI's one error boundary) with click's test
isolation; the long-running ones (``gateway``, ``demo``) and a few others run as real processes.
The command list comes from walking the click group, so a new command without an entry in
``INVOCATIONS`` fails ``test_every_command_of_the_cli_reference_has_invocations_here``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from fencepost.runtime.config import StatePaths
from fencepost.runtime.cron import CronStore
from fencepost.runtime.demo import DEMO_PREFIX, gateway_config
from fencepost.surface.cli import cli
from tests.helpers import procs
from tests.helpers.cli import invoke, running_gateway

HOMES = ("empty", "demo", "configured")

CONFIG = '[agents.ops]\nmodel = "scripted/fast"\n'

ENTRY = json.dumps({"type": "message", "message": {"role": "assistant", "content": "mirrored"}})

#: Typical invocations of every command; ``{job}``, ``{session}``, ``{agent}`` and ``{scratch}``
#: are filled in per home. ``None`` marks a command that only runs as a real process (below).
INVOCATIONS: dict[str, list[list[str]] | None] = {
    "agent run": [["--session", "{session}", "--message", "hello"]],
    "approvals approve": [["ap-0123456789abcdef"], ["ap-0123456789abcdef", "--json"]],
    "approvals deny": [["ap-0123456789abcdef", "--reason", "not today"]],
    "approvals list": [[], ["--json"]],
    "cron add": [["--name", "hourly", "--agent", "{agent}", "--every", "1h", "--message", "ok?"]],
    "cron disable": [["{job}"]],
    "cron edit": [["{job}", "--every", "2h"]],
    "cron enable": [["{job}"]],
    "cron list": [[], ["--json"]],
    "cron rm": [["{job}"]],
    "cron run": [["{job}"], ["{job}", "--json"], ["{job}", "--no-wait"]],
    "cron runs": [[], ["{job}"]],
    "cron show": [["{job}"]],
    "demo": None,
    "doctor": [[], ["--json"]],
    "gateway": None,
    "gc": [["--dry-run"], []],
    "init": [[]],
    "logs": [[], ["-n", "5", "--level", "warning"], ["--json"]],
    "mcp list": [[], ["--json"]],
    "mcp tools": [["time"]],
    "memory search": [["status"]],
    "reload": [[], ["--json"]],
    "service install": [["--print"]],
    "service status": [["--name", "fencepost-test-absent"]],
    "service uninstall": [["--name", "fencepost-test-absent"]],
    "sessions adopt": [["{session}", "--note", "checked by hand"]],
    "sessions append": [
        ["{session}", "--writer", "delivery", "--entry", ENTRY],
        ["{session}", "--writer", "delivery", "--entry", "@{scratch}/missing.json"],
    ],
    "sessions compact": [["{session}", "--summary", "so far", "--dry-run"]],
    "sessions list": [[], ["--json"], ["--root", "{scratch}/nowhere"]],
    "sessions show": [["{session}"], ["{session}", "--json"], ["/etc/passwd"]],
    "sessions tail": [["{session}"], ["{session}", "--json"]],
    "sessions verify": [["{session}"], ["{scratch}"]],
    "status": [[], ["--json"]],
    "trajectory export": [["{session}"]],
}


def command_names() -> list[str]:
    def walk(cmd: click.Command, prefix: list[str]) -> list[str]:
        if isinstance(cmd, click.Group):
            subs = sorted(cmd.commands.items())
            return [x for name, sub in subs for x in walk(sub, [*prefix, name])]
        return [" ".join(prefix)]

    return walk(cli, [])


@dataclass(frozen=True)
class Home:
    root: Path
    job: str
    session: str
    agent: str


def _job_id(root: Path, name: str | None = None) -> str:
    store = CronStore(root / "cron.db", create=False)
    try:
        jobs = [job for job, _ in store.list_jobs() if name is None or job.name == name]
    finally:
        store.close()
    return jobs[0].job_id


def _build(kind: str, root: Path) -> Home:
    root.mkdir(parents=True)
    if kind == "empty":
        return Home(root, job="feedc0de", session="s1", agent="ops")
    if kind == "demo":
        # What `fencepost gateway` leaves on a fresh directory: demo jobs (the same code path),
        # a fast demo run's sessions, and the URL file of a gateway that has stopped.
        gateway_config(StatePaths(root), None, install=True)
        job = _job_id(root, DEMO_PREFIX + "fast check on main")
        invoke(["cron", "run", job], root).check("building the demo home")
        (root / "gateway.url").write_text("http://127.0.0.1:9/\n")
        return Home(root, job=job, session="assistant-main", agent="assistant")
    (root / "fencepost.toml").write_text(CONFIG)
    made = invoke(
        ["cron", "add", "--name", "nightly", "--agent", "ops", "--every", "1h", "--message", "?"],
        root,
    )
    assert made.code == 0, made
    ran = invoke(["agent", "run", "--session", "s1", "--message", "hello"], root)
    assert ran.code == 0, ran
    return Home(root, job=_job_id(root), session="s1", agent="ops")


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Home]:
    base = tmp_path_factory.mktemp("homes")
    return {kind: _build(kind, base / kind) for kind in HOMES}


@pytest.fixture
def home_of(templates: dict[str, Home], tmp_path: Path):
    """A fresh copy of a template home, so one command's changes never reach the next."""

    def make(kind: str) -> Home:
        t = templates[kind]
        root = tmp_path / kind
        shutil.copytree(t.root, root)
        return Home(root, t.job, t.session, t.agent)

    return make


def _cases() -> list[tuple[str, str, list[str]]]:
    out = []
    for kind in HOMES:
        for name, invocations in INVOCATIONS.items():
            for args in invocations or []:
                out.append((kind, name, args))
    return out


def test_every_command_of_the_cli_reference_has_invocations_here():
    """Invariant CLI-I1: the every-command test covers every command there is."""
    assert sorted(INVOCATIONS) == command_names()


def _fill(arg: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        arg = arg.replace("{" + key + "}", value)
    return arg


@pytest.mark.parametrize(
    ("kind", "name", "args"),
    _cases(),
    ids=[f"{k}:{n} {' '.join(a)}"[:90] for k, n, a in _cases()],
)
def test_every_command_works_or_says_what_to_do_in_every_home(home_of, tmp_path, kind, name, args):
    """Invariant CLI-I1."""
    home = home_of(kind)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    fill = {
        "job": home.job,
        "session": home.session,
        "agent": home.agent,
        "scratch": str(scratch),
    }
    argv = [*name.split(), *(_fill(a, fill) for a in args)]
    invoke(argv, home.root).check(f"{kind} home: fencepost {' '.join(argv)}")


@pytest.mark.parametrize("name", command_names())
def test_every_command_answers_help_without_a_home(tmp_path, name):
    """Invariant CLI-I1."""
    out = invoke([*name.split(), "--help"], tmp_path / "nothing-here")
    out.check(f"fencepost {name} --help")
    assert out.code == 0 and "Usage:" in out.stdout
    assert not (tmp_path / "nothing-here").exists()


# ---- the known tracebacks, with what each now says ------------------------------------------


def test_sessions_list_and_show_before_any_session_exists_say_so(tmp_path):
    """Invariant CLI-I2."""
    listed = invoke(["sessions", "list"], tmp_path)
    listed.check("sessions list")
    assert listed.code == 0 and "no sessions yet" in listed.stderr
    assert json.loads(invoke(["sessions", "list", "--json"], tmp_path).stdout) == []
    shown = invoke(["sessions", "show", "s1"], tmp_path)
    shown.check("sessions show")
    assert shown.code == 3 and "session 's1' not found" in shown.stderr


def test_sessions_list_on_a_missing_folder_names_the_folder_and_exits_2(tmp_path):
    """Invariant CLI-I2: a folder the user named must exist; the default one may not yet."""
    out = invoke(["sessions", "list", "--root", str(tmp_path / "nowhere")], tmp_path)
    out.check("sessions list --root")
    assert out.code == 2
    assert f"no session directory at {tmp_path / 'nowhere'}" in out.stderr


def test_sessions_append_with_a_missing_entry_file_names_the_file_and_exits_2(tmp_path):
    """Invariant CLI-I2."""
    missing = tmp_path / "missing.json"
    out = invoke(
        ["sessions", "append", "s1", "--writer", "delivery", "--entry", f"@{missing}"], tmp_path
    )
    out.check("sessions append --entry @missing")
    assert out.code == 2 and f"cannot read --entry file {missing}" in out.stderr
    assert not (tmp_path / "sessions" / "s1.jsonl").exists()


def test_sessions_verify_and_show_of_a_directory_say_it_is_not_a_transcript(tmp_path):
    """Invariant CLI-I2."""
    for command in ("verify", "show", "tail"):
        out = invoke(["sessions", command, str(tmp_path)], tmp_path)
        out.check(f"sessions {command} DIR")
        assert out.code == 2 and "is a directory, not a transcript" in out.stderr


def test_sessions_show_of_a_file_that_is_not_a_transcript_fails_with_exit_2(tmp_path):
    """Invariant CLI-I2: /etc/passwd used to exit 0 after a screen of "not JSON" problems."""
    out = invoke(["sessions", "show", "/etc/passwd"], tmp_path)
    out.check("sessions show /etc/passwd")
    assert out.code == 2 and "/etc/passwd: not a session transcript" in out.stderr
    assert out.stdout == ""
    as_json = invoke(["sessions", "show", "/etc/passwd", "--json"], tmp_path)
    assert as_json.code == 2 and as_json.stdout == ""


def test_a_transcript_with_a_bad_line_still_shows_with_its_problems(tmp_path):
    """Invariant CLI-I2: only a file with no session header and no record is refused."""
    ok = invoke(["sessions", "append", "s1", "--writer", "delivery", "--entry", ENTRY], tmp_path)
    assert ok.code == 0, ok
    path = tmp_path / "sessions" / "s1.jsonl"
    with open(path, "ab") as f:
        f.write(b"{not json}\n")
    out = invoke(["sessions", "show", str(path)], tmp_path)
    out.check("sessions show with a bad line")
    assert out.code == 0 and "mirrored" in out.stdout and "s1.jsonl:3: not JSON" in out.stderr


# ---- as real processes -----------------------------------------------------------------------


@pytest.mark.processes
@pytest.mark.parametrize("command", ["gateway", "demo"])
@pytest.mark.parametrize("kind", HOMES)
def test_the_gateway_and_demo_start_and_stop_cleanly_in_every_home(home_of, kind, command):
    """Invariant CLI-I1, for the two commands that run until stopped."""
    home = home_of(kind)
    with running_gateway(home.root, command=command) as served:
        pass
    assert served.returncode == 0, served.stderr
    assert "Traceback" not in served.stderr, served.stderr
    assert "dashboard: http://127.0.0.1:" in served.stderr


@pytest.mark.processes
def test_the_known_tracebacks_are_messages_as_real_processes(tmp_path):
    """Invariant CLI-I1, through the installed entry point (`python -m fencepost`)."""
    env_home = ["--root", str(tmp_path / "sessions")]
    for argv, code in [
        (["sessions", "list", *env_home], 2),
        (["sessions", "show", "/etc/passwd"], 2),
        (["sessions", "verify", str(tmp_path)], 2),
        (["sessions", "append", "s1", "--writer", "delivery", "--entry", "@missing.json"], 2),
    ]:
        res = procs.cli(*argv)
        assert b"Traceback" not in res.stdout + res.stderr, res.stderr.decode()
        assert res.returncode == code, (argv, res.stderr.decode())
        assert res.stderr.startswith(b"error: "), res.stderr.decode()
