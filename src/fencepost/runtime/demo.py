"""Demo mode: what the gateway runs on a fresh machine, offline, until there are real jobs.

Two agents on the built-in scripted model — ``analyst`` answers like a large model (about 20 s to
the first token), ``assistant`` at once — and cron jobs every minute: an isolated slow report
mirrored into the assistant's main session, a slow review on the analyst's main session (where
heartbeats also want to run), and a fast check. The model-snapshot, memory, trajectory and
heartbeat plugins are on. Within a few minutes the dashboard shows slow-model runs succeeding
while the gateway's own writers write into their sessions during the model calls — the exact
situation that failed every time under the stat-fingerprint fence (DESIGN.md §1).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from .config import AgentConfig, GatewayConfig, HeartbeatConfig, StatePaths, state_config
from .cron import CronStore, Delivery, EverySchedule, Payload, new_job
from .providers import ScriptStep

__all__ = [
    "DEMO_PREFIX",
    "demo_config",
    "gateway_config",
    "in_demo_mode",
    "install_demo_jobs",
]

#: Demo jobs are named with this prefix; any other job means the user has real jobs.
DEMO_PREFIX = "demo: "


def demo_config(slow_first_token_s: float = 20.0) -> GatewayConfig:
    thinker = (
        ScriptStep(
            text="Review done: 3 services healthy, 1 disk at 81% — watch it.",
            first_token_delay_s=slow_first_token_s,
            latency_s=2.0,
        ),
    )
    heartbeat = (ScriptStep(text="HEARTBEAT_OK", first_token_delay_s=1.0),)
    return GatewayConfig(
        agents={
            "analyst": AgentConfig(
                name="analyst",
                model="scripted/thinker",
                system_prompt="You are the operations analyst.",
                tools=("current_time", "memory_search"),
                heartbeat=HeartbeatConfig(
                    every_s=45, prompt="Anything urgent? HEARTBEAT_OK if not."
                ),
            ),
            "assistant": AgentConfig(
                name="assistant",
                model="scripted/fast",
                fallbacks=("scripted/heartbeat",),
                tools=("current_time",),
            ),
        },
        scripts={"thinker": thinker, "heartbeat": heartbeat},
        durability="fsync",
    )


def in_demo_mode(store: CronStore, has_config_file: bool) -> bool:
    """Demo mode: no config file and no job other than demo jobs."""
    if has_config_file:
        return False
    return all(job.name.startswith(DEMO_PREFIX) for job, _ in store.list_jobs())


def install_demo_jobs(store: CronStore, now: datetime) -> int:
    """Add the demo jobs that are missing (idempotent); returns how many were added."""
    have = {job.name for job, _ in store.list_jobs()}
    every = EverySchedule(60, anchor=now)
    specs = [
        (
            "slow isolated report",
            "analyst",
            "isolated",
            "Write the hourly ops report.",
            Delivery("session", "assistant-main"),
        ),
        ("slow review on main", "analyst", "main", "Review the overnight alerts.", None),
        ("fast check on main", "assistant", "main", "Quick status check.", None),
    ]
    added = 0
    for i, (name, agent, target, text, delivery) in enumerate(specs):
        if DEMO_PREFIX + name in have:
            continue
        fields: dict[str, Any] = {"target": target, "timeout_s": 120.0}
        if delivery is not None:
            fields["delivery"] = delivery
        job = new_job(
            name=DEMO_PREFIX + name,
            agent=agent,
            schedule=every,
            payload=Payload("agent_turn", text),
            now=now,
            **fields,
        )
        # The first runs come within seconds, so a new user sees results at once.
        store.add_job(job, next_run_at=now + timedelta(seconds=3 + 4 * i))
        added += 1
    return added


def gateway_config(
    paths: StatePaths,
    config: str | os.PathLike[str] | None = None,
    *,
    install: bool = False,
    force_demo: bool = False,
    slow_first_token_s: float = 20.0,
) -> tuple[GatewayConfig, int | None]:
    """The config a gateway on ``paths`` runs with, and the demo jobs ``install`` added (None
    when not in demo mode). Demo mode: no config file and no real job yet, or ``force_demo``."""
    has_config = config is not None or paths.config.exists()
    cfg = GatewayConfig() if force_demo else state_config(paths, config)
    paths.root.mkdir(parents=True, exist_ok=True)
    store = CronStore(paths.cron_db, create=True)
    try:
        if not force_demo and not in_demo_mode(store, has_config):
            return cfg, None
        added = install_demo_jobs(store, datetime.now(UTC)) if install else 0
    finally:
        store.close()
    return demo_config(slow_first_token_s=slow_first_token_s), added
