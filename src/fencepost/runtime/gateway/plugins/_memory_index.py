"""The memory index's SQLite side: schema, incremental reading of transcripts and notes, search
(docs/design/memory.md). Blocking; the plugin calls it from a worker thread.

The decisions (what a record contributes, how a query is built) are pure functions in
``_memory_text.py``; this module only moves bytes and rows.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from ....core import parse_transcript
from ....errors import FencepostError
from ._memory_text import fts_query, indexable, note_sections

__all__ = [
    "SCHEMA_VERSION",
    "MemoryHit",
    "MemoryIndex",
    "MemoryIndexError",
    "MemoryIndexReason",
    "MemoryStatistics",
]

#: Bumped when the schema changes; a writable open rebuilds an index of another version (it
#: is derived data), a read-only open refuses it.
SCHEMA_VERSION = 1
#: Transcripts are read in chunks of this size, so a 100 MB transcript never becomes one string.
READ_CHUNK_BYTES = 4 * 1024 * 1024
#: Bytes before the indexed offset kept to notice a same-inode rewrite (Invariant MEMORY-I3).
TAIL_BYTES = 64
#: A markdown note bigger than this is not a note (a log, a dump): skipped.
MAX_NOTE_BYTES = 1024 * 1024
#: A writer holding the database (a gateway and a `--reindex` CLI) waits this long, not forever.
BUSY_TIMEOUT_MS = 5000

MemoryIndexReason = Literal["fts5_unavailable", "missing", "unreadable", "version"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS session_agents (
    session_id TEXT PRIMARY KEY,
    agent      TEXT NOT NULL,
    first_seen TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sources (
    source     TEXT PRIMARY KEY,          -- 'session:<id>' | 'note:<agent>:<relative path>'
    kind       TEXT NOT NULL,             -- session | note
    owner      TEXT NOT NULL,             -- session id, or the agent owning the note
    path       TEXT NOT NULL,
    dev        INTEGER NOT NULL,
    ino        INTEGER NOT NULL,
    size       INTEGER NOT NULL,
    mtime_ns   INTEGER NOT NULL,
    "offset"   INTEGER NOT NULL,          -- end of the last complete line indexed
    line       INTEGER NOT NULL,          -- lines consumed up to "offset"
    tail       BLOB NOT NULL,             -- the TAIL_BYTES before "offset"
    indexed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    id         INTEGER PRIMARY KEY,       -- = docs.rowid
    source     TEXT NOT NULL,
    kind       TEXT NOT NULL,             -- session | note
    agent      TEXT NOT NULL,             -- '' = shared (a session never seen with an agent)
    session_id TEXT,
    path       TEXT,
    entry_id   TEXT,
    role       TEXT,
    writer     TEXT,
    timestamp  TEXT,
    line       INTEGER
);
CREATE INDEX IF NOT EXISTS entries_source ON entries(source);
CREATE INDEX IF NOT EXISTS entries_session ON entries(session_id);
CREATE VIRTUAL TABLE IF NOT EXISTS docs USING fts5(
    text, title, tokenize = 'unicode61 remove_diacritics 2'
);
"""


class MemoryIndexError(FencepostError):
    """The memory index cannot be used; ``reason`` says why, the message what to do."""

    def __init__(self, message: str, *, reason: MemoryIndexReason, path: str) -> None:
        super().__init__(message)
        self.reason: MemoryIndexReason = reason
        self.path = path


@dataclass(frozen=True)
class MemoryHit:
    """One search result, best first. ``score`` is -bm25: higher is better."""

    kind: Literal["session", "note"]
    agent: str
    session_id: str | None
    path: str | None
    entry_id: str | None
    role: str | None
    writer: str | None
    timestamp: str | None
    line: int | None
    title: str | None
    snippet: str
    score: float

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class MemoryStatistics:
    entries: int
    sessions: int
    notes: int
    syncs: int
    reindexed: int


@dataclass(frozen=True)
class _Source:
    dev: int
    ino: int
    size: int
    mtime_ns: int
    offset: int
    line: int
    tail: bytes


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _translate(exc: sqlite3.Error, path: str) -> MemoryIndexError:
    """A sqlite3 error as a MemoryIndexError saying what to do. Pure."""
    text = str(exc)
    if "fts5" in text:
        return MemoryIndexError(
            f"this Python's SQLite ({sqlite3.sqlite_version}) has no FTS5 module, which the "
            "memory index needs; use a Python built against a SQLite with FTS5 (the default "
            "for python.org and most distribution builds)",
            reason="fts5_unavailable",
            path=path,
        )
    if "unable to open" in text:
        return MemoryIndexError(
            f"cannot open the memory index at {path} ({text}); start the gateway with the "
            "memory plugin, or pass --reindex to build it",
            reason="missing",
            path=path,
        )
    return MemoryIndexError(
        f"the memory index at {path} is unreadable ({text}); it is derived data: delete it "
        "and pass --reindex (or restart the gateway) to rebuild it",
        reason="unreadable",
        path=path,
    )


class MemoryIndex:
    """An FTS5 index over transcripts and notes in one SQLite file (WAL).

    Thread-safe: every method holds one lock, so the plugin may call it from worker threads.
    Open with :meth:`open`; close with :meth:`close` (or use ``with``).
    """

    def __init__(self, conn: sqlite3.Connection, path: str, *, readonly: bool) -> None:
        self._conn = conn
        self.path = path
        self.readonly = readonly
        self._lock = threading.Lock()
        self._closing = False
        self._syncs = 0
        self._reindexed = 0

    def __repr__(self) -> str:
        mode = "ro" if self.readonly else "rw"
        return f"<MemoryIndex {self.path} {mode}{' closed' if self._closing else ''}>"

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, readonly: bool = False) -> MemoryIndex:
        """Open (and when writable, create or migrate) the index at ``path``."""
        p = os.path.abspath(os.fspath(path))
        if readonly and not os.path.exists(p):
            raise MemoryIndexError(
                f"no memory index at {p}; start the gateway with the memory plugin enabled, "
                "or pass --reindex to build it now",
                reason="missing",
                path=p,
            )
        try:
            if readonly:
                uri = Path(p).as_uri() + "?mode=ro"
                conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            else:
                os.makedirs(os.path.dirname(p), exist_ok=True)
                conn = sqlite3.connect(p, check_same_thread=False)
        except sqlite3.Error as exc:
            raise _translate(exc, p) from exc
        conn.isolation_level = None  # explicit BEGIN / COMMIT
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if readonly:
                if version != SCHEMA_VERSION:
                    raise MemoryIndexError(
                        f"the memory index at {p} has schema version {version}, this fencepost "
                        f"reads {SCHEMA_VERSION}; pass --reindex (or restart the gateway) to "
                        "rebuild it",
                        reason="version",
                        path=p,
                    )
                conn.execute("SELECT count(*) FROM docs").fetchone()  # FTS5 present?
            else:
                conn.execute("PRAGMA journal_mode = WAL")
                if version not in (0, SCHEMA_VERSION):
                    _drop_all(conn)  # derived data: rebuilt from the files
                conn.executescript(_SCHEMA)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            conn.close()
            raise _translate(exc, p) from exc
        except BaseException:
            conn.close()
            raise
        return cls(conn, p, readonly=readonly)

    def close(self) -> None:
        """Stop long catch-ups at the next session and close the connection."""
        self._closing = True
        with self._lock:
            self._conn.close()

    def __enter__(self) -> MemoryIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def statistics(self) -> MemoryStatistics:
        with self._lock:
            entries = self._conn.execute("SELECT count(*) FROM entries").fetchone()[0]
            counts = dict(
                self._conn.execute("SELECT kind, count(*) FROM sources GROUP BY kind").fetchall()
            )
        return MemoryStatistics(
            entries=entries,
            sessions=counts.get("session", 0),
            notes=counts.get("note", 0),
            syncs=self._syncs,
            reindexed=self._reindexed,
        )

    # ---- session -> agent ------------------------------------------------------------------

    def assign(self, session_id: str, agent: str) -> bool:
        """Record that ``agent`` runs turns in ``session_id`` (the first agent seen keeps it);
        rows indexed before as shared move to it. True when this call assigned it."""
        with self._lock, self._transaction():
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO session_agents VALUES (?, ?, ?)",
                (session_id, agent, _now()),
            )
            if cur.rowcount != 1:
                return False
            self._conn.execute(
                "UPDATE entries SET agent = ? WHERE session_id = ? AND kind = 'session'",
                (agent, session_id),
            )
            return True

    def agent_of(self, session_id: str) -> str:
        """The agent owning a session's rows; ``""`` (shared) when none was ever seen."""
        with self._lock:
            return self._agent_of(session_id)

    def _agent_of(self, session_id: str) -> str:
        row = self._conn.execute(
            "SELECT agent FROM session_agents WHERE session_id = ?", (session_id,)
        ).fetchone()
        return str(row[0]) if row else ""

    # ---- transcripts -----------------------------------------------------------------------

    def sync_sessions(self, sessions_dir: str | os.PathLike[str]) -> int:
        """Catch up on every transcript in ``sessions_dir``; rows of vanished transcripts go.
        Returns the rows added."""
        root = os.fspath(sessions_dir)
        try:
            names = sorted(n for n in os.listdir(root) if n.endswith(".jsonl"))
        except FileNotFoundError:
            names = []
        added = 0
        present = set()
        for name in names:
            if self._closing:
                return added
            sid = name[: -len(".jsonl")]
            present.add(f"session:{sid}")
            added += self.sync_session(sid, os.path.join(root, name))
        with self._lock, self._transaction():
            rows = self._conn.execute("SELECT source FROM sources WHERE kind = 'session'")
            for (source,) in rows.fetchall():
                if source not in present:
                    self._drop(source)
        return added

    def forget_session(self, session_id: str) -> None:
        """Drop a session's rows (retention archived or deleted it; the index is derived)."""
        with self._lock, self._transaction():
            self._drop(f"session:{session_id}")

    def sync_session(self, session_id: str, path: str | os.PathLike[str]) -> int:
        """Index what was appended to one transcript since the last sync; re-index it from
        the start when it was replaced, truncated or rewritten. Returns the rows added."""
        source = f"session:{session_id}"
        path = os.fspath(path)
        with self._lock:
            if self._closing:
                return 0
            self._syncs += 1
            try:
                # Invariant MEMORY-I1: transcripts are opened read-only, never for writing.
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                with self._transaction():
                    self._drop(source)
                return 0
            try:
                return self._sync_fd(fd, source, session_id, path)
            finally:
                os.close(fd)

    def _sync_fd(self, fd: int, source: str, session_id: str, path: str) -> int:
        st = os.fstat(fd)
        known = self._source(source)
        offset, line, tail = 0, 0, b""
        if known is not None:
            if _same_prefix(fd, st, known):
                offset, line, tail = known.offset, known.line, known.tail
            else:
                # Invariant MEMORY-I3: a replaced, truncated or rewritten file starts over.
                self._reindexed += 1
                with self._transaction():
                    self._drop(source)
        agent = self._agent_of(session_id)
        added = 0
        for chunk_offset, chunk in _complete_lines(fd, offset, st.st_size):
            parsed = parse_transcript(
                chunk,
                path=path,
                start_line=line + 1,
                start_offset=chunk_offset,
                expect_header=chunk_offset == 0,
            )
            rows = []
            for rec in parsed.entries:
                got = indexable(rec.data)
                if got is not None:
                    rows.append((got, rec.line))
            line += chunk.count(b"\n")
            offset = chunk_offset + len(chunk)
            tail = (tail + chunk)[-TAIL_BYTES:]
            # Invariant MEMORY-I2: the rows and the offset that covers them commit together.
            with self._transaction():
                for got, number in rows:
                    self._insert(
                        {
                            "source": source,
                            "kind": "session",
                            "agent": agent,
                            "session_id": session_id,
                            "path": None,
                            "entry_id": got.entry_id,
                            "role": got.role,
                            "writer": got.writer,
                            "timestamp": got.timestamp,
                            "line": number,
                        },
                        got.text,
                        "",
                    )
                self._put_source(source, "session", session_id, path, st, offset, line, tail)
            added += len(rows)
        if offset == 0 and self._source(source) is None:
            with self._transaction():  # nothing complete yet: remember the file anyway
                self._put_source(source, "session", session_id, path, st, 0, 0, b"")
        return added

    # ---- notes -------------------------------------------------------------------------------

    def sync_notes(self, agent: str, workspace: str | os.PathLike[str]) -> int:
        """Index the changed ``*.md`` files under an agent's workspace; rows of deleted notes
        go. Symlinks leading outside the workspace are not followed. Returns rows added."""
        root = os.path.realpath(os.fspath(workspace))
        found: dict[str, str] = {}
        for path in _markdown_files(root):
            rel = os.path.relpath(path, root)
            found[f"note:{agent}:{rel}"] = path
        added = 0
        with self._lock:
            if self._closing:
                return 0
            self._syncs += 1
            for source, path in found.items():
                added += self._sync_note(source, agent, path)
            with self._transaction():
                rows = self._conn.execute(
                    "SELECT source FROM sources WHERE kind = 'note' AND owner = ?", (agent,)
                )
                for (source,) in rows.fetchall():
                    if source not in found:
                        self._drop(source)
        return added

    def _sync_note(self, source: str, agent: str, path: str) -> int:
        try:
            with open(path, "rb") as f:  # read-only, like transcripts
                st = os.fstat(f.fileno())
                known = self._source(source)
                if known is not None and (known.dev, known.ino, known.size, known.mtime_ns) == (
                    st.st_dev,
                    st.st_ino,
                    st.st_size,
                    st.st_mtime_ns,
                ):
                    return 0
                data = f.read(MAX_NOTE_BYTES + 1)
        except OSError:
            return 0
        sections = note_sections(data.decode("utf-8", "replace"))
        with self._transaction():
            self._drop(source)
            for heading, body, number in sections:
                self._insert(
                    {
                        "source": source,
                        "kind": "note",
                        "agent": agent,
                        "session_id": None,
                        "path": path,
                        "entry_id": None,
                        "role": "note",
                        "writer": None,
                        "timestamp": datetime.fromtimestamp(st.st_mtime, UTC).isoformat(
                            timespec="seconds"
                        ),
                        "line": number,
                    },
                    body,
                    heading,
                )
            self._put_source(source, "note", agent, path, st, st.st_size, 0, b"")
        return len(sections)

    # ---- search ------------------------------------------------------------------------------

    def search(self, query: str, *, agent: str | None = None, limit: int = 10) -> list[MemoryHit]:
        """Rows matching the words of ``query``, best (bm25) first. With ``agent``, only that
        agent's sessions and notes and the shared sessions (Invariant MEMORY-I4)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        expr = fts_query(query)
        if expr is None:
            return []
        sql = (
            "SELECT e.kind, e.agent, e.session_id, e.path, e.entry_id, e.role, e.writer, "
            "e.timestamp, e.line, docs.title, snippet(docs, -1, '[', ']', '…', 16), "
            "bm25(docs) FROM docs JOIN entries e ON e.id = docs.rowid WHERE docs MATCH ?"
        )
        params: list[Any] = [expr]
        if agent is not None:
            sql += " AND e.agent IN (?, '')"
            params.append(agent)
        sql += " ORDER BY bm25(docs) LIMIT ?"
        params.append(limit)
        with self._lock:
            try:
                rows = self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise _translate(exc, self.path) from exc
        return [
            MemoryHit(
                kind=r[0],
                agent=r[1],
                session_id=r[2],
                path=r[3],
                entry_id=r[4],
                role=r[5],
                writer=r[6],
                timestamp=r[7],
                line=r[8],
                title=r[9] or None,
                snippet=r[10],
                score=round(-float(r[11]), 6),
            )
            for r in rows
        ]

    # ---- helpers (caller holds the lock) -----------------------------------------------------

    def _transaction(self) -> _Tx:
        return _Tx(self._conn)

    def _source(self, source: str) -> _Source | None:
        row = self._conn.execute(
            'SELECT dev, ino, size, mtime_ns, "offset", line, tail FROM sources WHERE source = ?',
            (source,),
        ).fetchone()
        return _Source(*row) if row else None

    def _put_source(
        self,
        source: str,
        kind: str,
        owner: str,
        path: str,
        st: os.stat_result,
        offset: int,
        line: int,
        tail: bytes,
    ) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO sources VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                source,
                kind,
                owner,
                path,
                st.st_dev,
                st.st_ino,
                st.st_size,
                st.st_mtime_ns,
                offset,
                line,
                tail,
                _now(),
            ),
        )

    def _insert(self, meta: Mapping[str, Any], text: str, title: str) -> None:
        cur = self._conn.execute(
            "INSERT INTO entries (source, kind, agent, session_id, path, entry_id, role, writer, "
            "timestamp, line) VALUES (:source, :kind, :agent, :session_id, :path, :entry_id, "
            ":role, :writer, :timestamp, :line)",
            dict(meta),
        )
        self._conn.execute(
            "INSERT INTO docs (rowid, text, title) VALUES (?, ?, ?)", (cur.lastrowid, text, title)
        )

    def _drop(self, source: str) -> None:
        self._conn.execute(
            "DELETE FROM docs WHERE rowid IN (SELECT id FROM entries WHERE source = ?)", (source,)
        )
        self._conn.execute("DELETE FROM entries WHERE source = ?", (source,))
        self._conn.execute("DELETE FROM sources WHERE source = ?", (source,))


class _Tx:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error); nests as a no-op."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.outer = False

    def __enter__(self) -> None:
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN IMMEDIATE")
            self.outer = True

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if not self.outer:
            return
        self.conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def _drop_all(conn: sqlite3.Connection) -> None:
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "AND name NOT LIKE 'docs_%'"
    ).fetchall():
        conn.execute(f'DROP TABLE IF EXISTS "{name}"')


def _same_prefix(fd: int, st: os.stat_result, known: _Source) -> bool:
    """Whether the bytes indexed before are still the start of this open file: same inode,
    not shorter, and the same bytes just before the indexed offset (MEMORY-I3)."""
    if (st.st_dev, st.st_ino) != (known.dev, known.ino) or st.st_size < known.offset:
        return False
    if not known.tail:
        return True
    start = known.offset - len(known.tail)
    return os.pread(fd, len(known.tail), start) == known.tail


def _complete_lines(fd: int, offset: int, size: int) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) chunks of complete lines from ``offset`` up to ``size``; a torn last
    line (no newline yet) is left for the next sync."""
    pending = b""
    pos = offset
    while pos < size:
        data = os.pread(fd, min(READ_CHUNK_BYTES, size - pos), pos)
        if not data:
            break
        pos += len(data)
        pending += data
        cut = pending.rfind(b"\n")
        if cut < 0:
            continue  # a line longer than a chunk: read on
        chunk, pending = pending[: cut + 1], pending[cut + 1 :]
        yield offset, chunk
        offset += len(chunk)


def _markdown_files(root: str) -> Iterator[str]:
    if not os.path.isdir(root):
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.endswith(".md") or name.startswith("."):
                continue
            path = os.path.join(dirpath, name)
            real = os.path.realpath(path)
            if real != root and not real.startswith(root + os.sep):
                continue  # a symlink out of the workspace
            try:
                if os.path.getsize(real) > MAX_NOTE_BYTES:
                    continue
            except OSError:
                continue
            yield path
