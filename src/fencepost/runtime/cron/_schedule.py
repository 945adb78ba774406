"""Schedules as values, and the pure function that says when one fires next (docs/design/cron.md).

Every instant that leaves this module is an aware UTC ``datetime``. Nothing here reads the clock:
callers pass ``now``.
"""

from __future__ import annotations

import hashlib
import math
import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cronsim import CronSim, CronSimError

from fencepost.core import text_problem
from fencepost.errors import InvalidScheduleError

__all__ = [
    "CRON_NICKNAMES",
    "DEFAULT_STAGGER_WINDOW_S",
    "MIN_INTERVAL_S",
    "AtSchedule",
    "CronSchedule",
    "EverySchedule",
    "Schedule",
    "ScheduleKind",
    "cron_fields",
    "default_stagger_s",
    "is_top_of_hour",
    "next_run_after",
    "parse_at",
    "parse_cron",
    "parse_duration_s",
    "parse_every",
    "parse_since",
    "schedule_from_json",
    "schedule_from_text",
    "schedule_to_json",
    "utc",
]

#: Jobs written as "0 * * * *" or "0 7 * * *" would all start in the same second; spreading
#: them over five minutes keeps a gateway with many such jobs from stampeding its providers.
DEFAULT_STAGGER_WINDOW_S = 300.0

#: Shorter intervals would fill the run ledger faster than anyone can read it.
MIN_INTERVAL_S = 10.0

#: Ten years: the longest interval, delay or look-back a schedule or filter may name. Longer
#: ones are mistakes, and past about 2.7e8 years they overflow the datetime arithmetic (a 500).
MAX_DURATION_S = 10 * 366 * 86400.0

#: IANA zone names are short ("America/Argentina/ComodRivadavia" is among the longest); a longer
#: name is refused before it becomes a file path.
_MAX_ZONE_CHARS = 64

#: crontab(5)'s nicknames and the five fields each stands for. cronsim reads fields only, so a
#: nickname is stored as written (``cron list`` shows ``@daily``) and expanded where it is
#: evaluated (Invariant CRON-I14). ``@reboot`` is not here: start-up is not a schedule.
CRON_NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

#: A cron expression that matches nothing for this many candidate instants never fires.
_MAX_CANDIDATES = 64


@dataclass(frozen=True)
class AtSchedule:
    """Once, at an instant (a one-shot job)."""

    at: datetime

    def describe(self) -> str:
        return f"at {iso(self.at)}"


@dataclass(frozen=True)
class EverySchedule:
    """Every ``every_s`` seconds, at ``anchor + k * every_s`` for k >= 0."""

    every_s: float
    anchor: datetime

    def describe(self) -> str:
        return f"every {format_duration(self.every_s)} from {iso(self.anchor)}"


@dataclass(frozen=True)
class CronSchedule:
    """A 5-field cron expression (or a nickname such as ``@daily``) read as wall-clock time in
    ``tz``, shifted by ``stagger_s``."""

    expr: str
    tz: str
    stagger_s: float = 0.0

    def describe(self) -> str:
        stagger = f" +{format_duration(self.stagger_s)}" if self.stagger_s else ""
        return f"cron {self.expr!r} {self.tz}{stagger}"


Schedule = AtSchedule | EverySchedule | CronSchedule

#: The three ways to write a schedule: the CLI's ``--at``/``--every``/``--cron`` and the HTTP
#: API's ``schedule.kind``.
ScheduleKind = Literal["at", "every", "cron"]


def cron_fields(expr: str) -> str:
    """The five fields of ``expr``: a nickname expanded (Invariant CRON-I14), else ``expr``."""
    return CRON_NICKNAMES.get(expr.strip().lower(), expr)


def utc(dt: datetime) -> datetime:
    """``dt`` as aware UTC; a naive ``dt`` is refused (misuse)."""
    if dt.tzinfo is None:
        raise ValueError(f"naive datetime {dt!r}; pass an aware datetime")
    return dt.astimezone(UTC)


def iso(dt: datetime) -> str:
    """Fixed-width UTC ISO 8601 with microseconds: sorts as text in SQLite."""
    return utc(dt).isoformat(timespec="microseconds")


def next_run_after(schedule: Schedule, after: datetime) -> datetime | None:
    """The first instant strictly after ``after`` at which ``schedule`` fires, in UTC, or None.

    DST (Invariant CRON-I1): a wall-clock time inside a spring-forward gap fires once, at the first
    valid instant after the gap; a wall-clock time inside an autumn overlap fires once, at its
    first occurrence. Expressions with a wildcard hour ("*/15 * * * *", "0 * * * *") follow
    elapsed time instead: they fire every real hour, so twice around 02:00 in an autumn overlap.
    """
    after = utc(after)
    if isinstance(schedule, AtSchedule):
        at = utc(schedule.at)
        return at if at > after else None
    if isinstance(schedule, EverySchedule):
        anchor = utc(schedule.anchor)
        if after < anchor:
            return anchor
        step = timedelta(seconds=schedule.every_s)
        k = math.floor((after - anchor) / step) + 1
        candidate = anchor + k * step
        while candidate <= after:  # float rounding in the division
            k += 1
            candidate = anchor + k * step
        return candidate
    return _next_cron(schedule, after)


def _next_cron(schedule: CronSchedule, after: datetime) -> datetime | None:
    stagger = timedelta(seconds=schedule.stagger_s)
    target = after - stagger
    zone = zoneinfo.ZoneInfo(schedule.tz)
    it = CronSim(cron_fields(schedule.expr), target.astimezone(zone))  # Invariant CRON-I14
    for _ in range(_MAX_CANDIDATES):
        try:
            local = next(it)
        except StopIteration:
            return None
        # cronsim walks wall-clock time for fixed-time expressions and returns the first
        # (fold=0) reading of an ambiguous time; after the overlap's second pass that reading
        # lies in the past, so skip it: the job fires once per overlap, not twice.
        found = local.astimezone(UTC)
        if found > target:
            return found + stagger
    return None


# ---- stagger --------------------------------------------------------------------------------


def is_top_of_hour(expr: str) -> bool:
    """True for expressions that fire on minute 0 ("0 * * * *", "0 7 * * 1-5", "@daily")."""
    fields = cron_fields(expr).split()
    return len(fields) == 5 and fields[0] == "0"


def default_stagger_s(job_id: str, expr: str, window_s: float = DEFAULT_STAGGER_WINDOW_S) -> float:
    """A deterministic offset in [0, window_s) for top-of-hour expressions, else 0.

    Invariant CRON-I2: the same job id always gets the same offset, whole seconds, below the window.
    """
    if window_s <= 0 or not is_top_of_hour(expr):
        return 0.0
    digest = hashlib.sha256(job_id.encode("utf-8")).digest()
    return float(int.from_bytes(digest[:8], "big") % max(1, int(window_s)))


# ---- parsing -------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)", re.IGNORECASE)
_UNIT_S = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_since(text: str, now: datetime, *, key: str = "since") -> datetime:
    """A point in the past from a duration ago ("2h", "1d") or an ISO time (UTC unless it says
    otherwise), for ledger filters; anything else is an InvalidScheduleError naming ``key``."""
    try:
        return now - timedelta(seconds=parse_duration_s(text, key=key))
    except InvalidScheduleError:
        pass
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        utc(when)  # comparable with the ledger's UTC times
        return when
    except (ValueError, OverflowError):  # OverflowError: an offset past year 1 or 9999
        raise InvalidScheduleError(
            f"{key} {text!r}: give a duration ago (2h, 1d) or an ISO time", key=key
        ) from None


def parse_duration_s(text: str, *, key: str = "duration") -> float:
    """Seconds from "90", "90s", "20m", "2h", "1d" or "1h30m"; anything else is refused."""
    raw = text.strip().lower()
    if not raw:
        raise InvalidScheduleError(f"empty {key}; write e.g. 30s, 20m, 2h or 1d", key=key)
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if math.isnan(value):
        pos, value = 0, 0.0
        for m in _DURATION_PART.finditer(raw):
            if m.start() != pos:
                break
            value += float(m.group(1)) * _UNIT_S[m.group(2).lower()]
            pos = m.end()
        if pos != len(raw) or pos == 0:
            raise InvalidScheduleError(
                f"cannot read {text!r} as a duration; write e.g. 30s, 20m, 2h, 1d or 1h30m",
                key=key,
            )
    if not math.isfinite(value) or value <= 0:
        raise InvalidScheduleError(f"{key} must be positive, not {text!r}", key=key)
    if value > MAX_DURATION_S:
        raise InvalidScheduleError(
            f"{key} {text!r} is longer than ten years ({MAX_DURATION_S:g} s), the most allowed",
            key=key,
        )
    return value


def format_duration(seconds: float) -> str:
    s = int(seconds)
    if s != seconds:
        return f"{seconds:g}s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


def _zone(tz: str, key: str) -> zoneinfo.ZoneInfo:
    try:
        if len(tz) > _MAX_ZONE_CHARS or text_problem(tz, multiline=False):
            raise ValueError(tz)
        return zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a bad path
        raise InvalidScheduleError(
            f"unknown time zone {tz!r}; use an IANA name such as Europe/Berlin or UTC", key=key
        ) from exc


def parse_at(
    text: str, *, now: datetime, tz: str | None = None, tz_option: str = "--tz"
) -> AtSchedule:
    """A one-shot at a relative ("20m", "+2h", "1d") or ISO 8601 time, which must be in the future.

    An ISO time without an offset is read in ``tz`` when given, else in UTC. A ``tz`` that would
    change nothing (a relative time, or an ISO time with its own offset or ``Z``) is refused, not
    dropped (Invariant CRON-I15); ``tz_option`` is how the caller spells it in the message.
    """
    raw = text.strip()
    now = utc(now)
    if raw and (raw[0] == "+" or (_DURATION_PART.match(raw.lower()) and "-" not in raw)):
        if tz is not None:  # Invariant CRON-I15
            raise InvalidScheduleError(
                f"{tz_option} {tz!r} does not apply to the relative time {text!r}; "
                f"drop {tz_option}, or give a local time such as 2026-03-29T07:00",
                key="tz",
            )
        delta = parse_duration_s(raw.lstrip("+"), key="at")
        return AtSchedule(now + timedelta(seconds=delta))
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError as exc:
        raise InvalidScheduleError(
            f"cannot read {text!r} as a time; write a relative time like 20m, 2h or 1d, or an "
            "ISO 8601 time like 2026-03-29T07:00 or 2026-03-29T07:00+02:00",
            key="at",
        ) from exc
    if when.tzinfo is not None and tz is not None:  # Invariant CRON-I15: ambiguous, refuse
        raise InvalidScheduleError(
            f"the time {text!r} carries its own UTC offset, so {tz_option} {tz!r} would be "
            f"ignored; drop the offset to read the time in {tz!r}, or drop {tz_option}",
            key="tz",
        )
    if when.tzinfo is None:
        when = when.replace(tzinfo=_zone(tz, "tz") if tz else UTC)
    try:
        when = utc(when)
    except OverflowError:  # an offset that moves it past year 9999
        raise InvalidScheduleError(f"--at {text!r} is out of range", key="at") from None
    if when <= now:
        raise InvalidScheduleError(
            f"--at {text!r} is {iso(when)}, which is not in the future (now {iso(now)})", key="at"
        )
    return AtSchedule(when)


def parse_every(text: str, *, now: datetime, anchor: datetime | None = None) -> EverySchedule:
    """An interval ("30m", "1h", "3600") anchored at ``anchor`` (default ``now``)."""
    every_s = parse_duration_s(text, key="every")
    if every_s < MIN_INTERVAL_S:
        raise InvalidScheduleError(
            f"--every {text!r} is shorter than the minimum of {MIN_INTERVAL_S:g} s", key="every"
        )
    return EverySchedule(every_s, utc(anchor or now))


def parse_cron(
    expr: str, tz: str = "UTC", *, stagger_s: float = 0.0, now: datetime | None = None
) -> CronSchedule:
    """A 5-field cron expression or a nickname (``@daily``) in an IANA zone, checked to fire at
    least once. Stored as written: fields joined by one space, a nickname in lower case
    (Invariant CRON-I14)."""
    fields = expr.split()
    if fields and fields[0].startswith("@"):
        fields = [_nickname(expr)]
    elif len(fields) != 5:
        raise InvalidScheduleError(
            f"cron expression {expr!r} has {len(fields)} fields; write 5: "
            "minute hour day-of-month month day-of-week, e.g. '0 7 * * *', "
            "or a nickname: @hourly, @daily, @weekly, @monthly, @yearly",
            key="cron",
        )
    zone = _zone(tz, "tz")
    if not math.isfinite(stagger_s) or stagger_s < 0 or stagger_s > 3600:
        raise InvalidScheduleError(
            f"stagger {stagger_s:g} s is out of range; use 0 to 3600 s", key="stagger"
        )
    start = (now or datetime.now(UTC)).astimezone(zone)
    try:
        it = CronSim(cron_fields(" ".join(fields)), start)
        next(it)
    except CronSimError as exc:
        raise InvalidScheduleError(f"invalid cron expression {expr!r}: {exc}", key="cron") from exc
    except StopIteration as exc:
        raise InvalidScheduleError(
            f"cron expression {expr!r} never fires (no matching date)", key="cron"
        ) from exc
    return CronSchedule(" ".join(fields), tz, float(stagger_s))


def _nickname(expr: str) -> str:
    name = expr.strip().lower()
    if name in CRON_NICKNAMES:
        return name
    first = name.split()[0]
    if first == "@every":
        hint = "for an interval use --every (schedule kind 'every'), e.g. --every 1h"
    elif first == "@reboot":
        hint = "fencepost does not run jobs at start-up; use --at or a cron expression"
    else:
        hint = f"the nicknames are {', '.join(CRON_NICKNAMES)}"
    raise InvalidScheduleError(
        f"cron expression {expr!r} is not a nickname cron knows; {hint}", key="cron"
    )


def schedule_from_text(
    kind: ScheduleKind,
    text: str,
    *,
    tz: str | None,
    now: datetime,
    tz_option: str = "--tz",
) -> Schedule:
    """The one set of rules the CLI (``--at``/``--every``/``--cron`` with ``--tz``) and the HTTP
    API (``schedule.kind`` with ``schedule.tz``) share.

    Invariant CRON-I15: a time zone is accepted only where it decides the instant (a cron
    schedule; an ISO ``at`` time without an offset) and refused, naming ``tz_option``, anywhere
    else: an ``every`` schedule repeats on elapsed time and has no zone.
    """
    if kind == "at":
        return parse_at(text, now=now, tz=tz, tz_option=tz_option)
    if kind == "every":
        if tz is not None:
            raise InvalidScheduleError(
                f"{tz_option} {tz!r} does not apply to an every schedule: it repeats on elapsed "
                f"time, in no zone; drop {tz_option}, or use a cron schedule for wall-clock times "
                "(--cron '0 7 * * *' --tz Europe/Berlin)",
                key="tz",
            )
        return parse_every(text, now=now)
    if kind == "cron":
        return parse_cron(text, tz or "UTC", now=now)
    raise ValueError(f"unknown schedule kind {kind!r}")  # misuse: callers pass a ScheduleKind


# ---- serialization -------------------------------------------------------------------------


def schedule_to_json(schedule: Schedule) -> dict[str, Any]:
    if isinstance(schedule, AtSchedule):
        return {"kind": "at", "at": iso(schedule.at)}
    if isinstance(schedule, EverySchedule):
        return {"kind": "every", "every_s": schedule.every_s, "anchor": iso(schedule.anchor)}
    return {
        "kind": "cron",
        "expr": schedule.expr,
        "tz": schedule.tz,
        "stagger_s": schedule.stagger_s,
    }


def schedule_from_json(obj: dict[str, Any]) -> Schedule:
    kind = obj.get("kind")
    if kind == "at":
        return AtSchedule(datetime.fromisoformat(obj["at"]))
    if kind == "every":
        return EverySchedule(float(obj["every_s"]), datetime.fromisoformat(obj["anchor"]))
    if kind == "cron":
        return CronSchedule(str(obj["expr"]), str(obj["tz"]), float(obj.get("stagger_s", 0.0)))
    raise InvalidScheduleError(f"unknown schedule kind {kind!r}", key="schedule")
