"""Request bodies → ``Job`` field values, with the CLI's parsing rules (``fencepost.runtime.cron``
parsers), for ``JobService.create`` and ``JobService.edit`` (CRON-I17).

Pure functions over a decoded JSON body and ``now``; every refusal names the body field.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from ...runtime.cron import (
    ON_ASK,
    JobService,
    Payload,
    Schedule,
    parse_delivery,
    parse_duration_s,
    parse_target,
)
from ._errors import ApiError

__all__ = ["JOB_FIELDS", "changes_from_body", "create_from_body"]

#: The fields a job body may carry; anything else is refused (a typo must not pass silently).
JOB_FIELDS = frozenset(
    {
        "name",
        "agent",
        "schedule",
        "payload",
        "target",
        "model",
        "fallbacks",
        "timeout_s",
        "delivery",
        "delete_after_run",
        "enabled",
        "on_ask",
    }
)
_SCHEDULE_FIELDS = frozenset({"kind", "at", "every", "expr", "tz", "stagger"})


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid", message, field=field)


def _object(body: Any, field: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _invalid(field, f"{field} must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        where = f"{field}.{unknown[0]}" if field != "body" else unknown[0]
        raise _invalid(where, f"unknown field {unknown[0]!r}; known: {', '.join(sorted(allowed))}")
    return body


def _str(obj: dict[str, Any], key: str, field: str, *, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise _invalid(field, f"{field} is required")
        return None
    if not isinstance(value, str):
        raise _invalid(field, f"{field} must be a string")
    return value


def _bool(obj: dict[str, Any], key: str) -> bool | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, bool):
        raise _invalid(key, f"{key} must be true or false")
    return value


def _seconds(value: Any, field: str) -> float | None:
    """A duration as a number of seconds or a string like ``"5m"`` (the CLI's rule)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _invalid(field, f"{field} must be a number of seconds or a duration like '5m'")
    if isinstance(value, str):
        return parse_duration_s(value, key=field)
    if not math.isfinite(value):
        raise _invalid(field, f"{field} must be finite")
    return float(value)


def _stagger(value: Any) -> float | None:
    if value is None:
        return None
    if value in (0, "0", "0s"):
        return 0.0
    return _seconds(value, "schedule.stagger")


def parse_schedule(body: Any, now: datetime) -> Schedule:
    """``{"kind": "at"|"every"|"cron", "at"|"every"|"expr", "tz"?}`` → a schedule."""
    obj = _object(body, "schedule", _SCHEDULE_FIELDS)
    kind = obj.get("kind")
    tz = _str(obj, "tz", "schedule.tz")
    # Invariant CRON-I15: the CLI's rules, with the zone named as this body names it.
    if kind == "at":
        at = _str(obj, "at", "schedule.at", required=True) or ""
        return JobService.parse_schedule("at", at, tz=tz, now=now, tz_option="schedule.tz")
    if kind == "every":
        every = obj.get("every")
        if isinstance(every, int | float) and not isinstance(every, bool):
            every = str(every)
        if not isinstance(every, str):
            raise _invalid("schedule.every", "schedule.every is required: seconds or '30m'")
        return JobService.parse_schedule("every", every, tz=tz, now=now, tz_option="schedule.tz")
    if kind == "cron":
        expr = _str(obj, "expr", "schedule.expr", required=True) or ""
        # the job's stagger is applied later
        return JobService.parse_schedule("cron", expr, tz=tz, now=now, tz_option="schedule.tz")
    raise _invalid("schedule.kind", f"unknown schedule kind {kind!r}; use at, every or cron")


def _payload(body: Any) -> Payload:
    obj = _object(body, "payload", frozenset({"kind", "text"}))
    kind = obj.get("kind", "agent_turn")
    if kind not in ("agent_turn", "system_event"):
        raise _invalid("payload.kind", f"unknown payload kind {kind!r}")
    text = _str(obj, "text", "payload.text", required=True) or ""
    return Payload(kind, text)


def _fallbacks(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid("fallbacks", "fallbacks must be a list of provider/model strings")
    return tuple(value)


def _delivery_text(value: Any) -> str | None:
    """``"none"``, ``"session:<id>"``, a webhook URL, or ``{"kind", "to"}`` as ``Job.to_json``."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        kind, to = value.get("kind"), value.get("to")
        if kind == "none":
            return "none"
        if kind == "session" and isinstance(to, str):
            return f"session:{to}"
        if kind == "webhook" and isinstance(to, str):
            return to
    raise _invalid("delivery", "delivery must be none, session:<id>, a URL or {kind, to}")


def _common(obj: dict[str, Any]) -> dict[str, Any]:
    """The optional fields shared by create and edit, as ``Job`` field values."""
    out: dict[str, Any] = {}
    target = _str(obj, "target", "target")
    if target is not None:
        out["target"] = parse_target(target)
    if "model" in obj:
        out["model"] = _str(obj, "model", "model")
    if obj.get("fallbacks") is not None:
        out["fallbacks"] = _fallbacks(obj["fallbacks"])
    timeout = _seconds(obj.get("timeout_s"), "timeout_s")
    if timeout is not None:
        out["timeout_s"] = timeout
    if "delivery" in obj:
        out["delivery"] = parse_delivery(_delivery_text(obj["delivery"]))
    if "on_ask" in obj:
        on_ask = obj["on_ask"]
        if on_ask is not None and on_ask not in ON_ASK:
            raise _invalid("on_ask", "on_ask must be deny, wait or null ([approvals] unattended)")
        out["on_ask"] = on_ask
    for key in ("delete_after_run", "enabled"):
        value = _bool(obj, key)
        if value is not None:
            out[key] = value
    return out


def create_from_body(body: Any, *, now: datetime) -> dict[str, Any]:
    """``JobService.create`` keyword arguments from a POST body (as ``fencepost cron add``)."""
    obj = _object(body, "body", JOB_FIELDS)
    name = _str(obj, "name", "name", required=True) or ""
    agent = _str(obj, "agent", "agent", required=True) or ""
    if obj.get("schedule") is None:
        raise _invalid("schedule", "a job needs a schedule: {kind: at|every|cron, ...}")
    if obj.get("payload") is None:
        raise _invalid("payload", "a job needs a payload: {kind: agent_turn, text: ...}")
    schedule = parse_schedule(obj["schedule"], now)
    payload = _payload(obj["payload"])
    stagger = _stagger(obj["schedule"].get("stagger"))
    return {
        "name": name,
        "agent": agent,
        "schedule": schedule,
        "payload": payload,
        "now": now,
        "stagger_s": stagger,
        **_common(obj),
    }


def changes_from_body(body: Any, *, now: datetime) -> dict[str, Any]:
    """``JobService.edit`` keyword arguments from a PATCH body (as ``fencepost cron edit``)."""
    obj = _object(body, "body", JOB_FIELDS)
    changes = _common(obj)
    for key in ("name", "agent"):
        value = _str(obj, key, key)
        if value is not None:
            changes[key] = value
    stagger = None
    if obj.get("schedule") is not None:
        changes["schedule"] = parse_schedule(obj["schedule"], now)
        stagger = _stagger(obj["schedule"].get("stagger"))
    if obj.get("payload") is not None:
        changes["payload"] = _payload(obj["payload"])
    if not changes and stagger is None:
        raise _invalid("body", "nothing to change; give at least one field")
    return {**changes, "now": now, "stagger_s": stagger}
