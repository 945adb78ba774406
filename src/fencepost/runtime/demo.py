"""Demo mode: what the gateway runs on a fresh machine, offline, until there are real jobs.

Two agents on the built-in scripted model — ``analyst`` answers like a large model (about 20 s to
the first token), ``assistant`` at once — and cron jobs every minute: an isolated slow report
mirrored into the assistant's main session, a slow review on the analyst's main session (where
heartbeats also want to run), and a fast check. The model-snapshot, memory, trajectory and
heartbeat plugins are on. Within a few minutes the dashboard shows slow-model runs succeeding
while the gateway's own writers write into their sessions during the model calls — the exact
situation that failed every time under the stat-fingerprint fence (DESIGN.md §1).

Demo and real state never mix (docs/design/gateway.md, "Leaving demo mode"): the cron database
records which jobs demo mode installed (origin ``demo``, DEMO-I1), and a gateway that starts or
reloads with any other config removes exactly those jobs (``retire_demo_jobs``, DEMO-I2). Their
runs stay in the ledger and their transcripts stay in ``sessions/``; nothing of the user's is
touched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .config import AgentConfig, GatewayConfig, HeartbeatConfig, StatePaths, state_config
from .cron import CronStore, Delivery, EverySchedule, Payload, new_job
from .providers import ScriptStep

__all__ = [
    "DEMO_AGENTS",
    "DEMO_PREFIX",
    "DemoRetired",
    "demo_config",
    "demo_job_names",
    "gateway_config",
    "in_demo_mode",
    "install_demo_jobs",
    "retire_demo_jobs",
]

#: Demo jobs are named with this prefix, for people; what makes a job the demo's is its origin.
DEMO_PREFIX = "demo: "
#: The demo's agents, for messages (their main sessions are ``<agent>-main``).
DEMO_AGENTS = ("analyst", "assistant")


@dataclass(frozen=True)
class DemoRetired:
    """What leaving demo mode did: the demo jobs removed (names), and how many runs of theirs
    the ledger keeps."""

    jobs: tuple[str, ...]
    runs_kept: int

    def describe(self) -> list[str]:
        """One line per fact, for the gateway's stderr, ``fencepost reload`` and the log."""
        if not self.jobs:
            return []
        return [
            f"left demo mode: removed the demo's {len(self.jobs)} job(s) "
            f"({', '.join(self.jobs)}); their {self.runs_kept} run(s) stay in the ledger and "
            "their transcripts in sessions/ (demo sessions: "
            + ", ".join(f"{a}-main" for a in DEMO_AGENTS)
            + ", and one per isolated run)"
        ]


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
        demo=True,
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
    """Demo mode: no config file and no job other than the ones demo mode installed."""
    if has_config_file:
        return False
    return all(origin == "demo" for origin in store.job_origins().values())


def retire_demo_jobs(store: CronStore) -> DemoRetired:
    """Remove every job demo mode installed, and nothing else (Invariant DEMO-I2): called by a
    gateway that starts or reloads with a config that is not the demo's. A demo job running now
    finishes with the agent it started with; its ledger row stays."""
    origins = store.job_origins()
    with store.transaction():
        gone = [
            (job.job_id, job.name)
            for job, _ in store.list_jobs()
            if origins.get(job.job_id) == "demo"
        ]
        for job_id, _ in gone:
            store.delete_job(job_id)
    counts = store.run_counts_by_job([job_id for job_id, _ in gone]) if gone else {}
    runs = sum(c.get("runs", 0) for c in counts.values())
    return DemoRetired(tuple(name for _, name in gone), runs)


def demo_job_names(paths: StatePaths) -> list[str]:
    """The names of the jobs demo mode installed on ``paths`` (none without a cron database);
    creates nothing."""
    if not paths.cron_db.exists():
        return []
    with CronStore(paths.cron_db, create=False) as store:
        origins = store.job_origins()
        return [job.name for job, _ in store.list_jobs() if origins[job.job_id] == "demo"]


def install_demo_jobs(store: CronStore, now: datetime) -> int:
    """Add the demo jobs that are missing (idempotent); returns how many were added."""
    origins = store.job_origins()
    have = {job.name for job, _ in store.list_jobs() if origins[job.job_id] == "demo"}
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
        store.add_job(job, next_run_at=now + timedelta(seconds=3 + 4 * i), origin="demo")
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
