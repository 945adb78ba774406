"""Tables and lines for people (rich); ``--json`` output is produced by the commands.

Tables fit the terminal (``COLUMNS``, else the terminal's width, else 80): each column says how it
gives way (``Col``), and ``plan_widths`` — a pure function over the headers, the cells and the
width — decides which columns to show and how wide; rich only draws the result. Columns that
must stay (``drop=0``) are never dropped; wrapping columns fold their text instead of cutting it
with an ellipsis, so an id or a path is shown whole, on two lines if need be.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ...core import STAMP_KEY, VerifyReport

__all__ = [
    "Col",
    "fence_events",
    "plan_widths",
    "record_line",
    "record_row",
    "records",
    "table",
    "verify_report",
]

#: Between two columns: one space of padding and one of the (blank) divider.
GAP_CHARS = 2

#: No vertical lines (they cost three cells a column at 80 columns); a rule under the header,
#: broken between columns so the eye (and a test) can see where each column starts.
RULED_HEAD = box.Box("    \n    \n ─  \n    \n    \n    \n    \n    \n")


@dataclass(frozen=True)
class Col:
    """A table column and how it gives way on a narrow terminal.

    ``drop``: 0 = always shown; otherwise columns with the highest number are left out first when
    the table would not fit. ``wrap``: the column may fold its text down to ``min_width``;
    otherwise it is as wide as its longest cell.
    """

    header: str
    drop: int = 0
    wrap: bool = False
    min_width: int = 10
    justify: Literal["left", "right"] = "left"


def _cell_width(value: Any) -> int:
    text = value.plain if isinstance(value, Text) else str(value)
    return max((cell_len(line) for line in text.splitlines()), default=0)


def plan_widths(cols: Sequence[Col], rows: Sequence[Sequence[Any]], width: int) -> list[int | None]:
    """The width of each column in a table at most ``width`` cells wide; None: left out.

    Pure. Natural width = the longest cell or header. A wrapping column needs
    ``min(natural, min_width)``, any other its natural width. While the table does not fit, the
    droppable column with the highest ``drop`` (the rightmost among equals) is left out; the room
    left is then shared among the wrapping columns, the narrowest need first, none past its
    natural width. Only when the columns that always stay do not fit is the table wider than
    ``width`` (rich then squeezes it).
    """
    natural = [
        max([cell_len(c.header), *(_cell_width(r[i]) for r in rows)], default=1) or 1
        for i, c in enumerate(cols)
    ]
    need = [min(n, c.min_width) if c.wrap else n for c, n in zip(cols, natural, strict=True)]
    kept = list(range(len(cols)))

    def total(idx: list[int], widths: Sequence[int]) -> int:
        return sum(widths[i] for i in idx) + GAP_CHARS * max(0, len(idx) - 1)

    while total(kept, need) > width:
        droppable = [i for i in kept if cols[i].drop > 0]
        if not droppable:
            break
        kept.remove(max(droppable, key=lambda i: (cols[i].drop, i)))
    widths: list[int | None] = [None] * len(cols)
    for i in kept:
        widths[i] = need[i]
    room = width - total(kept, need)
    growing = sorted((i for i in kept if natural[i] > need[i]), key=lambda i: natural[i] - need[i])
    for n, i in enumerate(growing):
        if room <= 0:
            break
        share = room // (len(growing) - n)
        add = min(natural[i] - need[i], share)
        widths[i] = need[i] + add
        room -= add
    return widths


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def table(
    columns: Sequence[Col | str],
    rows: Sequence[Sequence[Any]],
    title: str | None = None,
) -> None:
    """Print ``rows`` (plain text cells, or rich ``Text`` for colour) to fit the terminal."""
    cols = [c if isinstance(c, Col) else Col(c, wrap=True) for c in columns]
    cells = [
        [v if isinstance(v, Text) else Text("" if v is None else str(v)) for v in r] for r in rows
    ]
    console = Console(highlight=False)  # wraps the title at the terminal's width
    widths = plan_widths(cols, cells, console.width)
    t = Table(
        box=RULED_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        header_style="bold",
    )
    shown = [i for i, w in enumerate(widths) if w is not None]
    for i in shown:
        c = cols[i]
        t.add_column(
            c.header,
            width=widths[i],
            no_wrap=not c.wrap,
            overflow="fold",
            justify=c.justify,
        )
    for r in cells:
        t.add_row(*(r[i] for i in shown))
    if title:
        console.print(Text(title, style="bold"), overflow="fold")
    console.print(t)
    left_out = [cols[i].header for i, w in enumerate(widths) if w is None]
    if left_out and rows:
        console.print(
            Text(f"(not shown at this width: {', '.join(left_out)}; see --json)", style="dim"),
            overflow="fold",
        )


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
        [
            Col("line", justify="right"),
            Col("seq", drop=4, justify="right"),
            Col("writer", wrap=True, min_width=10),
            Col("run", drop=3, wrap=True, min_width=8),
            Col("epoch", drop=2, justify="right"),
            Col("type", drop=1, wrap=True, min_width=8),
            Col("id", drop=5),
            Col("summary", wrap=True, min_width=20),
        ],
        [list(r.values()) for r in rows],
        title=title,
    )


def fence_events(events: list[dict[str, Any]]) -> None:
    if not events:
        return
    table(
        [
            Col("time", wrap=True, min_width=10),
            Col("kind", drop=3),
            Col("reason"),
            Col("writer", drop=1, wrap=True, min_width=8),
            Col("run", drop=4, wrap=True, min_width=8),
            Col("bytes", drop=2),
            Col("description", wrap=True, min_width=24),
        ],
        [
            [
                _short_time(e.get("time")),
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


def _short_time(value: Any) -> Any:
    """An ISO time as ``2026-03-02 07:00:00Z`` (what a table has room for); else as given."""
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return value
    if when.tzinfo is None:
        return value
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


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
    for a in report.adoptions:
        console.print(
            f"  line {a.line}: adopted by {a.by or 'an operator'} at {a.timestamp}: {a.note}"
            + (
                f" ({len(a.left_active_path)} record(s) left the active path)"
                if a.left_active_path
                else ""
            ),
            markup=False,
        )
    if report.adopted_problems:
        base = report.adoptions[-1].line
        console.print(
            f"  {len(report.adopted_problems)} problem(s) before line {base}, adopted:",
            markup=False,
        )
        for p in report.adopted_problems:
            console.print(f"    line {p.line}: [{p.kind}] {p.message}", markup=False)
    fence_events(list(report.fence_events))
