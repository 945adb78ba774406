"""Demo and real state never mix (docs/design/gateway.md, "Leaving demo mode"): which jobs are
the demo's (DEMO-I1) and what a gateway on a real config removes (DEMO-I2)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

from fencepost.runtime.config import GatewayConfig, StatePaths
from fencepost.runtime.cron import MIGRATIONS, CronStore, EverySchedule, Payload, edit_job, new_job
from fencepost.runtime.demo import (
    DEMO_PREFIX,
    gateway_config,
    install_demo_jobs,
    retire_demo_jobs,
)
from fencepost.runtime.gateway import Gateway

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def user_job(store: CronStore, name: str, agent: str = "ops") -> str:
    job = new_job(
        name=name,
        agent=agent,
        schedule=EverySchedule(3600, anchor=NOW),
        payload=Payload("agent_turn", "hi"),
        now=NOW,
    )
    store.add_job(job, next_run_at=NOW)
    return job.job_id


# Invariant DEMO-I1, Invariant DEMO-I2
def test_leaving_demo_mode_removes_the_demo_jobs_and_keeps_every_user_job_even_one_named_demo(
    tmp_path,
):
    with CronStore(tmp_path / "cron.db") as store:
        assert install_demo_jobs(store, NOW) == 3
        mine = user_job(store, DEMO_PREFIX + "my own job, named like the demo's")
        retired = retire_demo_jobs(store)
        assert sorted(retired.jobs) == sorted(
            DEMO_PREFIX + n
            for n in ("slow isolated report", "slow review on main", "fast check on main")
        )
        assert [job.job_id for job, _ in store.list_jobs()] == [mine]
        assert retire_demo_jobs(store).jobs == ()  # nothing left to remove
        assert "left demo mode" in retired.describe()[0]


# Invariant DEMO-I1
def test_a_demo_job_the_user_edited_is_the_users_and_stays_but_a_disabled_one_is_still_the_demos(
    tmp_path,
):
    with CronStore(tmp_path / "cron.db") as store:
        install_demo_jobs(store, NOW)
        (edited, _), (disabled, _), _ = store.list_jobs()
        store.replace_job(edited, edit_job(edited, now=NOW, agent="ops"), NOW)
        store.replace_job(disabled, edit_job(disabled, now=NOW, enabled=False), NOW)
        origins = store.job_origins()
        assert origins[edited.job_id] == "user" and origins[disabled.job_id] == "demo"
        retire_demo_jobs(store)
        assert [job.job_id for job, _ in store.list_jobs()] == [edited.job_id]


# Invariant DEMO-I1
def test_demo_jobs_from_before_the_origin_column_are_recognised_by_their_exact_name_and_agent(
    tmp_path,
):
    path = tmp_path / "cron.db"
    with CronStore(path, migrations=MIGRATIONS[:2]) as old:  # the schema demo mode used to write
        conn = sqlite3.connect(path)
        try:
            for name, agent in (
                ("demo: fast check on main", "assistant"),  # the demo's
                ("demo: fast check on main", "ops"),  # same name, another agent: the user's
                ("nightly", "analyst"),  # the user's
            ):
                spec = {"name": name, "agent": agent}
                conn.execute(
                    "INSERT INTO jobs VALUES (?,?,?,1,?,?,?)",
                    (f"id-{name}-{agent}", name, agent, json.dumps(spec), "t", "t"),
                )
            conn.commit()
        finally:
            conn.close()
        assert old.schema_version == 2
    with CronStore(path) as store:
        assert store.job_origins() == {
            "id-demo: fast check on main-assistant": "demo",
            "id-demo: fast check on main-ops": "user",
            "id-nightly-analyst": "user",
        }


# Invariant DEMO-I2
async def test_a_gateway_on_a_real_config_removes_the_demo_jobs_before_its_scheduler_starts(
    tmp_path,
):
    paths = StatePaths(tmp_path)
    demo_cfg, added = gateway_config(paths, None, install=True, slow_first_token_s=0.1)
    assert demo_cfg.demo and added == 3
    async with Gateway(paths, demo_cfg, load_entry_points=False) as demo_gw:
        assert demo_gw.left_demo is None
        assert len(demo_gw.cron.list_jobs()) == 3  # demo mode keeps its jobs
    async with Gateway(paths, GatewayConfig(), load_entry_points=False) as real:
        assert real.left_demo is not None and len(real.left_demo.jobs) == 3
        assert real.cron.list_jobs() == []
