"""JSON-lines logs: one object per line with action, session, run, job and epoch when known."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime

__all__ = ["JsonLinesHandler", "format_record"]

_CONTEXT = ("action", "session", "run", "job", "epoch", "plugin", "status", "elapsed_s")


def format_record(record: logging.LogRecord) -> str:
    out: dict[str, object] = {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for key in _CONTEXT:
        value = getattr(record, key, None)
        if value is not None:
            out[key] = value
    if record.exc_info and record.exc_info[1] is not None:
        out["error"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
    return json.dumps(out, default=str)


class JsonLinesHandler(logging.Handler):
    """Appends one JSON line per record (O_APPEND: whole lines even with several writers).

    With ``max_bytes``, the file rotates by size once it reaches it: ``gateway.jsonl`` becomes
    ``gateway.jsonl.1`` (older ones shift up to ``backups``; the oldest goes), as
    ``logging.handlers.RotatingFileHandler`` names them ([retention] log_max_bytes).
    """

    def __init__(
        self, path: str | os.PathLike[str], *, max_bytes: int | None = None, backups: int = 5
    ) -> None:
        super().__init__()
        self.path = os.fspath(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._fd = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            os.write(self._fd, format_record(record).encode() + b"\n")
            if self.max_bytes is not None and os.fstat(self._fd).st_size >= self.max_bytes:
                self._rotate()
        except Exception:
            self.handleError(record)

    def _rotate(self) -> None:
        os.close(self._fd)
        for n in range(self.backups - 1, 0, -1):
            src = f"{self.path}.{n}"
            if os.path.exists(src):
                os.replace(src, f"{self.path}.{n + 1}")
        os.replace(self.path, f"{self.path}.1")
        self._fd = self._open()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        super().close()
