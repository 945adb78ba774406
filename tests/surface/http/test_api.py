"""The JSON API over a real gateway (scripted models), through the ASGI transport."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

import pytest

from fencepost import custom, message

from .conftest import WRITE, takeover_run

JOB = {
    "name": "disk report",
    "agent": "ops",
    "schedule": {"kind": "every", "every": "1h"},
    "payload": {"kind": "agent_turn", "text": "how is the disk?"},
}


async def add_job(client, **changes):
    r = await client.post("/api/jobs", json={**JOB, **changes})
    assert r.status_code == 201, r.text
    return r.json()


def assert_error(r, status, field=None):
    """Invariant HTTP-I2: every error is {"error": {"code", "message", "field"?}}."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert isinstance(err["code"], str) and err["code"]
    assert isinstance(err["message"], str) and err["message"]
    if field is not None:
        assert err["field"] == field, err
    return err


async def test_health_reports_status_version_uptime_and_statistics(client):
    r = await client.get("/api/health")
    body = r.json()
    assert r.status_code == 200
    assert body["status"] == "ok" and body["version"]
    assert body["uptime_s"] >= 0
    assert body["scheduler"]["started"] is True
    assert set(body["gateway"]) >= {"running_turns", "queued_turns", "turns_ok"}
    assert body["agents"] == ["ops", "thinker"]


async def test_a_job_is_created_listed_read_changed_and_deleted(client, gw):
    job = await add_job(client)
    assert job["state"]["next_run_at"] is not None
    assert job["schedule"]["every_s"] == 3600.0

    listed = (await client.get("/api/jobs")).json()["jobs"]
    assert [j["job_id"] for j in listed] == [job["job_id"]]
    assert listed[0]["state"]["last_status"] is None

    by_prefix = await client.get(f"/api/jobs/{job['job_id'][:8]}")
    assert by_prefix.json()["name"] == "disk report"

    r = await client.patch(
        f"/api/jobs/{job['job_id']}",
        json={
            "name": "disk check",
            "schedule": {"kind": "cron", "expr": "30 7 * * *", "tz": "Europe/Berlin"},
        },
    )
    assert r.status_code == 200, r.text
    changed = r.json()
    assert changed["name"] == "disk check"
    assert changed["schedule"] == {
        "kind": "cron",
        "expr": "30 7 * * *",
        "tz": "Europe/Berlin",
        "stagger_s": 0.0,
    }
    assert changed["state"]["next_run_at"] != job["state"]["next_run_at"]

    r = await client.delete(f"/api/jobs/{job['job_id']}", headers=WRITE)
    assert r.json() == {"deleted": job["job_id"], "name": "disk check"}
    assert_error(await client.get(f"/api/jobs/{job['job_id']}"), 404)
    assert gw.cron.list_jobs() == []


async def test_disabling_and_enabling_a_job_follows_the_cli_rules(client, gw):
    job = await add_job(client)
    r = await client.patch(f"/api/jobs/{job['job_id']}", json={"enabled": False})
    assert r.json()["enabled"] is False
    assert r.json()["state"]["disabled_reason"] == "disabled over HTTP"
    gw.cron.update_state(job["job_id"], consecutive_errors=3)
    r = await client.patch(f"/api/jobs/{job['job_id']}", json={"enabled": True})
    state = r.json()["state"]
    assert r.json()["enabled"] is True
    assert state["disabled_reason"] is None and state["consecutive_errors"] == 0


async def test_after_ledger_pruning_the_jobs_api_shows_the_run_counts_unchanged(client, gw):
    # Invariant RETENTION-I3, RETENTION-G5: GET /api/jobs and /api/jobs/{id} read CronStore's
    # counts, which pruning never changes.
    job = await add_job(client)
    assert job["run_counts"] == {"runs": 0}
    for i, status in enumerate(["ok", "error", "takeover", "ok"]):
        gw.cron.insert_run(takeover_run(job["job_id"], 1, run_id=f"r{i}", status=status))
    gw.cron.update_state(job["job_id"], last_status="ok", last_run_id="r3")
    want = {"ok": 2, "error": 1, "takeover": 1, "runs": 4}
    before = (await client.get("/api/jobs")).json()["jobs"]
    assert [j["run_counts"] for j in before] == [want]
    assert gw.cron.prune_runs(["r0", "r1", "r2"]) == 3
    assert [r.run_id for r in gw.cron.runs(job_id=job["job_id"])] == ["r3"]
    assert (await client.get("/api/jobs")).json()["jobs"] == before
    one = (await client.get(f"/api/jobs/{job['job_id']}")).json()
    assert one["run_counts"] == want and one["state"]["last_status"] == "ok"


async def test_a_job_for_an_unknown_agent_is_refused_with_422_naming_the_agent(client, gw):
    err = assert_error(
        await client.post("/api/jobs", json={**JOB, "agent": "nobody"}), 422, "agent"
    )
    assert "nobody" in err["message"] and "ops" in err["message"]
    assert gw.cron.list_jobs() == []


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        ({"kind": "cron", "expr": "0 7 * *"}, "schedule.expr"),
        ({"kind": "cron", "expr": "61 7 * * *"}, "schedule.expr"),
        ({"kind": "cron", "expr": "0 7 * * *", "tz": "Mars/Olympus"}, "schedule.tz"),
        ({"kind": "every", "every": "1s"}, "schedule.every"),
        ({"kind": "at", "at": "2001-01-01T00:00Z"}, "schedule.at"),
        ({"kind": "weekly"}, "schedule.kind"),
        ({"kind": "every", "every": "1h", "when": "now"}, "schedule.when"),
        ({"kind": "every", "every": "1h", "tz": "Mars/Base"}, "schedule.tz"),  # CRON-I15
        ({"kind": "at", "at": "20m", "tz": "Europe/Berlin"}, "schedule.tz"),
        ({"kind": "at", "at": "2099-01-01T07:00+02:00", "tz": "Europe/Berlin"}, "schedule.tz"),
        ({"kind": "cron", "expr": "@reboot"}, "schedule.expr"),
        ("every hour", "schedule"),
    ],
)
async def test_a_bad_schedule_is_refused_with_422_naming_the_field(client, schedule, field):
    assert_error(await client.post("/api/jobs", json={**JOB, "schedule": schedule}), 422, field)


# Invariant CRON-I14
async def test_a_weekly_nickname_is_accepted_and_kept_as_written_cron_i14(client):
    body = {**JOB, "schedule": {"kind": "cron", "expr": "@weekly", "tz": "Europe/Berlin"}}
    res = await client.post("/api/jobs", json=body)
    assert res.status_code == 201, res.text
    job = res.json()
    assert job["schedule"]["expr"] == "@weekly" and job["schedule"]["tz"] == "Europe/Berlin"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": None}, "name"),
        ({"payload": {"text": "  "}}, "payload.text"),
        ({"target": "../etc"}, "target"),
        ({"model": "gpt"}, "model"),
        ({"model": "nowhere/model"}, "model"),
        ({"timeout_s": -5}, "timeout_s"),
        ({"delivery": "ftp://x"}, "delivery"),
        ({"enabled": "yes"}, "enabled"),
        ({"colour": "red"}, "colour"),
        ({"payload": {"kind": "system_event", "text": "x"}}, "target"),
    ],
)
async def test_an_invalid_job_field_is_refused_with_422_naming_it(client, changes, field):
    assert_error(await client.post("/api/jobs", json={**JOB, **changes}), 422, field)


async def test_a_body_that_is_not_json_is_a_400(client):
    r = await client.post(
        "/api/jobs", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert_error(r, 400)


async def test_running_a_job_now_and_waiting_returns_the_ledger_row_with_the_reply(client, gw):
    job = await add_job(client)
    r = await client.post(f"/api/jobs/{job['job_id']}/run?wait=true", headers=WRITE)
    assert r.status_code == 200, r.text
    body = r.json()
    run = body["run"]
    assert body["status"] == "ok" and run["run_id"] == body["run_id"]
    assert run["status"] == "ok" and run["trigger"] == "manual"
    assert run["reply"] == "the disk is fine"
    assert run["model"] == "scripted/replies"
    assert run["duration_s"] is not None
    assert (await client.get(f"/api/runs/{body['run_id']}")).json() == run
    state = (await client.get(f"/api/jobs/{job['job_id']}")).json()["state"]
    assert state["last_status"] == "ok" and state["last_run_id"] == body["run_id"]


async def test_running_now_without_waiting_answers_202_and_the_run_lands_in_the_ledger(client, gw):
    job = await add_job(client, agent="thinker")
    r = await client.post(f"/api/jobs/{job['job_id']}/run", headers=WRITE)
    assert r.status_code == 202
    run_id = r.json()["run_id"]
    assert r.headers["location"] == f"/api/runs/{run_id}"
    assert (await client.get(f"/api/runs/{run_id}")).json()["status"] == "running"
    again = await client.post(f"/api/jobs/{job['job_id']}/run", headers=WRITE)
    assert_error(again, 409)
    await gw.scheduler.wait_idle()
    assert (await client.get(f"/api/runs/{run_id}")).json()["status"] == "ok"


async def test_the_runs_ledger_pages_newest_first_and_filters_by_job_status_and_time(client, gw):
    a = await add_job(client, name="a")
    b = await add_job(client, name="b")
    ids = []
    for job in (a, b, a, a):
        r = await client.post(f"/api/jobs/{job['job_id']}/run?wait=true", headers=WRITE)
        ids.append(r.json()["run_id"])
    page = (await client.get("/api/runs?limit=3")).json()
    assert [r["run_id"] for r in page["runs"]] == ids[::-1][:3]
    rest = (await client.get(f"/api/runs?limit=3&before={page['next_before']}")).json()
    assert [r["run_id"] for r in rest["runs"]] == [ids[0]]
    assert rest["next_before"] is None

    only_a = (await client.get(f"/api/runs?job={a['job_id'][:8]}")).json()["runs"]
    assert {r["job_name"] for r in only_a} == {"a"} and len(only_a) == 3
    assert (await client.get("/api/runs?status=error,timeout")).json()["runs"] == []
    assert len((await client.get("/api/runs?status=ok&since=1h")).json()["runs"]) == 4
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert (await client.get("/api/runs", params={"since": future})).json()["runs"] == []
    assert_error(await client.get("/api/runs?status=great"), 422, "status")
    assert_error(await client.get("/api/runs?limit=0"), 422, "limit")
    assert_error(await client.get("/api/runs?since=yesterday-ish"), 422, "since")


async def test_unknown_jobs_runs_sessions_and_routes_are_404_with_a_json_error(client):
    """Invariant HTTP-I2."""
    assert_error(await client.get("/api/jobs/0f0f0f0f-0000-4000-8000-000000000000"), 404)
    assert_error(await client.get("/api/runs/nope"), 404)
    assert_error(await client.get("/api/sessions/nope"), 404)
    assert_error(await client.get("/api/sessions/nope/verify"), 404)
    assert_error(await client.get("/api/sessions/nope/events"), 404)
    assert_error(await client.get("/api/no-such-thing"), 404)
    assert_error(await client.put("/api/jobs", json={}), 405)
    assert_error(await client.get("/api/jobs/zz"), 400, "job_id")


@pytest.mark.parametrize("bad", [".hidden", "a..b", "..%2F..%2Fetc%2Fpasswd", "a%2Fb", "x%00y"])
async def test_path_like_session_ids_are_refused_with_400(client, bad):
    for suffix in ("", "/verify", "/events"):
        assert_error(await client.get(f"/api/sessions/{bad}{suffix}"), 400, "session_id")
    r = await client.post(f"/api/sessions/{bad}/messages", json={"text": "hi"})
    assert_error(r, 400, "session_id")


async def seed_session(gw, session_id="notes"):
    session = gw.store.session(session_id)
    first = await session.append(message("user", "remember the disk"), writer="operator")
    await session.append(
        custom("delivery-mirror", {"text": "disk 80% full"}), writer="delivery", run_id="run-42"
    )
    await session.append(message("assistant", "noted"), writer="plugin:notes")
    return session, first


async def test_the_sessions_list_shows_size_last_writer_and_lease_holder(client, gw):
    await seed_session(gw)
    rows = (await client.get("/api/sessions")).json()
    assert rows["total"] == 1
    row = rows["sessions"][0]
    assert row["session_id"] == "notes"
    assert row["size_bytes"] == os.path.getsize(gw.store.session("notes").path)
    assert row["last_writer"] == "plugin:notes" and row["lease_holder"] is None


async def test_a_session_page_shows_each_record_with_its_writer_run_epoch_and_seq(client, gw):
    await seed_session(gw)
    page = (await client.get("/api/sessions/notes")).json()
    assert page["header"]["type"] == "session" and page["total"] == 3
    got = [(r["writer"], r["run_id"], r["seq"], r["type"]) for r in page["records"]]
    seqs = [r["seq"] for r in page["records"]]
    assert got == [
        ("operator", None, seqs[0], "message"),
        ("delivery", "run-42", seqs[0] + 1, "custom"),
        ("plugin:notes", None, seqs[0] + 2, "message"),
    ]
    assert all(isinstance(r["epoch"], int) for r in page["records"])
    assert page["records"][1]["parentId"] == page["records"][0]["id"]
    assert page["records"][0]["summary"] == "user: remember the disk"
    two = (await client.get("/api/sessions/notes?offset=1&limit=1")).json()
    assert [r["index"] for r in two["records"]] == [1] and two["next_offset"] == 2


async def test_verify_reports_a_sound_session_and_lists_its_fence_events(client, gw):
    session, _ = await seed_session(gw)
    report = (await client.get("/api/sessions/notes/verify")).json()
    assert report["ok"] is True and report["fence_events"] == []
    assert report["writers"]["delivery"] == 1 and report["writers"]["plugin:notes"] == 1

    with open(session.path, "ab") as f:  # an editor appends outside the protocol
        f.write(b'{"type":"custom","customType":"sneaky","data":1}\n')
    with pytest.raises(Exception, match="outside the protocol"):
        await session.append(custom("late", 1), writer="delivery")
    report = (await client.get("/api/sessions/notes/verify")).json()
    [event] = report["fence_events"]
    assert event["reason"] == "foreign_append" and event["writer"] == "delivery"


async def test_sending_a_message_answers_202_and_the_turn_lands(client, gw):
    r = await client.post("/api/sessions/chat-1/messages", json={"text": "check the disk"})
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "started" and body["session_id"] == "chat-1" and body["run_id"]
    for _ in range(200):
        page = (
            (await client.get("/api/sessions/chat-1")).json()
            if gw.store.session("chat-1").exists()
            else {"records": []}
        )
        texts = [r["summary"] for r in page["records"] if r["type"] == "message"]
        if "assistant: the disk is fine" in texts:
            break
        await asyncio.sleep(0.05)
    assert texts == ["user: check the disk", "assistant: the disk is fine"]
    run_ids = {r["run_id"] for r in page["records"] if r["writer"] == "attempt"}
    assert run_ids == {body["run_id"]}


async def test_a_message_during_a_turn_is_queued_for_an_agent_without_steering(client, gw):
    first = await client.post("/api/sessions/t/messages", json={"text": "one", "agent": "thinker"})
    await asyncio.sleep(0.1)
    second = await client.post("/api/sessions/t/messages", json={"text": "two", "agent": "thinker"})
    assert (first.json()["status"], second.json()["status"]) == ("started", "queued")
    while gw.statistics().running_turns or gw.statistics().queued_turns:
        await asyncio.sleep(0.05)
    page = (await client.get("/api/sessions/t")).json()
    users = [r["summary"] for r in page["records"] if r["summary"].startswith("user:")]
    assert users == ["user: one", "user: two"]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"text": ""}, "text"), ({"text": "x", "agent": "nobody"}, "agent"), ({"txt": "x"}, "txt")],
)
async def test_a_bad_message_is_refused_with_422_naming_the_field(client, body, field):
    assert_error(await client.post("/api/sessions/s/messages", json=body), 422, field)


def _files(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        st = os.stat(path)
        with open(path, "rb") as f:
            out[name] = (f.read(), st.st_mtime_ns, st.st_ino)
    return out


async def test_reading_over_http_never_changes_a_byte_of_any_session_file(client, gw):
    """Invariant HTTP-I3."""
    await seed_session(gw)
    before = _files(gw.store.root)
    for path in (
        "/api/sessions",
        "/api/sessions/notes",
        "/api/sessions/notes/verify",
        "/sessions",
        "/sessions/notes",
        "/api/sessions/missing",
        "/sessions/missing",
    ):
        await client.get(path)
    assert _files(gw.store.root) == before


async def test_a_cross_site_style_write_without_json_or_header_is_refused(client, gw):
    """Invariant HTTP-I6: a form or no-cors fetch from another site cannot change anything."""
    job = await add_job(client)
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert_error(await client.post(f"/api/jobs/{job['job_id']}/run", headers=form), 403)
    assert_error(await client.post(f"/api/jobs/{job['job_id']}/run"), 403)
    r = await client.post(
        "/api/sessions/s/messages", content=b'{"text":"x"}', headers={"content-type": "text/plain"}
    )
    assert_error(r, 403)
    assert_error(await client.delete(f"/api/jobs/{job['job_id']}"), 403)
    assert gw.cron.runs() == [] and len(gw.cron.list_jobs()) == 1


async def test_a_takeover_row_in_the_ledger_is_served_with_its_fence_description(client, gw):
    job = await add_job(client)
    fence = {"reason": "foreign_append", "description": "42 bytes at 1000 by no protocol writer"}
    gw.cron.insert_run(takeover_run(job["job_id"], 21, fence=fence))
    run = (await client.get("/api/runs/r-takeover")).json()
    assert run["fence"] == fence and run["duration_s"] == 21.0
    assert [
        r["run_id"] for r in (await client.get("/api/runs?status=takeover")).json()["runs"]
    ] == ["r-takeover"]


async def test_a_big_transcript_is_read_off_the_event_loop(client, gw):
    """Invariant HTTP-I7: while a page of a big transcript is read and parsed, the gateway's loop
    keeps serving (turns, heartbeats and other requests do not wait for it)."""
    session = gw.store.session("big")
    filler = custom("bulk", {"text": "x" * 400})
    for _ in range(600):
        await session.append([filler] * 100, writer="metadata")
    for path in ("/api/sessions/big", "/sessions/big", "/api/sessions/big/verify"):
        big = asyncio.create_task(client.get(path))
        await asyncio.sleep(0.05)  # returns only if the loop is free while the big read runs
        health = await client.get("/api/health")
        assert health.status_code == 200
        assert not big.done(), f"{path} held the event loop"
        assert (await big).status_code == 200
