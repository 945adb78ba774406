"""Random interleavings of protocol writers and readers on one session (hypothesis).

Each writer is its own SessionStore over the same directory, so every writer has its own lock
file description: they contend through flock exactly as separate processes do.
"""

from __future__ import annotations

import asyncio
import json
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fencepost import SessionStore, custom, message, read_transcript, verify_transcript

WRITERS = ("delivery", "metadata", "model-snapshot", "heartbeat")

op = st.tuples(
    st.integers(0, len(WRITERS) - 1),  # which writer
    st.integers(1, 4),  # batch size
    st.integers(0, 3),  # event-loop yields before the append
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(op, min_size=1, max_size=30), reads=st.integers(0, 5))
def test_any_interleaving_keeps_every_record_once_in_order_with_a_valid_chain(ops, reads):
    """Invariants STORE-I1, STORE-I3: whole lines, one hash chain, nothing lost or duplicated."""
    with tempfile.TemporaryDirectory() as root:
        asyncio.run(_run(root, ops, reads))


async def _run(root: str, ops, reads: int) -> None:
    stores = [SessionStore(root, durability="buffered") for _ in WRITERS]
    seen_prefixes: list[list[str]] = []
    try:
        plan: dict[int, list[tuple[int, int, int]]] = {}
        for i, (w, n, yields) in enumerate(ops):
            plan.setdefault(w, []).append((i, n, yields))

        async def writer(w: int) -> None:
            session = stores[w].session("prop")
            for i, n, yields in plan.get(w, []):
                for _ in range(yields):
                    await asyncio.sleep(0)
                batch = [
                    custom("probe", {"op": i, "k": k}) if k % 2 else message("user", f"{i}/{k}")
                    for k in range(n)
                ]
                await session.append(batch, writer=WRITERS[w])

        async def reader() -> None:
            path = stores[0].session("prop").path
            for _ in range(reads):
                await asyncio.sleep(0)
                try:
                    t = read_transcript(path)
                except FileNotFoundError:
                    continue
                assert t.torn_tail == b"" and not t.problems
                head = [] if t.header is None else [t.header.raw.decode()]
                seen_prefixes.append(head + [r.raw.decode() for r in t.entries])

        await asyncio.gather(*(writer(w) for w in plan), reader())
        path = stores[0].session("prop").path
        report = verify_transcript(path)
        assert report.ok, report.problems

        with open(path, "rb") as f:
            raw_lines = f.read().decode().splitlines()
        entries = [json.loads(line) for line in raw_lines[1:]]
        # Every appended record exactly once; each op's batch contiguous and in order.
        tags = [_tag(e) for e in entries]
        expected = sorted((i, k) for i, (_, n, _) in enumerate(ops) for k in range(n))
        assert sorted(tags) == expected
        for i, (_, n, _) in enumerate(ops):
            at = tags.index((i, 0))
            assert tags[at : at + n] == [(i, k) for k in range(n)]
        # Per writer, ops land in the order that writer issued them.
        for w, items in plan.items():
            order = [tags.index((i, 0)) for i, _, _ in items]
            assert order == sorted(order), WRITERS[w]
        # A linear tree: each entry's parent is the entry before it; seqs are contiguous.
        assert [e["parentId"] for e in entries[1:]] == [e["id"] for e in entries[:-1]]
        assert [e["fencepost"]["seq"] for e in entries] == list(range(1, len(entries) + 1))
        # Readers only ever saw whole lines, each a prefix of the final transcript.
        for prefix in seen_prefixes:
            assert prefix == raw_lines[: len(prefix)]
    finally:
        for s in stores:
            s.close()


def _tag(entry: dict) -> tuple[int, int]:
    if entry["type"] == "custom":
        return entry["data"]["op"], entry["data"]["k"]
    i, k = entry["message"]["content"].split("/")
    return int(i), int(k)
