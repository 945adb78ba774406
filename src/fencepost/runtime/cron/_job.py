"""Jobs as values: fields, validation when given, and JSON for the state database."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Container
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from fencepost.core import text_problem, validate_session_id
from fencepost.errors import InvalidJobError, InvalidSessionIdError

from ._schedule import (
    AtSchedule,
    CronSchedule,
    Schedule,
    default_stagger_s,
    schedule_from_json,
    schedule_to_json,
    utc,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "Delivery",
    "Job",
    "JobValidator",
    "ON_ASK",
    "OnAsk",
    "Payload",
    "PayloadKind",
    "known_names_validator",
    "new_job",
    "parse_delivery",
    "parse_target",
    "validate_job",
    "validate_job_id",
    "edit_job",
]

#: Long enough for a slow model with a few tool calls; a job can raise it.
DEFAULT_TIMEOUT_S = 600.0

#: A day; a run that needs longer is not a scheduled agent turn.
MAX_TIMEOUT_S = 86400.0

PayloadKind = Literal["agent_turn", "system_event"]
DeliveryKind = Literal["none", "session", "webhook"]
#: What a run of the job does with a tool call that needs an operator's approval: deny it at
#: once, or wait a bounded time (``[approvals] unattended_timeout_s``); None: ``[approvals]
#: unattended`` decides (docs/design/approvals.md).
OnAsk = Literal["deny", "wait"]
ON_ASK: tuple[str, ...] = ("deny", "wait")

_AGENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")  # fullmatch
_JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_JOB_ID_PREFIX = re.compile(r"^[0-9a-f][0-9a-f-]{3,35}$")
_NAME = re.compile(r"[^\x00-\x1f\x7f\ud800-\udfff]{1,200}")  # fullmatch; no lone surrogates
_MODEL = re.compile(r"^[A-Za-z0-9._-]{1,64}/[^\s\x00-\x1f\x7f\ud800-\udfff]{1,200}$")

#: A job's prompt; far above any real one, well inside the transcript's record limit.
MAX_PAYLOAD_BYTES = 256 * 1024
#: A webhook address; browsers and servers refuse much longer ones anyway.
MAX_URL_CHARS = 2048


@dataclass(frozen=True)
class Payload:
    """What a run does: an agent turn with a user message, or a system event for the session."""

    kind: PayloadKind
    text: str


@dataclass(frozen=True)
class Delivery:
    """Where a successful run's reply goes besides the run ledger."""

    kind: DeliveryKind = "none"
    to: str | None = None  # a session id, or a webhook URL

    def describe(self) -> str:
        return "none" if self.kind == "none" else f"{self.kind}:{self.to}"


@dataclass(frozen=True)
class Job:
    job_id: str
    name: str
    agent: str
    schedule: Schedule
    payload: Payload
    target: str = "isolated"  # isolated | main | session:<id>
    enabled: bool = True
    model: str | None = None
    fallbacks: tuple[str, ...] = ()
    timeout_s: float = DEFAULT_TIMEOUT_S
    delivery: Delivery = field(default_factory=Delivery)
    delete_after_run: bool = False
    on_ask: OnAsk | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def one_shot(self) -> bool:
        return isinstance(self.schedule, AtSchedule)

    @property
    def target_session_id(self) -> str | None:
        return self.target.removeprefix("session:") if self.target.startswith("session:") else None

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "name": self.name,
            "agent": self.agent,
            "enabled": self.enabled,
            "schedule": schedule_to_json(self.schedule),
            "target": self.target,
            "payload": {"kind": self.payload.kind, "text": self.payload.text},
            "model": self.model,
            "fallbacks": list(self.fallbacks),
            "timeout_s": self.timeout_s,
            "delivery": {"kind": self.delivery.kind, "to": self.delivery.to},
            "delete_after_run": self.delete_after_run,
            "on_ask": self.on_ask,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Job:
        return cls(
            job_id=obj["job_id"],
            name=obj["name"],
            agent=obj["agent"],
            enabled=bool(obj["enabled"]),
            schedule=schedule_from_json(obj["schedule"]),
            target=obj["target"],
            payload=Payload(obj["payload"]["kind"], obj["payload"]["text"]),
            model=obj.get("model"),
            fallbacks=tuple(obj.get("fallbacks") or ()),
            timeout_s=float(obj["timeout_s"]),
            delivery=Delivery(obj["delivery"]["kind"], obj["delivery"].get("to")),
            delete_after_run=bool(obj.get("delete_after_run")),
            on_ask=obj.get("on_ask"),  # absent in jobs stored before it existed: None
            created_at=_dt(obj.get("created_at")),
            updated_at=_dt(obj.get("updated_at")),
        )


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


#: Checks a job against what the gateway knows (agents, models); raises InvalidJobError.
JobValidator = Callable[[Job], None]


def known_names_validator(
    *, agents: Container[str] | None = None, models: Container[str] | None = None
) -> JobValidator:
    """A validator refusing agents and models not in the given collections (None: any)."""

    def check(job: Job) -> None:
        if agents is not None and job.agent not in agents:
            raise InvalidJobError(f"unknown agent {job.agent!r}", key="agent")
        if models is not None:
            for ref in (job.model, *job.fallbacks):
                if ref is not None and ref not in models:
                    raise InvalidJobError(f"unknown model {ref!r}", key="model")

    return check


def validate_job_id(job_id: str) -> str:
    """A full uuid4 job id; anything path-like or malformed is refused."""
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise InvalidJobError(
            f"invalid job id {job_id!r}: job ids are lowercase uuid4 strings", key="job_id"
        )
    return job_id


def validate_job_id_prefix(text: str) -> str:
    if not _JOB_ID_PREFIX.fullmatch(text):
        raise InvalidJobError(
            f"invalid job id {text!r}: give a job id or a prefix of at least 4 of its characters",
            key="job_id",
        )
    return text


def parse_target(text: str) -> str:
    """``isolated``, ``main`` or ``session:<id>`` (a session id without path characters)."""
    if text in ("isolated", "main"):
        return text
    if text.startswith("session:"):
        _check_session_id(text.removeprefix("session:"), "target")
        return text
    raise InvalidJobError(
        f"unknown target {text!r}; use isolated, main or session:<id>", key="target"
    )


def parse_delivery(text: str | None) -> Delivery:
    """``none``, ``session:<id>`` (a mirror record in that session) or an http(s) webhook URL."""
    if text is None or text == "none":
        return Delivery()
    if text.startswith("session:"):
        sid = text.removeprefix("session:")
        _check_session_id(sid, "delivery")
        return Delivery("session", sid)
    if len(text) > MAX_URL_CHARS or text_problem(text, multiline=False) is not None:
        raise InvalidJobError(
            f"invalid delivery URL: at most {MAX_URL_CHARS} characters, no control characters "
            "or lone surrogates",
            key="delivery",
        )
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (raises for a port out of range)
    except ValueError:  # an invalid IPv6 literal, a bad port
        parts = urlsplit("")
    if parts.scheme in ("http", "https") and parts.netloc:
        return Delivery("webhook", text)
    raise InvalidJobError(
        f"unknown delivery {text!r}; use none, session:<id> or an http(s):// webhook URL",
        key="delivery",
    )


def _check_session_id(sid: str, key: str) -> None:
    try:
        validate_session_id(sid)  # the store's own rule, so the store never sees what it refuses
    except (InvalidSessionIdError, TypeError):
        raise InvalidJobError(
            f"invalid session id {sid!r}: use 1-128 characters from letters, digits, '.', '_' "
            "and '-', not starting with '.'",
            key=key,
        ) from None


def validate_job(job: Job, validator: JobValidator | None = None) -> Job:
    """Refuse a job that could never run correctly, naming the field (DESIGN.md §6)."""
    validate_job_id(job.job_id)
    if not isinstance(job.name, str) or not _NAME.fullmatch(job.name):
        raise InvalidJobError("a job name needs 1-200 printable characters", key="name")
    if not isinstance(job.agent, str) or not _AGENT.fullmatch(job.agent):
        raise InvalidJobError(
            f"invalid agent name {job.agent!r}: letters, digits, '.', '_' and '-'", key="agent"
        )
    parse_target(job.target)
    if job.payload.kind not in ("agent_turn", "system_event"):
        raise InvalidJobError(
            f"unknown payload {job.payload.kind!r}; use agent_turn or system_event", key="payload"
        )
    if not job.payload.text.strip():
        raise InvalidJobError("the payload text is empty", key="message")
    # Invariant FORMAT-I5: the text rule of the store, checked when the job is given.
    problem = text_problem(job.payload.text)
    if problem is not None:
        raise InvalidJobError(f"the payload text is not text: {problem}", key="message")
    if len(job.payload.text.encode("utf-8")) > MAX_PAYLOAD_BYTES:
        raise InvalidJobError(
            f"the payload text is larger than {MAX_PAYLOAD_BYTES} bytes; put long instructions "
            "in the agent's system prompt or a file the agent reads",
            key="message",
        )
    if job.payload.kind == "system_event" and job.target == "isolated":
        raise InvalidJobError(
            "a system_event goes into an existing session; use target main or session:<id>",
            key="target",
        )
    for ref in (job.model, *job.fallbacks):
        if ref is not None and not _MODEL.fullmatch(ref):
            raise InvalidJobError(
                f"invalid model reference {ref!r}; write provider/model, e.g. openai/gpt-4o",
                key="model",
            )
    if not 0 < job.timeout_s <= MAX_TIMEOUT_S:
        raise InvalidJobError(
            f"timeout {job.timeout_s:g} s is out of range; use 1 to {MAX_TIMEOUT_S:g} s",
            key="timeout",
        )
    if job.delete_after_run and not job.one_shot:
        raise InvalidJobError(
            "delete_after_run applies to one-shot (--at) jobs only", key="delete_after_run"
        )
    if job.on_ask is not None and job.on_ask not in ON_ASK:
        raise InvalidJobError(
            f"unknown on_ask {job.on_ask!r}; use deny or wait (or leave it unset for the "
            "config's [approvals] unattended)",
            key="on_ask",
        )
    if job.delivery.kind == "session":
        _check_session_id(job.delivery.to or "", "delivery")
    elif job.delivery.kind == "webhook":
        parse_delivery(job.delivery.to or "")
    if validator is not None:
        validator(job)
    return job


def new_job(
    *,
    name: str,
    agent: str,
    schedule: Schedule,
    payload: Payload,
    now: datetime,
    validator: JobValidator | None = None,
    stagger_s: float | None = None,
    **fields: Any,
) -> Job:
    """A validated new job with a fresh uuid4 id.

    For cron schedules, ``stagger_s=None`` picks the job's deterministic default stagger
    (top-of-hour expressions only); a number, including 0, overrides it.
    """
    job_id = str(uuid.uuid4())
    schedule = _with_stagger(schedule, job_id, stagger_s)
    job = Job(
        job_id=job_id,
        name=name,
        agent=agent,
        schedule=schedule,
        payload=payload,
        created_at=utc(now),
        updated_at=utc(now),
        **fields,
    )
    return validate_job(job, validator)


def edit_job(
    job: Job,
    *,
    now: datetime,
    validator: JobValidator | None = None,
    stagger_s: float | None = None,
    **changes: Any,
) -> Job:
    """``job`` with ``changes`` applied, validated again. A new cron schedule gets its stagger."""
    schedule = changes.get("schedule")
    if schedule is not None:
        changes["schedule"] = _with_stagger(schedule, job.job_id, stagger_s)
    elif stagger_s is not None and isinstance(job.schedule, CronSchedule):
        changes["schedule"] = replace(job.schedule, stagger_s=float(stagger_s))
    if "job_id" in changes:
        raise ValueError("a job's id cannot change")
    return validate_job(replace(job, updated_at=utc(now), **changes), validator)


def _with_stagger(schedule: Schedule, job_id: str, stagger_s: float | None) -> Schedule:
    if not isinstance(schedule, CronSchedule):
        if stagger_s:
            raise InvalidJobError("--stagger applies to cron schedules only", key="stagger")
        return schedule
    if stagger_s is None:
        return replace(schedule, stagger_s=default_stagger_s(job_id, schedule.expr))
    if not 0 <= stagger_s <= 3600:
        raise InvalidJobError(f"stagger {stagger_s:g} s is out of range; use 0 to 3600 s")
    return replace(schedule, stagger_s=float(stagger_s))
