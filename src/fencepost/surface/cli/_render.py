"""Tables and lines for people (rich); ``--json`` output is produced by the commands."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from ...core import STAMP_KEY, VerifyReport

__all__ = ["table", "record_row", "record_line", "records", "fence_events", "verify_report"]


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    t = Table(title=title)
    for h in headers:
        t.add_column(h)
    for row in rows:
        t.add_row(*(("" if v is None else str(v)) for v in row))
    _console().print(t)


def _summary(rec: dict[str, Any]) -> str:
    kind = rec.get("type")
    if kind == "message":
        msg = rec.get("message") or {}
        content = msg.get("content")
        if isinstance(content, list):
            parts = [c.get("text", f"[{c.get('type')}]") for c in content if isinstance(c, dict)]
            content = " ".join(str(p) for p in parts)
        return f"{msg.get('role')}: {content}"
    if kind in ("custom", "custom_message"):
        body = rec.get("data") if kind == "custom" else rec.get("content")
        return f"{rec.get('customType')}: {body}"
    if kind == "compaction":
        return f"summary: {rec.get('summary')}"
    if kind == "model_change":
        return f"{rec.get('provider')}/{rec.get('modelId')}"
    if kind == "label":
        return f"{rec.get('targetId')} = {rec.get('label')}"
    rest = {
        k: v for k, v in rec.items() if k not in {"type", "id", "parentId", "timestamp", STAMP_KEY}
    }
    return str(rest)


def record_row(line: int, rec: dict[str, Any]) -> dict[str, Any]:
    stamp = rec.get(STAMP_KEY) if isinstance(rec.get(STAMP_KEY), dict) else None
    return {
        "line": line,
        "seq": stamp.get("seq") if stamp else None,
        "writer": stamp.get("writer") if stamp else "(no stamp)",
        "run": (stamp.get("run_id") or "") if stamp else "",
        "epoch": stamp.get("epoch") if stamp else None,
        "type": rec.get("type"),
        "id": rec.get("id"),
        "summary": _summary(rec)[:100],
    }


def record_line(row: dict[str, Any]) -> str:
    run = f" run={row['run']}" if row["run"] else ""
    epoch = f" epoch={row['epoch']}" if row["epoch"] is not None else ""
    return f"{row['line']:>6}  {row['writer']}{run}{epoch}  {row['type']}  {row['summary']}"


def records(rows: list[dict[str, Any]], title: str) -> None:
    table(
        ["line", "seq", "writer", "run", "epoch", "type", "id", "summary"],
        [list(r.values()) for r in rows],
        title=title,
    )


def fence_events(events: list[dict[str, Any]]) -> None:
    if not events:
        return
    table(
        ["time", "kind", "reason", "writer", "run", "bytes", "description"],
        [
            [
                e.get("time"),
                e.get("kind"),
                e.get("reason"),
                e.get("writer"),
                e.get("run_id"),
                "{}-{}".format(*e["byte_range"]) if e.get("byte_range") else "",
                e.get("description"),
            ]
            for e in events
        ],
        title="fence events",
    )


def verify_report(report: VerifyReport) -> None:
    console = _console()
    verdict = (
        "[green]sound[/green]" if report.ok else f"[red]{len(report.problems)} problem(s)[/red]"
    )
    console.print(f"{report.path}: {verdict}")
    writers = ", ".join(f"{k}={v}" for k, v in sorted(report.writers.items())) or "none"
    console.print(
        f"  {report.lines} lines, {report.entries} entries, "
        f"{report.protocol_records} protocol records (writers: {writers})"
    )
    if report.adopted_only:
        console.print("  no protocol record yet: written by another tool; adopted on first write")
    for p in report.problems:
        console.print(f"  line {p.line}: [{p.kind}] {p.message}", markup=False)
    fence_events(list(report.fence_events))
