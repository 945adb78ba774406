"""``fencepost sessions ...`` as a user runs it: real processes, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fencepost import SessionStore, message, walk_chain
from tests.helpers import procs

pytestmark = pytest.mark.processes


def entry(text: str) -> str:
    return json.dumps({"type": "message", "message": {"role": "assistant", "content": text}})


def test_append_from_another_process_then_show_list_and_verify(tmp_path):
    root = str(tmp_path)
    for writer, text in [("delivery", "mirror one"), ("plugin:notes", "note")]:
        res = procs.cli(
            "sessions", "append", "--root", root, "s1", "--writer", writer, "--entry", entry(text)
        )
        assert res.returncode == 0, res.stderr.decode()
        assert b"appended seq" in res.stdout
    shown = procs.cli("sessions", "show", "--root", root, "s1", "--json")
    recs = json.loads(shown.stdout)["records"]
    assert [r["fencepost"]["writer"] for r in recs] == ["delivery", "plugin:notes"]
    human = procs.cli("sessions", "show", "--root", root, "s1").stdout.decode()
    assert "plugin:notes" in human and "mirror one" in human
    listed = json.loads(procs.cli("sessions", "list", "--root", root, "--json").stdout)
    assert [r["session_id"] for r in listed] == ["s1"]
    ok = procs.cli("sessions", "verify", os.path.join(root, "s1.jsonl"))
    assert ok.returncode == 0 and b"sound" in ok.stdout


def test_verify_names_each_problem_by_line_and_exits_1(tmp_path):
    path = tmp_path / "bad.jsonl"
    store = SessionStore(tmp_path, durability="buffered")
    import asyncio

    asyncio.run(store.session("bad").append(message("user", "x"), writer="delivery"))
    with open(path, "ab") as f:
        f.write(b"\xff\xfe\n{not json}\n[1,2]\n" + b'{"type":"message","id":"abcd0000"}\n')
    before = path.read_bytes()
    res = procs.cli("sessions", "verify", str(path), "--json")
    assert res.returncode == 1
    report = json.loads(res.stdout)
    lines = {(p["line"], p["kind"]) for p in report["problems"]}
    assert {(3, "malformed"), (4, "malformed"), (5, "malformed"), (6, "outside_protocol")} <= lines
    human = procs.cli("sessions", "verify", str(path))
    assert human.returncode == 1 and b"line 3" in human.stdout
    assert path.read_bytes() == before  # verify never changes a byte
    store.close()


def test_bad_input_gets_a_clear_error_and_loses_nothing(tmp_path):
    root = str(tmp_path)
    res = procs.cli(
        "sessions",
        "append",
        "--root",
        root,
        "../escape",
        "--writer",
        "delivery",
        "--entry",
        entry("x"),
    )
    assert res.returncode == 2 and b"invalid session id" in res.stderr
    res = procs.cli(
        "sessions", "append", "--root", root, "s", "--writer", "delivery", "--entry", "{nope"
    )
    assert res.returncode == 2 and b"--entry is not JSON" in res.stderr
    res = procs.cli(
        "sessions", "append", "--root", root, "s", "--writer", "bogus", "--entry", entry("x")
    )
    assert res.returncode == 2 and b"unknown writer kind" in res.stderr
    res = procs.cli(
        "sessions",
        "append",
        "--root",
        root,
        "s",
        "--writer",
        "delivery",
        "--entry",
        json.dumps({"type": "session"}),
    )
    assert res.returncode == 2
    res = procs.cli("sessions", "show", "--root", root, "missing")
    assert res.returncode == 3 and b"not found" in res.stderr
    big = json.dumps({"type": "custom", "customType": "x", "data": "y" * (2 * 1024 * 1024)})
    res = procs.cli(
        "sessions",
        "append",
        "--root",
        root,
        "s",
        "--writer",
        "delivery",
        "--entry",
        "-",
        stdin=big.encode(),
    )
    assert res.returncode == 2 and b"exceeds the limit" in res.stderr
    assert not os.path.exists(os.path.join(root, "s.jsonl"))
    assert not os.path.exists(os.path.join(root, "..", "escape.jsonl"))


def test_an_outside_change_is_refused_by_the_cli_and_adopted_by_the_operator(tmp_path):
    root = str(tmp_path)
    assert (
        procs.cli(
            "sessions", "append", "--root", root, "s", "--writer", "delivery", "--entry", entry("a")
        ).returncode
        == 0
    )
    with open(tmp_path / "s.jsonl", "ab") as f:
        f.write(b'{"type":"custom","customType":"by-hand","data":{}}\n')
    res = procs.cli(
        "sessions", "append", "--root", root, "s", "--writer", "delivery", "--entry", entry("b")
    )
    assert res.returncode == 4 and b"foreign_append" in res.stderr
    shown = procs.cli("sessions", "show", "--root", root, "s").stdout
    assert b"outside_change" in shown
    res = procs.cli("sessions", "adopt", "--root", root, "s", "--note", "alice added it")
    assert res.returncode == 0, res.stderr
    assert (
        procs.cli(
            "sessions", "append", "--root", root, "s", "--writer", "delivery", "--entry", entry("c")
        ).returncode
        == 0
    )
    assert walk_chain((tmp_path / "s.jsonl").read_bytes()).ok


def test_tail_follow_shows_records_as_they_land_with_their_writer(tmp_path):
    root = str(tmp_path)
    procs.cli(
        "sessions", "append", "--root", root, "s", "--writer", "delivery", "--entry", entry("first")
    )
    tail = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fencepost",
            "sessions",
            "tail",
            "-f",
            "--interval",
            "0.05",
            "--root",
            root,
            "s",
        ],
        env=procs.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert tail.stdout is not None
        assert b"session" in tail.stdout.readline()  # the header, line 1
        assert b"first" in tail.stdout.readline()
        procs.cli(
            "sessions",
            "append",
            "--root",
            root,
            "s",
            "--writer",
            "plugin:live",
            "--entry",
            entry("second"),
        )
        deadline = time.monotonic() + 20
        line = b""
        while b"second" not in line and time.monotonic() < deadline:
            line = tail.stdout.readline()
        assert b"second" in line and b"plugin:live" in line
    finally:
        tail.send_signal(signal.SIGTERM)
        tail.communicate()


def _long_session(root, turns=6):
    import asyncio

    async def fill():
        store = SessionStore(root, durability="buffered")
        for i in range(turns):
            await store.session("m").append(
                [message("user", f"check {i} " + "q" * 300), message("assistant", "a" * 300)],
                writer="delivery",
            )
        store.close()

    asyncio.run(fill())


def test_sessions_compact_dry_run_writes_nothing_and_compact_appends_one_verified_entry(tmp_path):
    # Invariant COMPACT-I4: by hand too, every record stays and the transcript verifies.
    root = str(tmp_path / "sessions")
    _long_session(root)
    path = os.path.join(root, "m.jsonl")
    with open(path, "rb") as f:
        before = f.read()
    home = ["--home", str(tmp_path / "home")]
    dry = procs.cli(
        "sessions",
        "compact",
        "--root",
        root,
        *home,
        "m",
        "--dry-run",
        "--json",
        "--keep-tokens",
        "200",
    )
    assert dry.returncode == 0, dry.stderr.decode()
    plan = json.loads(dry.stdout)
    assert plan["dry_run"] and not plan["compacted"] and plan["summarized_messages"] > 0
    with open(path, "rb") as f:
        assert f.read() == before
    done = procs.cli(
        "sessions",
        "compact",
        "--root",
        root,
        *home,
        "m",
        "--json",
        "--keep-tokens",
        "200",
        "--summary",
        "operator summary",
    )
    assert done.returncode == 0, done.stderr.decode()
    got = json.loads(done.stdout)
    assert got["compacted"] and got["first_kept_entry_id"] == plan["first_kept_entry_id"]
    with open(path, "rb") as f:
        after = f.read()
    assert after.startswith(before)
    last = json.loads(after.splitlines()[-1])
    assert last["type"] == "compaction" and last["summary"] == "operator summary"
    assert last["firstKeptEntryId"] == plan["first_kept_entry_id"]
    assert last["fencepost"]["writer"] == "compaction"
    assert procs.cli("sessions", "verify", "--root", root, "m").returncode == 0
    by_model = procs.cli("sessions", "compact", "--root", root, *home, "m", "--keep-tokens", "100")
    assert by_model.returncode == 0, by_model.stderr.decode()
    assert b"compacted" in by_model.stdout


def test_append_refuses_a_repeated_id_an_unknown_parent_and_the_lease_holders_kinds(tmp_path):
    """Invariants STORE-I13, STORE-I14: refused before writing, exit 2, the field named."""
    root = str(tmp_path)

    def append(writer: str, obj: dict) -> subprocess.CompletedProcess[bytes]:
        args = ["--root", root, "s", "--writer", writer, "--entry", json.dumps(obj)]
        return procs.cli("sessions", "append", *args)

    msg = {"type": "message", "message": {"role": "user", "content": "a"}}
    assert append("delivery", {**msg, "id": "0000aaaa"}).returncode == 0
    before = (tmp_path / "s.jsonl").read_bytes()
    res = append("delivery", {**msg, "id": "0000aaaa"})
    assert res.returncode == 2 and b"'id' '0000aaaa' is already the id" in res.stderr
    res = append("delivery", {**msg, "parentId": "ffffffff"})
    assert res.returncode == 2 and b"'parentId' 'ffffffff' names no record" in res.stderr
    for kind in ("attempt", "compaction"):
        res = append(kind, msg)
        assert res.returncode == 2 and b"reserved for the holder" in res.stderr, res.stderr
    assert (tmp_path / "s.jsonl").read_bytes() == before
    assert procs.cli("sessions", "verify", "--root", root, "s").returncode == 0


def test_adopt_records_a_baseline_that_verify_and_doctor_honour_and_names_what_left(tmp_path):
    """Invariant STORE-I15: back to green after `adopt`, and told what left the active path."""
    home = tmp_path
    root = str(home / "sessions")
    os.makedirs(root)
    for text in ("one", "two"):
        args = ["--root", root, "s", "--writer", "delivery", "--entry", entry(text)]
        assert procs.cli("sessions", "append", *args).returncode == 0
    first_id = json.loads(procs.cli("sessions", "show", "--root", root, "s", "--json").stdout)[
        "records"
    ][0]["id"]
    with open(os.path.join(root, "s.jsonl"), "ab") as f:  # the case: a repeated id
        f.write(json.dumps({"type": "custom", "customType": "x", "id": first_id}).encode() + b"\n")
    assert procs.cli("sessions", "verify", "--root", root, "s").returncode == 1
    assert json.loads(procs.cli("doctor", "--home", str(home), "--json").stdout)["status"] == "fail"
    res = procs.cli("sessions", "adopt", "--root", root, "s", "--note", "alice", "--by", "alice")
    assert res.returncode == 0, res.stderr
    out = res.stdout.decode()
    assert "verify reports problems before it as adopted" in out
    assert "record(s) left the active path" in out and "--leaf" in out
    res = procs.cli("sessions", "verify", "--root", root, "s")
    assert res.returncode == 0, res.stdout
    assert b"adopted by alice" in res.stdout and b"problem(s) before line 5, adopted" in res.stdout
    doc = json.loads(procs.cli("doctor", "--home", str(home), "--json").stdout)
    assert doc["status"] == "ok", doc
    [note] = [f for f in doc["findings"] if f["check"] == "verify"]
    assert "adopted by alice" in note["detail"]
