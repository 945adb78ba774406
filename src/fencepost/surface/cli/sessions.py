"""``fencepost sessions list|show|tail|verify|append|adopt|compact``."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import click

from ...core import (
    Session,
    SessionStore,
    Transcript,
    decode_stamped,
    iter_lines,
    read_transcript,
    validate_cooperative_writer_kind,
    validate_session_id,
    verify_transcript,
)
from ...errors import ConfigError, SessionNotFoundError, TranscriptFormatError
from . import _render
from ._options import config_option, home_option

__all__ = ["sessions", "default_root"]


def default_root() -> str:
    home = os.environ.get("FENCEPOST_HOME") or os.path.join(os.path.expanduser("~"), ".fencepost")
    return os.path.join(home, "sessions")


root_option = click.option(
    "--root",
    type=click.Path(file_okay=False),
    default=None,
    envvar="FENCEPOST_ROOT",
    show_envvar=True,
    help="Session directory [default: $FENCEPOST_HOME/sessions, ~/.fencepost/sessions].",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _session_dir(root: str | None) -> str:
    """The session directory. One named by ``--root`` must exist; the default one may not yet
    (no session was ever written), which readers treat as "no sessions" (Invariant CLI-I2)."""
    if root is None:
        return os.path.abspath(default_root())
    path = os.path.abspath(root)
    if not os.path.isdir(path):
        raise ConfigError(
            f"no session directory at {path}; check --root (or $FENCEPOST_ROOT), or leave it "
            "out to use $FENCEPOST_HOME/sessions",
            key="--root",
        )
    return path


def _store(root: str | None, *, create: bool = False) -> SessionStore:
    return SessionStore(_session_dir(root), create=create)


def _existing_session(root: str | None, session_id: str) -> Session:
    """An existing session of the store, or SessionNotFoundError (also before the session
    directory exists; Invariant CLI-I2)."""
    directory = _session_dir(root)
    validate_session_id(session_id)
    if not os.path.isdir(directory):
        raise SessionNotFoundError(session_id, os.path.join(directory, f"{session_id}.jsonl"))
    session = SessionStore(directory).session(session_id)
    if not session.exists():
        raise SessionNotFoundError(session_id, session.path)
    return session


def _resolve(root: str | None, target: str) -> tuple[str, str | None]:
    """A transcript path and its session id (if it lives in a store) from an id or a path."""
    if target.endswith((".jsonl", ".jsonl.gz")) or os.sep in target:
        path = os.path.abspath(target)
        if not os.path.exists(path):
            raise SessionNotFoundError(os.path.basename(target), path)
        if os.path.isdir(path):  # Invariant CLI-I2
            raise TranscriptFormatError(
                "is a directory, not a transcript; give a session id or a .jsonl file", path=path
            )
        name = os.path.basename(path)
        for suffix in (".jsonl", ".jsonl.gz"):
            if name.endswith(suffix):
                return path, name[: -len(suffix)]
        return path, None
    directory = _session_dir(root)
    validate_session_id(target)
    path = os.path.join(directory, f"{target}.jsonl")
    if not os.path.exists(path):
        # Invariant RETENTION-I6: an archived session is found by id, read-only.
        archive = os.path.join(os.path.dirname(directory), "archive", "sessions")
        for name in (f"{target}.jsonl.gz", f"{target}.jsonl"):
            if os.path.exists(os.path.join(archive, name)):
                return os.path.join(archive, name), target
        raise SessionNotFoundError(target, path)
    return path, target


def _read(path: str) -> Transcript:
    """The transcript at ``path``, read-only; an unreadable file is an error that names it."""
    try:
        return read_transcript(path)
    except OSError as exc:
        raise TranscriptFormatError(f"cannot read: {exc.strerror or exc}", path=path) from None


@click.group()
def sessions() -> None:
    """Inspect and write session transcripts."""


@sessions.command("list")
@root_option
@json_option
def list_(root: str | None, as_json: bool) -> None:
    """List the sessions in a directory."""
    directory = _session_dir(root)
    if not os.path.isdir(directory):  # Invariant CLI-I2: nothing written yet is not an error
        if as_json:
            click.echo("[]")
        else:
            click.echo(f"no sessions yet in {directory}", err=True)
        return
    store = SessionStore(directory)
    rows = []
    for sid in store.session_ids():
        st = os.stat(store.session(sid).path)
        rows.append({"session_id": sid, "size_bytes": st.st_size, "path": store.session(sid).path})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        _render.table(
            [
                _render.Col("session"),  # copied by people: shown whole
                _render.Col("bytes", drop=1, justify="right"),
                _render.Col("path", drop=2, wrap=True, min_width=20),
            ],
            [list(r.values()) for r in rows],
        )


@sessions.command()
@root_option
@json_option
@click.option("--events/--no-events", default=True, help="Also print fence events.")
@click.argument("target")
def show(root: str | None, as_json: bool, events: bool, target: str) -> None:
    """Print a transcript, one record a line, with who wrote each (TARGET: id or path)."""
    path, _ = _resolve(root, target)
    transcript = _read(path)
    if transcript.header is None and not transcript.entries and transcript.problems:
        # Invariant CLI-I2: a file with no session header and no record is not a transcript.
        raise TranscriptFormatError(
            "not a session transcript: no session header and no record in it "
            "(`fencepost sessions verify` lists each line's problem)",
            path=path,
        )
    rows = [_render.record_row(r.line, r.data) for r in transcript.entries]
    fence = _events_for(path) if events else []
    if as_json:
        out = {
            "path": path,
            "header": transcript.header.data if transcript.header else None,
            "records": [r.data for r in transcript.entries],
            "problems": [str(p) for p in transcript.problems],
            "fence_events": fence,
        }
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    _render.records(rows, title=path)
    for p in transcript.problems:
        click.echo(f"problem: {p}", err=True)
    _render.fence_events(fence)


@sessions.command()
@root_option
@json_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing records as they land.")
@click.option("-n", "--lines", "count", default=10, help="How many records to show first.")
@click.option("--interval", default=0.2, help="Seconds between checks when following.")
@click.argument("target")
def tail(
    root: str | None, as_json: bool, follow: bool, count: int, interval: float, target: str
) -> None:
    """Show the last records of a transcript; with -f, follow it live (read-only)."""
    path, _ = _resolve(root, target)
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed by the `with f` below); read-only
    except OSError as exc:
        raise TranscriptFormatError(f"cannot read: {exc.strerror or exc}", path=path) from None
    with f:
        data = f.read()
        complete = data.rfind(b"\n") + 1
        lines = list(iter_lines(data[:complete]))
        start_line = max(0, len(lines) - count)
        for i, (_, raw) in enumerate(lines[start_line:], start=start_line + 1):
            _emit(i, raw, as_json)
        line_no, pos, buf = len(lines), complete, b""
        while follow:
            chunk = f.read()
            if not chunk:
                if os.stat(path).st_size < pos:
                    click.echo(f"tail: {path} was truncated; following from the new end", err=True)
                    f.seek(0, os.SEEK_END)
                    pos = f.tell()
                    buf = b""
                time.sleep(interval)
                continue
            buf += chunk
            pos += len(chunk)
            *done, buf = buf.split(b"\n")
            for raw in done:
                line_no += 1
                _emit(line_no, raw, as_json)


def _emit(line_no: int, raw: bytes, as_json: bool) -> None:
    rec, _, err = decode_stamped(raw)
    if rec is None:
        msg = {"line": line_no, "problem": err} if as_json else f"{line_no:>6}  ! {err}"
        click.echo(json.dumps(msg) if as_json else msg)
        return
    if as_json:
        click.echo(json.dumps({"line": line_no, "record": rec}, ensure_ascii=False))
    else:
        click.echo(_render.record_line(_render.record_row(line_no, rec)))


@sessions.command()
@root_option
@json_option
@click.argument("target")
@click.pass_context
def verify(ctx: click.Context, root: str | None, as_json: bool, target: str) -> None:
    """Check format, tree, stamps and hash chain. Exit 0 when sound, 1 otherwise."""
    path, _ = _resolve(root, target)
    try:
        report = verify_transcript(path, tuple(_events_for(path)))
    except OSError as exc:
        raise TranscriptFormatError(f"cannot read: {exc.strerror or exc}", path=path) from None
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        _render.verify_report(report)
    ctx.exit(0 if report.ok else 1)


@sessions.command()
@root_option
@json_option
@click.option(
    "--writer",
    required=True,
    help="Writer kind, e.g. delivery or plugin:<name> (attempt and compaction belong to the "
    "lease holder).",
)
@click.option(
    "--entry",
    "entry_json",
    required=True,
    help="One entry as a JSON object; '-' reads it from stdin, '@FILE' from a file.",
)
@click.option("--run-id", default=None, help="Run id to stamp, if the writer belongs to a run.")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Lock wait, seconds.")
@click.argument("session_id")
def append(
    root: str | None,
    as_json: bool,
    writer: str,
    entry_json: str,
    run_id: str | None,
    timeout_s: float | None,
    session_id: str,
) -> None:
    """Append one entry through the protocol, as a cooperative writer."""
    if entry_json == "-":
        entry_json = sys.stdin.read()
    elif entry_json.startswith("@"):
        try:
            with open(entry_json[1:], encoding="utf-8") as f:
                entry_json = f.read()
        except (OSError, UnicodeDecodeError) as exc:  # Invariant CLI-I2
            why = exc.strerror if isinstance(exc, OSError) else f"not UTF-8 ({exc.reason})"
            raise ConfigError(
                f"cannot read --entry file {os.path.abspath(entry_json[1:])}: {why}",
                key="--entry",
            ) from None
    try:
        entry: Any = json.loads(entry_json)
    except ValueError as exc:
        raise TranscriptFormatError(f"--entry is not JSON: {exc}") from exc
    if not isinstance(entry, dict):
        raise TranscriptFormatError("--entry must be a JSON object")
    try:
        validate_cooperative_writer_kind(writer)  # Invariant STORE-I14
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--writer") from exc
    store = _store(root, create=True)
    result = asyncio.run(
        store.session(session_id).append(entry, writer=writer, run_id=run_id, timeout_s=timeout_s)
    )
    if as_json:
        click.echo(json.dumps(asdict(result)))
    else:
        click.echo(
            f"appended seq {result.first_seq}..{result.last_seq} "
            f"(entry {', '.join(result.entry_ids)}) to {store.session(session_id).path}"
        )


@sessions.command()
@root_option
@json_option
@click.option("--note", required=True, help="Who made the outside change and why it is kept.")
@click.option(
    "--leaf",
    "leaf_id",
    default=None,
    help="Continue the active path from this record [default: the file's last record]; give "
    "the last committed record to keep the conversation before a foreign record.",
)
@click.option("--by", default=None, help="Who adopts [default: user@host].")
@click.argument("session_id")
def adopt(
    root: str | None,
    as_json: bool,
    note: str,
    leaf_id: str | None,
    by: str | None,
    session_id: str,
) -> None:
    """Accept a change made outside the protocol, after inspecting it (keeps every byte).

    Records a baseline: `verify` and `doctor` report the problems before it as adopted, not as
    failures. Says which records left the active path (the model's context)."""
    session = _existing_session(root, session_id)
    result = asyncio.run(session.adopt(note=note, leaf_id=leaf_id, by=by))
    if as_json:
        click.echo(json.dumps(None if result is None else asdict(result)))
        return
    if result is None:
        click.echo("nothing to adopt: the transcript matches its committed state")
        return
    click.echo(
        f"adopted {result.adopted_bytes} bytes as {result.by}; the chain restarts at seq "
        f"{result.seq} (entry {result.entry_id}); verify reports problems before it as adopted"
    )
    # Invariant STORE-I15: the operator is told what left the model's context.
    if result.leaf_before_missing:
        click.echo(
            f"the last committed record {result.leaf_before} is no longer in the file: the "
            "records of the conversation it ended are gone from the active path"
        )
    if result.left_active_path:
        ids = result.left_active_path
        shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        click.echo(
            f"{len(ids)} record(s) left the active path (the model's context): {shown}; "
            f"to keep them, adopt with --leaf {result.leaf_before} instead (the outside "
            "records stay in the file as a branch)"
        )
    elif not result.leaf_before_missing:
        click.echo(f"the active path continues from {result.leaf_after}; no record left it")


@sessions.command()
@root_option
@home_option
@config_option
@json_option
@click.option("--agent", "agent_name", default=None, help="Agent whose model writes the summary.")
@click.option(
    "--summary",
    default=None,
    help="Use this text as the summary instead of asking the agent's model.",
)
@click.option(
    "--keep-tokens",
    type=int,
    default=None,
    help="Recent context to keep verbatim, estimated tokens [default: the agent's setting].",
)
@click.option("--dry-run", is_flag=True, help="Say where the cut would be; write nothing.")
@click.argument("session_id")
def compact(
    root: str | None,
    home: Path | None,
    config: str | None,
    as_json: bool,
    agent_name: str | None,
    summary: str | None,
    keep_tokens: int | None,
    dry_run: bool,
    session_id: str,
) -> None:
    """Compact a session by hand in the pi format, under its lease (keeps every record)."""
    from ...runtime.agent import Summariser, ToolRegistry, compact_session, model_summariser
    from ...runtime.config import StatePaths, agent_spec, agents_of, default_home, state_config
    from ...runtime.providers import ProviderRegistry

    session = _existing_session(root, session_id)
    store = session.store
    paths = StatePaths(home or default_home())
    cfg = state_config(paths, config)
    agents = agents_of(cfg)
    name = agent_name or next(iter(agents))
    if name not in agents:
        raise click.BadParameter(f"no agent {name!r}; configured: {', '.join(agents)}")
    from ...runtime.mcp import McpManager

    # The agent's MCP tools are bound but never listed: a compaction calls no tool.
    spec = agent_spec(
        agents[name],
        ToolRegistry(),
        paths,
        context_windows=cfg.context_windows,
        mcp=McpManager(cfg.mcp),
    )
    settings = spec.compaction
    if keep_tokens is not None:
        if keep_tokens < 0:
            raise click.BadParameter("must be 0 or more", param_hint="--keep-tokens")
        settings = replace(settings, keep_recent_tokens=keep_tokens)

    async def run() -> Any:
        async with ProviderRegistry(cfg.providers, scripts=cfg.scripts) as providers:
            summarise: Summariser
            if summary is not None:

                async def given(_: str) -> str:
                    return summary

                summarise = given
            else:
                summarise = model_summariser(
                    spec.chain(), providers, conversation=session_id, max_tokens=spec.max_tokens
                )
            return await compact_session(
                session,
                settings,
                summarise,
                run_id=f"compact-{uuid.uuid4().hex[:12]}",
                dry_run=dry_run,
            )

    try:
        done = asyncio.run(run())
    finally:
        store.close()
    plan = done.plan
    out = {
        "session_id": session_id,
        "dry_run": dry_run,
        "compacted": done.entry_id is not None,
        "entry_id": done.entry_id,
        "first_kept_entry_id": plan.first_kept_entry_id if plan else None,
        "tokens_before": plan.tokens_before if plan else None,
        "summarized_messages": len(plan.summarize) if plan else 0,
        "kept_messages": len(plan.kept) if plan else 0,
        "summary": done.summary,
    }
    if as_json:
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
    elif plan is None:
        click.echo("nothing to compact: no turn boundary to cut at")
    else:
        verb = "would compact" if dry_run else "compacted"
        click.echo(
            f"{verb} {out['summarized_messages']} messages (~{plan.tokens_before} tokens before); "
            f"kept {out['kept_messages']} from entry {plan.first_kept_entry_id}"
            + (f"; compaction entry {done.entry_id}" if done.entry_id else "")
        )


def _events_for(path: str) -> list[dict[str, Any]]:
    """The fence events beside a transcript (read-only)."""
    events_path = path.removesuffix(".gz") + ".events"
    try:
        with open(events_path, "rb") as f:
            raw = f.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in raw:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out
