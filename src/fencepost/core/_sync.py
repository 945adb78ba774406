"""A thin blocking facade over the async store, for scripts and the CLI (STYLE rule 3).

Each ``SyncSessionStore`` owns one private event loop and runs the async implementation on it;
nothing here re-implements the protocol.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from ._store import (
    DEFAULT_LOCK_TIMEOUT_S,
    DEFAULT_MAX_OPEN_SESSIONS,
    AppendResult,
    Durability,
    Session,
    SessionStore,
)

__all__ = ["SyncSession", "SyncSessionStore"]

T = TypeVar("T")


class SyncSessionStore:
    """Blocking twin of ``SessionStore``. Not for use inside a running event loop."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        durability: Durability = "fsync",
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
        cwd: str | None = None,
        create: bool = True,
        max_open_sessions: int = DEFAULT_MAX_OPEN_SESSIONS,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self.store = SessionStore(
            root,
            durability=durability,
            lock_timeout_s=lock_timeout_s,
            cwd=cwd,
            create=create,
            max_open_sessions=max_open_sessions,
        )

    def __repr__(self) -> str:
        return f"<SyncSessionStore {self.store!r}>"

    def __enter__(self) -> SyncSessionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    def session(self, session_id: str) -> SyncSession:
        return SyncSession(self, self.store.session(session_id))

    def session_ids(self) -> list[str]:
        return self.store.session_ids()

    def close(self) -> None:
        self.store.close()
        self._loop.close()


class SyncSession:
    def __init__(self, owner: SyncSessionStore, session: Session) -> None:
        self._owner = owner
        self.session = session
        self.session_id = session.session_id
        self.path = session.path

    def __repr__(self) -> str:
        return f"<SyncSession {self.session!r}>"

    def append(
        self,
        entries: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        writer: str,
        run_id: str | None = None,
        timeout_s: float | None = None,
    ) -> AppendResult:
        return self._owner._run(
            self.session.append(entries, writer=writer, run_id=run_id, timeout_s=timeout_s)
        )

    def __getattr__(self, name: str) -> Any:
        # Readers (read, verify_chain, fence_events, statistics...) are synchronous already.
        return getattr(self.session, name)
