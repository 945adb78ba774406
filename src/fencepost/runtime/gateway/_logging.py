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
    """Appends one JSON line per record (O_APPEND: whole lines even with several writers)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            os.write(self._fd, format_record(record).encode() + b"\n")
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        super().close()
