"""``fencepost demo``: the most useful thing to run before the gateway exists.

Several of the gateway's own writers (model snapshot, metadata, delivery mirror, heartbeat, a
plugin) write into one session at the same time, while a turn waits on a slow "model"; then the
session is shown and verified. It is the shape of the failure fencepost exists to fix
(DESIGN.md §1), on the real store.
"""

from __future__ import annotations

import asyncio
import uuid

import click

from ...core import (
    SessionStore,
    custom,
    custom_message,
    message,
    model_change,
    session_info,
    verify_transcript,
)
from . import _render
from .sessions import default_root, root_option


async def _run_demo(store: SessionStore, session_id: str, latency_s: float) -> None:
    session = store.session(session_id)
    run_id = uuid.uuid4().hex[:12]
    await session.append(session_info("fencepost demo"), writer="metadata")
    await session.append(model_change("scripted", "slow"), writer="model-snapshot")
    await session.append(
        message("user", "Daily ops review: summarise yesterday."), writer="attempt", run_id=run_id
    )

    async def cooperative(i: int) -> None:
        await asyncio.sleep(latency_s * (i + 1) / 6)
        writers = [
            (custom("model-snapshot", {"provider": "scripted", "model": "slow"}), "model-snapshot"),
            (session_info("fencepost demo (running)"), "metadata"),
            (message("assistant", "[mirror] yesterday's digest delivered"), "delivery"),
            (custom_message("heartbeat", "HEARTBEAT_OK", display=False), "heartbeat"),
            (custom("memory.indexed", {"entries": i}), "plugin:memory"),
        ]
        entry, writer = writers[i % len(writers)]
        await session.append(entry, writer=writer)

    # The "model call": slow, and the gateway's own writers keep writing meanwhile.
    await asyncio.gather(asyncio.sleep(latency_s), *(cooperative(i) for i in range(5)))
    await session.append(
        message("assistant", "All systems nominal; 3 jobs ran, 0 failed."),
        writer="attempt",
        run_id=run_id,
    )


@click.command()
@root_option
@click.option("--latency", "latency_s", default=2.0, help="Seconds the slow 'model' takes.")
def demo(root: str | None, latency_s: float) -> None:
    """Write a demo session with many concurrent writers, then show and verify it."""
    root = root or default_root()
    store = SessionStore(root, durability="fsync")
    session_id = "demo-" + uuid.uuid4().hex[:8]
    click.echo(f"writing session {session_id} in {root} (model latency {latency_s:g} s)...")
    asyncio.run(_run_demo(store, session_id, latency_s))
    path = store.session(session_id).path
    transcript = store.session(session_id).read()
    _render.records([_render.record_row(r.line, r.data) for r in transcript.entries], title=path)
    report = verify_transcript(path)
    _render.verify_report(report)
    click.echo(
        "\nnext: fencepost sessions tail -f --root "
        f"{root} {session_id}   (in another terminal: fencepost sessions append ...)"
    )
    if not report.ok:
        raise SystemExit(1)
