"""Bad input over the HTTP API and the CLI: a clear 4xx (or CLI error) naming what is wrong, and
nothing written — no new file, no new job, every transcript still verifying (Invariant HTTP-I9)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fencepost.core import verify_transcript
from fencepost.runtime.gateway import QUEUED_MESSAGE
from fencepost.surface.cli import cli

from .conftest import WRITE
from .test_api import assert_error

JOB = {
    "name": "disk report",
    "agent": "ops",
    "schedule": {"kind": "every", "every": "1h"},
    "payload": {"kind": "agent_turn", "text": "how is the disk?"},
}


def job(**changes):
    return json.dumps({**JOB, **changes})


def schedule(**fields):
    return job(schedule=fields)


def nested(depth: int) -> str:
    return '{"name": ' + "[" * depth + "]" * depth + "}"


#: (method, path, body, status, field): one row per class of bad input the issue names.
CASES = [
    # ids with path separators, NUL, newlines, over-long
    ("GET", "/api/sessions/..%2Fetc", None, 400, "session_id"),
    ("GET", "/api/sessions/abc%00", None, 400, "session_id"),
    ("GET", "/api/sessions/abc%0A", None, 400, "session_id"),
    ("GET", "/api/sessions/" + "a" * 200, None, 400, "session_id"),
    ("GET", "/api/sessions/.hidden/verify", None, 400, "session_id"),
    ("POST", "/api/sessions/abc%0A/messages", '{"text": "hi"}', 400, "session_id"),
    ("POST", "/api/sessions/a%2Fb/messages", '{"text": "hi"}', 400, "session_id"),
    ("GET", "/api/jobs/..%2F..%2Fcron.db", None, 404, None),  # no route has a slash in an id
    ("GET", "/api/jobs/abc%00def", None, 400, "job_id"),
    ("POST", "/api/jobs", job(target="session:abc\n"), 422, "target"),
    ("POST", "/api/jobs", job(target="session:../x"), 422, "target"),
    ("POST", "/api/jobs", job(delivery="session:a/b"), 422, "delivery"),
    ("POST", "/api/jobs", job(name="x" * 201), 422, "name"),
    ("POST", "/api/jobs", job(agent="../ops"), 422, "agent"),
    # unicode edge cases: lone surrogates, control characters, bytes that are not UTF-8
    ("POST", "/api/jobs", job(name="bad\ud800name"), 422, "name"),
    ("POST", "/api/jobs", job(name="a\x00b"), 422, "name"),
    ("POST", "/api/jobs", job(payload={"text": "hi \udfff"}), 422, "payload.text"),
    ("POST", "/api/jobs", job(payload={"text": "hi \x00"}), 422, "payload.text"),
    ("POST", "/api/jobs", job(model="openai/gpt\x00"), 422, "model"),
    ("POST", "/api/jobs", job(model="openai/\ud800"), 422, "model"),
    ("POST", "/api/jobs", job(delivery="https://example.com/\ud800"), 422, "delivery"),
    ("POST", "/api/jobs", job(delivery="http://[::1/"), 422, "delivery"),
    ("POST", "/api/jobs", job(delivery="http://example.com:99999999/"), 422, "delivery"),
    ("POST", "/api/sessions/s1/messages", '{"text": "x\\ud800"}', 422, "text"),
    ("POST", "/api/sessions/s1/messages", '{"text": "nul \\u0000"}', 422, "text"),
    ("POST", "/api/sessions/s1/messages", '{"text": " \\n "}', 422, "text"),
    ("POST", "/api/sessions/s1/messages", b'{"text": "\xff\xfe"}', 400, None),
    ("POST", "/api/jobs", b'{"name": "\xc3\x28"}', 400, None),
    # nesting
    ("POST", "/api/jobs", nested(100_000), 400, None),
    ("POST", "/api/jobs", nested(40), 400, None),
    ("POST", "/api/sessions/s1/messages", nested(5000), 400, None),
    # size
    ("POST", "/api/jobs", job(payload={"text": "x" * 3_000_000}), 413, None),
    ("POST", "/api/sessions/s1/messages", json.dumps({"text": "x" * 3_000_000}), 413, None),
    ("POST", "/api/sessions/s1/messages", json.dumps({"text": "x" * 1_500_000}), 413, "text"),
    ("POST", "/api/jobs", job(payload={"text": "x" * 300_000}), 422, "payload.text"),
    # overflowing numbers
    ("POST", "/api/jobs", schedule(kind="every", every=1e308), 422, "schedule.every"),
    ("POST", "/api/jobs", schedule(kind="every", every="9" * 400 + "s"), 422, "schedule.every"),
    ("POST", "/api/jobs", schedule(kind="at", at="9999999999999d"), 422, "schedule.at"),
    ("POST", "/api/jobs", schedule(kind="at", at="9999-12-31T23:59:59-23:59"), 422, "schedule.at"),
    ("POST", "/api/jobs", job(timeout_s=1e308), 422, "timeout_s"),
    ("POST", "/api/jobs", job(timeout_s="99999999999999d"), 422, "timeout_s"),
    (
        "POST",
        "/api/jobs",
        schedule(kind="cron", expr="0 * * * *", stagger="9" * 40 + "s"),
        422,
        "schedule.stagger",
    ),
    ("POST", "/api/jobs", '{"name": 1e999999}', 422, "name"),
    ("GET", "/api/runs?since=99999999999d", None, 422, "since"),
    ("GET", "/api/runs?since=9999-12-31T23:59:59-23:59", None, 422, "since"),
    ("GET", "/api/runs?before=" + "9" * 400, None, 422, "before"),
    ("GET", "/api/runs?limit=-1", None, 422, "limit"),
    ("GET", "/api/sessions?offset=" + "9" * 30, None, 422, "offset"),
    # unknown or odd time zones
    (
        "POST",
        "/api/jobs",
        schedule(kind="cron", expr="0 7 * * *", tz="Mars/Base"),
        422,
        "schedule.tz",
    ),
    (
        "POST",
        "/api/jobs",
        schedule(kind="cron", expr="0 7 * * *", tz="A" * 5000),
        422,
        "schedule.tz",
    ),
    (
        "POST",
        "/api/jobs",
        schedule(kind="cron", expr="0 7 * * *", tz="../../../etc/passwd"),
        422,
        "schedule.tz",
    ),
    (
        "POST",
        "/api/jobs",
        schedule(kind="cron", expr="0 7 * * *", tz="Europe/Berlin\x00"),
        422,
        "schedule.tz",
    ),
    (
        "POST",
        "/api/jobs",
        schedule(kind="at", at="2031-01-01T07:00", tz="Europe/Nowhere"),
        422,
        "schedule.tz",
    ),
]


def files(state: Path) -> dict[str, bytes]:
    """Every file the gateway keeps, with its bytes (the log and SQLite's shared memory aside)."""
    skip = (".log", ".jsonl.lock", "-shm", "-wal", "gateway.jsonl")
    return {
        str(p.relative_to(state)): p.read_bytes()
        for p in sorted(state.rglob("*"))
        if p.is_file() and not p.name.endswith(skip) and p.name != "cron.db"
    }


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_sound(state: Path) -> None:
    for path in (state / "sessions").glob("*.jsonl"):
        report = verify_transcript(path)
        assert report.ok, (path, report.to_json())


@pytest.fixture
async def seeded(gw, client):
    """A gateway with one job and one session holding a turn, as a user would have."""
    assert (await client.post("/api/jobs", json=JOB)).status_code == 201
    sent = await client.post("/api/sessions/s1/messages", json={"text": "hello"})
    assert sent.status_code == 202, sent.text
    while gw.lane_busy("s1"):
        await asyncio.sleep(0.01)
    return gw


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), CASES)
async def test_bad_input_is_a_4xx_naming_it_and_writes_nothing_http_i9(
    seeded, client, method, path, body, status, field
):
    """Invariant HTTP-I9."""
    state = seeded.paths.root
    before, jobs = files(state), seeded.cron.list_jobs()
    headers = {**WRITE, "content-type": "application/json"}
    r = await client.request(method, path, content=body, headers=headers)
    assert_error(r, status, field)
    assert 400 <= r.status_code < 500
    assert files(state) == before
    assert seeded.cron.list_jobs() == jobs
    assert_sound(state)


async def test_a_refused_patch_leaves_the_job_as_it_was_http_i9(seeded, client):
    """Invariant HTTP-I9: PATCH validates the whole body before it changes anything."""
    (job_before,) = (await client.get("/api/jobs")).json()["jobs"]
    body = {"name": "renamed", "schedule": {"kind": "cron", "expr": "0 7 * * *", "tz": "Mars/X"}}
    r = await client.patch(f"/api/jobs/{job_before['job_id']}", json=body, headers=WRITE)
    assert_error(r, 422, "schedule.tz")
    assert (await client.get("/api/jobs")).json()["jobs"] == [job_before]


async def test_an_accepted_message_is_in_the_transcript_when_the_202_is_sent_gateway_i6(gw, client):
    """Invariant GATEWAY-I6: no waiting after the 202; the message is already there."""
    r = await client.post("/api/sessions/s2/messages", json={"text": "are you there?"})
    assert r.status_code == 202 and r.json()["status"] == "started"
    transcript = (gw.paths.sessions / "s2.jsonl").read_text()
    assert "are you there?" in transcript


async def test_a_message_to_a_busy_session_is_durable_before_its_turn_starts_gateway_i6(gw, client):
    """Invariant GATEWAY-I6: ``thinker`` does not steer, so a second message is queued; the
    queued record is in the file at the 202, and the turn writes the message when it starts."""
    first = await client.post("/api/sessions/s3/messages", json={"text": "one", "agent": "thinker"})
    assert first.json()["status"] == "started"
    second = await client.post(
        "/api/sessions/s3/messages", json={"text": "two", "agent": "thinker"}
    )
    assert second.status_code == 202 and second.json()["status"] == "queued"
    records = read_records(gw.paths.sessions / "s3.jsonl")
    queued = [r for r in records if r.get("customType") == QUEUED_MESSAGE]
    assert [q["data"]["text"] for q in queued] == ["two"]
    while gw.lane_busy("s3") or gw.statistics().lanes:
        await asyncio.sleep(0.02)
    records = read_records(gw.paths.sessions / "s3.jsonl")
    users = [
        r["message"]["content"]
        for r in records
        if r.get("type") == "message" and r["message"]["role"] == "user"
    ]
    assert users == ["one", "two"]
    assert_sound(gw.paths.root)


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--every", "1e308"], "ten years"),
        (["--every", "99999999999999d"], "ten years"),
        (["--at", "9999-12-31T23:59:59-23:59"], "out of range"),
        (["--cron", "0 7 * * *", "--tz", "A" * 5000], "unknown time zone"),
        (["--cron", "0 7 * * *", "--tz", "Mars/Base"], "unknown time zone"),
        (["--every", "1h", "--target", "session:a/b"], "invalid session id"),
        (["--every", "1h", "--message", "x\udcff"], "lone UTF-16 surrogate"),
        (["--every", "1h", "--message", "bell\x07"], "control character"),
        (["--every", "1h", "--deliver", "https://example.com/\ud800"], "invalid delivery URL"),
    ],
)
def test_the_cli_refuses_the_same_bad_input_and_adds_no_job_http_i9(tmp_path, args, complaint):
    """Invariant HTTP-I9: the CLI goes through the same parsers as the API."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "fencepost.toml").write_text('[agents.ops]\nmodel = "scripted/fast"\n')
    base = ["cron", "add", "--state-dir", str(state), "--name", "x", "--agent", "ops"]
    if "--message" not in args:
        args = [*args, "--message", "m"]
    res = CliRunner().invoke(cli, [*base, *args])
    assert res.exit_code != 0
    assert complaint in str(res.exception) or complaint in res.output, (res.output, res.exception)
    listed = CliRunner().invoke(cli, ["cron", "list", "--state-dir", str(state), "--json"])
    assert json.loads(listed.output) == []


async def test_a_message_whose_turn_cannot_write_it_is_refused_not_accepted_gateway_i6(gw, client):
    """Invariant GATEWAY-I6: an edit made outside the protocol stops the turn before it writes
    the message; the sender gets the reason (409), not a 202 for a message that never lands."""
    first = await client.post("/api/sessions/s4/messages", json={"text": "first"})
    assert first.status_code == 202
    while gw.lane_busy("s4"):
        await asyncio.sleep(0.01)
    path = gw.paths.sessions / "s4.jsonl"
    with path.open("ab") as f:
        f.write(b'{"type":"custom","customType":"edited by hand","data":{}}\n')
    before = path.read_bytes()
    r = await client.post("/api/sessions/s4/messages", json={"text": "second"})
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]["code"] in {"outside_protocol_change", "session_takeover"}
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/api/sessions/abc", "GET"),
        ("POST", "/api/sessions/abc/verify", "GET"),
        ("GET", "/api/sessions/abc/messages", "POST"),
    ],
)
async def test_a_session_route_asked_with_the_wrong_method_is_a_405_naming_the_right_one(
    gw, client, method, path, allowed
):
    r = await client.request(method, path, headers=WRITE)
    assert_error(r, 405)
    assert allowed in r.headers["allow"]
    assert not list(gw.paths.sessions.glob("abc*"))
