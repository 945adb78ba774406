"""The gateway process object: lanes, messages, heartbeats, cron wiring, plugins, lock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from fencepost import SessionStore, custom, message, read_transcript, verify_transcript
from fencepost.runtime.config import AgentConfig, GatewayConfig, HeartbeatConfig, StatePaths
from fencepost.runtime.cron import EverySchedule, Payload, new_job
from fencepost.runtime.gateway import Gateway, GatewayBusyError, hookimpl, main_session_id
from fencepost.runtime.providers import ScriptStep

SCRIPTS = {
    "main": (ScriptStep(text="working", first_token_delay_s=0.3),),
    "a": (ScriptStep(text="slow", first_token_delay_s=0.2),),
    "b": (ScriptStep(text="fast"),),
    "hb": (ScriptStep(text="HEARTBEAT_OK", first_token_delay_s=0.2),),
    "slow": (ScriptStep(text="report", first_token_delay_s=0.3),),
}


def config(model="scripted/main", **agents):
    return GatewayConfig(
        agents=agents or {"ops": AgentConfig(name="ops", model=model)},
        plugins=("model-snapshot", "heartbeat"),
        durability="buffered",
        scripts=SCRIPTS,
    )


@pytest.fixture
async def gw(tmp_path):
    g = Gateway(StatePaths(tmp_path), config(), load_entry_points=False)
    await g.start()
    yield g
    await g.stop(grace_s=1)


def roles(path):
    out = []
    for r in read_transcript(path).entries:
        d = r.data
        out.append(d["message"]["role"] if d["type"] == "message" else d.get("customType"))
    return out


async def test_a_second_gateway_on_the_same_state_dir_is_refused_naming_the_holder(gw, tmp_path):
    """Invariant GATEWAY-I1."""
    other = Gateway(StatePaths(tmp_path), config(), load_entry_points=False)
    with pytest.raises(GatewayBusyError, match=r"pid \d+"):
        await other.start()


async def test_turns_on_one_session_run_in_arrival_order(gw):
    first = asyncio.create_task(gw.turn("s", "ops", prompt="one", model="scripted/a"))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(gw.turn("s", "ops", prompt="two", model="scripted/b"))
    r1, r2 = await asyncio.gather(first, second)
    assert r1.ok and r2.ok
    texts = [m for m in roles(gw.store.session("s").path) if m in ("user", "assistant")]
    assert texts == ["user", "assistant", "user", "assistant"]
    entries = [r.data for r in read_transcript(gw.store.session("s").path).entries]
    users = [e["message"]["content"] for e in entries if e.get("message", {}).get("role") == "user"]
    assert users == ["one", "two"]


async def test_a_message_during_a_turn_steers_it_and_is_answered_in_that_turn(gw):
    """Invariants GATEWAY-I2, RUNNER-I5: the steering record, then the running turn writes the
    message after its reply and answers it."""
    running = asyncio.create_task(gw.turn("s", "ops", prompt="start"))
    await asyncio.sleep(0.1)
    sent = await gw.send("s", "also look at disk space")
    assert sent.status == "steered"
    result = await running
    assert result.ok and result.steps == 2 and len(result.steering) == 1
    path = gw.store.session("s").path
    steer = [r for r in read_transcript(path).entries if r.stamp["writer"] == "steering"]
    assert [r.data["data"]["text"] for r in steer] == ["also look at disk space"]
    assert steer[0].data["data"]["run_id"] == result.run_id == sent.run_id
    assert roles(path)[-3:] == ["assistant", "user", "assistant"]
    assert read_transcript(path).entries[-2].data["message"]["content"] == "also look at disk space"
    assert gw.statistics().queued_turns == 0


async def test_steering_the_turn_cannot_answer_runs_as_a_follow_up_turn(tmp_path):
    """Invariants GATEWAY-I2, RUNNER-I5: no step left for it, so it is the next turn's prompt."""
    cfg = config(ops=AgentConfig(name="ops", model="scripted/main", max_steps=1))
    async with Gateway(StatePaths(tmp_path), cfg, load_entry_points=False) as g:
        running = asyncio.create_task(g.turn("s", "ops", prompt="first"))
        await asyncio.sleep(0.1)
        assert (await g.send("s", "second")).status == "steered"
        assert (await running).steering == ()
        while g.statistics().running_turns or g.statistics().queued_turns:
            await asyncio.sleep(0.02)
        users = [
            r.data["message"]["content"]
            for r in read_transcript(g.store.session("s").path).entries
            if r.data.get("message", {}).get("role") == "user"
        ]
        assert users == ["first", "second"]


async def test_a_message_without_steering_queues_a_follow_up_turn(tmp_path):
    """Invariant GATEWAY-I2."""
    cfg = config(ops=AgentConfig(name="ops", model="scripted/main", steering=False))
    async with Gateway(StatePaths(tmp_path), cfg, load_entry_points=False) as g:
        running = asyncio.create_task(g.turn("s", "ops", prompt="first"))
        await asyncio.sleep(0.05)
        sent = await g.send("s", "second")
        assert sent.status == "queued" and sent.run_id
        await running
        while g.statistics().running_turns or g.statistics().queued_turns:
            await asyncio.sleep(0.02)
        users = [
            r.data["message"]["content"]
            for r in read_transcript(g.store.session("s").path).entries
            if r.data.get("message", {}).get("role") == "user"
        ]
        assert users == ["first", "second"]


async def test_a_heartbeat_is_skipped_while_the_main_session_is_busy_and_ok_is_suppressed(tmp_path):
    cfg = config(
        ops=AgentConfig(name="ops", model="scripted/hb", heartbeat=HeartbeatConfig(every_s=0))
    )
    async with Gateway(StatePaths(tmp_path), cfg, load_entry_points=False) as g:
        main = main_session_id("ops")
        busy = asyncio.create_task(g.turn(main, "ops", prompt="work"))
        await asyncio.sleep(0.05)
        assert await g.heartbeat("ops") is None  # skipped, not queued
        await busy
        result = await g.heartbeat("ops")
        assert result.ok and result.reply == "HEARTBEAT_OK"
        stats = g.statistics()
        assert (stats.heartbeats_skipped, stats.heartbeats_run, stats.heartbeats_suppressed) == (
            1,
            1,
            1,
        )


async def test_the_model_snapshot_plugin_writes_cooperatively_inside_the_window(gw):
    result = await gw.turn("s", "ops", prompt="go", run_id="r-1")
    assert result.ok
    entries = read_transcript(gw.store.session("s").path).entries
    snaps = [r for r in entries if r.data.get("customType") == "model-snapshot"]
    assert [s.stamp["writer"] for s in snaps] == ["attempt", "model-snapshot"]
    assert snaps[1].data["data"]["runId"] == "r-1"
    stats = gw.plugins.get_plugin("model-snapshot").statistics()
    assert (stats.written, stats.refused) == (1, 0)
    assert verify_transcript(gw.store.session("s").path).ok


class Broken:
    @hookimpl
    def fencepost_turn_started(self, gateway, session_id, agent, run_id, model):
        raise RuntimeError("plugin bug")


async def test_a_failing_plugin_never_fails_a_turn(tmp_path):
    """Invariant GATEWAY-I3."""
    async with Gateway(
        StatePaths(tmp_path), config(), plugins=[Broken()], load_entry_points=False
    ) as g:
        assert (await g.turn("s", "ops", prompt="go")).ok
    log = (tmp_path / "logs" / "gateway.jsonl").read_text()
    assert "plugin bug" in log and '"action": "fencepost_turn_started"' in log


async def test_two_jobs_on_one_shared_main_session_with_slow_models_and_writers_both_succeed(
    tmp_path,
):
    """Issue 5: two cron jobs on the agent's main session, slow scripted models, cooperative
    writers (delivery mirrors, metadata) in every window: both ok, no takeover, it verifies."""
    async with Gateway(StatePaths(tmp_path), config(), load_entry_points=False) as g:
        now = datetime.now(UTC)
        jobs = []
        for name in ("review", "digest"):
            job = new_job(
                name=name,
                agent="ops",
                schedule=EverySchedule(3600, anchor=now),
                payload=Payload("agent_turn", f"{name} please"),
                now=now,
                target="main",
                model="scripted/slow",
            )
            g.cron.add_job(job, next_run_at=None)
            jobs.append(job)
        main = main_session_id("ops")
        others = SessionStore(g.paths.sessions, durability="buffered")
        stop = asyncio.Event()

        async def writers():
            i = 0
            while not stop.is_set():
                await asyncio.sleep(0.05)
                if others.session(main).exists():
                    await others.session(main).append(custom("meta", {"i": i}), writer="metadata")
                    i += 1

        bg = asyncio.create_task(writers())
        handles = [await g.scheduler.run_now(j.job_id) for j in jobs]
        rows = [await h.wait() for h in handles]
        stop.set()
        await bg
        others.close()
        assert [r.status for r in rows] == ["ok", "ok"], rows
        path = g.store.session(main).path
        assert verify_transcript(path).ok
        writers_seen = {r.stamp["writer"] for r in read_transcript(path).entries}
        assert {"attempt", "metadata", "model-snapshot"} <= writers_seen


async def test_the_original_reports_isolated_job_succeeds_seven_times_in_a_row(tmp_path):
    """Issue 5, the original report's shape at CI scale (bench/cron_origin.py runs the 20 s
    model): an isolated job, a slow model, and the model-snapshot, metadata and delivery-mirror
    writers writing during every model call. Invariant LEASE-I6."""
    async with Gateway(StatePaths(tmp_path), config(), load_entry_points=False) as g:
        now = datetime.now(UTC)
        job = new_job(
            name="ops review",
            agent="ops",
            schedule=EverySchedule(3600, anchor=now),
            payload=Payload("agent_turn", "daily ops review " + "context " * 2000),
            now=now,
            target="isolated",
            model="scripted/slow",
        )
        g.cron.add_job(job, next_run_at=None)
        others = SessionStore(g.paths.sessions, durability="buffered")
        tasks = []

        async def gateway_writers(session_id):
            await asyncio.sleep(0.1)  # inside the model call
            s = others.session(session_id)
            await s.append(custom("session-meta", {"label": "cron"}), writer="metadata")
            await s.append(message("assistant", "mirror of the last delivery"), writer="delivery")

        def on_event(event):
            if event["type"] == "turn_started":
                tasks.append(asyncio.ensure_future(gateway_writers(event["session_id"])))

        g.subscribe(on_event)
        rows = []
        for _ in range(7):
            rows.append(await (await g.scheduler.run_now(job.job_id)).wait())
        await asyncio.gather(*tasks)
        others.close()
        assert [r.status for r in rows] == ["ok"] * 7, [(r.status, r.error_message) for r in rows]
        for r in rows:
            path = g.store.session(r.session_id).path
            assert verify_transcript(path).ok
            kinds = {e.stamp["writer"] for e in read_transcript(path).entries}
            assert {"attempt", "model-snapshot", "metadata", "delivery"} <= kinds


PLUGIN_MODULE = """
from fencepost.runtime.gateway import hookimpl

seen = []


@hookimpl
def fencepost_turn_finished(gateway, session_id, agent, run_id, result):
    seen.append((session_id, result.status))
"""


async def test_a_third_party_plugin_installed_as_a_package_is_loaded_from_its_entry_point(
    tmp_path, monkeypatch
):
    site = tmp_path / "site"
    (site / "fp_thirdparty-1.0.dist-info").mkdir(parents=True)
    (site / "fp_thirdparty.py").write_text(PLUGIN_MODULE)
    (site / "fp_thirdparty-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fp-thirdparty\nVersion: 1.0\n"
    )
    (site / "fp_thirdparty-1.0.dist-info" / "entry_points.txt").write_text(
        "[fencepost.plugins]\nthirdparty = fp_thirdparty\n"
    )
    monkeypatch.syspath_prepend(str(site))
    async with Gateway(StatePaths(tmp_path / "home"), config(model="scripted/b")) as g:
        assert g.plugins.get_plugin("thirdparty") is not None
        assert (await g.turn("s", "ops", prompt="hi")).ok
    import fp_thirdparty

    assert fp_thirdparty.seen == [("s", "ok")]


async def test_stopping_with_a_run_in_flight_records_it_interrupted_and_frees_the_session(
    tmp_path,
):
    g = Gateway(StatePaths(tmp_path), config(), load_entry_points=False)
    await g.start()
    now = datetime.now(UTC)
    job = new_job(
        name="long",
        agent="ops",
        schedule=EverySchedule(3600, anchor=now),
        payload=Payload("agent_turn", "think hard"),
        now=now,
        target="main",
        model="scripted/slow",
    )
    g.cron.add_job(job, next_run_at=None)
    handle = await g.scheduler.run_now(job.job_id)
    while not g.lane_busy(main_session_id("ops")):
        await asyncio.sleep(0.01)
    await g.stop(grace_s=0.05)  # shorter than the 0.3 s model: the run is cut off
    from fencepost.runtime.cron import CronStore

    store = CronStore(tmp_path / "cron.db", create=False)
    try:
        assert store.get_run(handle.run_id).status == "interrupted"
    finally:
        store.close()
    session = SessionStore(tmp_path / "sessions").session(main_session_id("ops"))
    assert session.lease_holder() is None  # lease and lock released on the way out
    assert verify_transcript(session.path).ok


async def test_lanes_are_dropped_when_their_last_turn_ends(tmp_path):
    """Invariant GATEWAY-I4, with the store's bound (STORE-I11) under a gateway."""
    from dataclasses import replace

    from fencepost.runtime.config import LimitsConfig

    cfg = replace(config(model="scripted/b"), limits=LimitsConfig(max_open_sessions=4))
    async with Gateway(StatePaths(tmp_path), cfg, load_entry_points=False) as g:
        results = await asyncio.gather(*(g.turn(f"s{i}", "ops", prompt="hi") for i in range(30)))
        assert all(r.ok for r in results)
        assert g.statistics().lanes == 0
        assert g.store.statistics().open_sessions <= 4
        again = await g.turn("s0", "ops", prompt="again")  # an evicted session runs as before
        assert again.ok
        assert verify_transcript(g.store.session("s0").path).ok


async def test_no_follow_up_turn_starts_once_the_gateway_is_stopping_runner_i5(tmp_path):
    """Invariant RUNNER-I5: a turn cancelled by stop() leaves its steering record, unanswered;
    nothing runs or writes after stop() returns."""
    g = Gateway(StatePaths(tmp_path), config(), load_entry_points=False)
    await g.start()
    assert (await g.send("s", "first")).status == "started"  # a gateway task
    assert (await g.send("s", "second")).status == "steered"
    await g.stop(grace_s=0.05)
    path = tmp_path / "sessions" / "s.jsonl"
    before = path.read_bytes()
    await asyncio.sleep(0.6)
    assert path.read_bytes() == before
    entries = read_transcript(str(path)).entries
    assert [e.data.get("customType") for e in entries if e.stamp["writer"] == "steering"] == [
        "fencepost.steering"
    ]
    assert not any(
        e.data.get("message", {}).get("content") == "second" for e in entries
    )  # never written as a user message: nobody answered it
