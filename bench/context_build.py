"""A turn's context build vs transcript size: ``read_context`` from the last compaction through
the offset index, next to a full parse (what every turn paid before compaction).

Each transcript is a long-lived ``main`` session: hourly turns (user prompt, assistant tool call,
tool result, assistant reply, model snapshot), with a ``compaction`` entry near the end, and the
same recent tail (the kept range plus the turns after the compaction) at every size.
Target (DESIGN.md §8): the compacted build within 1.5x from 1 MB to 100 MB.
Run: python bench/context_build.py [--sizes 1M,100M] [--samples N]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from _report import median, table
from fencepost import build_context, read_context, read_transcript

UNITS = {"K": 1024, "M": 1024 * 1024, "G": 1024**3}
TAIL_TURNS = 12  # turns kept verbatim + turns after the compaction, the same at every size
ASK = "status of the fleet, disks, queues and the last deploys. " * 4
RESULT = '{"ok": true, "queues": [3, 1, 0], "disk_free_pct": 41}' * 6
REPLY = "All systems nominal. Queues drained, disks at 41% free, no failed deploys. " * 3
SUMMARY = "Months of hourly checks: all nominal except two disk alerts in March."


def parse_size(s: str) -> int:
    return int(float(s[:-1]) * UNITS[s[-1].upper()]) if s[-1].upper() in UNITS else int(s)


class Writer:
    def __init__(self, f) -> None:
        self.f, self.n, self.leaf = f, 0, None
        self.size = 0

    def entry(self, obj: dict) -> str:
        self.n += 1
        eid = f"{self.n:08x}"
        rec = {
            **obj,
            "id": eid,
            "parentId": self.leaf,
            "timestamp": "2026-12-02T20:00:00.000Z",
            "fencepost": {"w": "attempt", "r": f"run-{self.n // 5}", "e": self.n // 5, "s": self.n},
        }
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        self.f.write(line)
        self.size += len(line)
        self.leaf = eid
        return eid

    def turn(self, i: int) -> str:
        first = self.entry(
            {
                "type": "message",
                "message": {
                    "role": "user",
                    "content": f"hourly check {i}: "
                    + "status of the fleet, disks, queues and the last deploys. " * 4,
                },
            }
        )
        self.entry(
            {
                "type": "custom",
                "customType": "model-snapshot",
                "data": {"provider": "openai", "modelId": "gpt-4o"},
            }
        )
        self.entry(
            {
                "type": "message",
                "message": {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "toolCall",
                            "id": f"call_{i}",
                            "name": "http_get",
                            "arguments": {"url": "https://status.example.com/api"},
                        }
                    ],
                    "usage": {"input": 1200, "output": 40},
                },
            }
        )
        self.entry(
            {
                "type": "message",
                "message": {
                    "role": "toolResult",
                    "toolCallId": f"call_{i}",
                    "toolName": "http_get",
                    "content": [
                        {
                            "type": "text",
                            "text": RESULT,
                        }
                    ],
                    "isError": False,
                },
            }
        )
        self.entry(
            {
                "type": "message",
                "message": {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "text",
                            "text": REPLY,
                        }
                    ],
                    "usage": {"input": 1500, "output": 120},
                },
            }
        )
        return first


def build(path: str, size: int, compacted: bool) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(
            json.dumps(
                {
                    "type": "session",
                    "version": 3,
                    "id": "main",
                    "timestamp": "2026-01-01T00:00:00.000Z",
                    "cwd": "/srv",
                }
            )
            + "\n"
        )
        w = Writer(f)
        i = 0
        per_turn = 0
        while True:
            before = w.size
            w.turn(i)
            i += 1
            per_turn = w.size - before
            if w.size + per_turn * TAIL_TURNS >= size:
                break
        kept = w.turn(i)
        for j in range(TAIL_TURNS // 2 - 1):
            w.turn(i + 1 + j)
        if compacted:
            w.entry(
                {
                    "type": "compaction",
                    "summary": SUMMARY,
                    "firstKeptEntryId": kept,
                    "tokensBefore": 120000,
                }
            )
        for j in range(TAIL_TURNS // 2):
            w.turn(i + TAIL_TURNS + j)


def timed(fn, samples: int) -> float:
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1M,100M")
    ap.add_argument("--samples", type=int, default=15)
    args = ap.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    rows = []
    results: dict[tuple[int, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            for compacted in (True, False):
                path = os.path.join(tmp, f"main-{size}-{compacted}.jsonl")
                build(path, size, compacted)
                t0 = time.perf_counter()
                read_context(path)  # builds the index (one scan)
                first_s = time.perf_counter() - t0
                ctx = read_context(path)
                assert ctx.context.messages == build_context(read_transcript(path)).messages
                indexed = timed(lambda p=path: read_context(p), args.samples)
                full = timed(
                    lambda p=path: build_context(read_transcript(p)), max(3, args.samples // 5)
                )
                kind = "compacted" if compacted else "uncompacted"
                results[(size, kind)] = indexed
                rows.append(
                    [
                        f"{os.path.getsize(path) / 2**20:,.1f} MB",
                        kind,
                        len(ctx.context.messages),
                        "yes" if ctx.used_index else "no",
                        first_s * 1000,
                        indexed * 1000,
                        full * 1000,
                    ]
                )
    print(
        table(
            "context build vs transcript size (median ms)",
            [
                "transcript",
                "case",
                "messages",
                "index used",
                "first read ms (scan)",
                "read_context ms",
                "full parse ms",
            ],
            rows,
        )
    )
    small, large = min(sizes), max(sizes)
    ratio = results[(large, "compacted")] / results[(small, "compacted")]
    verdict = "ok" if ratio <= 1.5 else "OVER TARGET"
    print(
        f"\ncompacted read_context {large // 2**20} MB / {small // 2**20} MB: {ratio:.2f}x "
        f"(target <= 1.5x: {verdict})"
    )


if __name__ == "__main__":
    main()
