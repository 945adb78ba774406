"""Provenance stamps and the hash chain (docs/design/write-protocol.md, STORE-I2, STORE-I3).

Every record written through the protocol carries one extra key, ``"fencepost"``::

    {"writer": "delivery", "run_id": null, "epoch": 3, "seq": 17, "prev": "<32 hex>"}

``prev`` is the hash of the previous line's bytes, so the transcript is a hash chain. The first
protocol record written on top of lines that carry no stamp (a file adopted from another tool,
or a change an operator accepted) also carries ``"adopted": {"bytes": N, "sha256": "<hex>"}``
covering every byte before it that the chain does not prove.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "STAMP_KEY",
    "STAMP_VERSION",
    "WriterKind",
    "BUILTIN_WRITER_KINDS",
    "LEASE_WRITER_KINDS",
    "Stamp",
    "stamp_json",
    "line_hash",
    "prefix_digest",
    "validate_writer_kind",
    "validate_cooperative_writer_kind",
    "stamp_of",
]

STAMP_KEY = "fencepost"
STAMP_VERSION = 1

#: Writer kinds known to fencepost; plugins write as ``plugin:<name>``.
WriterKind = Literal[
    "attempt",
    "model-snapshot",
    "delivery",
    "compaction",
    "metadata",
    "heartbeat",
    "steering",
    "subagent",
    "session",
    "operator",
    "approval",
]
BUILTIN_WRITER_KINDS: frozenset[str] = frozenset(WriterKind.__args__)  # type: ignore[attr-defined]

#: Kinds only the lease holder writes (``Attempt.append``): the agent's turn and its compaction.
#: A cooperative writer stamping them would pass its records off as the turn's own, and
#: ``verify``, the trajectory and the memory index would believe it (Invariant STORE-I14).
LEASE_WRITER_KINDS: frozenset[str] = frozenset({"attempt", "compaction"})

_PLUGIN_KIND = re.compile(r"^plugin:[a-z0-9][a-z0-9_.-]{0,63}$")

#: 128 bits of SHA-256 per link: integrity against accidents and outside edits, not an adversary
#: with write access (docs/design/write-protocol.md, non-guarantees).
HASH_HEX_CHARS = 32


def line_hash(raw_line: bytes) -> str:
    """Hash of one transcript line without its newline."""
    return hashlib.sha256(raw_line).hexdigest()[:HASH_HEX_CHARS]


def prefix_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def validate_writer_kind(writer: str) -> str:
    """Return ``writer`` if it is a known kind or ``plugin:<name>``; misuse raises ValueError."""
    if writer in BUILTIN_WRITER_KINDS or _PLUGIN_KIND.match(writer):
        return writer
    known = ", ".join(sorted(BUILTIN_WRITER_KINDS))
    raise ValueError(f"unknown writer kind {writer!r}; use one of {known} or 'plugin:<name>'")


def validate_cooperative_writer_kind(writer: str) -> str:
    """``validate_writer_kind`` for a writer without the lease: the lease holder's kinds are
    refused too (Invariant STORE-I14). Misuse raises ValueError naming the kinds it may use."""
    validate_writer_kind(writer)
    if writer in LEASE_WRITER_KINDS:
        allowed = ", ".join(sorted(BUILTIN_WRITER_KINDS - LEASE_WRITER_KINDS))
        raise ValueError(
            f"writer kind {writer!r} is reserved for the holder of the session's lease (an "
            f"agent turn writes it through its attempt); a cooperative writer uses one of "
            f"{allowed} or 'plugin:<name>'"
        )
    return writer


def stamp_json(
    writer: str,
    run_id: str | None,
    epoch: int,
    seq: int,
    prev: str | None,
    adopted: tuple[int, str | None] | None = None,
) -> dict[str, Any]:
    """The stamp as it is written (the store calls this directly on its hot path)."""
    out: dict[str, Any] = {
        "v": STAMP_VERSION,
        "writer": writer,
        "run_id": run_id,
        "epoch": epoch,
        "seq": seq,
        "prev": prev,
    }
    if adopted is not None:
        out["adopted"] = {"bytes": adopted[0], "sha256": adopted[1]}
    return out


@dataclass(frozen=True)
class Stamp:
    writer: str
    run_id: str | None
    epoch: int
    seq: int
    prev: str | None
    adopted_bytes: int | None = None
    adopted_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        adopted = None if self.adopted_bytes is None else (self.adopted_bytes, self.adopted_sha256)
        return stamp_json(self.writer, self.run_id, self.epoch, self.seq, self.prev, adopted)

    @classmethod
    def from_json(cls, value: object) -> Stamp:
        """Parse a stamp; raises ValueError naming the bad field."""
        if not isinstance(value, dict):
            raise ValueError("stamp is not an object")
        writer, run_id, epoch, seq, prev = (
            value.get("writer"),
            value.get("run_id"),
            value.get("epoch"),
            value.get("seq"),
            value.get("prev"),
        )
        if not isinstance(writer, str):
            raise ValueError("stamp.writer is not a string")
        if run_id is not None and not isinstance(run_id, str):
            raise ValueError("stamp.run_id is not a string or null")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ValueError("stamp.epoch is not a non-negative integer")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValueError("stamp.seq is not a non-negative integer")
        if prev is not None and not isinstance(prev, str):
            raise ValueError("stamp.prev is not a string or null")
        adopted = value.get("adopted")
        a_bytes = a_sha = None
        if adopted is not None:
            if not isinstance(adopted, dict):
                raise ValueError("stamp.adopted is not an object")
            a_bytes, a_sha = adopted.get("bytes"), adopted.get("sha256")
            if not isinstance(a_bytes, int) or not isinstance(a_sha, str):
                raise ValueError("stamp.adopted needs integer bytes and string sha256")
        return cls(writer, run_id, epoch, seq, prev, a_bytes, a_sha)


def stamp_of(record: dict[str, Any]) -> Stamp | None:
    """The stamp of a decoded record, None when it has none; ValueError when malformed."""
    if STAMP_KEY not in record:
        return None
    return Stamp.from_json(record[STAMP_KEY])
